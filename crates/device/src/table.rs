//! The command table: one static list that drives dispatch, CDB validation and REPORT
//! SUPPORTED OPERATION CODES.
//!
//! Each entry names the opcode (and service action), the CDB length, the *usage mask*
//! (which bits of each CDB byte the device looks at; any other bit set is INVALID FIELD
//! IN CDB with a field pointer to that byte and bit, as CTL's `ctl_validate_command`
//! does), the data direction, the states and reservations it may run under, and its
//! timeouts. A whole-table test checks the table's own invariants.

use scsi::Opcode as op;

use crate::sense::{Asc, Sense};

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
    ReadDefectData10,
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
    ReadDefectData12,
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
/// INQUIRY, REPORT LUNS, REQUEST SENSE: run in any state, never see a unit attention.
const ALWAYS: Flags = Flags::OK_STOPPED.with(Flags::NO_UA).with(Flags::SCSI2_OK);

macro_rules! entry {
    ($op:path, $sa:expr, $name:expr, $kind:ident, $dir:ident, $flags:expr, $t:expr, [$($u:expr),* $(,)?]) => {
        CommandEntry {
            opcode: $op.0,
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
#[rustfmt::skip]
pub static COMMANDS: &[CommandEntry] = &[
    entry!(op::TEST_UNIT_READY, None, "TEST UNIT READY", TestUnitReady, None, Flags::NONE, 5,
        [0x00, 0, 0, 0, 0, 0]),
    entry!(op::REQUEST_SENSE, None, "REQUEST SENSE", RequestSense, In, ALWAYS, 5,
        [0x03, 0x01, 0, 0, 0xff, 0]),
    entry!(op::READ_6, None, "READ(6)", Read6, In, RD, 30,
        [0x08, 0x1f, 0xff, 0xff, 0xff, 0]),
    entry!(op::WRITE_6, None, "WRITE(6)", Write6, Out, WR, 30,
        [0x0a, 0x1f, 0xff, 0xff, 0xff, 0]),
    entry!(op::INQUIRY, None, "INQUIRY", Inquiry, In, ALWAYS, 5,
        [0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    entry!(op::MODE_SELECT_6, None, "MODE SELECT(6)", ModeSelect6, Out, Flags::OK_STOPPED.with(Flags::PR_WRITE), 5,
        [0x15, 0x11, 0, 0, 0xff, 0]),
    entry!(op::RESERVE_6, None, "RESERVE(6)", Reserve6, None, Flags::OK_STOPPED, 5,
        [0x16, 0, 0, 0, 0, 0]),
    entry!(op::RELEASE_6, None, "RELEASE(6)", Release6, None, Flags::OK_STOPPED.with(Flags::SCSI2_OK), 5,
        [0x17, 0, 0, 0, 0, 0]),
    entry!(op::MODE_SENSE_6, None, "MODE SENSE(6)", ModeSense6, In, Flags::OK_STOPPED.with(Flags::PR_READ), 5,
        [0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    entry!(op::START_STOP_UNIT, None, "START STOP UNIT", StartStopUnit, None, Flags::OK_STOPPED.with(Flags::PR_WRITE), 30,
        [0x1b, 0x01, 0, 0x0f, 0xf7, 0]),
    entry!(op::PREVENT_ALLOW_MEDIUM_REMOVAL, None, "PREVENT ALLOW MEDIUM REMOVAL", PreventAllowMediumRemoval, None, Flags::OK_STOPPED, 5,
        [0x1e, 0, 0, 0, 0x03, 0]),
    entry!(op::READ_CAPACITY_10, None, "READ CAPACITY(10)", ReadCapacity10, In, Flags::SCSI2_OK, 5,
        [0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0]),
    entry!(op::READ_10, None, "READ(10)", Read10, In, RD, 30,
        [0x28, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::WRITE_10, None, "WRITE(10)", Write10, Out, WR, 30,
        [0x2a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::WRITE_AND_VERIFY_10, None, "WRITE AND VERIFY(10)", WriteAndVerify10, Out, WR, 30,
        [0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::VERIFY_10, None, "VERIFY(10)", Verify10, Out, RD, 30,
        [0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::PRE_FETCH_10, None, "PRE-FETCH(10)", PreFetch10, None, RD, 30,
        [0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::SYNCHRONIZE_CACHE_10, None, "SYNCHRONIZE CACHE(10)", SynchronizeCache10, None, Flags::PR_WRITE, 60,
        [0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::READ_DEFECT_DATA_10, None, "READ DEFECT DATA(10)", ReadDefectData10, In, RD, 5,
        [0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::WRITE_SAME_10, None, "WRITE SAME(10)", WriteSame10, Out, WR, 60,
        [0x41, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]),
    entry!(op::UNMAP, None, "UNMAP", Unmap, Out, WR.with(Flags::THIN_ONLY), 60,
        [0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0]),
    entry!(op::MODE_SELECT_10, None, "MODE SELECT(10)", ModeSelect10, Out, Flags::OK_STOPPED.with(Flags::PR_WRITE), 5,
        [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::RESERVE_10, None, "RESERVE(10)", Reserve10, None, Flags::OK_STOPPED, 5,
        [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    entry!(op::RELEASE_10, None, "RELEASE(10)", Release10, None, Flags::OK_STOPPED.with(Flags::SCSI2_OK), 5,
        [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    entry!(op::MODE_SENSE_10, None, "MODE SENSE(10)", ModeSense10, In, Flags::OK_STOPPED.with(Flags::PR_READ), 5,
        [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_IN, Some(0x00), "PERSISTENT RESERVE IN / READ KEYS", PersistentReserveIn, In, Flags::OK_STOPPED, 5,
        [0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_IN, Some(0x01), "PERSISTENT RESERVE IN / READ RESERVATION", PersistentReserveIn, In, Flags::OK_STOPPED, 5,
        [0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_IN, Some(0x02), "PERSISTENT RESERVE IN / REPORT CAPABILITIES", PersistentReserveIn, In, Flags::OK_STOPPED, 5,
        [0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_IN, Some(0x03), "PERSISTENT RESERVE IN / READ FULL STATUS", PersistentReserveIn, In, Flags::OK_STOPPED, 5,
        [0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x00), "PERSISTENT RESERVE OUT / REGISTER", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x01), "PERSISTENT RESERVE OUT / RESERVE", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x02), "PERSISTENT RESERVE OUT / RELEASE", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x03), "PERSISTENT RESERVE OUT / CLEAR", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x04), "PERSISTENT RESERVE OUT / PREEMPT", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x05), "PERSISTENT RESERVE OUT / PREEMPT AND ABORT", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::PERSISTENT_RESERVE_OUT, Some(0x06), "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY", PersistentReserveOut, Out, Flags::OK_STOPPED, 5,
        [0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]),
    entry!(op::READ_16, None, "READ(16)", Read16, In, RD, 30,
        [ 0x88, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::COMPARE_AND_WRITE, None, "COMPARE AND WRITE", CompareAndWrite, Out, WR, 30,
        [ 0x89, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0 ]),
    entry!(op::WRITE_16, None, "WRITE(16)", Write16, Out, WR, 30,
        [ 0x8a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::ORWRITE_16, None, "ORWRITE(16)", OrWrite16, Out, WR, 30,
        [ 0x8b, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::WRITE_AND_VERIFY_16, None, "WRITE AND VERIFY(16)", WriteAndVerify16, Out, WR, 30,
        [ 0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::VERIFY_16, None, "VERIFY(16)", Verify16, Out, RD, 30,
        [ 0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::PRE_FETCH_16, None, "PRE-FETCH(16)", PreFetch16, None, RD, 30,
        [ 0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::SYNCHRONIZE_CACHE_16, None, "SYNCHRONIZE CACHE(16)", SynchronizeCache16, None, Flags::PR_WRITE, 60,
        [ 0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::WRITE_SAME_16, None, "WRITE SAME(16)", WriteSame16, Out, WR, 60,
        [ 0x93, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::SERVICE_ACTION_IN_16, Some(0x10), "READ CAPACITY(16)", ReadCapacity16, In, Flags::SCSI2_OK, 5,
        [ 0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0 ]),
    entry!(op::SERVICE_ACTION_IN_16, Some(0x12), "GET LBA STATUS", GetLbaStatus, In, RD, 5,
        [ 0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03, 0 ]),
    entry!(op::REPORT_LUNS, None, "REPORT LUNS", ReportLuns, In, ALWAYS, 5,
        [0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]),
    entry!(op::MAINTENANCE_IN, Some(0x0c), "REPORT SUPPORTED OPERATION CODES", ReportSupportedOperationCodes, In, Flags::OK_STOPPED.with(Flags::SCSI2_OK), 5,
        [ 0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0 ]),
    entry!(op::READ_12, None, "READ(12)", Read12, In, RD, 30,
        [ 0xa8, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::WRITE_12, None, "WRITE(12)", Write12, Out, WR, 30,
        [ 0xaa, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::WRITE_AND_VERIFY_12, None, "WRITE AND VERIFY(12)", WriteAndVerify12, Out, WR, 30,
        [ 0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::VERIFY_12, None, "VERIFY(12)", Verify12, Out, RD, 30,
        [ 0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 ]),
    entry!(op::READ_DEFECT_DATA_12, None, "READ DEFECT DATA(12)", ReadDefectData12, In, RD, 5,
        [0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]),
];

/// For each opcode, the index of its first entry in [`COMMANDS`] (which is sorted), or
/// `COMMANDS.len()` when the opcode is not supported: dispatch is one array lookup.
static OPCODE_INDEX: std::sync::LazyLock<[u8; 256]> = std::sync::LazyLock::new(|| {
    let mut idx = [COMMANDS.len() as u8; 256];
    for (i, e) in COMMANDS.iter().enumerate().rev() {
        idx[usize::from(e.opcode)] = i as u8;
    }
    idx
});

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
    pub fn sense(self) -> Sense {
        match self {
            CdbError::InvalidOpcode => Sense::illegal_request(Asc::INVALID_COMMAND_OPERATION_CODE),
            CdbError::InvalidServiceAction => Sense::invalid_field_in_cdb(1, Some(4)),
            CdbError::Truncated => Sense::illegal_request(Asc::INVALID_FIELD_IN_CDB),
            CdbError::InvalidField { byte, bit } => Sense::invalid_field_in_cdb(byte, Some(bit)),
        }
    }
}

/// Finds the entry for `cdb` (opcode, and service action where the opcode has them).
pub fn lookup(cdb: &[u8]) -> Result<&'static CommandEntry, CdbError> {
    let &opcode = cdb.first().ok_or(CdbError::InvalidOpcode)?;
    let first = usize::from(OPCODE_INDEX[usize::from(opcode)]);
    let mut found_opcode = false;
    for e in COMMANDS[first.min(COMMANDS.len())..]
        .iter()
        .take_while(|e| e.opcode == opcode)
    {
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

    use scsi::cdb::{self as c, CdbLayout};

    /// (opcode, fixed service action, length) of the `scsi` crate's layout for `kind`.
    fn layout_of(kind: CommandKind) -> (u8, Option<u8>, usize) {
        fn l<T: CdbLayout>() -> (u8, Option<u8>, usize) {
            (T::OPCODE.0, T::SERVICE_ACTION, T::LEN)
        }
        use CommandKind as K;
        match kind {
            K::TestUnitReady => l::<c::TestUnitReady>(),
            K::RequestSense => l::<c::RequestSense>(),
            K::Read6 => l::<c::Read6>(),
            K::Write6 => l::<c::Write6>(),
            K::Inquiry => l::<c::Inquiry>(),
            K::ModeSelect6 => l::<c::ModeSelect6>(),
            K::Reserve6 => l::<c::Reserve6>(),
            K::Release6 => l::<c::Release6>(),
            K::ModeSense6 => l::<c::ModeSense6>(),
            K::StartStopUnit => l::<c::StartStopUnit>(),
            K::PreventAllowMediumRemoval => l::<c::PreventAllowMediumRemoval>(),
            K::ReadCapacity10 => l::<c::ReadCapacity10>(),
            // The scsi crate has no layout for READ DEFECT DATA; SBC-4 5.19/5.20.
            K::ReadDefectData10 => (0x37, None, 10),
            K::ReadDefectData12 => (0xb7, None, 12),
            K::Read10 => l::<c::Read10>(),
            K::Write10 => l::<c::Write10>(),
            K::WriteAndVerify10 => l::<c::WriteAndVerify10>(),
            K::Verify10 => l::<c::Verify10>(),
            K::PreFetch10 => l::<c::PreFetch10>(),
            K::SynchronizeCache10 => l::<c::SynchronizeCache10>(),
            K::WriteSame10 => l::<c::WriteSame10>(),
            K::Unmap => l::<c::Unmap>(),
            K::ModeSelect10 => l::<c::ModeSelect10>(),
            K::Reserve10 => l::<c::Reserve10>(),
            K::Release10 => l::<c::Release10>(),
            K::ModeSense10 => l::<c::ModeSense10>(),
            K::PersistentReserveIn => l::<c::PersistentReserveIn>(),
            K::PersistentReserveOut => l::<c::PersistentReserveOut>(),
            K::CompareAndWrite => l::<c::CompareAndWrite>(),
            K::Read16 => l::<c::Read16>(),
            K::OrWrite16 => l::<c::OrWrite16>(),
            K::Write16 => l::<c::Write16>(),
            K::WriteAndVerify16 => l::<c::WriteAndVerify16>(),
            K::Verify16 => l::<c::Verify16>(),
            K::PreFetch16 => l::<c::PreFetch16>(),
            K::SynchronizeCache16 => l::<c::SynchronizeCache16>(),
            K::WriteSame16 => l::<c::WriteSame16>(),
            K::ReadCapacity16 => l::<c::ReadCapacity16>(),
            K::GetLbaStatus => l::<c::GetLbaStatus>(),
            K::ReportLuns => l::<c::ReportLuns>(),
            K::ReportSupportedOperationCodes => l::<c::ReportSupportedOperationCodes>(),
            K::Read12 => l::<c::Read12>(),
            K::Write12 => l::<c::Write12>(),
            K::WriteAndVerify12 => l::<c::WriteAndVerify12>(),
            K::Verify12 => l::<c::Verify12>(),
        }
    }

    #[test]
    fn table_usage_byte0_is_opcode_and_lengths_match_cdb_layouts() {
        for e in COMMANDS {
            assert_eq!(e.usage[0], e.opcode, "{}", e.name);
            let (lop, lsa, llen) = layout_of(e.kind);
            assert_eq!(
                e.opcode, lop,
                "{}: opcode differs from the scsi layout",
                e.name
            );
            assert_eq!(
                e.cdb_len(),
                llen,
                "{}: length differs from the scsi layout",
                e.name
            );
            assert_eq!(
                Some(e.cdb_len()),
                op(e.opcode).cdb_len(),
                "{}: group code",
                e.name
            );
            if let Some(sa) = lsa {
                assert_eq!(e.service_action, Some(u16::from(sa)), "{}", e.name);
            }
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
            assert_eq!(
                e.service_action.is_some(),
                op(e.opcode).has_service_action(),
                "{}",
                e.name
            );
            assert!(e.recommended_timeout >= e.nominal_timeout);
        }
    }

    #[test]
    fn table_has_no_duplicates_and_is_sorted() {
        assert!(COMMANDS.len() < 255, "OPCODE_INDEX stores indexes as u8");
        for e in COMMANDS {
            let mut cdb = vec![0u8; e.cdb_len()];
            cdb[0] = e.opcode;
            cdb[1] = e.service_action.unwrap_or(0) as u8;
            assert!(
                std::ptr::eq(lookup(&cdb).unwrap(), e),
                "{} not found",
                e.name
            );
        }
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
