//! SPC/SBC device emulation over a block backend.
//!
//! A [`LogicalUnit`] executes SCSI commands (CDB bytes in; status, sense and data out)
//! against a [`BlockBackend`]: RAM ([`backend::RamBackend`], sparse and thin), a file or
//! block device ([`backend::FileBackend`]), nothing ([`backend::NullBackend`]), or a
//! fault-injecting wrapper for tests ([`backend::FaultyBackend`]).
//!
//! What this crate does not do: it knows nothing of the port's threads, queues, task
//! management or transports. Miniports call it; the front end maps I_T nexuses to
//! [`ItNexus`] values.
//!
//! # Driving a logical unit
//!
//! - [`LogicalUnit::execute`] runs one command synchronously on the caller's thread
//!   (the RAM and null miniports complete in `start_io` this way). READ fills the
//!   caller's data-in buffer directly from the backend; nothing is allocated per READ or
//!   WRITE.
//! - [`LogicalUnit::prepare`] + [`LogicalUnit::finish`] split the hot path for a miniport
//!   that submits I/O itself (io_uring): READ, WRITE and SYNCHRONIZE CACHE come back as a
//!   [`Prepared::Io`] plan (offset, length, FUA); every other command completes inside
//!   `prepare`. A write plan keeps its LBA range locked against COMPARE AND WRITE until
//!   `finish` (or until the plan is dropped).
//! - Resets and nexus events come from the port / front end: [`LogicalUnit::reset`]
//!   (power on 29/01, target reset 29/02, LU reset 29/03), [`LogicalUnit::nexus_loss`]
//!   (29/07), [`LogicalUnit::register_nexus`] at login (unit attentions are queued only
//!   for nexuses the LU knows; it also learns every nexus that sends a non-READ/WRITE
//!   command), [`LogicalUnit::notify_capacity_changed`] (2A/09).
//!
//! # Decisions
//!
//! - REPORT LUNS: a logical unit cannot know its siblings. It answers from a
//!   [`LunDirectory`] the front end supplies ([`LogicalUnit::with_lun_directory`]), or
//!   with its own LUN only. For the REPORT LUNS well-known LU (C101h) and for LUNs with no
//!   logical unit, the front end calls [`report_luns`] / [`no_such_lun`].
//! - Residuals: `data_out` / `data_in` are exactly the expected data transfer length.
//!   A shorter EDTL moves only that much (whole blocks for writes) and reports an
//!   overflow; a longer one reports an underflow (RFC 7143 11.4.5.1, as libiscsi's
//!   residual tests expect).
//! - Order of checks: CDB (table, usage mask), then reservations (RESERVATION CONFLICT),
//!   then a pending unit attention, then NOT READY, then write protection, then the
//!   command's own checks (LBA range before length limits).
//! - Persistent reservations: every type, per I_T nexus; no APTPL, SPEC_I_PT, ALL_TG_PT
//!   or REGISTER AND MOVE (REPORT CAPABILITIES says so). PREEMPT AND ABORT removes the
//!   registrations but cannot abort tasks: the port owns the task set.
//! - Mode pages 08h, 0Ah, 1Ch; changeable: WCE, D_SENSE, SWP. Saved values live in
//!   memory only (lost when the process exits). WCE = 0 makes every write FUA.
//! - Identity: the NAA designator is an FNV-1a hash of vendor, product, serial and name,
//!   so the same configuration gives the same identifier on every start: NAA 3 (locally
//!   assigned) or NAA 6 with a configured IEEE company id.
//! - Not supported (ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE): everything not in
//!   [`table::COMMANDS`]; UNMAP on a backend that is not thin. WRITE SAME ANCHOR,
//!   NUMBER OF LOGICAL BLOCKS = 0 (WSNZ = 1), protection information (RDPROTECT etc.) and
//!   VERIFY BYTCHK 10b/11b are INVALID FIELD IN CDB.
//!
//! ```
//! use std::sync::Arc;
//! use device::{LogicalUnit, LuConfig, ItNexus, ScsiRequest, ScsiStatus, backend::RamBackend};
//!
//! let ram = Arc::new(RamBackend::new(2048, 512).unwrap());
//! let lu = LogicalUnit::new(LuConfig::default(), ram);
//! let nexus = ItNexus::new(1, 1);
//!
//! // WRITE(10) one block at LBA 7.
//! let data = [0xAB; 512];
//! let cdb = [0x2a, 0, 0, 0, 0, 7, 0, 0, 1, 0];
//! let mut req = ScsiRequest { nexus, cdb: &cdb, data_out: &data, data_in: &mut [] };
//! assert_eq!(lu.execute(&mut req).status, ScsiStatus::Good);
//!
//! // READ(10) it back into the caller's buffer.
//! let mut buf = [0u8; 512];
//! let cdb = [0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0];
//! let mut req = ScsiRequest { nexus, cdb: &cdb, data_out: &[], data_in: &mut buf };
//! let c = lu.execute(&mut req);
//! assert_eq!((c.status, c.data_in_len), (ScsiStatus::Good, 512));
//! assert_eq!(buf, data);
//! ```
#![forbid(unsafe_code)]

pub mod backend;
mod lu;
pub mod mode;
mod pr;
mod rangelock;
mod request;
mod sbc;
pub mod sense;
mod spc;
mod state;
pub mod table;

pub use backend::BlockBackend;
pub use lu::{
    IoOp, IoPlan, LogicalUnit, LuConfig, LuConfigError, LunDirectory, Prepared, ResetKind,
};
pub use pr::PrType;
pub use request::{Completion, ItNexus, Residual, ScsiRequest, ScsiStatus};
pub use sense::{Sense, SenseBuffer, SenseFormat};
pub use spc::{REPORT_LUNS_WLUN, encode_lun, no_such_lun, report_luns};
