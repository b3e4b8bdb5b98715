//! The soak's clients: iSCSI sessions over loopback and in-process class-driver clients, each
//! on its own thread, each driving a [`Workload`] through three phases:
//!
//! 1. **run**: random reads and writes with several commands in flight, until the run stops;
//! 2. **drain**: no new commands; every command in flight must complete before a deadline
//!    (those that do not are the missing completions);
//! 3. **verify**: once the main thread has quiesced the faults, read back every block the
//!    client ever wrote and check it against what the client knows.
//!
//! Every thread publishes its progress ([`Progress`]) so the main thread can tell a hung
//! client (commands in flight, no completion for too long) from a slow one.
//!
//! With `SCSIPORT_SOAK_DEBUG` set in the environment, every failed read of the final
//! verification is printed on stderr.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use class::{Disk, DiskQueue, IoRequest};
use serde::Serialize;

use super::pattern::UNIT;
use super::session::{Outcome, Session};
use super::workload::{ClientStats, Op, Workload};

/// The phase the main thread has put the clients in.
pub const PHASE_RUN: u8 = 0;
/// Finish what is in flight, issue nothing new.
pub const PHASE_DRAIN: u8 = 1;
/// Faults are quiesced: read back and verify.
pub const PHASE_VERIFY: u8 = 2;

/// What every client thread shares with the main thread.
#[derive(Debug)]
pub struct Control {
    /// [`PHASE_RUN`], [`PHASE_DRAIN`] or [`PHASE_VERIFY`].
    pub phase: AtomicU8,
    /// When the run started (progress times are milliseconds since).
    pub start: Instant,
    /// Each read of the final verification may be retried this long before it counts as a
    /// failure.
    pub verify_retry_for: Duration,
    /// A drain longer than this leaves the commands still in flight as missing.
    pub drain_timeout: Duration,
}

impl Control {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// A client's live progress, read by the main thread's watchdog.
#[derive(Debug, Default)]
pub struct Progress {
    /// Milliseconds since the start of the last completion (or of the start of work).
    pub last_ms: AtomicU64,
    /// Commands in flight.
    pub in_flight: AtomicU64,
    /// Operations completed.
    pub ops: AtomicU64,
    /// The client has drained (phase 2 done).
    pub drained: AtomicBool,
    /// The thread has finished (verification done).
    pub finished: AtomicBool,
}

/// Command accounting at the level the client sees (iSCSI task tags or class-driver tokens).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Completions {
    /// Commands (iSCSI) or requests (class driver) issued.
    pub issued: u64,
    /// Completions matched to an outstanding command.
    pub completed: u64,
    /// Completions for a command not outstanding: double completions.
    pub unexpected: u64,
    /// Commands still outstanding when the client gave up waiting: missing completions.
    pub missing: u64,
}

/// What a client thread returns.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// "iscsi" or "class".
    pub kind: &'static str,
    /// The client's name.
    pub name: String,
    /// Reads and writes during the run and the verification.
    pub stats: ClientStats,
    /// Blocks checked by the final verification.
    pub final_blocks_verified: u64,
    /// Final reads that kept failing until the retry window closed.
    pub final_read_failures: u64,
    /// Command accounting.
    pub completions: Completions,
    /// Class driver: retries its error handling made.
    pub retries: u64,
    /// iSCSI: the connection broke (the session would need a new login).
    pub session_lost: Option<String>,
    /// iSCSI: the TSIH at login and at the end (the same session throughout).
    pub tsih: Option<(u16, u16)>,
    /// How commands failed: error -> count (at most 64 kinds).
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl ClientReport {
    fn new(kind: &'static str, name: String) -> Self {
        Self {
            kind,
            name,
            stats: ClientStats::default(),
            final_blocks_verified: 0,
            final_read_failures: 0,
            completions: Completions::default(),
            retries: 0,
            session_lost: None,
            tsih: None,
            errors: std::collections::BTreeMap::new(),
        }
    }
}

