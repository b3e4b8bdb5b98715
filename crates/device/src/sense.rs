//! Sense data: the conditions this device reports and their encoding (SPC-4 4.5).
//!
//! Every error a command can end with is a [`SenseInfo`] (or a bare status such as
//! RESERVATION CONFLICT); it becomes wire bytes in exactly one place,
//! [`SenseInfo::encode`], in fixed (70h) or descriptor (72h) format according to the
//! D_SENSE bit of the control mode page. Backend errors become sense in exactly one
//! place too: [`backend_error_sense`].

use crate::backend::{BackendError, BackendErrorKind, BackendOp};

/// Sense keys (SPC-4 table 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    /// No error to report.
    NoSense = 0x0,
    /// The logical unit cannot be accessed.
    NotReady = 0x2,
    /// The medium failed.
    MediumError = 0x3,
    /// Non-recoverable hardware (here: internal) failure.
    HardwareError = 0x4,
    /// Something in the CDB or parameter list is wrong.
    IllegalRequest = 0x5,
    /// The logical unit's state changed.
    UnitAttention = 0x6,
    /// A write was refused because of protection.
    DataProtect = 0x7,
    /// The command was aborted.
    AbortedCommand = 0xB,
    /// Source data did not match the medium.
    Miscompare = 0xE,
}

/// An additional sense code and qualifier pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asc(pub u8, pub u8);

impl Asc {
    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: Asc = Asc(0x00, 0x00);
    /// 04/02 LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED.
    pub const NOT_READY_INIT_REQUIRED: Asc = Asc(0x04, 0x02);
    /// 0C/00 WRITE ERROR.
    pub const WRITE_ERROR: Asc = Asc(0x0C, 0x00);
    /// 11/00 UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: Asc = Asc(0x11, 0x00);
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = Asc(0x1A, 0x00);
    /// 1D/00 MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: Asc = Asc(0x1D, 0x00);
    /// 20/00 INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: Asc = Asc(0x20, 0x00);
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Asc = Asc(0x21, 0x00);
    /// 24/00 INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: Asc = Asc(0x24, 0x00);
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = Asc(0x26, 0x00);
    /// 26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
    pub const INVALID_RELEASE_OF_PR: Asc = Asc(0x26, 0x04);
    /// 27/00 WRITE PROTECTED.
    pub const WRITE_PROTECTED: Asc = Asc(0x27, 0x00);
    /// 27/07 SPACE ALLOCATION FAILED WRITE PROTECT.
    pub const SPACE_ALLOCATION_FAILED: Asc = Asc(0x27, 0x07);
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const RESET_OCCURRED: Asc = Asc(0x29, 0x00);
    /// 29/01 POWER ON OCCURRED.
    pub const POWER_ON_OCCURRED: Asc = Asc(0x29, 0x01);
    /// 29/02 SCSI BUS RESET OCCURRED.
    pub const BUS_RESET_OCCURRED: Asc = Asc(0x29, 0x02);
    /// 29/03 BUS DEVICE RESET FUNCTION OCCURRED.
    pub const BUS_DEVICE_RESET_OCCURRED: Asc = Asc(0x29, 0x03);
    /// 29/07 I_T NEXUS LOSS OCCURRED.
    pub const IT_NEXUS_LOSS_OCCURRED: Asc = Asc(0x29, 0x07);
    /// 2A/01 MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: Asc = Asc(0x2A, 0x01);
    /// 2A/03 RESERVATIONS PREEMPTED.
    pub const RESERVATIONS_PREEMPTED: Asc = Asc(0x2A, 0x03);
    /// 2A/04 RESERVATIONS RELEASED.
    pub const RESERVATIONS_RELEASED: Asc = Asc(0x2A, 0x04);
    /// 2A/05 REGISTRATIONS PREEMPTED.
    pub const REGISTRATIONS_PREEMPTED: Asc = Asc(0x2A, 0x05);
    /// 2A/09 CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_DATA_CHANGED: Asc = Asc(0x2A, 0x09);
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = Asc(0x39, 0x00);
    /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
    pub const REPORTED_LUNS_DATA_CHANGED: Asc = Asc(0x3F, 0x0E);
    /// 44/00 INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: Asc = Asc(0x44, 0x00);
    /// 55/03 INSUFFICIENT RESOURCES.
    pub const INSUFFICIENT_RESOURCES: Asc = Asc(0x55, 0x03);
}

