//! The upper-layer face of the port: [`initialize`], [`Adapter`], [`Submitter`],
//! [`CompletionSink`], events and the bus scan.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::adapter::{AdapterShared, BuildIo, ChannelDoneFn, StartIoFn, StorportHooks, WaitError};
use crate::context::{PortContext, SrbRef, StartIoContext, WmiEvent};
use crate::interrupt::InterruptLine;
use crate::miniport::{
    AdapterControlStatus, DevicePowerState, FindAdapterContext, FindAdapterResult, Miniport,
    PortConfiguration, StorportMiniport, SynchronizationModel, UnitControlStatus,
};
use crate::srb::{Address, DataDirection, Srb, SrbFlags, SrbFunction, SrbStatus};
use crate::stats::{ErrorLogEntry, PortCounters, Statistics};
use crate::wmi::{PortWmi, WmiBlock, WmiConsumer, WmiControl, WmiError, WmiEventSink};

/// Where a submitter's completed requests go: registered once per submitter (an iSCSI
/// connection, a class-driver queue), called for every request it submitted.
///
/// Called from the deferred stage — on whichever thread runs it (a submitting thread, the
/// thread that raised the interrupt, the timer thread) — outside every adapter lock, one
/// request at a time in completion order, then `batch_done` once per batch. Must not block:
/// push the request into your own queue and wake whoever waits. Submitting new requests from
/// here is fine (they are started after the current batch); blocking port calls
/// (`execute_and_wait`, `shutdown`, `stop`) return [`WaitError::WouldDeadlock`].
pub trait CompletionSink: Send + Sync {
    /// A request of this submitter is finished; the SRB (with its data buffer) is yours again.
    fn complete(&self, srb: Srb);
    /// The request in the box it travelled in through the port (the port boxes every request
    /// it accepts: [`Submitter::submit_boxed`] hands over the submitter's own box, `submit`
    /// takes a spare one). The default moves the SRB out to [`complete`](Self::complete) and
    /// returns the empty box, which the port reuses for a later `submit`; a sink that keeps
    /// its SRBs boxed overrides this, keeps the box and returns `None`.
    fn complete_boxed(&self, mut srb: Box<Srb>) -> Option<Box<Srb>> {
        self.complete(std::mem::take(&mut *srb));
        Some(srb)
    }
    /// The end of a batch of `complete` calls (wake the consumer once).
    fn batch_done(&self) {}
}

/// Something upper layers should know about, delivered to every [`PortEventSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortEvent {
    /// The miniport reported a bus reset it saw (ResetDetected).
    ResetDetected,
    /// The port reset a bus (`reset_bus`): requests on it were completed with BUS_RESET.
    BusReset {
        /// The bus.
        path_id: u8,
    },
    /// A logical unit reset (or target reset) completed successfully.
    LogicalUnitReset {
        /// The LU.
        address: Address,
    },
    /// The timeout escalation restarted the adapter.
    AdapterRestarted,
    /// The miniport reported devices coming or going (BusChangeDetected); a re-scan follows.
    BusChangeDetected {
        /// The bus.
        path_id: u8,
    },
    /// A re-scan finished and the list of logical units changed.
    LogicalUnitsChanged,
    /// A WMI event posted by the miniport.
    Wmi(WmiEvent),
}

/// Receives [`PortEvent`]s, on the deferred stage's thread (or the re-scan thread), outside the
/// adapter locks. Must not block.
pub trait PortEventSink: Send + Sync {
    /// One event.
    fn port_event(&self, event: &PortEvent);
}

/// Port tuning (the registry parameters of the seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOptions {
    /// Period of the port tick that enforces `TimeOutValue` (1 s in the seed). `None`: no
    /// automatic tick — call [`Adapter::tick`] (tests).
    pub tick: Option<Duration>,
    /// BUSY / QUEUE FULL retries (one per tick) before the queue freezes (20 in ReactOS).
    pub busy_retry_limit: u32,
    /// Ticks of hold-off after a reset (4 in ReactOS).
    pub reset_hold_off_ticks: u32,
    /// Ticks each step of the timeout recovery ladder gets before the next one.
    pub recovery_ticks: u32,
    /// `TimeOutValue` used when a request has 0.
    pub default_timeout: u32,
    /// Scan the buses after `initialize`.
    pub scan: bool,
    /// `TimeOutValue` of the scan's INQUIRY / REPORT LUNS.
    pub scan_timeout: u32,
    /// How many `SystemIoBusNumber` values to probe with `find_adapter`.
    pub buses_to_probe: u32,
    /// Upper bound on adapters one `initialize` creates (guards a miniport that always says
    /// `again`).
    pub max_adapters: u32,
    /// `ArgumentString` given to `find_adapter`.
    pub argument_string: Option<String>,
    /// Override of `NumberOfRequests` (SRB slots per adapter).
    pub number_of_requests: Option<u32>,
    /// Storport: overrides the `SynchronizationModel` the miniport chose in `find_adapter`
    /// (half or full duplex), like a registry override; `None` keeps the miniport's choice.
    /// Ignored by the SCSI Port model.
    pub synchronization_model: Option<SynchronizationModel>,
}

