//! A small full-duplex Storport miniport written against the public API: its `start_io` runs
//! under the StartIo lock with the request in hand ([`StartIoContext`]) and uses the Storport
//! services from there — completion in hand, `synchronize_access`, raising its own interrupt,
//! the timer, busy / pause / queue depth, ResetDetected, completing another request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::EventLog;
use port::testing::CollectingSink;
use port::{
    Adapter, Address, DataDirection, FindAdapterContext, FindAdapterResult, HwInitializationData,
    InterruptLine, Miniport, PortConfiguration, PortContext, PortEvent, PortOptions, Srb, SrbRef,
    SrbStatus, StartIoContext, StorportMiniport, SynchronizationModel,
};

const LU: Address = Address::new(0, 0, 0);
const OPCODE: u8 = 0xC1;

/// What the test miniport does with a request (the CDB's byte 1).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Op {
    /// Complete in hand.
    Inline = 0,
    /// Hand to the interrupt side and raise the interrupt from start_io.
    HoldAndRaise = 1,
    /// Hand to the interrupt side; completed by a later `Fire` or `CompleteOther`.
    Hold = 2,
    /// Hand to the interrupt side and ask for the timer, which completes it.
    Timer = 3,
    /// StorPortPause(1 s) from start_io, then complete in hand.
    Pause = 4,
    /// StorPortSetDeviceQueueDepth(1) from start_io, then complete in hand.
    DepthOne = 5,
    /// ResetDetected from start_io, then complete in hand.
    Reset = 6,
    /// Take one held request back (synchronize_access) and complete it from start_io with its
    /// handle, then complete this one in hand.
    CompleteOther = 7,
    /// StorPortBusy(2) from start_io, then complete in hand (the request itself is one of the
    /// two outstanding requests the port waits for).
    Busy = 8,
}

fn srb(op: Op, id: u64) -> Srb {
    let mut s = Srb::execute_scsi(LU, &[OPCODE, op as u8, 0, 0, 0, 0])
        .unwrap()
        .with_data(vec![0; 512], 512, DataDirection::In);
    s.original_request = id;
    s
}

#[derive(Default)]
struct Shared {
    line: parking_lot::Mutex<Option<InterruptLine>>,
    /// The next interrupt only raises the line again (from inside the interrupt routine).
    reraise: std::sync::atomic::AtomicBool,
    interrupts: AtomicU64,
    starts: AtomicU64,
    timer_calls: AtomicU64,
}

struct Fdx {
    shared: Arc<Shared>,
    held: Vec<SrbRef>,
}

impl Fdx {
    fn timer(&mut self, port: &mut PortContext<'_, Self>) {
        self.shared.timer_calls.fetch_add(1, Ordering::Relaxed);
        Self::complete_all(&mut self.held, port);
    }

    fn complete_all(held: &mut Vec<SrbRef>, port: &mut PortContext<'_, Self>) {
        for r in held.drain(..) {
            if let Some(s) = port.srb_mut(&r) {
                s.srb_status = SrbStatus::SUCCESS;
            }
            port.request_complete(r);
        }
    }
}

impl Miniport for Fdx {
    type HwContext = Arc<Shared>;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        HwInitializationData::default()
    }

    fn find_adapter(
        shared: &mut Arc<Shared>,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        config.maximum_number_of_targets = 1;
        config.maximum_number_of_logical_units = 1;
        config.synchronization_model = SynchronizationModel::FullDuplex;
        *shared.line.lock() = Some(ctx.interrupt_line());
        FindAdapterResult::Found(Fdx {
            shared: shared.clone(),
            held: Vec::new(),
        })
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        true
    }

    /// Not used: the adapter is full duplex (`start_io_full_duplex` below).
    fn start_io(&mut self, port: &mut PortContext<'_, Self>, srb: SrbRef) -> bool {
        if let Some(s) = port.srb_mut(&srb) {
            s.srb_status = SrbStatus::INVALID_REQUEST;
        }
        port.request_complete(srb);
        true
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, _path_id: u8) -> bool {
        for r in self.held.drain(..) {
            if let Some(s) = port.srb_mut(&r) {
                s.srb_status = SrbStatus::BUS_RESET;
            }
            port.request_complete(r);
        }
        true
    }

    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        self.shared.interrupts.fetch_add(1, Ordering::Relaxed);
        if self.shared.reraise.swap(false, Ordering::AcqRel) {
            // Raising the line from inside the interrupt routine (under the interrupt lock).
            if let Some(line) = &*self.shared.line.lock() {
                line.raise();
            }
            return true;
        }
        Self::complete_all(&mut self.held, port);
        true
    }
}

