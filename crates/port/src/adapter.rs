//! One adapter of the SCSI Port model: its locks, queues, the deferred stage ("DPC"), the port
//! tick and the recovery ladder. The public face is [`Adapter`](crate::Adapter).
//!
//! Data is split by who may touch it:
//! - `incoming` (small mutex): requests submitters have handed over, not yet accepted.
//! - `interrupt` (the *interrupt lock*): the miniport, the interrupt-side request table with the
//!   SRB extensions, the notification latch, the LU extensions.
//! - `runner` (the *DPC token*): per-LU queues, slot bookkeeping, adapter flags, timers,
//!   recovery. Only the thread holding the token runs the deferred stage, so the deferred stage
//!   never runs twice at once and needs no finer locking. Every call into the miniport after
//!   initialization is made by the token holder (lock order: runner, then interrupt).

// Requests travel through the port boxed (`Box<Srb>`): each stage moves a pointer instead of
// the ~250-byte SRB, and lists of boxes are the point, not an accident.
#![allow(clippy::vec_box)]
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::context::{Core, Latch, PortContext, QueueOp, SrbRef, StartIoContext};
use crate::handle::{CompletionSink, LogicalUnitInfo, PortEvent, PortEventSink, PortOptions};
use crate::interrupt::{InterruptLine, InterruptTarget};
use crate::miniport::{
    AdapterControl, AdapterControlStatus, AdapterControlType, DevicePowerState, HwRoutine,
    Miniport, PortConfiguration, SP_UNINITIALIZED_VALUE, StorAdapterControl,
    StorAdapterControlType, SupportedControlTypeList, SupportedStorAdapterControlTypeList,
    SupportedUnitControlTypeList, UnitControl, UnitControlStatus, UnitControlType,
};
use crate::srb::{
    Address, QueueAction, SP_UNTAGGED, Srb, SrbFlags, SrbFunction, SrbId, SrbStatus, scsi_status,
};
use crate::stats::{Counters, ErrorCode, ErrorLogEntry, Shared};
use crate::tally::Tally;

thread_local! {
    /// True while this thread holds some adapter's DPC token (runs the deferred stage).
    static IN_DPC: Cell<bool> = const { Cell::new(false) };
    /// The adapter (its address; 0: none) whose miniport routine this thread runs outside the
    /// DPC token (full-duplex `start_io` under the StartIo lock, the interrupt routine on the
    /// raising thread, `Adapter::synchronize`): it must not run that adapter's deferred stage,
    /// which may need the lock it holds; whoever called the routine runs it afterwards.
    static IN_PORT_LOCK: Cell<usize> = const { Cell::new(0) };
}

/// True when the calling thread is running a deferred stage (a completion sink or event sink
/// callback): blocking on the port from here would deadlock.
pub(crate) fn in_deferred_stage() -> bool {
    IN_DPC.with(Cell::get)
}

/// A request handed over by a submitter.
pub(crate) struct Incoming {
    pub(crate) sink: u32,
    pub(crate) srb: Box<Srb>,
    /// False when Storport's `build_io` completed the request itself.
    pub(crate) built: bool,
    /// The concurrent channel of the submitting thread (0 without concurrent channels).
    pub(crate) channel: u16,
}

/// Who gets the request back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A registered completion sink.
    Sink(u32),
    /// The port's own REQUEST SENSE for the LU's parked request.
    RequestSense,
    /// A recovery step (ABORT_COMMAND or RESET_LOGICAL_UNIT) for a timed-out request.
    Recovery { target: SrbId },
}

struct Queued {
    srb: Box<Srb>,
    /// The concurrent channel `start_io` runs on (0 without concurrent channels).
    channel: u16,
    origin: Origin,
    attempts: u32,
    /// When the submitter handed the request to the port (latency statistics).
    submitted: Instant,
}

/// How far the recovery of a timed-out request has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    None,
    Abort,
    LuReset,
    BusReset,
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    active: bool,
    origin: Origin,
    lu: u32,
    generation: u32,
    original_request: u64,
    flags: SrbFlags,
    tagged: bool,
    attempts: u32,
    timeout_left: u32,
    stage: Stage,
    stage_left: u32,
    /// When the submitter handed the request to the port (latency statistics).
    submitted: Instant,
    /// The concurrent channel it was started on.
    channel: u16,
}

impl SlotMeta {
    /// A free slot (`now` only fills the timestamp).
    fn free(now: Instant) -> SlotMeta {
        SlotMeta {
            active: false,
            origin: Origin::RequestSense,
            lu: 0,
            generation: 0,
            original_request: 0,
            flags: SrbFlags::NONE,
            tagged: false,
            attempts: 0,
            timeout_left: 0,
            stage: Stage::None,
            stage_left: 0,
            submitted: now,
            channel: 0,
        }
    }
}

struct LuState {
    address: Address,
    queue: VecDeque<Queued>,
    /// Requests that skip the frozen/locked checks (bypass flags, task management, the port's
    /// REQUEST SENSE and recovery requests).
    bypass: VecDeque<Queued>,
    frozen: bool,
    locked: bool,
    /// A request the miniport answered BUSY, retried on the next tick.
    busy: Option<Queued>,
    /// A CHECK CONDITION request waiting for the port's REQUEST SENSE.
    awaiting_sense: Option<Queued>,
    outstanding: u32,
    untagged_active: bool,
    /// NextLuRequest seen since the last start on this LU.
    more_allowed: bool,
    in_ring: bool,
    lu_reset_pending: bool,
    counters: Arc<Counters>,
    /// Increments of `counters` not folded in yet.
    tally: Tally,
    /// Storport: most requests outstanding (device queue depth).
    depth: u32,
    /// Storport DeviceBusy: completions still to wait for.
    device_busy: u32,
    /// Storport PauseDevice: ticks left (u32::MAX: until resumed).
    paused: u32,
}

#[derive(Debug)]
struct AdapterFlags {
    /// Not waiting for NextRequest.
    ready: bool,
    disconnect_allowed: bool,
    hold_off: u32,
    /// Ticks left before the port gives up waiting for NextRequest.
    adapter_timer: Option<u32>,
    /// Interrupts masked by CallEnableInterrupts until CallDisableInterrupts.
    masked: bool,
    held_interrupt: bool,
    /// Message-signaled interrupts that came while interrupts were held (bit = message id).
    held_messages: u64,
    held_timer: bool,
    /// Stopped through adapter_control (requests held) or shut down.
    stopping: bool,
    stopped: bool,
    shut_down: bool,
    /// StorPortBusy: completions still to wait for.
    busy_count: u32,
    /// StorPortPause: ticks left (u32::MAX: until resumed).
    paused: u32,
}

/// State only the DPC-token holder touches.
pub(crate) struct Runner<M: Miniport> {
    lus: Vec<LuState>,
    lu_index: HashMap<Address, u32>,
    ring: VecDeque<u32>,
    slots: Vec<SlotMeta>,
    free_slots: Vec<u32>,
    adapter: AdapterFlags,
    sinks: Vec<Arc<dyn CompletionSink>>,
    incoming_spare: Vec<Incoming>,
    /// Boxes the sinks gave back, on their way to the incoming lists (`Incomings::spare`).
    spare_boxes: Vec<Box<Srb>>,
    /// Full duplex: the requests this dispatch pass picked, started (one channel) or handed to
    /// their channels together at its end (`flush_starts`).
    start_batch: Vec<PendingStart>,
    snap: Latch<M>,
    completed_buf: Vec<(u32, Box<Srb>)>,
    out: Vec<(u32, Box<Srb>)>,
    touched: Vec<u32>,
    events_out: Vec<PortEvent>,
    escalations: Vec<SrbId>,
    timer_routine: Option<HwRoutine<M>>,
    timer_generation: u64,
    pending_enable: Option<HwRoutine<M>>,
    pending_disable: Option<HwRoutine<M>>,
    pending_dma_started: bool,
    bus_resets_this_tick: Vec<u8>,
    supported: SupportedControlTypeList,
    config: Arc<PortConfiguration>,
    /// Storport model: push while depths allow, NextRequest ignored, BUSY retried forever.
    storport: bool,
    /// Ticks of hold-off after a reset (`reset_hold_off_ticks`, or Storport's
    /// `BusResetHoldTime` rounded up to ticks).
    hold_ticks: u32,
    /// Length of a port tick in µs (1 s when ticks are manual), for Storport pause timeouts.
    tick_us: u64,
    /// Half duplex: `start_io` was called and `start_io_batch_done` not yet (it runs before
    /// the next other routine, or at the end of `dispatch`).
    starts_open: bool,
    /// Increments of the adapter's counters not folded in yet (`crate::tally`).
    tally: Tally,
    /// The time of this pass of the deferred stage (taken when it accepts requests and when it
    /// processes completions, not per request): accept time and latency statistics.
    now: Instant,
    /// LUs whose tally has something to fold.
    tally_lus: Vec<u32>,
}

pub(crate) struct InterruptState<M: Miniport> {
    pub(crate) miniport: M,
    pub(crate) core: Core<M>,
    /// Full duplex: the interrupt routine must not run on the raising thread (the adapter is
    /// stopped or its interrupt masked); raises are left to the deferred stage, which holds them.
    pub(crate) isr_blocked: bool,
}

/// A miniport's `build_io` bound to its shared part, and its other Storport routines.
pub(crate) struct StorportHooks<M: Miniport> {
    pub(crate) build_io: BuildIo,
    /// Set for a full-duplex adapter: `start_io_full_duplex` bound to the shared part.
    pub(crate) start_io: Option<StartIoFn<M>>,
    pub(crate) unit_control: UnitControlFn<M>,
    pub(crate) adapter_control_ex: AdapterControlExFn<M>,
    /// `StorportMiniport::message_interrupt`.
    pub(crate) message_interrupt: MessageFn<M>,
    /// Full duplex: `start_io_channel_done` bound to the shared part.
    pub(crate) channel_done: Option<ChannelDoneFn>,
}

/// `StorportMiniport::message_interrupt`.
pub(crate) type MessageFn<M> = fn(&mut M, &mut PortContext<'_, M>, u32) -> bool;
/// `StorportMiniport::start_io_channel_done` bound to the miniport's shared part.
pub(crate) type ChannelDoneFn = Box<dyn Fn(u32) + Send + Sync>;

/// A full-duplex `start_io` bound to the miniport's shared part.
pub(crate) type StartIoFn<M> =
    Box<dyn Fn(&mut StartIoContext<'_, M>, SrbRef) -> bool + Send + Sync>;
/// `StorportMiniport::unit_control`.
pub(crate) type UnitControlFn<M> =
    fn(&mut M, &mut PortContext<'_, M>, UnitControl<'_>) -> UnitControlStatus;
/// `StorportMiniport::adapter_control_ex`.
pub(crate) type AdapterControlExFn<M> =
    fn(&mut M, &mut PortContext<'_, M>, StorAdapterControl<'_>) -> AdapterControlStatus;

/// A request the deferred stage has given a slot, waiting for the full-duplex `start_io`.
pub(crate) struct PendingStart {
    id: SrbId,
    srb: Box<Srb>,
}

/// The StartIo side of a full-duplex adapter.
pub(crate) struct FullDuplex<M: Miniport> {
    start_io: StartIoFn<M>,
    /// The doorbell after a run of `start_io` calls on a channel.
    channel_done: Option<ChannelDoneFn>,
    /// One channel (one StartIo lock), or one per concurrent channel.
    channels: Box<[Channel<M>]>,
}

/// The incoming list of one channel, on its own cache lines.
#[repr(align(128))]
pub(crate) struct IncomingList(Mutex<Incomings>);

/// What an incoming-list lock guards.
pub(crate) struct Incomings {
    /// Requests handed over, not yet accepted.
    list: Vec<Incoming>,
    /// Empty boxes for `submit` of an unboxed SRB: the deferred stage gives back here, one
    /// for each request it takes from the list, the boxes the sinks returned
    /// ([`CompletionSink::complete_boxed`]), so that a steady flow of requests allocates
    /// nothing.
    spare: Vec<Box<Srb>>,
}

/// Most spare boxes kept on one incoming list.
const SPARE_BOXES: usize = 1024;

/// One StartIo channel: its lock and its requests to start. Aligned so that two channels never
/// share a cache line (each is driven by its own thread).
#[repr(align(128))]
pub(crate) struct Channel<M: Miniport> {
    /// The *StartIo lock* of the channel (the adapter's StartIo lock when there is one
    /// channel); it guards what `start_io` left for the interrupt side.
    lock: Mutex<StartIoSide<M>>,
    /// Requests to start, in dispatch order (a leaf lock).
    starts: Mutex<VecDeque<PendingStart>>,
}

/// What the StartIo lock guards.
pub(crate) struct StartIoSide<M: Miniport> {
    /// Notifications latched by `start_io`.
    latch: Latch<M>,
    /// Started requests still in hand, handed to the interrupt side together at the end of a
    /// batch (or at the next `synchronize_access`).
    done: Vec<InHand>,
    /// The batch of starts being worked on (swapped with `FullDuplex::starts`).
    batch: VecDeque<PendingStart>,
}

/// A started request not yet handed to the interrupt side: id, request, RequestComplete seen.
pub(crate) type InHand = (SrbId, Box<Srb>, bool);

/// The Storport parts of an adapter.
pub(crate) struct StorportState<M: Miniport> {
    full_duplex: Option<FullDuplex<M>>,
    unit_control: UnitControlFn<M>,
    adapter_control_ex: AdapterControlExFn<M>,
    message_interrupt: MessageFn<M>,
    supported_units: Mutex<SupportedUnitControlTypeList>,
    supported_ex: Mutex<SupportedStorAdapterControlTypeList>,
}

#[derive(Debug, Default)]
struct Control {
    shutdown_requested: bool,
    shutdown_done: bool,
    stop_requested: bool,
    /// The FLUSH before a stop is done: StopAdapter may be called.
    stop_ready: bool,
    restart_requested: bool,
    stopped: bool,
    restarts_done: u64,
}

struct TimerState {
    deadline: Option<(Instant, u64)>,
    shutdown: bool,
}

pub(crate) struct TimerShared {
    state: Mutex<TimerState>,
    cv: Condvar,
}

impl TimerShared {
    fn arm(&self, after: Duration, generation: u64) {
        self.state.lock().deadline = Some((Instant::now() + after, generation));
        self.cv.notify_one();
    }
    fn cancel(&self) {
        self.state.lock().deadline = None;
        self.cv.notify_one();
    }
    fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_one();
    }
}

/// Blocking waits for `execute_and_wait` (sink 0 of every adapter).
#[derive(Default)]
pub(crate) struct SyncWaiter {
    done: Mutex<Vec<Srb>>,
    cv: Condvar,
    next_ticket: AtomicU64,
}

impl CompletionSink for SyncWaiter {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(srb);
        self.cv.notify_all();
    }
}

