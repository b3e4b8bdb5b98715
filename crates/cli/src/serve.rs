//! `scsiport serve`: builds the stack a [`Config`] describes — logical units, adapters on the
//! port driver, the iSCSI front end — and runs it until SIGINT or SIGTERM.
//!
//! Start-up is all or nothing: every backend is opened and every adapter initialized before
//! the first socket is bound; any failure stops the command with a message naming the part of
//! the configuration at fault. Shutdown: the front end refuses new logins and asks initiators
//! to log out, then every adapter is shut down (queued requests flushed, caching adapters get
//! SHUTDOWN, which flushes file-backed LUs to stable storage).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use device::backend::{FileBackend, NullBackend, RamBackend};
use device::{BlockBackend, LogicalUnit, LuConfig};
use iscsi::config::{ChapConfig, ChapCredential, LunMapping, ServerConfig, TargetConfig};
use iscsi::service::LuHandle;
use miniports::file::{FileAdapterConfig, FileLu, FileMiniport};
use miniports::ram::RamMiniport;
use miniports::sim::{SimAdapterConfig, SimControl, SimHwContext, SimMiniport};
use miniports::{DiskAdapterConfig, DiskLu};
use port::{Adapter, Address, PortOptions};

use crate::bridge::{LuRoute, PortService};
use crate::config::{self, Config, IoModel, MiniportKind};

/// Bytes one SRB may move; the LU's block limits VPD reports the same in blocks.
pub const MAXIMUM_TRANSFER_LENGTH: u32 = 8 << 20;

/// The running stack, before the front end starts.
pub struct Stack {
    /// The iSCSI service over the port.
    pub service: Arc<PortService>,
    /// The front end's configuration.
    pub server_config: ServerConfig,
    /// The fault-injection handles of the `sim` adapters, by adapter name (configuration
    /// order).
    pub sim_controls: Vec<(String, SimControl)>,
}

/// The simulated adapter of `sim` adapter `a` over `lus`, and the port options it runs with.
fn sim_adapter(a: &config::Adapter, lus: Vec<DiskLu>) -> (SimAdapterConfig, PortOptions) {
    let mut hw = SimAdapterConfig::new(lus);
    hw.maximum_transfer_length = MAXIMUM_TRANSFER_LENGTH;
    let mut options = PortOptions::default();
    if let Some(s) = &a.sim {
        if let Some(us) = s.interrupt_latency_us {
            hw.interrupt_latency = Duration::from_micros(us);
        }
        if let Some(ms) = s.reset_time_ms {
            hw.reset_time = Duration::from_millis(ms);
        }
        if let Some(ms) = s.slow_reset_time_ms {
            hw.slow_reset_time = Duration::from_millis(ms);
        }
        hw.fault_rates = s.rates();
        if let Some(seed) = s.seed {
            hw.seed = seed;
        }
        if let Some([key, asc, ascq]) = s.check_condition_sense {
            hw.check_condition_sense = (key, asc, ascq);
        }
        if let Some(dma) = s.system_dma {
            hw.system_dma = dma;
        }
        if let Some(t) = s.defer_threshold {
            hw.defer_threshold = t;
        }
        if let Some(ms) = s.port_tick_ms {
            options.tick = Some(Duration::from_millis(ms));
        }
    }
    (hw, options)
}

