//! Storport concurrent channels (`PortConfiguration::concurrent_channels`,
//! `StorPortInitializePerfOpts(STOR_PERF_CONCURRENT_CHANNELS)`) and message-signaled interrupts
//! (`HwMSInterruptRoutine`): `start_io` really runs on two channels at once, `reset_bus` excludes
//! every channel, and a message interrupt completes only its own channel's requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use port::{
    Adapter, AdapterControl, AdapterControlStatus, Address, CompletionSink, FindAdapterContext,
    FindAdapterResult, HwInitializationData, InterruptLine, Miniport, PortConfiguration,
    PortContext, PortOptions, Srb, SrbFunction, SrbRef, SrbStatus, StartIoContext,
    StorportMiniport, SynchronizationModel, scsi_status,
};

const LU: Address = Address::new(0, 0, 0);
/// Completed in hand by `start_io` after the rendezvous of two channels.
const OP_RENDEZVOUS: u8 = 0xC1;
/// Completed in hand by `start_io` (after a short spin, to widen the window for overlaps).
const OP_INLINE: u8 = 0xC2;
/// Staged on the channel, handed to its "hardware" by the doorbell, completed by the
/// channel's message interrupt.
const OP_HARDWARE: u8 = 0xC3;
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Per channel: requests staged by `start_io`, and those the doorbell gave the hardware.
#[derive(Default)]
struct ChannelState {
    staged: Mutex<Vec<SrbRef>>,
    hardware: Mutex<Vec<SrbRef>>,
}

/// The miniport's shared part (what `start_io` may touch without the interrupt lock).
#[derive(Default)]
struct ChanShared {
    channels: Vec<ChannelState>,
    /// `start_io` calls running right now, and the most seen at once.
    in_start_io: AtomicU32,
    max_in_start_io: AtomicU32,
    /// Rendezvous: how many `start_io` calls arrived; how many saw the other one.
    arrived: AtomicU32,
    met: AtomicU32,
    /// The channels `start_io` ran on, in order.
    started_on: Mutex<Vec<u32>>,
    /// `reset_bus` is running; `start_io` calls that ran meanwhile (must stay 0).
    in_reset: AtomicBool,
    overlaps_with_reset: AtomicU32,
    resets: AtomicU32,
    /// `start_io` calls running when `reset_bus` began (must stay 0).
    starts_seen_by_reset: AtomicU32,
}

struct Hw {
    channels: u32,
    shared: Arc<ChanShared>,
    lines: Mutex<Vec<InterruptLine>>,
}

struct ChanMiniport {
    shared: Arc<ChanShared>,
}

impl Miniport for ChanMiniport {
    type HwContext = Arc<Hw>;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        HwInitializationData {
            tagged_queuing: true,
            auto_request_sense: true,
            multiple_request_per_lu: true,
            ..HwInitializationData::default()
        }
    }

    fn find_adapter(
        hw: &mut Arc<Hw>,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        if ctx.call_index() > 0 {
            return FindAdapterResult::NotFound;
        }
        config.synchronization_model = SynchronizationModel::FullDuplex;
        config.concurrent_channels = hw.channels;
        *hw.lines.lock() = ctx.message_interrupt_lines(hw.channels);
        FindAdapterResult::Found(ChanMiniport {
            shared: hw.shared.clone(),
        })
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        true
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, srb: SrbRef) -> bool {
        if let Some(s) = port.srb_mut(&srb) {
            s.srb_status = SrbStatus::SUCCESS;
        }
        port.request_complete(srb);
        true
    }

    /// Completes every request the hardware of any channel holds with BUS_RESET.
    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, _path_id: u8) -> bool {
        let sh = &self.shared;
        sh.resets.fetch_add(1, Ordering::Relaxed);
        sh.starts_seen_by_reset
            .fetch_add(sh.in_start_io.load(Ordering::SeqCst), Ordering::Relaxed);
        sh.in_reset.store(true, Ordering::SeqCst);
        // Hold the reset a little: a start_io on any channel would show up meanwhile.
        std::thread::sleep(Duration::from_millis(20));
        for c in &sh.channels {
            for r in c.hardware.lock().drain(..) {
                if let Some(s) = port.srb_mut(&r) {
                    s.srb_status = SrbStatus::BUS_RESET;
                }
                port.request_complete(r);
            }
        }
        sh.in_reset.store(false, Ordering::SeqCst);
        true
    }

    fn adapter_control(
        &mut self,
        _port: &mut PortContext<'_, Self>,
        _control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        AdapterControlStatus::Success
    }
}

impl StorportMiniport for ChanMiniport {
    type Shared = ChanShared;

    fn shared(&self) -> Arc<ChanShared> {
        self.shared.clone()
    }