/// The adapter object: everything about one adapter, shared by its handles, its interrupt line
/// and its timer thread.
pub(crate) struct AdapterShared<M: Miniport> {
    me: Weak<AdapterShared<M>>,
    pub(crate) config: Arc<PortConfiguration>,
    pub(crate) options: PortOptions,
    pub(crate) shared: Arc<Shared>,
    /// Submitted requests not yet accepted: one list per concurrent channel (one without), so
    /// submitters on different channels do not share a lock's cache line.
    incoming: Box<[IncomingList]>,
    new_sinks: Mutex<Vec<Arc<dyn CompletionSink>>>,
    sink_count: AtomicU32,
    pending: AtomicBool,
    interrupt_pending: AtomicBool,
    /// Message-signaled interrupts raised and not yet serviced (bit = message id).
    messages_pending: AtomicU64,
    /// Concurrent channels (1 without).
    channel_count: u32,
    ticks_pending: AtomicU32,
    timer_fired: AtomicU64,
    control: Mutex<Control>,
    /// Set with a control request (under `control`): the deferred stage looks at `control`.
    control_pending: AtomicBool,
    control_cv: Condvar,
    runner: Mutex<Runner<M>>,
    pub(crate) interrupt: Mutex<InterruptState<M>>,
    events: RwLock<Vec<Arc<dyn PortEventSink>>>,
    /// WMI consumers, ordered requests and event routing (`crate::wmi::PortWmi`).
    pub(crate) wmi: crate::wmi::PortWmi,
    pub(crate) lus: RwLock<Vec<LogicalUnitInfo>>,
    lu_counters: RwLock<HashMap<Address, Arc<Counters>>>,
    timer: Arc<TimerShared>,
    sync: Arc<SyncWaiter>,
    pub(crate) line: InterruptLine,
    rescan_requested: AtomicBool,
    /// Notifications latched outside a port-made call (`synchronize`) wait to be collected.
    latch_dirty: AtomicBool,
    /// Storport: the miniport's `build_io` bound to its shared part.
    build_io: Option<BuildIo>,
    /// Storport: full duplex, unit control, extended adapter control.
    stor: Option<StorportState<M>>,
    /// The adapter-control types the miniport supports (queried once at start).
    supported: Mutex<SupportedControlTypeList>,
}

/// A miniport's `build_io` bound to its shared part (Storport model).
pub(crate) type BuildIo = Box<dyn Fn(&mut Srb) -> bool + Send + Sync>;

impl<M: Miniport> InterruptTarget for AdapterShared<M> {
    fn raise_interrupt(&self) -> bool {
        if self.full_duplex().is_some() {
            // Full duplex: the interrupt routine runs here, on the raising thread, under the
            // interrupt lock only — possibly while another thread is in start_io.
            self.isr();
        } else {
            self.interrupt_pending.store(true, Ordering::Release);
        }
        self.request_dpc()
    }

    fn raise_message(&self, message_id: u32) -> bool {
        if self.stor.is_none() {
            // SCSI Port has no message-signaled interrupts: the plain interrupt.
            return self.raise_interrupt();
        }
        if self.full_duplex().is_some() {
            self.isr_message(message_id);
        } else {
            self.messages_pending
                .fetch_or(1 << (message_id % 64), Ordering::AcqRel);
        }
        self.request_dpc()
    }
}

/// `srb` in a spare box if there is one (one copy of the SRB), else in a new one.
fn boxed(spare: &mut Vec<Box<Srb>>, srb: Srb) -> Box<Srb> {
    match spare.pop() {
        Some(mut b) => {
            *b = srb;
            b
        }
        None => Box::new(srb),
    }
}

/// Errors of the blocking helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Called from a completion or event sink: the deferred stage would wait for itself.
    #[error("blocking port call from inside the deferred stage would deadlock")]
    WouldDeadlock,
    /// The operation did not finish in the time allowed.
    #[error("timed out")]
    TimedOut,
    /// The adapter does not support the adapter_control types needed.
    #[error("adapter control type not supported by the miniport")]
    Unsupported,
}

impl<M: Miniport> AdapterShared<M> {
    pub(crate) fn new(
        miniport: M,
        config: PortConfiguration,
        options: PortOptions,
        line: InterruptLine,
        hooks: Option<StorportHooks<M>>,
    ) -> Arc<Self> {
        let slots = config.number_of_requests.clamp(1, 65_536) as usize;
        let storport = hooks.is_some();
        let hold_ticks = if storport && config.bus_reset_hold_time != SP_UNINITIALIZED_VALUE {
            let tick_us = options
                .tick
                .unwrap_or(Duration::from_secs(1))
                .as_micros()
                .max(1);
            (config.bus_reset_hold_time as u128).div_ceil(tick_us) as u32
        } else {
            options.reset_hold_off_ticks
        };
        let full_duplex = hooks.as_ref().is_some_and(|h| h.start_io.is_some());
        let channel_count = if full_duplex {
            config
                .concurrent_channels
                .clamp(1, crate::interrupt::MAX_MESSAGES)
        } else {
            1
        };
        let (build_io, stor) = match hooks {
            Some(h) => (
                Some(h.build_io),
                Some(StorportState {
                    full_duplex: h.start_io.map(|start_io| FullDuplex {
                        start_io,
                        channel_done: h.channel_done,
                        channels: (0..channel_count)
                            .map(|_| Channel {
                                lock: Mutex::new(StartIoSide {
                                    latch: Latch::new(slots),
                                    done: Vec::with_capacity(slots),
                                    batch: VecDeque::with_capacity(slots),
                                }),
                                starts: Mutex::new(VecDeque::with_capacity(slots)),
                            })
                            .collect(),
                    }),
                    unit_control: h.unit_control,
                    adapter_control_ex: h.adapter_control_ex,
                    message_interrupt: h.message_interrupt,
                    supported_units: Mutex::new(SupportedUnitControlTypeList::default()),
                    supported_ex: Mutex::new(SupportedStorAdapterControlTypeList::default()),
                }),
            ),
            None => (None, None),
        };
        let config = Arc::new(config);
        let shared = Arc::new(Shared::default());
        let sync = Arc::new(SyncWaiter::default());
        let core = Core::new(slots, config.clone(), line.clone(), shared.clone());
        let runner = Runner {
            lus: Vec::new(),
            lu_index: HashMap::new(),
            ring: VecDeque::with_capacity(64),
            slots: vec![SlotMeta::free(Instant::now()); slots],
            free_slots: (0..slots as u32).rev().collect(),
            adapter: AdapterFlags {
                ready: true,
                disconnect_allowed: true,
                hold_off: 0,
                adapter_timer: None,
                masked: false,
                held_interrupt: false,
                held_messages: 0,
                held_timer: false,
                stopping: false,
                stopped: false,
                shut_down: false,
                busy_count: 0,
                paused: 0,
            },
            sinks: vec![sync.clone() as Arc<dyn CompletionSink>],
            incoming_spare: Vec::with_capacity(64),
            spare_boxes: Vec::new(),
            start_batch: Vec::with_capacity(slots),
            snap: Latch::new(slots),
            completed_buf: Vec::with_capacity(slots),
            out: Vec::with_capacity(slots),
            touched: Vec::with_capacity(8),
            events_out: Vec::new(),
            escalations: Vec::new(),
            timer_routine: None,
            timer_generation: 0,
            pending_enable: None,
            pending_disable: None,
            pending_dma_started: false,
            bus_resets_this_tick: Vec::new(),
            supported: SupportedControlTypeList::default(),
            config: config.clone(),
            storport,
            hold_ticks,
            tick_us: options
                .tick
                .unwrap_or(Duration::from_secs(1))
                .as_micros()
                .clamp(1, u64::MAX as u128) as u64,
            starts_open: false,
            tally: Tally::default(),
            tally_lus: Vec::with_capacity(8),
            now: Instant::now(),
        };
        let timer = Arc::new(TimerShared {
            state: Mutex::new(TimerState {
                deadline: None,
                shutdown: false,
            }),
            cv: Condvar::new(),
        });
        Arc::new_cyclic(|me| AdapterShared {
            me: me.clone(),
            config,
            options,
            shared,
            incoming: (0..channel_count)
                .map(|_| {
                    IncomingList(Mutex::new(Incomings {
                        list: Vec::with_capacity(64),
                        spare: Vec::new(),
                    }))
                })
                .collect(),
            new_sinks: Mutex::new(Vec::new()),
            sink_count: AtomicU32::new(1),
            pending: AtomicBool::new(false),
            interrupt_pending: AtomicBool::new(false),
            messages_pending: AtomicU64::new(0),
            channel_count,
            ticks_pending: AtomicU32::new(0),
            timer_fired: AtomicU64::new(0),
            control: Mutex::new(Control::default()),
            control_pending: AtomicBool::new(false),
            control_cv: Condvar::new(),
            runner: Mutex::new(runner),
            interrupt: Mutex::new(InterruptState {
                miniport,
                core,
                // Until `initialize` has run.
                isr_blocked: true,
            }),
            events: RwLock::new(Vec::new()),
            wmi: crate::wmi::PortWmi::default(),
            lus: RwLock::new(Vec::new()),
            lu_counters: RwLock::new(HashMap::new()),
            timer,
            sync,
            line,
            rescan_requested: AtomicBool::new(false),
            latch_dirty: AtomicBool::new(false),
            build_io,
            stor,
            supported: Mutex::new(SupportedControlTypeList::default()),
        })
    }

    /// This adapter's identity for `IN_PORT_LOCK`.
    fn lock_id(&self) -> usize {
        self as *const Self as usize
    }

    fn full_duplex(&self) -> Option<&FullDuplex<M>> {
        self.stor.as_ref().and_then(|s| s.full_duplex.as_ref())
    }

    /// Full duplex: the interrupt routine on the raising thread (`HwStorInterrupt` under the
    /// interrupt lock only). If the lock is busy (another routine, or this thread already holds
    /// it) or interrupts are held, the raise is left to the deferred stage.
    fn isr(&self) {
        let Some(mut g) = self.interrupt.try_lock() else {
            self.interrupt_pending.store(true, Ordering::Release);
            return;
        };
        let st = &mut *g;
        if st.isr_blocked {
            drop(g);
            self.interrupt_pending.store(true, Ordering::Release);
            return;
        }
        let was = IN_PORT_LOCK.with(|f| f.replace(self.lock_id()));
        let claimed = st
            .miniport
            .interrupt(&mut PortContext { core: &mut st.core });
        IN_PORT_LOCK.with(|f| f.set(was));
        drop(g);
        if !claimed {
            self.shared.count_spurious_interrupt();
        }
        self.latch_dirty.store(true, Ordering::Release);
    }

    /// Full duplex: `HwMSInterruptRoutine(message_id)` on the raising thread, under the
    /// interrupt lock (`InterruptSynchronizeAll`); like [`isr`](Self::isr), left to the deferred
    /// stage when the lock is busy or interrupts are held.
    fn isr_message(&self, message_id: u32) {
        let Some(stor) = &self.stor else {
            return;
        };
        let pend = || {
            self.messages_pending
                .fetch_or(1 << (message_id % 64), Ordering::AcqRel);
        };
        let Some(mut g) = self.interrupt.try_lock() else {
            pend();
            return;
        };
        let st = &mut *g;
        if st.isr_blocked {
            drop(g);
            pend();
            return;
        }
        let was = IN_PORT_LOCK.with(|f| f.replace(self.lock_id()));
        let claimed = (stor.message_interrupt)(
            &mut st.miniport,
            &mut PortContext { core: &mut st.core },
            message_id,
        );
        IN_PORT_LOCK.with(|f| f.set(was));
        drop(g);
        if !claimed {
            self.shared.count_spurious_interrupt();
        }
        self.latch_dirty.store(true, Ordering::Release);
    }

    /// The concurrent channel of the calling (submitting) thread.
    fn current_channel(&self) -> u16 {
        if self.channel_count > 1 {
            (crate::interrupt::current_processor() % self.channel_count) as u16
        } else {
            0
        }
    }

    /// Full duplex: calls `start_io` for every request waiting in channel `ch`'s `starts`, in
    /// order, with that channel's StartIo lock (`side`) held, then hands the requests left in
    /// hand to the interrupt side in one batch and rings the doorbell
    /// (`start_io_channel_done`). Returns whether anything was started.
    /// Full duplex: `start_io` for one request on channel `ch`, under that channel's StartIo
    /// lock (the caller holds it and has set `IN_PORT_LOCK`); the request stays in hand in
    /// `done` until the caller publishes the batch.
    fn start_one(
        &self,
        fd: &FullDuplex<M>,
        latch: &mut Latch<M>,
        done: &mut Vec<InHand>,
        ch: u32,
        p: PendingStart,
    ) {
        let mut ctx = StartIoContext {
            adapter: self,
            latch,
            done,
            channel: ch,
            id: p.id,
            srb: Some(p.srb),
            completed: false,
        };
        (fd.start_io)(&mut ctx, SrbRef { id: p.id });
        if let Some(srb) = ctx.srb.take() {
            let (id, completed) = (ctx.id, ctx.completed);
            ctx.done.push((id, srb, completed));
        }
    }

