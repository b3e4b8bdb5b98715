//! Operation codes and service actions (SPC-4 / SBC-3 command lists).
//!
//! [`Opcode`] is a newtype over the first CDB byte with one associated
//! constant per command, so both `match` arms and table entries can name
//! commands. Commands that multiplex several functions behind one opcode
//! carry a service action in byte 1 bits 4:0; their values are in the
//! `service_action` sub-modules ([`sai16`], [`maint_in`], ...) and the typed
//! enums [`PrInAction`] and [`PrOutAction`].

use core::fmt;

/// Operation code: byte 0 of every CDB.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u8);

macro_rules! opcodes {
    ($( $(#[$m:meta])* $name:ident = $val:expr, $text:expr; )*) => {
        impl Opcode {
            $( $(#[$m])* pub const $name: Opcode = Opcode($val); )*

            /// The command name as the standard spells it, or `None` for
            /// opcodes this crate does not name.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $val => Some($text), )*
                    _ => None,
                }
            }

            /// Every opcode this crate names, in ascending order.
            pub const ALL: &'static [Opcode] = &[ $( Opcode($val), )* ];
        }
    };
}

opcodes! {
    /// TEST UNIT READY (SPC).
    TEST_UNIT_READY = 0x00, "TEST UNIT READY";
    /// REZERO UNIT (obsolete SBC).
    REZERO_UNIT = 0x01, "REZERO UNIT";
    /// REQUEST SENSE (SPC).
    REQUEST_SENSE = 0x03, "REQUEST SENSE";
    /// FORMAT UNIT (SBC).
    FORMAT_UNIT = 0x04, "FORMAT UNIT";
    /// READ BLOCK LIMITS (SSC).
    READ_BLOCK_LIMITS = 0x05, "READ BLOCK LIMITS";
    /// REASSIGN BLOCKS (SBC).
    REASSIGN_BLOCKS = 0x07, "REASSIGN BLOCKS";
    /// READ(6) (SBC).
    READ_6 = 0x08, "READ(6)";
    /// WRITE(6) (SBC).
    WRITE_6 = 0x0A, "WRITE(6)";
    /// SEEK(6) (obsolete SBC).
    SEEK_6 = 0x0B, "SEEK(6)";
    /// INQUIRY (SPC).
    INQUIRY = 0x12, "INQUIRY";
    /// MODE SELECT(6) (SPC).
    MODE_SELECT_6 = 0x15, "MODE SELECT(6)";
    /// RESERVE(6) (SPC-2).
    RESERVE_6 = 0x16, "RESERVE(6)";
    /// RELEASE(6) (SPC-2).
    RELEASE_6 = 0x17, "RELEASE(6)";
    /// MODE SENSE(6) (SPC).
    MODE_SENSE_6 = 0x1A, "MODE SENSE(6)";
    /// START STOP UNIT (SBC).
    START_STOP_UNIT = 0x1B, "START STOP UNIT";
    /// RECEIVE DIAGNOSTIC RESULTS (SPC).
    RECEIVE_DIAGNOSTIC_RESULTS = 0x1C, "RECEIVE DIAGNOSTIC RESULTS";
    /// SEND DIAGNOSTIC (SPC).
    SEND_DIAGNOSTIC = 0x1D, "SEND DIAGNOSTIC";
    /// PREVENT ALLOW MEDIUM REMOVAL (SPC/SBC).
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E, "PREVENT ALLOW MEDIUM REMOVAL";
    /// READ FORMAT CAPACITIES (MMC).
    READ_FORMAT_CAPACITIES = 0x23, "READ FORMAT CAPACITIES";
    /// READ CAPACITY(10) (SBC).
    READ_CAPACITY_10 = 0x25, "READ CAPACITY(10)";
    /// READ(10) (SBC).
    READ_10 = 0x28, "READ(10)";
    /// WRITE(10) (SBC).
    WRITE_10 = 0x2A, "WRITE(10)";
    /// SEEK(10) (obsolete SBC).
    SEEK_10 = 0x2B, "SEEK(10)";
    /// WRITE AND VERIFY(10) (SBC).
    WRITE_AND_VERIFY_10 = 0x2E, "WRITE AND VERIFY(10)";
    /// VERIFY(10) (SBC).
    VERIFY_10 = 0x2F, "VERIFY(10)";
    /// PRE-FETCH(10) (SBC).
    PRE_FETCH_10 = 0x34, "PRE-FETCH(10)";
    /// SYNCHRONIZE CACHE(10) (SBC).
    SYNCHRONIZE_CACHE_10 = 0x35, "SYNCHRONIZE CACHE(10)";
    /// LOCK UNLOCK CACHE(10) (obsolete SBC).
    LOCK_UNLOCK_CACHE_10 = 0x36, "LOCK UNLOCK CACHE(10)";
    /// READ DEFECT DATA(10) (SBC).
    READ_DEFECT_DATA_10 = 0x37, "READ DEFECT DATA(10)";
    /// WRITE BUFFER (SPC).
    WRITE_BUFFER = 0x3B, "WRITE BUFFER";
    /// READ BUFFER(10) (SPC).
    READ_BUFFER_10 = 0x3C, "READ BUFFER(10)";
    /// READ LONG(10) (SBC).
    READ_LONG_10 = 0x3E, "READ LONG(10)";
    /// WRITE LONG(10) (SBC).
    WRITE_LONG_10 = 0x3F, "WRITE LONG(10)";
    /// WRITE SAME(10) (SBC).
    WRITE_SAME_10 = 0x41, "WRITE SAME(10)";
    /// UNMAP (SBC).
    UNMAP = 0x42, "UNMAP";
    /// SANITIZE (SBC).
    SANITIZE = 0x48, "SANITIZE";
    /// LOG SELECT (SPC).
    LOG_SELECT = 0x4C, "LOG SELECT";
    /// LOG SENSE (SPC).
    LOG_SENSE = 0x4D, "LOG SENSE";
    /// MODE SELECT(10) (SPC).
    MODE_SELECT_10 = 0x55, "MODE SELECT(10)";
    /// RESERVE(10) (SPC-2).
    RESERVE_10 = 0x56, "RESERVE(10)";
    /// RELEASE(10) (SPC-2).
    RELEASE_10 = 0x57, "RELEASE(10)";
    /// MODE SENSE(10) (SPC).
    MODE_SENSE_10 = 0x5A, "MODE SENSE(10)";
    /// PERSISTENT RESERVE IN (SPC); service actions in [`PrInAction`].
    PERSISTENT_RESERVE_IN = 0x5E, "PERSISTENT RESERVE IN";
    /// PERSISTENT RESERVE OUT (SPC); service actions in [`PrOutAction`].
    PERSISTENT_RESERVE_OUT = 0x5F, "PERSISTENT RESERVE OUT";
    /// Variable-length CDB (SPC); 16-bit service action in bytes 8-9.
    VARIABLE_LENGTH = 0x7F, "VARIABLE LENGTH";
    /// EXTENDED COPY (SPC).
    EXTENDED_COPY = 0x83, "EXTENDED COPY";
    /// RECEIVE COPY RESULTS (SPC).
    RECEIVE_COPY_RESULTS = 0x84, "RECEIVE COPY RESULTS";
    /// ATA PASS-THROUGH(16) (SAT).
    ATA_PASS_THROUGH_16 = 0x85, "ATA PASS-THROUGH(16)";
    /// ACCESS CONTROL IN (SPC).
    ACCESS_CONTROL_IN = 0x86, "ACCESS CONTROL IN";
    /// ACCESS CONTROL OUT (SPC).
    ACCESS_CONTROL_OUT = 0x87, "ACCESS CONTROL OUT";
    /// READ(16) (SBC).
    READ_16 = 0x88, "READ(16)";
    /// COMPARE AND WRITE (SBC).
    COMPARE_AND_WRITE = 0x89, "COMPARE AND WRITE";
    /// WRITE(16) (SBC).
    WRITE_16 = 0x8A, "WRITE(16)";
    /// ORWRITE(16) (SBC).
    ORWRITE_16 = 0x8B, "ORWRITE(16)";
    /// READ ATTRIBUTE (SPC).
    READ_ATTRIBUTE = 0x8C, "READ ATTRIBUTE";
    /// WRITE ATTRIBUTE (SPC).
    WRITE_ATTRIBUTE = 0x8D, "WRITE ATTRIBUTE";
    /// WRITE AND VERIFY(16) (SBC).
    WRITE_AND_VERIFY_16 = 0x8E, "WRITE AND VERIFY(16)";
    /// VERIFY(16) (SBC).
    VERIFY_16 = 0x8F, "VERIFY(16)";
    /// PRE-FETCH(16) (SBC).
    PRE_FETCH_16 = 0x90, "PRE-FETCH(16)";
    /// SYNCHRONIZE CACHE(16) (SBC).
    SYNCHRONIZE_CACHE_16 = 0x91, "SYNCHRONIZE CACHE(16)";
    /// LOCK UNLOCK CACHE(16) (obsolete SBC).
    LOCK_UNLOCK_CACHE_16 = 0x92, "LOCK UNLOCK CACHE(16)";
    /// WRITE SAME(16) (SBC).
    WRITE_SAME_16 = 0x93, "WRITE SAME(16)";
    /// WRITE ATOMIC(16) (SBC-4).
    WRITE_ATOMIC_16 = 0x9C, "WRITE ATOMIC(16)";
    /// SERVICE ACTION BIDIRECTIONAL (SPC).
    SERVICE_ACTION_BIDIRECTIONAL = 0x9D, "SERVICE ACTION BIDIRECTIONAL";
    /// SERVICE ACTION IN(16); service actions in [`sai16`].
    SERVICE_ACTION_IN_16 = 0x9E, "SERVICE ACTION IN(16)";
    /// SERVICE ACTION OUT(16); service actions in [`sao16`].
    SERVICE_ACTION_OUT_16 = 0x9F, "SERVICE ACTION OUT(16)";
    /// REPORT LUNS (SPC).
    REPORT_LUNS = 0xA0, "REPORT LUNS";
    /// ATA PASS-THROUGH(12) (SAT).
    ATA_PASS_THROUGH_12 = 0xA1, "ATA PASS-THROUGH(12)";
    /// SECURITY PROTOCOL IN (SPC).
    SECURITY_PROTOCOL_IN = 0xA2, "SECURITY PROTOCOL IN";
    /// MAINTENANCE IN; service actions in [`maint_in`].
    MAINTENANCE_IN = 0xA3, "MAINTENANCE IN";
    /// MAINTENANCE OUT; service actions in [`maint_out`].
    MAINTENANCE_OUT = 0xA4, "MAINTENANCE OUT";
    /// READ(12) (SBC).
    READ_12 = 0xA8, "READ(12)";
    /// SERVICE ACTION OUT(12) (SPC).
    SERVICE_ACTION_OUT_12 = 0xA9, "SERVICE ACTION OUT(12)";
    /// WRITE(12) (SBC).
    WRITE_12 = 0xAA, "WRITE(12)";
    /// SERVICE ACTION IN(12) (SPC).
    SERVICE_ACTION_IN_12 = 0xAB, "SERVICE ACTION IN(12)";
    /// WRITE AND VERIFY(12) (SBC).
    WRITE_AND_VERIFY_12 = 0xAE, "WRITE AND VERIFY(12)";
    /// VERIFY(12) (SBC).
    VERIFY_12 = 0xAF, "VERIFY(12)";
    /// SECURITY PROTOCOL OUT (SPC).
    SECURITY_PROTOCOL_OUT = 0xB5, "SECURITY PROTOCOL OUT";
    /// READ DEFECT DATA(12) (SBC).
    READ_DEFECT_DATA_12 = 0xB7, "READ DEFECT DATA(12)";
}

impl Opcode {
    /// The group code: bits 7:5 of the opcode (SPC-4 4.2.5.1).
    pub const fn group(self) -> u8 {
        self.0 >> 5
    }

    /// CDB length implied by the group code, or `None` for the reserved
    /// groups (3 = variable length/reserved, 6 and 7 = vendor specific).
    ///
    /// Group 0: 6 bytes; groups 1 and 2: 10; group 4: 16; group 5: 12.
    /// Variable-length CDBs (0x7F) carry their length in byte 7; see
    /// [`crate::cdb::cdb_len`].
    pub const fn cdb_len(self) -> Option<usize> {
        match self.group() {
            0 => Some(6),
            1 | 2 => Some(10),
            4 => Some(16),
            5 => Some(12),
            _ => None,
        }
    }

    /// True when byte 1 bits 4:0 of this command's CDB hold a service action
    /// (SANITIZE, PERSISTENT RESERVE IN/OUT, third-party copy, access
    /// control, the SERVICE ACTION IN/OUT and MAINTENANCE IN/OUT families).
    pub const fn has_service_action(self) -> bool {
        matches!(
            self.0,
            0x48 | 0x5E
                | 0x5F
                | 0x83
                | 0x84
                | 0x86
                | 0x87
                | 0x9D
                | 0x9E
                | 0x9F
                | 0xA3
                | 0xA4
                | 0xA9
                | 0xAB
        )
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "Opcode({:#04x} {n})", self.0),
            None => write!(f, "Opcode({:#04x})", self.0),
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "opcode {:#04x}", self.0),
        }
    }
}