/// Where in the CDB or parameter list the offending field is (the sense-key-specific
/// FIELD POINTER, SPC-4 4.5.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// True: the byte is in the CDB (C/D = 1); false: in the parameter list.
    pub in_cdb: bool,
    /// Byte offset of the field.
    pub byte: u16,
    /// The bit (0..=7) of the field's most significant bit, if it is known.
    pub bit: Option<u8>,
}

/// One sense condition: key, ASC/ASCQ and the optional INFORMATION and field pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenseInfo {
    /// The sense key.
    pub key: SenseKey,
    /// ASC and ASCQ.
    pub asc: Asc,
    /// The INFORMATION field (e.g. the miscompare offset).
    pub information: Option<u64>,
    /// The sense-key-specific field pointer.
    pub field: Option<FieldPointer>,
}

/// The largest sense this device builds: 8-byte descriptor header + information
/// descriptor (12) + sense-key-specific descriptor (8).
pub const MAX_SENSE_LEN: usize = 28;

/// Encoded sense bytes, inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SenseData {
    buf: [u8; MAX_SENSE_LEN],
    len: u8,
}

impl SenseData {
    /// No sense data.
    pub const EMPTY: SenseData = SenseData {
        buf: [0; MAX_SENSE_LEN],
        len: 0,
    };

    /// The sense bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// True when there is no sense data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for SenseData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenseData(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Which sense data format to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseFormat {
    /// Fixed format, response code 70h.
    Fixed,
    /// Descriptor format, response code 72h (D_SENSE = 1).
    Descriptor,
}

