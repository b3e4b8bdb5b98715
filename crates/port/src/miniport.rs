//! The miniport contract: the routine table ([`Miniport`]), registration data
//! ([`HwInitializationData`]) and the per-adapter configuration ([`PortConfiguration`]).

use crate::context::{PortContext, SrbRef, StartIoContext};
use crate::interrupt::InterruptLine;
use crate::srb::Address;
use crate::wmi::WmiProvider;

/// `SP_UNINITIALIZED_VALUE`: "not set / unlimited" in [`PortConfiguration`].
pub const SP_UNINITIALIZED_VALUE: u32 = 0xFFFF_FFFF;
/// Legacy maximum number of targets per bus (the default of `MaximumNumberOfTargets`).
pub const SCSI_MAXIMUM_TARGETS: u8 = 8;
/// Maximum targets per bus a miniport may declare.
pub const SCSI_MAXIMUM_TARGETS_PER_BUS: u8 = 128;
/// Legacy maximum number of LUs per target (the default of `MaximumNumberOfLogicalUnits`).
pub const SCSI_MAXIMUM_LOGICAL_UNITS: u8 = 8;
/// Maximum LUNs per target.
pub const SCSI_MAXIMUM_LUNS_PER_TARGET: u8 = 255;

/// `AdapterInterfaceType`. User-space adapters are `Internal`; the value is recorded, not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterfaceType {
    /// No bus: a virtual or in-process adapter.
    #[default]
    Internal,
    /// A PCI function (e.g. through VFIO).
    PciBus,
}

/// `HW_INITIALIZATION_DATA`: what a miniport's [`Miniport::driver_entry`] declares. The routine
/// pointers of the seed are the trait's methods; the extension sizes are the associated types
/// [`Miniport::LuExtension`] and [`Miniport::SrbExtension`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwInitializationData {
    /// `AdapterInterfaceType`.
    pub adapter_interface_type: InterfaceType,
    /// `MapBuffers`: the miniport reads/writes the data buffer itself (always true here: the
    /// buffer is a `Vec<u8>` in the SRB).
    pub map_buffers: bool,
    /// `NeedPhysicalAddresses`.
    pub need_physical_addresses: bool,
    /// `TaggedQueuing`: the HBA supports SCSI tagged queuing.
    pub tagged_queuing: bool,
    /// `AutoRequestSense`: the HBA returns sense data with CHECK CONDITION itself; otherwise the
    /// port issues REQUEST SENSE.
    pub auto_request_sense: bool,
    /// `MultipleRequestPerLu`: several requests per LU may be outstanding (requires autosense).
    pub multiple_request_per_lu: bool,
    /// `ReceiveEvent`.
    pub receive_event: bool,
    /// `NumberOfAccessRanges`.
    pub number_of_access_ranges: u32,
    /// `VendorId` (ignored for user-space adapters).
    pub vendor_id: Option<&'static str>,
    /// `DeviceId` (ignored for user-space adapters).
    pub device_id: Option<&'static str>,
}

impl Default for HwInitializationData {
    fn default() -> Self {
        Self {
            adapter_interface_type: InterfaceType::Internal,
            map_buffers: true,
            need_physical_addresses: false,
            tagged_queuing: false,
            auto_request_sense: false,
            multiple_request_per_lu: false,
            receive_event: false,
            number_of_access_ranges: 0,
            vendor_id: None,
            device_id: None,
        }
    }
}