impl Default for PortOptions {
    fn default() -> Self {
        Self {
            tick: Some(Duration::from_secs(1)),
            busy_retry_limit: 20,
            reset_hold_off_ticks: 4,
            recovery_ticks: 2,
            default_timeout: 10,
            scan: true,
            scan_timeout: 4,
            buses_to_probe: 1,
            max_adapters: 16,
            argument_string: None,
            number_of_requests: None,
            synchronization_model: None,
        }
    }
}

/// A logical unit found by the bus scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalUnitInfo {
    /// Where it is.
    pub address: Address,
    /// Its standard INQUIRY data as returned (up to 96 bytes).
    pub inquiry: Vec<u8>,
}

impl LogicalUnitInfo {
    /// PERIPHERAL DEVICE TYPE (byte 0, bits 4-0).
    pub fn device_type(&self) -> u8 {
        self.inquiry.first().map_or(0x1F, |b| b & 0x1F)
    }
}

/// Why [`initialize`] produced no adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitializeError {
    /// The registration data is inconsistent.
    #[error("invalid HwInitializationData: {0}")]
    InvalidInitData(&'static str),
    /// `find_adapter` found nothing on any bus probed.
    #[error("no adapter found")]
    NotFound,
    /// `find_adapter` returned Error or BadConfig.
    #[error("find_adapter failed on bus {bus}: {result}")]
    FindAdapter {
        /// The `SystemIoBusNumber`.
        bus: u32,
        /// "Error" or "BadConfig".
        result: &'static str,
    },
    /// The configuration `find_adapter` left is unusable.
    #[error("bad port configuration: {0}")]
    BadConfiguration(&'static str),
    /// `initialize` returned false (or the port could not start its timer).
    #[error("adapter initialization failed")]
    InitializeFailed,
}

/// The operations of an adapter independent of its miniport type.
pub(crate) trait AdapterObject: Send + Sync {
    fn submit(&self, sink: u32, srb: Srb);
    fn submit_batch(&self, sink: u32, srbs: &mut Vec<Srb>);
    fn submit_boxed(&self, sink: u32, srb: Box<Srb>);
    // The boxes travel on to the sink: moving them is the point.
    #[allow(clippy::vec_box)]
    fn submit_batch_boxed(&self, sink: u32, srbs: &mut Vec<Box<Srb>>);
    fn register_sink(&self, sink: Arc<dyn CompletionSink>) -> u32;
    fn execute_and_wait(&self, srb: Srb) -> Result<Srb, WaitError>;
    fn tick(&self);
    fn shutdown(&self) -> Result<(), WaitError>;
    fn stop(&self, timeout: Duration) -> Result<(), WaitError>;
    fn restart(&self, timeout: Duration) -> Result<(), WaitError>;
    fn configuration(&self) -> &PortConfiguration;
    fn options(&self) -> &PortOptions;
    fn statistics(&self) -> Statistics;
    fn lu_statistics(&self, a: Address) -> Option<Statistics>;
    fn port_counters(&self) -> PortCounters;
    fn error_log(&self) -> Vec<ErrorLogEntry>;
    fn subscribe(&self, sink: Arc<dyn PortEventSink>);
    fn logical_units(&self) -> Vec<LogicalUnitInfo>;
    fn set_logical_units(&self, lus: Vec<LogicalUnitInfo>) -> bool;
    fn interrupt_line(&self) -> InterruptLine;
    fn is_storport(&self) -> bool;
    fn is_full_duplex(&self) -> bool;
    fn state_dump(&self) -> String;
    fn unit_power(
        &self,
        address: Address,
        state: DevicePowerState,
    ) -> Result<UnitControlStatus, WaitError>;
    fn adapter_power(&self, state: DevicePowerState) -> Result<AdapterControlStatus, WaitError>;
    fn prepare_rescan(&self);
    fn units_changed(&self, added: &[Address], removed: &[Address]);
    fn emit(&self, event: PortEvent);
    fn wmi(&self) -> &PortWmi;
    fn as_any(&self) -> &dyn Any;
}

impl<M: Miniport> AdapterObject for AdapterShared<M> {
    fn submit(&self, sink: u32, srb: Srb) {
        AdapterShared::submit(self, sink, srb)
    }
    fn submit_batch(&self, sink: u32, srbs: &mut Vec<Srb>) {
        AdapterShared::submit_batch(self, sink, srbs)
    }
    fn submit_boxed(&self, sink: u32, srb: Box<Srb>) {
        AdapterShared::submit_boxed(self, sink, srb)
    }
    // The boxes travel on to the sink: moving them is the point.
    #[allow(clippy::vec_box)]
    fn submit_batch_boxed(&self, sink: u32, srbs: &mut Vec<Box<Srb>>) {
        AdapterShared::submit_batch_boxed(self, sink, srbs)
    }
    fn register_sink(&self, sink: Arc<dyn CompletionSink>) -> u32 {
        AdapterShared::register_sink(self, sink)
    }
    fn execute_and_wait(&self, srb: Srb) -> Result<Srb, WaitError> {
        AdapterShared::execute_and_wait(self, srb)
    }
    fn tick(&self) {
        AdapterShared::tick(self)
    }
    fn shutdown(&self) -> Result<(), WaitError> {
        AdapterShared::shutdown(self)
    }
    fn stop(&self, timeout: Duration) -> Result<(), WaitError> {
        AdapterShared::stop(self, timeout)
    }
    fn restart(&self, timeout: Duration) -> Result<(), WaitError> {
        AdapterShared::restart(self, timeout)
    }
    fn configuration(&self) -> &PortConfiguration {
        &self.config
    }
    fn options(&self) -> &PortOptions {
        &self.options
    }
    fn statistics(&self) -> Statistics {
        self.shared.counters.snapshot()
    }
    fn lu_statistics(&self, a: Address) -> Option<Statistics> {
        self.lu_counters(a).map(|c| c.snapshot())
    }
    fn port_counters(&self) -> PortCounters {
        self.shared.port_counters()
    }
    fn error_log(&self) -> Vec<ErrorLogEntry> {
        self.shared.error_log()
    }
    fn subscribe(&self, sink: Arc<dyn PortEventSink>) {
        AdapterShared::subscribe(self, sink)
    }
    fn logical_units(&self) -> Vec<LogicalUnitInfo> {
        self.lus.read().clone()
    }
    fn set_logical_units(&self, lus: Vec<LogicalUnitInfo>) -> bool {
        let mut cur = self.lus.write();
        let changed = *cur != lus;
        *cur = lus;
        changed
    }
    fn interrupt_line(&self) -> InterruptLine {
        self.line.clone()
    }
    fn is_storport(&self) -> bool {
        AdapterShared::is_storport(self)
    }
    fn is_full_duplex(&self) -> bool {
        AdapterShared::is_full_duplex(self)
    }
    fn state_dump(&self) -> String {
        AdapterShared::state_dump(self)
    }
    fn unit_power(
        &self,
        address: Address,
        state: DevicePowerState,
    ) -> Result<UnitControlStatus, WaitError> {
        AdapterShared::unit_power(self, address, state)
    }
    fn adapter_power(&self, state: DevicePowerState) -> Result<AdapterControlStatus, WaitError> {
        AdapterShared::adapter_power(self, state)
    }
    fn prepare_rescan(&self) {
        AdapterShared::prepare_rescan(self)
    }
    fn units_changed(&self, added: &[Address], removed: &[Address]) {
        AdapterShared::units_changed(self, added, removed)
    }
    fn emit(&self, event: PortEvent) {
        self.emit_events(&mut vec![event]);
    }
    fn wmi(&self) -> &PortWmi {
        &self.wmi
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A running adapter: the handle upper layers hold. Cheap to clone; independent of the
/// miniport's type.
#[derive(Clone)]
pub struct Adapter {
    inner: Arc<dyn AdapterObject>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("buses", &self.configuration().number_of_buses)
            .finish_non_exhaustive()
    }
}

impl Adapter {
    pub(crate) fn from_shared<M: Miniport>(s: Arc<AdapterShared<M>>) -> Self {
        Adapter { inner: s }
    }

    pub(crate) fn inner(&self) -> &dyn AdapterObject {
        &*self.inner
    }

    /// Registers a completion sink and returns the submitter that uses it. Register once per
    /// submitter (per connection / per class-driver queue), not per request.
    pub fn submitter(&self, sink: Arc<dyn CompletionSink>) -> Submitter {
        let sink = self.inner.register_sink(sink);
        Submitter {
            adapter: self.clone(),
            sink,
        }
    }

    /// Submits `srb` and blocks until it completes (tests, scans, management). Returns
    /// [`WaitError::WouldDeadlock`] when called from a completion or event sink.
    pub fn execute_and_wait(&self, srb: Srb) -> Result<Srb, WaitError> {
        self.inner.execute_and_wait(srb)
    }

    /// Runs one port tick now (what the timer does every `PortOptions::tick`).
    pub fn tick(&self) {
        self.inner.tick()
    }

    /// Shuts the adapter down: a caching adapter first gets SRB_FUNCTION_SHUTDOWN per LU
    /// (bounded by `default_timeout`), then queued requests complete as REQUEST_FLUSHED, the buses are reset
    /// so the miniport returns what it holds, anything left completes as BUS_RESET, the adapter
    /// is stopped (`adapter_control(StopAdapter)`, `adapter_state(restore)`). Later submissions
    /// complete at once with NO_HBA. Blocks until done.
    pub fn shutdown(&self) -> Result<(), WaitError> {
        self.inner.shutdown()
    }

    /// Stops the adapter (`ScsiStopAdapter`): new and queued requests are held in the port (task
    /// management and the port's own requests still run), a caching adapter gets
    /// SRB_FUNCTION_FLUSH per LU, the requests in the miniport finish, then
    /// `adapter_control(StopAdapter)`. Blocks until stopped or `timeout`;
    /// [`WaitError::Unsupported`] if the miniport cannot stop.
    pub fn stop(&self, timeout: Duration) -> Result<(), WaitError> {
        self.inner.stop(timeout)
    }

    /// Restarts a stopped adapter (`ScsiSetRunningConfig` + `ScsiRestartAdapter`, or
    /// `initialize` again) and resumes the held requests. Blocks until done.
    pub fn restart(&self, timeout: Duration) -> Result<(), WaitError> {
        self.inner.restart(timeout)
    }

    /// The configuration `find_adapter` produced (max transfer length, buses, ...).
    pub fn configuration(&self) -> &PortConfiguration {
        self.inner.configuration()
    }

    /// The options the adapter runs with.
    pub fn options(&self) -> &PortOptions {
        self.inner.options()
    }

    /// Adapter-wide I/O statistics.
    pub fn statistics(&self) -> Statistics {
        self.inner.statistics()
    }

    /// Statistics of one LU (`None` if the port never addressed it).
    pub fn lu_statistics(&self, address: Address) -> Option<Statistics> {
        self.inner.lu_statistics(address)
    }

    /// Port-level counters (late completions, spurious interrupts, ...).
    pub fn port_counters(&self) -> PortCounters {
        self.inner.port_counters()
    }

    /// The most recent error-log entries (`ScsiPortLogError`, timeouts).
    pub fn error_log(&self) -> Vec<ErrorLogEntry> {
        self.inner.error_log()
    }

    /// Subscribes to resets, bus changes and WMI events.
    pub fn subscribe(&self, sink: Arc<dyn PortEventSink>) {
        self.inner.subscribe(sink)
    }

    /// The WMI data blocks of the adapter (the seed's REGINFO): the port's statistics blocks
    /// ([`crate::wmi::blocks`]) first, then the miniport's if it is a WMI data provider.
    /// Blocks until the miniport answers; not from a sink.
    pub fn wmi_reg_info(&self) -> Result<Vec<WmiBlock>, WmiError> {
        self.inner.wmi().reg_info(&*self.inner)
    }

    /// QUERY_ALL_DATA: every instance of block `guid`, in a buffer of `buffer_size` bytes.
    /// Returns the bytes used, or [`WmiError::BufferTooSmall`] with the size needed (a retry
    /// with that size succeeds if nothing changed). Event-only blocks answer
    /// [`WmiError::EventOnly`]. Blocks; not from a sink.
    pub fn wmi_query_all(&self, guid: &[u8; 16], buffer_size: u32) -> Result<Vec<u8>, WmiError> {
        self.inner
            .wmi()
            .query(&*self.inner, guid, None, buffer_size)
    }

    /// QUERY_SINGLE_INSTANCE: instance `instance` of block `guid` (see
    /// [`wmi_query_all`](Self::wmi_query_all)).
    pub fn wmi_query_single(
        &self,
        guid: &[u8; 16],
        instance: u32,
        buffer_size: u32,
    ) -> Result<Vec<u8>, WmiError> {
        self.inner
            .wmi()
            .query(&*self.inner, guid, Some(instance), buffer_size)
    }

    /// CHANGE_SINGLE_INSTANCE: replaces instance `instance` of block `guid` with `data`.
    /// The port's blocks answer [`WmiError::ReadOnly`]; a provider's read-only block
    /// [`WmiError::Refused`]. Blocks; not from a sink.
    pub fn wmi_set_block(
        &self,
        guid: &[u8; 16],
        instance: u32,
        data: &[u8],
    ) -> Result<(), WmiError> {
        self.inner
            .wmi()
            .set(&*self.inner, guid, instance, None, data)
    }

    /// CHANGE_SINGLE_ITEM: sets item `item_id` of instance `instance` of block `guid`.
    pub fn wmi_set_item(
        &self,
        guid: &[u8; 16],
        instance: u32,
        item_id: u32,
        data: &[u8],
    ) -> Result<(), WmiError> {
        self.inner
            .wmi()
            .set(&*self.inner, guid, instance, Some(item_id), data)
    }

    /// EXECUTE_METHOD: runs method `method_id` of instance `instance` of block `guid` with
    /// `input`, allowing `buffer_size` bytes of output; returns the output, or
    /// [`WmiError::BufferTooSmall`] with the output size needed (the provider checks before
    /// acting, so the retry runs the method once). Blocks; not from a sink.
    pub fn wmi_execute_method(
        &self,
        guid: &[u8; 16],
        instance: u32,
        method_id: u32,
        input: &[u8],
        buffer_size: u32,
    ) -> Result<Vec<u8>, WmiError> {
        self.inner
            .wmi()
            .execute(&*self.inner, guid, instance, method_id, input, buffer_size)
    }

    /// Opens a consumer of block `guid`'s events ([`WmiControl::Event`]) or collection
    /// ([`WmiControl::DataBlock`]). The first consumer of a (GUID, control) makes the port send
    /// ENABLE_EVENTS (miniport blocks) or ENABLE_COLLECTION (expensive miniport blocks only) and
    /// fails if the provider refuses; the others only count. Dropping the last consumer sends
    /// the DISABLE, once. Blocks; not from a sink.
    pub fn wmi_enable(
        &self,
        guid: &[u8; 16],
        control: WmiControl,
    ) -> Result<WmiConsumer, WmiError> {
        self.inner.wmi().enable(self, guid, control, None)
    }

    /// Like [`wmi_enable`](Self::wmi_enable) with [`WmiControl::Event`], and the miniport's
    /// events of `guid` go to `sink` while the consumer lives (events of other GUIDs do not;
    /// every event still reaches the [`PortEventSink`]s as [`PortEvent::Wmi`]).
    pub fn wmi_subscribe(
        &self,
        guid: &[u8; 16],
        sink: Arc<dyn WmiEventSink>,
    ) -> Result<WmiConsumer, WmiError> {
        self.inner
            .wmi()
            .enable(self, guid, WmiControl::Event, Some(sink))
    }

    /// How many consumers of (`guid`, `control`) are open.
    pub fn wmi_consumers(&self, guid: &[u8; 16], control: WmiControl) -> u32 {
        self.inner.wmi().consumers(*guid, control)
    }

    /// The logical units the last scan found, with their INQUIRY data.
    pub fn logical_units(&self) -> Vec<LogicalUnitInfo> {
        self.inner.logical_units()
    }

    /// True when the adapter runs the Storport model ([`initialize_storport`]).
    pub fn is_storport(&self) -> bool {
        self.inner.is_storport()
    }

    /// True for a Storport adapter whose miniport chose
    /// [`SynchronizationModel::FullDuplex`](crate::SynchronizationModel::FullDuplex).
    pub fn is_full_duplex(&self) -> bool {
        self.inner.is_full_duplex()
    }

    /// A human-readable dump of the port's request state, for diagnosing a stuck request in
    /// tests: adapter flags (ready, hold-off, busy, paused, stopped), each LU's queues and
    /// flags (frozen, busy, paused, outstanding), the active slots and the requests waiting
    /// for a full-duplex `start_io`. Waits up to 1 s each for the interrupt lock and the
    /// deferred stage's token (and says so for one it cannot get); from a completion or
    /// event sink it returns a note instead (it would wait for itself). Any thread, no lock held.
    pub fn state_dump(&self) -> String {
        self.inner.state_dump()
    }

    /// Storport `ScsiUnitPower` (`HwStorUnitControl`): moves the LU at `address` to `state`.
    /// On success the port holds the LU's requests while it is in D3 and starts them again in
    /// D0. [`WaitError::Unsupported`] if the adapter is not Storport or its miniport does not
    /// support unit power; [`WaitError::WouldDeadlock`] from a sink.
    pub fn unit_power(
        &self,
        address: Address,
        state: DevicePowerState,
    ) -> Result<UnitControlStatus, WaitError> {
        self.inner.unit_power(address, state)
    }

    /// Storport `ScsiAdapterPower` (`HwStorAdapterControl`): moves the adapter to `state`. On
    /// success the port holds every request while it is in D3 and starts them again in D0.
    /// [`WaitError::Unsupported`] if not supported; [`WaitError::WouldDeadlock`] from a sink.
    pub fn adapter_power(
        &self,
        state: DevicePowerState,
    ) -> Result<AdapterControlStatus, WaitError> {
        self.inner.adapter_power(state)
    }

    /// The adapter's interrupt line (tests; the miniport gets it at `find_adapter`).
    pub fn interrupt_line(&self) -> InterruptLine {
        self.inner.interrupt_line()
    }

    /// Runs `f` under the interrupt lock with the miniport (if the adapter's miniport is `M`)
    /// and the port services, like `KeSynchronizeExecution`; notifications it latches are acted
    /// on afterwards. For tests and management paths.
    pub fn synchronize<M: Miniport, R>(
        &self,
        f: impl FnOnce(&mut M, &mut PortContext<'_, M>) -> R,
    ) -> Option<R> {
        let shared = self.inner.as_any().downcast_ref::<AdapterShared<M>>()?;
        Some(shared.synchronize(f))
    }

    /// Scans every bus again (INQUIRY per target/LUN, REPORT LUNS where supported), updates
    /// [`logical_units`](Self::logical_units) and returns the list. Blocks; not from a sink.
    pub fn rescan(&self) -> Vec<LogicalUnitInfo> {
        self.inner.prepare_rescan();
        let before = self.inner.logical_units();
        let lus = scan(self);
        if self.inner.is_storport() {
            let added: Vec<Address> = lus
                .iter()
                .filter(|l| !before.iter().any(|b| b.address == l.address))
                .map(|l| l.address)
                .collect();
            let removed: Vec<Address> = before
                .iter()
                .filter(|b| !lus.iter().any(|l| l.address == b.address))
                .map(|b| b.address)
                .collect();
            self.inner.units_changed(&added, &removed);
        }
        if self.inner.set_logical_units(lus.clone()) {
            self.inner.emit(PortEvent::LogicalUnitsChanged);
        }
        lus
    }
}

/// A submitter's handle: submits requests whose completions go to its [`CompletionSink`].
#[derive(Clone, Debug)]
pub struct Submitter {
    adapter: Adapter,
    sink: u32,
}

impl Submitter {
    /// Hands `srb` to the port. Never blocks on the miniport and never fails: every submitted
    /// request comes back exactly once through the sink — rejected ones (bad address, adapter
    /// shut down) at once with the reason in SrbStatus. May run the deferred stage (and so
    /// `start_io` and sinks) on the calling thread.
    pub fn submit(&self, srb: Srb) {
        self.adapter.inner.submit(self.sink, srb)
    }

    /// Hands every SRB of `srbs` to the port at once (drains it, keeping its capacity): one
    /// request for the deferred stage for the whole batch, so they start in one dispatch pass
    /// (and the miniport gets one `start_io_batch_done` for them). Otherwise like
    /// [`submit`](Self::submit).
    pub fn submit_batch(&self, srbs: &mut Vec<Srb>) {
        self.adapter.inner.submit_batch(self.sink, srbs)
    }

    /// [`submit`](Self::submit) of a boxed SRB: the port passes the box along (no copy of the
    /// SRB at each stage) and hands it back through [`CompletionSink::complete_boxed`]. For
    /// submitters that keep their SRBs boxed and reuse them.
    pub fn submit_boxed(&self, srb: Box<Srb>) {
        self.adapter.inner.submit_boxed(self.sink, srb)
    }

    /// [`submit_batch`](Self::submit_batch) of boxed SRBs (drains `srbs`).
    // The boxes travel on to the sink: moving them is the point.
    #[allow(clippy::vec_box)]
    pub fn submit_batch_boxed(&self, srbs: &mut Vec<Box<Srb>>) {
        self.adapter.inner.submit_batch_boxed(self.sink, srbs)
    }

    /// The adapter this submitter talks to.
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }
}

/// `ScsiPortInitialize`: registers miniport `M` (`driver_entry`), finds its adapters
/// (`find_adapter`, again while it sets `again`, on each bus probed), initializes each
/// (`adapter_state(save)`, `initialize`, `adapter_control(QuerySupportedControlTypes)`), starts
/// the port tick and scans the buses. Runs on the calling thread; returns the adapters found.
pub fn initialize<M: Miniport>(
    hw_context: M::HwContext,
    options: PortOptions,
) -> Result<Vec<Adapter>, InitializeError> {
    initialize_model::<M>(hw_context, options, |_, _| None)
}

/// `StorPortInitialize`: like [`initialize`], but the adapters run the Storport model:
/// `build_io` is called on the submitting thread without locks (possibly concurrently), requests
/// are pushed to `start_io` while the adapter (NumberOfRequests) and device queue depths allow —
/// NextRequest / NextLuRequest are not needed —, the miniport paces the port with `busy`,
/// `pause`, `device_busy`, `pause_device` and `set_device_queue_depth`, and BUSY is retried
/// without limit. The port forces TaggedQueuing, AutoRequestSense and MultipleRequestPerLu on,
/// as Storport does. `start_io` runs under the interrupt lock (half duplex) or, if `find_adapter`
/// set [`PortConfiguration::synchronization_model`] to
/// [`FullDuplex`](crate::SynchronizationModel::FullDuplex), the miniport's
/// `start_io_full_duplex` runs under a separate StartIo lock. After `initialize` the port
/// queries the unit-control and extended adapter-control types and sends
/// `PostHwInitialize`; each scan sends `PrepareForBusReScan` and `ScsiUnitStart` for new LUs.
pub fn initialize_storport<M: StorportMiniport>(
    hw_context: M::HwContext,
    options: PortOptions,
) -> Result<Vec<Adapter>, InitializeError> {
    initialize_model::<M>(hw_context, options, |m, config| {
        config.tagged_queuing = true;
        config.auto_request_sense = true;
        config.multiple_request_per_lu = true;
        let shared = m.shared();
        let for_build = shared.clone();
        let for_doorbell = shared.clone();
        let build_io: BuildIo = Box::new(move |srb: &mut Srb| M::build_io(&for_build, srb));
        let start_io = (config.synchronization_model == SynchronizationModel::FullDuplex).then(
            || -> StartIoFn<M> {
                Box::new(move |ctx: &mut StartIoContext<'_, M>, srb: SrbRef| {
                    M::start_io_full_duplex(&shared, ctx, srb)
                })
            },
        );
        let channel_done = start_io.as_ref().map(|_| -> ChannelDoneFn {
            Box::new(move |channel: u32| M::start_io_channel_done(&for_doorbell, channel))
        });
        Some(StorportHooks {
            build_io,
            start_io,
            unit_control: M::unit_control,
            adapter_control_ex: M::adapter_control_ex,
            message_interrupt: M::message_interrupt,
            channel_done,
        })
    })
}

fn initialize_model<M: Miniport>(
    mut hw_context: M::HwContext,
    options: PortOptions,
    storport: impl Fn(&M, &mut PortConfiguration) -> Option<StorportHooks<M>>,
) -> Result<Vec<Adapter>, InitializeError> {
    let hw = M::driver_entry();
    if hw.multiple_request_per_lu && !hw.auto_request_sense {
        return Err(InitializeError::InvalidInitData(
            "MultipleRequestPerLu requires AutoRequestSense",
        ));
    }
    let mut adapters = Vec::new();
    let mut failure = None;
    'buses: for bus in 0..options.buses_to_probe {
        let mut call = 0;
        loop {
            if adapters.len() as u32 >= options.max_adapters {
                break 'buses;
            }
            let mut config = PortConfiguration::from_init_data(&hw, bus);
            config.argument_string = options.argument_string.clone();
            if let Some(n) = options.number_of_requests {
                config.number_of_requests = n;
            }
            let line = InterruptLine::new();
            let mut ctx = FindAdapterContext {
                again: false,
                line: line.clone(),
                call,
            };
            let miniport = match M::find_adapter(&mut hw_context, &mut ctx, &mut config) {
                FindAdapterResult::Found(m) => m,
                FindAdapterResult::NotFound => break,
                FindAdapterResult::Error => {
                    failure = Some(InitializeError::FindAdapter {
                        bus,
                        result: "Error",
                    });
                    break;
                }
                FindAdapterResult::BadConfig => {
                    failure = Some(InitializeError::FindAdapter {
                        bus,
                        result: "BadConfig",
                    });
                    break;
                }
            };
            if let Some(model) = options.synchronization_model {
                config.synchronization_model = model;
            }
            let hooks = storport(&miniport, &mut config);
            if let Err(e) = validate(&config) {
                failure = Some(e);
            } else {
                let shared = AdapterShared::new(miniport, config, options.clone(), line, hooks);
                shared.subscribe(shared.wmi.event_router());
                if shared.start() {
                    let adapter = Adapter::from_shared(shared);
                    if options.scan {
                        adapter.rescan();
                    }
                    adapters.push(adapter);
                } else {
                    failure = Some(InitializeError::InitializeFailed);
                }
            }
            if !ctx.again {
                break;
            }
            call += 1;
        }
    }
    if adapters.is_empty() {
        return Err(failure.unwrap_or(InitializeError::NotFound));
    }
    Ok(adapters)
}