/// A stable serial number for an LU without one in the configuration.
fn derived_serial(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The backend of a `ram` or `null` LU (file LUs are built with their miniport).
fn memory_backend(
    key: &str,
    null: bool,
    lu: &config::LogicalUnit,
) -> Result<Arc<dyn BlockBackend>> {
    let bs = lu.block_size;
    let blocks = lu.size.map_or(0, |s| s.as_u64() / u64::from(bs));
    Ok(if null {
        Arc::new(
            NullBackend::new(blocks, bs)
                .ok_or_else(|| anyhow!("{key}: cannot create a null disk of that size"))?,
        )
    } else {
        Arc::new(
            RamBackend::new(blocks, bs)
                .ok_or_else(|| anyhow!("{key}: cannot create a RAM disk of that size"))?,
        )
    })
}

/// Opens every backend, initializes every adapter on the port and maps the targets' LUNs.
pub fn build(config: &Config) -> Result<Stack> {
    let mut adapters: Vec<Adapter> = Vec::new();
    let mut routes: Vec<LuRoute> = Vec::new();
    let mut adapter_index = std::collections::BTreeMap::new();
    let mut sim_controls = Vec::new();
    for (i, a) in config.adapters.iter().enumerate() {
        let mut lus = Vec::new();
        let mut file_lus = Vec::new();
        for (j, l) in a.lus.iter().enumerate() {
            let key = format!("adapter[{i}].lu[{j}]");
            let name = format!("{}/{}:{}:{}", a.name, l.path, l.target, l.lun);
            let lu_config = LuConfig {
                serial: l.serial.clone().unwrap_or_else(|| derived_serial(&name)),
                name,
                lun: u64::from(l.lun),
                max_transfer_blocks: MAXIMUM_TRANSFER_LENGTH / l.block_size,
                ..LuConfig::default()
            };
            let address = Address::new(l.path, l.target, l.lun);
            if a.miniport == MiniportKind::File {
                let path = l.file.as_ref().expect("validated: file LUs have a file");
                let file = FileBackend::open(path, l.block_size, l.size.map(|s| s.as_u64()))
                    .with_context(|| format!("{key}.file: {}", path.display()))?;
                let f = FileLu::new(address, lu_config, Arc::new(file))
                    .map_err(|e| anyhow!("{key}: {e}"))?;
                lus.push(f.disk().clone());
                file_lus.push(f);
            } else {
                let backend = memory_backend(&key, a.miniport == MiniportKind::Null, l)?;
                let lu =
                    LogicalUnit::try_new(lu_config, backend).map_err(|e| anyhow!("{key}: {e}"))?;
                lus.push(DiskLu {
                    address,
                    lu: Arc::new(lu),
                });
            }
        }
        let found = match a.miniport {
            MiniportKind::File => {
                let mut hw = FileAdapterConfig::single(file_lus);
                hw.maximum_transfer_length = MAXIMUM_TRANSFER_LENGTH;
                match a.model {
                    IoModel::Scsiport => {
                        port::initialize::<FileMiniport>(hw, PortOptions::default())
                    }
                    IoModel::Storport => {
                        port::initialize_storport::<FileMiniport>(hw, PortOptions::default())
                    }
                }
            }
            MiniportKind::Sim => {
                let (hw, options) = sim_adapter(a, lus.clone());
                sim_controls.push((a.name.clone(), hw.control()));
                let hw = SimHwContext::single(hw);
                match a.model {
                    IoModel::Scsiport => port::initialize::<SimMiniport>(hw, options),
                    IoModel::Storport => port::initialize_storport::<SimMiniport>(hw, options),
                }
            }
            MiniportKind::Ram | MiniportKind::Null => {
                let hw = DiskAdapterConfig {
                    adapters: vec![lus.clone()],
                    maximum_transfer_length: MAXIMUM_TRANSFER_LENGTH,
                };
                match a.model {
                    IoModel::Scsiport => {
                        port::initialize::<RamMiniport>(hw, PortOptions::default())
                    }
                    IoModel::Storport => {
                        port::initialize_storport::<RamMiniport>(hw, PortOptions::default())
                    }
                }
            }
        }
        .map_err(|e| anyhow!("adapter[{i}] ({}): {e}", a.name))?;
        let adapter = found
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("adapter[{i}] ({}): no adapter found", a.name))?;
        let scanned = adapter.logical_units();
        for d in &lus {
            if !scanned.iter().any(|s| s.address == d.address) {
                bail!(
                    "adapter[{i}] ({}): the bus scan did not find the LU at {}",
                    a.name,
                    d.address
                );
            }
        }
        adapter_index.insert(a.name.clone(), (adapters.len(), lus));
        adapters.push(adapter);
    }

    let mut targets = Vec::new();
    for t in &config.targets {
        let mut target = TargetConfig::new(t.iqn.clone());
        target.alias = t.alias.clone();
        target.allowed_initiators = t.initiators.clone();
        target.chap = t.chap.as_ref().map(|c| ChapConfig {
            users: vec![ChapCredential::new(c.user.clone(), c.secret.clone())],
            mutual: match (&c.mutual_user, &c.mutual_secret) {
                (Some(u), Some(s)) => Some(ChapCredential::new(u.clone(), s.clone())),
                _ => None,
            },
        });
        for m in &t.luns {
            let (adapter, lus) = &adapter_index[&m.adapter];
            let address = Address::new(m.path, m.target_id, m.adapter_lun);
            let lu = lus
                .iter()
                .find(|d| d.address == address)
                .expect("validated: mapped LUs exist")
                .lu
                .clone();
            let handle = LuHandle(routes.len() as u64);
            routes.push(LuRoute {
                adapter: *adapter,
                address,
                lu,
            });
            target.luns.push(LunMapping { lun: m.lun, handle });
        }
        targets.push(target);
    }
    let server_config = ServerConfig {
        targets,
        poll_before_sleep: config.iscsi.poll_before_sleep(),
        ..ServerConfig::default()
    };
    server_config
        .validate()
        .map_err(|e| anyhow!("configuration: {e}"))?;
    Ok(Stack {
        service: Arc::new(PortService::new(adapters, routes)),
        server_config,
        sim_controls,
    })
}

