//! Randomized stress: thousands of requests from several submitting threads against the
//! scripted miniport with random behaviour (inline, late from the interrupt in random order,
//! BUSY, CHECK CONDITION, underrun, never completing), random aborts, LU and bus resets, queue
//! releases and flushes, a ticking timer and a "hardware" thread firing interrupts.
//!
//! Checks: every request completes exactly once (no duplicate, none missing), with a status
//! consistent with its behaviour and what was done to it; no deadlock (a fixed deadline); the
//! port's counters agree. The seed is printed; set `STRESS_SEED` to replay one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use port::testing::{
    Behaviour, FireOrder, Script, ScriptConfig, ScriptedMiniport, scripted_srb, test_options,
};
use port::{
    Adapter, Address, CompletionSink, DataDirection, PortOptions, Srb, SrbFlags, SrbFunction,
    SrbStatus, queue_request, scsi_status,
};

/// Wall-clock bound of one stress run.
const DEADLINE: Duration = Duration::from_secs(90);
const PER_THREAD: u64 = 1_500;
const THREADS: u64 = 2;
const IN_FLIGHT: usize = 48;

const LUS: [Address; 4] = [
    Address::new(0, 0, 0),
    Address::new(0, 0, 1),
    Address::new(0, 1, 0),
    Address::new(0, 1, 1),
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Io(Behaviour),
    Abort,
    ResetLu,
    ResetBus,
    Release,
    Flush,
}

#[derive(Debug, Clone, Copy)]
struct Expect {
    kind: Kind,
    lu: usize,
    no_freeze: bool,
    length: u32,
    abort_targeted: bool,
}

/// State shared by all threads of one run.
struct World {
    flushes_sent: [AtomicU64; 4],
    shutdown: AtomicBool,
}

struct Tracker {
    outstanding: Mutex<HashMap<u64, Expect>>,
    cv: Condvar,
    errors: Mutex<Vec<String>>,
    to_release: Mutex<Vec<usize>>,
    completed: AtomicU64,
    world: Arc<World>,
    busy_limit: u32,
    storport: bool,
}

impl Tracker {
    fn new(world: Arc<World>, busy_limit: u32, storport: bool) -> Tracker {
        Tracker {
            outstanding: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
            errors: Mutex::new(Vec::new()),
            to_release: Mutex::new(Vec::new()),
            completed: AtomicU64::new(0),
            world,
            busy_limit,
            storport,
        }
    }

    /// A submitter may stop draining: nothing of its own is outstanding (`out`, the held
    /// `outstanding`) and it owes no release (a freeze noted with its last completion holds
    /// every thread's requests to that LU until it is released).
    fn drained(&self, out: &HashMap<u64, Expect>) -> bool {
        out.is_empty() && self.to_release.lock().is_empty()
    }

