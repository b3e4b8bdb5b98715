//! A backend that stores nothing: reads return zeroes, writes are discarded.
//!
//! For measuring the overhead of the layers above; every block reports mapped.

use super::{BackendOp, BackendResult, BlockBackend, check_range};

/// The null disk.
#[derive(Debug, Clone)]
pub struct NullBackend {
    block_size: u32,
    num_blocks: u64,
}

impl NullBackend {
    /// A null disk of `num_blocks` blocks; `None` for an unsupported block size or zero
    /// blocks.
    pub fn new(num_blocks: u64, block_size: u32) -> Option<Self> {
        if !super::valid_block_size(block_size) || num_blocks == 0 {
            return None;
        }
        num_blocks.checked_mul(u64::from(block_size))?;
        Some(Self {
            block_size,
            num_blocks,
        })
    }
}

impl BlockBackend for NullBackend {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BackendResult<()> {
        check_range(
            offset,
            buf.len(),
            self.num_blocks * u64::from(self.block_size),
            BackendOp::Read,
        )?;
        buf.fill(0);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8], _fua: bool) -> BackendResult<()> {
        check_range(
            offset,
            buf.len(),
            self.num_blocks * u64::from(self.block_size),
            BackendOp::Write,
        )
    }

    fn flush(&self) -> BackendResult<()> {
        Ok(())
    }

    fn write_zeroes(&self, _lba: u64, _blocks: u64) -> BackendResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_reads_zero_and_discards_writes() {
        let n = NullBackend::new(100, 4096).unwrap();
        n.write_at(0, &[7u8; 4096], true).unwrap();
        let mut buf = [9u8; 4096];
        n.read_at(0, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == 0));
        assert!(n.read_at(100 * 4096, &mut buf).is_err());
        assert!(!n.is_thin());
    }
}
