//! SCSI wire types: opcodes, CDB layouts, status, sense data, VPD and mode pages.
//!
//! This crate knows the bytes of SPC-4 and SBC-3 and nothing else: it has no
//! notion of a port, a miniport, a queue or a logical unit's state. The same
//! definitions parse what an initiator sent and build what a target (or the
//! class driver, acting as initiator) sends. Every parser takes `&[u8]` and
//! returns a `Result` or `Option`; none panics on short or malformed input.
//!
//! Fixed layouts are `#[repr(C)]` structs of bytes and big-endian integers
//! (zerocopy's `U16`/`U32`/`U64`) with compile-time size assertions; their
//! bit fields have `x()` / `set_x()` / `with_x()` accessors named after the
//! standard's field names, and an inherent `as_bytes()` for building.
//!
//! Modules:
//! - [`opcode`]: operation codes and service actions.
//! - [`status`]: the SCSI status byte.
//! - [`asc`]: additional sense code/qualifier pairs.
//! - [`sense`]: sense keys and sense data in fixed and descriptor format.
//! - [`cdb`]: CDB layouts, the generic [`cdb::Cdb`] view and [`cdb::RwCommand`].
//! - [`inquiry`]: standard INQUIRY data.
//! - [`vpd`]: VPD pages 00h, 80h, 83h, B0h, B1h, B2h.
//! - [`capacity`]: READ CAPACITY(10)/(16) parameter data.
//! - [`mode`]: mode parameter headers, block descriptors, pages 08h, 0Ah, 1Ch.
//! - [`lun`]: LUN encoding and REPORT LUNS parameter data.
//! - [`unmap`]: UNMAP parameter list and GET LBA STATUS parameter data.
//! - [`pr`]: persistent reservation types and PR IN/OUT parameter data.
//! - [`rsoc`]: REPORT SUPPORTED OPERATION CODES parameter data.
//! - [`alua`]: REPORT TARGET PORT GROUPS parameter data.
//! - [`error`]: [`WireError`], the one parse error type.
//!
//! # Example
//!
//! A device server decoding a CDB and answering with sense data, and an
//! initiator building the same command:
//!
//! ```
//! use scsi::cdb::{CdbLayout, Read10};
//! use scsi::{Asc, Cdb, Opcode, Sense, SenseFormat, SenseKey};
//!
//! let raw = [0x28, 0x08, 0, 0, 0x10, 0, 0, 0, 8, 0];
//! let cdb = Cdb::parse(&raw)?;
//! assert_eq!(cdb.opcode(), Opcode::READ_10);
//! let rw = cdb.rw().expect("READ(10) is a read/write command");
//! assert_eq!((rw.lba, rw.blocks, rw.fua), (0x1000, 8, true));
//!
//! // Out of range: LOGICAL BLOCK ADDRESS OUT OF RANGE, fixed format.
//! let sense = Sense::illegal_request(Asc::LBA_OUT_OF_RANGE).encode(SenseFormat::Fixed);
//! assert_eq!((sense[2], sense[12]), (0x05, 0x21));
//! assert_eq!(Sense::parse(&sense)?.key, SenseKey::IllegalRequest);
//!
//! // The initiator side builds the identical bytes.
//! let built = Read10::new(0x1000, 8).with_fua(true);
//! assert_eq!(built.as_bytes(), &raw);
//! assert!(Read10::parse(&raw)?.fua());
//! # Ok::<(), scsi::WireError>(())
//! ```
#![forbid(unsafe_code)]

#[macro_use]
mod macros;
mod util;

pub mod alua;
pub mod asc;
pub mod capacity;
pub mod cdb;
pub mod error;
pub mod inquiry;
pub mod lun;
pub mod mode;
pub mod opcode;
pub mod pr;
pub mod rsoc;
pub mod sense;
pub mod status;
pub mod unmap;
pub mod vpd;

/// The zerocopy version the wire structs are built on (for `U16`/`U32`/`U64`
/// and the `FromBytes`/`IntoBytes` traits).
pub use zerocopy;

pub use asc::Asc;
pub use cdb::{Cdb, CdbBuf, CdbLayout, RwCommand, RwOp};
pub use error::WireError;
pub use opcode::{Opcode, PrInAction, PrOutAction};
pub use sense::{Sense, SenseFormat, SenseKey, SenseKeySpecific};
pub use status::ScsiStatus;