    fn check(&self, e: &Expect, srb: &Srb) -> Result<(), String> {
        let s = srb.srb_status.status();
        let frozen = srb.srb_status.queue_frozen();
        if frozen && e.no_freeze {
            return Err("QUEUE_FROZEN despite NO_QUEUE_FREEZE".into());
        }
        if frozen && !matches!(e.kind, Kind::Io(_)) {
            return Err("a control request froze the queue".into());
        }
        if srb.srb_status.autosense_valid()
            && !matches!(e.kind, Kind::Io(Behaviour::CheckCondition { .. }))
        {
            return Err("AUTOSENSE_VALID on a request without sense".into());
        }
        let shut = self.world.shutdown.load(Ordering::Acquire);
        let flushed_ok = self.world.flushes_sent[e.lu].load(Ordering::Acquire) > 0 || shut;
        // What a reset, abort, flush or shutdown may do to any I/O request.
        let disturbed = |s: SrbStatus| {
            s == SrbStatus::BUS_RESET
                || (s == SrbStatus::REQUEST_FLUSHED && flushed_ok)
                || (s == SrbStatus::ABORTED && e.abort_targeted)
                || (s == SrbStatus::NO_HBA && shut)
        };
        let ok = match e.kind {
            Kind::Io(b) => match b {
                Behaviour::Inline | Behaviour::Interrupt => s == SrbStatus::SUCCESS || disturbed(s),
                Behaviour::Never => {
                    s == SrbStatus::ABORTED || s == SrbStatus::TIMEOUT || disturbed(s)
                }
                Behaviour::Busy(n) => {
                    s == SrbStatus::SUCCESS
                        || (s == SrbStatus::BUSY
                            && !self.storport
                            && u32::from(n) > self.busy_limit)
                        || disturbed(s)
                }
                Behaviour::CheckCondition { key, asc, .. } => {
                    (s == SrbStatus::ERROR
                        && srb.scsi_status == scsi_status::CHECK_CONDITION
                        && srb.srb_status.autosense_valid()
                        && srb.sense().get(2).map(|k| k & 0x0F) == Some(key)
                        && srb.sense().get(12) == Some(&asc))
                        || disturbed(s)
                }
                Behaviour::Underrun => {
                    (s == SrbStatus::DATA_OVERRUN && srb.data_transfer_length == e.length / 2)
                        || disturbed(s)
                }
                Behaviour::Status(x) => s == SrbStatus(x) || disturbed(s),
                _ => false,
            },
            Kind::Abort => {
                matches!(
                    s,
                    SrbStatus::SUCCESS | SrbStatus::ABORT_FAILED | SrbStatus::INVALID_REQUEST
                ) || (shut && disturbed(s))
            }
            // An adapter may not support LU reset.
            Kind::ResetLu => {
                matches!(s, SrbStatus::SUCCESS | SrbStatus::INVALID_REQUEST)
                    || (shut && disturbed(s))
            }
            Kind::ResetBus | Kind::Release => s == SrbStatus::SUCCESS || (shut && disturbed(s)),
            Kind::Flush => {
                matches!(s, SrbStatus::SUCCESS | SrbStatus::INVALID_REQUEST)
                    || (shut && disturbed(s))
            }
        };
        if !ok {
            return Err(format!(
                "status {:?} inconsistent with {e:?}",
                srb.srb_status
            ));
        }
        if s == SrbStatus::SUCCESS
            && matches!(e.kind, Kind::Io(_))
            && srb.data_transfer_length != e.length
        {
            return Err("SUCCESS with a short transfer".into());
        }
        Ok(())
    }
}