/// Runs the stack until SIGINT/SIGTERM. `listen` replaces the configured portals.
pub fn run(config: Config, listen: Option<Vec<SocketAddr>>) -> Result<()> {
    let portals: Vec<SocketAddr> =
        listen.unwrap_or_else(|| config.portals.iter().map(|p| p.listen).collect());
    let stack = build(&config)?;
    let sim_controls = stack.sim_controls.clone();
    for (name, c) in &sim_controls {
        println!(
            "scsiport: sim adapter {name}: {}",
            describe_counts(&c.rates().map(u64::from))
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("scsiport-net")
        .enable_all()
        .build()
        .context("cannot start the network runtime")?;
    let service = stack.service.clone();
    let targets: Vec<String> = stack
        .server_config
        .targets
        .iter()
        .map(|t| t.name.clone())
        .collect();
    // A configured control socket must work; the default one is best effort, so that several
    // servers (tests, one per config) can run side by side.
    let control = match crate::control::ControlSocket::bind(&config.control.socket_path()) {
        Ok(c) => Some(c),
        Err(e) if config.control.socket.is_none() => {
            eprintln!("scsiport: warning: {e:#}; running without a control socket");
            None
        }
        Err(e) => return Err(e),
    };
    let metrics = config
        .metrics
        .as_ref()
        .map(|m| crate::metrics::bind(m.listen))
        .transpose()?;
    let (config, control_ref) = (&config, &control);
    runtime.block_on(async move {
        let server = iscsi::server::Server::bind(&portals, stack.server_config, service.clone())
            .await
            .with_context(|| format!("cannot listen on {portals:?}"))?;
        let state = Arc::new(crate::control::ControlState::new(
            config,
            service.adapters().cloned(),
            server.shared().clone(),
        ));
        if let Some(control) = control_ref {
            control
                .spawn(state.clone())
                .context("cannot start the control socket")?;
            println!("scsiport: control socket {}", control.path().display());
        }
        if let Some(listener) = metrics {
            let addr = listener.local_addr()?;
            crate::metrics::spawn(listener, state).context("cannot start the metrics endpoint")?;
            println!("scsiport: metrics on http://{addr}/metrics");
        }
        for addr in server.local_addrs() {
            println!("scsiport: listening on {addr}");
            for t in &targets {
                println!("  iscsi://{addr}/{t}/0");
            }
        }
        let stop = server.shutdown_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            println!("scsiport: shutting down");
            stop.shutdown();
        });
        server.run().await.context("the iSCSI server failed")
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(control);
    for adapter in stack.service.adapters() {
        if let Err(e) = adapter.shutdown() {
            eprintln!("scsiport: adapter shutdown: {e}");
        }
    }
    for (name, c) in &sim_controls {
        let k = c.counters();
        println!(
            "scsiport: sim adapter {name}: {} commands, {} resets, faults injected: {}",
            k.commands,
            k.resets,
            describe_counts(&k.injected)
        );
    }
    println!("scsiport: stopped");
    Ok(())
}

/// `name=value` for each non-zero entry (indexed like `SimFaultKind::ALL`), or "none".
fn describe_counts(values: &[u64; 9]) -> String {
    let parts: Vec<String> = miniports::sim::SimFaultKind::ALL
        .iter()
        .zip(values)
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| format!("{}={v}", k.name()))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use port::{DataDirection, Srb, SrbFlags, SrbStatus};

    use super::*;

    const SIM: &str = r#"
[[portal]]
listen = "127.0.0.1:3260"

[[adapter]]
name = "sim0"
miniport = "sim"
model = "scsiport"
[adapter.sim]
interrupt_latency_us = 10
port_tick_ms = 20
fault_rates = { busy = 5 }
[[adapter.lu]]
size = "4 MiB"

[[target]]
iqn = "iqn.2026-11.dev.scsiport:sim0"
[[target.lun]]
lun = 0
adapter = "sim0"
"#;

    fn execute(a: &Adapter, cdb: &[u8], data: Vec<u8>, dir: DataDirection) -> Srb {
        let len = data.len() as u32;
        let mut srb = Srb::execute_scsi(Address::new(0, 0, 0), cdb)
            .unwrap()
            .with_data(data, len, dir);
        srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        a.execute_and_wait(srb).unwrap()
    }

    #[test]
    fn sim_adapter_is_built_with_its_settings_and_control() {
        let config = Config::parse(SIM).unwrap();
        let stack = build(&config).unwrap();
        assert_eq!(stack.sim_controls.len(), 1);
        let (name, control) = &stack.sim_controls[0];
        assert_eq!(name, "sim0");
        let busy = miniports::sim::SimFaultKind::Busy;
        assert_eq!(control.rates()[busy.index()], 5);
        let a = stack.service.adapters().next().unwrap().clone();
        assert_eq!(a.options().tick, Some(Duration::from_millis(20)));
        assert!(!a.is_storport());
        // Clear the power-on unit attention, then a CHECK CONDITION injected at run time.
        let _ = execute(&a, &[0; 6], Vec::new(), DataDirection::None);
        control.inject(miniports::sim::SimFault::CheckCondition {
            sense_key: 0x04,
            asc: 0x44,
            ascq: 0,
        });
        let w = execute(
            &a,
            &[0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0],
            vec![7; 512],
            DataDirection::Out,
        );
        assert_eq!(w.srb_status.status(), SrbStatus::ERROR);
        assert_eq!(w.sense()[2] & 0x0F, 0x04);
        let k = control.counters();
        assert_eq!(
            k.injected[miniports::sim::SimFaultKind::CheckCondition.index()],
            1
        );
        assert!(k.commands >= 1);
        assert_eq!(describe_counts(&[0, 0, 0, 0, 0, 3, 0, 0, 0]), "busy=3");
        a.shutdown().unwrap();
    }
}
