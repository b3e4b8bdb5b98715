//! The in-process benchmark engine behind `scsiport bench`.
//!
//! [`run`] builds an adapter in this process — a miniport ([`MiniportKind`]: null, ram or file)
//! under a port model ([`Model`]) — opens its logical unit with the disk class driver, and
//! drives it from `threads` submitting threads, each keeping `queue_depth` requests in flight
//! through its own [`class::DiskQueue`] (or, with `raw`, its own port submitter and
//! preallocated SRBs, bypassing the class driver). It reports IOPS, MiB/s, latency percentiles
//! (hdrhistogram, per thread, merged at the end) and process CPU time per I/O
//! ([`BenchReport`], serializable to JSON). In verify mode every write carries a verifiable
//! pattern (unit number + generation) and every read is checked against the last generation
//! written; mismatches are counted. Each thread then keeps to its own units (unit % threads)
//! and never has two requests on one unit in flight, so a read can only see the last write;
//! verify needs a disk that keeps data and starts out zero (ram, or a file it recreates).
//!
//! ```text
//! let cfg = BenchConfig { miniport: MiniportKind::Ram, pattern: Pattern::RandRead,
//!                         queue_depth: 32, ..BenchConfig::default() };
//! let report = bench::run(&cfg, |p| eprint!("\r{:.0}%", p.fraction() * 100.0))?;
//! println!("{report}");                  // human-readable
//! println!("{}", report.to_json());      // --json
//! ```
//!
//! Threads: `run` blocks its caller, which samples progress every
//! [`BenchConfig::progress_interval`] and calls the callback on its own thread; the submitting
//! threads are scoped threads that end before `run` returns. The adapter is shut down at the
//! end.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod setup;
mod worker;
mod workload;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use device::BlockBackend;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use setup::Bench;

/// Which miniport the benchmark's adapter runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MiniportKind {
    /// The ram miniport over a null backend: reads return zeroes, writes are dropped.
    Null,
    /// The ram miniport over a sparse RAM disk.
    Ram,
    /// The file miniport on this file (created with `size` bytes if missing or empty).
    File {
        /// The file (e.g. on /dev/shm).
        path: PathBuf,
    },
}

impl FromStr for MiniportKind {
    type Err = String;
    /// `null`, `ram` or `file:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "null" => Ok(MiniportKind::Null),
            "ram" => Ok(MiniportKind::Ram),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(MiniportKind::File { path: p.into() }),
                _ => Err(format!("unknown miniport {s:?} (null, ram or file:PATH)")),
            },
        }
    }
}

impl fmt::Display for MiniportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MiniportKind::Null => write!(f, "null"),
            MiniportKind::Ram => write!(f, "ram"),
            MiniportKind::File { path } => write!(f, "file:{}", path.display()),
        }
    }
}

/// The port's I/O model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// The SCSI Port model (`port::initialize`).
    Scsiport,
    /// The Storport model (`port::initialize_storport`).
    Storport,
}

impl FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "scsiport" => Ok(Model::Scsiport),
            "storport" => Ok(Model::Storport),
            _ => Err(format!("unknown model {s:?} (scsiport or storport)")),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::Scsiport => "scsiport",
            Model::Storport => "storport",
        })
    }
}

/// The access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly random reads.
    RandRead,
    /// Uniformly random writes.
    RandWrite,
    /// Sequential reads (each thread walks its own part of the disk).
    Read,
    /// Sequential writes.
    Write,
    /// Random reads and writes, `read_percent` % reads.
    Mixed {
        /// Share of reads, 0..=100.
        read_percent: u8,
    },
}

impl FromStr for Pattern {
    type Err = String;
    /// `randread`, `randwrite`, `read`, `write`, `mixed` (70 % reads) or `mixed:PERCENT`.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "randread" => Pattern::RandRead,
            "randwrite" => Pattern::RandWrite,
            "read" => Pattern::Read,
            "write" => Pattern::Write,
            "mixed" => Pattern::Mixed { read_percent: 70 },
            _ => {
                let p = s
                    .strip_prefix("mixed:")
                    .and_then(|p| p.parse::<u8>().ok())
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| {
                        format!(
                            "unknown pattern {s:?} (randread, randwrite, read, write, mixed[:READ%])"
                        )
                    })?;
                Pattern::Mixed { read_percent: p }
            }
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::RandRead => write!(f, "randread"),
            Pattern::RandWrite => write!(f, "randwrite"),
            Pattern::Read => write!(f, "read"),
            Pattern::Write => write!(f, "write"),
            Pattern::Mixed { read_percent } => write!(f, "mixed:{read_percent}"),
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The miniport.
    pub miniport: MiniportKind,
    /// The port model.
    pub model: Model,
    /// The access pattern.
    pub pattern: Pattern,
    /// Bytes per I/O (a multiple of `logical_block_size`).
    pub block_size: u32,
    /// Requests each submitting thread keeps in flight.
    pub queue_depth: u32,
    /// Submitting threads.
    pub threads: u32,
    /// How long to run (seconds in JSON).
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Disk size in bytes (null / ram; a new or empty file is created this large).
    pub size: u64,
    /// Logical block size of the disk: 512 or 4096.
    pub logical_block_size: u32,
    /// Submit raw SRBs (READ/WRITE CDBs) instead of going through the class driver.
    pub raw: bool,
    /// Write verifiable data and check every read (needs a disk that keeps data: not null).
    pub verify: bool,
    /// Seed of the workload's random numbers.
    pub seed: u64,
    /// How often the progress callback is called (seconds in JSON).
    #[serde(with = "secs")]
    pub progress_interval: Duration,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            miniport: MiniportKind::Null,
            model: Model::Scsiport,
            pattern: Pattern::RandRead,
            block_size: 4096,
            queue_depth: 1,
            threads: 1,
            duration: Duration::from_secs(5),
            size: 256 << 20,
            logical_block_size: 512,
            raw: false,
            verify: false,
            seed: 1,
            progress_interval: Duration::from_millis(100),
        }
    }
}