/// `PORT_CONFIGURATION_INFORMATION`: pre-filled by the port from [`HwInitializationData`] and
/// [`PortOptions`](crate::PortOptions), completed by `find_adapter`, read-only afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfiguration {
    /// `SystemIoBusNumber`: which "bus" is being probed (0 .. `PortOptions::buses_to_probe`).
    pub system_io_bus_number: u32,
    /// `AdapterInterfaceType`.
    pub adapter_interface_type: InterfaceType,
    /// `BusInterruptLevel`: 0 = polled adapter (informational).
    pub bus_interrupt_level: u32,
    /// `MaximumTransferLength` in bytes; [`SP_UNINITIALIZED_VALUE`] = unlimited. The class
    /// driver splits transfers on it.
    pub maximum_transfer_length: u32,
    /// `NumberOfPhysicalBreaks`: maximum scatter/gather elements minus one.
    pub number_of_physical_breaks: u32,
    /// `AlignmentMask`.
    pub alignment_mask: u32,
    /// `NumberOfBuses` (PathIds).
    pub number_of_buses: u8,
    /// `InitiatorBusId[bus]`: the adapter's own SCSI id per bus (skipped by the scan).
    pub initiator_bus_id: [u8; 8],
    /// `MaximumNumberOfTargets` per bus.
    pub maximum_number_of_targets: u8,
    /// `MaximumNumberOfLogicalUnits` per target.
    pub maximum_number_of_logical_units: u8,
    /// `ScatterGather`.
    pub scatter_gather: bool,
    /// `Master` (bus-master DMA).
    pub master: bool,
    /// `CachesData`: the miniport receives FLUSH and SHUTDOWN.
    pub caches_data: bool,
    /// `AdapterScansDown`.
    pub adapter_scans_down: bool,
    /// `MapBuffers` (copied from [`HwInitializationData`]).
    pub map_buffers: bool,
    /// `NeedPhysicalAddresses`.
    pub need_physical_addresses: bool,
    /// `TaggedQueuing` (may be changed per adapter).
    pub tagged_queuing: bool,
    /// `AutoRequestSense` (may be changed per adapter).
    pub auto_request_sense: bool,
    /// `MultipleRequestPerLu` (may be changed per adapter).
    pub multiple_request_per_lu: bool,
    /// `ReceiveEvent`.
    pub receive_event: bool,
    /// `WmiDataProvider`: the port forwards SRB_FUNCTION_WMI to `start_io`.
    pub wmi_data_provider: bool,
    /// Number of SRB slots (with their tags and SRB extensions) preallocated for this adapter
    /// (registry `NumberOfRequests`): how many requests can be in the miniport at once — the
    /// adapter's queue depth (Storport's `MaxNumberOfIO`).
    pub number_of_requests: u32,
    /// Most requests outstanding per LU on a tagged / multiple-request adapter (Storport: the
    /// initial device queue depth, `InitialLunQueueDepth`, changed per LU with
    /// `set_device_queue_depth`).
    pub max_queue_depth_per_lu: u32,
    /// `ArgumentString` (`DriverParameter`).
    pub argument_string: Option<String>,
    /// Storport `SynchronizationModel`: which lock `start_io` runs under (ignored by the SCSI
    /// Port model, where it is always the interrupt lock).
    pub synchronization_model: SynchronizationModel,
    /// Storport `BusResetHoldTime` in µs: how long the port holds requests after a reset
    /// (ResetDetected or a port bus reset), rounded up to port ticks; 0 = no hold.
    /// [`SP_UNINITIALIZED_VALUE`] (the default) keeps the port's `reset_hold_off_ticks`.
    /// Ignored by the SCSI Port model.
    pub bus_reset_hold_time: u32,
    /// Storport `StorPortInitializePerfOpts(STOR_PERF_CONCURRENT_CHANNELS)`: how many
    /// concurrent channels `start_io` runs on (0 or 1: one StartIo lock, as before; at most
    /// [`MAX_MESSAGES`](crate::MAX_MESSAGES)). Needs [`SynchronizationModel::FullDuplex`]
    /// (ignored otherwise, and by the SCSI Port model). With `n > 1` the port takes no single
    /// StartIo lock: each channel has its own, and `start_io_full_duplex` runs concurrently on
    /// different channels ([`StartIoContext::channel`](crate::StartIoContext::channel)); a
    /// request goes to the channel of the thread that submitted it
    /// ([`current_processor`](crate::current_processor) `% n`). Routines that need the whole
    /// adapter (`reset_bus`, the timer, adapter and unit control) take every channel's lock.
    pub concurrent_channels: u32,
}

/// Storport `STOR_SYNCHRONIZATION_MODEL`, set by `find_adapter` in
/// [`PortConfiguration::synchronization_model`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynchronizationModel {
    /// `StorSynchronizeHalfDuplex` (0): `start_io` runs under the interrupt lock, like every
    /// other routine; the port calls [`Miniport::start_io`].
    #[default]
    HalfDuplex,
    /// `StorSynchronizeFullDuplex` (1): the port has a separate *StartIo lock*. It calls
    /// [`StorportMiniport::start_io_full_duplex`] under the StartIo lock only, so it may run
    /// while another thread is in `interrupt` (under the interrupt lock); two `start_io` calls
    /// never overlap. `interrupt` runs on the thread that raises the interrupt line. The
    /// other routines (`initialize`, the timer routine, `reset_bus`, adapter and unit control)
    /// run under both locks.
    FullDuplex,
}

