//! Test support: an in-memory SCSI disk service ([`RamDisk`]), a small
//! blocking iSCSI initiator for protocol tests ([`initiator::Initiator`]),
//! and [`spawn_server`] to run a target on a background runtime.
//!
//! The lead replaces [`RamDisk`] with the real device layer; these stay for
//! tests and for pointing real initiators at the front end alone.

pub mod initiator;
mod ramdisk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use ramdisk::RamDisk;

use crate::config::{LunMapping, ServerConfig, TargetConfig};
use crate::registry::Shared;
use crate::server::{Server, ShutdownHandle};
use crate::service::{LuHandle, ScsiService};

/// A server running on its own multi-threaded tokio runtime in a background
/// thread. Dropping it shuts the server down and joins the thread.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Starts a graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// Shuts down and waits for the server thread.
    pub fn shutdown(&mut self) {
        self.shutdown.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `addr` (use port 0 for an ephemeral port) and serves `config` with
/// `service` on a 2-worker runtime in a background thread.
pub fn spawn_server(
    addr: SocketAddr,
    config: ServerConfig,
    service: Arc<dyn ScsiService>,
) -> std::io::Result<RunningServer> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = rt.block_on(Server::bind(&[addr], config, service))?;
    let addr = server.local_addrs()[0];
    let shared = server.shared().clone();
    let shutdown = server.shutdown_handle();
    let thread = std::thread::Builder::new()
        .name("iscsi-server".into())
        .spawn(move || {
            let _ = rt.block_on(server.run());
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        })?;
    Ok(RunningServer {
        addr,
        shared,
        shutdown,
        thread: Some(thread),
    })
}

/// The IQN used by [`simple_config`].
pub const TEST_IQN: &str = "iqn.2026-11.org.scsiport:test";

/// One target ([`TEST_IQN`]) with LUN 0 mapped to `LuHandle(0)`, plus a
/// [`RamDisk`] of `blocks` 512-byte blocks behind it.
pub fn simple_config(blocks: u64) -> (ServerConfig, Arc<RamDisk>) {
    let disk = RamDisk::new();
    disk.add_lu(LuHandle(0), blocks, 512);
    let mut t = TargetConfig::new(TEST_IQN);
    t.alias = Some("scsiport test target".into());
    t.luns.push(LunMapping {
        lun: 0,
        handle: LuHandle(0),
    });
    let config = ServerConfig {
        targets: vec![t],
        ..Default::default()
    };
    (config, disk)
}
