//! The class driver's typed errors and the one place where a completed SRB is classified.

use port::{Srb, SrbStatus, WaitError, scsi_status};
use scsi::{Asc, Sense, SenseKey};

/// Why a disk operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The byte range does not lie inside the disk.
    #[error("byte range {offset}+{len} is beyond the capacity of {capacity} bytes")]
    OutOfRange {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Capacity in bytes when the request was checked.
        capacity: u64,
    },
    /// Offset or length is not a multiple of the logical block size.
    #[error("offset {offset} or length {len} is not a multiple of the block size {block_size}")]
    Unaligned {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// The disk's logical block size.
        block_size: u32,
    },
    /// The data buffer is shorter than the length of the request.
    #[error("buffer of {have} bytes is shorter than the {need} bytes of the request")]
    BufferTooSmall {
        /// Bytes the request moves.
        need: u64,
        /// Bytes the buffer holds.
        have: u64,
    },
    /// Every slot of the queue is in use (submit fewer, or open a deeper queue).
    #[error("queue full: {depth} requests outstanding")]
    QueueFull {
        /// The queue's depth.
        depth: u32,
    },
    /// MEDIUM ERROR: the data could not be read or written.
    #[error("medium error: {sense}")]
    Medium {
        /// The sense data the device returned.
        sense: Sense,
    },
    /// HARDWARE ERROR.
    #[error("hardware error: {sense}")]
    Hardware {
        /// The sense data the device returned.
        sense: Sense,
    },
    /// NOT READY (other than "becoming ready", which is retried).
    #[error("logical unit not ready: {sense}")]
    NotReady {
        /// The sense data the device returned.
        sense: Sense,
    },
    /// DATA PROTECT: the disk refuses writes.
    #[error("write protected: {sense}")]
    WriteProtected {
        /// The sense data the device returned.
        sense: Sense,
    },
    /// ILLEGAL REQUEST: the device refused the command.
    #[error("illegal request: {sense}")]
    IllegalRequest {
        /// The sense data the device returned.
        sense: Sense,
    },
    /// UNIT ATTENTION that persisted through every retry.
    #[error("unit attention persisted: {sense}")]
    UnitAttention {
        /// The last sense data.
        sense: Sense,
    },
    /// Another CHECK CONDITION.
    #[error("check condition: {sense}")]
    Check {
        /// The sense data the device returned.
        sense: Sense,
    },
    /// RESERVATION CONFLICT: another initiator holds a reservation.
    #[error("reservation conflict")]
    ReservationConflict,
    /// BUSY or TASK SET FULL persisted through every retry.
    #[error("device busy (retries exhausted)")]
    Busy,
    /// A SCSI status the driver does not handle (with SrbStatus ERROR and no sense).
    #[error("SCSI status {0:#04x}")]
    ScsiStatus(u8),
    /// The port or miniport failed the request (no device, timeout, bus reset that persisted,
    /// adapter shut down, ...).
    #[error("transport error: {0:?}")]
    Transport(SrbStatus),
    /// Fewer bytes moved than asked for.
    #[error("short transfer: {transferred} of {expected} bytes")]
    ShortTransfer {
        /// Bytes asked for.
        expected: u32,
        /// Bytes moved.
        transferred: u32,
    },
    /// The device does not offer the operation (UNMAP on a fully provisioned disk).
    #[error("not supported by the device: {0}")]
    Unsupported(&'static str),
    /// The logical unit is not a direct-access block device, or not present.
    #[error("no disk at this address: {0}")]
    NoDisk(&'static str),
    /// A blocking port call failed.
    #[error("port: {0}")]
    Port(#[from] WaitError),
}

/// What to do with a completed SRB (the result of [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// It worked.
    Done,
    /// Try again after the backoff of `attempt`; `capacity_changed` when the device reported
    /// CAPACITY DATA HAS CHANGED (re-read the capacity first).
    Retry {
        /// The error to report if the retries run out.
        error: DiskError,
        /// Start the retry at once (unit attention) or after the backoff (busy).
        immediate: bool,
        /// Re-read the capacity before retrying (2A/09).
        capacity_changed: bool,
    },
    /// It failed for good.
    Fail(DiskError),
}

/// Classifies a completed EXECUTE_SCSI SRB: success, a transient condition worth a retry, or a
/// typed error. The one place where SrbStatus, SCSI status and sense map to [`DiskError`].
pub(crate) fn classify(srb: &Srb) -> Disposition {
    let status = srb.srb_status.status();
    match status {
        SrbStatus::SUCCESS => return Disposition::Done,
        SrbStatus::DATA_OVERRUN => {
            return Disposition::Fail(DiskError::ShortTransfer {
                expected: srb.requested_length(),
                transferred: srb.data_transfer_length,
            });
        }
        SrbStatus::BUSY => return retry_later(DiskError::Busy),
        // Transient port conditions: the request never reached the device, or was flushed by
        // a reset. Retried like BUSY.
        SrbStatus::BUS_RESET
        | SrbStatus::REQUEST_FLUSHED
        | SrbStatus::TIMEOUT
        | SrbStatus::COMMAND_TIMEOUT
        | SrbStatus::ABORTED
        | SrbStatus::INSUFFICIENT_RESOURCES
        | SrbStatus::THROTTLED_REQUEST => return retry_later(DiskError::Transport(status)),
        SrbStatus::ERROR => {}
        other => return Disposition::Fail(DiskError::Transport(other)),
    }
    match srb.scsi_status {
        scsi_status::BUSY | scsi_status::QUEUE_FULL => return retry_later(DiskError::Busy),
        scsi_status::RESERVATION_CONFLICT => {
            return Disposition::Fail(DiskError::ReservationConflict);
        }
        scsi_status::CHECK_CONDITION => {}
        other => return Disposition::Fail(DiskError::ScsiStatus(other)),
    }
    let Ok(sense) = Sense::parse(srb.sense()) else {
        // CHECK CONDITION without usable sense: nothing to go on.
        return Disposition::Fail(DiskError::Transport(SrbStatus::REQUEST_SENSE_FAILED));
    };
    match sense.key {
        SenseKey::UnitAttention => Disposition::Retry {
            error: DiskError::UnitAttention { sense },
            immediate: true,
            capacity_changed: sense.asc == Asc::CAPACITY_DATA_HAS_CHANGED,
        },
        SenseKey::NotReady if sense.asc == Asc::LU_BECOMING_READY => {
            retry_later(DiskError::NotReady { sense })
        }
        SenseKey::NotReady => Disposition::Fail(DiskError::NotReady { sense }),
        SenseKey::AbortedCommand => retry_later(DiskError::Check { sense }),
        // Recovered errors mean the data is good.
        SenseKey::RecoveredError | SenseKey::NoSense => Disposition::Done,
        SenseKey::MediumError => Disposition::Fail(DiskError::Medium { sense }),
        SenseKey::HardwareError => Disposition::Fail(DiskError::Hardware { sense }),
        SenseKey::DataProtect => Disposition::Fail(DiskError::WriteProtected { sense }),
        SenseKey::IllegalRequest => Disposition::Fail(DiskError::IllegalRequest { sense }),
        _ => Disposition::Fail(DiskError::Check { sense }),
    }
}

fn retry_later(error: DiskError) -> Disposition {
    Disposition::Retry {
        error,
        immediate: false,
        capacity_changed: false,
    }
}
