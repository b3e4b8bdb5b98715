//! A wrapper that injects failures into another backend, for tests.
//!
//! Faults are armed per operation kind and fire on every call (or only for calls that
//! touch a given block range) until cleared. The injected errors carry real errno values
//! (EIO, ENOSPC), so they travel the same classification path as OS errors.

use parking_lot::Mutex;

use super::{BackendError, BackendOp, BackendResult, BlockBackend, LbaStatus};

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault {
    /// Which operation fails.
    pub op: BackendOp,
    /// The errno it fails with (e.g. 5 = EIO, 28 = ENOSPC).
    pub errno: i32,
    /// Only calls touching blocks in `[first, first + count)` fail; `None` = every call.
    pub blocks: Option<(u64, u64)>,
}

impl InjectedFault {
    /// EIO on reads.
    pub const READ_EIO: Self = Self::every(BackendOp::Read, 5);
    /// EIO on writes.
    pub const WRITE_EIO: Self = Self::every(BackendOp::Write, 5);
    /// ENOSPC on writes.
    pub const WRITE_ENOSPC: Self = Self::every(BackendOp::Write, 28);
    /// EIO on flush.
    pub const FLUSH_EIO: Self = Self::every(BackendOp::Flush, 5);

    /// A fault on every call of `op`.
    pub const fn every(op: BackendOp, errno: i32) -> Self {
        Self {
            op,
            errno,
            blocks: None,
        }
    }
}

/// A backend whose calls fail while a matching fault is armed.
pub struct FaultyBackend<B> {
    inner: B,
    faults: Mutex<Vec<InjectedFault>>,
}

impl<B: BlockBackend> std::fmt::Debug for FaultyBackend<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("faults", &*self.faults.lock())
            .finish()
    }
}

impl<B: BlockBackend> FaultyBackend<B> {
    /// Wraps `inner` with no faults armed.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            faults: Mutex::new(Vec::new()),
        }
    }

    /// Arms a fault.
    pub fn inject(&self, fault: InjectedFault) {
        self.faults.lock().push(fault);
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        self.faults.lock().clear();
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn check(&self, op: BackendOp, first: u64, count: u64) -> BackendResult<()> {
        let faults = self.faults.lock();
        for f in faults.iter().filter(|f| f.op == op) {
            let hit = match f.blocks {
                None => true,
                Some((b, n)) => first < b.saturating_add(n) && b < first.saturating_add(count),
            };
            if hit {
                return Err(BackendError::from_errno(op, f.errno));
            }
        }
        Ok(())
    }

    fn span(&self, offset: u64, len: usize) -> (u64, u64) {
        let bs = u64::from(self.inner.block_size());
        let first = offset / bs;
        let last = (offset + len as u64).div_ceil(bs);
        (first, last.saturating_sub(first).max(1))
    }
}

impl<B: BlockBackend> BlockBackend for FaultyBackend<B> {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }

    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BackendResult<()> {
        let (first, n) = self.span(offset, buf.len());
        self.check(BackendOp::Read, first, n)?;
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BackendResult<()> {
        let (first, n) = self.span(offset, buf.len());
        self.check(BackendOp::Write, first, n)?;
        self.inner.write_at(offset, buf, fua)
    }

    fn flush(&self) -> BackendResult<()> {
        self.check(BackendOp::Flush, 0, u64::MAX)?;
        self.inner.flush()
    }

    fn is_thin(&self) -> bool {
        self.inner.is_thin()
    }

    fn unmap(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        self.check(BackendOp::Unmap, lba, blocks)?;
        self.inner.unmap(lba, blocks)
    }

    fn write_zeroes(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        self.check(BackendOp::Write, lba, blocks)?;
        self.inner.write_zeroes(lba, blocks)
    }

    fn lba_status(&self, lba: u64, max_blocks: u64) -> BackendResult<(LbaStatus, u64)> {
        self.check(BackendOp::Status, lba, 1)?;
        self.inner.lba_status(lba, max_blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendErrorKind, RamBackend};

    #[test]
    fn faulty_fails_only_matching_calls_until_cleared() {
        let f = FaultyBackend::new(RamBackend::new(64, 512).unwrap());
        f.inject(InjectedFault {
            op: BackendOp::Write,
            errno: 28,
            blocks: Some((10, 2)),
        });
        f.write_at(0, &[1u8; 512], false).unwrap();
        let e = f.write_at(11 * 512, &[1u8; 512], false).unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::NoSpace);
        assert_eq!(e.errno, Some(28));
        f.clear();
        f.write_at(11 * 512, &[1u8; 512], false).unwrap();
        f.inject(InjectedFault::READ_EIO);
        let mut buf = [0u8; 512];
        assert_eq!(
            f.read_at(0, &mut buf).unwrap_err().kind,
            BackendErrorKind::Io
        );
    }
}
