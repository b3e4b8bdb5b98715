//! Vital product data pages (SPC-4 7.8, SBC-3 6.5).
//!
//! Every page starts with a 4-byte [`VpdHeader`]. Fixed-size pages (B0, B1,
//! B2) are wire structs that include the header; variable pages (00, 80,
//! 83) are built into a `Vec<u8>` by the functions here and read back with
//! [`parse_page`] plus a page-specific decoder. VPD pages rarely change, so
//! a device server can build them once per logical unit and copy them out
//! per command.

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError};
use crate::util::read_padded;

/// VPD page codes.
pub mod page {
    /// Supported VPD pages.
    pub const SUPPORTED_PAGES: u8 = 0x00;
    /// Unit serial number.
    pub const UNIT_SERIAL_NUMBER: u8 = 0x80;
    /// Device identification.
    pub const DEVICE_IDENTIFICATION: u8 = 0x83;
    /// Extended INQUIRY data.
    pub const EXTENDED_INQUIRY: u8 = 0x86;
    /// Mode page policy.
    pub const MODE_PAGE_POLICY: u8 = 0x87;
    /// SCSI ports.
    pub const SCSI_PORTS: u8 = 0x88;
    /// Block limits (SBC).
    pub const BLOCK_LIMITS: u8 = 0xB0;
    /// Block device characteristics (SBC).
    pub const BLOCK_DEVICE_CHARACTERISTICS: u8 = 0xB1;
    /// Logical block provisioning (SBC).
    pub const LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;
    /// Referrals (SBC).
    pub const REFERRALS: u8 = 0xB3;
}

wire_struct! {
    /// The 4-byte header of every VPD page.
    pub struct VpdHeader {
        /// Peripheral qualifier and device type, as in INQUIRY byte 0.
        pub peripheral: u8,
        /// PAGE CODE.
        pub page_code: u8,
        /// PAGE LENGTH (n - 3).
        pub page_length: U16,
    }
}
const _: () = assert!(core::mem::size_of::<VpdHeader>() == 4);

/// Splits a VPD page into its header and payload.
///
/// The payload is bounded by PAGE LENGTH and by the buffer, so a page cut
/// short by the allocation length yields what is there.
pub fn parse_page(buf: &[u8]) -> Result<(VpdHeader, &[u8])> {
    let (h, rest) = VpdHeader::read_from_prefix(buf).map_err(|_| WireError::Truncated {
        needed: 4,
        available: buf.len(),
    })?;
    let n = rest.len().min(h.page_length.get() as usize);
    Ok((h, &rest[..n]))
}

/// Builds a page from header fields and payload; `None` if the payload
/// exceeds 65535 bytes.
pub fn build_page(peripheral: u8, page_code: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(payload.len()).ok()?;
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(&[peripheral, page_code]);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(payload);
    Some(v)
}

/// Page 00h: the list of supported page codes (ascending, as SPC requires).
pub fn supported_pages(peripheral: u8, pages: &[u8]) -> Vec<u8> {
    let mut p = pages.to_vec();
    p.sort_unstable();
    p.dedup();
    // At most 256 distinct page codes: always fits.
    build_page(peripheral, page::SUPPORTED_PAGES, &p).unwrap_or_default()
}

/// Page 80h: PRODUCT SERIAL NUMBER (ASCII, truncated to 252 bytes).
pub fn unit_serial_number(peripheral: u8, serial: &str) -> Vec<u8> {
    let mut s = vec![b' '; serial.len().min(252)];
    crate::util::put_ascii(&mut s, serial);
    build_page(peripheral, page::UNIT_SERIAL_NUMBER, &s).unwrap_or_default()
}

/// Reads page 80h's serial number, trailing spaces removed.
pub fn parse_unit_serial_number(buf: &[u8]) -> Result<String> {
    let (h, payload) = parse_page(buf)?;
    check_code(&h, page::UNIT_SERIAL_NUMBER)?;
    Ok(crate::util::get_ascii(payload))
}

fn check_code(h: &VpdHeader, code: u8) -> Result<()> {
    if h.page_code != code {
        return Err(WireError::BadValue {
            field: "PAGE CODE",
            value: h.page_code as u64,
        });
    }
    Ok(())
}

// ------------------------------------------------- device identification --