    fn start_io_full_duplex(
        sh: &ChanShared,
        port: &mut StartIoContext<'_, Self>,
        srb: SrbRef,
    ) -> bool {
        let now = sh.in_start_io.fetch_add(1, Ordering::SeqCst) + 1;
        sh.max_in_start_io.fetch_max(now, Ordering::SeqCst);
        if sh.in_reset.load(Ordering::SeqCst) {
            sh.overlaps_with_reset.fetch_add(1, Ordering::Relaxed);
        }
        let channel = port.channel();
        sh.started_on.lock().push(channel);
        let op = port.srb(&srb).map(|s| s.cdb.opcode());
        match op {
            Some(OP_RENDEZVOUS) => {
                sh.arrived.fetch_add(1, Ordering::SeqCst);
                let deadline = Instant::now() + RENDEZVOUS_TIMEOUT;
                while sh.arrived.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                    std::thread::yield_now();
                }
                if sh.arrived.load(Ordering::SeqCst) >= 2 {
                    sh.met.fetch_add(1, Ordering::SeqCst);
                }
            }
            Some(OP_INLINE) => {
                let until = Instant::now() + Duration::from_micros(50);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            _ => {}
        }
        if sh.in_reset.load(Ordering::SeqCst) {
            sh.overlaps_with_reset.fetch_add(1, Ordering::Relaxed);
        }
        sh.in_start_io.fetch_sub(1, Ordering::SeqCst);
        if op == Some(OP_HARDWARE) {
            sh.channels[channel as usize].staged.lock().push(srb);
            return true;
        }
        if let Some(s) = port.srb_mut(&srb) {
            s.srb_status = SrbStatus::SUCCESS;
            s.scsi_status = scsi_status::GOOD;
        }
        port.request_complete(srb);
        true
    }

    /// The doorbell: the staged requests are in the port's table now; give them to the
    /// hardware.
    fn start_io_channel_done(sh: &ChanShared, channel: u32) {
        let c = &sh.channels[channel as usize];
        let mut staged = c.staged.lock();
        c.hardware.lock().append(&mut staged);
    }

    /// Completes what channel `message_id`'s hardware holds, nothing else.
    fn message_interrupt(&mut self, port: &mut PortContext<'_, Self>, message_id: u32) -> bool {
        let Some(c) = self.shared.channels.get(message_id as usize) else {
            return false;
        };
        let list: Vec<SrbRef> = c.hardware.lock().drain(..).collect();
        let any = !list.is_empty();
        for r in list {
            if let Some(s) = port.srb_mut(&r) {
                s.srb_status = SrbStatus::SUCCESS;
                s.scsi_status = scsi_status::GOOD;
            }
            port.request_complete(r);
        }
        any
    }
}

/// Collects completions.
#[derive(Default)]
struct Sink {
    done: Mutex<Vec<Srb>>,
    cv: Condvar,
}

impl CompletionSink for Sink {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(srb);
        self.cv.notify_all();
    }
}

impl Sink {
    /// Waits (bounded) until `n` completions are in; returns them all.
    fn wait_for(&self, n: usize) -> Vec<Srb> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut d = self.done.lock();
        while d.len() < n && Instant::now() < deadline {
            self.cv.wait_until(&mut d, deadline);
        }
        assert!(d.len() >= n, "only {} of {n} completions arrived", d.len());
        std::mem::take(&mut *d)
    }
}

fn setup(channels: u32) -> (Adapter, Arc<Hw>) {
    let hw = Arc::new(Hw {
        channels,
        shared: Arc::new(ChanShared {
            channels: (0..channels).map(|_| ChannelState::default()).collect(),
            ..ChanShared::default()
        }),
        lines: Mutex::new(Vec::new()),
    });
    let options = PortOptions {
        scan: false,
        tick: None,
        // No hold-off after a reset (ticks are manual here).
        reset_hold_off_ticks: 0,
        ..PortOptions::default()
    };
    let adapter = port::initialize_storport::<ChanMiniport>(hw.clone(), options)
        .unwrap()
        .remove(0);
    (adapter, hw)
}

fn srb(op: u8, tag: u64) -> Srb {
    let mut s = Srb::execute_scsi(LU, &[op, 0, 0, 0, 0, 0]).unwrap();
    s.original_request = tag;
    s
}

#[test]
fn start_io_runs_concurrently_on_two_channels() {
    let (adapter, hw) = setup(2);
    assert_eq!(adapter.configuration().concurrent_channels, 2);
    let sh = hw.shared.clone();
    let sinks: Vec<Arc<Sink>> = (0..2).map(|_| Arc::new(Sink::default())).collect();
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let (adapter, sink, sh) = (adapter.clone(), sinks[t as usize].clone(), sh.clone());
            std::thread::spawn(move || {
                port::set_current_processor(t);
                if t == 1 {
                    // Submit once the first request is inside start_io (waiting for this one),
                    // so this thread runs its own deferred stage and its own channel.
                    let deadline = Instant::now() + RENDEZVOUS_TIMEOUT;
                    while sh.arrived.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                }
                adapter
                    .submitter(sink.clone())
                    .submit(srb(OP_RENDEZVOUS, t as u64));
                sink.wait_for(1)
            })
        })
        .collect();
    for t in threads {
        let done = t.join().unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].srb_status.status(), SrbStatus::SUCCESS);
    }
    assert_eq!(
        sh.met.load(Ordering::SeqCst),
        2,
        "both start_io calls must have been inside at the same time"
    );
    assert_eq!(sh.max_in_start_io.load(Ordering::SeqCst), 2);
    let mut on = sh.started_on.lock().clone();
    on.sort_unstable();
    assert_eq!(on, vec![0, 1], "one start_io on each channel");
    adapter.shutdown().unwrap();
}

