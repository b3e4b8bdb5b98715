//! Building the CDBs the class driver sends, and the transfer limits it splits on.

use port::{PortConfiguration, SP_UNINITIALIZED_VALUE};
use scsi::CdbLayout;
use scsi::cdb::{Read10, Read16, SynchronizeCache10, Write10, Write16, WriteSame10, WriteSame16};

/// The page size the port's physical breaks are counted in.
pub const PAGE_SIZE: u32 = 4096;

/// The largest LBA + block count a 10-byte CDB can address: LBA field 32 bits, so the last
/// block of a 10-byte command must be at most 2^32 - 1 (the 2 TiB boundary with 512-byte
/// blocks).
const LBA10_LIMIT: u64 = 1 << 32;

/// A built CDB, stored inline.
pub type CdbBytes = scsi::CdbBuf;

/// READ or WRITE for `blocks` blocks at `lba`: the 10-byte form when the whole range lies
/// below 2^32 blocks and `blocks` fits 16 bits, else the 16-byte form (SBC-3; Windows'
/// classpnp makes the same choice per request).
pub fn read_write(write: bool, lba: u64, blocks: u32, fua: bool) -> CdbBytes {
    if fits_10(lba, u64::from(blocks)) {
        let (l, b) = (lba as u32, blocks as u16);
        if write {
            CdbBytes::from_layout(&Write10::new(l, b).with_fua(fua))
        } else {
            CdbBytes::from_layout(&Read10::new(l, b).with_fua(fua))
        }
    } else if write {
        CdbBytes::from_layout(&Write16::new(lba, blocks).with_fua(fua))
    } else {
        CdbBytes::from_layout(&Read16::new(lba, blocks).with_fua(fua))
    }
}

/// WRITE SAME of one zero block over `blocks` blocks at `lba` (10- or 16-byte like
/// [`read_write`]).
pub fn write_same(lba: u64, blocks: u32) -> CdbBytes {
    if fits_10(lba, u64::from(blocks)) {
        CdbBytes::from_layout(&WriteSame10::new(lba as u32, blocks as u16))
    } else {
        CdbBytes::from_layout(&WriteSame16::new(lba, blocks))
    }
}

/// SYNCHRONIZE CACHE(10) of the whole medium.
pub fn synchronize_cache() -> CdbBytes {
    CdbBytes::from_layout(&SynchronizeCache10::new(0, 0))
}

/// True when a 10-byte CDB can carry `blocks` blocks at `lba`.
pub fn fits_10(lba: u64, blocks: u64) -> bool {
    blocks <= u64::from(u16::MAX)
        && lba
            .checked_add(blocks)
            .is_some_and(|end| end <= LBA10_LIMIT)
}

/// Length of the CDB [`read_write`] builds (10 or 16), for logs and tests.
pub fn read_write_len(lba: u64, blocks: u32) -> usize {
    if fits_10(lba, u64::from(blocks)) {
        Read10::LEN
    } else {
        Read16::LEN
    }
}

/// Largest transfer, in bytes, one SRB may carry on this adapter: `MaximumTransferLength`
/// and `NumberOfPhysicalBreaks` pages (a buffer that does not start on a page boundary
/// spans one page more than its length, hence breaks rather than breaks + 1, as classpnp
/// computes it), each ignored when unset.
pub fn adapter_max_transfer(config: &PortConfiguration) -> u64 {
    max_transfer(
        config.maximum_transfer_length,
        config.number_of_physical_breaks,
    )
}

/// [`adapter_max_transfer`] from the two configuration values.
pub fn max_transfer(maximum_transfer_length: u32, number_of_physical_breaks: u32) -> u64 {
    let mut max = u64::MAX;
    if maximum_transfer_length != SP_UNINITIALIZED_VALUE && maximum_transfer_length != 0 {
        max = u64::from(maximum_transfer_length);
    }
    if number_of_physical_breaks != SP_UNINITIALIZED_VALUE {
        let pages = u64::from(number_of_physical_breaks.max(1));
        max = max.min(pages * u64::from(PAGE_SIZE));
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_byte_up_to_the_2tib_boundary_then_sixteen() {
        // Last block 2^32 - 1: still 10 bytes.
        let c = read_write(false, (1 << 32) - 8, 8, false);
        assert_eq!((c.len(), c[0]), (10, 0x28));
        assert_eq!(&c[2..6], &[0xFF, 0xFF, 0xFF, 0xF8]);
        assert_eq!(&c[7..9], &[0, 8]);
        // Crossing it: 16 bytes even though the LBA field would fit.
        let c = read_write(true, (1 << 32) - 4, 8, true);
        assert_eq!((c.len(), c[0], c[1] & 0x08), (16, 0x8A, 0x08));
        assert_eq!(&c[2..10], &((1u64 << 32) - 4).to_be_bytes());
        // Above it.
        let c = read_write(false, 1 << 32, 1, false);
        assert_eq!((c.len(), c[0]), (16, 0x88));
        // More than 65535 blocks at LBA 0: 16 bytes.
        assert_eq!(read_write_len(0, 65_535), 10);
        assert_eq!(read_write_len(0, 65_536), 16);
        assert_eq!(write_same(1 << 32, 8).len(), 16);
        assert_eq!(write_same(0, 8)[0], 0x41);
    }

    #[test]
    fn transfer_limit_is_the_smaller_of_length_and_breaks() {
        assert_eq!(max_transfer(1 << 20, 17), 17 * 4096);
        assert_eq!(max_transfer(1 << 20, SP_UNINITIALIZED_VALUE), 1 << 20);
        assert_eq!(max_transfer(SP_UNINITIALIZED_VALUE, 0), 4096);
        assert_eq!(
            max_transfer(SP_UNINITIALIZED_VALUE, SP_UNINITIALIZED_VALUE),
            u64::MAX
        );
    }
}