/// PROTOCOL IDENTIFIER values (SPC-4 7.6.1).
pub mod protocol_id {
    /// Fibre Channel.
    pub const FC: u8 = 0x0;
    /// Parallel SCSI.
    pub const SPI: u8 = 0x1;
    /// SSA.
    pub const SSA: u8 = 0x2;
    /// IEEE 1394.
    pub const SBP: u8 = 0x3;
    /// SCSI RDMA protocol.
    pub const SRP: u8 = 0x4;
    /// iSCSI.
    pub const ISCSI: u8 = 0x5;
    /// SAS serial SCSI protocol.
    pub const SAS: u8 = 0x6;
    /// Automation/drive interface.
    pub const ADT: u8 = 0x7;
    /// ATA/ATAPI.
    pub const ATA: u8 = 0x8;
    /// USB attached SCSI.
    pub const UAS: u8 = 0x9;
    /// SCSI over PCI Express.
    pub const SOP: u8 = 0xA;
    /// No specific protocol.
    pub const NONE: u8 = 0xF;
}

/// CODE SET of a designation descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CodeSet {
    /// Binary values.
    Binary = 1,
    /// Printable ASCII.
    Ascii = 2,
    /// UTF-8.
    Utf8 = 3,
}

/// ASSOCIATION of a designation descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Association {
    /// Designates the logical unit.
    LogicalUnit = 0,
    /// Designates the target port the command came through.
    TargetPort = 1,
    /// Designates the SCSI target device.
    TargetDevice = 2,
}

/// DESIGNATOR TYPE values.
pub mod designator_type {
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: u8 = 0x0;
    /// T10 vendor ID based.
    pub const T10_VENDOR_ID: u8 = 0x1;
    /// EUI-64 based.
    pub const EUI64: u8 = 0x2;
    /// NAA.
    pub const NAA: u8 = 0x3;
    /// Relative target port identifier.
    pub const RELATIVE_TARGET_PORT: u8 = 0x4;
    /// Target port group.
    pub const TARGET_PORT_GROUP: u8 = 0x5;
    /// Logical unit group.
    pub const LOGICAL_UNIT_GROUP: u8 = 0x6;
    /// MD5 logical unit identifier.
    pub const MD5_LU: u8 = 0x7;
    /// SCSI name string.
    pub const SCSI_NAME_STRING: u8 = 0x8;
    /// Protocol specific port identifier.
    pub const PROTOCOL_SPECIFIC_PORT: u8 = 0x9;
    /// UUID.
    pub const UUID: u8 = 0xA;
}

/// One designation descriptor of page 83h, borrowing its designator bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Designation<'a> {
    /// PROTOCOL IDENTIFIER (meaningful when `piv` is set).
    pub protocol_identifier: u8,
    /// CODE SET (raw; see [`CodeSet`]).
    pub code_set: u8,
    /// PIV: the protocol identifier is valid.
    pub piv: bool,
    /// ASSOCIATION (raw; see [`Association`]).
    pub association: u8,
    /// DESIGNATOR TYPE ([`designator_type`]).
    pub designator_type: u8,
    /// The DESIGNATOR bytes.
    pub designator: &'a [u8],
}

impl<'a> Designation<'a> {
    /// A descriptor from its parts, PIV clear, protocol 0.
    pub const fn new(
        code_set: CodeSet,
        association: Association,
        designator_type: u8,
        designator: &'a [u8],
    ) -> Self {
        Designation {
            protocol_identifier: 0,
            code_set: code_set as u8,
            piv: false,
            association: association as u8,
            designator_type,
            designator,
        }
    }

    /// An NAA designator (8 or 16 bytes, from [`naa5`]/[`naa6`]) for the LU.
    pub const fn naa(naa: &'a [u8]) -> Self {
        Self::new(
            CodeSet::Binary,
            Association::LogicalUnit,
            designator_type::NAA,
            naa,
        )
    }

    /// A T10 vendor ID designator: 8 bytes of vendor ID then the vendor
    /// specific identifier (build with [`t10_vendor_id`]).
    pub const fn t10_vendor_id(designator: &'a [u8]) -> Self {
        Self::new(
            CodeSet::Ascii,
            Association::LogicalUnit,
            designator_type::T10_VENDOR_ID,
            designator,
        )
    }