impl From<u8> for Opcode {
    fn from(v: u8) -> Self {
        Opcode(v)
    }
}

impl From<Opcode> for u8 {
    fn from(o: Opcode) -> u8 {
        o.0
    }
}

/// Service actions of SERVICE ACTION IN(16) (0x9E).
pub mod sai16 {
    /// READ CAPACITY(16).
    pub const READ_CAPACITY_16: u8 = 0x10;
    /// READ LONG(16).
    pub const READ_LONG_16: u8 = 0x11;
    /// GET LBA STATUS.
    pub const GET_LBA_STATUS: u8 = 0x12;
    /// REPORT REFERRALS.
    pub const REPORT_REFERRALS: u8 = 0x13;
    /// GET STREAM STATUS.
    pub const GET_STREAM_STATUS: u8 = 0x16;
}

/// Service actions of SERVICE ACTION OUT(16) (0x9F).
pub mod sao16 {
    /// WRITE LONG(16).
    pub const WRITE_LONG_16: u8 = 0x11;
}

/// Service actions of MAINTENANCE IN (0xA3).
pub mod maint_in {
    /// REPORT IDENTIFYING INFORMATION.
    pub const REPORT_IDENTIFYING_INFORMATION: u8 = 0x05;
    /// REPORT TARGET PORT GROUPS.
    pub const REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
    /// REPORT ALIASES.
    pub const REPORT_ALIASES: u8 = 0x0B;
    /// REPORT SUPPORTED OPERATION CODES.
    pub const REPORT_SUPPORTED_OPERATION_CODES: u8 = 0x0C;
    /// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
    pub const REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS: u8 = 0x0D;
    /// REPORT PRIORITY.
    pub const REPORT_PRIORITY: u8 = 0x0E;
    /// REPORT TIMESTAMP.
    pub const REPORT_TIMESTAMP: u8 = 0x0F;
    /// MANAGEMENT PROTOCOL IN.
    pub const MANAGEMENT_PROTOCOL_IN: u8 = 0x10;
}

