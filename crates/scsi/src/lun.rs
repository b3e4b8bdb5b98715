//! Logical unit numbers (SAM-5 4.7) and REPORT LUNS parameter data (SPC-4 6.33).

use core::fmt;

use zerocopy::byteorder::big_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError, need};

/// SELECT REPORT values of the REPORT LUNS CDB.
pub mod select_report {
    /// All logical units except well-known ones.
    pub const ALL_LOGICAL_UNITS: u8 = 0x00;
    /// Well-known logical units only.
    pub const WELL_KNOWN_ONLY: u8 = 0x01;
    /// All logical units, well-known included.
    pub const ALL: u8 = 0x02;
    /// The administrative logical unit(s).
    pub const ADMINISTRATIVE: u8 = 0x10;
    /// Top-level logical units (conglomerates).
    pub const TOP_LEVEL: u8 = 0x11;
    /// Logical units in the same conglomerate.
    pub const SAME_CONGLOMERATE: u8 = 0x12;
}

/// ADDRESS METHOD of the first level of a LUN (byte 0 bits 7:6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressMethod {
    /// 00b: peripheral device addressing (bus identifier, 8-bit LUN).
    Peripheral,
    /// 01b: flat space addressing (14-bit LUN).
    Flat,
    /// 10b: logical unit addressing (target, bus, LUN).
    LogicalUnit,
    /// 11b: extended addressing (well-known LUNs and longer formats).
    Extended,
}

/// An 8-byte LUN as it travels on the wire.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(transparent)]
pub struct Lun(pub [u8; 8]);
const _: () = assert!(core::mem::size_of::<Lun>() == 8);

impl Lun {
    /// LUN 0.
    pub const ZERO: Lun = Lun([0; 8]);
    /// The REPORT LUNS well-known logical unit (C101h).
    pub const REPORT_LUNS_WLUN: Lun = Lun([0xC1, 0x01, 0, 0, 0, 0, 0, 0]);

    /// The single-level LUN for `n`: peripheral addressing for 0-255, flat
    /// space addressing for 256-16383 (what Linux and Windows expect);
    /// `None` above 16383.
    pub const fn from_index(n: u16) -> Option<Lun> {
        if n < 256 {
            Some(Lun([0, n as u8, 0, 0, 0, 0, 0, 0]))
        } else if n < 0x4000 {
            Some(Lun([0x40 | (n >> 8) as u8, n as u8, 0, 0, 0, 0, 0, 0]))
        } else {
            None
        }
    }

    /// The single-level LUN number for peripheral (bus 0) or flat addressing;
    /// `None` for other methods, non-zero bus identifiers or multi-level LUNs.
    pub fn to_index(&self) -> Option<u16> {
        let b = self.0;
        if b[2..] != [0; 6] {
            return None;
        }
        match b[0] >> 6 {
            0b00 if b[0] == 0 => Some(b[1] as u16),
            0b01 => Some((((b[0] & 0x3F) as u16) << 8) | b[1] as u16),
            _ => None,
        }
    }

    /// ADDRESS METHOD of the first level.
    pub const fn address_method(&self) -> AddressMethod {
        match self.0[0] >> 6 {
            0 => AddressMethod::Peripheral,
            1 => AddressMethod::Flat,
            2 => AddressMethod::LogicalUnit,
            _ => AddressMethod::Extended,
        }
    }

    /// True for a well-known LUN (extended addressing, byte 0 = C1h).
    pub const fn is_well_known(&self) -> bool {
        self.0[0] == 0xC1
    }

    /// The LUN as a big-endian 64-bit value (iSCSI carries it this way).
    pub const fn to_u64(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// From a big-endian 64-bit value.
    pub const fn from_u64(v: u64) -> Lun {
        Lun(v.to_be_bytes())
    }

    /// The 8 wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads 8 bytes.
    pub fn parse(buf: &[u8]) -> Result<Lun> {
        need(buf, 8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[..8]);
        Ok(Lun(b))
    }
}

impl fmt::Debug for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_index() {
            Some(n) => write!(f, "Lun({n})"),
            None => write!(f, "Lun({:016x})", self.to_u64()),
        }
    }
}

