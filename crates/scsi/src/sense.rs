//! Sense data (SPC-4 4.5): sense keys, the decoded [`Sense`] value, and
//! its fixed (0x70/0x71) and descriptor (0x72/0x73) encodings.
//!
//! A device server builds a [`Sense`], then encodes it in the format the
//! initiator selected (control mode page D_SENSE) with [`Sense::encode`].
//! Encoding writes into a [`SenseBuffer`] on the stack, so completing a
//! command with CHECK CONDITION does not allocate. [`Sense::parse`] reads
//! either format back, tolerating truncated buffers.

use core::fmt;

use crate::asc::Asc;
use crate::error::{Result, WireError};

/// Sense key: byte 2 bits 3:0 (fixed) or byte 1 bits 3:0 (descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenseKey {
    /// No specific sense key information.
    NoSense = 0x0,
    /// Completed with recovery action.
    RecoveredError = 0x1,
    /// The logical unit is not accessible.
    NotReady = 0x2,
    /// Unrecovered medium error.
    MediumError = 0x3,
    /// Non-recoverable hardware failure.
    HardwareError = 0x4,
    /// Invalid CDB or parameter data.
    IllegalRequest = 0x5,
    /// Unit attention condition reported.
    UnitAttention = 0x6,
    /// Access denied (write protect, reservation of the medium, ...).
    DataProtect = 0x7,
    /// Blank or end-of-data medium.
    BlankCheck = 0x8,
    /// Vendor specific.
    VendorSpecific = 0x9,
    /// EXTENDED COPY aborted.
    CopyAborted = 0xA,
    /// The device server aborted the command.
    AbortedCommand = 0xB,
    /// Reserved (formerly EQUAL).
    Reserved = 0xC,
    /// Buffered device reached end of partition.
    VolumeOverflow = 0xD,
    /// Source data did not match the medium.
    Miscompare = 0xE,
    /// Command completed; sense data reports a condition.
    Completed = 0xF,
}

impl SenseKey {
    /// Decodes the low nibble of `v`; every value has a key.
    pub const fn from_nibble(v: u8) -> SenseKey {
        match v & 0x0F {
            0x0 => SenseKey::NoSense,
            0x1 => SenseKey::RecoveredError,
            0x2 => SenseKey::NotReady,
            0x3 => SenseKey::MediumError,
            0x4 => SenseKey::HardwareError,
            0x5 => SenseKey::IllegalRequest,
            0x6 => SenseKey::UnitAttention,
            0x7 => SenseKey::DataProtect,
            0x8 => SenseKey::BlankCheck,
            0x9 => SenseKey::VendorSpecific,
            0xA => SenseKey::CopyAborted,
            0xB => SenseKey::AbortedCommand,
            0xC => SenseKey::Reserved,
            0xD => SenseKey::VolumeOverflow,
            0xE => SenseKey::Miscompare,
            _ => SenseKey::Completed,
        }
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Response codes (byte 0 bits 6:0).
pub mod response_code {
    /// Fixed format, current error.
    pub const FIXED_CURRENT: u8 = 0x70;
    /// Fixed format, deferred error.
    pub const FIXED_DEFERRED: u8 = 0x71;
    /// Descriptor format, current error.
    pub const DESCRIPTOR_CURRENT: u8 = 0x72;
    /// Descriptor format, deferred error.
    pub const DESCRIPTOR_DEFERRED: u8 = 0x73;
}

/// Sense data descriptor types (SPC-4 4.5.2.1).
pub mod descriptor_type {
    /// Information.
    pub const INFORMATION: u8 = 0x00;
    /// Command-specific information.
    pub const COMMAND_SPECIFIC: u8 = 0x01;
    /// Sense key specific.
    pub const SENSE_KEY_SPECIFIC: u8 = 0x02;
    /// Field replaceable unit.
    pub const FRU: u8 = 0x03;
    /// Stream commands (FILEMARK, EOM, ILI).
    pub const STREAM_COMMANDS: u8 = 0x04;
    /// Block commands (ILI).
    pub const BLOCK_COMMANDS: u8 = 0x05;
}

/// The format an initiator receives sense data in (control mode page D_SENSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SenseFormat {
    /// Fixed format, 18 bytes (D_SENSE = 0).
    #[default]
    Fixed,
    /// Descriptor format (D_SENSE = 1).
    Descriptor,
}

/// The 3-byte SENSE KEY SPECIFIC field; its meaning depends on the sense key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKeySpecific {
    /// ILLEGAL REQUEST: which byte (and bit) of the CDB or parameter list is wrong.
    FieldPointer {
        /// C/D: true when the field is in the CDB, false for the parameter data.
        cdb: bool,
        /// BIT POINTER, present when BPV is set (0..=7).
        bit: Option<u8>,
        /// FIELD POINTER: the byte offset.
        field: u16,
    },
    /// RECOVERED, MEDIUM or HARDWARE ERROR: ACTUAL RETRY COUNT.
    ActualRetryCount(u16),
    /// NO SENSE or NOT READY: PROGRESS INDICATION (fraction of 65536).
    Progress(u16),
    /// COPY ABORTED: segment descriptor pointer.
    SegmentPointer {
        /// SD: the pointer refers to a segment descriptor.
        sd: bool,
        /// BIT POINTER when BPV is set.
        bit: Option<u8>,
        /// FIELD POINTER.
        field: u16,
    },
    /// UNIT ATTENTION: the unit attention condition queue overflowed.
    UnitAttentionQueueOverflow(bool),
    /// Any other sense key: the three bytes as found, SKSV included.
    Raw([u8; 3]),
}

