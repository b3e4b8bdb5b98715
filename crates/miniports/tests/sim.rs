//! The `sim` miniport through the port: I/O under both models, every fault kind, the
//! optional routines (system DMA, deferred interrupt work, adapter state, stop/restart, WMI),
//! and a randomized run with every fault rate on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use device::backend::RamBackend;
use device::{LogicalUnit, LuConfig};
use miniports::DiskLu;
use miniports::sim::{
    InjectInput, SIM_COUNTERS_GUID, SIM_COUNTERS_WMI_SIZE, SIM_METHODS_GUID,
    SIM_WMI_INJECT_OUTPUT_SIZE, SIM_WMI_METHOD_INJECT, SimAdapterConfig, SimControl, SimCounters,
    SimFault, SimFaultKind, SimHwContext, SimMiniport, SimRegisters,
};
use parking_lot::{Condvar, Mutex};
use port::wmi::WmiError;
use port::{
    Adapter, Address, CompletionSink, DataDirection, PortEvent, PortEventSink, PortOptions, Srb,
    SrbFlags, SrbStatus,
};

const LU0: Address = Address {
    path_id: 0,
    target_id: 0,
    lun: 0,
};

/// TimeOutValue (ticks of 20 ms) of requests that should not time out, even on a busy machine.
const NORMAL_TIMEOUT: u32 = 50;

/// A request the test expects to time out: 2 ticks.
fn quick(mut srb: Srb) -> Srb {
    srb.time_out_value = 2;
    srb
}

/// Bound on every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(20);

fn ram_lu(address: Address, blocks: u64) -> DiskLu {
    DiskLu {
        address,
        lu: Arc::new(LogicalUnit::new(
            LuConfig::default(),
            Arc::new(RamBackend::new(blocks, 512).unwrap()),
        )),
    }
}

/// A 20 ms tick so timeouts (2 ticks) and the recovery ladder (1 tick per step) are quick.
fn options() -> PortOptions {
    PortOptions {
        tick: Some(Duration::from_millis(20)),
        reset_hold_off_ticks: 1,
        recovery_ticks: 1,
        ..PortOptions::default()
    }
}

/// Bounds the whole test binary: blocking port calls have no deadline of their own, so a
/// recovery that never finishes aborts the run instead of hanging it.
fn watchdog() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(300));
            eprintln!("sim tests: still running after 300 s; aborting");
            std::process::abort();
        });
    });
}