    /// A SCSI name string designator, UTF-8, already NUL padded to a
    /// multiple of 4 (see [`scsi_name_string`]).
    pub const fn scsi_name_string(association: Association, padded: &'a [u8]) -> Self {
        Self::new(
            CodeSet::Utf8,
            association,
            designator_type::SCSI_NAME_STRING,
            padded,
        )
    }

    /// Sets the protocol identifier and PIV.
    pub const fn with_protocol(mut self, protocol_identifier: u8) -> Self {
        self.protocol_identifier = protocol_identifier;
        self.piv = true;
        self
    }

    /// The 16-bit identifier of a relative target port, target port group
    /// or LU group designator (4 bytes: 2 reserved, 2 identifier).
    pub fn id16(&self) -> Option<u16> {
        match (self.designator_type, self.designator) {
            (
                designator_type::RELATIVE_TARGET_PORT
                | designator_type::TARGET_PORT_GROUP
                | designator_type::LOGICAL_UNIT_GROUP,
                [_, _, a, b],
            ) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// The SCSI name string without NUL padding, if this is one and valid UTF-8.
    pub fn name_string(&self) -> Option<&'a str> {
        if self.designator_type != designator_type::SCSI_NAME_STRING {
            return None;
        }
        let end = self
            .designator
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.designator.len());
        core::str::from_utf8(&self.designator[..end]).ok()
    }

    /// Appends the encoded descriptor to `out`; `None` if the designator
    /// exceeds 255 bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Option<()> {
        let len = u8::try_from(self.designator.len()).ok()?;
        out.push((self.protocol_identifier << 4) | (self.code_set & 0x0F));
        out.push(
            (self.piv as u8) << 7 | (self.association & 3) << 4 | (self.designator_type & 0x0F),
        );
        out.push(0);
        out.push(len);
        out.extend_from_slice(self.designator);
        Some(())
    }
}

/// 4-byte designator for a RELATIVE TARGET PORT, TARGET PORT GROUP or
/// LOGICAL UNIT GROUP.
pub const fn id16_designator(id: u16) -> [u8; 4] {
    let b = id.to_be_bytes();
    [0, 0, b[0], b[1]]
}

/// Relative target port designator descriptor (association: target port).
pub const fn relative_target_port(designator: &[u8; 4]) -> Designation<'_> {
    Designation::new(
        CodeSet::Binary,
        Association::TargetPort,
        designator_type::RELATIVE_TARGET_PORT,
        designator,
    )
}

/// Target port group designator descriptor (association: target port).
pub const fn target_port_group(designator: &[u8; 4]) -> Designation<'_> {
    Designation::new(
        CodeSet::Binary,
        Association::TargetPort,
        designator_type::TARGET_PORT_GROUP,
        designator,
    )
}

/// NAA IEEE Registered (type 5): 24-bit company ID, 36-bit vendor value.
pub const fn naa5(company_id: u32, vendor_specific: u64) -> [u8; 8] {
    let v = (0x5u64 << 60)
        | ((company_id as u64 & 0xFF_FFFF) << 36)
        | (vendor_specific & 0xF_FFFF_FFFF);
    v.to_be_bytes()
}

/// NAA IEEE Registered Extended (type 6): 24-bit company ID, 36-bit vendor
/// value, 64-bit extension.
pub const fn naa6(company_id: u32, vendor_specific: u64, extension: u64) -> [u8; 16] {
    let hi = naa5(company_id, vendor_specific);
    let lo = extension.to_be_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 8 {
        out[i] = hi[i];
        out[8 + i] = lo[i];
        i += 1;
    }
    out[0] = (out[0] & 0x0F) | 0x60;
    out
}

/// T10 vendor ID designator bytes: the vendor padded to 8, then `id`.
pub fn t10_vendor_id(vendor: &str, id: &str) -> Vec<u8> {
    let mut v = vec![b' '; 8 + id.len()];
    crate::util::put_ascii(&mut v[..8], vendor);
    crate::util::put_ascii(&mut v[8..], id);
    v
}

