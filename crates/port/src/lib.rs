//! The port driver: the SCSI Port I/O model of the seed documents, in user space.
//!
//! The port owns queues, timing and error policy; a *miniport* owns one kind of adapter and is
//! reached only through its routine table, the [`Miniport`] trait. Upper layers (the iSCSI
//! front end, the disk class driver, tests) hand [`Srb`]s to an [`Adapter`] and get them back,
//! completed exactly once, through a [`CompletionSink`]. The port knows nothing of iSCSI, files
//! or io_uring: it consumes a miniport and never configures storage.
//!
//! # Writing a miniport
//!
//! ```text
//! impl Miniport for MyHba {
//!     type HwContext = MyConfig;        // given to initialize(), passed to find_adapter
//!     type LuExtension = MyLu;          // per LU, PortContext::lu_extension
//!     type SrbExtension = MyScratch;    // per SRB slot, preallocated, PortContext::srb_extension
//!     fn driver_entry() -> HwInitializationData          // capabilities
//!     fn find_adapter(cfg, ctx, &mut PortConfiguration) -> FindAdapterResult<Self>
//!     fn initialize(&mut self, port) -> bool
//!     fn start_io(&mut self, port, srb: SrbRef) -> bool  // complete now or keep the SrbRef
//!     fn reset_bus(&mut self, port, path_id) -> bool
//!     // optional: interrupt, dma_started, adapter_state, adapter_control, wmi,
//!     // start_io_batch_done (the doorbell after a run of start_io calls)
//! }
//! ```
//!
//! Inside a routine the miniport reads and writes the request with `port.srb_mut(&srb)`,
//! completes it with `port.request_complete(srb)` (consumes the [`SrbRef`]) and asks for more
//! work with `port.next_request()` or `port.next_lu_request(address)`. The other services of
//! [`PortContext`] are the rest of `ScsiPortNotification` (`reset_detected`,
//! `request_timer_call`, `bus_change_detected`, `call_enable_interrupts`,
//! `call_disable_interrupts`, `wmi_event`), `complete_requests` (`ScsiPortCompleteRequest`),
//! `get_srb` (`ScsiPortGetSrb`), `lu_extension` (`ScsiPortGetLogicalUnit`), `log_error`,
//! `io_map_transfer` (then `dma_started`) and `interrupt_line`. The miniport's "hardware" (a
//! completion thread, a simulated HBA) raises the adapter's [`InterruptLine`] from any thread;
//! the port then calls `interrupt` under the lock. A miniport without an interrupt routine polls
//! with `request_timer_call`. [`testing::ScriptedMiniport`] is a complete example.
//!
//! # Using an adapter
//!
//! ```text
//! let adapters = port::initialize::<MyHba>(config, PortOptions::default())?; // find, init, scan
//! let lus = adapters[0].logical_units();              // address + INQUIRY data of each LU
//! let submitter = adapters[0].submitter(my_sink);     // once per connection / queue
//! submitter.submit(srb);                              // never blocks, never fails
//! submitter.submit_batch(&mut srbs);                  // several: one deferred-stage pass
//! adapters[0].interrupt_line().take_interrupt(t);     // polled completion (see InterruptWait)
//! // ... my_sink.complete(srb) is called exactly once per submitted srb
//! adapters[0].shutdown()?;                            // completes everything outstanding
//! ```
//!
//! The submitter moves an owned data buffer (`Vec<u8>`) into the SRB and gets it back in
//! `complete`, so a submitter that reuses its SRBs and buffers allocates nothing per request
//! (tests/no_alloc.rs proves the path submit -> start_io -> complete -> sink allocation-free).
//! [`Adapter::execute_and_wait`] is the blocking convenience for tests, scans and management.
//! Resets, bus changes and WMI events reach [`PortEventSink`]s registered with
//! [`Adapter::subscribe`]; the device layer turns resets into unit attentions. WMI:
//! [`Adapter::wmi_reg_info`], `wmi_query_all` / `wmi_query_single` / `wmi_set_block` /
//! `wmi_set_item` / `wmi_execute_method` (buffer-too-small answers carry the size needed),
//! consumer-counted [`Adapter::wmi_enable`] and per-GUID [`Adapter::wmi_subscribe`]; the port
//! answers its own statistics blocks ([`wmi::blocks`]) and routes the rest to the miniport's
//! [`wmi::WmiProvider`] (module [`wmi`]). Statistics:
//! [`Adapter::statistics`], [`Adapter::lu_statistics`], [`Adapter::port_counters`],
//! [`Adapter::error_log`]. Besides counters, [`Statistics`] carries the queue depth seen by
//! submitters (`outstanding`: accepted and not yet completed, whether queued in the port or
//! held by the miniport) and a [`LatencyHistogram`] of submit-to-completion times (log2 µs
//! buckets; the accept time rides in the port's queue entry and slot, so timing allocates
//! nothing; difference two snapshots with [`LatencyHistogram::since`] for an interval).
//!
//! # Locks and threads
//!
//! Each adapter has three locks (four on a full-duplex Storport adapter), always taken in this
//! order:
//!
//! 1. the **DPC token** (`Runner`): whoever holds it runs the deferred stage — the only code
//!    that changes queues, slots and adapter state and the only caller of miniport routines
//!    after initialization. A thread that finds the token taken leaves a note (`pending`) and
//!    returns; the holder loops until no note is left. So the deferred stage runs on the thread
//!    that caused it (a submitter, the thread raising the interrupt, the timer thread) with no
//!    thread hop, never twice at once, and batches whatever piled up meanwhile.
//! 2. the **interrupt lock**: the miniport (`&mut self`), the interrupt-side request table with
//!    the SRB extensions, the LU extensions and the notification latch. `initialize`,
//!    `start_io`, `interrupt`, the timer routine, `reset_bus`, `dma_started`,
//!    `adapter_control`, `adapter_state` and the disable-interrupts callback run under it and
//!    never overlap. The enable-interrupts callback runs under it too, but with the adapter's
//!    interrupt masked: `interrupt`, `start_io` and the timer routine are held until
//!    CallDisableInterrupts. Only `find_adapter` runs without it.
//! 3. small leaf locks: the incoming-request list, sink registration, event subscribers, the
//!    error log.
//!
//! A full-duplex Storport adapter adds the **StartIo lock** between 1 and 2 (order: DPC token,
//! StartIo, interrupt): see the Storport section.
//!
//! Completion and event sinks are called by the deferred stage outside the interrupt lock; they
//! must not block. They may submit (the new requests start after the current batch); blocking
//! calls from a sink return [`WaitError::WouldDeadlock`]. One timer thread per adapter produces
//! the port tick ([`PortOptions::tick`], 1 s; `None` for manual [`Adapter::tick`] in tests) and
//! fires `request_timer_call` routines (µs, one pending, 0 cancels).
//!
//! # Life of an SRB
//!
//! 1. **Submit** — [`Submitter::submit`] pushes the SRB on the adapter's incoming list and
//!    requests the deferred stage (`AdapterShared::request_dpc`).
//! 2. **Accept** (`Runner::accept`, deferred stage) — the port resets the port-owned fields
//!    (SrbStatus PENDING, QueueTag, NextSrb, the requested length), checks the address and
//!    buffer (INVALID_PATH_ID / INVALID_TARGET_ID / INVALID_LUN / BAD_SRB_BLOCK_LENGTH), and
//!    either answers the port functions itself — RELEASE_QUEUE, FLUSH_QUEUE (queued requests
//!    complete REQUEST_FLUSHED), LOCK_QUEUE, UNLOCK_QUEUE, RESET_BUS (calls `reset_bus`),
//!    ABORT_COMMAND of a still-queued request, FLUSH/SHUTDOWN when the adapter does not cache,
//!    WMI without a provider — or puts it on its LU's queue: the normal queue (FIFO) or the
//!    bypass queue (BYPASS_FROZEN_QUEUE / BYPASS_LOCKED_QUEUE, task management, the port's
//!    own REQUEST SENSE and recovery requests).
//! 3. **Dispatch** (`Runner::dispatch`) — while the adapter is ready (not waiting for
//!    NextRequest, no reset hold-off, not masked, stopped or shut down) and a slot is free, the
//!    port picks LUs round-robin. A LU may start its bypass head always, its queue head if it is
//!    not frozen, locked, parked BUSY or waiting for sense, and either it has nothing
//!    outstanding, or the head is tagged (QUEUE_ACTION_ENABLE on a tagged adapter, or any
//!    request on a MultipleRequestPerLu adapter), the LU got NextLuRequest since its last
//!    start and is below `max_queue_depth_per_lu`. DISABLE_DISCONNECT requests are untagged and
//!    monopolize the adapter until they complete.
//! 4. **Start** (`Runner::start`) — the SRB takes a preallocated slot (its QueueTag is the slot
//!    number if tagged, else [`SP_UNTAGGED`]; the slot's generation is bumped), moves into the
//!    interrupt-side table and `start_io` is called under the interrupt lock with an [`SrbRef`]
//!    naming slot and generation. The adapter is busy until the miniport latches NextRequest.
//! 5. **Complete** — from `start_io`, `interrupt`, the timer routine, `dma_started`, the
//!    enable-interrupts callback, `reset_bus` or `adapter_control`, the miniport latches
//!    `request_complete(srb)` or `complete_requests(filter, status)`. A handle whose request is
//!    no longer active (its generation moved on) is dropped and counted as a late completion.
//! 6. **Deferred stage** (`Runner::call` + `Runner::process_latch`, the seed's
//!    `ScsiPortDpcForIsr`) — when the routine returns, still under the interrupt lock, the latch
//!    is emptied (`snapshot`) and completed SRBs move out of the table; after the lock is
//!    released the port arms or cancels the timer, honours NextRequest / NextLuRequest, starts
//!    the reset hold-off, schedules rescans, callbacks and `dma_started`, and processes each
//!    completion (`Runner::on_complete`): the slot is freed; BUSY / SCSI BUSY / QUEUE FULL are
//!    parked and retried on the next tick up to `busy_retry_limit` times, then fail with BUSY
//!    and freeze the queue; CHECK CONDITION without sense on an adapter without autosense parks
//!    the request behind a port-issued REQUEST SENSE whose data becomes the request's sense
//!    (AUTOSENSE_VALID) or REQUEST_SENSE_FAILED; any other failure of an EXECUTE_SCSI request
//!    except a data underrun freezes the LU queue (QUEUE_FROZEN) unless NO_QUEUE_FREEZE. Then
//!    more requests are dispatched.
//! 7. **Deliver** (`Runner::deliver`) — statistics are counted and each SRB, with its data
//!    buffer, goes to its submitter's sink (`complete`), followed by one `batch_done` per sink.
//!
//! # Time and recovery
//!
//! Every tick (`Runner::tick`): the reset hold-off counts down (4 ticks after ResetDetected or
//! a port reset); parked BUSY requests go back to the head of their queue; if the adapter
//! waits for NextRequest longer than the last request's TimeOutValue, every bus is reset; and
//! each outstanding request's TimeOutValue counts down. A request that times out starts the
//! recovery ladder, one step per `recovery_ticks` and only while it is still outstanding
//! (`Runner::begin_recovery`, `Runner::escalate`): ABORT_COMMAND with NextSrb -> (if it is still
//! there) RESET_LOGICAL_UNIT -> `reset_bus` on its bus (outstanding requests complete with
//! BUS_RESET; hold-off) -> the port takes back every outstanding request (TIMEOUT for those in
//! recovery, BUS_RESET for the others) and restarts the adapter with
//! `adapter_control(StopAdapter / SetRunningConfig / RestartAdapter)`, or `initialize` again if
//! the miniport cannot. Resets are reported as [`PortEvent`]s.
//!
//! # Exactly once
//!
//! Every submitted SRB is delivered exactly once: rejected ones at once, queued ones when they
//! complete, are flushed or aborted in the queue, and everything on [`Adapter::shutdown`]
//! (queued: REQUEST_FLUSHED; in the miniport: `reset_bus`, then whatever is left is taken back
//! as BUS_RESET). Completing twice through one handle is impossible by type ([`SrbRef`] is
//! consumed); a late completion through a stale handle is caught by the slot generation,
//! dropped and counted ([`PortCounters::late_completions`]).
//!
//! # Storport
//!
//! The Storport model runs beside this one, chosen per adapter: [`initialize_storport`]
//! instead of [`initialize`], for a miniport that also implements [`StorportMiniport`]
//! (additive: SCSI Port miniports are untouched). Differences, all in the same `Runner`:
//!
//! - `StorportMiniport::build_io` runs on the submitting thread inside [`Submitter::submit`],
//!   without any adapter lock and possibly on several threads at once, seeing only the SRB and
//!   the miniport's `Shared: Sync` part (it may finish the request itself by returning false).
//! - Dispatch pushes requests to `start_io` while free slots (NumberOfRequests: the adapter's
//!   queue depth) and the LU's device queue depth allow — NextRequest and NextLuRequest are
//!   ignored and every request is tagged.
//! - The miniport paces the port with [`PortContext::busy`] / [`ready`](PortContext::ready),
//!   [`pause`](PortContext::pause) / [`resume`](PortContext::resume) (timeout in seconds,
//!   rounded up to ticks; auto resume), [`device_busy`](PortContext::device_busy) /
//!   [`device_ready`](PortContext::device_ready), [`pause_device`](PortContext::pause_device) /
//!   [`resume_device`](PortContext::resume_device) and
//!   [`set_device_queue_depth`](PortContext::set_device_queue_depth) (initial depth:
//!   `PortConfiguration::max_queue_depth_per_lu`); BUSY is retried on every tick without
//!   limit; the notification set is RequestComplete, ResetDetected, RequestTimerCall,
//!   BusChangeDetected and WMIEvent.
//! - After a reset the port holds requests for `PortConfiguration::bus_reset_hold_time` µs
//!   (rounded up to ticks), or the port's default hold-off if the miniport leaves it unset.
//! - Unit control (`StorportMiniport::unit_control`: ScsiUnitStart per LU found by a scan,
//!   ScsiUnitSurpriseRemoval per LU lost, ScsiUnitPower from [`Adapter::unit_power`]) and the
//!   extended adapter-control types (`StorportMiniport::adapter_control_ex`: PostHwInitialize,
//!   PrepareForBusReScan, AdapterPower from [`Adapter::adapter_power`]) are queried once after
//!   `initialize`.
//!
//! **Synchronization model.** `find_adapter` sets `PortConfiguration::synchronization_model`
//! (overridable with [`PortOptions::synchronization_model`]). Half duplex (the default):
//! `start_io` is [`Miniport::start_io`] under the interrupt lock, as in SCSI Port. Full duplex:
//! the adapter has a separate **StartIo lock** and the port calls
//! `StorportMiniport::start_io_full_duplex` under it only. That routine cannot have `&mut
//! self` — the device extension belongs to the interrupt lock — so it gets the miniport's
//! `Shared` part and a [`StartIoContext`] holding the request *in hand* (read, change and
//! complete it without the interrupt lock); state shared with the interrupt routine is reached
//! through [`StartIoContext::synchronize_access`] (`StorPortSynchronizeAccess`), which runs a
//! closure with `&mut self` and a [`PortContext`] under the interrupt lock. So safe Rust keeps
//! the rule: two routines that share state never run at once; `start_io` calls never overlap
//! (StartIo lock); `interrupt` (interrupt lock) may overlap `start_io`. On a full-duplex adapter
//! `interrupt` runs on the thread that raises the line (the deferred stage follows there);
//! `start_io` runs on the thread holding the DPC token when the StartIo lock is free, otherwise
//! on the dispatching thread right after it gives the token back (`AdapterShared::drain_starts`,
//! in dispatch order); requests still in hand are handed to the interrupt side's table when
//! `start_io` returns (in batches). The other routines (`initialize`, timer, `reset_bus`,
//! adapter and unit control) run under both locks, after every dispatched request has reached
//! `start_io`.
//!
//! **Concurrent channels** (`StorPortInitializePerfOpts(STOR_PERF_CONCURRENT_CHANNELS)`): a
//! full-duplex miniport may set `PortConfiguration::concurrent_channels` to `n > 1`. The
//! adapter then has no single StartIo lock but one per channel (each padded to its own cache
//! lines); a request is started on the channel of the thread that submitted it
//! ([`current_processor`] `% n`, the user-space `KeGetCurrentProcessorNumber`; a thread picks
//! its own with [`set_current_processor`]), by that thread after it gives the DPC token back,
//! so `start_io_full_duplex` runs on different channels at the same time
//! ([`StartIoContext::channel`] names it). After each run of starts on a channel, once the
//! requests are in the interrupt side's table, the port calls
//! `StorportMiniport::start_io_channel_done` (the channel's doorbell) under that channel's
//! lock. Routines that need the whole adapter (`reset_bus`, the timer, adapter and unit
//! control, the port taking requests back) take every channel's lock in channel order, so they
//! exclude every `start_io`. **Message-signaled interrupts**: `find_adapter` gets message lines
//! with [`FindAdapterContext::message_interrupt_lines`] (MSI-X, one per channel typically);
//! raising message `m` calls `StorportMiniport::message_interrupt(m)` (`HwMSInterruptRoutine`)
//! under the interrupt lock (`InterruptSynchronizeAll`), on the raising thread of a full-duplex
//! adapter; [`InterruptLine::take_interrupt`] on the adapter's line polls the calling thread's
//! own message. Still shared by all channels: the DPC token (accept, dispatch, completion
//! processing and delivery run on whichever thread holds it) and the interrupt lock.
//!
//! Freeze / release / lock, autosense, timeouts and the recovery ladder are shared (Storport's
//! multi-tier reset is the same ladder). Not modelled: per-message interrupt locks
//! (`InterruptSynchronizePerMessage`, `StorPortAcquireMSISpinLock`), per-channel completion
//! DPCs, the SRB extension inside full-duplex `start_io` (reach it through
//! `synchronize_access`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod adapter;
mod context;
mod handle;
mod interrupt;
mod miniport;
mod srb;
mod stats;
mod tally;
pub mod testing;
pub mod wmi;

