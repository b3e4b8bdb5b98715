//! `scsiport soak`: a bounded soak test of the whole stack under injected faults.
//!
//! In one process it builds several simulated adapters (the `sim` miniport, under both the
//! Storport and the SCSI Port model) and a file-backed adapter, serves their LUs over iSCSI on
//! 127.0.0.1:0, and runs:
//!
//! - N iSCSI sessions (the test initiator over real loopback sockets, several commands in
//!   flight each), and
//! - M in-process class-driver clients ([`class::Disk`] queues),
//!
//! each on its own disjoint LBA ranges of every LU, writing blocks that name their LU, LBA,
//! client and generation ([`pattern`]) and reading them back, while a fault injector fires
//! every kind of [`SimFaultKind`] at random adapters at a steady rate.
//!
//! At the end the faults stop, every client drains its commands, reads back every block it
//! ever wrote and checks it. The verdict counts lost or corrupted acknowledged writes, double
//! and missing completions (client level: iSCSI task tags and class tokens; port level: the
//! adapters' outstanding gauges), hung clients (commands in flight and no completion for
//! `--hang-after`, or a phase that did not finish in time) and broken sessions (a new login
//! would have been needed). Any of these makes the command exit non-zero.
//!
//! Everything is bounded: the run, the drain and the verification have deadlines, and the
//! process ends by itself even if a client thread is stuck.

mod clients;
mod pattern;
mod session;
mod workload;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use device::backend::{FileBackend, RamBackend};
use device::{LogicalUnit, LuConfig};
use iscsi::config::{LunMapping, ServerConfig, TargetConfig};
use iscsi::service::LuHandle;
use miniports::DiskLu;
use miniports::file::{FileAdapterConfig, FileLu, FileMiniport};
use miniports::sim::{
    SimAdapterConfig, SimControl, SimFault, SimFaultKind, SimHwContext, SimMiniport,
};
use port::{Adapter, Address, ItNexus, PortOptions};
use serde::Serialize;

use self::clients::{ClassClient, ClientReport, Control, IscsiClient, Progress};
use crate::bridge::{LuRoute, PortService};

/// The soak target's IQN.
pub const SOAK_IQN: &str = "iqn.2026-11.dev.scsiport:soak";

/// What `scsiport soak` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the clients run before the final verification (`45s`, `10m`, `1h`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// iSCSI sessions (each one thread, one connection).
    #[arg(long, default_value_t = 4)]
    pub sessions: u32,
    /// In-process class-driver clients (each one thread, one queue per LU).
    #[arg(long, default_value_t = 2)]
    pub clients: u32,
    /// Simulated adapters (alternating Storport and SCSI Port models).
    #[arg(long, default_value_t = 6)]
    pub sim_adapters: u32,
    /// Faults injected per second of each kind, over all simulated adapters together.
    #[arg(long, default_value_t = 2.0)]
    pub fault_rate: f64,
    /// Fail unless every fault kind was injected at least this often.
    #[arg(long, default_value_t = 0)]
    pub min_faults: u64,
    /// The port tick of the simulated adapters, in milliseconds (timeouts count ticks).
    #[arg(long, default_value_t = 20)]
    pub tick_ms: u64,
    /// Blocks (512 bytes) each client owns on each LU.
    #[arg(long, default_value_t = 1024)]
    pub region_blocks: u64,
    /// Commands each iSCSI session keeps in flight; class clients keep half as many per LU.
    #[arg(long, default_value_t = 8)]
    pub depth: u32,
    /// A client with commands in flight and no completion for this long is hung.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub hang_after: Duration,
    /// Seed of the workload and fault choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Directory for the file-backed LU (default /dev/shm, else the temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Every this often (on average) one random adapter, file-backed included, is stopped
    /// and restarted (`adapter_control`) or has its bus reset, under load. `0s`: never.
    #[arg(long, default_value = "5s", value_parser = parse_duration_or_zero)]
    pub events_every: Duration,
    /// Self-check of the verifier: before the final read-back, zero the first client's
    /// region of the file-backed LU behind its back. The run must then FAIL with lost writes.
    #[arg(long, hide = true)]
    pub sabotage: bool,
}