    fn drain_starts_locked(
        &self,
        fd: &FullDuplex<M>,
        ch: usize,
        side: &mut StartIoSide<M>,
    ) -> bool {
        let mut any = false;
        let was = IN_PORT_LOCK.with(|f| f.replace(self.lock_id()));
        loop {
            {
                let mut q = fd.channels[ch].starts.lock();
                if q.is_empty() {
                    break;
                }
                std::mem::swap(&mut *q, &mut side.batch);
            }
            any = true;
            while let Some(p) = side.batch.pop_front() {
                self.start_one(fd, &mut side.latch, &mut side.done, ch as u32, p);
            }
            {
                let mut g = self.interrupt.lock();
                crate::context::publish(&mut side.done, &mut side.latch, &mut g.core);
            }
            if let Some(done) = &fd.channel_done {
                done(ch as u32);
            }
        }
        IN_PORT_LOCK.with(|f| f.set(was));
        if any {
            self.latch_dirty.store(true, Ordering::Release);
            self.pending.store(true, Ordering::Release);
        }
        any
    }

    /// Full duplex: starts the waiting requests (outside the DPC token). Blocks on the StartIo
    /// lock if another thread holds it (that thread may have missed requests queued after its
    /// last look).
    ///
    /// Concurrent channels: the calling thread's own channel first (waiting for its lock),
    /// then the others (a channel's requests must not wait for its thread to come back), but
    /// a channel whose lock another thread holds is left to that thread: whoever gives a
    /// channel lock back looks at the channel's waiting requests again (here, or in the
    /// `drain_starts` that follows the deferred stage of `Runner::call`'s caller), so nothing
    /// is left behind and no thread waits while another submits on its channel.
    fn drain_starts(&self) -> bool {
        let Some(fd) = self.full_duplex() else {
            return false;
        };
        let n = fd.channels.len();
        if n == 1 {
            if fd.channels[0].starts.lock().is_empty() {
                return false;
            }
            let mut side = fd.channels[0].lock.lock();
            return self.drain_starts_locked(fd, 0, &mut side);
        }
        let own = self.current_channel() as usize;
        let mut any = false;
        for i in 0..n {
            let ch = (own + i) % n;
            let c = &fd.channels[ch];
            while !c.starts.lock().is_empty() {
                let side = if i == 0 {
                    Some(c.lock.lock())
                } else {
                    c.lock.try_lock()
                };
                let Some(mut side) = side else {
                    break;
                };
                any |= self.drain_starts_locked(fd, ch, &mut side);
            }
        }
        any
    }

    /// Full duplex: takes every channel's StartIo lock (in channel order), starting what waits
    /// on each, so a routine that needs the whole adapter sees every dispatched request.
    fn lock_all_channels<'a>(
        &self,
        fd: &'a FullDuplex<M>,
    ) -> Vec<parking_lot::MutexGuard<'a, StartIoSide<M>>> {
        let mut guards = Vec::with_capacity(fd.channels.len());
        for (ch, c) in fd.channels.iter().enumerate() {
            let mut side = c.lock.lock();
            self.drain_starts_locked(fd, ch, &mut side);
            guards.push(side);
        }
        guards
    }

    /// Full duplex: holds interrupts (`blocked`) or lets them run on the raising thread again.
    fn set_isr_blocked(&self, blocked: bool) {
        if self.full_duplex().is_some() {
            self.interrupt.lock().isr_blocked = blocked;
        }
    }

    /// Connects the interrupt, calls `adapter_state(save)`, `initialize` and queries the
    /// supported adapter-control types, then starts the timer thread. Runs on the caller of
    /// `initialize`, before any request exists.
    pub(crate) fn start(self: &Arc<Self>) -> bool {
        let weak: Weak<dyn InterruptTarget> = self.me.clone();
        self.line.connect(weak);
        let ok = {
            let mut r = self.runner.lock();
            let ok = r.call(self, |m, ctx| {
                m.adapter_state(true);
                m.initialize(ctx)
            });
            if ok {
                self.set_isr_blocked(false);
                let mut list = SupportedControlTypeList::default();
                r.call(self, |m, ctx| {
                    m.adapter_control(ctx, AdapterControl::QuerySupportedControlTypes(&mut list))
                });
                r.supported = list;
                *self.supported.lock() = list;
                if let Some(stor) = &self.stor {
                    // Storport: the extended adapter-control and the unit-control types, then
                    // ScsiAdapterPostHwInitialize.
                    let (ex_fn, unit_fn) = (stor.adapter_control_ex, stor.unit_control);
                    let mut ex = SupportedStorAdapterControlTypeList::default();
                    let mut units = SupportedUnitControlTypeList::default();
                    r.call(self, |m, ctx| {
                        ex_fn(
                            m,
                            ctx,
                            StorAdapterControl::QuerySupportedControlTypes(&mut ex),
                        );
                        unit_fn(
                            m,
                            ctx,
                            UnitControl::QuerySupportedUnitControlTypes(&mut units),
                        );
                        if ex.is_supported(StorAdapterControlType::PostHwInitialize) {
                            ex_fn(m, ctx, StorAdapterControl::PostHwInitialize);
                        }
                    });
                    *stor.supported_ex.lock() = ex;
                    *stor.supported_units.lock() = units;
                }
            }
            ok
        };
        if !ok {
            return false;
        }
        let weak = self.me.clone();
        let timer = self.timer.clone();
        let tick = self.options.tick;
        let spawned = std::thread::Builder::new()
            .name("scsiport-timer".into())
            .spawn(move || timer_thread::<M>(weak, timer, tick));
        if spawned.is_err() {
            return false;
        }
        self.request_dpc();
        true
    }

    pub(crate) fn register_sink(&self, sink: Arc<dyn CompletionSink>) -> u32 {
        let mut new = self.new_sinks.lock();
        let id = self.sink_count.fetch_add(1, Ordering::AcqRel);
        new.push(sink);
        id
    }

    pub(crate) fn submit(&self, sink: u32, srb: Srb) {
        self.submit_one(sink, srb, |s| s, boxed);
    }

    /// [`submit`](Self::submit) of a boxed request: the port moves the box, not the SRB, from
    /// here to the sink.
    pub(crate) fn submit_boxed(&self, sink: u32, srb: Box<Srb>) {
        self.submit_one(sink, srb, |b| &mut **b, |_, b| b);
    }

    /// The body of both single submissions; like [`submit_run`](Self::submit_run) for one.
    fn submit_one<T>(
        &self,
        sink: u32,
        mut srb: T,
        srb_of: impl FnOnce(&mut T) -> &mut Srb,
        into_box: impl FnOnce(&mut Vec<Box<Srb>>, T) -> Box<Srb>,
    ) {
        let built = self.build(srb_of(&mut srb));
        let channel = self.current_channel();
        let mut inc = self.incoming[channel as usize].0.lock();
        let srb = into_box(&mut inc.spare, srb);
        inc.list.push(Incoming {
            sink,
            srb,
            built,
            channel,
        });
        drop(inc);
        self.request_dpc();
    }

    /// Storport's `HwStorBuildIo` for an EXECUTE_SCSI request: on the submitting thread,
    /// without any adapter lock, possibly on several threads at once. False when it completed
    /// the request itself.
    fn build(&self, srb: &mut Srb) -> bool {
        match &self.build_io {
            Some(build_io) if srb.function == SrbFunction::ExecuteScsi => {
                srb.srb_status = SrbStatus::PENDING;
                build_io(srb)
            }
            _ => true,
        }
    }

    /// [`submit`](Self::submit) for several requests: `build_io` for each (Storport), one turn
    /// of the incoming-list lock and one `request_dpc` for all. Drains `srbs`.
    pub(crate) fn submit_batch(&self, sink: u32, srbs: &mut Vec<Srb>) {
        self.submit_run(sink, srbs, |s| s, boxed);
    }

    /// [`submit_batch`](Self::submit_batch) of boxed requests.
    pub(crate) fn submit_batch_boxed(&self, sink: u32, srbs: &mut Vec<Box<Srb>>) {
        self.submit_run(sink, srbs, |b| &mut **b, |_, b| b);
    }

    /// The body of both batch submissions, over SRBs (`T` = `Srb`, put in a spare box under
    /// the lock) or boxes (`T` = `Box<Srb>`, passed on as they are). Drains `srbs`.
    fn submit_run<T>(
        &self,
        sink: u32,
        srbs: &mut Vec<T>,
        srb_of: impl Fn(&mut T) -> &mut Srb,
        into_box: impl Fn(&mut Vec<Box<Srb>>, T) -> Box<Srb>,
    ) {
        if srbs.is_empty() {
            return;
        }
        while !srbs.is_empty() {
            let n = srbs.len().min(64);
            let mut built = [true; 64];
            for (srb, b) in srbs[..n].iter_mut().zip(built.iter_mut()) {
                *b = self.build(srb_of(srb));
            }
            let channel = self.current_channel();
            let mut inc = self.incoming[channel as usize].0.lock();
            let inc = &mut *inc;
            for (srb, built) in srbs.drain(..n).zip(built) {
                let srb = into_box(&mut inc.spare, srb);
                inc.list.push(Incoming {
                    sink,
                    srb,
                    built,
                    channel,
                });
            }
        }
        self.request_dpc();
    }

    pub(crate) fn is_storport(&self) -> bool {
        self.build_io.is_some()
    }

    pub(crate) fn is_full_duplex(&self) -> bool {
        self.full_duplex().is_some()
    }

    /// [`Adapter::state_dump`](crate::Adapter::state_dump): briefly each incoming list and
    /// channel start list, then the interrupt lock and the DPC token (each waited for up to
    /// 1 s), one at a time, never two adapter locks together.
    pub(crate) fn state_dump(&self) -> String {
        use std::fmt::Write as _;
        if in_deferred_stage() {
            return "state dump: not available from inside the deferred stage".into();
        }
        let mut o = String::new();
        let _ = writeln!(
            o,
            "flags: pending {} interrupt_pending {} messages_pending {:#x} latch_dirty {} \
             ticks_pending {} control_pending {}",
            self.pending.load(Ordering::Acquire),
            self.interrupt_pending.load(Ordering::Acquire),
            self.messages_pending.load(Ordering::Acquire),
            self.latch_dirty.load(Ordering::Acquire),
            self.ticks_pending.load(Ordering::Acquire),
            self.control_pending.load(Ordering::Acquire),
        );
        for (ch, list) in self.incoming.iter().enumerate() {
            let n = list.0.lock().list.len();
            if n > 0 {
                let _ = writeln!(o, "incoming[{ch}]: {n}");
            }
        }
        if let Some(fd) = self.full_duplex() {
            for (ch, c) in fd.channels.iter().enumerate() {
                let starts: Vec<u32> = c.starts.lock().iter().map(|p| p.id.slot).collect();
                let locked = c.lock.is_locked();
                let _ = writeln!(
                    o,
                    "channel {ch}: StartIo lock held {locked}, starts waiting (slots) {starts:?}"
                );
            }
        }
        if let Some(g) = self.interrupt.try_lock_for(Duration::from_secs(1)) {
            let held: Vec<(usize, u32, bool)> = g
                .core
                .active
                .iter()
                .enumerate()
                .filter(|(_, e)| e.srb.is_some())
                .map(|(slot, e)| (slot, e.generation, e.completed))
                .collect();
            let _ = writeln!(
                o,
                "interrupt side: isr_blocked {}, requests (slot, generation, completed) {held:?}, \
                 latched completions {:?}",
                g.isr_blocked, g.core.latch.completed
            );
        } else {
            o.push_str("interrupt side: the interrupt lock is held (a routine is stuck)\n");
        }
        let Some(r) = self.runner.try_lock_for(Duration::from_secs(1)) else {
            o.push_str("runner: the DPC token is held (a thread is stuck in the deferred stage)\n");
            return o;
        };
        let _ = writeln!(o, "adapter: {:?}", r.adapter);
        let _ = writeln!(
            o,
            "ring {:?}, free slots {}, escalations {:?}, completed_buf {}, out {}",
            r.ring,
            r.free_slots.len(),
            r.escalations,
            r.completed_buf.len(),
            r.out.len()
        );
        for (i, l) in r.lus.iter().enumerate() {
            let _ = writeln!(
                o,
                "lu {i} {:?}: queue {} bypass {} frozen {} locked {} busy {} awaiting_sense {} \
                 outstanding {} untagged_active {} in_ring {} lu_reset_pending {} depth {} \
                 device_busy {} paused {}",
                l.address,
                l.queue.len(),
                l.bypass.len(),
                l.frozen,
                l.locked,
                l.busy.is_some(),
                l.awaiting_sense.is_some(),
                l.outstanding,
                l.untagged_active,
                l.in_ring,
                l.lu_reset_pending,
                l.depth,
                l.device_busy,
                l.paused
            );
            for q in l.queue.iter().chain(l.bypass.iter()).chain(l.busy.iter()) {
                let _ = writeln!(
                    o,
                    "    queued: request {} {:?} attempts {} origin {:?}",
                    q.srb.original_request, q.srb.function, q.attempts, q.origin
                );
            }
        }
        for (slot, m) in r.slots.iter().enumerate().filter(|(_, m)| m.active) {
            let _ = writeln!(
                o,
                "slot {slot}: request {} lu {} generation {} origin {:?} stage {:?} \
                 timeout_left {} stage_left {} channel {}",
                m.original_request,
                m.lu,
                m.generation,
                m.origin,
                m.stage,
                m.timeout_left,
                m.stage_left,
                m.channel
            );
        }
        o
    }

    /// Runs a Storport control routine with the DPC token and both locks (from the API, not
    /// from a sink), then the deferred stage.
    fn storport_control<R>(
        &self,
        f: impl FnOnce(&StorportState<M>, &mut M, &mut PortContext<'_, M>) -> R,
    ) -> Result<R, WaitError> {
        if in_deferred_stage() {
            return Err(WaitError::WouldDeadlock);
        }
        let Some(stor) = &self.stor else {
            return Err(WaitError::Unsupported);
        };
        let r = {
            let mut runner = self.runner.lock();
            runner.call(self, |m, ctx| f(stor, m, ctx))
        };
        self.request_dpc();
        Ok(r)
    }

    /// `HwStorUnitControl(ScsiUnitPower)`: on success the port holds the LU's requests while it
    /// is in D3 and releases them in D0.
    pub(crate) fn unit_power(
        &self,
        address: Address,
        state: DevicePowerState,
    ) -> Result<UnitControlStatus, WaitError> {
        if !self.unit_control_supported(UnitControlType::Power) {
            return Err(WaitError::Unsupported);
        }
        self.storport_control(|stor, m, ctx| {
            let st = (stor.unit_control)(m, ctx, UnitControl::Power { address, state });
            if st == UnitControlStatus::Success {
                match state {
                    DevicePowerState::D3 => ctx.pause_device(address, u32::MAX),
                    DevicePowerState::D0 => ctx.resume_device(address),
                }
            }
            st
        })
    }

    /// `HwStorAdapterControl(ScsiAdapterPower)`: on success the port holds every request while
    /// the adapter is in D3 and releases them in D0.
    pub(crate) fn adapter_power(
        &self,
        state: DevicePowerState,
    ) -> Result<AdapterControlStatus, WaitError> {
        let supported = self.stor.as_ref().is_some_and(|s| {
            s.supported_ex
                .lock()
                .is_supported(StorAdapterControlType::AdapterPower)
        });
        if !supported {
            return Err(WaitError::Unsupported);
        }
        self.storport_control(|stor, m, ctx| {
            let st = (stor.adapter_control_ex)(m, ctx, StorAdapterControl::AdapterPower(state));
            if st == AdapterControlStatus::Success {
                match state {
                    DevicePowerState::D3 => ctx.pause(u32::MAX),
                    DevicePowerState::D0 => ctx.resume(),
                }
            }
            st
        })
    }

    fn unit_control_supported(&self, t: UnitControlType) -> bool {
        self.stor
            .as_ref()
            .is_some_and(|s| s.supported_units.lock().is_supported(t))
    }

    /// Storport: `ScsiAdapterPrepareForBusReScan` before a scan, if supported.
    pub(crate) fn prepare_rescan(&self) {
        let supported = self.stor.as_ref().is_some_and(|s| {
            s.supported_ex
                .lock()
                .is_supported(StorAdapterControlType::PrepareForBusReScan)
        });
        if supported {
            let _ = self.storport_control(|stor, m, ctx| {
                (stor.adapter_control_ex)(m, ctx, StorAdapterControl::PrepareForBusReScan)
            });
        }
    }

    /// Storport: `ScsiUnitStart` for each LU a scan found that was not there before and
    /// `ScsiUnitSurpriseRemoval` for each that disappeared, if supported.
    pub(crate) fn units_changed(&self, added: &[Address], removed: &[Address]) {
        if self.unit_control_supported(UnitControlType::Start) {
            for &a in added {
                let _ = self.storport_control(|stor, m, ctx| {
                    (stor.unit_control)(m, ctx, UnitControl::Start(a))
                });
            }
        }
        if self.unit_control_supported(UnitControlType::SurpriseRemoval) {
            for &a in removed {
                let _ = self.storport_control(|stor, m, ctx| {
                    (stor.unit_control)(m, ctx, UnitControl::SurpriseRemoval(a))
                });
            }
        }
    }

    /// Makes sure the deferred stage runs: on this thread if no other thread is running it,
    /// otherwise by the thread that is (it re-checks `pending` before giving the token back).
    ///
    /// Full duplex: after giving the token back the thread calls `start_io` for the requests
    /// the deferred stage dispatched (under the StartIo lock, without the token, so another
    /// thread may run the interrupt routine and the deferred stage meanwhile).
    ///
    /// Returns whether this thread ran the deferred stage (false: another thread does).
    pub(crate) fn request_dpc(&self) -> bool {
        self.pending.store(true, Ordering::Release);
        if IN_PORT_LOCK.with(Cell::get) == self.lock_id() {
            // Inside a routine run outside the token: its caller runs the deferred stage next.
            return false;
        }
        let mut ran = false;
        loop {
            let Some(mut runner) = self.runner.try_lock() else {
                return ran;
            };
            ran = true;
            let was = IN_DPC.with(|f| f.replace(true));
            while self.pending.swap(false, Ordering::AcqRel) {
                runner.round(self);
            }
            IN_DPC.with(|f| f.set(was));
            drop(runner);
            if self.drain_starts() {
                continue;
            }
            if !self.pending.load(Ordering::Acquire) {
                return ran;
            }
        }
    }

    pub(crate) fn tick(&self) {
        self.ticks_pending.fetch_add(1, Ordering::AcqRel);
        self.request_dpc();
    }

    pub(crate) fn execute_and_wait(&self, srb: Srb) -> Result<Srb, WaitError> {
        if in_deferred_stage() {
            return Err(WaitError::WouldDeadlock);
        }
        let saved = srb.original_request;
        let ticket = self.submit_sync(srb);
        let mut srb = self.wait_ticket(ticket, None)?;
        srb.original_request = saved;
        Ok(srb)
    }

    /// Submits through the blocking-wait sink; returns the ticket to wait for.
    fn submit_sync(&self, mut srb: Srb) -> u64 {
        let ticket = self.sync.next_ticket.fetch_add(1, Ordering::Relaxed);
        srb.original_request = ticket;
        self.submit(0, srb);
        ticket
    }

    /// Waits for the request with `ticket` (until `deadline`, if any).
    fn wait_ticket(&self, ticket: u64, deadline: Option<Instant>) -> Result<Srb, WaitError> {
        let mut done = self.sync.done.lock();
        loop {
            if let Some(pos) = done.iter().position(|s| s.original_request == ticket) {
                return Ok(done.swap_remove(pos));
            }
            match deadline {
                Some(d) => {
                    if self.sync.cv.wait_until(&mut done, d).timed_out()
                        && !done.iter().any(|s| s.original_request == ticket)
                    {
                        return Err(WaitError::TimedOut);
                    }
                }
                None => self.sync.cv.wait(&mut done),
            }
        }
    }

    /// Sends `function` (FLUSH before a stop, SHUTDOWN before a shutdown) to every LU the
    /// port has addressed, past frozen and locked queues, when the adapter caches data; waits
    /// for them until `deadline`.
    fn flush_caches(&self, function: SrbFunction, deadline: Instant) {
        if !self.config.caches_data {
            return;
        }
        let lus: Vec<Address> = self.lu_counters.read().keys().copied().collect();
        let tickets: Vec<u64> = lus
            .into_iter()
            .map(|a| {
                let mut srb = Srb::function(function, a);
                srb.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
                self.submit_sync(srb)
            })
            .collect();
        for t in tickets {
            if self.wait_ticket(t, Some(deadline)).is_err() {
                break;
            }
        }
    }

    pub(crate) fn subscribe(&self, sink: Arc<dyn PortEventSink>) {
        self.events.write().push(sink);
    }

    pub(crate) fn lu_counters(&self, a: Address) -> Option<Arc<Counters>> {
        self.lu_counters.read().get(&a).cloned()
    }

    fn wait_control(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Control) -> bool,
    ) -> Result<(), WaitError> {
        if in_deferred_stage() {
            return Err(WaitError::WouldDeadlock);
        }
        let deadline = Instant::now() + timeout;
        let mut c = self.control.lock();
        while !done(&c) {
            if self.control_cv.wait_until(&mut c, deadline).timed_out() && !done(&c) {
                return Err(WaitError::TimedOut);
            }
        }
        Ok(())
    }

    /// Changes the control requests under their lock and notes that the deferred stage has
    /// control work (`Runner::control` clears the note when nothing is left).
    fn request_control<R>(&self, f: impl FnOnce(&mut Control) -> R) -> R {
        let mut c = self.control.lock();
        let r = f(&mut c);
        self.control_pending.store(true, Ordering::Release);
        r
    }

    pub(crate) fn shutdown(&self) -> Result<(), WaitError> {
        if in_deferred_stage() {
            return Err(WaitError::WouldDeadlock);
        }
        if !self.control.lock().shutdown_requested {
            // SRB_FUNCTION_SHUTDOWN to a caching adapter first, bounded by the default timeout.
            let wait = Duration::from_secs(self.options.default_timeout.clamp(1, 30) as u64);
            self.flush_caches(SrbFunction::Shutdown, Instant::now() + wait);
        }
        self.request_control(|c| c.shutdown_requested = true);
        self.request_dpc();
        self.wait_control(Duration::from_secs(3600), |c| c.shutdown_done)
    }

    pub(crate) fn stop(&self, timeout: Duration) -> Result<(), WaitError> {
        if in_deferred_stage() {
            return Err(WaitError::WouldDeadlock);
        }
        if !self
            .supported
            .lock()
            .is_supported(AdapterControlType::StopAdapter)
        {
            return Err(WaitError::Unsupported);
        }
        let deadline = Instant::now() + timeout;
        // Hold the queues (task management and the port's own requests still pass), flush a
        // caching adapter, then ScsiStopAdapter once nothing is outstanding.
        self.request_control(|c| c.stop_requested = true);
        self.request_dpc();
        self.flush_caches(SrbFunction::Flush, deadline);
        self.request_control(|c| c.stop_ready = true);
        self.request_dpc();
        self.wait_control(deadline.saturating_duration_since(Instant::now()), |c| {
            c.stopped || c.shutdown_done
        })
    }

    pub(crate) fn restart(&self, timeout: Duration) -> Result<(), WaitError> {
        let target = self.request_control(|c| {
            c.restart_requested = true;
            c.restarts_done + 1
        });
        self.request_dpc();
        self.wait_control(timeout, |c| c.restarts_done >= target || c.shutdown_done)
    }

    /// Runs `f` under the interrupt lock with the miniport and the port services
    /// (`KeSynchronizeExecution`), then the deferred stage.
    pub(crate) fn synchronize<R>(&self, f: impl FnOnce(&mut M, &mut PortContext<'_, M>) -> R) -> R {
        let r = {
            let mut g = self.interrupt.lock();
            let st = &mut *g;
            let was = IN_PORT_LOCK.with(|f| f.replace(self.lock_id()));
            let r = f(&mut st.miniport, &mut PortContext { core: &mut st.core });
            IN_PORT_LOCK.with(|f| f.set(was));
            r
        };
        self.latch_dirty.store(true, Ordering::Release);
        self.request_dpc();
        r
    }

    pub(crate) fn emit_events(&self, events: &mut Vec<PortEvent>) {
        if events.is_empty() {
            return;
        }
        let sinks: Vec<_> = self.events.read().clone();
        for e in events.drain(..) {
            for s in &sinks {
                s.port_event(&e);
            }
        }
    }

    fn spawn_rescan(&self) {
        if self.rescan_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let _ = std::thread::Builder::new()
            .name("scsiport-rescan".into())
            .spawn(move || {
                me.rescan_requested.store(false, Ordering::Release);
                let adapter = crate::handle::Adapter::from_shared(me);
                adapter.rescan();
            });
    }
}