impl SenseKeySpecific {
    /// Field pointer into the CDB: byte `field`, optionally bit `bit`.
    pub const fn cdb(field: u16, bit: Option<u8>) -> Self {
        SenseKeySpecific::FieldPointer {
            cdb: true,
            bit,
            field,
        }
    }

    /// Field pointer into the parameter list: byte `field`, optionally bit `bit`.
    pub const fn parameter(field: u16, bit: Option<u8>) -> Self {
        SenseKeySpecific::FieldPointer {
            cdb: false,
            bit,
            field,
        }
    }

    /// The three wire bytes, SKSV set.
    pub fn to_bytes(self) -> [u8; 3] {
        fn ptr(flag: u8, bit: Option<u8>, field: u16) -> [u8; 3] {
            let bpv = match bit {
                Some(b) => 0x08 | (b & 0x07),
                None => 0,
            };
            let f = field.to_be_bytes();
            [0x80 | flag | bpv, f[0], f[1]]
        }
        match self {
            SenseKeySpecific::FieldPointer { cdb, bit, field } => {
                ptr(if cdb { 0x40 } else { 0 }, bit, field)
            }
            SenseKeySpecific::SegmentPointer { sd, bit, field } => {
                ptr(if sd { 0x20 } else { 0 }, bit, field)
            }
            SenseKeySpecific::ActualRetryCount(v) | SenseKeySpecific::Progress(v) => {
                let b = v.to_be_bytes();
                [0x80, b[0], b[1]]
            }
            SenseKeySpecific::UnitAttentionQueueOverflow(o) => [0x80 | o as u8, 0, 0],
            SenseKeySpecific::Raw(b) => [b[0] | 0x80, b[1], b[2]],
        }
    }

    /// Decodes three wire bytes for `key`; `None` when SKSV is clear.
    pub fn from_bytes(key: SenseKey, b: [u8; 3]) -> Option<Self> {
        if b[0] & 0x80 == 0 {
            return None;
        }
        let field = u16::from_be_bytes([b[1], b[2]]);
        let bit = (b[0] & 0x08 != 0).then_some(b[0] & 0x07);
        Some(match key {
            SenseKey::IllegalRequest => SenseKeySpecific::FieldPointer {
                cdb: b[0] & 0x40 != 0,
                bit,
                field,
            },
            SenseKey::RecoveredError | SenseKey::MediumError | SenseKey::HardwareError => {
                SenseKeySpecific::ActualRetryCount(field)
            }
            SenseKey::NoSense | SenseKey::NotReady => SenseKeySpecific::Progress(field),
            SenseKey::CopyAborted => SenseKeySpecific::SegmentPointer {
                sd: b[0] & 0x20 != 0,
                bit,
                field,
            },
            SenseKey::UnitAttention => SenseKeySpecific::UnitAttentionQueueOverflow(b[0] & 1 != 0),
            _ => SenseKeySpecific::Raw(b),
        })
    }
}