fn validate(c: &PortConfiguration) -> Result<(), InitializeError> {
    if c.number_of_buses == 0 || c.number_of_buses > 8 {
        return Err(InitializeError::BadConfiguration(
            "NumberOfBuses must be 1..=8",
        ));
    }
    if c.maximum_number_of_targets == 0
        || c.maximum_number_of_targets > crate::miniport::SCSI_MAXIMUM_TARGETS_PER_BUS
    {
        return Err(InitializeError::BadConfiguration(
            "MaximumNumberOfTargets must be 1..=128",
        ));
    }
    if c.maximum_number_of_logical_units == 0 {
        return Err(InitializeError::BadConfiguration(
            "MaximumNumberOfLogicalUnits must be at least 1",
        ));
    }
    if c.number_of_requests == 0 || c.number_of_requests > 65_536 {
        return Err(InitializeError::BadConfiguration(
            "NumberOfRequests must be 1..=65536",
        ));
    }
    Ok(())
}

/// Length of the INQUIRY data the scan asks for.
const SCAN_INQUIRY_LENGTH: u8 = 96;

enum Probe {
    /// Nothing answers at this address (selection timeout, no device): skip the target.
    NoTarget,
    /// The LU exists (qualifier 0) with this INQUIRY data.
    Present(Vec<u8>),
    /// The target answers but no LU is here (qualifier 1/3, ILLEGAL REQUEST).
    Absent { spc3_or_later: bool },
    /// Another error: stop probing this target's LUNs.
    Failed,
}

