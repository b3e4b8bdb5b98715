//! READ CAPACITY parameter data (SBC-3 5.15.2, 5.16.2).

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::Result;
use crate::util::read_padded;

wire_struct! {
    /// READ CAPACITY(10) parameter data, 8 bytes.
    pub struct ReadCapacity10Data {
        /// RETURNED LOGICAL BLOCK ADDRESS: the last LBA, or FFFFFFFFh when
        /// it does not fit (use READ CAPACITY(16)).
        pub returned_logical_block_address: U32,
        /// LOGICAL BLOCK LENGTH IN BYTES.
        pub logical_block_length: U32,
    }
}
const _: () = assert!(core::mem::size_of::<ReadCapacity10Data>() == 8);

impl ReadCapacity10Data {
    /// Data for a medium of `blocks` blocks of `block_len` bytes; a last
    /// LBA above FFFFFFFEh is reported as FFFFFFFFh. `blocks` must be > 0.
    pub fn new(blocks: u64, block_len: u32) -> Self {
        let last = blocks.saturating_sub(1);
        ReadCapacity10Data {
            returned_logical_block_address: U32::new(u32::try_from(last).unwrap_or(u32::MAX)),
            logical_block_length: U32::new(block_len),
        }
    }

    /// Parses 8 bytes.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        read_padded(buf, 8)
    }
}

wire_struct! {
    /// READ CAPACITY(16) parameter data, 32 bytes.
    pub struct ReadCapacity16Data {
        /// RETURNED LOGICAL BLOCK ADDRESS: the last LBA.
        pub returned_logical_block_address: U64,
        /// LOGICAL BLOCK LENGTH IN BYTES.
        pub logical_block_length: U32,
        /// Bits 5:4 RC BASIS, 3:1 P_TYPE, 0 PROT_EN.
        pub protection: u8,
        /// Bits 7:4 P_I_EXPONENT, 3:0 LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
        pub exponents: u8,
        /// Bit 15 LBPME, bit 14 LBPRZ, bits 13:0 LOWEST ALIGNED LOGICAL BLOCK ADDRESS.
        pub provisioning: U16,
        pub reserved: [u8; 16],
    }
}
const _: () = assert!(core::mem::size_of::<ReadCapacity16Data>() == 32);
bits!(ReadCapacity16Data {
    /// RC BASIS.
    rc_basis, set_rc_basis, with_rc_basis: protection, 4, 2;
    /// P_TYPE.
    p_type, set_p_type, with_p_type: protection, 1, 3;
    /// P_I_EXPONENT.
    p_i_exponent, set_p_i_exponent, with_p_i_exponent: exponents, 4, 4;
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    logical_blocks_per_physical_block_exponent,
    set_logical_blocks_per_physical_block_exponent,
    with_logical_blocks_per_physical_block_exponent: exponents, 0, 4;
});
flags!(ReadCapacity16Data {
    /// PROT_EN: protection information enabled.
    prot_en, set_prot_en, with_prot_en: protection, 0x01;
});

impl ReadCapacity16Data {
    /// Data for `blocks` blocks (> 0) of `block_len` bytes.
    pub fn new(blocks: u64, block_len: u32) -> Self {
        let mut s = Self::new_zeroed();
        s.returned_logical_block_address
            .set(blocks.saturating_sub(1));
        s.logical_block_length.set(block_len);
        s
    }

    /// LBPME: logical block provisioning management enabled.
    pub fn lbpme(&self) -> bool {
        self.provisioning.get() & 0x8000 != 0
    }

    /// LBPRZ: unmapped blocks read as zero.
    pub fn lbprz(&self) -> bool {
        self.provisioning.get() & 0x4000 != 0
    }

    /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS (14 bits).
    pub fn lowest_aligned_lba(&self) -> u16 {
        self.provisioning.get() & 0x3FFF
    }

    /// Builder: sets LBPME.
    pub fn with_lbpme(mut self, v: bool) -> Self {
        self.set_provisioning_bit(0x8000, v);
        self
    }

    /// Builder: sets LBPRZ.
    pub fn with_lbprz(mut self, v: bool) -> Self {
        self.set_provisioning_bit(0x4000, v);
        self
    }

    /// Builder: sets LOWEST ALIGNED LOGICAL BLOCK ADDRESS (low 14 bits kept).
    pub fn with_lowest_aligned_lba(mut self, v: u16) -> Self {
        let p = self.provisioning.get();
        self.provisioning.set((p & 0xC000) | (v & 0x3FFF));
        self
    }

    fn set_provisioning_bit(&mut self, bit: u16, v: bool) {
        let p = self.provisioning.get();
        self.provisioning.set(if v { p | bit } else { p & !bit });
    }

    /// Number of blocks: RETURNED LOGICAL BLOCK ADDRESS + 1.
    pub fn blocks(&self) -> u64 {
        self.returned_logical_block_address.get().saturating_add(1)
    }

    /// Parses at least the first 12 bytes; the rest reads as zero if absent.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        read_padded(buf, 12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capacity_10_known_bytes_and_saturation() {
        let d = ReadCapacity10Data::new(0x10_0000, 512);
        assert_eq!(d.as_bytes(), &[0, 0x0F, 0xFF, 0xFF, 0, 0, 2, 0]);
        assert_eq!(ReadCapacity10Data::parse(d.as_bytes()).unwrap(), d);
        let big = ReadCapacity10Data::new(1 << 33, 4096);
        assert_eq!(big.returned_logical_block_address.get(), u32::MAX);
        assert!(ReadCapacity10Data::parse(&[0; 7]).is_err());
    }

    #[test]
    fn read_capacity_16_bits() {
        let d = ReadCapacity16Data::new(1 << 33, 4096)
            .with_lbpme(true)
            .with_lbprz(true)
            .with_logical_blocks_per_physical_block_exponent(3)
            .with_lowest_aligned_lba(0x3FFF);
        let b = d.as_bytes();
        assert_eq!(&b[..8], &[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(&b[8..16], &[0, 0, 0x10, 0, 0, 0x03, 0xFF, 0xFF]);
        let back = ReadCapacity16Data::parse(b).unwrap();
        assert_eq!(back, d);
        assert!(back.lbpme() && back.lbprz());
        assert_eq!(back.blocks(), 1 << 33);
        assert_eq!(back.lowest_aligned_lba(), 0x3FFF);
        let only_lbpme = ReadCapacity16Data::new(8, 512).with_lbpme(true);
        assert_eq!(only_lbpme.as_bytes()[14], 0x80);
        assert!(!only_lbpme.lbprz());
        assert!(ReadCapacity16Data::parse(&b[..11]).is_err());
        assert_eq!(
            ReadCapacity16Data::parse(&b[..12])
                .unwrap()
                .logical_block_length
                .get(),
            4096
        );
    }
}