/// SCSI name string designator bytes: `name` then 1-4 NULs, so the length
/// is a multiple of 4 with at least one terminator (SPC-4 7.8.6.11).
/// Names longer than 251 bytes are truncated.
pub fn scsi_name_string(name: &str) -> Vec<u8> {
    let mut end = name.len().min(251);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut v = name.as_bytes()[..end].to_vec();
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// Page 83h from designation descriptors; `None` if one is too long or the
/// whole exceeds 65535 bytes.
pub fn device_identification(peripheral: u8, ds: &[Designation<'_>]) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    for d in ds {
        d.encode_into(&mut payload)?;
    }
    build_page(peripheral, page::DEVICE_IDENTIFICATION, &payload)
}

/// Iterates over the designation descriptors of page 83h's payload.
///
/// Stops at the first descriptor that does not fit in the remaining bytes.
#[derive(Debug, Clone)]
pub struct Designations<'a> {
    rest: &'a [u8],
}

impl<'a> Designations<'a> {
    /// Iterator over the descriptors of a whole 83h page (header included).
    pub fn parse(page_bytes: &'a [u8]) -> Result<Self> {
        let (h, payload) = parse_page(page_bytes)?;
        check_code(&h, page::DEVICE_IDENTIFICATION)?;
        Ok(Designations { rest: payload })
    }
}

impl<'a> Iterator for Designations<'a> {
    type Item = Designation<'a>;
    fn next(&mut self) -> Option<Designation<'a>> {
        let [b0, b1, _, len, ..] = *self.rest else {
            self.rest = &[];
            return None;
        };
        let Some(designator) = self.rest.get(4..4 + len as usize) else {
            self.rest = &[];
            return None;
        };
        self.rest = &self.rest[4 + len as usize..];
        Some(Designation {
            protocol_identifier: b0 >> 4,
            code_set: b0 & 0x0F,
            piv: b1 & 0x80 != 0,
            association: (b1 >> 4) & 3,
            designator_type: b1 & 0x0F,
            designator,
        })
    }
}

// ------------------------------------------------------------------ B0 ----

wire_struct! {
    /// Block Limits VPD page (B0h, SBC-3 6.5.3), 64 bytes with the header.
    pub struct BlockLimits {
        pub header: VpdHeader,
        /// Bit 0 WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is rejected.
        pub flags: u8,
        /// MAXIMUM COMPARE AND WRITE LENGTH (blocks).
        pub maximum_compare_and_write_length: u8,
        /// OPTIMAL TRANSFER LENGTH GRANULARITY (blocks).
        pub optimal_transfer_length_granularity: U16,
        /// MAXIMUM TRANSFER LENGTH (blocks, 0 = no limit).
        pub maximum_transfer_length: U32,
        /// OPTIMAL TRANSFER LENGTH (blocks).
        pub optimal_transfer_length: U32,
        /// MAXIMUM PREFETCH LENGTH (blocks).
        pub maximum_prefetch_length: U32,
        /// MAXIMUM UNMAP LBA COUNT.
        pub maximum_unmap_lba_count: U32,
        /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
        pub maximum_unmap_block_descriptor_count: U32,
        /// OPTIMAL UNMAP GRANULARITY.
        pub optimal_unmap_granularity: U32,
        /// Bit 31 UGAVALID, bits 30:0 UNMAP GRANULARITY ALIGNMENT.
        pub unmap_granularity_alignment: U32,
        /// MAXIMUM WRITE SAME LENGTH.
        pub maximum_write_same_length: U64,
        /// MAXIMUM ATOMIC TRANSFER LENGTH.
        pub maximum_atomic_transfer_length: U32,
        /// ATOMIC ALIGNMENT.
        pub atomic_alignment: U32,
        /// ATOMIC TRANSFER LENGTH GRANULARITY.
        pub atomic_transfer_length_granularity: U32,
        /// MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY.
        pub maximum_atomic_transfer_length_with_atomic_boundary: U32,
        /// MAXIMUM ATOMIC BOUNDARY SIZE.
        pub maximum_atomic_boundary_size: U32,
    }
}
const _: () = assert!(core::mem::size_of::<BlockLimits>() == 64);
flags!(BlockLimits {
    /// WSNZ: a WRITE SAME NUMBER OF LOGICAL BLOCKS of zero is not supported.
    wsnz, set_wsnz, with_wsnz: flags, 0x01;
});