fn start(storport: bool, f: impl FnOnce(&mut SimAdapterConfig)) -> (Adapter, SimControl) {
    watchdog();
    let mut cfg = SimAdapterConfig::new(vec![ram_lu(LU0, 4096)]);
    f(&mut cfg);
    let control = cfg.control();
    let hw = SimHwContext::single(cfg);
    let mut adapters = if storport {
        port::initialize_storport::<SimMiniport>(hw, options()).unwrap()
    } else {
        port::initialize::<SimMiniport>(hw, options()).unwrap()
    };
    let a = adapters.remove(0);
    assert_eq!(a.logical_units().len(), 1, "the scan finds the LU");
    settle(&a);
    (a, control)
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [op, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

fn write10(lba: u32, blocks: u16, fill: u8) -> Srb {
    let len = blocks as usize * 512;
    let mut s = Srb::execute_scsi(LU0, &rw10(0x2A, lba, blocks))
        .unwrap()
        .with_data(vec![fill; len], len as u32, DataDirection::Out);
    s.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s.time_out_value = NORMAL_TIMEOUT;
    s
}

fn read10(lba: u32, blocks: u16) -> Srb {
    let len = blocks as usize * 512;
    let mut s = Srb::execute_scsi(LU0, &rw10(0x28, lba, blocks))
        .unwrap()
        .with_data(vec![0; len], len as u32, DataDirection::In);
    s.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s.time_out_value = NORMAL_TIMEOUT;
    s
}

/// Clears the power-on (or reset) unit attention.
fn settle(a: &Adapter) {
    for _ in 0..4 {
        let mut tur = Srb::execute_scsi(LU0, &[0, 0, 0, 0, 0, 0]).unwrap();
        tur.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        if a.execute_and_wait(tur).unwrap().srb_status.is_success() {
            return;
        }
    }
    panic!("the LU keeps failing TEST UNIT READY");
}

/// Runs `srb` until it succeeds (retrying what an initiator retries), at most 50 times.
fn until_ok(a: &Adapter, srb: Srb) -> Srb {
    for _ in 0..50 {
        let done = a.execute_and_wait(srb.clone()).unwrap();
        if done.srb_status.is_success() {
            return done;
        }
    }
    panic!("request kept failing");
}

fn read_fill(a: &Adapter, lba: u32) -> u8 {
    let r = until_ok(a, read10(lba, 1));
    assert!(r.data.iter().all(|&b| b == r.data[0]), "torn block");
    r.data[0]
}

/// Polls `f` until true (bounded by [`PATIENCE`]).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn injected(c: &SimControl, k: SimFaultKind) -> u64 {
    c.counters().injected[k.index()]
}

#[derive(Default)]
struct Events(Mutex<Vec<PortEvent>>);

impl PortEventSink for Events {
    fn port_event(&self, event: &PortEvent) {
        self.0.lock().push(*event);
    }
}

#[test]
fn write_then_read_under_both_models() {
    for storport in [false, true] {
        let (a, c) = start(storport, |_| {});
        assert_eq!(a.is_storport(), storport);
        let before = c.counters();
        let w = a.execute_and_wait(write10(8, 4, 0xA5)).unwrap();
        assert_eq!(
            w.srb_status.status(),
            SrbStatus::SUCCESS,
            "storport={storport}"
        );
        let r = a.execute_and_wait(read10(8, 4)).unwrap();
        assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
        assert!(r.data.iter().all(|&b| b == 0xA5));
        let k = c.counters();
        assert!(k.interrupts >= before.interrupts + 2, "{k:?}");
        assert_eq!(k.commands, before.commands + 2, "{k:?}");
        // Both transfers went through io_map_transfer -> dma_started.
        assert_eq!(k.dma_transfers, before.dma_transfers + 2, "{k:?}");
        // One transfer at a time: one dma_started each.
        assert_eq!(k.dma_started, before.dma_started + 2, "{k:?}");
        assert_eq!(k.injected_total(), 0);
        // The same hardware, found from the running adapter.
        let found = miniports::sim::control_of(&a).expect("a sim adapter");
        assert_eq!(found.counters().commands, c.counters().commands);
        if !storport {
            let ram = port::initialize::<miniports::ram::RamMiniport>(
                miniports::DiskAdapterConfig::single(vec![ram_lu(LU0, 16)]),
                PortOptions {
                    tick: None,
                    ..PortOptions::default()
                },
            )
            .unwrap()
            .remove(0);
            assert!(miniports::sim::control_of(&ram).is_none());
            ram.shutdown().unwrap();
        }
        a.shutdown().unwrap();
    }
}

#[test]
fn bus_master_path_skips_dma_started() {
    let (a, c) = start(false, |cfg| cfg.system_dma = false);
    until_ok(&a, write10(1, 1, 0x11));
    assert_eq!(read_fill(&a, 1), 0x11);
    let k = c.counters();
    assert_eq!((k.dma_started, k.dma_transfers), (0, 0), "{k:?}");
    a.shutdown().unwrap();
}

#[test]
fn lost_interrupt_times_out_and_the_abort_recovers_it() {
    let (a, c) = start(false, |_| {});
    let timeouts = a.statistics().timeouts;
    c.inject(SimFault::LostInterrupt);
    let w = a.execute_and_wait(quick(write10(20, 1, 0x21))).unwrap();
    assert_eq!(injected(&c, SimFaultKind::LostInterrupt), 1);
    // The completion was in the mailbox: the abort reaped it and the write completed.
    assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
    assert!(
        a.statistics().timeouts > timeouts,
        "the port timed the request out"
    );
    assert!(c.counters().aborts >= 1);
    assert_eq!(read_fill(&a, 20), 0x21);
    a.shutdown().unwrap();
}

#[test]
fn late_completion_is_dropped_and_counted_by_the_port() {
    let (a, c) = start(false, |_| {});
    c.inject(SimFault::LateCompletion);
    let w = a.execute_and_wait(quick(write10(30, 1, 0x31))).unwrap();
    // Abort fails (too late), the LU reset takes the request back.
    assert_eq!(w.srb_status.status(), SrbStatus::BUS_RESET);
    assert_eq!(injected(&c, SimFaultKind::LateCompletion), 1);
    assert!(c.counters().lu_resets >= 1);
    eventually("the late completion", || {
        a.port_counters().late_completions >= 1
    });
    assert_eq!(c.counters().late_completions, 1);
    // The transfer happened before the fault: the data is there.
    assert_eq!(read_fill(&a, 30), 0x31);
    a.shutdown().unwrap();
}

#[test]
fn spurious_interrupt_is_not_claimed() {
    let (a, c) = start(false, |_| {});
    let spurious = a.port_counters().spurious_interrupts;
    c.inject(SimFault::SpuriousInterrupt);
    let w = a.execute_and_wait(write10(40, 1, 0x41)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
    eventually("the spurious interrupt", || {
        a.port_counters().spurious_interrupts > spurious
    });
    assert_eq!(injected(&c, SimFaultKind::SpuriousInterrupt), 1);
    assert!(c.counters().spurious_interrupts >= 1);
    a.shutdown().unwrap();
}

#[test]
fn detected_bus_reset_completes_requests_with_bus_reset() {
    let (a, c) = start(false, |_| {});
    let events = Arc::new(Events::default());
    a.subscribe(events.clone());
    until_ok(&a, write10(50, 1, 0x50));
    c.inject(SimFault::BusResetDetected);
    let w = a.execute_and_wait(write10(50, 1, 0x51)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::BUS_RESET);
    assert_eq!(injected(&c, SimFaultKind::BusResetDetected), 1);
    // Events are delivered after the batch's completions.
    eventually("the ResetDetected event", || {
        events.0.lock().contains(&PortEvent::ResetDetected)
    });
    // Dropped before the transfer: the old data is still there.
    assert_eq!(read_fill(&a, 50), 0x50);
    // The retry goes through.
    until_ok(&a, write10(50, 1, 0x51));
    assert_eq!(read_fill(&a, 50), 0x51);
    a.shutdown().unwrap();
}

#[test]
fn selection_timeout_busy_and_check_condition() {
    let (a, c) = start(false, |_| {});
    until_ok(&a, write10(60, 1, 0x60));

    c.inject(SimFault::SelectionTimeout);
    let w = a.execute_and_wait(write10(60, 1, 0x61)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::SELECTION_TIMEOUT);
    assert_eq!(read_fill(&a, 60), 0x60, "nothing written");

    c.inject(SimFault::CheckCondition {
        sense_key: 0x03,
        asc: 0x11,
        ascq: 0x01,
    });
    let w = a.execute_and_wait(write10(60, 1, 0x62)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::ERROR);
    assert!(w.srb_status.autosense_valid());
    assert_eq!(w.scsi_status, 2);
    let sense = w.sense();
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x03, 0x11, 0x01));
    assert_eq!(read_fill(&a, 60), 0x60, "nothing written");

    // BUSY is retried by the port.
    let busy = a.statistics().busy;
    c.inject(SimFault::Busy);
    let w = a.execute_and_wait(write10(60, 1, 0x63)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
    assert!(a.statistics().busy > busy);
    assert_eq!(read_fill(&a, 60), 0x63);

    let k = c.counters();
    for kind in [
        SimFaultKind::SelectionTimeout,
        SimFaultKind::CheckCondition,
        SimFaultKind::Busy,
    ] {
        assert_eq!(k.injected[kind.index()], 1, "{kind:?}");
    }
    a.shutdown().unwrap();
}

#[test]
fn hang_is_ended_by_the_ladders_bus_reset() {
    for storport in [false, true] {
        let (a, c) = start(storport, |_| {});
        let resets = c.counters().resets;
        c.inject(SimFault::HangUntilReset);
        let w = a.execute_and_wait(quick(write10(70, 1, 0x71))).unwrap();
        // Abort and LU reset were not acknowledged; the bus reset took the request back.
        assert_eq!(w.srb_status.status(), SrbStatus::BUS_RESET);
        assert!(!c.is_hung());
        let k = c.counters();
        assert_eq!(k.injected[SimFaultKind::HangUntilReset.index()], 1);
        assert!(k.resets > resets, "{k:?}");
        assert!(k.aborts >= 1 && k.lu_resets == 0, "{k:?}");
        until_ok(&a, write10(70, 1, 0x72));
        assert_eq!(read_fill(&a, 70), 0x72);
        a.shutdown().unwrap();
    }
}

#[test]
fn slow_reset_delays_the_adapter_then_io_resumes() {
    let slow = Duration::from_millis(150);
    let (a, c) = start(false, |cfg| cfg.slow_reset_time = slow);
    c.inject(SimFault::SlowReset);
    let w = a.execute_and_wait(quick(write10(80, 1, 0x81))).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::BUS_RESET);
    let reset_done = Instant::now();
    until_ok(&a, write10(80, 1, 0x82));
    // No command was processed before the slow reset ended.
    assert!(reset_done.elapsed() >= slow - Duration::from_millis(30));
    assert_eq!(injected(&c, SimFaultKind::SlowReset), 1);
    assert_eq!(read_fill(&a, 80), 0x82);
    a.shutdown().unwrap();
}