/// Service actions of MAINTENANCE OUT (0xA4).
pub mod maint_out {
    /// SET IDENTIFYING INFORMATION.
    pub const SET_IDENTIFYING_INFORMATION: u8 = 0x06;
    /// SET TARGET PORT GROUPS.
    pub const SET_TARGET_PORT_GROUPS: u8 = 0x0A;
    /// CHANGE ALIASES.
    pub const CHANGE_ALIASES: u8 = 0x0B;
    /// SET PRIORITY.
    pub const SET_PRIORITY: u8 = 0x0E;
    /// SET TIMESTAMP.
    pub const SET_TIMESTAMP: u8 = 0x0F;
    /// MANAGEMENT PROTOCOL OUT.
    pub const MANAGEMENT_PROTOCOL_OUT: u8 = 0x10;
}

/// Service actions of PERSISTENT RESERVE IN (SPC-4 6.15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PrInAction {
    /// READ KEYS: list registered reservation keys.
    ReadKeys = 0x00,
    /// READ RESERVATION: the current persistent reservation.
    ReadReservation = 0x01,
    /// REPORT CAPABILITIES.
    ReportCapabilities = 0x02,
    /// READ FULL STATUS: every registration with its transport ID.
    ReadFullStatus = 0x03,
}

impl PrInAction {
    /// Decodes the 5-bit service action; reserved values yield `None`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v & 0x1F {
            0 => PrInAction::ReadKeys,
            1 => PrInAction::ReadReservation,
            2 => PrInAction::ReportCapabilities,
            3 => PrInAction::ReadFullStatus,
            _ => return None,
        })
    }

    /// Every service action, for tables.
    pub const ALL: [PrInAction; 4] = [
        PrInAction::ReadKeys,
        PrInAction::ReadReservation,
        PrInAction::ReportCapabilities,
        PrInAction::ReadFullStatus,
    ];
}