/// Parses `90`, `90s`, `500ms`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, ms, m or h"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    if !(secs > 0.0 && secs <= 7.0 * 86_400.0) {
        return Err(format!("{s:?}: must be more than 0 and at most a week"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// [`parse_duration`], or `0` / `0s` for none.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        other => parse_duration(other),
    }
}

/// One LU of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakLu {
    /// "sim0/0:0:0", "file/0:0:0".
    pub name: String,
    /// "sim" or "file".
    pub miniport: &'static str,
    /// "storport" or "scsiport".
    pub model: &'static str,
    /// Its LUN on the soak target.
    pub lun: u64,
    /// Capacity in 512-byte blocks.
    pub blocks: u64,
    #[serde(skip)]
    adapter: usize,
    #[serde(skip)]
    address: Address,
}

/// The adapters and LUs under test.
struct Rig {
    adapters: Vec<Adapter>,
    sims: Vec<SimControl>,
    lus: Vec<SoakLu>,
    routes: Vec<LuRoute>,
    file_path: std::path::PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file_path);
    }
}

fn lu_config(name: &str, lun: u64) -> LuConfig {
    LuConfig {
        serial: format!("soak{lun:04}"),
        name: name.to_string(),
        lun,
        max_transfer_blocks: crate::serve::MAXIMUM_TRANSFER_LENGTH / 512,
        ..LuConfig::default()
    }
}

