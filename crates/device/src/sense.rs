//! Sense data for this device: the `scsi` crate's [`Sense`] builder, plus the one
//! mapping from backend failures to sense ([`backend_error_sense`]).
//!
//! Every error a command ends with is a [`Sense`] (or a bare status such as RESERVATION
//! CONFLICT); it is encoded once, when the completion is built, in fixed or descriptor
//! format according to the D_SENSE bit of the control mode page.

pub use scsi::sense::SenseBuffer;
pub use scsi::{Asc, Sense, SenseFormat, SenseKey};

use crate::backend::{BackendError, BackendErrorKind, BackendOp};

/// The one mapping from backend failures to sense (SBC-4 4.18, SPC-4 annex D):
///
/// | failure | sense |
/// |---|---|
/// | no space (ENOSPC) | DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (27/07) |
/// | I/O error on read | MEDIUM ERROR / UNRECOVERED READ ERROR (11/00) |
/// | I/O error on write, unmap, flush | MEDIUM ERROR / WRITE ERROR (0C/00) |
/// | out of range | ILLEGAL REQUEST / LBA OUT OF RANGE (21/00) |
/// | anything else | HARDWARE ERROR / INTERNAL TARGET FAILURE (44/00) |
pub fn backend_error_sense(e: &BackendError) -> Sense {
    match e.kind {
        BackendErrorKind::NoSpace => Sense::new(
            SenseKey::DataProtect,
            Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        ),
        BackendErrorKind::Io => match e.op {
            BackendOp::Read | BackendOp::Status => {
                Sense::new(SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR)
            }
            BackendOp::Write | BackendOp::Unmap | BackendOp::Flush => {
                Sense::new(SenseKey::MediumError, Asc::WRITE_ERROR)
            }
        },
        BackendErrorKind::OutOfRange => Sense::illegal_request(Asc::LBA_OUT_OF_RANGE),
        BackendErrorKind::Unsupported | BackendErrorKind::Other => {
            Sense::new(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_map_to_the_documented_sense() {
        let e = BackendError::from_errno(BackendOp::Write, 28);
        assert_eq!(
            backend_error_sense(&e),
            Sense::new(SenseKey::DataProtect, Asc::new(0x27, 0x07))
        );
        let e = BackendError::from_errno(BackendOp::Read, 5);
        assert_eq!(backend_error_sense(&e).asc, Asc::new(0x11, 0x00));
        let e = BackendError::from_errno(BackendOp::Flush, 5);
        assert_eq!(backend_error_sense(&e).asc, Asc::new(0x0C, 0x00));
        let e = BackendError::from_errno(BackendOp::Write, 1);
        assert_eq!(backend_error_sense(&e).key, SenseKey::HardwareError);
    }
}