fn finish(port: &mut StartIoContext<'_, Fdx>, r: SrbRef, status: SrbStatus) {
    if let Some(s) = port.srb_mut(&r) {
        s.srb_status = status;
    }
    port.request_complete(r);
}

impl StorportMiniport for Fdx {
    type Shared = Shared;

    fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn start_io_full_duplex(
        shared: &Shared,
        port: &mut StartIoContext<'_, Self>,
        r: SrbRef,
    ) -> bool {
        shared.starts.fetch_add(1, Ordering::Relaxed);
        let Some(srb) = port.srb_mut(&r) else {
            return false;
        };
        let cdb = *srb.cdb.as_slice().first_chunk::<2>().unwrap_or(&[0, 0]);
        match cdb {
            [0x12, _] => {
                // INQUIRY: a disk.
                let n = srb.data.len().min(36);
                srb.data[..n].fill(0);
                srb.data[2] = 6;
                srb.data[4] = 31;
                srb.data_transfer_length = n as u32;
                finish(port, r, SrbStatus::SUCCESS);
            }
            [OPCODE, op] => match op {
                0 => finish(port, r, SrbStatus::SUCCESS),
                1 => {
                    port.synchronize_access(|m, _| m.held.push(r));
                    // Raising from start_io: the interrupt routine runs on this thread.
                    if let Some(line) = &*shared.line.lock() {
                        line.raise();
                    }
                }
                2 => port.synchronize_access(|m, _| m.held.push(r)),
                3 => {
                    port.synchronize_access(|m, _| m.held.push(r));
                    port.request_timer_call(Fdx::timer, 1_000);
                }
                4 => {
                    port.pause(1);
                    finish(port, r, SrbStatus::SUCCESS);
                }
                5 => {
                    port.set_device_queue_depth(LU, 1);
                    finish(port, r, SrbStatus::SUCCESS);
                }
                6 => {
                    port.reset_detected();
                    finish(port, r, SrbStatus::SUCCESS);
                }
                7 => {
                    if let Some(other) = port.synchronize_access(|m, _| m.held.pop()) {
                        // A handle that is not in hand: completed under the interrupt lock.
                        port.request_complete(other);
                    }
                    // This request was handed over by synchronize_access: no longer in hand.
                    assert!(port.srb(&r).is_none());
                    port.synchronize_access(|_, ctx| {
                        if let Some(s) = ctx.srb_mut(&r) {
                            s.srb_status = SrbStatus::SUCCESS;
                        }
                        ctx.request_complete(r);
                    });
                }
                8 => {
                    port.busy(2);
                    finish(port, r, SrbStatus::SUCCESS);
                }
                _ => finish(port, r, SrbStatus::INVALID_REQUEST),
            },
            _ => finish(port, r, SrbStatus::INVALID_REQUEST),
        }
        true
    }
}

struct Rig {
    adapter: Adapter,
    shared: Arc<Shared>,
    sink: Arc<CollectingSink>,
    submitter: port::Submitter,
    events: Arc<EventLog>,
}

fn rig() -> Rig {
    let shared = Arc::new(Shared::default());
    let options = PortOptions {
        tick: None,
        reset_hold_off_ticks: 2,
        ..PortOptions::default()
    };
    let adapter = port::initialize_storport::<Fdx>(shared.clone(), options)
        .unwrap()
        .remove(0);
    assert!(adapter.is_full_duplex());
    assert_eq!(adapter.logical_units().len(), 1);
    let sink = CollectingSink::new();
    let submitter = adapter.submitter(sink.clone());
    let events = Arc::new(EventLog::default());
    adapter.subscribe(events.clone());
    Rig {
        adapter,
        shared,
        sink,
        submitter,
        events,
    }
}