/// Decoded sense data, independent of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    /// SENSE KEY.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE and QUALIFIER.
    pub asc: Asc,
    /// True for a deferred error (response code 0x71/0x73).
    pub deferred: bool,
    /// INFORMATION (e.g. the first bad LBA, or the miscompare offset).
    ///
    /// The fixed format holds 32 bits; a larger value is sent with VALID = 0
    /// and a zero field, as SPC-4 4.5.3 requires.
    pub information: Option<u64>,
    /// COMMAND-SPECIFIC INFORMATION (32 bits in the fixed format, where
    /// zero means "absent").
    pub command_specific: Option<u64>,
    /// SENSE KEY SPECIFIC, when SKSV is set.
    pub sense_key_specific: Option<SenseKeySpecific>,
    /// FIELD REPLACEABLE UNIT CODE (0 = none).
    pub fru: u8,
    /// FILEMARK (stream devices).
    pub filemark: bool,
    /// EOM (stream devices).
    pub eom: bool,
    /// ILI: incorrect length indicator.
    pub ili: bool,
    /// SDAT_OVFL: the sense data did not fit and was truncated.
    pub sdat_ovfl: bool,
}

/// Largest encoding [`Sense::encode`] produces, in bytes.
pub const SENSE_BUFFER_CAPACITY: usize = 64;

/// Encoded sense data on the stack; dereferences to the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SenseBuffer {
    buf: [u8; SENSE_BUFFER_CAPACITY],
    len: u8,
}

impl SenseBuffer {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Copies as much as fits into `out` (sense data is truncated to the
    /// initiator's buffer or allocation length); returns the bytes copied.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len as usize);
        out[..n].copy_from_slice(&self.buf[..n]);
        n
    }

    fn push(&mut self, bytes: &[u8]) {
        let start = self.len as usize;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }
}

impl core::ops::Deref for SenseBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for SenseBuffer {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for SenseBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenseBuffer({:02x?})", self.as_bytes())
    }
}