/// Service actions of PERSISTENT RESERVE OUT (SPC-4 6.16.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PrOutAction {
    /// REGISTER.
    Register = 0x00,
    /// RESERVE.
    Reserve = 0x01,
    /// RELEASE.
    Release = 0x02,
    /// CLEAR.
    Clear = 0x03,
    /// PREEMPT.
    Preempt = 0x04,
    /// PREEMPT AND ABORT.
    PreemptAndAbort = 0x05,
    /// REGISTER AND IGNORE EXISTING KEY.
    RegisterAndIgnoreExistingKey = 0x06,
    /// REGISTER AND MOVE.
    RegisterAndMove = 0x07,
    /// REPLACE LOST RESERVATION.
    ReplaceLostReservation = 0x08,
}

impl PrOutAction {
    /// Decodes the 5-bit service action; reserved values yield `None`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v & 0x1F {
            0 => PrOutAction::Register,
            1 => PrOutAction::Reserve,
            2 => PrOutAction::Release,
            3 => PrOutAction::Clear,
            4 => PrOutAction::Preempt,
            5 => PrOutAction::PreemptAndAbort,
            6 => PrOutAction::RegisterAndIgnoreExistingKey,
            7 => PrOutAction::RegisterAndMove,
            8 => PrOutAction::ReplaceLostReservation,
            _ => return None,
        })
    }

    /// Every service action, for tables.
    pub const ALL: [PrOutAction; 9] = [
        PrOutAction::Register,
        PrOutAction::Reserve,
        PrOutAction::Release,
        PrOutAction::Clear,
        PrOutAction::Preempt,
        PrOutAction::PreemptAndAbort,
        PrOutAction::RegisterAndIgnoreExistingKey,
        PrOutAction::RegisterAndMove,
        PrOutAction::ReplaceLostReservation,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_table_is_sorted_unique_and_lengths_follow_group_code() {
        for w in Opcode::ALL.windows(2) {
            assert!(w[0] < w[1], "{:?} before {:?}", w[0], w[1]);
        }
        assert_eq!(Opcode::READ_6.cdb_len(), Some(6));
        assert_eq!(Opcode::READ_10.cdb_len(), Some(10));
        assert_eq!(Opcode::MODE_SENSE_10.cdb_len(), Some(10));
        assert_eq!(Opcode::READ_12.cdb_len(), Some(12));
        assert_eq!(Opcode::READ_16.cdb_len(), Some(16));
        assert_eq!(Opcode::SERVICE_ACTION_IN_16.cdb_len(), Some(16));
        assert_eq!(Opcode::REPORT_LUNS.cdb_len(), Some(12));
        assert_eq!(Opcode::VARIABLE_LENGTH.cdb_len(), None);
        assert_eq!(Opcode(0xC0).cdb_len(), None);
    }

    #[test]
    fn well_known_values() {
        assert_eq!(Opcode::COMPARE_AND_WRITE.0, 0x89);
        assert_eq!(Opcode::UNMAP.0, 0x42);
        assert_eq!(Opcode::WRITE_SAME_16.0, 0x93);
        assert_eq!(sai16::READ_CAPACITY_16, 0x10);
        assert_eq!(sai16::GET_LBA_STATUS, 0x12);
        assert_eq!(maint_in::REPORT_SUPPORTED_OPERATION_CODES, 0x0C);
        assert_eq!(Opcode::INQUIRY.name(), Some("INQUIRY"));
        assert_eq!(Opcode(0xEE).name(), None);
        assert_eq!(format!("{:?}", Opcode::READ_10), "Opcode(0x28 READ(10))");
        assert!(Opcode::PERSISTENT_RESERVE_OUT.has_service_action());
        assert!(!Opcode::READ_16.has_service_action());
    }

    #[test]
    fn pr_service_actions_decode() {
        for a in PrInAction::ALL {
            assert_eq!(PrInAction::from_u8(a as u8), Some(a));
        }
        for a in PrOutAction::ALL {
            assert_eq!(PrOutAction::from_u8(a as u8), Some(a));
        }
        assert_eq!(PrInAction::from_u8(4), None);
        assert_eq!(PrOutAction::from_u8(9), None);
        // The upper bits of byte 1 are not part of the service action.
        assert_eq!(PrOutAction::from_u8(0xE1), Some(PrOutAction::Reserve));
    }
}