impl Rig {
    fn wait(&self, n: usize) -> Vec<Srb> {
        assert!(self.sink.wait_for(n, Duration::from_secs(5)) >= n);
        let done = self.sink.take();
        assert_eq!(done.len(), n, "{done:?}");
        done
    }
    fn quiet(&self) {
        std::thread::sleep(Duration::from_millis(30));
        assert!(self.sink.is_empty(), "unexpected completions");
    }
    fn active(&self) -> usize {
        self.adapter
            .synchronize::<Fdx, _>(|m, _| m.held.len())
            .unwrap()
    }
}

#[test]
fn completion_in_hand_and_from_the_interrupt_raised_inside_start_io() {
    let r = rig();
    r.submitter.submit(srb(Op::Inline, 1));
    assert_eq!(r.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    r.submitter.submit(srb(Op::HoldAndRaise, 2));
    let done = r.wait(1);
    assert_eq!(done[0].original_request, 2);
    assert_eq!(done[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(r.adapter.port_counters().late_completions, 0);
    r.adapter.shutdown().unwrap();
}

#[test]
fn the_timer_requested_from_start_io_runs_and_completes() {
    let r = rig();
    r.submitter.submit(srb(Op::Timer, 1));
    let done = r.wait(1);
    assert_eq!(done[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(r.shared.timer_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn start_io_completes_another_request_by_its_handle() {
    let r = rig();
    r.submitter.submit(srb(Op::Hold, 1));
    r.quiet();
    r.submitter.submit(srb(Op::CompleteOther, 2));
    let mut ids: Vec<u64> = r.wait(2).iter().map(|s| s.original_request).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(r.adapter.port_counters().late_completions, 0);
}

#[test]
fn queue_depth_pause_and_busy_set_from_start_io() {
    let r = rig();
    // Busy(2) with another request outstanding: new requests wait until it completes too.
    r.submitter.submit(srb(Op::Hold, 4));
    r.quiet();
    r.submitter.submit(srb(Op::Busy, 5));
    r.wait(1);
    r.submitter.submit(srb(Op::Inline, 6));
    r.quiet();
    r.adapter.interrupt_line().raise();
    let ids: Vec<u64> = r.wait(2).iter().map(|s| s.original_request).collect();
    assert_eq!(ids, vec![4, 6]);
    // Depth 1: one held request at a time.
    r.submitter.submit(srb(Op::DepthOne, 1));
    r.wait(1);
    for i in 0..3 {
        r.submitter.submit(srb(Op::Hold, 10 + i));
    }
    r.quiet();
    assert_eq!(r.active(), 1, "the depth set from start_io holds");
    for _ in 0..3 {
        r.adapter.interrupt_line().raise();
        r.wait(1);
    }
    // Pause(1 s) from start_io: the next request waits for one tick (manual ticks are 1 s).
    r.submitter.submit(srb(Op::Pause, 2));
    r.wait(1);
    r.submitter.submit(srb(Op::Inline, 3));
    r.quiet();
    r.adapter.tick();
    assert_eq!(r.wait(1)[0].original_request, 3);
}

#[test]
fn reset_detected_from_start_io_holds_requests_for_the_hold_off() {
    let r = rig();
    r.submitter.submit(srb(Op::Reset, 1));
    r.wait(1);
    assert!(r.events.wait_for(|e| *e == PortEvent::ResetDetected));
    r.submitter.submit(srb(Op::Inline, 2));
    r.quiet();
    r.adapter.tick();
    r.quiet();
    r.adapter.tick();
    assert_eq!(r.wait(1)[0].original_request, 2);
    assert!(r.shared.starts.load(Ordering::Relaxed) >= 3);
}

#[test]
fn the_interrupt_routine_may_raise_its_own_line_again() {
    let r = rig();
    r.submitter.submit(srb(Op::Hold, 1));
    r.quiet();
    r.shared.reraise.store(true, Ordering::Release);
    r.adapter.interrupt_line().raise();
    assert_eq!(r.wait(1)[0].original_request, 1);
    assert!(r.shared.interrupts.load(Ordering::Relaxed) >= 2);
}

#[test]
fn a_routine_of_one_adapter_may_submit_to_another() {
    let a = rig();
    let b = rig();
    // Inside adapter a's interrupt lock, a request to adapter b runs b's deferred stage (and
    // its full-duplex start_io) on this thread.
    a.adapter
        .synchronize::<Fdx, _>(|_, _| b.submitter.submit(srb(Op::Inline, 7)))
        .unwrap();
    assert_eq!(b.wait(1)[0].original_request, 7);
}