/// Length of fixed-format sense data as this crate encodes it.
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// Sense data with just a key and ASC/ASCQ, current error.
    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Sense {
            key,
            asc,
            deferred: false,
            information: None,
            command_specific: None,
            sense_key_specific: None,
            fru: 0,
            filemark: false,
            eom: false,
            ili: false,
            sdat_ovfl: false,
        }
    }

    /// NO SENSE / NO ADDITIONAL SENSE INFORMATION (REQUEST SENSE with nothing pending).
    pub const fn no_sense() -> Self {
        Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE)
    }

    /// ILLEGAL REQUEST with `asc` and no field pointer.
    pub const fn illegal_request(asc: Asc) -> Self {
        Sense::new(SenseKey::IllegalRequest, asc)
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at CDB byte `field` (bit `bit`).
    pub const fn invalid_field_in_cdb(field: u16, bit: Option<u8>) -> Self {
        Sense::new(SenseKey::IllegalRequest, Asc::INVALID_FIELD_IN_CDB)
            .with_sense_key_specific(SenseKeySpecific::cdb(field, bit))
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at parameter byte `field`.
    pub const fn invalid_field_in_parameter_list(field: u16, bit: Option<u8>) -> Self {
        Sense::new(
            SenseKey::IllegalRequest,
            Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        )
        .with_sense_key_specific(SenseKeySpecific::parameter(field, bit))
    }

    /// UNIT ATTENTION with `asc`.
    pub const fn unit_attention(asc: Asc) -> Self {
        Sense::new(SenseKey::UnitAttention, asc)
    }

    /// MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION with INFORMATION set
    /// to the byte offset of the first mismatch.
    pub const fn miscompare(offset: u64) -> Self {
        Sense::new(
            SenseKey::Miscompare,
            Asc::MISCOMPARE_DURING_VERIFY_OPERATION,
        )
        .with_information(offset)
    }

    /// Sets INFORMATION.
    pub const fn with_information(mut self, v: u64) -> Self {
        self.information = Some(v);
        self
    }

    /// Sets COMMAND-SPECIFIC INFORMATION.
    pub const fn with_command_specific(mut self, v: u64) -> Self {
        self.command_specific = Some(v);
        self
    }

    /// Sets SENSE KEY SPECIFIC.
    pub const fn with_sense_key_specific(mut self, s: SenseKeySpecific) -> Self {
        self.sense_key_specific = Some(s);
        self
    }

    /// Sets ILI.
    pub const fn with_ili(mut self) -> Self {
        self.ili = true;
        self
    }

    /// Marks the error as deferred.
    pub const fn deferred(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// The field pointer, when the sense key specific field holds one.
    pub fn field_pointer(&self) -> Option<(bool, u16, Option<u8>)> {
        match self.sense_key_specific {
            Some(SenseKeySpecific::FieldPointer { cdb, bit, field }) => Some((cdb, field, bit)),
            _ => None,
        }
    }

    /// Encodes in `format`.
    pub fn encode(&self, format: SenseFormat) -> SenseBuffer {
        match format {
            SenseFormat::Fixed => self.encode_fixed(),
            SenseFormat::Descriptor => self.encode_descriptor(),
        }
    }

    /// Fixed format (response code 0x70/0x71), always 18 bytes.
    pub fn encode_fixed(&self) -> SenseBuffer {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = if self.deferred {
            response_code::FIXED_DEFERRED
        } else {
            response_code::FIXED_CURRENT
        };
        if let Some(info) = self.information
            && let Ok(v) = u32::try_from(info)
        {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&v.to_be_bytes());
        }
        b[2] = self.key.as_u8()
            | (self.filemark as u8) << 7
            | (self.eom as u8) << 6
            | (self.ili as u8) << 5
            | (self.sdat_ovfl as u8) << 4;
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        if let Some(c) = self.command_specific {
            b[8..12].copy_from_slice(&(c as u32).to_be_bytes());
        }
        b[12] = self.asc.asc;
        b[13] = self.asc.ascq;
        b[14] = self.fru;
        if let Some(s) = self.sense_key_specific {
            b[15..18].copy_from_slice(&s.to_bytes());
        }
        let mut out = SenseBuffer {
            buf: [0; SENSE_BUFFER_CAPACITY],
            len: 0,
        };
        out.push(&b);
        out
    }

    /// Descriptor format (response code 0x72/0x73) with one descriptor per
    /// field that is present.
    pub fn encode_descriptor(&self) -> SenseBuffer {
        let mut out = SenseBuffer {
            buf: [0; SENSE_BUFFER_CAPACITY],
            len: 0,
        };
        let rc = if self.deferred {
            response_code::DESCRIPTOR_DEFERRED
        } else {
            response_code::DESCRIPTOR_CURRENT
        };
        out.push(&[
            rc,
            self.key.as_u8(),
            self.asc.asc,
            self.asc.ascq,
            (self.sdat_ovfl as u8) << 7,
            0,
            0,
            0,
        ]);
        if let Some(info) = self.information {
            out.push(&[descriptor_type::INFORMATION, 0x0A, 0x80, 0]);
            out.push(&info.to_be_bytes());
        }
        if let Some(c) = self.command_specific {
            out.push(&[descriptor_type::COMMAND_SPECIFIC, 0x0A, 0, 0]);
            out.push(&c.to_be_bytes());
        }
        if let Some(s) = self.sense_key_specific {
            let b = s.to_bytes();
            out.push(&[
                descriptor_type::SENSE_KEY_SPECIFIC,
                0x06,
                0,
                0,
                b[0],
                b[1],
                b[2],
                0,
            ]);
        }
        if self.fru != 0 {
            out.push(&[descriptor_type::FRU, 0x02, 0, self.fru]);
        }
        if self.filemark || self.eom {
            let flags = (self.filemark as u8) << 7 | (self.eom as u8) << 6 | (self.ili as u8) << 5;
            out.push(&[descriptor_type::STREAM_COMMANDS, 0x02, 0, flags]);
        } else if self.ili {
            out.push(&[descriptor_type::BLOCK_COMMANDS, 0x02, 0, 0x20]);
        }
        out.buf[7] = out.len - 8;
        out
    }

    /// Parses sense data in either format.
    ///
    /// Truncated data is accepted as far as it goes (an initiator's sense
    /// buffer may be shorter than the data): fields beyond the end, or
    /// beyond the ADDITIONAL SENSE LENGTH, read as absent. Fails only when
    /// the response code or sense key itself is missing, or the response
    /// code is not one of 0x70-0x73.
    pub fn parse(buf: &[u8]) -> Result<Sense> {
        crate::error::need(buf, 1)?;
        match buf[0] & 0x7F {
            response_code::FIXED_CURRENT | response_code::FIXED_DEFERRED => Self::parse_fixed(buf),
            response_code::DESCRIPTOR_CURRENT | response_code::DESCRIPTOR_DEFERRED => {
                Self::parse_descriptor(buf)
            }
            rc => Err(WireError::BadValue {
                field: "RESPONSE CODE",
                value: rc as u64,
            }),
        }
    }

    fn parse_fixed(buf: &[u8]) -> Result<Sense> {
        crate::error::need(buf, 3)?;
        let end = if buf.len() >= 8 {
            buf.len().min(8 + buf[7] as usize)
        } else {
            buf.len()
        };
        let b = &buf[..end];
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        let key = SenseKey::from_nibble(b[2]);
        let mut s = Sense::new(key, Asc::new(byte(12), byte(13)));
        s.deferred = b[0] & 0x7F == response_code::FIXED_DEFERRED;
        s.filemark = b[2] & 0x80 != 0;
        s.eom = b[2] & 0x40 != 0;
        s.ili = b[2] & 0x20 != 0;
        s.sdat_ovfl = b[2] & 0x10 != 0;
        if b[0] & 0x80 != 0 && b.len() >= 7 {
            s.information = Some(u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as u64);
        }
        if b.len() >= 12 {
            let c = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            s.command_specific = (c != 0).then_some(c as u64);
        }
        s.fru = byte(14);
        if b.len() >= 18 {
            s.sense_key_specific = SenseKeySpecific::from_bytes(key, [b[15], b[16], b[17]]);
        }
        Ok(s)
    }

    fn parse_descriptor(buf: &[u8]) -> Result<Sense> {
        crate::error::need(buf, 4)?;
        let key = SenseKey::from_nibble(buf[1]);
        let mut s = Sense::new(key, Asc::new(buf[2], buf[3]));
        s.deferred = buf[0] & 0x7F == response_code::DESCRIPTOR_DEFERRED;
        if buf.len() < 8 {
            return Ok(s);
        }
        s.sdat_ovfl = buf[4] & 0x80 != 0;
        let end = buf.len().min(8 + buf[7] as usize);
        let mut rest = &buf[8..end];
        while rest.len() >= 2 {
            let len = 2 + rest[1] as usize;
            let Some(d) = rest.get(..len) else { break };
            match (d[0], d.len()) {
                (descriptor_type::INFORMATION, 12..) if d[2] & 0x80 != 0 => {
                    s.information = Some(be64(&d[4..12]));
                }
                (descriptor_type::COMMAND_SPECIFIC, 12..) => {
                    s.command_specific = Some(be64(&d[4..12]));
                }
                (descriptor_type::SENSE_KEY_SPECIFIC, 7..) => {
                    s.sense_key_specific = SenseKeySpecific::from_bytes(key, [d[4], d[5], d[6]]);
                }
                (descriptor_type::FRU, 4..) => s.fru = d[3],
                (descriptor_type::STREAM_COMMANDS, 4..) => {
                    s.filemark = d[3] & 0x80 != 0;
                    s.eom = d[3] & 0x40 != 0;
                    s.ili = d[3] & 0x20 != 0;
                }
                (descriptor_type::BLOCK_COMMANDS, 4..) => s.ili = d[3] & 0x20 != 0,
                _ => {}
            }
            rest = &rest[len..];
        }
        Ok(s)
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.key, self.asc)?;
        if let Some(i) = self.information {
            write!(f, ", information {i:#x}")?;
        }
        if let Some((cdb, field, bit)) = self.field_pointer() {
            let w = if cdb { "CDB" } else { "parameter" };
            write!(f, ", {w} byte {field}")?;
            if let Some(b) = bit {
                write!(f, " bit {b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Sense> {
        vec![
            Sense::no_sense(),
            Sense::invalid_field_in_cdb(1, Some(4)),
            Sense::invalid_field_in_cdb(8, None),
            Sense::invalid_field_in_parameter_list(24, Some(0)),
            Sense::miscompare(0x1234),
            Sense::unit_attention(Asc::POWER_ON_RESET),
            Sense::unit_attention(Asc::CAPACITY_DATA_HAS_CHANGED)
                .with_sense_key_specific(SenseKeySpecific::UnitAttentionQueueOverflow(true)),
            Sense::new(SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR)
                .with_information(77)
                .with_sense_key_specific(SenseKeySpecific::ActualRetryCount(3)),
            Sense::new(SenseKey::NotReady, Asc::LU_NOT_READY_FORMAT_IN_PROGRESS)
                .with_sense_key_specific(SenseKeySpecific::Progress(0x8000))
                .deferred(),
            Sense::new(SenseKey::CopyAborted, Asc::new(0x0D, 0x00))
                .with_command_specific(5)
                .with_sense_key_specific(SenseKeySpecific::SegmentPointer {
                    sd: true,
                    bit: Some(2),
                    field: 40,
                }),
            Sense::new(SenseKey::IllegalRequest, Asc::LBA_OUT_OF_RANGE)
                .with_information(0xFFFF_FFFF)
                .with_ili(),
            {
                let mut s = Sense::new(SenseKey::VendorSpecific, Asc::new(0x80, 0x01));
                s.fru = 9;
                s.filemark = true;
                s.eom = true;
                s.ili = true;
                s.sense_key_specific = Some(SenseKeySpecific::Raw([0x81, 2, 3]));
                s
            },
        ]
    }

    #[test]
    fn every_sample_round_trips_through_both_formats() {
        for s in samples() {
            for fmt in [SenseFormat::Fixed, SenseFormat::Descriptor] {
                let enc = s.encode(fmt);
                let back = Sense::parse(&enc).unwrap();
                assert_eq!(back, s, "{fmt:?} {enc:?}");
            }
        }
    }

    #[test]
    fn fixed_invalid_field_in_cdb_matches_known_bytes() {
        let enc = Sense::invalid_field_in_cdb(2, Some(7)).encode_fixed();
        assert_eq!(
            enc.as_bytes(),
            &[
                0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x24, 0x00, 0, 0xCF, 0x00, 0x02
            ]
        );
    }

    #[test]
    fn descriptor_miscompare_matches_known_bytes() {
        let enc = Sense::miscompare(0x200).encode_descriptor();
        assert_eq!(
            enc.as_bytes(),
            &[
                0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 12, // header
                0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, // information
            ]
        );
    }

    #[test]
    fn parses_linux_style_fixed_sense_with_valid_information() {
        // MEDIUM ERROR, UNRECOVERED READ ERROR at LBA 0x1000, VALID set.
        let raw = [
            0xF0, 0, 0x03, 0, 0, 0x10, 0, 0x0A, 0, 0, 0, 0, 0x11, 0x00, 0, 0, 0, 0,
        ];
        let s = Sense::parse(&raw).unwrap();
        assert_eq!(s.key, SenseKey::MediumError);
        assert_eq!(s.asc, Asc::UNRECOVERED_READ_ERROR);
        assert_eq!(s.information, Some(0x1000));
        assert_eq!(s.sense_key_specific, None);
    }

    #[test]
    fn copy_to_truncates_to_the_destination() {
        let enc = Sense::invalid_field_in_cdb(1, None).encode_fixed();
        let mut small = [0u8; 8];
        assert_eq!(enc.copy_to(&mut small), 8);
        assert_eq!(&small, &enc[..8]);
        let mut big = [0xAAu8; 32];
        assert_eq!(enc.copy_to(&mut big), 18);
        assert_eq!(&big[..18], enc.as_bytes());
        assert_eq!(big[18], 0xAA);
    }

    #[test]
    fn fixed_format_drops_information_wider_than_32_bits() {
        let s =
            Sense::new(SenseKey::IllegalRequest, Asc::LBA_OUT_OF_RANGE).with_information(1 << 40);
        let fixed = s.encode_fixed();
        assert_eq!(fixed[0], 0x70, "VALID must be clear");
        assert_eq!(Sense::parse(&fixed).unwrap().information, None);
        let desc = s.encode_descriptor();
        assert_eq!(Sense::parse(&desc).unwrap().information, Some(1 << 40));
    }

    #[test]
    fn truncated_sense_parses_as_far_as_it_goes_and_never_panics() {
        let full = Sense::invalid_field_in_cdb(4, None).with_information(9);
        for fmt in [SenseFormat::Fixed, SenseFormat::Descriptor] {
            let enc = full.encode(fmt);
            for n in 0..enc.len() {
                let r = Sense::parse(&enc[..n]);
                let min = if fmt == SenseFormat::Fixed { 3 } else { 4 };
                if n < min {
                    assert!(r.is_err(), "{fmt:?} {n}");
                } else {
                    assert_eq!(r.unwrap().key, SenseKey::IllegalRequest);
                }
            }
        }
        // Fixed data cut before the ASC reads ASC 00/00.
        let enc = full.encode_fixed();
        assert_eq!(
            Sense::parse(&enc[..12]).unwrap().asc,
            Asc::NO_ADDITIONAL_SENSE
        );
        // Descriptor with a length byte that overstates the data.
        let mut enc = full.encode_descriptor().as_bytes().to_vec();
        enc[7] = 200;
        enc.push(0x02); // half a descriptor header
        assert_eq!(Sense::parse(&enc).unwrap().information, Some(9));
    }

    #[test]
    fn additional_length_bounds_the_fields_read() {
        let mut enc = Sense::invalid_field_in_cdb(4, None)
            .encode_fixed()
            .as_bytes()
            .to_vec();
        enc[7] = 6; // claims only bytes 8..14
        let s = Sense::parse(&enc).unwrap();
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(s.sense_key_specific, None);
    }

    #[test]
    fn unknown_response_code_is_rejected() {
        assert_eq!(
            Sense::parse(&[0x7F, 0, 0, 0]),
            Err(WireError::BadValue {
                field: "RESPONSE CODE",
                value: 0x7F
            })
        );
        assert!(Sense::parse(&[]).is_err());
    }

    #[test]
    fn every_sense_key_nibble_decodes_to_itself() {
        for v in 0..16u8 {
            assert_eq!(SenseKey::from_nibble(v).as_u8(), v);
        }
    }

    #[test]
    fn display_names_key_asc_and_field() {
        let s = Sense::invalid_field_in_cdb(1, Some(3)).to_string();
        assert_eq!(s, "IllegalRequest: INVALID FIELD IN CDB, CDB byte 1 bit 3");
    }
}
