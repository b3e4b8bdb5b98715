//! Standard INQUIRY data (SPC-4 6.6.2) and peripheral device types.

use zerocopy::byteorder::big_endian::U16;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::Result;
use crate::util::{get_ascii, put_ascii, read_padded};

/// PERIPHERAL DEVICE TYPE values (byte 0 bits 4:0).
pub mod device_type {
    /// Direct access block device (SBC).
    pub const DIRECT_ACCESS: u8 = 0x00;
    /// Sequential access device (SSC).
    pub const SEQUENTIAL_ACCESS: u8 = 0x01;
    /// Processor device.
    pub const PROCESSOR: u8 = 0x03;
    /// CD/DVD device (MMC).
    pub const CD_DVD: u8 = 0x05;
    /// Optical memory device.
    pub const OPTICAL_MEMORY: u8 = 0x07;
    /// Media changer (SMC).
    pub const MEDIUM_CHANGER: u8 = 0x08;
    /// Storage array controller (SCC).
    pub const STORAGE_ARRAY_CONTROLLER: u8 = 0x0C;
    /// Enclosure services device (SES).
    pub const ENCLOSURE_SERVICES: u8 = 0x0D;
    /// Simplified direct-access device (RBC).
    pub const SIMPLIFIED_DIRECT_ACCESS: u8 = 0x0E;
    /// Host managed zoned block device (ZBC).
    pub const HOST_MANAGED_ZONED: u8 = 0x14;
    /// Well known logical unit.
    pub const WELL_KNOWN_LU: u8 = 0x1E;
    /// Unknown or no device type.
    pub const UNKNOWN: u8 = 0x1F;
}

/// PERIPHERAL QUALIFIER values (byte 0 bits 7:5).
pub mod peripheral_qualifier {
    /// A device of the type is connected to this logical unit.
    pub const CONNECTED: u8 = 0;
    /// The device server can support this type, but none is connected.
    pub const NOT_CONNECTED: u8 = 1;
    /// The device server cannot support a device at this logical unit.
    pub const NOT_CAPABLE: u8 = 3;
}

/// The peripheral byte (byte 0 of INQUIRY data and of every VPD page).
pub const fn peripheral_byte(qualifier: u8, device_type: u8) -> u8 {
    (qualifier << 5) | (device_type & 0x1F)
}

/// Byte 0 for a LUN that is not supported: qualifier 011b, type 1Fh.
pub const PERIPHERAL_LUN_NOT_SUPPORTED: u8 = 0x7F;

/// VERSION values (byte 2).
pub mod version {
    /// SPC-3.
    pub const SPC_3: u8 = 0x05;
    /// SPC-4.
    pub const SPC_4: u8 = 0x06;
    /// SPC-5.
    pub const SPC_5: u8 = 0x07;
}

/// VERSION DESCRIPTOR values (SPC-4 table 29); the "no version claimed" codes.
pub mod version_descriptor {
    /// SAM-5.
    pub const SAM_5: u16 = 0x00A0;
    /// SPC-3.
    pub const SPC_3: u16 = 0x0300;
    /// SPC-4.
    pub const SPC_4: u16 = 0x0460;
    /// SPC-5.
    pub const SPC_5: u16 = 0x05C0;
    /// SBC-2.
    pub const SBC_2: u16 = 0x0320;
    /// SBC-3.
    pub const SBC_3: u16 = 0x04C0;
    /// SBC-4.
    pub const SBC_4: u16 = 0x0600;
    /// iSCSI.
    pub const ISCSI: u16 = 0x0960;
}

/// TPGS values (byte 5 bits 5:4): asymmetric logical unit access support.
pub mod tpgs {
    /// No ALUA.
    pub const NONE: u8 = 0;
    /// Implicit ALUA only.
    pub const IMPLICIT: u8 = 1;
    /// Explicit ALUA only (SET TARGET PORT GROUPS).
    pub const EXPLICIT: u8 = 2;
    /// Both.
    pub const BOTH: u8 = 3;
}