#[test]
fn one_channel_never_runs_start_io_twice_at_once() {
    let (adapter, hw) = setup(1);
    let sinks: Vec<Arc<Sink>> = (0..2).map(|_| Arc::new(Sink::default())).collect();
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let (adapter, sink) = (adapter.clone(), sinks[t as usize].clone());
            std::thread::spawn(move || {
                port::set_current_processor(t);
                let sub = adapter.submitter(sink.clone());
                for i in 0..200 {
                    sub.submit(srb(OP_INLINE, i));
                }
                sink.wait_for(200)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().len(), 200);
    }
    assert_eq!(hw.shared.max_in_start_io.load(Ordering::SeqCst), 1);
    assert!(hw.shared.started_on.lock().iter().all(|&c| c == 0));
    adapter.shutdown().unwrap();
}

#[test]
fn message_interrupt_completes_only_its_channels_requests() {
    let (adapter, hw) = setup(2);
    let sinks: Vec<Arc<Sink>> = (0..2).map(|_| Arc::new(Sink::default())).collect();
    for t in 0..2u32 {
        let (adapter, sink) = (adapter.clone(), sinks[t as usize].clone());
        std::thread::spawn(move || {
            port::set_current_processor(t);
            let sub = adapter.submitter(sink);
            for i in 0..5 {
                sub.submit(srb(OP_HARDWARE, u64::from(t) * 100 + i));
            }
        })
        .join()
        .unwrap();
    }
    // Every request reached its channel's hardware (after the doorbell).
    let deadline = Instant::now() + Duration::from_secs(10);
    while hw
        .shared
        .channels
        .iter()
        .map(|c| c.hardware.lock().len())
        .sum::<usize>()
        < 10
    {
        assert!(
            Instant::now() < deadline,
            "requests did not reach the hardware"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(hw.shared.channels[0].hardware.lock().len(), 5);
    assert_eq!(hw.shared.channels[1].hardware.lock().len(), 5);
    let lines = hw.lines.lock().clone();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].message_id(), Some(1));

    // Message 1: channel 1's requests (thread 1's) complete; channel 0's stay.
    lines[1].raise();
    let done = sinks[1].wait_for(5);
    assert_eq!(done.len(), 5);
    assert!(
        done.iter()
            .all(|s| (100..105).contains(&s.original_request))
    );
    assert!(
        done.iter()
            .all(|s| s.srb_status.status() == SrbStatus::SUCCESS)
    );
    std::thread::sleep(Duration::from_millis(20));
    assert!(sinks[0].done.lock().is_empty());
    assert_eq!(hw.shared.channels[0].hardware.lock().len(), 5);

    // Message 0: the rest.
    lines[0].raise();
    let done = sinks[0].wait_for(5);
    assert!(done.iter().all(|s| s.original_request < 5));
    adapter.shutdown().unwrap();
}

#[test]
fn reset_bus_excludes_every_channel() {
    let (adapter, hw) = setup(2);
    let sh = hw.shared.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2u32)
        .map(|t| {
            let (adapter, stop) = (adapter.clone(), stop.clone());
            std::thread::spawn(move || {
                port::set_current_processor(t);
                let sink = Arc::new(Sink::default());
                let sub = adapter.submitter(sink.clone());
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..8 {
                        sub.submit(srb(OP_INLINE, sent as u64));
                        sent += 1;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                let done = sink.wait_for(sent);
                assert_eq!(done.len(), sent, "every request completes exactly once");
                sent
            })
        })
        .collect();
    let resetter = {
        let adapter = adapter.clone();
        std::thread::spawn(move || {
            let sink = Arc::new(Sink::default());
            let sub = adapter.submitter(sink.clone());
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(10));
                let mut r = Srb::default();
                r.function = SrbFunction::ResetBus;
                r.address = LU;
                sub.submit(r);
                let done = sink.wait_for(1);
                assert_eq!(done[0].srb_status.status(), SrbStatus::SUCCESS);
                // The port resets a bus at most once per tick.
                adapter.tick();
            }
        })
    };
    resetter.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let sent: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(sent > 0);
    assert_eq!(sh.resets.load(Ordering::Relaxed), 5);
    assert_eq!(sh.starts_seen_by_reset.load(Ordering::Relaxed), 0);
    assert_eq!(
        sh.overlaps_with_reset.load(Ordering::Relaxed),
        0,
        "no start_io on any channel while reset_bus runs"
    );
    adapter.shutdown().unwrap();
}
