//! What goes into a logical unit and what comes out of it.

pub use scsi::ScsiStatus;

use crate::sense::SenseBuffer;

/// The identity of an I_T nexus as the logical unit sees it.
///
/// `initiator` is opaque: the front end maps its initiator port (for iSCSI: initiator
/// name + ISID) to a number and must map the same port to the same number every time
/// (registrations and reservations are kept per nexus, SPC-4 5.13). `target_port` is the
/// RELATIVE TARGET PORT IDENTIFIER of the port the command came in on (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItNexus {
    /// Opaque initiator port identity.
    pub initiator: u64,
    /// Relative target port identifier.
    pub target_port: u16,
}

impl ItNexus {
    /// A nexus from its two parts.
    pub const fn new(initiator: u64, target_port: u16) -> Self {
        Self {
            initiator,
            target_port,
        }
    }
}

/// One command for a logical unit. The caller owns every buffer.
///
/// - `cdb`: the CDB bytes; may be longer than the command's CDB (iSCSI pads to 16).
/// - `data_out`: the data the initiator sent, exactly its expected data transfer length
///   (EDTL) for a write; empty for other commands.
/// - `data_in`: room for the data to return, exactly the EDTL for a read; the command
///   fills a prefix of it ([`Completion::data_in_len`]).
#[derive(Debug)]
pub struct ScsiRequest<'a> {
    /// The I_T nexus the command came from.
    pub nexus: ItNexus,
    /// The CDB.
    pub cdb: &'a [u8],
    /// Data-out buffer (EDTL bytes for writes).
    pub data_out: &'a [u8],
    /// Data-in buffer (EDTL bytes for reads).
    pub data_in: &'a mut [u8],
}

impl<'a> ScsiRequest<'a> {
    /// A request without data.
    pub fn new(nexus: ItNexus, cdb: &'a [u8]) -> Self {
        Self {
            nexus,
            cdb,
            data_out: &[],
            data_in: &mut [],
        }
    }

    /// The expected data transfer length in the command's direction.
    pub fn expected_len(&self) -> usize {
        self.data_in.len().max(self.data_out.len())
    }
}

/// Difference between the expected transfer length and what the command transfers
/// (SAM-5 5.4.3, RFC 7143 11.4.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    /// The command moved exactly the expected length.
    None,
    /// The command moved this many bytes less than expected.
    Underflow(u32),
    /// The command wanted this many bytes more than expected (the excess was not moved).
    Overflow(u32),
}

impl Residual {
    /// Residual of a command that wanted `wanted` bytes against an EDTL of `expected`.
    pub fn of(wanted: u64, expected: usize) -> Self {
        let expected = expected as u64;
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        match wanted.cmp(&expected) {
            std::cmp::Ordering::Equal => Residual::None,
            std::cmp::Ordering::Less => Residual::Underflow(clamp(expected - wanted)),
            std::cmp::Ordering::Greater => Residual::Overflow(clamp(wanted - expected)),
        }
    }
}

/// The outcome of a command: always delivered to the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The status byte.
    pub status: ScsiStatus,
    /// Sense data (with CHECK CONDITION), fixed or descriptor format per D_SENSE.
    pub sense: Option<SenseBuffer>,
    /// Bytes of `data_in` the command filled.
    pub data_in_len: usize,
    /// The residual against the expected transfer length.
    pub residual: Residual,
}

impl Completion {
    /// GOOD with no data.
    pub const GOOD: Completion = Completion {
        status: ScsiStatus::Good,
        sense: None,
        data_in_len: 0,
        residual: Residual::None,
    };

    /// A status without sense (GOOD, BUSY, RESERVATION CONFLICT...).
    pub const fn status(status: ScsiStatus, residual: Residual) -> Self {
        Completion {
            status,
            sense: None,
            data_in_len: 0,
            residual,
        }
    }
}