/// Builds the simulated adapters and the file adapter.
fn build_rig(args: &SoakArgs) -> Result<Rig> {
    let clients = u64::from(args.sessions + args.clients);
    let blocks = (clients * args.region_blocks).max(2048);
    let mut rig = Rig {
        adapters: Vec::new(),
        sims: Vec::new(),
        lus: Vec::new(),
        routes: Vec::new(),
        file_path: std::path::PathBuf::new(),
    };
    let sim_options = PortOptions {
        tick: Some(Duration::from_millis(args.tick_ms.max(1))),
        ..PortOptions::default()
    };
    for i in 0..args.sim_adapters {
        let storport = i % 2 == 0;
        let address = Address::new(0, 0, 0);
        let name = format!("sim{i}/{address}");
        let lun = rig.lus.len() as u64;
        let backend = RamBackend::new(blocks, 512).ok_or_else(|| anyhow!("RAM disk"))?;
        let lu = Arc::new(
            LogicalUnit::try_new(lu_config(&name, lun), Arc::new(backend))
                .map_err(|e| anyhow!("{name}: {e}"))?,
        );
        let mut hw = SimAdapterConfig::new(vec![DiskLu {
            address,
            lu: lu.clone(),
        }]);
        hw.seed = args.seed.wrapping_mul(1000).wrapping_add(u64::from(i));
        hw.reset_time = Duration::from_millis(2);
        hw.slow_reset_time = Duration::from_millis(150);
        hw.late_completion_max_hold = Duration::from_secs(5);
        hw.system_dma = i % 3 != 2;
        let control = hw.control();
        let found = if storport {
            port::initialize_storport::<SimMiniport>(SimHwContext::single(hw), sim_options.clone())
        } else {
            port::initialize::<SimMiniport>(SimHwContext::single(hw), sim_options.clone())
        }
        .map_err(|e| anyhow!("sim adapter {i}: {e}"))?;
        let adapter = found
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("sim adapter {i}: not found"))?;
        rig.routes.push(LuRoute {
            adapter: rig.adapters.len(),
            address,
            lu,
        });
        rig.lus.push(SoakLu {
            name,
            miniport: "sim",
            model: if storport { "storport" } else { "scsiport" },
            lun,
            blocks,
            adapter: rig.adapters.len(),
            address,
        });
        rig.adapters.push(adapter);
        rig.sims.push(control);
    }
    // The file-backed adapter: real I/O through io_uring, no injected faults.
    let dir = args.dir.clone().unwrap_or_else(|| {
        let shm = std::path::PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    rig.file_path = dir.join(format!("scsiport-soak-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&rig.file_path);
    let backend = FileBackend::open(&rig.file_path, 512, Some(blocks * 512))
        .with_context(|| format!("{}", rig.file_path.display()))?;
    let address = Address::new(0, 0, 0);
    let name = format!("file/{address}");
    let lun = rig.lus.len() as u64;
    let f = FileLu::new(address, lu_config(&name, lun), Arc::new(backend))
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let lu = f.lu().clone();
    let mut hw = FileAdapterConfig::single(vec![f]);
    hw.maximum_transfer_length = crate::serve::MAXIMUM_TRANSFER_LENGTH;
    let adapter = port::initialize_storport::<FileMiniport>(hw, PortOptions::default())
        .map_err(|e| anyhow!("file adapter: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("file adapter: not found"))?;
    rig.routes.push(LuRoute {
        adapter: rig.adapters.len(),
        address,
        lu,
    });
    rig.lus.push(SoakLu {
        name,
        miniport: "file",
        model: "storport",
        lun,
        blocks,
        adapter: rig.adapters.len(),
        address,
    });
    rig.adapters.push(adapter);
    Ok(rig)
}

/// Fires faults of every kind at random simulated adapters, paced so that each kind reaches
/// `rate` per second over the run; stops when `stop` is set.
fn inject_faults(sims: &[SimControl], rate: f64, seed: u64, stop: &AtomicU8) {
    if sims.is_empty() || rate <= 0.0 {
        return;
    }
    let start = Instant::now();
    let mut rng = seed ^ 0x00fa_0175;
    let senses = [
        (0x0B, 0x00, 0x00), // ABORTED COMMAND
        (0x06, 0x29, 0x00), // UNIT ATTENTION: POWER ON, RESET
        (0x02, 0x04, 0x01), // NOT READY: BECOMING READY
        (0x03, 0x11, 0x00), // MEDIUM ERROR: UNRECOVERED READ ERROR
        (0x04, 0x44, 0x00), // HARDWARE ERROR: INTERNAL TARGET FAILURE
    ];
    let mut requested = [0u64; 9];
    let mut waiting_since = [None::<Instant>; 9];
    while stop.load(Ordering::Acquire) == 0 {
        let due = (start.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
        let mut fired = [0u64; 9];
        for s in sims {
            for (f, n) in fired.iter_mut().zip(s.counters().injected) {
                *f += n;
            }
        }
        for kind in SimFaultKind::ALL {
            let k = kind.index();
            // One fault of a kind waits for a command at a time; a new one goes out when the
            // fired count falls behind the schedule. A fault that waited 2 s (its adapter
            // dropped its queue in a stop) is given up.
            if fired[k] >= requested[k]
                || waiting_since[k].is_some_and(|t: Instant| t.elapsed() > Duration::from_secs(2))
            {
                requested[k] = fired[k];
                waiting_since[k] = None;
            }
            if fired[k] < due && waiting_since[k].is_none() {
                let r = pattern::splitmix(&mut rng);
                let sense = senses[(r >> 32) as usize % senses.len()];
                sims[(r % sims.len() as u64) as usize].inject(SimFault::of_kind(kind, sense));
                requested[k] += 1;
                waiting_since[k] = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Adapter events the soak caused under load.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct EventFigures {
    /// `adapter_control` stop + restart pairs that succeeded.
    pub stop_restarts: u64,
    /// Bus resets (SRB_FUNCTION_RESET_BUS) that succeeded.
    pub bus_resets: u64,
    /// Events that failed (the port refused or timed out).
    pub failed: u64,
}

/// Every `every` on average, stops and restarts a random adapter or resets its bus, until
/// `stop` is set. Runs on its own thread; each event is bounded by the port's timeouts.
fn adapter_events(
    adapters: &[Adapter],
    every: Duration,
    seed: u64,
    stop: &AtomicU8,
    failures: &parking_lot::Mutex<Vec<String>>,
) -> EventFigures {
    let mut figures = EventFigures::default();
    if every.is_zero() || adapters.is_empty() {
        return figures;
    }
    let mut rng = seed ^ 0x00ad_a97e;
    let timeout = Duration::from_secs(30);
    'run: loop {
        // A random pause of 0.5 to 1.5 times `every`, watching `stop`.
        let r = pattern::splitmix(&mut rng);
        let pause = every.mul_f64(0.5 + (r % 1000) as f64 / 1000.0);
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if stop.load(Ordering::Acquire) != 0 {
                break 'run;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let i = (r >> 16) as usize % adapters.len();
        let a = &adapters[i];
        let result = if (r >> 40).is_multiple_of(2) {
            a.stop(timeout)
                .map_err(|e| format!("stop: {e}"))
                .and_then(|()| {
                    std::thread::sleep(Duration::from_millis(100));
                    a.restart(timeout).map_err(|e| format!("restart: {e}"))
                })
                .map(|()| figures.stop_restarts += 1)
        } else {
            let srb = port::queue_request(port::SrbFunction::ResetBus, Address::new(0, 0, 0));
            match a.execute_and_wait(srb) {
                Ok(done) if done.srb_status.is_success() => {
                    figures.bus_resets += 1;
                    Ok(())
                }
                Ok(done) => Err(format!("bus reset: SRB status {}", done.srb_status.name())),
                Err(e) => Err(format!("bus reset: {e}")),
            }
        };
        if let Err(e) = result {
            figures.failed += 1;
            let mut f = failures.lock();
            if f.len() < 8 {
                f.push(format!("adapter {i}: {e}"));
            }
        }
    }
    figures
}

/// Adapter-level figures at the end.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PortFigures {
    /// Requests the adapters accepted.
    pub commands: u64,
    /// Requests accepted and not completed after the drain (0 expected).
    pub outstanding: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Bus, LU and adapter resets.
    pub resets: u64,
    /// Completions that arrived for requests already finished (dropped by the port).
    pub late_completions: u64,
    /// Interrupts nobody claimed.
    pub spurious_interrupts: u64,
    /// Late completions the simulated hardware delivered (each must be one the port dropped:
    /// equal to the port's count on the sim adapters).
    pub sim_late_completions: u64,
    /// The port's late completions on the sim adapters alone.
    pub sim_port_late_completions: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Seconds the clients ran before the final verification.
    pub run_seconds: f64,
    /// Seconds of the whole command.
    pub total_seconds: f64,
    /// The LUs.
    pub lus: Vec<SoakLu>,
    /// Per client.
    pub clients: Vec<ClientReport>,
    /// Faults injected per kind (by name), from the sim counters.
    pub faults: Vec<(String, u64)>,
    /// Writes acknowledged, all clients.
    pub writes_acked: u64,
    /// Writes that failed or timed out.
    pub writes_failed: u64,
    /// Reads that returned data.
    pub reads_ok: u64,
    /// Reads that failed.
    pub reads_failed: u64,
    /// Blocks checked while running and at the end.
    pub blocks_verified: u64,
    /// Blocks checked by the final verification.
    pub final_blocks_verified: u64,
    /// Lost acknowledged writes (blocks).
    pub lost_writes: u64,
    /// Corrupted blocks.
    pub corrupted_blocks: u64,
    /// Final reads that never succeeded.
    pub unverifiable_runs: u64,
    /// Commands issued by the clients.
    pub commands_issued: u64,
    /// Double (unexpected) completions.
    pub double_completions: u64,
    /// Missing completions (client level).
    pub missing_completions: u64,
    /// Clients that hung (no progress with commands in flight, or a phase past its deadline).
    pub hung: u64,
    /// iSCSI sessions that broke or changed TSIH.
    pub sessions_lost: u64,
    /// Class-driver retries.
    pub class_retries: u64,
    /// Adapter-level figures.
    pub port: PortFigures,
    /// Stops, restarts and bus resets under load.
    pub events: EventFigures,
    /// What went wrong, described.
    pub violations: Vec<String>,
    /// No violation.
    pub pass: bool,
}

impl SoakReport {
    /// The human table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scsiport soak: {:.0} s of load, {:.0} s in all, {} LUs, {} clients",
            self.run_seconds,
            self.total_seconds,
            self.lus.len(),
            self.clients.len()
        );
        let _ = writeln!(
            s,
            "\n{:<10} {:>10} {:>9} {:>10} {:>9} {:>12} {:>6} {:>8} {:>8}",
            "client",
            "w-acked",
            "w-failed",
            "r-ok",
            "r-failed",
            "blocks-chk",
            "lost",
            "corrupt",
            "retries"
        );
        for c in &self.clients {
            let _ = writeln!(
                s,
                "{:<10} {:>10} {:>9} {:>10} {:>9} {:>12} {:>6} {:>8} {:>8}",
                c.name,
                c.stats.writes_acked,
                c.stats.writes_failed,
                c.stats.reads_ok,
                c.stats.reads_failed,
                c.stats.blocks_verified,
                c.stats.lost,
                c.stats.corrupt,
                c.retries
            );
        }
        let mut errors: std::collections::BTreeMap<&str, u64> = Default::default();
        for c in &self.clients {
            for (e, n) in &c.errors {
                *errors.entry(e.as_str()).or_default() += n;
            }
        }
        let mut errors: Vec<(&str, u64)> = errors.into_iter().collect();
        errors.sort_by_key(|e| std::cmp::Reverse(e.1));
        if !errors.is_empty() {
            let _ = writeln!(s, "\nfailed commands by error (most frequent):");
            for (e, n) in errors.iter().take(10) {
                let _ = writeln!(s, "  {n:>8}  {e}");
            }
        }
        let _ = writeln!(s, "\nfaults injected:");
        for (name, n) in &self.faults {
            let _ = writeln!(s, "  {name:<20} {n:>8}");
        }
        let p = &self.port;
        let _ = writeln!(
            s,
            "\nport: {} commands, {} timeouts, {} resets, {} late completions dropped, {} \
             spurious interrupts, {} outstanding at the end",
            p.commands,
            p.timeouts,
            p.resets,
            p.late_completions,
            p.spurious_interrupts,
            p.outstanding
        );
        let _ = writeln!(
            s,
            "late completions delivered by the sim hardware: {}, dropped by the port: {}",
            p.sim_late_completions, p.sim_port_late_completions
        );
        let _ = writeln!(
            s,
            "events under load: {} adapter stop+restart, {} bus resets, {} failed",
            self.events.stop_restarts, self.events.bus_resets, self.events.failed
        );
        let rows = [
            ("writes acknowledged", self.writes_acked),
            ("writes failed (old or new legal)", self.writes_failed),
            ("reads verified", self.reads_ok),
            ("blocks checked", self.blocks_verified),
            ("blocks checked at the end", self.final_blocks_verified),
            ("commands issued", self.commands_issued),
            ("lost acknowledged writes", self.lost_writes),
            ("corrupted blocks", self.corrupted_blocks),
            ("unverifiable read-backs", self.unverifiable_runs),
            ("double completions", self.double_completions),
            ("missing completions", self.missing_completions),
            ("hung clients", self.hung),
            ("sessions lost (re-login needed)", self.sessions_lost),
        ];
        let _ = writeln!(s);
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<34} {v:>12}");
        }
        for v in &self.violations {
            let _ = writeln!(s, "VIOLATION: {v}");
        }
        let _ = writeln!(s, "\nresult: {}", if self.pass { "PASS" } else { "FAIL" });
        s
    }
}

/// Runs the soak; the report says whether it passed.
pub fn run(args: &SoakArgs) -> Result<SoakReport> {
    let t0 = Instant::now();
    let rig = build_rig(args)?;
    let routes = rig.routes.clone();
    let service = Arc::new(PortService::new(rig.adapters.clone(), routes));
    let mut target = TargetConfig::new(SOAK_IQN);
    for (i, lu) in rig.lus.iter().enumerate() {
        target.luns.push(LunMapping {
            lun: lu.lun as u16,
            handle: LuHandle(i as u64),
        });
    }
    let server_config = ServerConfig {
        targets: vec![target],
        ..ServerConfig::default()
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("constant address");
    let mut server = iscsi::testing::spawn_server(loopback, server_config, service)
        .context("cannot start the iSCSI front end")?;

    let control = Arc::new(Control {
        phase: AtomicU8::new(clients::PHASE_RUN),
        start: Instant::now(),
        verify_retry_for: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(60),
    });
    let luns: Vec<u64> = rig.lus.iter().map(|l| l.lun).collect();
    let regions = |client: u32| -> Vec<(u32, u64, u64)> {
        (0..rig.lus.len() as u32)
            .map(|lu| {
                (
                    lu,
                    u64::from(client) * args.region_blocks,
                    args.region_blocks,
                )
            })
            .collect()
    };
    let mut threads = Vec::new();
    let mut progress = Vec::new();
    for s in 0..args.sessions {
        let p = Arc::new(Progress::default());
        progress.push(p.clone());
        let c = IscsiClient {
            id: s,
            addr: server.addr,
            target: SOAK_IQN.to_string(),
            luns: luns.clone(),
            regions: regions(s),
            depth: args.depth as usize,
            seed: args.seed,
        };
        let ctl = control.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("soak-iscsi-{s}"))
                .spawn(move || clients::run_iscsi(c, ctl, p))?,
        );
    }
    for m in 0..args.clients {
        let id = args.sessions + m;
        let mut disks = Vec::new();
        for (i, lu) in rig.lus.iter().enumerate() {
            let adapter = &rig.adapters[lu.adapter];
            let is_sim = lu.miniport == "sim";
            let options = class::DiskOptions {
                // In port ticks: 10 × 20 ms on the sim adapters, 10 s on the file adapter.
                timeout_secs: 10,
                retry: class::RetryPolicy {
                    max_retries: if is_sim { 4 } else { 8 },
                    ..class::RetryPolicy::default()
                },
                nexus: ItNexus {
                    initiator: 0x50_0000 + u64::from(id),
                    relative_target_port: 1,
                },
            };
            let disk = open_disk(adapter, lu.address, options)
                .with_context(|| format!("class client {id}: open {}", lu.name))?;
            disks.push((i as u32, disk));
        }
        let p = Arc::new(Progress::default());
        progress.push(p.clone());
        let c = ClassClient {
            id,
            disks,
            regions: regions(id),
            depth: (args.depth / 2).max(1),
            seed: args.seed,
        };
        let ctl = control.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("soak-class-{m}"))
                .spawn(move || clients::run_class(c, ctl, p))?,
        );
    }

    // Faults.
    let stop_faults = Arc::new(AtomicU8::new(0));
    let injector = {
        let sims = rig.sims.clone();
        let stop = stop_faults.clone();
        let (rate, seed) = (args.fault_rate, args.seed);
        std::thread::Builder::new()
            .name("soak-faults".into())
            .spawn(move || inject_faults(&sims, rate, seed, &stop))?
    };

    let stop_events = Arc::new(AtomicU8::new(0));
    let event_failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let events = {
        let adapters = rig.adapters.clone();
        let stop = stop_events.clone();
        let failures = event_failures.clone();
        let (every, seed) = (args.events_every, args.seed);
        std::thread::Builder::new()
            .name("soak-events".into())
            .spawn(move || adapter_events(&adapters, every, seed, &stop, &failures))?
    };

    // Run, watching for hung clients.
    let mut violations = Vec::new();
    let mut hung = vec![false; progress.len()];
    let names: Vec<String> = (0..args.sessions)
        .map(|s| format!("iscsi-{s}"))
        .chain((0..args.clients).map(|m| format!("class-{}", args.sessions + m)))
        .collect();
    let run_end = control.start + args.duration;
    let mut last_report = Instant::now();
    let watch = |hung: &mut Vec<bool>, violations: &mut Vec<String>| {
        let now = control.start.elapsed().as_millis() as u64;
        for (i, p) in progress.iter().enumerate() {
            let idle = now.saturating_sub(p.last_ms.load(Ordering::Acquire));
            if !hung[i]
                && !p.finished.load(Ordering::Acquire)
                && p.in_flight.load(Ordering::Acquire) > 0
                && idle > args.hang_after.as_millis() as u64
            {
                hung[i] = true;
                violations.push(format!(
                    "{}: no completion for {} ms with {} commands in flight",
                    names[i],
                    idle,
                    p.in_flight.load(Ordering::Acquire)
                ));
            }
        }
    };
    while Instant::now() < run_end {
        std::thread::sleep(Duration::from_millis(200));
        watch(&mut hung, &mut violations);
        if !args.json && last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let ops: u64 = progress.iter().map(|p| p.ops.load(Ordering::Relaxed)).sum();
            let faults: u64 = rig.sims.iter().map(|s| s.counters().injected_total()).sum();
            eprintln!(
                "soak: {:>5.0} s  {ops} operations  {faults} faults injected",
                control.start.elapsed().as_secs_f64()
            );
        }
    }
    let run_seconds = control.start.elapsed().as_secs_f64();

    // No more adapter events; drain with the faults still firing, then quiesce them.
    stop_events.store(1, Ordering::Release);
    let events = events.join().unwrap_or_default();
    violations.extend(event_failures.lock().iter().cloned());
    control.phase.store(clients::PHASE_DRAIN, Ordering::Release);
    let drain_deadline = Instant::now() + control.drain_timeout + Duration::from_secs(5);
    while progress.iter().any(|p| !p.drained.load(Ordering::Acquire))
        && Instant::now() < drain_deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        watch(&mut hung, &mut violations);
    }
    stop_faults.store(1, Ordering::Release);
    let _ = injector.join();
    for s in &rig.sims {
        for kind in SimFaultKind::ALL {
            s.set_rate(kind, 0);
        }
    }
    if args.sabotage {
        sabotage(&rig, args.region_blocks)?;
    }
    // Faults still queued fire on the next commands; the verification retries through them.
    control
        .phase
        .store(clients::PHASE_VERIFY, Ordering::Release);
    let finish_deadline = Instant::now() + Duration::from_secs(120);
    while progress.iter().any(|p| !p.finished.load(Ordering::Acquire))
        && Instant::now() < finish_deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        watch(&mut hung, &mut violations);
    }
    let mut reports = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        if progress[i].finished.load(Ordering::Acquire) {
            match t.join() {
                Ok(r) => reports.push(r),
                Err(_) => violations.push(format!("{}: the client thread panicked", names[i])),
            }
        } else {
            if !hung[i] {
                hung[i] = true;
            }
            violations.push(format!(
                "{}: did not finish its verification in time",
                names[i]
            ));
        }
    }

    // Port-level books after everything drained.
    let mut port_figures = PortFigures::default();
    for a in &rig.adapters {
        let s = a.statistics();
        let c = a.port_counters();
        port_figures.commands += s.commands;
        port_figures.outstanding += s.outstanding;
        port_figures.timeouts += s.timeouts;
        port_figures.resets += s.resets;
        port_figures.late_completions += c.late_completions;
        port_figures.spurious_interrupts += c.spurious_interrupts;
    }
    // Every late completion the sim hardware delivered must be one the port dropped. Read
    // the sim's count on both sides of the port's, so that a delivery in between is seen.
    for _ in 0..100 {
        let sim =
            |rig: &Rig| -> u64 { rig.sims.iter().map(|s| s.counters().late_completions).sum() };
        let before = sim(&rig);
        let port_side: u64 = rig.adapters[..rig.sims.len()]
            .iter()
            .map(|a| a.port_counters().late_completions)
            .sum();
        if sim(&rig) == before {
            port_figures.sim_late_completions = before;
            port_figures.sim_port_late_completions = port_side;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut faults = [0u64; 9];
    for s in &rig.sims {
        for (f, n) in faults.iter_mut().zip(s.counters().injected) {
            *f += n;
        }
    }
    server.shutdown();
    for a in &rig.adapters {
        let _ = a.shutdown();
    }

    let sum = |f: &dyn Fn(&ClientReport) -> u64| reports.iter().map(f).sum::<u64>();
    let mut report = SoakReport {
        run_seconds,
        total_seconds: t0.elapsed().as_secs_f64(),
        lus: rig.lus.clone(),
        faults: SimFaultKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), faults[k.index()]))
            .collect(),
        writes_acked: sum(&|c| c.stats.writes_acked),
        writes_failed: sum(&|c| c.stats.writes_failed),
        reads_ok: sum(&|c| c.stats.reads_ok),
        reads_failed: sum(&|c| c.stats.reads_failed),
        blocks_verified: sum(&|c| c.stats.blocks_verified),
        final_blocks_verified: sum(&|c| c.final_blocks_verified),
        lost_writes: sum(&|c| c.stats.lost),
        corrupted_blocks: sum(&|c| c.stats.corrupt),
        unverifiable_runs: sum(&|c| c.final_read_failures),
        commands_issued: sum(&|c| c.completions.issued),
        double_completions: sum(&|c| c.completions.unexpected),
        missing_completions: sum(&|c| c.completions.missing),
        hung: hung.iter().filter(|h| **h).count() as u64,
        sessions_lost: sum(&|c| {
            u64::from(c.session_lost.is_some() || c.tsih.is_some_and(|(a, b)| a != b))
        }),
        class_retries: sum(&|c| c.retries),
        port: port_figures,
        events,
        violations: Vec::new(),
        pass: false,
        clients: reports,
    };
    for c in &report.clients {
        violations.extend(c.stats.violations.iter().cloned());
        if let Some(e) = &c.session_lost {
            violations.push(format!("{}: {e}", c.name));
        }
    }
    if report.port.sim_late_completions != report.port.sim_port_late_completions {
        violations.push(format!(
            "the sim hardware delivered {} late completions, the port dropped {}",
            report.port.sim_late_completions, report.port.sim_port_late_completions
        ));
    }
    if report.port.outstanding != 0 {
        violations.push(format!(
            "{} requests still outstanding in the port after the drain",
            report.port.outstanding
        ));
    }
    for (name, n) in &report.faults {
        if *n < args.min_faults {
            violations.push(format!(
                "fault {name}: {n} injected, fewer than {}",
                args.min_faults
            ));
        }
    }
    report.pass = violations.is_empty()
        && report.lost_writes == 0
        && report.corrupted_blocks == 0
        && report.unverifiable_runs == 0
        && report.double_completions == 0
        && report.missing_completions == 0
        && report.hung == 0
        && report.sessions_lost == 0
        && report.port.outstanding == 0;
    report.violations = violations;
    Ok(report)
}

/// Zeroes client 0's region of the last (file-backed) LU through a class-driver disk of its
/// own: a change no client knows about, which the verification must report.
fn sabotage(rig: &Rig, region_blocks: u64) -> Result<()> {
    let lu = rig.lus.last().ok_or_else(|| anyhow!("no LU"))?;
    let disk = open_disk(
        &rig.adapters[lu.adapter],
        lu.address,
        class::DiskOptions::default(),
    )?;
    disk.write(0, &vec![0u8; (region_blocks * 512) as usize])
        .map_err(|e| anyhow!("sabotage write: {e}"))
}

/// Opens a disk, retrying for a few seconds (a sim adapter may start with a unit attention).
fn open_disk(
    adapter: &Adapter,
    address: Address,
    options: class::DiskOptions,
) -> Result<class::Disk> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match class::Disk::open_with(adapter, address, options.clone()) {
            Ok(d) => return Ok(d),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `scsiport soak`: runs, prints the table or JSON, exit code 0 only on a pass.
pub fn main(args: &SoakArgs) -> std::process::ExitCode {
    match run(args) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => eprintln!("scsiport: soak: {e}"),
                }
            } else {
                print!("{}", report.table());
            }
            if report.pass {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("scsiport: soak: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