wire_struct! {
    /// Standard INQUIRY data, 96 bytes with the version descriptors.
    ///
    /// The first 36 bytes are the minimum every device returns; bytes 58-73
    /// hold eight VERSION DESCRIPTORs.
    pub struct StandardInquiry {
        /// PERIPHERAL QUALIFIER (7:5) and PERIPHERAL DEVICE TYPE (4:0).
        pub peripheral: u8,
        /// Bit 7 RMB, bit 6 LU_CONG.
        pub flags1: u8,
        /// VERSION ([`version`]).
        pub version: u8,
        /// Bit 5 NORMACA, bit 4 HISUP, bits 3:0 RESPONSE DATA FORMAT (2).
        pub flags3: u8,
        /// ADDITIONAL LENGTH (n - 4).
        pub additional_length: u8,
        /// Bit 7 SCCS, 6 ACC, 5:4 TPGS, 3 3PC, 0 PROTECT.
        pub flags5: u8,
        /// Bit 6 ENCSERV, 5 VS, 4 MULTIP.
        pub flags6: u8,
        /// Bit 1 CMDQUE.
        pub flags7: u8,
        /// T10 VENDOR IDENTIFICATION (ASCII).
        pub t10_vendor_identification: [u8; 8],
        /// PRODUCT IDENTIFICATION (ASCII).
        pub product_identification: [u8; 16],
        /// PRODUCT REVISION LEVEL (ASCII).
        pub product_revision_level: [u8; 4],
        /// Vendor specific (bytes 36-55), conventionally ASCII.
        pub vendor_specific: [u8; 20],
        /// Obsolete SPI bits.
        pub flags56: u8,
        pub reserved57: u8,
        /// VERSION DESCRIPTOR 1-8.
        pub version_descriptors: [U16; 8],
        pub reserved74: [u8; 22],
    }
}
const _: () = assert!(core::mem::size_of::<StandardInquiry>() == StandardInquiry::LEN);

flags!(StandardInquiry {
    /// RMB: removable medium.
    rmb, set_rmb, with_rmb: flags1, 0x80;
    /// NORMACA: the NACA bit in CONTROL is supported.
    normaca, set_normaca, with_normaca: flags3, 0x20;
    /// HISUP: hierarchical LUN addressing.
    hisup, set_hisup, with_hisup: flags3, 0x10;
    /// SCCS: embedded storage array controller.
    sccs, set_sccs, with_sccs: flags5, 0x80;
    /// ACC: access controls coordinator.
    acc, set_acc, with_acc: flags5, 0x40;
    /// 3PC: third-party copy (EXTENDED COPY) supported.
    tpc, set_tpc, with_tpc: flags5, 0x08;
    /// PROTECT: protection information supported.
    protect, set_protect, with_protect: flags5, 0x01;
    /// ENCSERV: embedded enclosure services.
    encserv, set_encserv, with_encserv: flags6, 0x40;
    /// MULTIP: multi-port device.
    multip, set_multip, with_multip: flags6, 0x10;
    /// CMDQUE: command queuing (SAM-5 task management model).
    cmdque, set_cmdque, with_cmdque: flags7, 0x02;
});
bits!(StandardInquiry {
    /// PERIPHERAL QUALIFIER.
    peripheral_qualifier, set_peripheral_qualifier, with_peripheral_qualifier: peripheral, 5, 3;
    /// PERIPHERAL DEVICE TYPE.
    peripheral_device_type, set_peripheral_device_type, with_peripheral_device_type: peripheral, 0, 5;
    /// RESPONSE DATA FORMAT (always 2).
    response_data_format, set_response_data_format, with_response_data_format: flags3, 0, 4;
    /// TPGS ([`tpgs`]).
    tpgs, set_tpgs, with_tpgs: flags5, 4, 2;
});

impl StandardInquiry {
    /// Full length of this layout.
    pub const LEN: usize = 96;
    /// Minimum length a device returns and an initiator accepts.
    pub const MIN_LEN: usize = 36;

    /// INQUIRY data for a connected device of `device_type`: SPC-4, response
    /// format 2, HISUP and CMDQUE set, ADDITIONAL LENGTH covering 96 bytes,
    /// identification fields blank.
    pub fn new(device_type: u8) -> Self {
        let mut s = Self::new_zeroed()
            .with_peripheral_device_type(device_type)
            .with_response_data_format(2)
            .with_hisup(true)
            .with_cmdque(true);
        s.version = version::SPC_4;
        s.additional_length = (Self::LEN - 5) as u8;
        put_ascii(&mut s.t10_vendor_identification, "");
        put_ascii(&mut s.product_identification, "");
        put_ascii(&mut s.product_revision_level, "");
        s
    }

    /// Sets T10 VENDOR IDENTIFICATION (space padded, truncated to 8).
    pub fn with_vendor(mut self, v: &str) -> Self {
        put_ascii(&mut self.t10_vendor_identification, v);
        self
    }

    /// Sets PRODUCT IDENTIFICATION (space padded, truncated to 16).
    pub fn with_product(mut self, v: &str) -> Self {
        put_ascii(&mut self.product_identification, v);
        self
    }