/// Collects completions; counts each `original_request`.
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
    fn wait_for(&self, n: usize) -> Vec<Srb> {
        let end = Instant::now() + PATIENCE;
        let mut d = self.done.lock();
        while d.len() < n {
            assert!(
                !self.cv.wait_until(&mut d, end).timed_out(),
                "only {} of {n} completions",
                d.len()
            );
        }
        std::mem::take(&mut *d)
    }
}

#[test]
fn deferred_interrupt_work_through_enable_disable_callbacks() {
    let (a, c) = start(false, |cfg| cfg.defer_threshold = 0);
    let sink = Arc::new(Sink::default());
    let s = a.submitter(sink.clone());
    for i in 0..16u32 {
        s.submit(write10(100 + i, 1, i as u8));
    }
    for d in sink.wait_for(16) {
        assert_eq!(d.srb_status.status(), SrbStatus::SUCCESS);
    }
    let k = c.counters();
    assert!(k.deferred_rounds >= 1, "{k:?}");
    assert!(!c.registers().interrupt_mask, "unmasked again");
    for i in 0..16u32 {
        assert_eq!(read_fill(&a, 100 + i), i as u8);
    }
    a.shutdown().unwrap();
}

#[test]
fn adapter_state_is_saved_and_restored() {
    let (a, c) = start(false, |_| {});
    let k = c.counters();
    assert_eq!((k.state_saves, k.state_restores), (1, 0));
    let regs = c.registers();
    assert_eq!(regs.mode, SimRegisters::MODE_RUNNING);
    assert!(!regs.interrupt_mask);
    assert!(regs.doorbell > 0);
    a.shutdown().unwrap();
    let k = c.counters();
    assert_eq!((k.state_saves, k.state_restores, k.stops), (1, 1, 1));
    // Back to what find_adapter saw.
    assert_eq!(c.registers(), SimRegisters::POWER_ON);
}