impl BlockLimits {
    /// A zeroed page (no limits reported) with the header filled in.
    pub fn new(peripheral: u8) -> Self {
        let mut s = Self::new_zeroed();
        s.header = fixed_header(peripheral, page::BLOCK_LIMITS, 64);
        s
    }

    /// UNMAP GRANULARITY ALIGNMENT when UGAVALID is set.
    pub fn unmap_granularity_alignment(&self) -> Option<u32> {
        let v = self.unmap_granularity_alignment.get();
        (v & 0x8000_0000 != 0).then_some(v & 0x7FFF_FFFF)
    }

    /// Sets UNMAP GRANULARITY ALIGNMENT (31 bits) and UGAVALID, or clears both.
    pub fn set_unmap_granularity_alignment(&mut self, v: Option<u32>) {
        self.unmap_granularity_alignment
            .set(v.map_or(0, |a| 0x8000_0000 | (a & 0x7FFF_FFFF)));
    }

    /// Parses the page; a shorter page (older devices return 0x10 bytes of
    /// payload) reads the missing fields as zero.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        parse_fixed(buf, page::BLOCK_LIMITS)
    }
}

fn fixed_header(peripheral: u8, code: u8, total: u16) -> VpdHeader {
    VpdHeader {
        peripheral,
        page_code: code,
        page_length: U16::new(total - 4),
    }
}

fn parse_fixed<T: FromBytes + IntoBytes>(buf: &[u8], code: u8) -> Result<T> {
    let (h, payload) = parse_page(buf)?;
    check_code(&h, code)?;
    read_padded(&buf[..4 + payload.len()], 4)
}

// ------------------------------------------------------------------ B1 ----

/// MEDIUM ROTATION RATE value for non-rotating media (SSDs, RAM).
pub const NON_ROTATING_MEDIUM: u16 = 0x0001;

wire_struct! {
    /// Block Device Characteristics VPD page (B1h, SBC-3 6.5.2), 64 bytes.
    pub struct BlockDeviceCharacteristics {
        pub header: VpdHeader,
        /// MEDIUM ROTATION RATE (1 = non-rotating, else rpm).
        pub medium_rotation_rate: U16,
        /// PRODUCT TYPE.
        pub product_type: u8,
        /// Bits 7:6 WABEREQ, 5:4 WACEREQ, 3:0 NOMINAL FORM FACTOR.
        pub form: u8,
        /// Bit 1 FUAB, bit 0 VBULS (bits 5:4 ZONED in SBC-4).
        pub flags: u8,
        pub reserved: [u8; 55],
    }
}
const _: () = assert!(core::mem::size_of::<BlockDeviceCharacteristics>() == 64);
bits!(BlockDeviceCharacteristics {
    /// NOMINAL FORM FACTOR.
    nominal_form_factor, set_nominal_form_factor, with_nominal_form_factor: form, 0, 4;
});
flags!(BlockDeviceCharacteristics {
    /// FUAB: FUA on SYNCHRONIZE CACHE semantics (obsolete in SBC-4).
    fuab, set_fuab, with_fuab: flags, 0x02;
    /// VBULS: VERIFY with BYTCHK 0 checks only unmapped blocks' state.
    vbuls, set_vbuls, with_vbuls: flags, 0x01;
});

impl BlockDeviceCharacteristics {
    /// The page with MEDIUM ROTATION RATE `rate`.
    pub fn new(peripheral: u8, rate: u16) -> Self {
        let mut s = Self::new_zeroed();
        s.header = fixed_header(peripheral, page::BLOCK_DEVICE_CHARACTERISTICS, 64);
        s.medium_rotation_rate.set(rate);
        s
    }

    /// Parses the page (short pages padded with zeros).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        parse_fixed(buf, page::BLOCK_DEVICE_CHARACTERISTICS)
    }
}

// ------------------------------------------------------------------ B2 ----

/// PROVISIONING TYPE values (B2h byte 6 bits 2:0).
pub mod provisioning_type {
    /// Fully provisioned (or not reported).
    pub const FULL: u8 = 0;
    /// Resource provisioned.
    pub const RESOURCE: u8 = 1;
    /// Thin provisioned.
    pub const THIN: u8 = 2;
}

