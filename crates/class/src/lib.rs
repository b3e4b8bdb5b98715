//! The disk class driver: a block device API on a logical unit of a port [`Adapter`](port::Adapter).
//!
//! The seed's class driver (disk.sys over classpnp) is the higher-level driver whose requests
//! flow to the port asynchronously. Here:
//!
//! - [`Disk::open`] discovers the capacity and block size (READ CAPACITY(16), falling back to
//!   (10)) and the splitting limits ([`Limits`]: the adapter's MaximumTransferLength and
//!   NumberOfPhysicalBreaks, the device's Block Limits VPD page).
//! - Requests are byte ranges checked against capacity and block alignment
//!   ([`DiskError::OutOfRange`], [`DiskError::Unaligned`]), turned into READ / WRITE (10-byte
//!   CDBs while the whole range lies below 2^32 blocks and the length fits 16 bits, else
//!   16-byte: [`cdb::read_write`]), WRITE SAME (write zeroes), UNMAP and SYNCHRONIZE CACHE,
//!   and split into pieces the adapter can carry.
//! - Completions are classified in one place ([`DiskError`]): UNIT ATTENTION is retried at once
//!   (CAPACITY DATA HAS CHANGED re-reads the capacity first), BUSY, TASK SET FULL, NOT READY
//!   (becoming ready), ABORTED COMMAND and transient port failures are retried after an
//!   exponential backoff ([`RetryPolicy`]); a QUEUE_FROZEN completion has its sense read and
//!   then the LU queue released with an SRB_FUNCTION_RELEASE_QUEUE request.
//!
//! # Using it
//!
//! ```text
//! let disk = class::Disk::open(&adapter, Address::new(0, 0, 0))?;
//! // Plain threads: blocking calls (any thread, concurrently).
//! disk.write(0, &[0xAB; 4096])?;
//! disk.read(0, &mut buf)?;
//! // Async code: futures woken by the port's completions.
//! let (res, buf) = disk.read_async(0, 4096, buf).await;
//! // Queue depth > 1 from one thread or task: a DiskQueue (no allocation per request).
//! let mut q = disk.queue(32);
//! q.submit(IoRequest::read(lba * 4096, 4096, buffer), token)?;
//! let c = q.wait_next(timeout);   // or q.try_next(), or q.next_completion().await
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cdb;
mod disk;
mod error;
mod queue;

pub use disk::{Disk, DiskOptions, Limits};
pub use error::DiskError;
pub use queue::{
    DiskQueue, IoCompletion, IoOp, IoRequest, NextCompletion, QueueStats, Rejected, RetryPolicy,
};