impl PortConfiguration {
    pub(crate) fn from_init_data(hw: &HwInitializationData, bus: u32) -> Self {
        Self {
            system_io_bus_number: bus,
            adapter_interface_type: hw.adapter_interface_type,
            bus_interrupt_level: 0,
            maximum_transfer_length: SP_UNINITIALIZED_VALUE,
            number_of_physical_breaks: 17,
            alignment_mask: 0,
            number_of_buses: 1,
            initiator_bus_id: [0xFF; 8],
            maximum_number_of_targets: SCSI_MAXIMUM_TARGETS,
            maximum_number_of_logical_units: SCSI_MAXIMUM_LOGICAL_UNITS,
            scatter_gather: false,
            master: false,
            caches_data: false,
            adapter_scans_down: false,
            map_buffers: hw.map_buffers,
            need_physical_addresses: hw.need_physical_addresses,
            tagged_queuing: hw.tagged_queuing,
            auto_request_sense: hw.auto_request_sense,
            multiple_request_per_lu: hw.multiple_request_per_lu,
            receive_event: hw.receive_event,
            wmi_data_provider: false,
            number_of_requests: 256,
            max_queue_depth_per_lu: 64,
            argument_string: None,
            synchronization_model: SynchronizationModel::HalfDuplex,
            bus_reset_hold_time: SP_UNINITIALIZED_VALUE,
            concurrent_channels: 0,
        }
    }

    /// True when several requests per LU may be in the miniport (tagged or multi-request).
    pub fn queues_per_lu(&self) -> bool {
        self.tagged_queuing || self.multiple_request_per_lu
    }
}

/// What `find_adapter` reports (`SP_RETURN_*`).
pub enum FindAdapterResult<M> {
    /// `SP_RETURN_FOUND`: the adapter, i.e. the initialized device extension.
    Found(M),
    /// `SP_RETURN_NOT_FOUND`: no adapter of this miniport on this bus.
    NotFound,
    /// `SP_RETURN_ERROR`: an adapter was found but its configuration could not be obtained.
    Error,
    /// `SP_RETURN_BAD_CONFIG`: the supplied configuration is inconsistent.
    BadConfig,
}

impl<M> std::fmt::Debug for FindAdapterResult<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FindAdapterResult::Found(_) => "Found",
            FindAdapterResult::NotFound => "NotFound",
            FindAdapterResult::Error => "Error",
            FindAdapterResult::BadConfig => "BadConfig",
        })
    }
}

/// The per-call context of `find_adapter` (the seed's `HwContext`/`BusInformation`/`Again`).
#[derive(Debug)]
pub struct FindAdapterContext {
    pub(crate) again: bool,
    pub(crate) line: InterruptLine,
    pub(crate) call: u32,
}

impl FindAdapterContext {
    /// `*Again = TRUE`: call `find_adapter` again (with a fresh extension) because another
    /// adapter of this miniport may exist. Must stay false with NotFound / BadConfig.
    pub fn set_again(&mut self, again: bool) {
        self.again = again;
    }
    /// The value of `Again` so far.
    pub fn again(&self) -> bool {
        self.again
    }
    /// The interrupt line of the adapter being found: give it to the "hardware" (a completion
    /// thread, a simulated HBA) so it can [`raise`](InterruptLine::raise) the interrupt.
    pub fn interrupt_line(&self) -> InterruptLine {
        self.line.clone()
    }
    /// Message-signaled interrupts: `count` message lines (ids `0..count`); see
    /// [`InterruptLine::messages`]. Raising one calls `StorportMiniport::message_interrupt`.
    pub fn message_interrupt_lines(&self, count: u32) -> Vec<InterruptLine> {
        self.line.messages(count)
    }
    /// How many times `find_adapter` was called before on this bus (0 for the first call).
    pub fn call_index(&self) -> u32 {
        self.call
    }
}

/// `SCSI_ADAPTER_CONTROL_TYPE` with its parameter.
#[derive(Debug)]
pub enum AdapterControl<'a> {
    /// `ScsiQuerySupportedControlTypes`: set an entry of the list for each supported type.
    QuerySupportedControlTypes(&'a mut SupportedControlTypeList),
    /// `ScsiStopAdapter`: no requests are outstanding; mask interrupts and stop all work.
    StopAdapter,
    /// `ScsiRestartAdapter`: re-initialize after a stop; extensions are intact.
    RestartAdapter,
    /// `ScsiSetBootConfig`: restore settings the "BIOS" needs, after a stop.
    SetBootConfig,
    /// `ScsiSetRunningConfig`: restore run-time settings, before a restart.
    SetRunningConfig,
}