    /// Sets PRODUCT REVISION LEVEL (space padded, truncated to 4).
    pub fn with_revision(mut self, v: &str) -> Self {
        put_ascii(&mut self.product_revision_level, v);
        self
    }

    /// Sets the version descriptors (at most 8 are kept; the rest are zero).
    pub fn with_version_descriptors(mut self, ds: &[u16]) -> Self {
        for (i, slot) in self.version_descriptors.iter_mut().enumerate() {
            slot.set(ds.get(i).copied().unwrap_or(0));
        }
        self
    }

    /// T10 VENDOR IDENTIFICATION without padding.
    pub fn vendor(&self) -> String {
        get_ascii(&self.t10_vendor_identification)
    }

    /// PRODUCT IDENTIFICATION without padding.
    pub fn product(&self) -> String {
        get_ascii(&self.product_identification)
    }

    /// PRODUCT REVISION LEVEL without padding.
    pub fn revision(&self) -> String {
        get_ascii(&self.product_revision_level)
    }

    /// The non-zero version descriptors.
    pub fn version_descriptor_list(&self) -> impl Iterator<Item = u16> + '_ {
        self.version_descriptors
            .iter()
            .map(|d| d.get())
            .filter(|&d| d != 0)
    }

    /// Parses INQUIRY data of at least 36 bytes. Bytes past ADDITIONAL
    /// LENGTH, or past the end of a shorter buffer, read as zero.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        crate::error::need(buf, Self::MIN_LEN)?;
        let n = buf.len().min(5 + buf[4] as usize).max(Self::MIN_LEN);
        read_padded(&buf[..n], Self::MIN_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_known_first_bytes_and_round_trips() {
        let inq = StandardInquiry::new(device_type::DIRECT_ACCESS)
            .with_vendor("SCSIPORT")
            .with_product("RAM DISK")
            .with_revision("0.1")
            .with_tpgs(tpgs::IMPLICIT)
            .with_version_descriptors(&[
                version_descriptor::SAM_5,
                version_descriptor::SPC_4,
                version_descriptor::SBC_3,
                version_descriptor::ISCSI,
            ]);
        let b = inq.as_bytes();
        assert_eq!(b.len(), 96);
        assert_eq!(&b[..8], &[0x00, 0x00, 0x06, 0x12, 91, 0x10, 0x00, 0x02]);
        assert_eq!(&b[8..16], b"SCSIPORT");
        assert_eq!(&b[16..32], b"RAM DISK        ");
        assert_eq!(&b[32..36], b"0.1 ");
        assert_eq!(&b[58..62], &[0x00, 0xA0, 0x04, 0x60]);
        let back = StandardInquiry::parse(b).unwrap();
        assert_eq!(back, inq);
        assert_eq!(back.vendor(), "SCSIPORT");
        assert_eq!(back.product(), "RAM DISK");
        assert_eq!(back.revision(), "0.1");
        assert_eq!(back.tpgs(), tpgs::IMPLICIT);
        assert_eq!(
            back.version_descriptor_list().collect::<Vec<_>>(),
            vec![0x00A0, 0x0460, 0x04C0, 0x0960]
        );
    }

    #[test]
    fn parse_accepts_36_bytes_and_rejects_less() {
        let inq = StandardInquiry::new(device_type::CD_DVD).with_rmb(true);
        let b = inq.as_bytes();
        assert!(StandardInquiry::parse(&b[..35]).is_err());
        let short = StandardInquiry::parse(&b[..36]).unwrap();
        assert!(short.rmb());
        assert_eq!(short.peripheral_device_type(), device_type::CD_DVD);
        assert_eq!(short.version_descriptor_list().count(), 0);
        // ADDITIONAL LENGTH shorter than the buffer bounds what is read.
        let mut v = b.to_vec();
        v[4] = 31;
        v[58] = 0x04;
        assert_eq!(
            StandardInquiry::parse(&v).unwrap().version_descriptors[0].get(),
            0
        );
    }

    #[test]
    fn identification_fields_are_sanitized() {
        let inq = StandardInquiry::new(0).with_vendor("tooLongVendorName\u{7}");
        assert_eq!(&inq.t10_vendor_identification, b"tooLongV");
        let inq = StandardInquiry::new(0).with_product("a\tb");
        assert_eq!(inq.product(), "a b");
        assert_eq!(
            peripheral_byte(peripheral_qualifier::NOT_CAPABLE, device_type::UNKNOWN),
            PERIPHERAL_LUN_NOT_SUPPORTED
        );
    }
}