#[test]
fn stop_and_restart_with_io_in_flight() {
    for storport in [false, true] {
        let (a, c) = start(storport, |cfg| {
            cfg.interrupt_latency = Duration::from_millis(5);
        });
        let sink = Arc::new(Sink::default());
        let s = a.submitter(sink.clone());
        for i in 0..8u32 {
            s.submit(write10(200 + i, 1, 0x10 + i as u8));
        }
        a.stop(PATIENCE).unwrap();
        // Submitted while stopped: held by the port.
        for i in 8..16u32 {
            s.submit(write10(200 + i, 1, 0x10 + i as u8));
        }
        let k = c.counters();
        assert_eq!(k.stops, 1);
        assert!(c.registers().interrupt_mask, "stopped adapter is masked");
        a.restart(PATIENCE).unwrap();
        assert_eq!(c.counters().restarts, 1);
        let done = sink.wait_for(16);
        assert_eq!(done.len(), 16);
        for d in &done {
            assert_eq!(
                d.srb_status.status(),
                SrbStatus::SUCCESS,
                "storport={storport}"
            );
        }
        for i in 0..16u32 {
            assert_eq!(read_fill(&a, 200 + i), 0x10 + i as u8);
        }
        a.shutdown().unwrap();
    }
}

#[test]
fn restart_without_stop_keeps_requests_in_flight() {
    // Adapter::restart on a running adapter calls initialize again.
    let (a, c) = start(false, |cfg| {
        cfg.interrupt_latency = Duration::from_millis(5);
    });
    let sink = Arc::new(Sink::default());
    let s = a.submitter(sink.clone());
    for i in 0..8u32 {
        s.submit(write10(400 + i, 1, 0x40 + i as u8));
    }
    a.restart(PATIENCE).unwrap();
    for d in sink.wait_for(8) {
        assert_eq!(d.srb_status.status(), SrbStatus::SUCCESS);
    }
    assert_eq!(c.counters().stops, 0);
    for i in 0..8u32 {
        assert_eq!(read_fill(&a, 400 + i), 0x40 + i as u8);
    }
    a.shutdown().unwrap();
}