/// The control types without parameters, as indices of [`SupportedControlTypeList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdapterControlType {
    /// ScsiQuerySupportedControlTypes = 0.
    QuerySupportedControlTypes = 0,
    /// ScsiStopAdapter = 1.
    StopAdapter = 1,
    /// ScsiRestartAdapter = 2.
    RestartAdapter = 2,
    /// ScsiSetBootConfig = 3.
    SetBootConfig = 3,
    /// ScsiSetRunningConfig = 4.
    SetRunningConfig = 4,
}

/// `SCSI_SUPPORTED_CONTROL_TYPE_LIST`: all false until the miniport says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SupportedControlTypeList {
    supported: [bool; 5],
}

impl SupportedControlTypeList {
    /// `MaxControlType`.
    pub const MAX_CONTROL_TYPE: usize = 5;
    /// Marks `t` supported.
    pub fn set(&mut self, t: AdapterControlType) {
        self.supported[t as usize] = true;
    }
    /// True when `t` was marked supported.
    pub fn is_supported(&self, t: AdapterControlType) -> bool {
        self.supported[t as usize]
    }
}

/// `SCSI_ADAPTER_CONTROL_STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterControlStatus {
    /// ScsiAdapterControlSuccess.
    Success,
    /// ScsiAdapterControlUnsuccessful.
    Unsuccessful,
}

