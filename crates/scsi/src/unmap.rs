//! UNMAP parameter list (SBC-3 5.25.2) and GET LBA STATUS parameter data
//! (SBC-3 5.4.2).

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError, need};

wire_struct! {
    /// UNMAP parameter list header, 8 bytes.
    pub struct UnmapParameterListHeader {
        /// UNMAP DATA LENGTH (total length - 2).
        pub unmap_data_length: U16,
        /// UNMAP BLOCK DESCRIPTOR DATA LENGTH (total - 8).
        pub unmap_block_descriptor_data_length: U16,
        pub reserved: [u8; 4],
    }
}
const _: () = assert!(core::mem::size_of::<UnmapParameterListHeader>() == 8);

wire_struct! {
    /// UNMAP block descriptor, 16 bytes.
    pub struct UnmapBlockDescriptor {
        /// UNMAP LOGICAL BLOCK ADDRESS.
        pub logical_block_address: U64,
        /// NUMBER OF LOGICAL BLOCKS.
        pub number_of_logical_blocks: U32,
        pub reserved: [u8; 4],
    }
}
const _: () = assert!(core::mem::size_of::<UnmapBlockDescriptor>() == 16);

impl UnmapBlockDescriptor {
    /// A descriptor for `blocks` blocks from `lba`.
    pub fn new(lba: u64, blocks: u32) -> Self {
        UnmapBlockDescriptor {
            logical_block_address: U64::new(lba),
            number_of_logical_blocks: U32::new(blocks),
            reserved: [0; 4],
        }
    }
}

/// Builds an UNMAP parameter list; `None` if more than 4095 descriptors
/// (the 16-bit length fields' limit).
pub fn unmap_parameter_list(descriptors: &[UnmapBlockDescriptor]) -> Option<Vec<u8>> {
    let bd_len = u16::try_from(descriptors.len().checked_mul(16)?).ok()?;
    let data_len = bd_len.checked_add(6)?;
    let h = UnmapParameterListHeader {
        unmap_data_length: U16::new(data_len),
        unmap_block_descriptor_data_length: U16::new(bd_len),
        reserved: [0; 4],
    };
    let mut v = Vec::with_capacity(8 + bd_len as usize);
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(descriptors.as_bytes());
    Some(v)
}

/// A parsed UNMAP parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmapParameterList<'a> {
    /// The header as received.
    pub header: UnmapParameterListHeader,
    /// The complete descriptors within both UNMAP BLOCK DESCRIPTOR DATA
    /// LENGTH and the data received. A partial trailing descriptor is
    /// dropped, as SBC-3 says to ignore it.
    pub descriptors: &'a [UnmapBlockDescriptor],
}

impl<'a> UnmapParameterList<'a> {
    /// Parses the list. Fails only if the 8-byte header is incomplete;
    /// the device server decides what a length mismatch means (SBC-3:
    /// PARAMETER LIST LENGTH ERROR for a list of 1-7 bytes).
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let (header, rest) =
            UnmapParameterListHeader::read_from_prefix(buf).map_err(|_| WireError::Truncated {
                needed: 8,
                available: buf.len(),
            })?;
        let bd = (header.unmap_block_descriptor_data_length.get() as usize).min(rest.len());
        let n = bd / 16;
        let descriptors =
            <[UnmapBlockDescriptor]>::ref_from_bytes(&rest[..n * 16]).map_err(|_| {
                WireError::Truncated {
                    needed: n * 16,
                    available: rest.len(),
                }
            })?;
        Ok(UnmapParameterList {
            header,
            descriptors,
        })
    }
}

/// PROVISIONING STATUS values of an LBA status descriptor.
pub mod provisioning_status {
    /// Mapped (or unknown).
    pub const MAPPED: u8 = 0x0;
    /// Deallocated.
    pub const DEALLOCATED: u8 = 0x1;
    /// Anchored.
    pub const ANCHORED: u8 = 0x2;
}

wire_struct! {
    /// LBA status descriptor of GET LBA STATUS data, 16 bytes.
    pub struct LbaStatusDescriptor {
        /// LBA STATUS LOGICAL BLOCK ADDRESS.
        pub logical_block_address: U64,
        /// NUMBER OF LOGICAL BLOCKS.
        pub number_of_logical_blocks: U32,
        /// Bits 3:0 PROVISIONING STATUS.
        pub provisioning_status: u8,
        /// ADDITIONAL STATUS (SBC-4).
        pub additional_status: u8,
        pub reserved: [u8; 2],
    }
}
const _: () = assert!(core::mem::size_of::<LbaStatusDescriptor>() == 16);