#[test]
fn wmi_counters_block_and_inject_method() {
    let (a, c) = start(false, |_| {});
    until_ok(&a, write10(300, 1, 0x30));
    let blocks = a.wmi_reg_info().unwrap();
    assert!(blocks.iter().any(|b| b.info.guid == SIM_COUNTERS_GUID));
    assert!(blocks.iter().any(|b| b.info.guid == SIM_METHODS_GUID));

    assert_eq!(
        a.wmi_query_all(&SIM_COUNTERS_GUID, 16),
        Err(WmiError::BufferTooSmall {
            needed: SIM_COUNTERS_WMI_SIZE as u32
        })
    );
    let bytes = a
        .wmi_query_all(&SIM_COUNTERS_GUID, SIM_COUNTERS_WMI_SIZE as u32)
        .unwrap();
    let k = SimCounters::from_wmi_bytes(&bytes).unwrap();
    assert!(k.commands >= 1 && k.interrupts >= 1, "{k:?}");

    let input = InjectInput {
        kind: SimFaultKind::CheckCondition.index() as u32,
        count: 2,
        sense_key: 0x04,
        asc: 0x44,
        ascq: 0x00,
    }
    .to_bytes();
    // Too small an output buffer: the size needed, and nothing injected.
    assert_eq!(
        a.wmi_execute_method(&SIM_METHODS_GUID, 0, SIM_WMI_METHOD_INJECT, &input, 8),
        Err(WmiError::BufferTooSmall {
            needed: SIM_WMI_INJECT_OUTPUT_SIZE as u32
        })
    );
    assert_eq!(c.queued_faults(), 0);
    let out = a
        .wmi_execute_method(
            &SIM_METHODS_GUID,
            0,
            SIM_WMI_METHOD_INJECT,
            &input,
            SIM_WMI_INJECT_OUTPUT_SIZE as u32,
        )
        .unwrap();
    assert_eq!(&out[..4], &2u32.to_le_bytes());
    assert_eq!(c.queued_faults(), 2);
    // A bad kind is refused.
    let bad = InjectInput {
        kind: 9,
        count: 1,
        sense_key: 0,
        asc: 0,
        ascq: 0,
    }
    .to_bytes();
    assert!(
        a.wmi_execute_method(
            &SIM_METHODS_GUID,
            0,
            SIM_WMI_METHOD_INJECT,
            &bad,
            SIM_WMI_INJECT_OUTPUT_SIZE as u32
        )
        .is_err()
    );
    for _ in 0..2 {
        let w = a.execute_and_wait(write10(300, 1, 0x31)).unwrap();
        assert_eq!(w.srb_status.status(), SrbStatus::ERROR);
        assert_eq!(w.sense()[2] & 0x0F, 0x04);
        assert_eq!((w.sense()[12], w.sense()[13]), (0x44, 0x00));
    }
    assert_eq!(injected(&c, SimFaultKind::CheckCondition), 2);
    assert_eq!(read_fill(&a, 300), 0x30);
    a.shutdown().unwrap();
}