fn timer_thread<M: Miniport>(
    adapter: Weak<AdapterShared<M>>,
    timer: Arc<TimerShared>,
    tick: Option<Duration>,
) {
    let mut next_tick = tick.map(|t| Instant::now() + t);
    loop {
        let (fire, do_tick) = {
            let mut st = timer.state.lock();
            loop {
                if st.shutdown {
                    return;
                }
                let now = Instant::now();
                let timer_due = st.deadline.is_some_and(|(d, _)| d <= now);
                let tick_due = next_tick.is_some_and(|t| t <= now);
                if timer_due || tick_due {
                    break;
                }
                let wake = match (st.deadline.map(|(d, _)| d), next_tick) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match wake {
                    Some(w) => {
                        timer.cv.wait_until(&mut st, w);
                    }
                    None => timer.cv.wait(&mut st),
                }
            }
            let now = Instant::now();
            let fire = match st.deadline {
                Some((d, g)) if d <= now => {
                    st.deadline = None;
                    Some(g)
                }
                _ => None,
            };
            let do_tick = match (next_tick, tick) {
                (Some(t), Some(period)) if t <= now => {
                    next_tick = Some(t + period);
                    true
                }
                _ => false,
            };
            (fire, do_tick)
        };
        let Some(a) = adapter.upgrade() else { return };
        if let Some(g) = fire {
            a.timer_fired.store(g, Ordering::Release);
        }
        if do_tick {
            a.ticks_pending.fetch_add(1, Ordering::AcqRel);
        }
        a.request_dpc();
    }
}

/// `flag.swap(false)`, without the read-modify-write when the flag is clear.
fn take_flag(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Acquire) && flag.swap(false, Ordering::AcqRel)
}

/// `v.swap(0)`, without the read-modify-write when it is 0.
fn take_u32(v: &AtomicU32) -> u32 {
    if v.load(Ordering::Acquire) == 0 {
        0
    } else {
        v.swap(0, Ordering::AcqRel)
    }
}

/// `v.swap(0)`, without the read-modify-write when it is 0.
fn take_u64(v: &AtomicU64) -> u64 {
    if v.load(Ordering::Acquire) == 0 {
        0
    } else {
        v.swap(0, Ordering::AcqRel)
    }
}

fn is_busy(srb: &Srb) -> bool {
    let s = srb.srb_status.status();
    s == SrbStatus::BUSY
        || (s == SrbStatus::ERROR
            && (srb.scsi_status == scsi_status::BUSY || srb.scsi_status == scsi_status::QUEUE_FULL))
}