/// A one-shot routine handed over with [`PortContext::request_timer_call`] (`HwScsiTimer`) or
/// with the enable/disable-interrupts notifications. Runs under the interrupt lock except the
/// enable-interrupts callback (see [`PortContext::call_enable_interrupts`]).
pub type HwRoutine<M> = fn(&mut M, &mut PortContext<'_, M>);

/// The routine table of a SCSI miniport driver.
///
/// The implementing type is the device extension: the port creates one per adapter from
/// [`find_adapter`](Miniport::find_adapter) and keeps it behind the adapter's *interrupt lock*,
/// so every routine below except `driver_entry` and `find_adapter` gets `&mut self` and never
/// overlaps another routine of the same adapter — a miniport needs no locks of its own. (A
/// full-duplex Storport adapter's `start_io` is the one exception: it is
/// [`StorportMiniport::start_io_full_duplex`], without `&mut self`.)
/// Each routine receives the port's services as [`PortContext`]: it may read and complete
/// requests and latch notifications, which the port acts on after the routine returns.
///
/// Required: `driver_entry`, `find_adapter`, `initialize`, `start_io`, `reset_bus`. Optional
/// (default methods): `interrupt`, `dma_started`, `adapter_state`, `adapter_control`, `wmi`.
/// The timer and enable/disable-interrupts routines are plain `fn` values passed with their
/// notification, as in the seed.
pub trait Miniport: Sized + Send + 'static {
    /// The `HwContext` given to [`initialize`](crate::initialize) and passed to every
    /// `find_adapter` call, e.g. the configuration of the adapters to create.
    type HwContext: Send;
    /// Per-LU extension (`SpecificLuExtensionSize`): created with `Default` for each LU the
    /// port addresses, read with [`PortContext::lu_extension`].
    type LuExtension: Default + Send + 'static;
    /// Per-request extension (`SrbExtensionSize`): one preallocated per SRB slot, *not* reset
    /// between requests, read with [`PortContext::srb_extension`].
    type SrbExtension: Default + Send + 'static;

    /// `DriverEntry`: the miniport's registration data. Called once per
    /// [`initialize`](crate::initialize), on the caller's thread, without locks.
    fn driver_entry() -> HwInitializationData;

    /// `HwScsiFindAdapter`: look for an adapter on `config.system_io_bus_number`, fill in
    /// `config` (buses, targets, LUs, transfer limits, caching, WMI...) and return the new
    /// device extension. Set `ctx.set_again(true)` to be called again for another adapter.
    /// Runs on the caller of [`initialize`](crate::initialize) without locks.
    fn find_adapter(
        hw_context: &mut Self::HwContext,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self>;

    /// `HwScsiInitialize`: initialize the adapter; false fails the adapter. Under the interrupt
    /// lock; may latch ResetDetected or a timer request.
    fn initialize(&mut self, port: &mut PortContext<'_, Self>) -> bool;

    /// `HwScsiStartIo`: start `srb` (read it with `port.srb(&srb)`). Complete it with
    /// [`PortContext::request_complete`] now or later (keep the [`SrbRef`] for later), and say
    /// when another request may be started with [`PortContext::next_request`] or
    /// [`PortContext::next_lu_request`]. Under the interrupt lock. Returns false for a request it
    /// could not even start (it must still complete it).
    fn start_io(&mut self, port: &mut PortContext<'_, Self>, srb: SrbRef) -> bool;

    /// The end of a run of [`start_io`](Miniport::start_io) calls: the port calls it under the
    /// interrupt lock after it has started what it could in one pass of its deferred stage
    /// (one or many requests), and always before it calls any other routine — so a miniport may
    /// queue work in `start_io` and hand it to its hardware here in one go (the doorbell; Linux
    /// blk-mq's `commit_rqs`). It may complete requests and latch notifications like any
    /// routine. Half-duplex adapters only (a full-duplex `start_io` runs under the StartIo lock,
    /// outside this order). Default: nothing.
    fn start_io_batch_done(&mut self, port: &mut PortContext<'_, Self>) {
        let _ = port;
    }

    /// `HwScsiResetBus`: reset bus `path_id` and complete its outstanding requests with
    /// BUS_RESET (e.g. `port.complete_requests(AddressFilter::bus(path_id), BUS_RESET)`), then
    /// latch NextRequest. Under the interrupt lock.
    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, path_id: u8) -> bool;

    /// `HwScsiInterrupt`: the adapter's [`InterruptLine`] was raised. Return false if the
    /// adapter did not interrupt (counted as spurious). Under the interrupt lock. A miniport
    /// without an interrupt routine polls through its timer.
    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        let _ = port;
        false
    }

    /// `HwScsiDmaStarted`: the system DMA transfer requested with
    /// [`PortContext::io_map_transfer`] is programmed; start the adapter's side. Under the
    /// interrupt lock.
    fn dma_started(&mut self, port: &mut PortContext<'_, Self>) {
        let _ = port;
    }

    /// `HwScsiAdapterState`: save (`save == true`, after `find_adapter`) or restore (at
    /// shutdown) the adapter state. Under the interrupt lock.
    fn adapter_state(&mut self, save: bool) -> bool {
        let _ = save;
        true
    }

    /// `HwScsiAdapterControl`. Queried once after initialization; afterwards the port issues
    /// only the supported types. Under the interrupt lock.
    fn adapter_control(
        &mut self,
        port: &mut PortContext<'_, Self>,
        control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        let _ = (port, control);
        AdapterControlStatus::Unsuccessful
    }

    /// The WMI provider (the six `HwScsiWmi*` routines), if the adapter is a WMI data provider.
    /// Used by [`crate::wmi::dispatch`] when `start_io` receives an `SrbFunction::Wmi` request.
    fn wmi(&mut self) -> Option<&mut dyn WmiProvider> {
        None
    }
}

/// The Storport additions to the routine table. A miniport that implements this trait can run
/// under both models ([`initialize`](crate::initialize) and
/// [`initialize_storport`](crate::initialize_storport)); one that does not keeps working under
/// the SCSI Port model unchanged.
///
/// Storport calls `HwStorBuildIo` without any lock, possibly on several threads at once, while
/// another thread may be inside a locked routine. So `build_io` cannot see the locked device
/// extension: it gets the request and the miniport's [`Shared`](StorportMiniport::Shared) part —
/// state safe to share (`Sync`: atomics, immutable configuration, its own locks) that the port
/// keeps beside the locked miniport. In this implementation `build_io` runs on the submitting
/// thread before the request enters the port's queues, so the per-slot SRB extension (bound to
/// the slot assigned when the request starts) is not available to it yet.
pub trait StorportMiniport: Miniport {
    /// The part of the device extension `build_io` may use without the lock.
    type Shared: Send + Sync + 'static;

    /// The shared part; called once, after `find_adapter`.
    fn shared(&self) -> std::sync::Arc<Self::Shared>;

    /// `HwStorBuildIo`: prepare `srb` (translate, validate, precompute) without locks. Return
    /// false to finish the request here: set its SrbStatus and the port completes it without
    /// calling `start_io`. Only EXECUTE_SCSI requests are built.
    fn build_io(shared: &Self::Shared, srb: &mut crate::Srb) -> bool {
        let _ = (shared, srb);
        true
    }

    /// `HwStorStartIo` of a full-duplex adapter
    /// ([`SynchronizationModel::FullDuplex`]): called under the *StartIo lock* only, never
    /// twice at once, possibly while another thread runs `interrupt` under the interrupt lock.
    ///
    /// It cannot have `&mut self` (the device extension is the interrupt lock's): it sees the
    /// miniport's [`Shared`](StorportMiniport::Shared) part and a [`StartIoContext`] that holds
    /// the request being started ("in hand"): read and change it with `port.srb_mut(&srb)`,
    /// complete it with `port.request_complete(srb)`. To touch state shared with the interrupt
    /// routine (the device extension, LU and SRB extensions, a request queue the ISR reaps),
    /// use [`StartIoContext::synchronize_access`] (`StorPortSynchronizeAccess`): it runs a
    /// closure with `&mut self` and a [`PortContext`] under the interrupt lock. Give an
    /// [`SrbRef`] to the interrupt side (or the "hardware") only that way: `synchronize_access`
    /// hands the request over to the interrupt side's table first; a request kept in hand is
    /// handed over only after `start_io` returns (possibly after later `start_io` calls of the
    /// same batch), and completing it from elsewhere before that is a dropped late completion.
    ///
    /// The default runs [`Miniport::start_io`] inside `synchronize_access`, i.e. behaves like
    /// half duplex.
    fn start_io_full_duplex(
        shared: &Self::Shared,
        port: &mut StartIoContext<'_, Self>,
        srb: SrbRef,
    ) -> bool {
        let _ = shared;
        port.synchronize_access(move |m, ctx| m.start_io(ctx, srb))
    }

    /// The doorbell of a full-duplex adapter: called under channel `channel`'s StartIo lock
    /// after a run of `start_io_full_duplex` calls on it, once the requests they left in hand
    /// are in the interrupt side's table (so the "hardware" may complete them from now on).
    /// A miniport that stages its I/O in `start_io` hands it to the hardware here. Default:
    /// nothing.
    fn start_io_channel_done(shared: &Self::Shared, channel: u32) {
        let _ = (shared, channel);
    }

    /// `HwMSInterruptRoutine`: message-signaled interrupt `message_id` (a line from
    /// [`FindAdapterContext::message_interrupt_lines`]) was raised. Runs under the interrupt
    /// lock (`InterruptSynchronizeAll`), on the raising thread of a full-duplex adapter (in the
    /// deferred stage when the lock is busy), like `interrupt`. Should service only that
    /// message's work (its channel's completions). Default: the plain interrupt routine.
    fn message_interrupt(&mut self, port: &mut PortContext<'_, Self>, message_id: u32) -> bool {
        let _ = message_id;
        self.interrupt(port)
    }

    /// `HwStorUnitControl`: per-LU control (query supported types, start, power, removal).
    /// Queried once after `initialize`; afterwards the port issues only supported types:
    /// `Start` for each LU the scan finds, `SurpriseRemoval` for one that disappears, `Power`
    /// from [`Adapter::unit_power`](crate::Adapter::unit_power). Runs under the interrupt lock
    /// (and the StartIo lock when full duplex). Default: nothing supported.
    fn unit_control(
        &mut self,
        port: &mut PortContext<'_, Self>,
        control: UnitControl<'_>,
    ) -> UnitControlStatus {
        let _ = (port, control);
        UnitControlStatus::Unsuccessful
    }

    /// `HwStorAdapterControl` for the Storport control types after ScsiSetRunningConfig (§8.9;
    /// the first five stay in [`Miniport::adapter_control`]). Queried once after `initialize`;
    /// the port issues `PostHwInitialize` right after the query, `PrepareForBusReScan` before
    /// every bus scan and `AdapterPower` from [`Adapter::adapter_power`](crate::Adapter::adapter_power).
    /// Runs under the interrupt lock (and the StartIo lock when full duplex). Default: nothing
    /// supported.
    fn adapter_control_ex(
        &mut self,
        port: &mut PortContext<'_, Self>,
        control: StorAdapterControl<'_>,
    ) -> AdapterControlStatus {
        let _ = (port, control);
        AdapterControlStatus::Unsuccessful
    }
}

/// Device power state for [`UnitControl::Power`] and [`StorAdapterControl::AdapterPower`]
/// (`STOR_POWER_ACTION` / `STOR_DEVICE_POWER_STATE`, reduced to on and off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePowerState {
    /// D0: working.
    D0,
    /// D3: off; the port holds the LU's (or adapter's) requests while it is off.
    D3,
}