fn inquiry(adapter: &Adapter, address: Address) -> Probe {
    let timeout = adapter.options().scan_timeout;
    for _attempt in 0..3 {
        let Some(srb) = Srb::execute_scsi(address, &[0x12, 0, 0, 0, SCAN_INQUIRY_LENGTH, 0]) else {
            return Probe::Failed;
        };
        let mut srb = srb.with_data(
            vec![0; SCAN_INQUIRY_LENGTH as usize],
            SCAN_INQUIRY_LENGTH as u32,
            DataDirection::In,
        );
        srb.time_out_value = timeout;
        srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        let Ok(done) = adapter.execute_and_wait(srb) else {
            return Probe::Failed;
        };
        match done.srb_status.status() {
            SrbStatus::SUCCESS | SrbStatus::DATA_OVERRUN => {
                let n = (done.data_transfer_length as usize).min(done.data.len());
                let data = done.data[..n].to_vec();
                let qualifier = data.first().map_or(3, |b| b >> 5);
                let version = data.get(2).copied().unwrap_or(0);
                return if qualifier == 0 && !data.is_empty() {
                    Probe::Present(data)
                } else {
                    Probe::Absent {
                        spc3_or_later: version >= 5,
                    }
                };
            }
            SrbStatus::SELECTION_TIMEOUT
            | SrbStatus::NO_DEVICE
            | SrbStatus::INVALID_TARGET_ID
            | SrbStatus::INVALID_PATH_ID
            | SrbStatus::NO_HBA => return Probe::NoTarget,
            SrbStatus::INVALID_LUN => {
                return Probe::Absent {
                    spc3_or_later: false,
                };
            }
            SrbStatus::ERROR if done.sense().get(2).is_some_and(|k| k & 0x0F == 0x05) => {
                return Probe::Absent {
                    spc3_or_later: false,
                };
            }
            _ => continue,
        }
    }
    Probe::Failed
}

