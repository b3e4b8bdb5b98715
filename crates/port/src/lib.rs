//! The port driver: the SCSI Port I/O model of the seed documents, in user space.
//!
//! (Module documentation: see the sections below; the Storport model will be added beside the
//! SCSI Port model without changing the [`Miniport`] contract.)
//!
//! # Overview
//!
//! A *miniport* implements [`Miniport`] (the routine table) for one kind of adapter. The port
//! finds its adapters with [`initialize`], and upper layers (the iSCSI front end, the class
//! driver, tests) submit [`Srb`]s to an [`Adapter`] through a [`Submitter`]; completed requests
//! come back through the submitter's [`CompletionSink`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod adapter;
mod context;
mod handle;
mod interrupt;
mod miniport;
mod srb;
mod stats;
pub mod testing;
pub mod wmi;

pub use adapter::WaitError;
pub use context::{PortContext, SrbRef, WMI_EVENT_LATCH_DEPTH, WMI_EVENT_MAX_DATA, WmiEvent};
pub use handle::{
    Adapter, CompletionSink, InitializeError, LogicalUnitInfo, PortEvent, PortEventSink,
    PortOptions, Submitter, initialize, queue_request,
};
pub use interrupt::InterruptLine;
pub use miniport::{
    AdapterControl, AdapterControlStatus, AdapterControlType, FindAdapterContext,
    FindAdapterResult, HwInitializationData, HwRoutine, InterfaceType, Miniport, PortConfiguration,
    SCSI_MAXIMUM_LOGICAL_UNITS, SCSI_MAXIMUM_LUNS_PER_TARGET, SCSI_MAXIMUM_TARGETS,
    SCSI_MAXIMUM_TARGETS_PER_BUS, SP_UNINITIALIZED_VALUE, SupportedControlTypeList,
};
pub use srb::{
    Address, AddressFilter, Cdb, DataDirection, ItNexus, MAX_CDB_LENGTH, QueueAction,
    SENSE_BUFFER_SIZE, SP_UNTAGGED, Srb, SrbFlags, SrbFunction, SrbId, SrbStatus, WmiRequest,
    scsi_status,
};
pub use stats::{Counters, ERROR_LOG_DEPTH, ErrorCode, ErrorLogEntry, PortCounters, Statistics};