/// Durations as seconds (a float) in JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// A progress sample, passed to the callback of [`run`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the I/O started.
    pub elapsed: Duration,
    /// The configured duration.
    pub duration: Duration,
    /// I/Os completed so far.
    pub ios: u64,
    /// Bytes moved so far.
    pub bytes: u64,
}

impl Progress {
    /// Elapsed share of the duration, 0.0..=1.0.
    pub fn fraction(&self) -> f64 {
        if self.duration.is_zero() {
            1.0
        } else {
            (self.elapsed.as_secs_f64() / self.duration.as_secs_f64()).min(1.0)
        }
    }
    /// IOPS so far.
    pub fn iops(&self) -> f64 {
        self.ios as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Latency {
    /// Fastest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
}

/// Verify-mode results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VerifyReport {
    /// Reads checked.
    pub reads_checked: u64,
    /// Reads whose data was not what was last written.
    pub mismatches: u64,
    /// Byte offset of the first mismatching read.
    pub first_mismatch_offset: Option<u64>,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The configuration that ran.
    pub config: BenchConfig,
    /// `class` or `raw`.
    pub path: String,
    /// Seconds of I/O (from the first submission to the last completion).
    pub elapsed_secs: f64,
    /// I/Os completed successfully.
    pub ios: u64,
    /// Of which reads.
    pub reads: u64,
    /// Of which writes.
    pub writes: u64,
    /// I/Os that failed.
    pub errors: u64,
    /// The first error, as text.
    pub first_error: Option<String>,
    /// Bytes moved.
    pub bytes: u64,
    /// Successful I/Os per second.
    pub iops: f64,
    /// MiB (2^20 bytes) per second.
    pub mib_per_sec: f64,
    /// Completion latency (submit to completion seen by the submitting thread).
    pub latency: Latency,
    /// Process CPU time (user + system, all threads) during the I/O phase.
    pub cpu_secs: f64,
    /// Process CPU time per I/O, in microseconds.
    pub cpu_us_per_io: f64,
    /// Verify mode only.
    pub verify: Option<VerifyReport>,
}

impl BenchReport {
    /// The report as pretty JSON (for `--json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "{} {} on {} ({}), bs {} B, qd {}, {} thread(s), {:.2} s",
            c.pattern,
            self.path,
            c.miniport,
            c.model,
            c.block_size,
            c.queue_depth,
            c.threads,
            self.elapsed_secs
        )?;
        writeln!(
            f,
            "  IOPS {:.0}   {:.1} MiB/s   ({} reads, {} writes, {} errors)",
            self.iops, self.mib_per_sec, self.reads, self.writes, self.errors
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency us: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2}, min {:.2})",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.min_us
        )?;
        write!(
            f,
            "  CPU {:.3} s = {:.2} us per I/O",
            self.cpu_secs, self.cpu_us_per_io
        )?;
        if let Some(v) = &self.verify {
            write!(
                f,
                "\n  verify: {} reads checked, {} mismatches",
                v.reads_checked, v.mismatches
            )?;
            if let Some(o) = v.first_mismatch_offset {
                write!(f, " (first at byte {o})")?;
            }
        }
        if let Some(e) = &self.first_error {
            write!(f, "\n  first error: {e}")?;
        }
        Ok(())
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The disk could not be created.
    #[error("backend: {0}")]
    Backend(String),
    /// The adapter did not initialize.
    #[error("port: {0}")]
    Port(#[from] port::InitializeError),
    /// The class driver could not open the disk.
    #[error("disk: {0}")]
    Disk(#[from] class::DiskError),
}

/// Runs the benchmark `cfg` describes and calls `progress` every `progress_interval` (on the
/// calling thread). Blocks for about `cfg.duration` plus setup.
pub fn run(cfg: &BenchConfig, progress: impl FnMut(&Progress)) -> Result<BenchReport, BenchError> {
    let bench = Bench::build(cfg)?;
    bench.run(progress)
}

/// Like [`run`], over a backend the caller built (ram miniport; `cfg.miniport` is only
/// reported). For tests and for disks the configuration cannot describe.
pub fn run_with_backend(
    cfg: &BenchConfig,
    backend: Arc<dyn BlockBackend>,
    progress: impl FnMut(&Progress),
) -> Result<BenchReport, BenchError> {
    let bench = Bench::with_backend(cfg, backend)?;
    bench.run(progress)
}

/// Counters one submitting thread publishes while it runs.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) ios: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

/// What one submitting thread measured.
#[derive(Debug)]
pub(crate) struct ThreadResult {
    pub(crate) hist: Histogram<u64>,
    pub(crate) reads: u64,
    pub(crate) writes: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) bytes: u64,
    pub(crate) verify: VerifyReport,
    /// When the thread saw its last completion.
    pub(crate) last: Instant,
}