/// REPORT LUNS (select report 0): the single-level LUNs below 256 the target reports.
fn report_luns(adapter: &Adapter, address: Address) -> Option<Vec<u8>> {
    const LEN: u32 = 16 + 8 * 256;
    let cdb = [
        0xA0,
        0,
        0,
        0,
        0,
        0,
        (LEN >> 24) as u8,
        (LEN >> 16) as u8,
        (LEN >> 8) as u8,
        LEN as u8,
        0,
        0,
    ];
    let mut srb =
        Srb::execute_scsi(address, &cdb)?.with_data(vec![0; LEN as usize], LEN, DataDirection::In);
    srb.time_out_value = adapter.options().scan_timeout;
    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    let done = adapter.execute_and_wait(srb).ok()?;
    let s = done.srb_status.status();
    if s != SrbStatus::SUCCESS && s != SrbStatus::DATA_OVERRUN {
        return None;
    }
    let data = &done.data[..(done.data_transfer_length as usize).min(done.data.len())];
    let list_len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let entries = data.get(8..)?;
    let n = (list_len / 8).min(entries.len() / 8);
    let mut luns = Vec::with_capacity(n);
    for e in entries.chunks_exact(8).take(n) {
        // Peripheral device addressing, bus 0: byte 0 == 0, LUN in byte 1.
        if e[0] == 0 && e[2..].iter().all(|&b| b == 0) {
            luns.push(e[1]);
        }
    }
    luns.sort_unstable();
    luns.dedup();
    Some(luns)
}