/// Every fault rate on, several writers: each request completes exactly once and every
/// acknowledged write reads back.
fn randomized(storport: bool) {
    const WRITERS: u32 = 4;
    const BLOCKS: u32 = 16;
    const ROUNDS: u32 = 12;
    let (a, c) = start(storport, |cfg| {
        cfg.fault_rates = [6000; 9];
        cfg.seed = 0x5EED + storport as u64;
        cfg.slow_reset_time = Duration::from_millis(40);
        cfg.defer_threshold = 2;
    });
    // One of each kind for sure, on top of the rates.
    for k in SimFaultKind::ALL {
        c.inject(SimFault::of_kind(k, (0x0B, 0x47, 0x00)));
    }
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let a = a.clone();
            std::thread::spawn(move || {
                let sink = Arc::new(Sink::default());
                let s = a.submitter(sink.clone());
                let mut ids: HashMap<u64, u32> = HashMap::new();
                let mut next_id = (w as u64) << 32;
                let mut acked = vec![None::<u8>; BLOCKS as usize];
                for round in 0..ROUNDS {
                    let fill = (w * 64 + round + 1) as u8;
                    // All blocks of the round in flight at once; failures are resubmitted.
                    let mut pending: Vec<u32> = (0..BLOCKS).collect();
                    let mut attempts = 0;
                    while !pending.is_empty() {
                        attempts += 1;
                        assert!(attempts < 100, "writes keep failing");
                        let mut by_id = HashMap::new();
                        for &b in &pending {
                            next_id += 1;
                            let mut srb = write10(1000 + w * BLOCKS + b, 1, fill);
                            srb.time_out_value = 5;
                            srb.original_request = next_id;
                            ids.insert(next_id, 0);
                            by_id.insert(next_id, b);
                            s.submit(srb);
                        }
                        let done = sink.wait_for(pending.len());
                        pending.clear();
                        for d in done {
                            *ids.get_mut(&d.original_request).expect("known request") += 1;
                            let b = by_id[&d.original_request];
                            if d.srb_status.is_success() {
                                acked[b as usize] = Some(fill);
                            } else {
                                pending.push(b);
                            }
                        }
                    }
                }
                assert!(
                    ids.values().all(|&n| n == 1),
                    "a request completed twice or never"
                );
                // Nothing arrives after the last batch.
                std::thread::sleep(Duration::from_millis(50));
                assert!(sink.done.lock().is_empty(), "extra completions");
                acked
            })
        })
        .collect();
    // Meanwhile the adapter is stopped and restarted under load (ScsiStopAdapter /
    // ScsiRestartAdapter): held requests complete after the restart.
    const CYCLES: u64 = 3;
    for _ in 0..CYCLES {
        std::thread::sleep(Duration::from_millis(100));
        a.stop(PATIENCE).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        a.restart(PATIENCE).unwrap();
    }
    let acked: Vec<Vec<Option<u8>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let k = c.counters();
    assert_eq!((k.stops, k.restarts), (CYCLES, CYCLES), "{k:?}");
    for k in SimFaultKind::ALL {
        c.set_rate(k, 0);
    }
    for (w, blocks) in acked.iter().enumerate() {
        for (b, v) in blocks.iter().enumerate() {
            let lba = 1000 + w as u32 * BLOCKS + b as u32;
            assert_eq!(Some(read_fill(&a, lba)), *v, "writer {w} block {b}");
        }
    }
    eventually("every injected kind", || {
        c.counters().injected.iter().all(|&n| n >= 1)
    });
    let k = c.counters();
    let p = a.port_counters();
    eprintln!("storport={storport} {k:?} {p:?}");
    // Every late completion the hardware delivered reached the port as a stale handle, and
    // nothing else completed twice.
    assert_eq!(p.late_completions, k.late_completions, "{k:?} {p:?}");
    assert_eq!(p.spurious_interrupts, k.spurious_interrupts, "{k:?} {p:?}");
    a.shutdown().unwrap();
}

#[test]
fn randomized_faults_scsiport() {
    randomized(false);
}

#[test]
fn randomized_faults_storport() {
    randomized(true);
}