/// Whether a completed EXECUTE_SCSI request freezes its LU queue: every failure except a data
/// underrun, unless NO_QUEUE_FREEZE.
fn freezes(srb: &Srb) -> bool {
    srb.function == SrbFunction::ExecuteScsi
        && !srb.flags.contains(SrbFlags::NO_QUEUE_FREEZE)
        && !matches!(
            srb.srb_status.status(),
            SrbStatus::SUCCESS | SrbStatus::DATA_OVERRUN | SrbStatus::REQUEST_FLUSHED
        )
}

impl<M: Miniport> Runner<M> {
    /// Calls into the miniport under the interrupt lock — and, on a full-duplex adapter, the
    /// StartIo lock too, after starting whatever waits for `start_io` (so the routine sees
    /// every started request) —, then takes the latched notifications (`SpiSaveInterruptData`)
    /// and acts on them after the locks are released.
    fn call<R>(
        &mut self,
        sh: &AdapterShared<M>,
        f: impl FnOnce(&mut M, &mut PortContext<'_, M>) -> R,
    ) -> R {
        let Some(fd) = sh.full_duplex() else {
            return self.call_isr(sh, f);
        };
        let r = {
            let _channels = sh.lock_all_channels(fd);
            let mut g = sh.interrupt.lock();
            let st = &mut *g;
            let r = f(&mut st.miniport, &mut PortContext { core: &mut st.core });
            self.snapshot(&mut st.core);
            r
        };
        self.process_latch(sh);
        r
    }

    /// Calls into the miniport under the interrupt lock only (the interrupt routine; every
    /// routine of a half-duplex adapter), then acts on the latched notifications. A run of
    /// `start_io` calls still open is closed first (`start_io_batch_done`, same lock hold).
    fn call_isr<R>(
        &mut self,
        sh: &AdapterShared<M>,
        f: impl FnOnce(&mut M, &mut PortContext<'_, M>) -> R,
    ) -> R {
        self.call_isr_inner(sh, true, f)
    }

    /// `call_isr`; `close`: run `start_io_batch_done` first if `start_io` calls are open
    /// (false only for `start_io` itself).
    fn call_isr_inner<R>(
        &mut self,
        sh: &AdapterShared<M>,
        close: bool,
        f: impl FnOnce(&mut M, &mut PortContext<'_, M>) -> R,
    ) -> R {
        let r = {
            let mut g = sh.interrupt.lock();
            let st = &mut *g;
            let mut ctx = PortContext { core: &mut st.core };
            if close && std::mem::take(&mut self.starts_open) {
                st.miniport.start_io_batch_done(&mut ctx);
            }
            let r = f(&mut st.miniport, &mut ctx);
            self.snapshot(&mut st.core);
            r
        };
        self.process_latch(sh);
        r
    }

    fn snapshot(&mut self, core: &mut Core<M>) {
        for slot in core.latch.completed.drain(..) {
            let e = &mut core.active[slot as usize];
            e.completed = false;
            if let Some(srb) = e.srb.take() {
                self.completed_buf.push((slot, srb));
            }
        }
        let l = &mut core.latch;
        let s = &mut self.snap;
        s.next_request |= std::mem::take(&mut l.next_request);
        s.ready_lus.append(&mut l.ready_lus);
        s.reset_detected |= std::mem::take(&mut l.reset_detected);
        if let Some(t) = l.timer.take() {
            s.timer = Some(t);
        }
        s.bus_changes.append(&mut l.bus_changes);
        if let Some(cb) = l.enable_interrupts.take() {
            s.enable_interrupts = Some(cb);
        }
        if let Some(cb) = l.disable_interrupts.take() {
            s.disable_interrupts = Some(cb);
        }
        s.wmi_events.append(&mut l.wmi_events);
        s.map_transfer |= std::mem::take(&mut l.map_transfer);
        s.queue_ops.append(&mut l.queue_ops);
    }

    /// The body of the seed's `ScsiPortDpcForIsr`, minus the calls into the miniport, which are
    /// left to [`run_deferred`](Self::run_deferred).
    fn process_latch(&mut self, sh: &AdapterShared<M>) {
        if let Some((routine, micros)) = self.snap.timer.take() {
            self.timer_generation += 1;
            match routine {
                Some(r) if micros > 0 => {
                    self.timer_routine = Some(r);
                    sh.timer
                        .arm(Duration::from_micros(micros as u64), self.timer_generation);
                }
                _ => {
                    self.timer_routine = None;
                    sh.timer.cancel();
                }
            }
        }
        if std::mem::take(&mut self.snap.next_request) && self.adapter.disconnect_allowed {
            self.adapter.ready = true;
            self.adapter.adapter_timer = None;
        }
        while let Some(addr) = self.snap.ready_lus.pop() {
            if let Some(&lu) = self.lu_index.get(&addr) {
                self.lus[lu as usize].more_allowed = true;
                self.kick(lu);
            }
        }
        if std::mem::take(&mut self.snap.reset_detected) {
            self.adapter.hold_off = self.adapter.hold_off.max(self.hold_ticks);
            sh.shared.counters.reset();
            self.events_out.push(PortEvent::ResetDetected);
        }
        while let Some(path_id) = self.snap.bus_changes.pop() {
            self.events_out
                .push(PortEvent::BusChangeDetected { path_id });
            sh.spawn_rescan();
        }
        if let Some(cb) = self.snap.enable_interrupts.take() {
            self.adapter.masked = true;
            sh.set_isr_blocked(true);
            self.pending_enable = Some(cb);
        }
        if let Some(cb) = self.snap.disable_interrupts.take() {
            self.pending_disable = Some(cb);
        }
        for e in self.snap.wmi_events.drain(..) {
            self.events_out.push(PortEvent::Wmi(e));
        }
        if std::mem::take(&mut self.snap.map_transfer) {
            self.pending_dma_started = true;
        }
        let mut ops = std::mem::take(&mut self.snap.queue_ops);
        for op in ops.drain(..) {
            self.queue_op(op);
        }
        self.snap.queue_ops = ops;
        let mut buf = std::mem::take(&mut self.completed_buf);
        if !buf.is_empty() {
            self.now = Instant::now();
        }
        for (slot, srb) in buf.drain(..) {
            self.on_complete(sh, slot, srb);
        }
        self.completed_buf = buf;
    }

    /// One pass of the deferred stage.
    fn round(&mut self, sh: &AdapterShared<M>) {
        // Plain loads first: the atomic read-modify-writes and locks below are taken only when
        // there is something to take (most rounds only accept, start and complete requests).
        if sh.sink_count.load(Ordering::Acquire) as usize != self.sinks.len() {
            let mut new = sh.new_sinks.lock();
            self.sinks.append(&mut new);
        }
        if sh.control_pending.load(Ordering::Acquire) {
            self.control(sh);
        }
        self.now = Instant::now();
        for list in sh.incoming.iter() {
            {
                let mut inc = list.0.lock();
                if inc.list.is_empty() {
                    continue;
                }
                std::mem::swap(&mut inc.list, &mut self.incoming_spare);
                // A box back for each request taken (while there are any): what this list's
                // unboxed submitters will need next.
                let give = self
                    .incoming_spare
                    .len()
                    .min(self.spare_boxes.len())
                    .min(SPARE_BOXES.saturating_sub(inc.spare.len()));
                let at = self.spare_boxes.len() - give;
                inc.spare.extend(self.spare_boxes.drain(at..));
            }
            let mut incoming = std::mem::take(&mut self.incoming_spare);
            for inc in incoming.drain(..) {
                self.accept(sh, inc);
            }
            self.incoming_spare = incoming;
        }

        let ticks = take_u32(&sh.ticks_pending);
        for _ in 0..ticks {
            self.tick(sh);
        }
        let fired = take_u64(&sh.timer_fired);
        if (fired != 0 && fired == self.timer_generation)
            || (self.adapter.held_timer && !self.adapter.masked)
        {
            if self.adapter.masked {
                self.adapter.held_timer = true;
            } else {
                self.adapter.held_timer = false;
                if let Some(routine) = self.timer_routine.take() {
                    self.call(sh, routine);
                }
            }
        }
        if take_flag(&sh.interrupt_pending) {
            self.interrupt(sh);
        }
        let messages = take_u64(&sh.messages_pending);
        if messages != 0 {
            self.messages(sh, messages);
        }
        if take_flag(&sh.latch_dirty) {
            self.call_isr(sh, |_, _| ());
        }
        self.run_deferred(sh);
        self.dispatch(sh);
        if self.adapter.stopping && !self.adapter.stopped {
            self.control(sh);
        }
        self.deliver(sh);
    }

    fn interrupt(&mut self, sh: &AdapterShared<M>) {
        if self.adapter.masked || self.adapter.stopped {
            self.adapter.held_interrupt = true;
            return;
        }
        let claimed = self.call_isr(sh, |m, ctx| m.interrupt(ctx));
        if !claimed {
            sh.shared.count_spurious_interrupt();
        }
    }

    /// Message-signaled interrupts `bits` (bit = message id), each through
    /// `message_interrupt` under the interrupt lock; held like [`interrupt`](Self::interrupt).
    fn messages(&mut self, sh: &AdapterShared<M>, bits: u64) {
        let Some(stor) = &sh.stor else {
            return;
        };
        if self.adapter.masked || self.adapter.stopped {
            self.adapter.held_messages |= bits;
            return;
        }
        let routine = stor.message_interrupt;
        for id in 0..64u32 {
            if bits & (1 << id) != 0 {
                let claimed = self.call_isr(sh, |m, ctx| routine(m, ctx, id));
                if !claimed {
                    sh.shared.count_spurious_interrupt();
                }
            }
        }
    }

    /// Miniport calls requested by notifications: the enable/disable-interrupts callbacks,
    /// `dma_started`, and recovery escalations decided while completing requests.
    /// [`run_deferred`](Self::run_deferred) has something to run.
    fn deferred_pending(&self) -> bool {
        self.pending_enable.is_some()
            || self.pending_disable.is_some()
            || self.pending_dma_started
            || !self.escalations.is_empty()
    }

    fn run_deferred(&mut self, sh: &AdapterShared<M>) {
        loop {
            if let Some(cb) = self.pending_enable.take() {
                // Runs with the adapter's interrupt masked: `interrupt`, `start_io` and the
                // timer routine are held until CallDisableInterrupts.
                self.call(sh, cb);
                continue;
            }
            if let Some(cb) = self.pending_disable.take() {
                self.call(sh, cb);
                self.adapter.masked = false;
                sh.set_isr_blocked(self.adapter.stopped);
                if std::mem::take(&mut self.adapter.held_interrupt) {
                    self.interrupt(sh);
                }
                let held = std::mem::take(&mut self.adapter.held_messages);
                if held != 0 {
                    self.messages(sh, held);
                }
                continue;
            }
            if std::mem::take(&mut self.pending_dma_started) {
                self.call(sh, |m, ctx| m.dma_started(ctx));
                continue;
            }
            if let Some(target) = self.escalations.pop() {
                self.escalate(sh, target);
                continue;
            }
            break;
        }
    }

    fn deliver(&mut self, sh: &AdapterShared<M>) {
        self.fold_tallies(sh);
        for (sink, srb) in self.out.drain(..) {
            if sink as usize >= self.sinks.len() {
                // Registered after this round collected new sinks (registration happens
                // before the submitter's first submit, so it is there now).
                self.sinks.append(&mut sh.new_sinks.lock());
            }
            match self.sinks.get(sink as usize) {
                Some(s) => {
                    if let Some(empty) = s.complete_boxed(srb)
                        && self.spare_boxes.len() < SPARE_BOXES
                    {
                        self.spare_boxes.push(empty);
                    }
                    if !self.touched.contains(&sink) {
                        self.touched.push(sink);
                    }
                }
                // Sink ids come only from `register_sink`; this cannot happen.
                None => tracing::error!(sink, "completion for an unknown sink dropped"),
            }
        }
        for sink in self.touched.drain(..) {
            self.sinks[sink as usize].batch_done();
        }
        sh.emit_events(&mut self.events_out);
    }

    fn lu(&mut self, sh: &AdapterShared<M>, address: Address) -> u32 {
        if let Some(&i) = self.lu_index.get(&address) {
            return i;
        }
        let counters = Arc::new(Counters::default());
        sh.lu_counters.write().insert(address, counters.clone());
        let i = self.lus.len() as u32;
        self.lus.push(LuState {
            address,
            queue: VecDeque::with_capacity(16),
            bypass: VecDeque::with_capacity(4),
            frozen: false,
            locked: false,
            busy: None,
            awaiting_sense: None,
            outstanding: 0,
            untagged_active: false,
            more_allowed: false,
            in_ring: false,
            lu_reset_pending: false,
            counters,
            tally: Tally::default(),
            depth: self.config.max_queue_depth_per_lu.max(1),
            device_busy: 0,
            paused: 0,
        });
        self.lu_index.insert(address, i);
        i
    }

    /// The tally of LU `lu`, noted for the next fold.
    fn lu_tally(&mut self, lu: u32) -> &mut Tally {
        let l = &mut self.lus[lu as usize];
        if !l.tally.dirty {
            self.tally_lus.push(lu);
        }
        &mut l.tally
    }

    /// Adds the counts gathered since the last fold to the shared counters (before any sink
    /// sees the completions they count).
    fn fold_tallies(&mut self, sh: &AdapterShared<M>) {
        self.tally.fold(&sh.shared.counters);
        for lu in self.tally_lus.drain(..) {
            let l = &mut self.lus[lu as usize];
            l.tally.fold(&l.counters);
        }
    }

    /// Puts the LU on the dispatch ring if it has queued work.
    fn kick(&mut self, lu: u32) {
        let l = &mut self.lus[lu as usize];
        if !l.in_ring && (!l.queue.is_empty() || !l.bypass.is_empty()) {
            l.in_ring = true;
            self.ring.push_back(lu);
        }
    }

    fn kick_all(&mut self) {
        for lu in 0..self.lus.len() as u32 {
            self.kick(lu);
        }
    }

    /// Completes a request to its submitter (statistics, then the delivery buffer).
    /// `submitted` is the request's accept time; every request of a submitter passes here
    /// exactly once, which takes it off the outstanding gauges `accept` put it on.
    fn finish(
        &mut self,
        _sh: &AdapterShared<M>,
        lu: Option<u32>,
        origin: Origin,
        srb: Box<Srb>,
        submitted: Instant,
    ) {
        let Origin::Sink(sink) = origin else { return };
        // Counted in the tallies, folded into the shared counters before `deliver` hands the
        // completions out (`crate::tally`).
        self.tally.completed();
        if let Some(lu) = lu {
            self.lu_tally(lu).completed();
        }
        if srb.function == SrbFunction::ExecuteScsi {
            let outcome = crate::stats::Outcome::of(srb.srb_status, srb.scsi_status);
            let bytes = srb.data_transfer_length as u64;
            let op = srb.cdb.opcode();
            let elapsed = self.now.saturating_duration_since(submitted);
            self.tally.record_completion(op, outcome, bytes);
            self.tally.record_latency(elapsed);
            if let Some(lu) = lu {
                let t = self.lu_tally(lu);
                t.record_completion(op, outcome, bytes);
                t.record_latency(elapsed);
            }
        }
        let status = srb.srb_status.status();
        if status == SrbStatus::REQUEST_FLUSHED {
            self.tally.flushed();
            if let Some(lu) = lu {
                self.lu_tally(lu).flushed();
            }
        } else if status == SrbStatus::ABORTED {
            self.tally.aborted();
            if let Some(lu) = lu {
                self.lu_tally(lu).aborted();
            }
        }
        self.out.push((sink, srb));
    }

    /// Completes a request the port answers itself, without the miniport.
    fn port_complete(
        &mut self,
        sh: &AdapterShared<M>,
        lu: Option<u32>,
        origin: Origin,
        mut srb: Box<Srb>,
        status: SrbStatus,
        submitted: Instant,
    ) {
        srb.srb_status = status;
        if status != SrbStatus::SUCCESS {
            srb.data_transfer_length = 0;
        }
        self.finish(sh, lu, origin, srb, submitted);
    }

    /// A request handed over by a submitter (`ScsiPortDispatch`/`IoStartPacket` side).
    fn accept(&mut self, sh: &AdapterShared<M>, inc: Incoming) {
        let Incoming {
            sink,
            mut srb,
            built,
            channel,
        } = inc;
        let origin = Origin::Sink(sink);
        // From here on the request is outstanding until `finish` (LU gauge: below, once the
        // LU is known).
        let submitted = self.now;
        self.tally.submitted();
        if !built {
            // build_io answered the request (its status is set): deliver it as it is.
            srb.requested_length = srb.requested_length.max(srb.data_transfer_length);
            if srb.srb_status.status() == SrbStatus::PENDING {
                srb.srb_status = SrbStatus::ERROR;
            }
            return self.finish(sh, None, origin, srb, submitted);
        }
        srb.srb_status = SrbStatus::PENDING;
        srb.requested_length = srb.data_transfer_length;
        srb.queue_tag = SP_UNTAGGED;
        srb.next_srb = None;
        srb.overflow = 0;
        srb.sense_info_buffer_length = srb
            .sense_info_buffer_length
            .min(crate::srb::SENSE_BUFFER_SIZE as u8);
        if self.adapter.shut_down {
            return self.port_complete(sh, None, origin, srb, SrbStatus::NO_HBA, submitted);
        }
        let c = &sh.config;
        let a = srb.address;
        let invalid = if a.path_id >= c.number_of_buses {
            Some(SrbStatus::INVALID_PATH_ID)
        } else if a.target_id >= c.maximum_number_of_targets {
            Some(SrbStatus::INVALID_TARGET_ID)
        } else if a.lun >= c.maximum_number_of_logical_units {
            Some(SrbStatus::INVALID_LUN)
        } else if (srb.data.len() as u64) < srb.data_transfer_length as u64 {
            Some(SrbStatus::BAD_SRB_BLOCK_LENGTH)
        } else if srb.function == SrbFunction::ExecuteScsi && srb.cdb.is_empty() {
            Some(SrbStatus::INVALID_REQUEST)
        } else {
            None
        };
        if let Some(status) = invalid {
            return self.port_complete(sh, None, origin, srb, status, submitted);
        }
        let lu = self.lu(sh, a);
        self.lu_tally(lu).submitted();
        let q = Queued {
            srb,
            channel,
            origin,
            attempts: 0,
            submitted,
        };
        match q.srb.function {
            SrbFunction::ExecuteScsi | SrbFunction::IoControl => self.enqueue(lu, q),
            SrbFunction::Wmi => {
                if c.wmi_data_provider {
                    self.enqueue(lu, q)
                } else {
                    self.port_complete(
                        sh,
                        Some(lu),
                        origin,
                        q.srb,
                        SrbStatus::INVALID_REQUEST,
                        submitted,
                    )
                }
            }
            SrbFunction::Flush | SrbFunction::Shutdown => {
                if c.caches_data {
                    self.enqueue(lu, q)
                } else {
                    self.port_complete(sh, Some(lu), origin, q.srb, SrbStatus::SUCCESS, submitted)
                }
            }
            SrbFunction::ReleaseQueue => {
                self.lus[lu as usize].frozen = false;
                self.kick(lu);
                self.port_complete(sh, Some(lu), origin, q.srb, SrbStatus::SUCCESS, submitted)
            }
            SrbFunction::FlushQueue => {
                if !self.lus[lu as usize].frozen {
                    return self.port_complete(
                        sh,
                        Some(lu),
                        origin,
                        q.srb,
                        SrbStatus::INVALID_REQUEST,
                        submitted,
                    );
                }
                let mut flushed = std::mem::take(&mut self.lus[lu as usize].queue);
                for f in flushed.drain(..) {
                    self.port_complete(
                        sh,
                        Some(lu),
                        f.origin,
                        f.srb,
                        SrbStatus::REQUEST_FLUSHED,
                        f.submitted,
                    );
                }
                self.lus[lu as usize].queue = flushed;
                self.lus[lu as usize].frozen = false;
                self.kick(lu);
                self.port_complete(sh, Some(lu), origin, q.srb, SrbStatus::SUCCESS, submitted)
            }
            SrbFunction::LockQueue => {
                self.lus[lu as usize].locked = true;
                self.port_complete(sh, Some(lu), origin, q.srb, SrbStatus::SUCCESS, submitted)
            }
            SrbFunction::UnlockQueue => {
                if !q.srb.flags.contains(SrbFlags::BYPASS_LOCKED_QUEUE) {
                    return self.port_complete(
                        sh,
                        Some(lu),
                        origin,
                        q.srb,
                        SrbStatus::INVALID_REQUEST,
                        submitted,
                    );
                }
                self.lus[lu as usize].locked = false;
                self.kick(lu);
                self.port_complete(sh, Some(lu), origin, q.srb, SrbStatus::SUCCESS, submitted)
            }
            SrbFunction::AbortCommand => self.accept_abort(sh, lu, q),
            SrbFunction::ResetDevice | SrbFunction::ResetLogicalUnit => {
                self.lus[lu as usize].bypass.push_back(q);
                self.kick(lu);
            }
            SrbFunction::ResetBus => {
                let path = a.path_id;
                let ok = self.port_reset_bus(sh, path);
                let status = if ok {
                    SrbStatus::SUCCESS
                } else {
                    SrbStatus::ERROR
                };
                self.port_complete(sh, Some(lu), origin, q.srb, status, submitted)
            }
        }
    }

    fn enqueue(&mut self, lu: u32, q: Queued) {
        let l = &mut self.lus[lu as usize];
        if q.srb
            .flags
            .intersects(SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE)
        {
            l.bypass.push_back(q);
        } else if q.srb.flags.contains(SrbFlags::QUEUE_ACTION_ENABLE)
            && q.srb.queue_action == QueueAction::HeadOfQueue
        {
            // HEAD OF QUEUE: ahead of everything still queued in the port.
            l.queue.push_front(q);
        } else {
            l.queue.push_back(q);
        }
        self.kick(lu);
    }

    fn accept_abort(&mut self, sh: &AdapterShared<M>, lu: u32, mut q: Queued) {
        let sink = q.origin;
        let target = q.srb.abort_target;
        let matches = |x: &Queued| x.origin == sink && x.srb.original_request == target;
        // Still in the port: the port completes it itself.
        let l = &mut self.lus[lu as usize];
        let found = if let Some(pos) = l.queue.iter().position(matches) {
            l.queue.remove(pos)
        } else if let Some(pos) = l.bypass.iter().position(matches) {
            l.bypass.remove(pos)
        } else if l.busy.as_ref().is_some_and(matches) {
            l.busy.take()
        } else if l.awaiting_sense.as_ref().is_some_and(matches) {
            l.awaiting_sense.take()
        } else {
            None
        };
        if let Some(t) = found {
            self.port_complete(
                sh,
                Some(lu),
                t.origin,
                t.srb,
                SrbStatus::ABORTED,
                t.submitted,
            );
            self.kick(lu);
            return self.port_complete(
                sh,
                Some(lu),
                q.origin,
                q.srb,
                SrbStatus::SUCCESS,
                q.submitted,
            );
        }
        // In the miniport: hand the abort down with NextSrb set.
        let active = self.slots.iter().enumerate().find(|(_, m)| {
            m.active && m.lu == lu && m.origin == sink && m.original_request == target
        });
        match active {
            Some((slot, m)) => {
                q.srb.next_srb = Some(SrbId {
                    slot: slot as u32,
                    generation: m.generation,
                });
                self.lus[lu as usize].bypass.push_back(q);
                self.kick(lu);
            }
            None => self.port_complete(
                sh,
                Some(lu),
                q.origin,
                q.srb,
                SrbStatus::ABORT_FAILED,
                q.submitted,
            ),
        }
    }

    fn is_tagged(&self, srb: &Srb) -> bool {
        let c = &*self.config;
        !srb.flags.contains(SrbFlags::DISABLE_DISCONNECT)
            && (self.storport
                || (c.tagged_queuing && srb.flags.contains(SrbFlags::QUEUE_ACTION_ENABLE))
                || c.multiple_request_per_lu)
    }

    /// `true` when the LU may start its bypass head (`Some(true)`) or queue head (`Some(false)`).
    fn startable(&self, lu: u32, max_depth: u32) -> Option<bool> {
        let l = &self.lus[lu as usize];
        if !l.bypass.is_empty() {
            return Some(true);
        }
        let head = l.queue.front()?;
        if l.frozen || l.locked || l.busy.is_some() || l.awaiting_sense.is_some() {
            return None;
        }
        if self.storport {
            // Push model: the device queue depth, DeviceBusy and PauseDevice pace the LU.
            let untagged = !self.is_tagged(&head.srb);
            let ok = l.device_busy == 0
                && l.paused == 0
                && l.outstanding < l.depth
                && !l.untagged_active
                && (!untagged || l.outstanding == 0);
            return ok.then_some(false);
        }
        if l.outstanding == 0 {
            return Some(false);
        }
        if l.untagged_active {
            return None;
        }
        if self.is_tagged(&head.srb) && l.more_allowed && l.outstanding < max_depth {
            return Some(false);
        }
        None
    }

    /// Starts requests while the adapter takes them (`IoStartNextPacket` / `ScsiPortStartIo`),
    /// then closes the run of `start_io` calls (`start_io_batch_done`, the miniport's doorbell;
    /// half duplex) — what completes there may let more start.
    fn dispatch(&mut self, sh: &AdapterShared<M>) {
        self.dispatch_pass(sh);
        while self.starts_open {
            self.call_isr(sh, |_, _| ());
            self.dispatch_pass(sh);
        }
    }

    /// One pass of [`dispatch`](Self::dispatch): starts requests until none can start. Full
    /// duplex: the requests picked are started (one channel) or handed to their channels
    /// together at the end ([`flush_starts`](Self::flush_starts)), and picking goes on if that
    /// completed some.
    fn dispatch_pass(&mut self, sh: &AdapterShared<M>) {
        loop {
            self.pick_and_start(sh);
            if !self.flush_starts(sh) {
                return;
            }
        }
    }

    /// Full duplex: starts the requests the pass picked (`start_batch`). Concurrent channels:
    /// each channel's go onto its list in one lock turn. One channel: when the
    /// StartIo lock is free and no request waits before them, here: `start_io` for each under
    /// that lock (the interrupt routine may run meanwhile on a raising thread), one
    /// interrupt-lock turn to hand them over and collect what completed, one doorbell
    /// (`start_io_channel_done`), then the completions are processed. Otherwise they queue
    /// behind the waiting ones and start after the token is given back
    /// (`AdapterShared::drain_starts`), in dispatch order. True when some completed here (the
    /// pass may start more).
    fn flush_starts(&mut self, sh: &AdapterShared<M>) -> bool {
        if self.start_batch.is_empty() {
            return false;
        }
        let Some(fd) = sh.full_duplex() else {
            return false;
        };
        let n = fd.channels.len();
        if n > 1 {
            // Concurrent channels: `start_io` runs on each request's channel after the token
            // is given back (`AdapterShared::drain_starts`), concurrently with the other
            // channels.
            let slots = &self.slots;
            let mut list: Option<(usize, parking_lot::MutexGuard<'_, VecDeque<PendingStart>>)> =
                None;
            for p in self.start_batch.drain(..) {
                let ch = slots[p.id.slot as usize].channel as usize % n;
                match &mut list {
                    Some((c, g)) if *c == ch => g.push_back(p),
                    _ => {
                        // One channel list lock at a time.
                        drop(list.take());
                        let mut g = fd.channels[ch].starts.lock();
                        g.push_back(p);
                        list = Some((ch, g));
                    }
                }
            }
            return false;
        }
        let mut starts = fd.channels[0].starts.lock();
        let free = if starts.is_empty() {
            fd.channels[0].lock.try_lock()
        } else {
            None
        };
        let Some(mut start_io_lock) = free else {
            starts.extend(self.start_batch.drain(..));
            return false;
        };
        drop(starts);
        let side = &mut *start_io_lock;
        let was = IN_PORT_LOCK.with(|f| f.replace(sh.lock_id()));
        for p in self.start_batch.drain(..) {
            sh.start_one(fd, &mut side.latch, &mut side.done, 0, p);
        }
        IN_PORT_LOCK.with(|f| f.set(was));
        {
            let mut g = sh.interrupt.lock();
            crate::context::publish(&mut side.done, &mut side.latch, &mut g.core);
            self.snapshot(&mut g.core);
        }
        if let Some(done) = &fd.channel_done {
            done(0);
        }
        drop(start_io_lock);
        let completed = !self.completed_buf.is_empty();
        self.process_latch(sh);
        completed
    }

    /// Picks startable requests and starts them (or, full duplex, collects them) until none can
    /// start.
    fn pick_and_start(&mut self, sh: &AdapterShared<M>) {
        let max_depth = sh.config.max_queue_depth_per_lu.max(1);
        loop {
            if !self.start_batch.is_empty() && self.deferred_pending() {
                // A deferred routine (e.g. an escalation's reset) must see every request the
                // pass gave a slot as started.
                self.flush_starts(sh);
            }
            self.run_deferred(sh);
            let a = &self.adapter;
            if !a.ready
                || a.hold_off > 0
                || a.masked
                || a.stopped
                || a.shut_down
                || a.busy_count > 0
                || a.paused > 0
            {
                return;
            }
            if self.free_slots.is_empty() {
                return;
            }
            let mut picked = None;
            for _ in 0..self.ring.len() {
                let Some(lu) = self.ring.pop_front() else {
                    break;
                };
                self.lus[lu as usize].in_ring = false;
                // While stopping only bypass requests (flush, task management, the port's own
                // requests) start; the rest wait for the restart.
                match self.startable(lu, max_depth) {
                    Some(false) if self.adapter.stopping => {}
                    Some(bypass) => {
                        picked = Some((lu, bypass));
                        break;
                    }
                    None => {}
                }
            }
            let Some((lu, bypass)) = picked else { return };
            let l = &mut self.lus[lu as usize];
            let q = if bypass {
                l.bypass.pop_front()
            } else {
                l.queue.pop_front()
            };
            self.kick(lu);
            if let Some(q) = q {
                self.start(sh, lu, q);
            }
        }
    }

    /// `ScsiPortStartPacket`: gives one request to `start_io`.
    fn start(&mut self, sh: &AdapterShared<M>, lu: u32, q: Queued) {
        let Some(slot) = self.free_slots.pop() else {
            // Cannot happen (dispatch checked), but never lose a request.
            self.lus[lu as usize].queue.push_front(q);
            return;
        };
        let Queued {
            mut srb,
            channel,
            origin,
            attempts,
            submitted,
        } = q;
        let tagged = self.is_tagged(&srb);
        srb.queue_tag = if tagged { slot } else { SP_UNTAGGED };
        srb.srb_status = SrbStatus::PENDING;
        let timeout = if srb.time_out_value == 0 {
            sh.options.default_timeout
        } else {
            srb.time_out_value
        };
        let l = &mut self.lus[lu as usize];
        l.outstanding += 1;
        l.more_allowed = false;
        if !tagged {
            l.untagged_active = true;
        }
        if srb.flags.contains(SrbFlags::DISABLE_DISCONNECT) {
            self.adapter.disconnect_allowed = false;
            self.adapter.ready = false;
        } else if !self.storport {
            // SCSI Port: nothing more until NextRequest / NextLuRequest.
            self.adapter.ready = false;
        }
        self.adapter.adapter_timer = Some(timeout);
        let address = srb.address;
        let generation = self.slots[slot as usize].generation.wrapping_add(1);
        self.slots[slot as usize] = SlotMeta {
            active: true,
            origin,
            lu,
            generation,
            original_request: srb.original_request,
            flags: srb.flags,
            tagged,
            attempts,
            timeout_left: timeout,
            stage: Stage::None,
            stage_left: 0,
            submitted,
            channel,
        };
        if sh.full_duplex().is_some() {
            let id = SrbId { slot, generation };
            // Collected for the end of the dispatch pass (`flush_starts`): one channel starts
            // the whole run under one turn of its StartIo lock; concurrent channels get their
            // requests on their lists in one turn each.
            self.start_batch.push(PendingStart { id, srb });
            return;
        }
        // Half duplex: the run of start_io calls stays open (no start_io_batch_done) until the
        // next other routine or the end of `dispatch`.
        self.call_isr_inner(sh, false, |m, ctx| {
            let core = &mut *ctx.core;
            core.lu_ext.entry(address).or_default();
            let e = &mut core.active[slot as usize];
            e.generation = generation;
            e.srb = Some(srb);
            e.completed = false;
            let r = SrbRef {
                id: SrbId { slot, generation },
            };
            m.start_io(ctx, r)
        });
        self.starts_open = true;
    }

    /// A request came back from the miniport (`SpiProcessCompletedRequest`).
    fn on_complete(&mut self, sh: &AdapterShared<M>, slot: u32, mut srb: Box<Srb>) {
        let meta = self.slots[slot as usize];
        self.slots[slot as usize].active = false;
        self.free_slots.push(slot);
        let lu = meta.lu;
        {
            let l = &mut self.lus[lu as usize];
            l.outstanding = l.outstanding.saturating_sub(1);
            if !meta.tagged {
                l.untagged_active = false;
            }
            l.device_busy = l.device_busy.saturating_sub(1);
        }
        if self.adapter.busy_count > 0 {
            self.adapter.busy_count -= 1;
            if self.adapter.busy_count == 0 {
                self.kick_all();
            }
        }
        if meta.flags.contains(SrbFlags::DISABLE_DISCONNECT) {
            self.adapter.disconnect_allowed = true;
            self.adapter.ready = true;
            self.adapter.adapter_timer = None;
        }
        if srb.srb_status.status() == SrbStatus::PENDING {
            srb.srb_status = SrbStatus::ERROR;
            sh.shared.log_error(ErrorLogEntry {
                address: srb.address,
                code: ErrorCode::ProtocolError,
                unique_id: 1,
                queue_tag: Some(srb.queue_tag),
            });
        }
        self.kick(lu);
        match meta.origin {
            Origin::RequestSense => self.sense_done(sh, lu, srb),
            Origin::Recovery { target } => {
                if srb.function == SrbFunction::ResetLogicalUnit {
                    self.lus[lu as usize].lu_reset_pending = false;
                    if srb.srb_status.is_success() {
                        self.lu_reset_reported(sh, lu);
                    }
                }
                if self.is_active(target) {
                    self.escalations.push(target);
                }
            }
            Origin::Sink(_) => {
                if matches!(
                    srb.function,
                    SrbFunction::ResetLogicalUnit | SrbFunction::ResetDevice
                ) && srb.srb_status.is_success()
                {
                    self.lu_reset_reported(sh, lu);
                }
                let bypass = meta
                    .flags
                    .intersects(SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE);
                if srb.function == SrbFunction::ExecuteScsi && is_busy(&srb) && !bypass {
                    return self.busy(sh, lu, meta, srb);
                }
                let wants_sense = srb.function == SrbFunction::ExecuteScsi
                    && srb.srb_status.status() == SrbStatus::ERROR
                    && srb.scsi_status == scsi_status::CHECK_CONDITION
                    && !srb.srb_status.autosense_valid()
                    && srb.sense_info_buffer_length > 0
                    && !srb.flags.contains(SrbFlags::DISABLE_AUTOSENSE)
                    && !sh.config.auto_request_sense;
                if wants_sense && self.lus[lu as usize].awaiting_sense.is_none() {
                    return self.request_sense(lu, meta, srb);
                }
                if freezes(&srb) {
                    self.lus[lu as usize].frozen = true;
                    srb.srb_status = srb.srb_status.with(SrbStatus::QUEUE_FROZEN);
                }
                self.finish(sh, Some(lu), meta.origin, srb, meta.submitted);
            }
        }
    }

    /// The Storport queue-management calls (`StorPortBusy`, `StorPortPause`, ...).
    /// A pause timeout in seconds as port ticks, rounded up (`u32::MAX`: until resumed).
    fn seconds_to_ticks(&self, seconds: u32) -> u32 {
        if seconds == u32::MAX {
            return u32::MAX;
        }
        let ticks = (seconds as u64 * 1_000_000).div_ceil(self.tick_us);
        ticks.min(u32::MAX as u64 - 1) as u32
    }

    fn queue_op(&mut self, op: QueueOp) {
        let outstanding: u32 = self.slots.iter().filter(|m| m.active).count() as u32;
        let lu_of = |r: &Self, a: Address| r.lu_index.get(&a).copied();
        match op {
            QueueOp::Busy(n) => self.adapter.busy_count = n.min(outstanding),
            QueueOp::Ready => {
                self.adapter.busy_count = 0;
                self.kick_all();
            }
            QueueOp::Pause(t) => self.adapter.paused = self.seconds_to_ticks(t),
            QueueOp::Resume => {
                self.adapter.paused = 0;
                self.kick_all();
            }
            QueueOp::DeviceBusy(a, n) => {
                if let Some(lu) = lu_of(self, a) {
                    let l = &mut self.lus[lu as usize];
                    l.device_busy = n.min(l.outstanding);
                }
            }
            QueueOp::DeviceReady(a) => {
                if let Some(lu) = lu_of(self, a) {
                    self.lus[lu as usize].device_busy = 0;
                    self.kick(lu);
                }
            }
            QueueOp::PauseDevice(a, t) => {
                if let Some(lu) = lu_of(self, a) {
                    self.lus[lu as usize].paused = self.seconds_to_ticks(t);
                }
            }
            QueueOp::ResumeDevice(a) => {
                if let Some(lu) = lu_of(self, a) {
                    self.lus[lu as usize].paused = 0;
                    self.kick(lu);
                }
            }
            QueueOp::SetDeviceQueueDepth(a, d) => {
                if let Some(lu) = lu_of(self, a) {
                    self.lus[lu as usize].depth = d.max(1);
                    self.kick(lu);
                }
            }
        }
    }

    fn lu_reset_reported(&mut self, sh: &AdapterShared<M>, lu: u32) {
        self.lus[lu as usize].counters.reset();
        sh.shared.counters.reset();
        self.events_out.push(PortEvent::LogicalUnitReset {
            address: self.lus[lu as usize].address,
        });
    }

    /// BUSY / QUEUE FULL: park the request for the next tick, up to the retry limit, then
    /// freeze the queue and fail it.
    fn busy(&mut self, sh: &AdapterShared<M>, lu: u32, meta: SlotMeta, mut srb: Box<Srb>) {
        sh.shared.counters.busy();
        self.lus[lu as usize].counters.busy();
        let l = &mut self.lus[lu as usize];
        let attempts = meta.attempts + 1;
        srb.srb_status = SrbStatus::PENDING;
        srb.scsi_status = scsi_status::GOOD;
        srb.data_transfer_length = srb.requested_length;
        let q = Queued {
            srb,
            channel: meta.channel,
            origin: meta.origin,
            attempts,
            submitted: meta.submitted,
        };
        if l.frozen || l.busy.is_some() {
            l.queue.push_front(q);
            return;
        }
        if self.storport || attempts <= sh.options.busy_retry_limit {
            l.busy = Some(q);
            return;
        }
        let mut srb = q.srb;
        srb.srb_status = SrbStatus::BUSY;
        if !srb.flags.contains(SrbFlags::NO_QUEUE_FREEZE) {
            l.frozen = true;
            srb.srb_status = srb.srb_status.with(SrbStatus::QUEUE_FROZEN);
        }
        srb.data_transfer_length = 0;
        self.finish(sh, Some(lu), meta.origin, srb, meta.submitted);
    }

    /// The adapter has no autosense: park the request and send REQUEST SENSE first.
    fn request_sense(&mut self, lu: u32, meta: SlotMeta, srb: Box<Srb>) {
        let len = srb.sense_info_buffer_length;
        let mut rs = Srb::function(SrbFunction::ExecuteScsi, srb.address);
        rs.cdb = crate::srb::Cdb::new(&[0x03, 0, 0, 0, len, 0]).unwrap_or_default();
        rs.data = vec![0; len as usize];
        rs.data_transfer_length = len as u32;
        rs.flags = SrbFlags::DATA_IN
            | SrbFlags::BYPASS_FROZEN_QUEUE
            | SrbFlags::DISABLE_DISCONNECT
            | SrbFlags::NO_QUEUE_FREEZE;
        rs.flags.insert(SrbFlags(
            srb.flags.0 & (SrbFlags::BYPASS_LOCKED_QUEUE.0 | SrbFlags::DISABLE_SYNCH_TRANSFER.0),
        ));
        rs.time_out_value = 2;
        rs.nexus = srb.nexus;
        let l = &mut self.lus[lu as usize];
        l.awaiting_sense = Some(Queued {
            srb,
            channel: meta.channel,
            origin: meta.origin,
            attempts: meta.attempts,
            submitted: meta.submitted,
        });
        l.bypass.push_front(Queued {
            srb: Box::new(rs),
            channel: meta.channel,
            origin: Origin::RequestSense,
            attempts: 0,
            submitted: meta.submitted,
        });
        self.kick(lu);
    }

    fn sense_done(&mut self, sh: &AdapterShared<M>, lu: u32, rs: Box<Srb>) {
        let Some(parked) = self.lus[lu as usize].awaiting_sense.take() else {
            return; // the parked request was aborted meanwhile
        };
        let mut srb = parked.srb;
        let s = rs.srb_status.status();
        if s == SrbStatus::SUCCESS || s == SrbStatus::DATA_OVERRUN {
            let n = (rs.data_transfer_length as usize)
                .min(srb.sense_info_buffer_length as usize)
                .min(rs.data.len());
            srb.sense_info_buffer[..n].copy_from_slice(&rs.data[..n]);
            srb.sense_info_buffer_length = n as u8;
            srb.srb_status = srb.srb_status.with(SrbStatus::AUTOSENSE_VALID);
        } else {
            srb.srb_status = SrbStatus::REQUEST_SENSE_FAILED;
        }
        if freezes(&srb) {
            self.lus[lu as usize].frozen = true;
            srb.srb_status = srb.srb_status.with(SrbStatus::QUEUE_FROZEN);
        }
        self.kick(lu);
        self.finish(sh, Some(lu), parked.origin, srb, parked.submitted);
    }

    fn is_active(&self, id: SrbId) -> bool {
        let m = &self.slots[id.slot as usize];
        m.active && m.generation == id.generation
    }

    /// The 1 s port tick (`ScsiPortIoTimer`): reset hold-off, BUSY retries, the adapter's
    /// NextRequest timer, request timeouts and the recovery ladder.
    fn tick(&mut self, sh: &AdapterShared<M>) {
        self.bus_resets_this_tick.clear();
        if self.adapter.hold_off > 0 {
            self.adapter.hold_off -= 1;
            if self.adapter.hold_off == 0 {
                self.adapter.ready = true;
                self.adapter.disconnect_allowed = true;
                self.adapter.adapter_timer = None;
                self.kick_all();
            }
        }
        if self.adapter.paused > 0 && self.adapter.paused != u32::MAX {
            self.adapter.paused -= 1;
            if self.adapter.paused == 0 {
                self.kick_all();
            }
        }
        for lu in 0..self.lus.len() {
            let l = &mut self.lus[lu];
            if l.paused > 0 && l.paused != u32::MAX {
                l.paused -= 1;
                if l.paused == 0 {
                    self.kick(lu as u32);
                }
            }
            let l = &mut self.lus[lu];
            if !l.frozen
                && let Some(q) = l.busy.take()
            {
                l.queue.push_front(q);
                self.kick(lu as u32);
            }
        }
        if !self.adapter.ready
            && self.adapter.hold_off == 0
            && let Some(t) = self.adapter.adapter_timer.as_mut()
        {
            {
                *t = t.saturating_sub(1);
                if *t == 0 {
                    // The miniport never asked for the next request: reset every bus.
                    self.adapter.adapter_timer = None;
                    sh.shared.log_error(ErrorLogEntry {
                        address: Address::default(),
                        code: ErrorCode::RequestTimeout,
                        unique_id: 2,
                        queue_tag: None,
                    });
                    for path in 0..sh.config.number_of_buses {
                        self.port_reset_bus(sh, path);
                    }
                }
            }
        }
        for slot in 0..self.slots.len() {
            let m = &mut self.slots[slot];
            if !m.active {
                continue;
            }
            let id = SrbId {
                slot: slot as u32,
                generation: m.generation,
            };
            if m.stage != Stage::None {
                m.stage_left = m.stage_left.saturating_sub(1);
                if m.stage_left == 0 {
                    self.escalations.push(id);
                }
                continue;
            }
            m.timeout_left = m.timeout_left.saturating_sub(1);
            if m.timeout_left != 0 {
                continue;
            }
            match m.origin {
                // A recovery request that itself times out escalates its target.
                Origin::Recovery { target } => {
                    m.timeout_left = u32::MAX;
                    if self.is_active(target) {
                        self.escalations.push(target);
                    }
                }
                _ => self.begin_recovery(sh, id),
            }
        }
        self.run_deferred(sh);
    }

    /// Step 1 of the recovery ladder: ABORT_COMMAND for the timed-out request.
    fn begin_recovery(&mut self, sh: &AdapterShared<M>, id: SrbId) {
        let m = &mut self.slots[id.slot as usize];
        m.stage = Stage::Abort;
        m.stage_left = sh.options.recovery_ticks.max(1);
        let lu = m.lu;
        let address = self.lus[lu as usize].address;
        sh.shared.counters.timeout();
        self.lus[lu as usize].counters.timeout();
        sh.shared.log_error(ErrorLogEntry {
            address,
            code: ErrorCode::RequestTimeout,
            unique_id: 3,
            queue_tag: None,
        });
        let mut abort = Srb::function(SrbFunction::AbortCommand, address);
        abort.next_srb = Some(id);
        abort.time_out_value = sh.options.recovery_ticks.max(1);
        abort.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
        self.lus[lu as usize].bypass.push_back(Queued {
            srb: Box::new(abort),
            channel: 0,
            origin: Origin::Recovery { target: id },
            attempts: 0,
            submitted: Instant::now(),
        });
        self.kick(lu);
    }

    /// The next step of the recovery ladder for `id`, if it is still outstanding.
    fn escalate(&mut self, sh: &AdapterShared<M>, id: SrbId) {
        if !self.is_active(id) {
            return;
        }
        let m = self.slots[id.slot as usize];
        let lu = m.lu;
        let address = self.lus[lu as usize].address;
        let ticks = sh.options.recovery_ticks.max(1);
        match m.stage {
            Stage::None | Stage::Abort => {
                let s = &mut self.slots[id.slot as usize];
                s.stage = Stage::LuReset;
                s.stage_left = ticks;
                if !self.lus[lu as usize].lu_reset_pending {
                    self.lus[lu as usize].lu_reset_pending = true;
                    let mut reset = Srb::function(SrbFunction::ResetLogicalUnit, address);
                    reset.time_out_value = ticks;
                    reset.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
                    self.lus[lu as usize].bypass.push_back(Queued {
                        srb: Box::new(reset),
                        channel: 0,
                        origin: Origin::Recovery { target: id },
                        attempts: 0,
                        submitted: Instant::now(),
                    });
                    self.kick(lu);
                }
            }
            Stage::LuReset => {
                let s = &mut self.slots[id.slot as usize];
                s.stage = Stage::BusReset;
                s.stage_left = self.hold_ticks + ticks;
                self.port_reset_bus(sh, address.path_id);
            }
            Stage::BusReset => self.restart_adapter(sh),
        }
    }

    /// The port resets a bus: `reset_bus` under the interrupt lock, then the hold-off.
    fn port_reset_bus(&mut self, sh: &AdapterShared<M>, path_id: u8) -> bool {
        if self.bus_resets_this_tick.contains(&path_id) {
            return true;
        }
        self.bus_resets_this_tick.push(path_id);
        let ok = self.call(sh, |m, ctx| m.reset_bus(ctx, path_id));
        self.adapter.hold_off = self.adapter.hold_off.max(self.hold_ticks);
        if self.adapter.hold_off == 0 {
            self.adapter.ready = true;
            self.adapter.disconnect_allowed = true;
        }
        sh.shared.counters.reset();
        self.events_out.push(PortEvent::BusReset { path_id });
        ok
    }

    /// Takes every request still in the miniport back and completes it with `status`
    /// (TIMEOUT for requests in recovery). Later completions of those become late completions.
    fn reclaim_active(&mut self, sh: &AdapterShared<M>, status: SrbStatus) {
        let mut taken = std::mem::take(&mut self.completed_buf);
        {
            // Full duplex: every dispatched request reaches the miniport first.
            let _start_io_locks = sh.full_duplex().map(|fd| sh.lock_all_channels(fd));
            let mut g = sh.interrupt.lock();
            let core = &mut g.core;
            self.snapshot(core);
            std::mem::swap(&mut taken, &mut self.completed_buf);
            for (slot, m) in self.slots.iter().enumerate() {
                if !m.active {
                    continue;
                }
                let e = &mut core.active[slot];
                if let Some(mut srb) = e.srb.take() {
                    e.completed = false;
                    srb.srb_status = if m.stage != Stage::None {
                        SrbStatus::TIMEOUT
                    } else {
                        status
                    };
                    srb.data_transfer_length = 0;
                    taken.push((slot as u32, srb));
                }
            }
        }
        self.process_latch(sh);
        self.now = Instant::now();
        for (slot, srb) in taken.drain(..) {
            if self.slots[slot as usize].active {
                self.on_complete(sh, slot, srb);
            }
        }
        if self.completed_buf.capacity() < taken.capacity() {
            self.completed_buf = taken;
        }
    }

    /// The last step of the ladder: the port takes back every request, then stops and restarts
    /// the adapter through `adapter_control` (or re-runs `initialize` if it cannot).
    fn restart_adapter(&mut self, sh: &AdapterShared<M>) {
        sh.shared.count_restart();
        sh.shared.counters.reset();
        self.reclaim_active(sh, SrbStatus::BUS_RESET);
        let supported = self.supported;
        let can_restart = supported.is_supported(AdapterControlType::StopAdapter)
            && supported.is_supported(AdapterControlType::RestartAdapter);
        let ok = if can_restart {
            self.call(sh, |m, ctx| {
                m.adapter_control(ctx, AdapterControl::StopAdapter);
                if supported.is_supported(AdapterControlType::SetRunningConfig) {
                    m.adapter_control(ctx, AdapterControl::SetRunningConfig);
                }
                m.adapter_control(ctx, AdapterControl::RestartAdapter)
                    == AdapterControlStatus::Success
            })
        } else {
            self.call(sh, |m, ctx| m.initialize(ctx))
        };
        if !ok {
            sh.shared.log_error(ErrorLogEntry {
                address: Address::default(),
                code: ErrorCode::InternalAdapterError,
                unique_id: 4,
                queue_tag: None,
            });
        }
        self.adapter.ready = true;
        self.adapter.disconnect_allowed = true;
        self.adapter.adapter_timer = None;
        self.adapter.hold_off = self.hold_ticks;
        for l in &mut self.lus {
            l.lu_reset_pending = false;
        }
        self.events_out.push(PortEvent::AdapterRestarted);
        self.kick_all();
    }

    /// Stop / restart / shutdown requests from the API.
    fn control(&mut self, sh: &AdapterShared<M>) {
        let (shutdown, stop, restart) = {
            let c = sh.control.lock();
            let shutdown = c.shutdown_requested && !c.shutdown_done;
            if !shutdown && !c.stop_requested && !c.restart_requested {
                sh.control_pending.store(false, Ordering::Release);
            }
            (shutdown, c.stop_requested, c.restart_requested)
        };
        if shutdown {
            return self.shutdown(sh);
        }
        if stop && !self.adapter.stopped {
            // Queued requests are held in the port (not failed) until the restart.
            self.adapter.stopping = true;
            let ready = sh.control.lock().stop_ready;
            if ready && self.slots.iter().all(|m| !m.active) {
                let supported = self.supported;
                self.call(sh, |m, ctx| {
                    m.adapter_control(ctx, AdapterControl::StopAdapter);
                    if supported.is_supported(AdapterControlType::SetBootConfig) {
                        m.adapter_control(ctx, AdapterControl::SetBootConfig);
                    }
                });
                self.adapter.stopped = true;
                sh.set_isr_blocked(true);
                let mut c = sh.control.lock();
                c.stop_requested = false;
                c.stop_ready = false;
                c.stopped = true;
                sh.control_cv.notify_all();
            }
        }
        if restart && !stop {
            let supported = self.supported;
            let was_stopped = self.adapter.stopped;
            let ok = self.call(sh, |m, ctx| {
                if was_stopped && supported.is_supported(AdapterControlType::RestartAdapter) {
                    if supported.is_supported(AdapterControlType::SetRunningConfig) {
                        m.adapter_control(ctx, AdapterControl::SetRunningConfig);
                    }
                    m.adapter_control(ctx, AdapterControl::RestartAdapter)
                        == AdapterControlStatus::Success
                } else {
                    m.initialize(ctx)
                }
            });
            if !ok {
                sh.shared.log_error(ErrorLogEntry {
                    address: Address::default(),
                    code: ErrorCode::InternalAdapterError,
                    unique_id: 5,
                    queue_tag: None,
                });
            }
            self.adapter.stopping = false;
            self.adapter.stopped = false;
            sh.set_isr_blocked(self.adapter.masked);
            self.adapter.ready = true;
            self.adapter.disconnect_allowed = true;
            if std::mem::take(&mut self.adapter.held_interrupt) {
                self.interrupt(sh);
            }
            let held = std::mem::take(&mut self.adapter.held_messages);
            if held != 0 {
                self.messages(sh, held);
            }
            self.kick_all();
            let mut c = sh.control.lock();
            c.restart_requested = false;
            c.stopped = false;
            c.restarts_done += 1;
            sh.control_cv.notify_all();
        }
    }

    /// `shutdown`: flush every queue, reset the buses so the miniport gives back what it has,
    /// take back anything left, stop the adapter. Everything completes exactly once.
    fn shutdown(&mut self, sh: &AdapterShared<M>) {
        self.adapter.shut_down = true;
        for lu in 0..self.lus.len() {
            let l = &mut self.lus[lu];
            let mut items: Vec<Queued> = l.queue.drain(..).collect();
            items.extend(l.bypass.drain(..));
            items.extend(l.busy.take());
            items.extend(l.awaiting_sense.take());
            for q in items {
                self.port_complete(
                    sh,
                    Some(lu as u32),
                    q.origin,
                    q.srb,
                    SrbStatus::REQUEST_FLUSHED,
                    q.submitted,
                );
            }
        }
        if self.slots.iter().any(|m| m.active) {
            for path in 0..sh.config.number_of_buses {
                self.call(sh, |m, ctx| m.reset_bus(ctx, path));
            }
            self.reclaim_active(sh, SrbStatus::BUS_RESET);
        }
        let supported = self.supported;
        self.call(sh, |m, ctx| {
            if supported.is_supported(AdapterControlType::StopAdapter) {
                m.adapter_control(ctx, AdapterControl::StopAdapter);
            }
            m.adapter_state(false);
        });
        sh.timer.shutdown();
        // The adapter is stopped: interrupts raised from now on are held, never delivered.
        self.adapter.stopped = true;
        sh.set_isr_blocked(true);
        self.deliver(sh);
        let mut c = sh.control.lock();
        c.shutdown_done = true;
        sh.control_cv.notify_all();
    }
}