/// The bus scan (`FdoScanAdapter`): INQUIRY on LUN 0 of every target except the initiator's own
/// id; REPORT LUNS on targets that claim SPC-3 or later, else sequential LUN probing.
pub(crate) fn scan(adapter: &Adapter) -> Vec<LogicalUnitInfo> {
    let c = adapter.configuration().clone();
    let mut found = Vec::new();
    for path in 0..c.number_of_buses {
        let own = c
            .initiator_bus_id
            .get(path as usize)
            .copied()
            .unwrap_or(0xFF);
        for target in 0..c.maximum_number_of_targets {
            if target == own {
                continue;
            }
            let lun0 = Address::new(path, target, 0);
            let spc3 = match inquiry(adapter, lun0) {
                Probe::NoTarget | Probe::Failed => continue,
                Probe::Present(inq) => {
                    let v = inq.get(2).copied().unwrap_or(0) >= 5;
                    found.push(LogicalUnitInfo {
                        address: lun0,
                        inquiry: inq,
                    });
                    v
                }
                Probe::Absent { spc3_or_later } => spc3_or_later,
            };
            if c.maximum_number_of_logical_units <= 1 {
                continue;
            }
            let reported = if spc3 {
                report_luns(adapter, lun0)
            } else {
                None
            };
            match reported {
                Some(luns) => {
                    for lun in luns {
                        if lun == 0 || lun >= c.maximum_number_of_logical_units {
                            continue;
                        }
                        let a = Address::new(path, target, lun);
                        if let Probe::Present(inq) = inquiry(adapter, a) {
                            found.push(LogicalUnitInfo {
                                address: a,
                                inquiry: inq,
                            });
                        }
                    }
                }
                None => {
                    for lun in 1..c.maximum_number_of_logical_units {
                        let a = Address::new(path, target, lun);
                        match inquiry(adapter, a) {
                            Probe::Present(inq) => found.push(LogicalUnitInfo {
                                address: a,
                                inquiry: inq,
                            }),
                            Probe::Absent { .. } => {}
                            Probe::NoTarget | Probe::Failed => break,
                        }
                    }
                }
            }
        }
    }
    found
}

/// Builds a port-function request (RELEASE_QUEUE, FLUSH_QUEUE, ...) for `address`.
pub fn queue_request(function: SrbFunction, address: Address) -> Srb {
    let mut srb = Srb::function(function, address);
    if function == SrbFunction::UnlockQueue {
        srb.flags.insert(SrbFlags::BYPASS_LOCKED_QUEUE);
    }
    srb
}