/// `SCSI_UNIT_CONTROL_TYPE` with its parameters (the modelled subset).
#[derive(Debug)]
pub enum UnitControl<'a> {
    /// `ScsiQuerySupportedUnitControlTypes`: mark each supported type.
    QuerySupportedUnitControlTypes(&'a mut SupportedUnitControlTypeList),
    /// `ScsiUnitStart`: the LU was found and is about to get I/O.
    Start(Address),
    /// `ScsiUnitPower`: move the LU to a power state (replaces a per-LU SRB_FUNCTION_POWER).
    /// The port holds the LU's requests while it is in D3.
    Power {
        /// The unit.
        address: Address,
        /// The new state.
        state: DevicePowerState,
    },
    /// `ScsiUnitSurpriseRemoval`: the LU disappeared (a rescan no longer finds it).
    SurpriseRemoval(Address),
}

/// The unit control types, as indices of [`SupportedUnitControlTypeList`] (values of
/// `SCSI_UNIT_CONTROL_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UnitControlType {
    /// ScsiQuerySupportedUnitControlTypes = 0.
    QuerySupportedUnitControlTypes = 0,
    /// ScsiUnitStart = 2.
    Start = 2,
    /// ScsiUnitPower = 3.
    Power = 3,
    /// ScsiUnitSurpriseRemoval = 10.
    SurpriseRemoval = 10,
}

