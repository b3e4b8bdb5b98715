//! The command table: one static list that drives dispatch, CDB validation and REPORT
//! SUPPORTED OPERATION CODES.
//!
//! Each entry names the opcode (and service action), the CDB length, the *usage mask*
//! (which bits of each CDB byte the device looks at; any other bit set is INVALID FIELD
//! IN CDB with a field pointer to that byte and bit, as CTL's `ctl_validate_command`
//! does), the data direction, the states and reservations it may run under, and its
//! timeouts. A whole-table test checks the table's own invariants.

use crate::sense::{Asc, SenseInfo};

/// Direction of the data phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    /// No data.
    None,
    /// Device to initiator.
    In,
    /// Initiator to device.
    Out,
}

/// What the logical unit does for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CommandKind {
    TestUnitReady,
    RequestSense,
    Read6,
    Write6,
    Inquiry,
    ModeSelect6,
    Reserve6,
    Release6,
    ModeSense6,
    StartStopUnit,
    PreventAllowMediumRemoval,
    ReadCapacity10,
    Read10,
    Write10,
    WriteAndVerify10,
    Verify10,
    PreFetch10,
    SynchronizeCache10,
    WriteSame10,
    Unmap,
    ModeSelect10,
    Reserve10,
    Release10,
    ModeSense10,
    PersistentReserveIn,
    PersistentReserveOut,
    CompareAndWrite,
    Read16,
    OrWrite16,
    Write16,
    WriteAndVerify16,
    Verify16,
    PreFetch16,
    SynchronizeCache16,
    WriteSame16,
    ReadCapacity16,
    GetLbaStatus,
    ReportLuns,
    ReportSupportedOperationCodes,
    Read12,
    Write12,
    WriteAndVerify12,
    Verify12,
}

/// Property flags of an entry (a small bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// Runs while the logical unit is stopped (otherwise NOT READY).
    pub const OK_STOPPED: Flags = Flags(1 << 0);
    /// Neither reports nor clears a pending unit attention (INQUIRY, REPORT LUNS,
    /// REQUEST SENSE; SAM-5 5.14).
    pub const NO_UA: Flags = Flags(1 << 1);
    /// Allowed while another I_T nexus holds a SCSI-2 (RESERVE) reservation.
    pub const SCSI2_OK: Flags = Flags(1 << 2);
    /// Changes the medium: refused while write protected (SWP, read-only LU).
    pub const WRITES_MEDIUM: Flags = Flags(1 << 3);
    /// Persistent reservations treat it as a read (conflicts under Exclusive Access
    /// types for non-holders).
    pub const PR_READ: Flags = Flags(1 << 4);
    /// Persistent reservations treat it as a write (conflicts under every type for
    /// non-holders, except registrants under the registrants-only/all-registrants types).
    pub const PR_WRITE: Flags = Flags(1 << 5);
    /// Exists only on thin-provisioned logical units (UNMAP).
    pub const THIN_ONLY: Flags = Flags(1 << 6);

    /// Union.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn has(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One command the device supports.
#[derive(Debug)]
pub struct CommandEntry {
    /// OPERATION CODE.
    pub opcode: u8,
    /// SERVICE ACTION (in CDB byte 1, bits 4..0) for opcodes that have them.
    pub service_action: Option<u16>,
    /// Name as in the standard.
    pub name: &'static str,
    /// What runs.
    pub kind: CommandKind,
    /// CDB USAGE DATA: allowed bits per CDB byte; its length is the CDB length.
    pub usage: &'static [u8],
    /// Data direction.
    pub direction: DataDirection,
    /// Properties.
    pub flags: Flags,
    /// NOMINAL COMMAND PROCESSING TIMEOUT, seconds.
    pub nominal_timeout: u32,
    /// RECOMMENDED COMMAND TIMEOUT, seconds.
    pub recommended_timeout: u32,
}