impl LbaStatusDescriptor {
    /// A descriptor: `blocks` blocks from `lba` in state `status`.
    pub fn new(lba: u64, blocks: u32, status: u8) -> Self {
        LbaStatusDescriptor {
            logical_block_address: U64::new(lba),
            number_of_logical_blocks: U32::new(blocks),
            provisioning_status: status & 0x0F,
            additional_status: 0,
            reserved: [0; 2],
        }
    }
}

/// GET LBA STATUS parameter data: 8-byte header then the descriptors.
pub fn lba_status_data(descriptors: &[LbaStatusDescriptor]) -> Vec<u8> {
    let len = 4 + descriptors.len() * 16;
    let mut v = Vec::with_capacity(4 + len);
    v.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(descriptors.as_bytes());
    v
}

/// Parsed GET LBA STATUS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaStatusData<'a> {
    /// PARAMETER DATA LENGTH (total - 4) as reported.
    pub parameter_data_length: u32,
    /// The complete descriptors present.
    pub descriptors: &'a [LbaStatusDescriptor],
}

impl<'a> LbaStatusData<'a> {
    /// Parses the data (at least the 8-byte header).
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        need(buf, 8)?;
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let avail = (len as usize).saturating_sub(4).min(buf.len() - 8);
        let n = avail / 16;
        let descriptors =
            <[LbaStatusDescriptor]>::ref_from_bytes(&buf[8..8 + n * 16]).map_err(|_| {
                WireError::Truncated {
                    needed: 8 + n * 16,
                    available: buf.len(),
                }
            })?;
        Ok(LbaStatusData {
            parameter_data_length: len,
            descriptors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmap_list_known_bytes_and_round_trip() {
        let ds = [
            UnmapBlockDescriptor::new(0x10, 8),
            UnmapBlockDescriptor::new(1 << 40, 1),
        ];
        let l = unmap_parameter_list(&ds).unwrap();
        assert_eq!(&l[..8], &[0, 38, 0, 32, 0, 0, 0, 0]);
        assert_eq!(
            &l[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 8, 0, 0, 0, 0]
        );
        let p = UnmapParameterList::parse(&l).unwrap();
        assert_eq!(p.descriptors, &ds);
        assert_eq!(p.header.unmap_data_length.get(), 38);
    }

    #[test]
    fn unmap_list_partial_descriptors_are_dropped() {
        let ds = [
            UnmapBlockDescriptor::new(1, 1),
            UnmapBlockDescriptor::new(2, 2),
        ];
        let mut l = unmap_parameter_list(&ds).unwrap();
        // Block descriptor length not a multiple of 16.
        l[3] = 24;
        assert_eq!(UnmapParameterList::parse(&l).unwrap().descriptors.len(), 1);
        // Data shorter than the length claims.
        l[3] = 32;
        assert_eq!(
            UnmapParameterList::parse(&l[..30])
                .unwrap()
                .descriptors
                .len(),
            1
        );
        assert!(UnmapParameterList::parse(&l[..7]).is_err());
        assert!(unmap_parameter_list(&vec![UnmapBlockDescriptor::new(0, 0); 4096]).is_none());
        assert!(unmap_parameter_list(&vec![UnmapBlockDescriptor::new(0, 0); 4095]).is_some());
    }

    #[test]
    fn lba_status_round_trip() {
        let ds = [
            LbaStatusDescriptor::new(0, 100, provisioning_status::MAPPED),
            LbaStatusDescriptor::new(100, 28, provisioning_status::DEALLOCATED),
        ];
        let d = lba_status_data(&ds);
        assert_eq!(&d[..8], &[0, 0, 0, 36, 0, 0, 0, 0]);
        assert_eq!(d[8 + 16 + 12], 1);
        let p = LbaStatusData::parse(&d).unwrap();
        assert_eq!(p.descriptors, &ds);
        assert_eq!(LbaStatusData::parse(&d[..30]).unwrap().descriptors.len(), 1);
        assert!(LbaStatusData::parse(&d[..4]).is_err());
    }
}