impl ThreadResult {
    pub(crate) fn new() -> Self {
        Self {
            hist: histogram(),
            reads: 0,
            writes: 0,
            errors: 0,
            first_error: None,
            bytes: 0,
            verify: VerifyReport::default(),
            last: Instant::now(),
        }
    }

    pub(crate) fn error(&mut self, e: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// A latency histogram in nanoseconds: 1 ns .. 60 s, 3 significant digits (larger values are
/// clamped to 60 s by `saturating_record`).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// Shared state of the submitting threads.
#[derive(Debug)]
pub(crate) struct RunShared {
    pub(crate) stop: AtomicBool,
    pub(crate) live: Vec<CachePadded<Live>>,
}

/// Process CPU time (all threads, user + system).
pub(crate) fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

pub(crate) fn report(
    cfg: &BenchConfig,
    results: Vec<ThreadResult>,
    started: Instant,
    cpu: Duration,
) -> BenchReport {
    let mut hist = histogram();
    let mut r = BenchReport {
        config: cfg.clone(),
        path: if cfg.raw { "raw" } else { "class" }.into(),
        elapsed_secs: 0.0,
        ios: 0,
        reads: 0,
        writes: 0,
        errors: 0,
        first_error: None,
        bytes: 0,
        iops: 0.0,
        mib_per_sec: 0.0,
        latency: Latency::default(),
        cpu_secs: cpu.as_secs_f64(),
        cpu_us_per_io: 0.0,
        verify: cfg.verify.then(VerifyReport::default),
    };
    let mut last = started;
    for t in results {
        let _ = hist.add(&t.hist);
        r.reads += t.reads;
        r.writes += t.writes;
        r.errors += t.errors;
        r.bytes += t.bytes;
        if r.first_error.is_none() {
            r.first_error = t.first_error;
        }
        if let Some(v) = &mut r.verify {
            v.reads_checked += t.verify.reads_checked;
            v.mismatches += t.verify.mismatches;
            if v.first_mismatch_offset.is_none() {
                v.first_mismatch_offset = t.verify.first_mismatch_offset;
            }
        }
        last = last.max(t.last);
    }
    r.ios = r.reads + r.writes;
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    r.elapsed_secs = secs;
    r.iops = r.ios as f64 / secs;
    r.mib_per_sec = r.bytes as f64 / secs / f64::from(1u32 << 20);
    if r.ios > 0 {
        r.cpu_us_per_io = r.cpu_secs * 1e6 / r.ios as f64;
        let us = |ns: u64| ns as f64 / 1000.0;
        r.latency = Latency {
            min_us: us(hist.min()),
            mean_us: hist.mean() / 1000.0,
            p50_us: us(hist.value_at_quantile(0.5)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            max_us: us(hist.max()),
        };
    }
    r
}

/// Drives the run: starts the threads, samples progress, stops them after the duration.
pub(crate) fn drive(
    cfg: &BenchConfig,
    mut progress: impl FnMut(&Progress),
    spawn: impl Fn(u32, &RunShared) -> ThreadResult + Sync,
) -> BenchReport {
    let shared = RunShared {
        stop: AtomicBool::new(false),
        live: (0..cfg.threads).map(|_| CachePadded::default()).collect(),
    };
    let cpu0 = process_cpu();
    let started = Instant::now();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let shared = &shared;
                let spawn = &spawn;
                s.spawn(move || {
                    // Each submitting thread is its own "processor": with concurrent channels
                    // (Storport file adapters) it gets its own channel, ring and interrupt.
                    port::set_current_processor(t);
                    spawn(t, shared)
                })
            })
            .collect();
        let deadline = started + cfg.duration;
        let sample = |elapsed| {
            let (mut ios, mut bytes) = (0, 0);
            for l in &shared.live {
                ios += l.ios.load(Ordering::Relaxed);
                bytes += l.bytes.load(Ordering::Relaxed);
            }
            Progress {
                elapsed,
                duration: cfg.duration,
                ios,
                bytes,
            }
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(cfg.progress_interval.min(deadline - now));
            progress(&sample(started.elapsed()));
        }
        shared.stop.store(true, Ordering::Release);
        let results: Vec<ThreadResult> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        progress(&sample(started.elapsed()));
        results
    });
    let cpu = process_cpu().saturating_sub(cpu0);
    report(cfg, results, started, cpu)
}