impl CommandEntry {
    /// CDB length in bytes.
    pub fn cdb_len(&self) -> usize {
        self.usage.len()
    }
}

const RD: Flags = Flags::PR_READ;
const WR: Flags = Flags::PR_WRITE.with(Flags::WRITES_MEDIUM);

macro_rules! entry {
    ($op:expr, $sa:expr, $name:expr, $kind:ident, $dir:ident, $flags:expr, $t:expr, [$($u:expr),* $(,)?]) => {
        CommandEntry {
            opcode: $op,
            service_action: $sa,
            name: $name,
            kind: CommandKind::$kind,
            usage: &[$($u),*],
            direction: DataDirection::$dir,
            flags: $flags,
            nominal_timeout: $t,
            recommended_timeout: $t * 2,
        }
    };
}

/// Every supported command, sorted by opcode then service action.
pub static COMMANDS: &[CommandEntry] = &[
    entry!(
        0x00,
        None,
        "TEST UNIT READY",
        TestUnitReady,
        None,
        Flags::NONE,
        5,
        [0x00, 0, 0, 0, 0, 0]
    ),
    entry!(
        0x03,
        None,
        "REQUEST SENSE",
        RequestSense,
        In,
        Flags::OK_STOPPED.with(Flags::NO_UA).with(Flags::SCSI2_OK),
        5,
        [0x03, 0x01, 0, 0, 0xff, 0]
    ),
    entry!(
        0x08,
        None,
        "READ(6)",
        Read6,
        In,
        RD,
        30,
        [0x08, 0x1f, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x0a,
        None,
        "WRITE(6)",
        Write6,
        Out,
        WR,
        30,
        [0x0a, 0x1f, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x12,
        None,
        "INQUIRY",
        Inquiry,
        In,
        Flags::OK_STOPPED.with(Flags::NO_UA).with(Flags::SCSI2_OK),
        5,
        [0x12, 0x01, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x15,
        None,
        "MODE SELECT(6)",
        ModeSelect6,
        Out,
        Flags::OK_STOPPED.with(Flags::PR_WRITE),
        5,
        [0x15, 0x11, 0, 0, 0xff, 0]
    ),
    entry!(
        0x16,
        None,
        "RESERVE(6)",
        Reserve6,
        None,
        Flags::OK_STOPPED,
        5,
        [0x16, 0, 0, 0, 0, 0]
    ),
    entry!(
        0x17,
        None,
        "RELEASE(6)",
        Release6,
        None,
        Flags::OK_STOPPED.with(Flags::SCSI2_OK),
        5,
        [0x17, 0, 0, 0, 0, 0]
    ),
    entry!(
        0x1a,
        None,
        "MODE SENSE(6)",
        ModeSense6,
        In,
        Flags::OK_STOPPED.with(Flags::PR_READ),
        5,
        [0x1a, 0x08, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x1b,
        None,
        "START STOP UNIT",
        StartStopUnit,
        None,
        Flags::OK_STOPPED.with(Flags::PR_WRITE),
        30,
        [0x1b, 0x01, 0, 0x0f, 0xf7, 0]
    ),
    entry!(
        0x1e,
        None,
        "PREVENT ALLOW MEDIUM REMOVAL",
        PreventAllowMediumRemoval,
        None,
        Flags::OK_STOPPED,
        5,
        [0x1e, 0, 0, 0, 0x03, 0]
    ),
    entry!(
        0x25,
        None,
        "READ CAPACITY(10)",
        ReadCapacity10,
        In,
        Flags::SCSI2_OK,
        5,
        [0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0]
    ),
    entry!(
        0x28,
        None,
        "READ(10)",
        Read10,
        In,
        RD,
        30,
        [0x28, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x2a,
        None,
        "WRITE(10)",
        Write10,
        Out,
        WR,
        30,
        [0x2a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x2e,
        None,
        "WRITE AND VERIFY(10)",
        WriteAndVerify10,
        Out,
        WR,
        30,
        [0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x2f,
        None,
        "VERIFY(10)",
        Verify10,
        Out,
        RD,
        30,
        [0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x34,
        None,
        "PRE-FETCH(10)",
        PreFetch10,
        None,
        RD,
        30,
        [0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x35,
        None,
        "SYNCHRONIZE CACHE(10)",
        SynchronizeCache10,
        None,
        Flags::PR_WRITE,
        60,
        [0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x41,
        None,
        "WRITE SAME(10)",
        WriteSame10,
        Out,
        WR,
        60,
        [0x41, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x42,
        None,
        "UNMAP",
        Unmap,
        Out,
        WR.with(Flags::THIN_ONLY),
        60,
        [0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0]
    ),
    entry!(
        0x55,
        None,
        "MODE SELECT(10)",
        ModeSelect10,
        Out,
        Flags::OK_STOPPED.with(Flags::PR_WRITE),
        5,
        [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0]
    ),
    entry!(
        0x56,
        None,
        "RESERVE(10)",
        Reserve10,
        None,
        Flags::OK_STOPPED,
        5,
        [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ),
    entry!(
        0x57,
        None,
        "RELEASE(10)",
        Release10,
        None,
        Flags::OK_STOPPED.with(Flags::SCSI2_OK),
        5,
        [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ),
    entry!(
        0x5a,
        None,
        "MODE SENSE(10)",
        ModeSense10,
        In,
        Flags::OK_STOPPED.with(Flags::PR_READ),
        5,
        [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]
    ),
    entry!(
        0x5e,
        Some(0x00),
        "PERSISTENT RESERVE IN / READ KEYS",
        PersistentReserveIn,
        In,
        Flags::OK_STOPPED,
        5,
        [0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0]
    ),
    entry!(
        0x5e,
        Some(0x01),
        "PERSISTENT RESERVE IN / READ RESERVATION",
        PersistentReserveIn,
        In,
        Flags::OK_STOPPED,
        5,
        [0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]
    ),
    entry!(
        0x5e,
        Some(0x02),
        "PERSISTENT RESERVE IN / REPORT CAPABILITIES",
        PersistentReserveIn,
        In,
        Flags::OK_STOPPED,
        5,
        [0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0]
    ),
    entry!(
        0x5e,
        Some(0x03),
        "PERSISTENT RESERVE IN / READ FULL STATUS",
        PersistentReserveIn,
        In,
        Flags::OK_STOPPED,
        5,
        [0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x00),
        "PERSISTENT RESERVE OUT / REGISTER",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x01),
        "PERSISTENT RESERVE OUT / RESERVE",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x02),
        "PERSISTENT RESERVE OUT / RELEASE",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x03),
        "PERSISTENT RESERVE OUT / CLEAR",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x04),
        "PERSISTENT RESERVE OUT / PREEMPT",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x05),
        "PERSISTENT RESERVE OUT / PREEMPT AND ABORT",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x5f,
        Some(0x06),
        "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY",
        PersistentReserveOut,
        Out,
        Flags::OK_STOPPED,
        5,
        [0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]
    ),
    entry!(
        0x88,
        None,
        "READ(16)",
        Read16,
        In,
        RD,
        30,
        [
            0x88, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x89,
        None,
        "COMPARE AND WRITE",
        CompareAndWrite,
        Out,
        WR,
        30,
        [
            0x89, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0
        ]
    ),
    entry!(
        0x8a,
        None,
        "WRITE(16)",
        Write16,
        Out,
        WR,
        30,
        [
            0x8a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x8b,
        None,
        "ORWRITE(16)",
        OrWrite16,
        Out,
        WR,
        30,
        [
            0x8b, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x8e,
        None,
        "WRITE AND VERIFY(16)",
        WriteAndVerify16,
        Out,
        WR,
        30,
        [
            0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x8f,
        None,
        "VERIFY(16)",
        Verify16,
        Out,
        RD,
        30,
        [
            0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x90,
        None,
        "PRE-FETCH(16)",
        PreFetch16,
        None,
        RD,
        30,
        [
            0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x91,
        None,
        "SYNCHRONIZE CACHE(16)",
        SynchronizeCache16,
        None,
        Flags::PR_WRITE,
        60,
        [
            0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x93,
        None,
        "WRITE SAME(16)",
        WriteSame16,
        Out,
        WR,
        60,
        [
            0x93, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0
        ]
    ),
    entry!(
        0x9e,
        Some(0x10),
        "READ CAPACITY(16)",
        ReadCapacity16,
        In,
        Flags::SCSI2_OK,
        5,
        [
            0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01, 0
        ]
    ),
    entry!(
        0x9e,
        Some(0x12),
        "GET LBA STATUS",
        GetLbaStatus,
        In,
        RD,
        5,
        [
            0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x03, 0
        ]
    ),
    entry!(
        0xa0,
        None,
        "REPORT LUNS",
        ReportLuns,
        In,
        Flags::OK_STOPPED.with(Flags::NO_UA).with(Flags::SCSI2_OK),
        5,
        [0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]
    ),
    entry!(
        0xa3,
        Some(0x0c),
        "REPORT SUPPORTED OPERATION CODES",
        ReportSupportedOperationCodes,
        In,
        Flags::OK_STOPPED.with(Flags::SCSI2_OK),
        5,
        [
            0xa3, 0x8c, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0
        ]
    ),
    entry!(
        0xa8,
        None,
        "READ(12)",
        Read12,
        In,
        RD,
        30,
        [
            0xa8, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0
        ]
    ),
    entry!(
        0xaa,
        None,
        "WRITE(12)",
        Write12,
        Out,
        WR,
        30,
        [
            0xaa, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0
        ]
    ),
    entry!(
        0xae,
        None,
        "WRITE AND VERIFY(12)",
        WriteAndVerify12,
        Out,
        WR,
        30,
        [
            0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0
        ]
    ),
    entry!(
        0xaf,
        None,
        "VERIFY(12)",
        Verify12,
        Out,
        RD,
        30,
        [
            0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0
        ]
    ),
];

/// Whether an opcode carries a service action in byte 1 (bits 4..0).
pub fn has_service_action(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|e| e.opcode == opcode && e.service_action.is_some())
}

/// Why a CDB was refused before it reached a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdbError {
    /// No entry for the opcode.
    InvalidOpcode,
    /// The opcode exists but not with this service action.
    InvalidServiceAction,
    /// The CDB is shorter than the command's CDB length.
    Truncated,
    /// A bit outside the usage mask is set.
    InvalidField {
        /// Byte offset.
        byte: u16,
        /// Most significant offending bit.
        bit: u8,
    },
}

impl CdbError {
    /// The sense this error is reported with.
    pub fn sense(self) -> SenseInfo {
        match self {
            CdbError::InvalidOpcode => SenseInfo::illegal(Asc::INVALID_COMMAND_OPERATION_CODE),
            CdbError::InvalidServiceAction => SenseInfo::invalid_cdb_field(1, Some(4)),
            CdbError::Truncated => SenseInfo::illegal(Asc::INVALID_FIELD_IN_CDB),
            CdbError::InvalidField { byte, bit } => SenseInfo::invalid_cdb_field(byte, Some(bit)),
        }
    }
}

/// Finds the entry for `cdb` (opcode, and service action where the opcode has them).
pub fn lookup(cdb: &[u8]) -> Result<&'static CommandEntry, CdbError> {
    let &opcode = cdb.first().ok_or(CdbError::InvalidOpcode)?;
    let mut found_opcode = false;
    for e in COMMANDS.iter().filter(|e| e.opcode == opcode) {
        found_opcode = true;
        match e.service_action {
            None => return Ok(e),
            Some(sa) => {
                let Some(&b1) = cdb.get(1) else {
                    return Err(CdbError::Truncated);
                };
                if u16::from(b1 & 0x1f) == sa {
                    return Ok(e);
                }
            }
        }
    }
    if found_opcode {
        Err(CdbError::InvalidServiceAction)
    } else {
        Err(CdbError::InvalidOpcode)
    }
}

/// Checks `cdb` against the entry's length and usage mask.
pub fn validate(entry: &CommandEntry, cdb: &[u8]) -> Result<(), CdbError> {
    let Some(cdb) = cdb.get(..entry.cdb_len()) else {
        return Err(CdbError::Truncated);
    };
    for (i, (&b, &mask)) in cdb.iter().zip(entry.usage).enumerate() {
        let bad = b & !mask;
        if bad != 0 {
            return Err(CdbError::InvalidField {
                byte: i as u16,
                bit: 7 - bad.leading_zeros() as u8,
            });
        }
    }
    Ok(())
}

/// Validates and looks up in one step.
pub fn decode(cdb: &[u8]) -> Result<&'static CommandEntry, CdbError> {
    let e = lookup(cdb)?;
    validate(e, cdb)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CDB length implied by the opcode's group code (SPC-4 4.2.5.1).
    fn group_len(opcode: u8) -> usize {
        match opcode >> 5 {
            0 => 6,
            1 | 2 => 10,
            4 => 16,
            5 => 12,
            _ => 0,
        }
    }

    #[test]
    fn table_usage_byte0_is_opcode_and_lengths_match_group_codes() {
        for e in COMMANDS {
            assert_eq!(e.usage[0], e.opcode, "{}", e.name);
            assert_eq!(e.cdb_len(), group_len(e.opcode), "{}", e.name);
            assert_eq!(
                *e.usage.last().unwrap(),
                0,
                "{}: control byte allows no bits",
                e.name
            );
            if let Some(sa) = e.service_action {
                assert_eq!(
                    u16::from(e.usage[1] & 0x1f),
                    sa,
                    "{}: SA in usage byte 1",
                    e.name
                );
            }
            assert!(e.recommended_timeout >= e.nominal_timeout);
        }
    }

    #[test]
    fn table_has_no_duplicates_and_is_sorted() {
        for w in COMMANDS.windows(2) {
            let a = (w[0].opcode, w[0].service_action);
            let b = (w[1].opcode, w[1].service_action);
            assert!(
                a < b,
                "{} / {} out of order or duplicated",
                w[0].name,
                w[1].name
            );
        }
        // An opcode either always or never has a service action.
        for e in COMMANDS {
            assert_eq!(
                e.service_action.is_some(),
                has_service_action(e.opcode),
                "{}",
                e.name
            );
        }
    }

    #[test]
    fn table_directions_match_kinds() {
        for e in COMMANDS {
            let writes = e.flags.has(Flags::WRITES_MEDIUM);
            if writes {
                assert_eq!(e.direction, DataDirection::Out, "{}", e.name);
            }
        }
    }

    #[test]
    fn validate_points_at_first_bad_byte_and_its_top_bit() {
        let e = lookup(&[0x28]).unwrap();
        assert_eq!(validate(e, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Ok(()));
        assert_eq!(
            validate(e, &[0x28, 0xe0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Err(CdbError::InvalidField { byte: 1, bit: 7 })
        );
        assert_eq!(
            validate(e, &[0x28, 0, 0, 0, 0, 0, 0x20, 0, 1, 4]),
            Err(CdbError::InvalidField { byte: 6, bit: 5 })
        );
        assert_eq!(validate(e, &[0x28, 0, 0]), Err(CdbError::Truncated));
        assert_eq!(lookup(&[0xff]).unwrap_err(), CdbError::InvalidOpcode);
        assert_eq!(
            lookup(&[0x5e, 0x07]).unwrap_err(),
            CdbError::InvalidServiceAction
        );
        assert_eq!(lookup(&[]).unwrap_err(), CdbError::InvalidOpcode);
    }
}
