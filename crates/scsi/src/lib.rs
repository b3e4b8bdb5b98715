//! SCSI wire types: opcodes, CDB layouts, status, sense data, VPD and mode pages.
//!
//! This crate knows the bytes of SPC-4 and SBC-3 and nothing else: it has no
//! notion of a port, a miniport, a queue or a logical unit's state. The same
//! definitions parse what an initiator sent and build what a target (or the
//! class driver, acting as initiator) sends. Every parser takes `&[u8]` and
//! returns a `Result` or `Option`; none panics on short or malformed input.
//!
//! Modules:
//! - [`opcode`]: operation codes and service actions.
//! - [`status`]: the SCSI status byte.
//! - [`asc`]: additional sense code/qualifier pairs.
//! - [`sense`]: sense keys and sense data in fixed and descriptor format.
#![forbid(unsafe_code)]

pub mod asc;
pub mod cdb;
pub mod error;
pub mod opcode;
pub mod sense;
pub mod status;

pub use asc::Asc;
pub use error::WireError;
pub use opcode::{Opcode, PrInAction, PrOutAction};
pub use sense::{Sense, SenseFormat, SenseKey, SenseKeySpecific};
pub use status::ScsiStatus;
