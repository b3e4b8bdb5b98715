//! SCSI status codes (SAM-5 5.3).

use crate::error::WireError;

/// The status byte a device server returns at the end of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ScsiStatus {
    /// The command completed without error.
    Good = 0x00,
    /// Sense data describes an error or exception.
    CheckCondition = 0x02,
    /// PRE-FETCH: the requested range fits in the cache.
    ConditionMet = 0x04,
    /// The logical unit is busy; the command may be retried.
    Busy = 0x08,
    /// Access denied by a reservation.
    ReservationConflict = 0x18,
    /// The task set has no room for this command.
    TaskSetFull = 0x28,
    /// An ACA condition exists.
    AcaActive = 0x30,
    /// The command was aborted by another I_T nexus (TAS = 1).
    TaskAborted = 0x40,
}

impl ScsiStatus {
    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Decodes a status byte; obsolete and reserved codes yield `None`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => ScsiStatus::Good,
            0x02 => ScsiStatus::CheckCondition,
            0x04 => ScsiStatus::ConditionMet,
            0x08 => ScsiStatus::Busy,
            0x18 => ScsiStatus::ReservationConflict,
            0x28 => ScsiStatus::TaskSetFull,
            0x30 => ScsiStatus::AcaActive,
            0x40 => ScsiStatus::TaskAborted,
            _ => return None,
        })
    }

    /// True for GOOD and CONDITION MET, the two statuses that mean success.
    pub const fn is_success(self) -> bool {
        matches!(self, ScsiStatus::Good | ScsiStatus::ConditionMet)
    }
}

impl From<ScsiStatus> for u8 {
    fn from(s: ScsiStatus) -> u8 {
        s as u8
    }
}

impl TryFrom<u8> for ScsiStatus {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        ScsiStatus::from_u8(v).ok_or(WireError::BadValue {
            field: "STATUS",
            value: v as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_round_trip_and_unknown_codes_are_rejected() {
        for v in 0..=255u8 {
            match ScsiStatus::from_u8(v) {
                Some(s) => assert_eq!(s.as_u8(), v),
                None => assert!(ScsiStatus::try_from(v).is_err()),
            }
        }
        assert_eq!(
            ScsiStatus::from_u8(0x18),
            Some(ScsiStatus::ReservationConflict)
        );
        assert_eq!(ScsiStatus::TaskSetFull.as_u8(), 0x28);
        assert!(ScsiStatus::ConditionMet.is_success());
        assert!(!ScsiStatus::Busy.is_success());
        assert_eq!(ScsiStatus::from_u8(0x10), None);
    }
}