impl fmt::Display for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_index() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "{:016x}", self.to_u64()),
        }
    }
}

/// REPORT LUNS parameter data: 8-byte header then the LUN list.
pub fn report_luns_data(luns: &[Lun]) -> Vec<u8> {
    let len = luns.len().saturating_mul(8).min(u32::MAX as usize & !7);
    let n = len / 8;
    let mut v = Vec::with_capacity(8 + len);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(luns[..n].as_bytes());
    v
}

/// Parsed REPORT LUNS parameter data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLunsData<'a> {
    /// LUN LIST LENGTH as reported (may exceed what was transferred).
    pub lun_list_length: u32,
    /// The complete LUN entries present in the buffer.
    pub luns: &'a [Lun],
}

impl<'a> ReportLunsData<'a> {
    /// Parses the data; entries beyond LUN LIST LENGTH or the buffer are
    /// not returned (compare `lun_list_length` to see if a larger
    /// allocation is needed).
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        need(buf, 8)?;
        let (h, rest) = U32::read_from_prefix(buf).map_err(|_| WireError::Truncated {
            needed: 8,
            available: buf.len(),
        })?;
        let list = &rest[4..];
        let n = (h.get() as usize).min(list.len()) / 8;
        let luns = <[Lun]>::ref_from_bytes(&list[..n * 8]).map_err(|_| WireError::Truncated {
            needed: n * 8,
            available: list.len(),
        })?;
        Ok(ReportLunsData {
            lun_list_length: h.get(),
            luns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_encoding_peripheral_and_flat() {
        assert_eq!(Lun::from_index(0).unwrap(), Lun::ZERO);
        assert_eq!(Lun::from_index(5).unwrap().0, [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Lun::from_index(256).unwrap().0,
            [0x41, 0x00, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Lun::from_index(0x3FFF).unwrap().0,
            [0x7F, 0xFF, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Lun::from_index(0x4000), None);
        for n in [0u16, 1, 255, 256, 1000, 0x3FFF] {
            assert_eq!(Lun::from_index(n).unwrap().to_index(), Some(n));
        }
        assert_eq!(Lun::REPORT_LUNS_WLUN.to_index(), None);
        assert!(Lun::REPORT_LUNS_WLUN.is_well_known());
        assert_eq!(
            Lun::REPORT_LUNS_WLUN.address_method(),
            AddressMethod::Extended
        );
        assert_eq!(
            Lun([0x01, 0x02, 0, 0, 0, 0, 0, 0]).to_index(),
            None,
            "bus 1"
        );
        assert_eq!(Lun([0, 1, 0, 2, 0, 0, 0, 0]).to_index(), None, "two levels");
        assert_eq!(
            Lun::from_u64(0x0001_0000_0000_0000),
            Lun::from_index(1).unwrap()
        );
        assert_eq!(format!("{:?}", Lun::from_index(7).unwrap()), "Lun(7)");
        assert!(Lun::parse(&[0; 7]).is_err());
    }

    #[test]
    fn report_luns_round_trip_and_truncation() {
        let luns = [
            Lun::ZERO,
            Lun::from_index(1).unwrap(),
            Lun::from_index(300).unwrap(),
        ];
        let d = report_luns_data(&luns);
        assert_eq!(&d[..8], &[0, 0, 0, 24, 0, 0, 0, 0]);
        assert_eq!(d.len(), 32);
        let p = ReportLunsData::parse(&d).unwrap();
        assert_eq!(p.luns, &luns);
        // Allocation length 16: header plus one LUN; the length still says 24.
        let p = ReportLunsData::parse(&d[..20]).unwrap();
        assert_eq!((p.lun_list_length, p.luns.len()), (24, 1));
        assert!(ReportLunsData::parse(&d[..7]).is_err());
        assert_eq!(report_luns_data(&[]), vec![0; 8]);
    }
}