impl SenseInfo {
    /// A condition with no INFORMATION and no field pointer.
    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Self {
            key,
            asc,
            information: None,
            field: None,
        }
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at `byte`, `bit`.
    pub const fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Self {
        Self {
            key: SenseKey::IllegalRequest,
            asc: Asc::INVALID_FIELD_IN_CDB,
            information: None,
            field: Some(FieldPointer {
                in_cdb: true,
                byte,
                bit,
            }),
        }
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at `byte`, `bit`.
    pub const fn invalid_param_field(byte: u16, bit: Option<u8>) -> Self {
        Self {
            key: SenseKey::IllegalRequest,
            asc: Asc::INVALID_FIELD_IN_PARAMETER_LIST,
            information: None,
            field: Some(FieldPointer {
                in_cdb: false,
                byte,
                bit,
            }),
        }
    }

    /// ILLEGAL REQUEST with the given ASC and no field pointer.
    pub const fn illegal(asc: Asc) -> Self {
        Self::new(SenseKey::IllegalRequest, asc)
    }

    /// Sense-key-specific bytes (3) for the field pointer.
    fn sks(&self) -> Option<[u8; 3]> {
        let f = self.field?;
        let mut b0 = 0x80u8; // SKSV
        if f.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = f.bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let [hi, lo] = f.byte.to_be_bytes();
        Some([b0, hi, lo])
    }

    /// Encodes this condition in `format`.
    pub fn encode(&self, format: SenseFormat) -> SenseData {
        let mut d = SenseData::EMPTY;
        let b = &mut d.buf;
        match format {
            SenseFormat::Fixed => {
                b[0] = 0x70;
                b[2] = self.key as u8;
                if let Some(info) = self.information {
                    // The fixed-format INFORMATION field holds 32 bits; VALID only if it fits.
                    if let Ok(v) = u32::try_from(info) {
                        b[0] |= 0x80;
                        b[3..7].copy_from_slice(&v.to_be_bytes());
                    }
                }
                b[7] = 10;
                b[12] = self.asc.0;
                b[13] = self.asc.1;
                if let Some(sks) = self.sks() {
                    b[15..18].copy_from_slice(&sks);
                }
                d.len = 18;
            }
            SenseFormat::Descriptor => {
                b[0] = 0x72;
                b[1] = self.key as u8;
                b[2] = self.asc.0;
                b[3] = self.asc.1;
                let mut at = 8usize;
                if let Some(info) = self.information {
                    b[at] = 0x00; // information descriptor
                    b[at + 1] = 0x0A;
                    b[at + 2] = 0x80; // VALID
                    b[at + 4..at + 12].copy_from_slice(&info.to_be_bytes());
                    at += 12;
                }
                if let Some(sks) = self.sks() {
                    b[at] = 0x02; // sense key specific descriptor
                    b[at + 1] = 0x06;
                    b[at + 4..at + 7].copy_from_slice(&sks);
                    at += 8;
                }
                b[7] = (at - 8) as u8;
                d.len = at as u8;
            }
        }
        d
    }
}

/// The one mapping from backend failures to sense (SBC-4 4.18, SPC-4 annex D):
///
/// | failure | sense |
/// |---|---|
/// | no space (ENOSPC) | DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (27/07) |
/// | I/O error on read | MEDIUM ERROR / UNRECOVERED READ ERROR (11/00) |
/// | I/O error on write, unmap, flush | MEDIUM ERROR / WRITE ERROR (0C/00) |
/// | out of range | ILLEGAL REQUEST / LBA OUT OF RANGE (21/00) |
/// | anything else | HARDWARE ERROR / INTERNAL TARGET FAILURE (44/00) |
pub fn backend_error_sense(e: &BackendError) -> SenseInfo {
    match e.kind {
        BackendErrorKind::NoSpace => {
            SenseInfo::new(SenseKey::DataProtect, Asc::SPACE_ALLOCATION_FAILED)
        }
        BackendErrorKind::Io => match e.op {
            BackendOp::Read | BackendOp::Status => {
                SenseInfo::new(SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR)
            }
            BackendOp::Write | BackendOp::Unmap | BackendOp::Flush => {
                SenseInfo::new(SenseKey::MediumError, Asc::WRITE_ERROR)
            }
        },
        BackendErrorKind::OutOfRange => SenseInfo::illegal(Asc::LBA_OUT_OF_RANGE),
        BackendErrorKind::Unsupported | BackendErrorKind::Other => {
            SenseInfo::new(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sense_with_field_pointer_has_exact_bytes() {
        let s = SenseInfo::invalid_cdb_field(1, Some(4)).encode(SenseFormat::Fixed);
        assert_eq!(
            s.as_bytes(),
            &[
                0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xCC, 0, 1
            ]
        );
    }

    #[test]
    fn descriptor_sense_carries_information_and_sks() {
        let mut info = SenseInfo::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY);
        info.information = Some(0x1_0000_0005);
        info.field = Some(FieldPointer {
            in_cdb: false,
            byte: 0x102,
            bit: None,
        });
        let s = info.encode(SenseFormat::Descriptor);
        assert_eq!(
            s.as_bytes(),
            &[
                0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 20, // header
                0x00, 0x0A, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 5, // information
                0x02, 0x06, 0, 0, 0x80, 0x01, 0x02, 0, // sks
            ]
        );
        // In fixed format a 64-bit INFORMATION does not fit: VALID stays clear.
        let f = info.encode(SenseFormat::Fixed);
        assert_eq!(f.as_bytes()[0], 0x70);
        assert_eq!(&f.as_bytes()[3..7], &[0, 0, 0, 0]);
    }
}
