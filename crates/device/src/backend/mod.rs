//! The storage under a logical unit: the [`BlockBackend`] trait and its implementations.
//!
//! A backend stores blocks; it knows nothing of SCSI. The logical unit validates every
//! address against [`BlockBackend::num_blocks`] before it calls a backend, so a backend
//! may treat an out-of-range request as a bug (it still must not panic: it returns
//! [`BackendErrorKind::OutOfRange`]).
//!
//! Threads: every method may be called from several threads at once (`&self`), which is
//! why the trait requires `Send + Sync`. Methods may block (file I/O); they are called
//! from the miniport's context, never under a lock of the logical unit.

use std::fmt;

mod faulty;
mod file;
mod null;
mod ram;

pub use faulty::{FaultyBackend, InjectedFault};
pub use file::FileBackend;
pub use null::NullBackend;
pub use ram::RamBackend;

/// What went wrong in a backend, as far as the SCSI layer cares.
///
/// The mapping to sense data lives in one place (`crate::sense::backend_error_sense`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The medium could not be read or written (EIO and friends).
    Io,
    /// The backing store ran out of space (ENOSPC, EDQUOT).
    NoSpace,
    /// The request lies beyond the end of the backend (a caller bug).
    OutOfRange,
    /// The backend does not support the operation (for example UNMAP on a plain file
    /// system that refuses hole punching).
    Unsupported,
    /// Anything else.
    Other,
}

/// Which backend operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendOp {
    /// `read_at`.
    Read,
    /// `write_at` or `write_zeroes`.
    Write,
    /// `flush`.
    Flush,
    /// `unmap`.
    Unmap,
    /// `lba_status`.
    Status,
}

/// A backend failure: kind, operation and the OS error number if there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct BackendError {
    /// What went wrong.
    pub kind: BackendErrorKind,
    /// During which operation.
    pub op: BackendOp,
    /// The `errno` reported by the OS, if any.
    pub errno: Option<i32>,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} failed: {:?}", self.op, self.kind)?;
        if let Some(e) = self.errno {
            write!(f, " (errno {e})")?;
        }
        Ok(())
    }
}

impl BackendError {
    /// A failure of `kind` during `op`, without an OS error.
    pub const fn new(kind: BackendErrorKind, op: BackendOp) -> Self {
        Self {
            kind,
            op,
            errno: None,
        }
    }

    /// Classifies an OS error number.
    pub fn from_errno(op: BackendOp, errno: i32) -> Self {
        let kind = match errno {
            libc_errno::ENOSPC | libc_errno::EDQUOT => BackendErrorKind::NoSpace,
            libc_errno::EIO | libc_errno::ENXIO | libc_errno::EROFS => BackendErrorKind::Io,
            libc_errno::EOPNOTSUPP | libc_errno::ENOSYS => BackendErrorKind::Unsupported,
            _ => BackendErrorKind::Other,
        };
        Self {
            kind,
            op,
            errno: Some(errno),
        }
    }

    /// Classifies a `rustix` error.
    pub fn from_os(op: BackendOp, e: rustix::io::Errno) -> Self {
        Self::from_errno(op, e.raw_os_error())
    }
}

/// Errno values used for classification (Linux numbering, which is all we run on).
mod libc_errno {
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ENOSYS: i32 = 38;
    pub const EOPNOTSUPP: i32 = 95;
    pub const EDQUOT: i32 = 122;
}

/// Result alias for backend calls.
pub type BackendResult<T> = Result<T, BackendError>;

/// Provisioning status of a run of blocks (SBC-4 5.8, GET LBA STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbaStatus {
    /// The blocks are mapped (hold data).
    Mapped,
    /// The blocks are deallocated: they read as zeroes and use no space.
    Deallocated,
}

/// A store of fixed-size blocks.
///
/// Offsets are in bytes and the logical unit passes block-aligned offsets; lengths are
/// whole blocks except when an initiator's expected transfer length cuts a transfer
/// short (then the tail is a partial block: backends must accept any length).
pub trait BlockBackend: Send + Sync {
    /// Size of one logical block in bytes (512 or 4096).
    fn block_size(&self) -> u32;

    /// Number of logical blocks.
    fn num_blocks(&self) -> u64;

    /// Fills `buf` with the bytes starting at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BackendResult<()>;

    /// Stores `buf` at `offset`. With `fua`, the data is on stable storage when this
    /// returns (SBC FUA bit).
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BackendResult<()>;

    /// Makes every completed write stable (SYNCHRONIZE CACHE).
    fn flush(&self) -> BackendResult<()>;

    /// Whether the backend is thin provisioned: it can deallocate blocks, deallocated
    /// blocks read as zeroes (LBPRZ) and [`BlockBackend::lba_status`] is meaningful.
    fn is_thin(&self) -> bool {
        false
    }

    /// Deallocates `blocks` blocks from `lba`; they read as zeroes afterwards.
    /// Only called when [`BlockBackend::is_thin`] is true.
    fn unmap(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        self.write_zeroes(lba, blocks)
    }

    /// Writes zeroes to `blocks` blocks from `lba`. The default writes a zero buffer of
    /// at most 1 MiB repeatedly; backends that can do better override it.
    fn write_zeroes(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        let bs = u64::from(self.block_size());
        let total = blocks.checked_mul(bs).ok_or(BackendError::new(
            BackendErrorKind::OutOfRange,
            BackendOp::Write,
        ))?;
        let chunk = total.min(1 << 20);
        let zeroes = vec![0u8; usize::try_from(chunk).unwrap_or(1 << 20)];
        let mut done = 0u64;
        while done < total {
            let n = (total - done).min(zeroes.len() as u64);
            let len = usize::try_from(n).unwrap_or(zeroes.len());
            self.write_at(lba * bs + done, &zeroes[..len], false)?;
            done += n;
        }
        Ok(())
    }

    /// Provisioning status of the run of blocks starting at `lba`: the status of `lba`
    /// and how many consecutive blocks (at least 1, at most `max_blocks`) share it.
    fn lba_status(&self, lba: u64, max_blocks: u64) -> BackendResult<(LbaStatus, u64)> {
        let _ = lba;
        Ok((LbaStatus::Mapped, max_blocks.max(1)))
    }
}

impl<T: BlockBackend + ?Sized> BlockBackend for std::sync::Arc<T> {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn num_blocks(&self) -> u64 {
        (**self).num_blocks()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BackendResult<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BackendResult<()> {
        (**self).write_at(offset, buf, fua)
    }
    fn flush(&self) -> BackendResult<()> {
        (**self).flush()
    }
    fn is_thin(&self) -> bool {
        (**self).is_thin()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        (**self).unmap(lba, blocks)
    }
    fn write_zeroes(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        (**self).write_zeroes(lba, blocks)
    }
    fn lba_status(&self, lba: u64, max_blocks: u64) -> BackendResult<(LbaStatus, u64)> {
        (**self).lba_status(lba, max_blocks)
    }
}

/// Checks that a byte range lies inside a backend of `size` bytes.
pub(crate) fn check_range(offset: u64, len: usize, size: u64, op: BackendOp) -> BackendResult<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BackendError::new(BackendErrorKind::OutOfRange, op)),
    }
}

/// Validates a block size: 512 or 4096 bytes.
pub(crate) fn valid_block_size(bs: u32) -> bool {
    bs == 512 || bs == 4096
}
