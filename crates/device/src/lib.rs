//! SPC/SBC device emulation over a block backend.
//!
//! A [`LogicalUnit`] executes SCSI commands (CDB bytes in; status, sense and data out)
//! against a [`BlockBackend`]: RAM ([`backend::RamBackend`]), a file or block device
//! ([`backend::FileBackend`]), nothing ([`backend::NullBackend`]), or a fault-injecting
//! wrapper for tests ([`backend::FaultyBackend`]).
//!
//! What this crate does not do: it knows nothing of the port's threads, queues, task
//! management or transports. Miniports call it; the front end maps I_T nexuses to
//! [`ItNexus`] values and answers REPORT LUNS for LUNs that do not exist
//! ([`report_luns`]).
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
pub use lu::{IoOp, IoPlan, LogicalUnit, LuConfig, LunDirectory, Prepared, ResetKind};
pub use pr::PrType;
pub use request::{Completion, ItNexus, Residual, ScsiRequest, ScsiStatus};
pub use sense::{Sense, SenseBuffer, SenseFormat};
pub use spc::{REPORT_LUNS_WLUN, encode_lun, report_luns};
