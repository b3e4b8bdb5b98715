//! iSCSI target front end (RFC 7143).
//!
//! Layout:
//! - [`pdu`]: typed Basic Header Segment views per opcode, framing with
//!   AHS, padding and CRC32C header/data digests.
//! - [`text`], [`params`], [`chap`]: login text keys, operational
//!   negotiation of every RFC 7143 §13 key, CHAP (MD5 and SHA-256, one-way
//!   and mutual).
//! - [`conn`]: the sans-I/O connection state machine (login, full feature
//!   phase: CmdSN window, immediate/unsolicited data, R2T, Data-In, NOP,
//!   text/SendTargets, logout, task management, Reject).
//! - [`out`]: a connection's output queue (encoded bytes with read buffers spliced in, written
//!   with one `writev`).
//! - [`registry`]: state shared by connections (sessions, reinstatement, I_T nexus ids).
//! - [`server`]: the tokio edge.
//! - [`config`]: targets, LUN maps, ACLs, CHAP, limits and timers.
//! - [`service`]: the [`service::ScsiService`] trait the SCSI layer implements.
//! - [`testing`]: an in-memory disk service, a test initiator, helpers.
//!
//! Plugging in a SCSI layer:
//! ```no_run
//! # async fn run(service: std::sync::Arc<dyn iscsi::service::ScsiService>) -> std::io::Result<()> {
//! use iscsi::config::{LunMapping, ServerConfig, TargetConfig};
//! use iscsi::service::LuHandle;
//! let mut target = TargetConfig::new("iqn.2026-11.org.scsiport:disk0");
//! target.luns.push(LunMapping { lun: 0, handle: LuHandle(0) });
//! let config = ServerConfig { targets: vec![target], ..Default::default() };
//! let server = iscsi::server::Server::bind(&["127.0.0.1:3260".parse().unwrap()], config, service).await?;
//! let stop = server.shutdown_handle(); // stop.shutdown() on SIGINT/SIGTERM
//! server.run().await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod chap;
pub mod config;
pub mod conn;
pub mod out;
pub mod params;
pub mod pdu;
pub mod registry;
pub mod server;
pub mod service;
pub mod testing;
pub mod text;