pub use adapter::WaitError;
pub use context::{
    PortContext, SrbRef, StartIoContext, WMI_EVENT_LATCH_DEPTH, WMI_EVENT_MAX_DATA, WmiEvent,
};
pub use handle::{
    Adapter, CompletionSink, InitializeError, LogicalUnitInfo, PortEvent, PortEventSink,
    PortOptions, Submitter, initialize, initialize_storport, queue_request,
};
pub use interrupt::{
    InterruptLine, InterruptWait, MAX_MESSAGES, TakenInterrupt, current_processor,
    set_current_processor,
};
pub use miniport::{
    AdapterControl, AdapterControlStatus, AdapterControlType, DevicePowerState, FindAdapterContext,
    FindAdapterResult, HwInitializationData, HwRoutine, InterfaceType, Miniport, PortConfiguration,
    SCSI_MAXIMUM_LOGICAL_UNITS, SCSI_MAXIMUM_LUNS_PER_TARGET, SCSI_MAXIMUM_TARGETS,
    SCSI_MAXIMUM_TARGETS_PER_BUS, SP_UNINITIALIZED_VALUE, StorAdapterControl,
    StorAdapterControlType, StorportMiniport, SupportedControlTypeList,
    SupportedStorAdapterControlTypeList, SupportedUnitControlTypeList, SynchronizationModel,
    UnitControl, UnitControlStatus, UnitControlType,
};
pub use srb::{
    Address, AddressFilter, Cdb, DataDirection, ItNexus, MAX_CDB_LENGTH, QueueAction,
    SENSE_BUFFER_SIZE, SP_UNTAGGED, Srb, SrbFlags, SrbFunction, SrbId, SrbStatus, WmiRequest,
    scsi_status,
};
pub use stats::{
    Counters, ERROR_LOG_DEPTH, ErrorCode, ErrorKind, ErrorLogEntry, LATENCY_BUCKETS,
    LatencyHistogram, PortCounters, Statistics,
};
