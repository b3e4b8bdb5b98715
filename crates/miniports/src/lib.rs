//! Miniport drivers for virtual disks: each drives one kind of "host adapter" whose logical
//! units are [`device::LogicalUnit`]s, through the port's routine table ([`port::Miniport`]).
//!
//! - [`ram::RamMiniport`]: executes every request inside `start_io` and completes it there
//!   (the seed's "complete during StartIo" performance tip). Used for RAM-backed and
//!   null-backed LUs: the backend decides where the data lives.
//! - `file`: a file or block device; I/O goes to the kernel (io_uring) and completions come
//!   back as the adapter's interrupt, reaped in the miniport's `interrupt` routine.
//!
//! What is shared lives here: the adapter description given to `find_adapter`
//! ([`DiskAdapterConfig`]), and the translation between an [`Srb`] and a device command
//! ([`execute_srb`], [`complete_srb`]).
//!
//! Resets: a miniport hosting emulated devices is the one that tells them about resets.
//! `reset_bus` queues a target-reset unit attention on every LU of the bus; an
//! `RESET_LOGICAL_UNIT` SRB a LU-reset one.

pub mod file;
pub mod null;
pub mod ram;
pub mod sim;

use std::sync::Arc;

use device::{Completion, LogicalUnit, Residual, ScsiRequest, ScsiStatus};
use port::{Address, DataDirection, Srb, SrbStatus};

/// One logical unit of a virtual-disk adapter.
#[derive(Debug, Clone)]
pub struct DiskLu {
    /// Where the LU answers on the adapter.
    pub address: Address,
    /// The emulated device.
    pub lu: Arc<LogicalUnit>,
}

/// What a virtual-disk miniport's `find_adapter` is given (the `HwContext`): the adapters to
/// create, one per entry (the miniport sets `again` while entries remain).
#[derive(Debug, Default)]
pub struct DiskAdapterConfig {
    /// Adapters still to be found, each a list of its LUs.
    pub adapters: Vec<Vec<DiskLu>>,
    /// `MaximumTransferLength` to declare, in bytes.
    pub maximum_transfer_length: u32,
}

impl DiskAdapterConfig {
    /// One adapter with the given LUs.
    pub fn single(lus: Vec<DiskLu>) -> Self {
        Self {
            adapters: vec![lus],
            maximum_transfer_length: 8 << 20,
        }
    }
}

/// Finds the LU at `address` (linear: adapters have few LUs).
pub fn find_lu(lus: &[DiskLu], address: Address) -> Option<&Arc<LogicalUnit>> {
    lus.iter().find(|d| d.address == address).map(|d| &d.lu)
}

/// The device's nexus for the port's nexus.
pub fn device_nexus(srb: &Srb) -> device::ItNexus {
    device::ItNexus::new(srb.nexus.initiator, srb.nexus.relative_target_port.max(1))
}

/// The first step of a `find_adapter` that serves a list of configured adapters: takes the
/// next one and asks the port to call again while more remain (`set_again`). `None`: none is
/// left, `find_adapter` returns `NotFound`.
pub(crate) fn next_adapter<T>(
    adapters: &mut Vec<T>,
    ctx: &mut port::FindAdapterContext,
) -> Option<T> {
    if adapters.is_empty() {
        return None;
    }
    let next = adapters.remove(0);
    ctx.set_again(!adapters.is_empty());
    Some(next)
}

/// Executes an EXECUTE_SCSI `srb` synchronously on `lu` and sets its completion fields.
/// Runs on the caller's thread (under the adapter's interrupt lock when called from
/// `start_io`); the data moves directly between the SRB's buffer and the backend.
pub fn execute_srb(lu: &LogicalUnit, srb: &mut Srb) {
    let nexus = device_nexus(srb);
    let completion = {
        let len = (srb.data_transfer_length as usize).min(srb.data.len());
        let (data_out, data_in): (&[u8], &mut [u8]) = match srb.direction() {
            DataDirection::In => (&[], &mut srb.data[..len]),
            DataDirection::Out => (&srb.data[..len], &mut []),
            _ => (&[], &mut []),
        };
        let cdb = srb.cdb;
        let mut req = ScsiRequest {
            nexus,
            cdb: cdb.as_slice(),
            data_out,
            data_in,
        };
        lu.execute(&mut req)
    };
    complete_srb(srb, &completion);
}

/// Translates a device [`Completion`] into the SRB's status fields: SUCCESS, or ERROR with the
/// SCSI status (and autosense for CHECK CONDITION); an underflow lowers `DataTransferLength`
/// to the bytes moved and reports DATA_OVERRUN as the seed does for under-runs; an overflow
/// (the command wanted more than the initiator's length) is recorded in
/// [`Srb::overflow`].
pub fn complete_srb(srb: &mut Srb, c: &Completion) {
    match c.residual {
        Residual::None => {}
        Residual::Underflow(n) => {
            srb.data_transfer_length = srb.data_transfer_length.saturating_sub(n);
        }
        Residual::Overflow(n) => srb.overflow = n,
    }
    srb.scsi_status = c.status.into();
    srb.srb_status = match c.status {
        ScsiStatus::Good | ScsiStatus::ConditionMet => match c.residual {
            Residual::None => SrbStatus::SUCCESS,
            _ => SrbStatus::DATA_OVERRUN,
        },
        ScsiStatus::CheckCondition => {
            srb.srb_status = SrbStatus::ERROR;
            if let Some(sense) = &c.sense {
                srb.set_sense(sense.as_bytes());
            }
            srb.srb_status
        }
        ScsiStatus::Busy | ScsiStatus::TaskSetFull => SrbStatus::BUSY,
        _ => SrbStatus::ERROR,
    };
}