/// `SCSI_SUPPORTED_CONTROL_TYPE_LIST` for unit control: all false until the miniport says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SupportedUnitControlTypeList {
    supported: [bool; 16],
}

impl SupportedUnitControlTypeList {
    /// `ScsiUnitControlMax`.
    pub const MAX_CONTROL_TYPE: usize = 15;
    /// Marks `t` supported.
    pub fn set(&mut self, t: UnitControlType) {
        self.supported[t as usize] = true;
    }
    /// True when `t` was marked supported.
    pub fn is_supported(&self, t: UnitControlType) -> bool {
        self.supported[t as usize]
    }
}

/// `SCSI_UNIT_CONTROL_STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitControlStatus {
    /// ScsiUnitControlSuccess.
    Success,
    /// ScsiUnitControlUnsuccessful.
    Unsuccessful,
}

/// The Storport adapter-control types after `ScsiSetRunningConfig` (the modelled subset).
#[derive(Debug)]
pub enum StorAdapterControl<'a> {
    /// `ScsiQuerySupportedControlTypes` for the extended types: mark each supported one.
    QuerySupportedControlTypes(&'a mut SupportedStorAdapterControlTypeList),
    /// `ScsiAdapterPower`: move the adapter to a power state; in D3 the port holds every
    /// request.
    AdapterPower(DevicePowerState),
    /// `ScsiAdapterPrepareForBusReScan`: a bus scan is about to start.
    PrepareForBusReScan,
    /// `ScsiAdapterPostHwInitialize`: initialization is complete (after the control-type
    /// queries, before the first scan).
    PostHwInitialize,
}

/// The extended adapter control types, as indices of [`SupportedStorAdapterControlTypeList`]
/// (values of `SCSI_ADAPTER_CONTROL_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StorAdapterControlType {
    /// ScsiAdapterPower = 6.
    AdapterPower = 6,
    /// ScsiAdapterPrepareForBusReScan = 11.
    PrepareForBusReScan = 11,
    /// ScsiAdapterPostHwInitialize = 23.
    PostHwInitialize = 23,
}

/// Which extended adapter control types the miniport supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SupportedStorAdapterControlTypeList {
    supported: [bool; 32],
}

impl SupportedStorAdapterControlTypeList {
    /// Marks `t` supported.
    pub fn set(&mut self, t: StorAdapterControlType) {
        self.supported[t as usize] = true;
    }
    /// True when `t` was marked supported.
    pub fn is_supported(&self, t: StorAdapterControlType) -> bool {
        self.supported[t as usize]
    }
}