impl CompletionSink for Tracker {
    fn complete(&self, srb: Srb) {
        let id = srb.original_request;
        let expect = {
            let mut out = self.outstanding.lock();
            let e = out.remove(&id);
            // A frozen LU is noted for release in the same `outstanding` hold that takes the
            // request off: a submitter that sees its last request gone also sees the release
            // it owes (the freeze holds every thread's requests to that LU, not only its own).
            if let Some(e) = &e
                && srb.srb_status.queue_frozen()
            {
                self.to_release.lock().push(e.lu);
            }
            e
        };
        match expect {
            None => self.errors.lock().push(format!(
                "request {id} completed twice or never submitted ({:?} {:?})",
                srb.function, srb.srb_status
            )),
            Some(e) => {
                if let Err(msg) = self.check(&e, &srb) {
                    self.errors.lock().push(format!("request {id}: {msg}"));
                }
            }
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
    fn batch_done(&self) {
        self.cv.notify_all();
    }
}

fn random_io(rng: &mut Rng, hold_never: bool) -> Behaviour {
    match rng.below(100) {
        0..=34 => Behaviour::Inline,
        35..=59 => Behaviour::Interrupt,
        60..=64 if hold_never => Behaviour::Never,
        60..=64 => Behaviour::Inline,
        65..=76 => Behaviour::Busy(rng.below(5) as u8),
        77..=88 => Behaviour::CheckCondition {
            key: [2u8, 3, 4, 5, 6][rng.below(5) as usize],
            asc: 0x20 + rng.below(8) as u8,
            ascq: 0,
        },
        89..=94 => Behaviour::Underrun,
        _ => Behaviour::Status(
            [SrbStatus::ERROR.0, SrbStatus::SELECTION_TIMEOUT.0][rng.below(2) as usize],
        ),
    }
}

/// One submitting thread: `PER_THREAD` requests, at most `IN_FLIGHT` outstanding.
fn submitter_thread(
    adapter: Adapter,
    tracker: Arc<Tracker>,
    seed: u64,
    base: u64,
    deadline: Instant,
) {
    let submitter = adapter.submitter(tracker.clone());
    let mut rng = Rng(seed);
    let mut next_id = base;
    let mut submit = |kind: Kind, mut srb: Srb, lu: usize, no_freeze: bool, length: u32| {
        let id = next_id;
        next_id += 1;
        srb.original_request = id;
        tracker.outstanding.lock().insert(
            id,
            Expect {
                kind,
                lu,
                no_freeze,
                length,
                abort_targeted: false,
            },
        );
        submitter.submit(srb);
        id
    };
    let release = |tracker: &Tracker,
                   rng: &mut Rng,
                   submit: &mut dyn FnMut(Kind, Srb, usize, bool, u32) -> u64| {
        let lus: Vec<usize> = std::mem::take(&mut *tracker.to_release.lock());
        for lu in lus {
            if rng.below(4) == 0 {
                tracker.world.flushes_sent[lu].fetch_add(1, Ordering::AcqRel);
                submit(
                    Kind::Flush,
                    queue_request(SrbFunction::FlushQueue, LUS[lu]),
                    lu,
                    false,
                    0,
                );
            }
            submit(
                Kind::Release,
                queue_request(SrbFunction::ReleaseQueue, LUS[lu]),
                lu,
                false,
                0,
            );
        }
    };
    for _ in 0..PER_THREAD {
        loop {
            release(&tracker, &mut rng, &mut submit);
            let mut out = tracker.outstanding.lock();
            if out.len() < IN_FLIGHT || Instant::now() > deadline {
                break;
            }
            tracker.cv.wait_for(&mut out, Duration::from_millis(5));
        }
        let lu = rng.below(4) as usize;
        let address = LUS[lu];
        match rng.below(200) {
            0..=7 => {
                // Abort one of this thread's outstanding requests on that LU.
                let target = {
                    let mut out = tracker.outstanding.lock();
                    let t = out
                        .iter()
                        .find(|(_, e)| e.lu == lu && matches!(e.kind, Kind::Io(_)))
                        .map(|(id, _)| *id);
                    if let Some(t) = t {
                        out.get_mut(&t).unwrap().abort_targeted = true;
                    }
                    t
                };
                if let Some(t) = target {
                    let mut a = Srb::function(SrbFunction::AbortCommand, address);
                    a.abort_target = t;
                    submit(Kind::Abort, a, lu, false, 0);
                }
            }
            8..=9 => {
                submit(
                    Kind::ResetLu,
                    Srb::function(SrbFunction::ResetLogicalUnit, address),
                    lu,
                    false,
                    0,
                );
            }
            10 => {
                submit(
                    Kind::ResetBus,
                    Srb::function(SrbFunction::ResetBus, address),
                    lu,
                    false,
                    0,
                );
            }
            _ => {
                let b = random_io(&mut rng, true);
                let length = 512 * (1 + rng.below(8) as u32);
                let mut srb = scripted_srb(address, b, 0).with_data(
                    vec![0; length as usize],
                    length,
                    DataDirection::In,
                );
                let no_freeze = rng.below(2) == 0;
                if no_freeze {
                    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
                }
                srb.time_out_value = if b == Behaviour::Never { 2 } else { 100_000 };
                submit(Kind::Io(b), srb, lu, no_freeze, length);
            }
        }
    }
    // Drain: keep releasing frozen queues until everything came back and no release is owed.
    loop {
        release(&tracker, &mut rng, &mut submit);
        let mut out = tracker.outstanding.lock();
        if tracker.drained(&out) {
            break;
        }
        if Instant::now() > deadline {
            // Stuck: say what is outstanding and where the port holds it (before the final
            // shutdown flushes it away).
            let mut stuck: Vec<_> = out.iter().map(|(id, e)| (*id, *e)).collect();
            drop(out);
            stuck.sort_by_key(|(id, _)| *id);
            println!(
                "thread {base:#x}: {} outstanding at the deadline: {:?}\nport state:\n{}",
                stuck.len(),
                &stuck[..stuck.len().min(20)],
                adapter.state_dump()
            );
            break;
        }
        tracker.cv.wait_for(&mut out, Duration::from_millis(5));
    }
}

struct Run {
    adapter: Adapter,
    trackers: Vec<Arc<Tracker>>,
    world: Arc<World>,
}

fn stress(config: ScriptConfig, options: PortOptions, name: &str, shutdown_midway: bool) {
    stress_model(config, options, name, shutdown_midway, false)
}

fn stress_model(
    config: ScriptConfig,
    options: PortOptions,
    name: &str,
    shutdown_midway: bool,
    storport: bool,
) {
    let seed = std::env::var("STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("stress {name}: seed {seed} (STRESS_SEED={seed} to replay)");
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let busy_limit = options.busy_retry_limit;
    let script = Script::new(ScriptConfig {
        luns: LUS.to_vec(),
        number_of_requests: 16,
        ..config
    });
    let adapter = if storport {
        port::initialize_storport::<ScriptedMiniport>(script.clone(), options)
    } else {
        port::initialize::<ScriptedMiniport>(script.clone(), options)
    }
    .unwrap()
    .remove(0);
    let world = Arc::new(World {
        flushes_sent: Default::default(),
        shutdown: AtomicBool::new(false),
    });
    let run = Run {
        adapter: adapter.clone(),
        trackers: (0..THREADS)
            .map(|_| Arc::new(Tracker::new(world.clone(), busy_limit, storport)))
            .collect(),
        world,
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The port tick.
    let ticker = {
        let (a, stop) = (adapter.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                a.tick();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // The "hardware": completes held requests in random orders.
    let hardware = {
        let (s, stop) = (script.clone(), stop.clone());
        let mut rng = Rng(seed ^ 0xABCD);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let order = match rng.below(5) {
                    0 => FireOrder::All,
                    1 => FireOrder::Reversed,
                    2 => FireOrder::Oldest(1 + rng.below(3) as usize),
                    3 => FireOrder::Shuffled(rng.next()),
                    _ => FireOrder::Nothing,
                };
                s.fire(order);
                std::thread::sleep(Duration::from_micros(300 + rng.below(700)));
            }
        })
    };
    let workers: Vec<_> = run
        .trackers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (a, t) = (adapter.clone(), t.clone());
            let s = seed.wrapping_add(i as u64 * 7919);
            std::thread::spawn(move || {
                // A "processor" each: with concurrent channels, one channel per thread.
                port::set_current_processor(i as u32);
                submitter_thread(a, t, s, (i as u64 + 1) << 40, deadline)
            })
        })
        .collect();
    if shutdown_midway {
        std::thread::sleep(Duration::from_millis(40));
        run.world.shutdown.store(true, Ordering::Release);
        run.adapter.shutdown().unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    ticker.join().unwrap();
    hardware.join().unwrap();
    run.world.shutdown.store(true, Ordering::Release);
    run.adapter.shutdown().unwrap();
    let elapsed = started.elapsed();
    let mut total = 0;
    for (i, t) in run.trackers.iter().enumerate() {
        let errors = t.errors.lock();
        assert!(
            errors.is_empty(),
            "thread {i}: {} errors, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        let out = t.outstanding.lock();
        assert!(
            out.is_empty(),
            "thread {i}: {} requests never completed (deadlock or loss): {:?}",
            out.len(),
            out.iter().take(5).collect::<Vec<_>>()
        );
        total += t.completed.load(Ordering::Relaxed);
    }
    assert!(elapsed < DEADLINE, "run exceeded its time bound");
    let stats = run.adapter.statistics();
    let counters = run.adapter.port_counters();
    println!(
        "stress {name}: {total} requests completed exactly once in {elapsed:?}; timeouts {}, resets {}, busy {}, flushed {}, aborted {}, late completions dropped {}, restarts {}",
        stats.timeouts,
        stats.resets,
        stats.busy,
        stats.flushed,
        stats.aborted,
        counters.late_completions,
        counters.adapter_restarts
    );
    if !shutdown_midway {
        assert!(
            total >= THREADS * PER_THREAD,
            "every submitted request came back"
        );
        assert!(
            stats.timeouts > 0 && stats.busy > 0 && stats.resets > 0,
            "the run exercised timeouts, BUSY and resets"
        );
    }
}

/// Regression (the rare stress hang): the completion that freezes an LU must note the release
/// before its request leaves `outstanding`. It used to take the request off first: the
/// submitter, seeing nothing of its own outstanding, stopped, the release was never sent, and
/// the other thread's requests to that LU waited behind the freeze until the run's deadline.
/// Here the test holds `to_release`, so the completion stops exactly where it notes the release.
#[test]
fn tracker_notes_the_release_of_a_frozen_lu_before_the_request_leaves_outstanding() {
    let world = Arc::new(World {
        flushes_sent: Default::default(),
        shutdown: AtomicBool::new(false),
    });
    let tracker = Arc::new(Tracker::new(world, 3, true));
    tracker.outstanding.lock().insert(
        1,
        Expect {
            kind: Kind::Io(Behaviour::Status(SrbStatus::ERROR.0)),
            lu: 2,
            no_freeze: false,
            length: 0,
            abort_targeted: false,
        },
    );
    let mut srb = scripted_srb(LUS[2], Behaviour::Status(SrbStatus::ERROR.0), 1);
    srb.srb_status = SrbStatus::ERROR.with(SrbStatus::QUEUE_FROZEN);
    let release_noted = tracker.to_release.lock();
    let completer = {
        let t = tracker.clone();
        std::thread::spawn(move || t.complete(srb))
    };
    // While the release is not noted, the request never looks gone.
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        if let Some(out) = tracker.outstanding.try_lock() {
            assert!(
                !out.is_empty(),
                "the frozen request left outstanding before its release was noted"
            );
        }
        std::thread::yield_now();
    }
    drop(release_noted);
    completer.join().unwrap();
    assert!(
        tracker.errors.lock().is_empty(),
        "{:?}",
        tracker.errors.lock()
    );
    assert_eq!(*tracker.to_release.lock(), vec![2]);
    assert!(
        !tracker.drained(&tracker.outstanding.lock()),
        "a submitter owing a release keeps draining"
    );
    tracker.to_release.lock().clear();
    assert!(tracker.drained(&tracker.outstanding.lock()));
}

fn options() -> PortOptions {
    PortOptions {
        busy_retry_limit: 3,
        ..test_options()
    }
}

#[test]
fn stress_untagged_adapter_with_autosense_every_request_completes_exactly_once() {
    stress(ScriptConfig::default(), options(), "untagged", false);
}

#[test]
fn stress_tagged_adapter_without_abort_and_with_late_completions_every_request_completes_exactly_once()
 {
    stress(
        ScriptConfig {
            tagged_queuing: true,
            multiple_request_per_lu: true,
            next_lu_request: true,
            abort_supported: false,
            late_after_reset: true,
            ..ScriptConfig::default()
        },
        options(),
        "tagged",
        false,
    );
}

#[test]
fn stress_port_request_sense_and_deferred_interrupts_every_request_completes_exactly_once() {
    stress(
        ScriptConfig {
            auto_request_sense: false,
            deferred_interrupts: true,
            ..ScriptConfig::default()
        },
        options(),
        "request-sense",
        false,
    );
}

#[test]
fn stress_with_shutdown_midway_every_request_completes_exactly_once() {
    stress(ScriptConfig::default(), options(), "shutdown", true);
}

#[test]
fn stress_storport_model_every_request_completes_exactly_once() {
    stress_model(
        ScriptConfig {
            late_after_reset: true,
            ..ScriptConfig::default()
        },
        options(),
        "storport",
        false,
        true,
    );
}

#[test]
fn stress_storport_full_duplex_every_request_completes_exactly_once() {
    stress_model(
        ScriptConfig {
            late_after_reset: true,
            full_duplex: true,
            ..ScriptConfig::default()
        },
        options(),
        "storport-full-duplex",
        false,
        true,
    );
}

#[test]
fn stress_storport_concurrent_channels_every_request_completes_exactly_once() {
    stress_model(
        ScriptConfig {
            late_after_reset: true,
            full_duplex: true,
            concurrent_channels: 2,
            ..ScriptConfig::default()
        },
        options(),
        "storport-concurrent-channels",
        false,
        true,
    );
}

#[test]
fn stress_storport_concurrent_channels_with_shutdown_midway_every_request_completes_exactly_once() {
    stress_model(
        ScriptConfig {
            full_duplex: true,
            concurrent_channels: 2,
            ..ScriptConfig::default()
        },
        options(),
        "storport-concurrent-channels-shutdown",
        true,
        true,
    );
}

#[test]
fn stress_storport_full_duplex_with_shutdown_midway_every_request_completes_exactly_once() {
    stress_model(
        ScriptConfig {
            full_duplex: true,
            ..ScriptConfig::default()
        },
        options(),
        "storport-full-duplex-shutdown",
        true,
        true,
    );
}

#[test]
fn stress_with_adapter_restarts_every_request_completes_exactly_once() {
    stress(
        ScriptConfig {
            abort_supported: false,
            lu_reset_supported: false,
            reset_completes: false,
            ..ScriptConfig::default()
        },
        options(),
        "restarts",
        false,
    );
}