wire_struct! {
    /// Logical Block Provisioning VPD page (B2h, SBC-3 6.5.4), 8 bytes (no
    /// provisioning group descriptor).
    pub struct LogicalBlockProvisioning {
        pub header: VpdHeader,
        /// THRESHOLD EXPONENT.
        pub threshold_exponent: u8,
        /// Bit 7 LBPU, 6 LBPWS, 5 LBPWS10, 4:2 LBPRZ, 1 ANC_SUP, 0 DP.
        pub flags: u8,
        /// Bits 7:3 MINIMUM PERCENTAGE, 2:0 PROVISIONING TYPE.
        pub provisioning: u8,
        /// THRESHOLD PERCENTAGE.
        pub threshold_percentage: u8,
    }
}
const _: () = assert!(core::mem::size_of::<LogicalBlockProvisioning>() == 8);
flags!(LogicalBlockProvisioning {
    /// LBPU: UNMAP is supported.
    lbpu, set_lbpu, with_lbpu: flags, 0x80;
    /// LBPWS: WRITE SAME(16) with UNMAP is supported.
    lbpws, set_lbpws, with_lbpws: flags, 0x40;
    /// LBPWS10: WRITE SAME(10) with UNMAP is supported.
    lbpws10, set_lbpws10, with_lbpws10: flags, 0x20;
    /// ANC_SUP: anchored state supported.
    anc_sup, set_anc_sup, with_anc_sup: flags, 0x02;
    /// DP: a provisioning group descriptor follows.
    dp, set_dp, with_dp: flags, 0x01;
});
bits!(LogicalBlockProvisioning {
    /// LBPRZ: 001b means unmapped blocks read as zero (SBC-3's single
    /// bit is bit 2, the low bit of this field).
    lbprz, set_lbprz, with_lbprz: flags, 2, 3;
    /// PROVISIONING TYPE ([`provisioning_type`]).
    provisioning_type, set_provisioning_type, with_provisioning_type: provisioning, 0, 3;
    /// MINIMUM PERCENTAGE.
    minimum_percentage, set_minimum_percentage, with_minimum_percentage: provisioning, 3, 5;
});

impl LogicalBlockProvisioning {
    /// The page with every capability clear.
    pub fn new(peripheral: u8) -> Self {
        let mut s = Self::new_zeroed();
        s.header = fixed_header(peripheral, page::LOGICAL_BLOCK_PROVISIONING, 8);
        s
    }

    /// Parses the page; a provisioning group descriptor, if any, is ignored.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        parse_fixed(buf, page::LOGICAL_BLOCK_PROVISIONING)
    }
}