/// How one client reaches its LUs.
pub trait Carrier {
    /// Sends `op` (`data` for writes) with `token`; false if it cannot be sent now.
    fn send(&mut self, token: u64, op: &Op, data: Vec<u8>) -> Result<bool, String>;
    /// Waits up to `timeout` for a completion: (token, Some(read data) / None) on success,
    /// (token, Err) on failure; `Ok(None)` when nothing completed.
    #[allow(clippy::type_complexity)]
    fn poll(&mut self, timeout: Duration)
    -> Result<Option<(u64, Result<Vec<u8>, String>)>, String>;
    /// Whether another command fits now.
    fn can_send(&self) -> bool;
    /// Commands sent and not completed.
    fn in_flight(&self) -> u64;
    /// Completions not matched to a command so far (double completions).
    fn unexpected(&self) -> u64;
}

/// The loop every client runs; fills `report`.
fn drive(
    carrier: &mut dyn Carrier,
    work: &mut Workload,
    control: &Control,
    progress: &Progress,
    report: &mut ClientReport,
) -> Result<(), String> {
    let mut ops: HashMap<u64, Op> = HashMap::new();
    let mut token = 1u64;
    let mut finish = |carrier: &mut dyn Carrier,
                      ops: &mut HashMap<u64, Op>,
                      work: &mut Workload,
                      timeout: Duration|
     -> Result<Option<Op>, String> {
        let Some((t, result)) = carrier.poll(timeout)? else {
            return Ok(None);
        };
        progress.last_ms.store(control.now_ms(), Ordering::Release);
        progress
            .in_flight
            .store(carrier.in_flight(), Ordering::Release);
        let Some(op) = ops.remove(&t) else {
            // The carrier matched it to a command, but not one this client has in flight.
            report.completions.unexpected += 1;
            return Ok(None);
        };
        report.completions.completed += 1;
        progress.ops.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result
            && (report.errors.len() < 64 || report.errors.contains_key(e))
        {
            *report.errors.entry(e.clone()).or_default() += 1;
        }
        if let Err(e) = &result
            && control.phase() == PHASE_VERIFY
            && std::env::var_os("SCSIPORT_SOAK_DEBUG").is_some()
        {
            eprintln!("verification read failed: {e}");
        }
        match (&op.write, result) {
            (Some(_), r) => work.write_done(&op, r.is_ok()),
            (None, Ok(data)) => work.read_done(&op, Some(&data)),
            (None, Err(_)) => work.read_done(&op, None),
        }
        Ok(Some(op))
    };
    progress.last_ms.store(control.now_ms(), Ordering::Release);
    // Run.
    while control.phase() == PHASE_RUN {
        while carrier.can_send() {
            let Some(op) = work.next_op() else { break };
            let data = if op.write.is_some() {
                work.data(&op)
            } else {
                Vec::new()
            };
            if !carrier.send(token, &op, data)? {
                // Nothing was sent: give the blocks back.
                work.release(&op);
                break;
            }
            report.completions.issued += 1;
            ops.insert(token, op);
            token += 1;
            progress
                .in_flight
                .store(carrier.in_flight(), Ordering::Release);
        }
        finish(carrier, &mut ops, work, Duration::from_millis(50))?;
    }
    // Drain.
    let deadline = Instant::now() + control.drain_timeout;
    while !ops.is_empty() && Instant::now() < deadline {
        finish(carrier, &mut ops, work, Duration::from_millis(50))?;
    }
    report.completions.missing = ops.len() as u64;
    progress.drained.store(true, Ordering::Release);
    if !ops.is_empty() {
        return Err(format!("{} commands never completed", ops.len()));
    }
    while control.phase() != PHASE_VERIFY {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Verify: read every touched block back, retrying a failed read for a while.
    progress.last_ms.store(control.now_ms(), Ordering::Release);
    let before = work.stats.blocks_verified;
    for (region, start, blocks) in work.touched_runs(64) {
        let give_up = Instant::now() + control.verify_retry_for;
        loop {
            let op = work
                .claim(region, start, blocks, false)
                .ok_or("a block is busy after the drain")?;
            let failed_before = work.stats.reads_failed;
            if !carrier.send(token, &op, Vec::new())? {
                work.release(&op);
                if Instant::now() >= give_up {
                    report.final_read_failures += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            report.completions.issued += 1;
            ops.insert(token, op);
            token += 1;
            let wait = Instant::now() + control.drain_timeout;
            let done = loop {
                if let Some(op) = finish(carrier, &mut ops, work, Duration::from_millis(100))? {
                    break Some(op);
                }
                if Instant::now() >= wait {
                    break None;
                }
            };
            let Some(_) = done else {
                report.completions.missing += ops.len() as u64;
                return Err("a verification read never completed".into());
            };
            // A failed read leaves reads_failed one higher; success means verified.
            if work.stats.reads_failed == failed_before {
                break;
            }
            if Instant::now() >= give_up {
                report.final_read_failures += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    report.final_blocks_verified = work.stats.blocks_verified - before;
    Ok(())
}

/// An iSCSI session as a [`Carrier`].
struct IscsiCarrier {
    session: Session,
    /// LUN of each soak LU index.
    luns: Vec<u64>,
}

impl Carrier for IscsiCarrier {
    fn send(&mut self, token: u64, op: &Op, data: Vec<u8>) -> Result<bool, String> {
        let lun = self.luns[op.lu as usize];
        let r = if op.write.is_some() {
            self.session.write(token, lun, op.lba, data)
        } else {
            self.session.read(token, lun, op.lba, op.blocks)
        };
        r.map(|()| true).map_err(|e| format!("send: {e}"))
    }

    fn poll(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(u64, Result<Vec<u8>, String>)>, String> {
        let c = self
            .session
            .poll(timeout)
            .map_err(|e| format!("receive: {e}"))?;
        Ok(c.map(|c| {
            let r = match c.outcome {
                Outcome::Good(d) => Ok(d),
                other => Err(format!("{other:?}")),
            };
            (c.token, r)
        }))
    }

    fn can_send(&self) -> bool {
        self.session.can_submit()
    }

    fn in_flight(&self) -> u64 {
        self.session.outstanding() as u64
    }

    fn unexpected(&self) -> u64 {
        self.session.counters().unexpected
    }
}

/// What an iSCSI client needs to start.
#[derive(Debug, Clone)]
pub struct IscsiClient {
    /// The client id (stamped into its blocks).
    pub id: u32,
    /// The target's portal.
    pub addr: SocketAddr,
    /// The target's IQN.
    pub target: String,
    /// LUN of each soak LU index.
    pub luns: Vec<u64>,
    /// The client's regions: (LU index, first LBA, blocks).
    pub regions: Vec<(u32, u64, u64)>,
    /// Commands in flight at most.
    pub depth: usize,
    /// Random seed.
    pub seed: u64,
}

/// Runs one iSCSI session client to the end.
pub fn run_iscsi(c: IscsiClient, control: Arc<Control>, progress: Arc<Progress>) -> ClientReport {
    let name = format!("iscsi-{}", c.id);
    let mut report = ClientReport::new("iscsi", name.clone());
    let isid = [0x80, 0x00, 0x50, 0x4b, (c.id >> 8) as u8, c.id as u8];
    let session = match Session::login(
        c.addr,
        &format!("iqn.2026-11.dev.scsiport:soak-{}", c.id),
        &c.target,
        isid,
        Duration::from_secs(10),
    ) {
        Ok(s) => s,
        Err(e) => {
            report.session_lost = Some(format!("login: {e}"));
            progress.drained.store(true, Ordering::Release);
            progress.finished.store(true, Ordering::Release);
            return report;
        }
    };
    let tsih = session.tsih();
    let mut session = session;
    session.depth = c.depth;
    let mut carrier = IscsiCarrier {
        session,
        luns: c.luns,
    };
    let mut work = Workload::new(c.id, c.seed, &c.regions);
    if let Err(e) = drive(&mut carrier, &mut work, &control, &progress, &mut report) {
        report.session_lost = Some(e);
    }
    let counters = carrier.session.counters();
    report.completions.unexpected += counters.unexpected;
    report.tsih = Some((tsih, carrier.session.tsih()));
    report.stats = work.stats;
    if report.session_lost.is_none() {
        let _ = carrier.session.logout();
    }
    progress.drained.store(true, Ordering::Release);
    progress.finished.store(true, Ordering::Release);
    report
}

/// Class-driver queues as a [`Carrier`]: one [`DiskQueue`] per LU the client uses.
struct ClassCarrier {
    /// (soak LU index, disk, its queue).
    queues: Vec<(u32, Disk, DiskQueue)>,
    /// Requests in flight per queue, to pick the next queue to wait on.
    next_wait: usize,
    unexpected: u64,
    in_flight: HashMap<u64, ()>,
}

impl ClassCarrier {
    fn queue_of(&mut self, lu: u32) -> Option<&mut (u32, Disk, DiskQueue)> {
        self.queues.iter_mut().find(|q| q.0 == lu)
    }
}

impl Carrier for ClassCarrier {
    fn send(&mut self, token: u64, op: &Op, data: Vec<u8>) -> Result<bool, String> {
        let Some((_, disk, q)) = self.queue_of(op.lu) else {
            return Err(format!("no queue for LU {}", op.lu));
        };
        let bs = u64::from(disk.block_size());
        let offset = op.lba * UNIT as u64;
        let len = u64::from(op.blocks) * UNIT as u64;
        if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) {
            return Err(format!("block size {bs} is not {UNIT}"));
        }
        let req = if op.write.is_some() {
            IoRequest::write(offset, data)
        } else {
            IoRequest::read(offset, len, vec![0; len as usize])
        };
        match q.submit(req, token) {
            Ok(()) => {
                self.in_flight.insert(token, ());
                Ok(true)
            }
            Err(r) if matches!(r.error, class::DiskError::QueueFull { .. }) => Ok(false),
            Err(r) => Err(format!("submit: {}", r.error)),
        }
    }

    fn poll(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(u64, Result<Vec<u8>, String>)>, String> {
        let n = self.queues.len();
        // First anything already done on any queue, then wait on the busiest.
        for i in 0..n {
            let k = (self.next_wait + i) % n;
            if let Some(c) = self.queues[k].2.try_next() {
                self.next_wait = (k + 1) % n;
                return Ok(Some(self.take(c)));
            }
        }
        let busiest = (0..n).max_by_key(|&k| self.queues[k].2.in_flight());
        let Some(k) = busiest.filter(|&k| self.queues[k].2.in_flight() > 0) else {
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
            return Ok(None);
        };
        // Several queues: do not sleep long on one while another completes.
        let wait = if n > 1 {
            timeout.min(Duration::from_millis(2))
        } else {
            timeout
        };
        Ok(self.queues[k].2.wait_next(wait).map(|c| self.take(c)))
    }

    fn can_send(&self) -> bool {
        self.queues
            .iter()
            .any(|(_, _, q)| q.in_flight() < q.depth())
    }

    fn in_flight(&self) -> u64 {
        self.queues
            .iter()
            .map(|(_, _, q)| u64::from(q.in_flight()))
            .sum()
    }

    fn unexpected(&self) -> u64 {
        self.unexpected
    }
}

impl ClassCarrier {
    fn take(&mut self, c: class::IoCompletion) -> (u64, Result<Vec<u8>, String>) {
        if self.in_flight.remove(&c.token).is_none() {
            self.unexpected += 1;
        }
        (
            c.token,
            c.result.map(|()| c.buffer).map_err(|e| e.to_string()),
        )
    }
}

/// What a class-driver client needs to start.
#[derive(Debug)]
pub struct ClassClient {
    /// The client id (stamped into its blocks).
    pub id: u32,
    /// (soak LU index, opened disk) for every LU the client uses.
    pub disks: Vec<(u32, Disk)>,
    /// The client's regions: (LU index, first LBA, blocks).
    pub regions: Vec<(u32, u64, u64)>,
    /// Requests in flight per LU at most.
    pub depth: u32,
    /// Random seed.
    pub seed: u64,
}

/// Runs one class-driver client to the end.
pub fn run_class(c: ClassClient, control: Arc<Control>, progress: Arc<Progress>) -> ClientReport {
    let mut report = ClientReport::new("class", format!("class-{}", c.id));
    let mut carrier = ClassCarrier {
        queues: c
            .disks
            .into_iter()
            .map(|(lu, d)| {
                let q = d.queue(c.depth);
                (lu, d, q)
            })
            .collect(),
        next_wait: 0,
        unexpected: 0,
        in_flight: HashMap::new(),
    };
    let mut work = Workload::new(c.id, c.seed, &c.regions);
    if let Err(e) = drive(&mut carrier, &mut work, &control, &progress, &mut report) {
        report.session_lost = Some(e);
    }
    report.completions.unexpected += carrier.unexpected();
    report.retries = carrier
        .queues
        .iter()
        .map(|(_, _, q)| q.stats().retries)
        .sum();
    report.stats = work.stats;
    progress.drained.store(true, Ordering::Release);
    progress.finished.store(true, Ordering::Release);
    report
}