/// The supported page list of a page 00h.
pub fn parse_supported_pages(buf: &[u8]) -> Result<&[u8]> {
    let (h, payload) = parse_page(buf)?;
    check_code(&h, page::SUPPORTED_PAGES)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_pages_sorted_and_parsed() {
        let p = supported_pages(0, &[0xB2, 0x00, 0x83, 0x80, 0xB0, 0xB1, 0x83]);
        assert_eq!(p, vec![0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]);
        assert_eq!(
            parse_supported_pages(&p).unwrap(),
            &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]
        );
        // Truncated by allocation length: what is there.
        assert_eq!(parse_supported_pages(&p[..6]).unwrap(), &[0x00, 0x80]);
        assert!(parse_supported_pages(&p[..3]).is_err());
        assert!(parse_unit_serial_number(&p).is_err());
    }

    #[test]
    fn serial_number_round_trip() {
        let p = unit_serial_number(0, "SN0001");
        assert_eq!(p, b"\x00\x80\x00\x06SN0001");
        assert_eq!(parse_unit_serial_number(&p).unwrap(), "SN0001");
    }

    #[test]
    fn naa_designators_have_the_right_nibbles() {
        let n = naa6(0x00_1405, 0x1_2345_6789, 0xAABB_CCDD_EEFF_0011);
        assert_eq!(
            n,
            [
                0x60, 0x01, 0x40, 0x51, 0x23, 0x45, 0x67, 0x89, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
                0x00, 0x11
            ]
        );
        let n5 = naa5(0xABCDEF, 0xF_FFFF_FFFF);
        assert_eq!(n5, [0x5A, 0xBC, 0xDE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn device_identification_round_trip() {
        let naa = naa6(0x001405, 1, 2);
        let t10 = t10_vendor_id("SCSIPORT", "lu0");
        let name = scsi_name_string("iqn.2026-11.org.scsiport:t0,t,0x0001");
        let rtp = id16_designator(1);
        let tpg = id16_designator(0x10);
        let ds = [
            Designation::naa(&naa),
            Designation::t10_vendor_id(&t10),
            Designation::scsi_name_string(Association::TargetPort, &name)
                .with_protocol(protocol_id::ISCSI),
            relative_target_port(&rtp).with_protocol(protocol_id::ISCSI),
            target_port_group(&tpg),
        ];
        let page = device_identification(0, &ds).unwrap();
        assert_eq!(&page[..4], &[0, 0x83, 0, (page.len() - 4) as u8]);
        assert_eq!(&page[4..8], &[0x01, 0x03, 0x00, 16]);
        let back: Vec<_> = Designations::parse(&page).unwrap().collect();
        assert_eq!(back, ds);
        assert_eq!(
            back[2].name_string(),
            Some("iqn.2026-11.org.scsiport:t0,t,0x0001")
        );
        assert_eq!(back[2].designator.len() % 4, 0);
        assert_eq!(back[3].id16(), Some(1));
        assert_eq!(back[4].id16(), Some(0x10));
        assert_eq!(back[3].association, Association::TargetPort as u8);
        assert!(back[3].piv);
        // Cut in the middle of the last descriptor: the complete ones remain.
        let cut = &page[..page.len() - 2];
        assert_eq!(Designations::parse(cut).unwrap().count(), 4);
    }

    #[test]
    fn scsi_name_string_is_nul_terminated_and_padded() {
        assert_eq!(scsi_name_string("abc"), b"abc\0");
        assert_eq!(scsi_name_string("abcd"), b"abcd\0\0\0\0");
        assert_eq!(scsi_name_string(&"x".repeat(400)).len(), 252);
    }

    #[test]
    fn block_limits_layout() {
        let mut b = BlockLimits::new(0).with_wsnz(true);
        b.maximum_compare_and_write_length = 1;
        b.maximum_transfer_length.set(0x2000);
        b.maximum_unmap_lba_count.set(0xFFFF_FFFF);
        b.maximum_unmap_block_descriptor_count.set(256);
        b.set_unmap_granularity_alignment(Some(0));
        b.maximum_write_same_length.set(0x1_0000);
        let bytes = b.as_bytes();
        assert_eq!(&bytes[..8], &[0, 0xB0, 0, 0x3C, 1, 1, 0, 0]);
        assert_eq!(&bytes[8..12], &[0, 0, 0x20, 0]);
        assert_eq!(&bytes[20..24], &[0xFF; 4]);
        assert_eq!(&bytes[32..36], &[0x80, 0, 0, 0]);
        assert_eq!(&bytes[36..44], &[0, 0, 0, 0, 0, 1, 0, 0]);
        let back = BlockLimits::parse(bytes).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.unmap_granularity_alignment(), Some(0));
        // An old-style 0x10 payload parses with the rest zero.
        let mut old = bytes[..20].to_vec();
        old[3] = 0x10;
        let o = BlockLimits::parse(&old).unwrap();
        assert_eq!(o.maximum_transfer_length.get(), 0x2000);
        assert_eq!(o.maximum_unmap_lba_count.get(), 0);
        assert!(BlockLimits::parse(&[0, 0xB1, 0, 0]).is_err());
    }

    #[test]
    fn bdc_and_lbp_layout() {
        let b = BlockDeviceCharacteristics::new(0, NON_ROTATING_MEDIUM).with_nominal_form_factor(0);
        assert_eq!(&b.as_bytes()[..8], &[0, 0xB1, 0, 0x3C, 0, 1, 0, 0]);
        assert_eq!(BlockDeviceCharacteristics::parse(b.as_bytes()).unwrap(), b);
        let l = LogicalBlockProvisioning::new(0)
            .with_lbpu(true)
            .with_lbpws(true)
            .with_lbpws10(true)
            .with_lbprz(1)
            .with_provisioning_type(provisioning_type::THIN);
        assert_eq!(l.as_bytes(), &[0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
        let back = LogicalBlockProvisioning::parse(l.as_bytes()).unwrap();
        assert_eq!(back, l);
        assert!(back.lbpu() && back.lbpws() && !back.dp());
    }
}
