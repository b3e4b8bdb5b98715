//! A scripted test miniport for the port's own tests and for other crates' tests.
//!
//! [`ScriptedMiniport`] answers INQUIRY, REPORT LUNS, REQUEST SENSE and TEST UNIT READY for the
//! LUs its [`ScriptConfig`] lists, and for everything else does what the request asks through a
//! vendor-specific *scripted CDB* ([`Behaviour::cdb`]): complete inline, later from its
//! interrupt (in order, reversed or shuffled), never (to time out), BUSY a given number of
//! times, CHECK CONDITION with sense, a status, an underrun, system DMA, a reported reset, a bus
//! change or a WMI event. Other CDBs get [`ScriptConfig::default_behaviour`]. It records what
//! the port did to it in [`ScriptCounters`] and, when asked, a start log.
//!
//! The test holds an `Arc<Script>` (the `HwContext`) to steer the "hardware"
//! ([`Script::fire`] raises the adapter's interrupt) and to read the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::context::{PortContext, SrbRef, StartIoContext, WmiEvent};
use crate::interrupt::InterruptLine;
use crate::miniport::{
    AdapterControl, AdapterControlStatus, AdapterControlType, DevicePowerState, FindAdapterContext,
    FindAdapterResult, HwInitializationData, Miniport, PortConfiguration, SP_UNINITIALIZED_VALUE,
    StorAdapterControl, StorAdapterControlType, SynchronizationModel, UnitControl,
    UnitControlStatus, UnitControlType,
};
use crate::srb::{
    Address, AddressFilter, Srb, SrbFlags, SrbFunction, SrbId, SrbStatus, scsi_status,
};
use crate::wmi::{self, WmiGuidRegInfo, WmiProvider, WmiResult};

/// Operation code of the scripted CDB (vendor specific).
pub const SCRIPTED_OPCODE: u8 = 0xC1;

/// The GUID of the scripted miniport's WMI data block (its counters).
pub const SCRIPT_WMI_GUID: [u8; 16] = *b"scsiport-script!";

/// What the scripted miniport does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Complete in `start_io` with SUCCESS (DATA_IN buffers are filled with 0xA5).
    Inline,
    /// Hold it; complete with SUCCESS when the test fires the interrupt ([`Script::fire`]).
    Interrupt,
    /// Never complete it (it times out, or an abort or reset takes it).
    Never,
    /// Answer BUSY this many more times, then complete inline with SUCCESS.
    Busy(u8),
    /// CHECK CONDITION with this sense key / ASC / ASCQ (autosense if the adapter has it,
    /// otherwise the sense waits for the port's REQUEST SENSE).
    CheckCondition {
        /// Sense key.
        key: u8,
        /// Additional sense code.
        asc: u8,
        /// Additional sense code qualifier.
        ascq: u8,
    },
    /// Complete inline with this SRB status (and SCSI status GOOD).
    Status(u8),
    /// Complete inline with DATA_OVERRUN and half the requested length (an underrun).
    Underrun,
    /// System DMA: `io_map_transfer` in `start_io`, complete in `dma_started`.
    SystemDma,
    /// Report a bus reset (ResetDetected), completing every held request with BUS_RESET, and
    /// complete this one with SUCCESS.
    ResetDetected,
    /// Report a bus change (BusChangeDetected) and complete with SUCCESS.
    BusChange,
    /// Post a WMI event and complete with SUCCESS.
    WmiEvent,
    /// Complete inline with SrbStatus ERROR and this SCSI status (BUSY, QUEUE FULL,
    /// RESERVATION CONFLICT...).
    ScsiStatus(u8),
    /// Storport model: `build_io` refuses the request (INVALID_REQUEST) so it never reaches
    /// `start_io`; under the SCSI Port model `start_io` refuses it.
    RejectInBuildIo,
}

impl Behaviour {
    /// The scripted CDB asking for this behaviour.
    pub fn cdb(self) -> [u8; 6] {
        let (code, a, b, c) = match self {
            Behaviour::Inline => (0, 0, 0, 0),
            Behaviour::Interrupt => (1, 0, 0, 0),
            Behaviour::Never => (2, 0, 0, 0),
            Behaviour::Busy(n) => (3, n, 0, 0),
            Behaviour::CheckCondition { key, asc, ascq } => (4, key, asc, ascq),
            Behaviour::Status(s) => (5, s, 0, 0),
            Behaviour::Underrun => (6, 0, 0, 0),
            Behaviour::SystemDma => (7, 0, 0, 0),
            Behaviour::ResetDetected => (8, 0, 0, 0),
            Behaviour::BusChange => (9, 0, 0, 0),
            Behaviour::WmiEvent => (10, 0, 0, 0),
            Behaviour::ScsiStatus(st) => (11, st, 0, 0),
            Behaviour::RejectInBuildIo => (12, 0, 0, 0),
        };
        [SCRIPTED_OPCODE, code, a, b, c, 0]
    }

    /// Decodes a scripted CDB.
    pub fn from_cdb(cdb: &[u8]) -> Option<Behaviour> {
        if cdb.len() < 6 || cdb[0] != SCRIPTED_OPCODE {
            return None;
        }
        Some(match cdb[1] {
            0 => Behaviour::Inline,
            1 => Behaviour::Interrupt,
            2 => Behaviour::Never,
            3 => Behaviour::Busy(cdb[2]),
            4 => Behaviour::CheckCondition {
                key: cdb[2],
                asc: cdb[3],
                ascq: cdb[4],
            },
            5 => Behaviour::Status(cdb[2]),
            6 => Behaviour::Underrun,
            7 => Behaviour::SystemDma,
            8 => Behaviour::ResetDetected,
            9 => Behaviour::BusChange,
            10 => Behaviour::WmiEvent,
            11 => Behaviour::ScsiStatus(cdb[2]),
            12 => Behaviour::RejectInBuildIo,
            _ => return None,
        })
    }
}

/// In which order [`Script::fire`] completes the requests held for the interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOrder {
    /// All of them, oldest first.
    All,
    /// All of them, newest first (out of order).
    Reversed,
    /// At most this many, oldest first.
    Oldest(usize),
    /// All of them in a pseudo-random order from this seed.
    Shuffled(u64),
    /// Claim the interrupt without completing anything.
    Nothing,
}

/// What the scripted `find_adapter` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindAnswer {
    /// SP_RETURN_FOUND (with the configured number of adapters).
    Found,
    /// SP_RETURN_NOT_FOUND.
    NotFound,
    /// SP_RETURN_ERROR.
    Error,
    /// SP_RETURN_BAD_CONFIG.
    BadConfig,
}

/// How the scripted adapter is built.
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    /// The LUs that exist (answer INQUIRY with a disk).
    pub luns: Vec<Address>,
    /// `NumberOfBuses`.
    pub buses: u8,
    /// `MaximumNumberOfTargets`.
    pub targets: u8,
    /// `MaximumNumberOfLogicalUnits`.
    pub luns_per_target: u8,
    /// `TaggedQueuing`.
    pub tagged_queuing: bool,
    /// `MultipleRequestPerLu`.
    pub multiple_request_per_lu: bool,
    /// `AutoRequestSense`.
    pub auto_request_sense: bool,
    /// Issue NextLuRequest (instead of NextRequest) after starting a request.
    pub next_lu_request: bool,
    /// Do not issue NextRequest for `Never` requests (a non-disconnecting adapter that hangs).
    pub hang_without_next_request: bool,
    /// Support `adapter_control` stop / restart / set running config.
    pub adapter_control: bool,
    /// `CachesData`.
    pub caches_data: bool,
    /// `WmiDataProvider`.
    pub wmi: bool,
    /// No interrupt routine: held requests complete from a 200 µs timer routine.
    pub polled: bool,
    /// Finish interrupt work in the enable-interrupts callback (CallEnable/DisableInterrupts).
    pub deferred_interrupts: bool,
    /// Answer ABORT_COMMAND (else INVALID_REQUEST).
    pub abort_supported: bool,
    /// Answer RESET_LOGICAL_UNIT (else INVALID_REQUEST).
    pub lu_reset_supported: bool,
    /// `reset_bus` completes the bus's requests (else they stay held and the port must take
    /// them back).
    pub reset_completes: bool,
    /// After a reset, keep the handles of the requests it completed and complete them again at
    /// the next fire (late completions the port must drop).
    pub late_after_reset: bool,
    /// `NumberOfRequests`.
    pub number_of_requests: u32,
    /// How many adapters `find_adapter` reports (with `again`).
    pub adapters: u32,
    /// What `find_adapter` answers.
    pub find_result: FindAnswer,
    /// What `initialize` returns.
    pub initialize_ok: bool,
    /// Behaviour for CDBs that are neither scripted nor answered by the miniport itself.
    pub default_behaviour: Behaviour,
    /// Record every started request in [`Script::starts`] (allocates; off for the
    /// allocation-counting test).
    pub record_starts: bool,
    /// Storport model: each `build_io` waits up to this long for another thread's `build_io`
    /// to overlap with it (to show that build_io runs concurrently). 0: no wait.
    pub build_io_rendezvous_us: u64,
    /// `MaximumTransferLength`.
    pub maximum_transfer_length: u32,
    /// Storport: ask for [`SynchronizationModel::FullDuplex`]. The full-duplex `start_io`
    /// completes `Inline` EXECUTE_SCSI requests in hand (without the interrupt lock) and runs
    /// the ordinary `start_io` inside `synchronize_access` for everything else.
    pub full_duplex: bool,
    /// Full-duplex `start_io` of a scripted request waits up to this long for an `interrupt`
    /// routine to be running (to show they overlap). 0: no wait.
    pub start_io_rendezvous_us: u64,
    /// `interrupt` waits up to this long for a `start_io` to begin or be running. 0: no wait.
    pub interrupt_rendezvous_us: u64,
    /// Storport `BusResetHoldTime` in µs ([`SP_UNINITIALIZED_VALUE`]: the port's default).
    pub bus_reset_hold_time: u32,
    /// Storport concurrent channels (with `full_duplex`; 0: none).
    pub concurrent_channels: u32,
    /// Storport: support unit control (start, power, surprise removal) and the extended
    /// adapter controls (power, prepare for rescan, post-initialize).
    pub storport_controls: bool,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        Self {
            luns: vec![Address::new(0, 0, 0)],
            buses: 1,
            targets: 2,
            luns_per_target: 2,
            tagged_queuing: false,
            multiple_request_per_lu: false,
            auto_request_sense: true,
            next_lu_request: false,
            hang_without_next_request: false,
            adapter_control: true,
            caches_data: false,
            wmi: false,
            polled: false,
            deferred_interrupts: false,
            abort_supported: true,
            lu_reset_supported: true,
            reset_completes: true,
            late_after_reset: false,
            number_of_requests: 64,
            adapters: 1,
            find_result: FindAnswer::Found,
            initialize_ok: true,
            default_behaviour: Behaviour::Inline,
            record_starts: false,
            build_io_rendezvous_us: 0,
            maximum_transfer_length: 1 << 20,
            full_duplex: false,
            start_io_rendezvous_us: 0,
            interrupt_rendezvous_us: 0,
            bus_reset_hold_time: SP_UNINITIALIZED_VALUE,
            concurrent_channels: 0,
            storport_controls: false,
        }
    }
}

/// Counters of what the port asked of the scripted miniport.
#[derive(Debug, Default)]
pub struct ScriptCounters {
    /// `find_adapter` calls.
    pub find_adapter: AtomicU64,
    /// `initialize` calls.
    pub initialize: AtomicU64,
    /// `start_io` calls.
    pub start_io: AtomicU64,
    /// `interrupt` calls.
    pub interrupts: AtomicU64,
    /// `reset_bus` calls.
    pub bus_resets: AtomicU64,
    /// RESET_LOGICAL_UNIT requests.
    pub lu_resets: AtomicU64,
    /// ABORT_COMMAND requests.
    pub aborts: AtomicU64,
    /// Timer routine calls.
    pub timer_calls: AtomicU64,
    /// Enable-interrupts callbacks.
    pub enable_callbacks: AtomicU64,
    /// Disable-interrupts callbacks.
    pub disable_callbacks: AtomicU64,
    /// `dma_started` calls.
    pub dma_started: AtomicU64,
    /// `adapter_state` calls (save + restore).
    pub adapter_state: AtomicU64,
    /// StopAdapter controls.
    pub stops: AtomicU64,
    /// RestartAdapter controls.
    pub restarts: AtomicU64,
    /// FLUSH / SHUTDOWN requests.
    pub flushes: AtomicU64,
    /// WMI requests.
    pub wmi_requests: AtomicU64,
    /// `build_io` calls (Storport model).
    pub build_io: AtomicU64,
    /// `build_io` calls running right now.
    pub build_io_running: AtomicU64,
    /// Most `build_io` calls seen running at once.
    pub build_io_max_concurrent: AtomicU64,
    /// Most requests held in the miniport at once (adapter-wide).
    pub max_outstanding: AtomicU64,
    /// Most requests of one LU held at once.
    pub max_outstanding_per_lu: AtomicU64,
    /// `start_io` while a DISABLE_DISCONNECT request was held (must stay 0).
    pub started_during_no_disconnect: AtomicU64,
    /// `start_io` calls (either kind) running right now.
    pub start_io_running: AtomicU64,
    /// Most `start_io` calls seen running at once (must stay 1).
    pub start_io_max_concurrent: AtomicU64,
    /// `start_io` calls (either kind) begun.
    pub start_io_entered: AtomicU64,
    /// Full-duplex `start_io` calls.
    pub full_duplex_starts: AtomicU64,
    /// `interrupt` calls running right now.
    pub interrupt_running: AtomicU64,
    /// `start_io` calls that began or saw an `interrupt` running on another thread.
    pub start_io_during_interrupt: AtomicU64,
    /// Unit controls: ScsiUnitStart.
    pub unit_starts: AtomicU64,
    /// Unit controls: ScsiUnitPower.
    pub unit_power: AtomicU64,
    /// Unit controls: ScsiUnitSurpriseRemoval.
    pub unit_removals: AtomicU64,
    /// ScsiAdapterPostHwInitialize.
    pub post_hw_initialize: AtomicU64,
    /// ScsiAdapterPrepareForBusReScan.
    pub prepare_rescans: AtomicU64,
    /// ScsiAdapterPower.
    pub adapter_power: AtomicU64,
}

impl ScriptCounters {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One start recorded with `record_starts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRecord {
    /// The request's address.
    pub address: Address,
    /// Its function.
    pub function: SrbFunction,
    /// Its opcode (0 for non-SCSI functions).
    pub opcode: u8,
    /// Its tag.
    pub queue_tag: u32,
    /// Its `original_request`.
    pub original_request: u64,
}

/// The shared script: configuration, the test's controls and the counters.
#[derive(Debug)]
pub struct Script {
    /// The configuration.
    pub config: ScriptConfig,
    /// Counters.
    pub counters: ScriptCounters,
    fire: Mutex<Option<FireOrder>>,
    lines: Mutex<Vec<InterruptLine>>,
    luns: Mutex<Vec<Address>>,
    starts: Mutex<Vec<StartRecord>>,
}

impl Script {
    /// A script for `config`.
    pub fn new(config: ScriptConfig) -> Arc<Script> {
        Arc::new(Script {
            luns: Mutex::new(config.luns.clone()),
            config,
            counters: ScriptCounters::default(),
            fire: Mutex::new(None),
            lines: Mutex::new(Vec::new()),
            starts: Mutex::new(Vec::new()),
        })
    }

    /// The "hardware" finished the held requests: raise the interrupt of every adapter; the
    /// interrupt routine completes them in `order`.
    pub fn fire(&self, order: FireOrder) {
        *self.fire.lock() = Some(order);
        let lines: Vec<_> = self.lines.lock().clone();
        for l in lines {
            l.raise();
        }
    }

    /// Raises the interrupt without anything to do (a spurious interrupt).
    pub fn raise_spurious(&self) {
        let lines: Vec<_> = self.lines.lock().clone();
        for l in lines {
            l.raise();
        }
    }

    /// Adds or removes an LU (then use [`Behaviour::BusChange`] to tell the port).
    pub fn set_luns(&self, luns: Vec<Address>) {
        *self.luns.lock() = luns;
    }

    /// The starts recorded so far (with `record_starts`).
    pub fn starts(&self) -> Vec<StartRecord> {
        self.starts.lock().clone()
    }

    fn take_fire(&self) -> Option<FireOrder> {
        self.fire.lock().take()
    }
}

/// Per-LU extension of the scripted miniport: sense waiting for REQUEST SENSE.
#[derive(Debug, Default)]
pub struct ScriptLu {
    pending_sense: Option<[u8; 18]>,
}

/// Per-request extension of the scripted miniport.
#[derive(Debug, Default)]
pub struct ScriptSrbExtension {
    /// How many times this slot was used (shows the extension is preallocated and kept).
    pub uses: u64,
}

/// The scripted test miniport (see the module documentation).
#[derive(Debug)]
pub struct ScriptedMiniport {
    script: Arc<Script>,
    /// Requests waiting for the interrupt (or the polling timer).
    held: Vec<SrbRef>,
    /// Requests that never complete on their own.
    never: Vec<SrbRef>,
    /// A request waiting for `dma_started`.
    dma: Vec<SrbRef>,
    /// Handles of requests a reset completed, kept to complete them late.
    stale: Vec<SrbRef>,
    no_disconnect: Option<SrbId>,
    wmi: ScriptWmi,
}

#[derive(Debug, Default)]
struct ScriptWmi {
    reg: Vec<WmiGuidRegInfo>,
    starts: u64,
}

impl WmiProvider for ScriptWmi {
    fn query_reg_info(&mut self) -> &[WmiGuidRegInfo] {
        &self.reg
    }
    fn query_data_block(
        &mut self,
        _guid_index: usize,
        _instance_index: u32,
        _instance_count: u32,
        buffer: &mut [u8],
    ) -> WmiResult {
        if buffer.len() < 8 {
            return WmiResult::too_small(8);
        }
        buffer[..8].copy_from_slice(&self.starts.to_le_bytes());
        WmiResult::ok(8)
    }
    fn set_data_block(&mut self, _g: usize, _i: u32, data: &[u8]) -> SrbStatus {
        match data.get(..8) {
            Some(b) => {
                let mut v = [0u8; 8];
                v.copy_from_slice(b);
                self.starts = u64::from_le_bytes(v);
                SrbStatus::SUCCESS
            }
            None => SrbStatus::ERROR,
        }
    }
    fn execute_method(
        &mut self,
        _g: usize,
        _i: u32,
        method_id: u32,
        in_size: u32,
        buffer: &mut [u8],
    ) -> WmiResult {
        // Method 1 echoes its input reversed.
        if method_id != 1 {
            return WmiResult::status_only(SrbStatus::ERROR);
        }
        let n = (in_size as usize).min(buffer.len());
        buffer[..n].reverse();
        WmiResult::ok(n as u32)
    }
}

fn fixed_sense(key: u8, asc: u8, ascq: u8) -> [u8; 18] {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = key & 0x0F;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

fn bump_max(c: &AtomicU64, v: u64) {
    c.fetch_max(v, Ordering::Relaxed);
}

/// Counts a running `start_io` (and whether an `interrupt` runs meanwhile) for its lifetime.
struct StartIoRunning<'a>(&'a ScriptCounters);

impl<'a> StartIoRunning<'a> {
    fn enter(c: &'a ScriptCounters) -> Self {
        c.start_io_entered.fetch_add(1, Ordering::AcqRel);
        let running = c.start_io_running.fetch_add(1, Ordering::AcqRel) + 1;
        bump_max(&c.start_io_max_concurrent, running);
        if c.interrupt_running.load(Ordering::Acquire) > 0 {
            c.start_io_during_interrupt.fetch_add(1, Ordering::Relaxed);
        }
        StartIoRunning(c)
    }
}

impl Drop for StartIoRunning<'_> {
    fn drop(&mut self) {
        self.0.start_io_running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Spins up to `us` µs until `other` is non-zero; true if it was.
fn rendezvous(other: &AtomicU64, us: u64) -> bool {
    if us == 0 {
        return false;
    }
    let end = std::time::Instant::now() + std::time::Duration::from_micros(us);
    while std::time::Instant::now() < end {
        if other.load(Ordering::Acquire) > 0 {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

impl ScriptedMiniport {
    fn count(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn next(&self, port: &mut PortContext<'_, Self>, address: Address) {
        if self.script.config.next_lu_request {
            port.next_lu_request(address);
        } else {
            port.next_request();
        }
    }

    fn outstanding(&self) -> usize {
        self.held.len() + self.never.len() + self.dma.len()
    }

    fn complete(port: &mut PortContext<'_, Self>, r: SrbRef, status: SrbStatus) {
        if let Some(srb) = port.srb_mut(&r) {
            srb.srb_status = status;
        }
        port.request_complete(r);
    }

    fn complete_success(port: &mut PortContext<'_, Self>, r: SrbRef) {
        if let Some(srb) = port.srb_mut(&r) {
            if srb.flags.contains(SrbFlags::DATA_IN) {
                srb.data_slice_mut().fill(0xA5);
            }
            srb.srb_status = SrbStatus::SUCCESS;
            srb.scsi_status = scsi_status::GOOD;
        }
        port.request_complete(r);
    }

    /// Completes the held requests of `filter` with `status`. With `late_after_reset` and
    /// `by_address` (a bus reset, not an SRB), the requests are completed by address
    /// (`complete_requests`) and their handles kept, to be completed again — late — at the next
    /// fire.
    fn complete_held(
        &mut self,
        port: &mut PortContext<'_, Self>,
        filter: AddressFilter,
        status: SrbStatus,
        by_address: bool,
    ) {
        let late = by_address && self.script.config.late_after_reset;
        for list in [&mut self.held, &mut self.never, &mut self.dma] {
            let mut keep = Vec::new();
            for r in list.drain(..) {
                let matches = port.srb(&r).is_some_and(|s| filter.matches(s.address));
                if matches {
                    if late {
                        self.stale.push(r);
                    } else {
                        if let Some(s) = port.srb_mut(&r) {
                            s.srb_status = status;
                            s.data_transfer_length = 0;
                        }
                        port.request_complete(r);
                    }
                } else if port.srb(&r).is_some() {
                    keep.push(r);
                } else {
                    // The port took this request back already (adapter restart): completing
                    // the stale handle is a late completion the port drops and counts.
                    port.request_complete(r);
                }
            }
            *list = keep;
        }
        if by_address {
            port.complete_requests(filter, status);
        }
        if self.no_disconnect.is_some_and(|id| port.srb(id).is_none()) {
            self.no_disconnect = None;
        }
    }

    fn execute(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) {
        let Some(srb) = port.srb(&r) else { return };
        let address = srb.address;
        let cdb = srb.cdb;
        let opcode = cdb.opcode();
        let behaviour = match opcode {
            0x12 => return self.inquiry(port, r),
            0xA0 => return self.report_luns(port, r),
            0x03 => return self.request_sense(port, r),
            0x00 => return Self::complete_success(port, r),
            SCRIPTED_OPCODE => match Behaviour::from_cdb(cdb.as_slice()) {
                Some(b) => b,
                None => return Self::complete(port, r, SrbStatus::INVALID_REQUEST),
            },
            _ => self.script.config.default_behaviour,
        };
        match behaviour {
            Behaviour::Inline => Self::complete_success(port, r),
            Behaviour::Interrupt => {
                self.held.push(r);
                if self.script.config.polled {
                    port.request_timer_call(Self::poll, 200);
                }
            }
            Behaviour::Never => {
                self.never.push(r);
            }
            Behaviour::Busy(n) => {
                if n == 0 {
                    return Self::complete_success(port, r);
                }
                if let Some(s) = port.srb_mut(&r) {
                    // The remaining count travels in the CDB of the retried request.
                    let mut c = s.cdb;
                    c.as_mut_slice()[2] = n - 1;
                    s.cdb = c;
                }
                Self::complete(port, r, SrbStatus::BUSY)
            }
            Behaviour::CheckCondition { key, asc, ascq } => {
                let sense = fixed_sense(key, asc, ascq);
                if self.script.config.auto_request_sense {
                    if let Some(s) = port.srb_mut(&r) {
                        s.set_check_condition(&sense);
                        s.data_transfer_length = 0;
                    }
                } else {
                    if let Some(lu) = port.lu_extension(address) {
                        lu.pending_sense = Some(sense);
                    }
                    if let Some(s) = port.srb_mut(&r) {
                        s.srb_status = SrbStatus::ERROR;
                        s.scsi_status = scsi_status::CHECK_CONDITION;
                        s.data_transfer_length = 0;
                    }
                }
                port.request_complete(r);
            }
            Behaviour::Status(s) => Self::complete(port, r, SrbStatus(s)),
            Behaviour::RejectInBuildIo => Self::complete(port, r, SrbStatus::INVALID_REQUEST),
            Behaviour::ScsiStatus(st) => {
                if let Some(s) = port.srb_mut(&r) {
                    s.srb_status = SrbStatus::ERROR;
                    s.scsi_status = st;
                    s.data_transfer_length = 0;
                }
                port.request_complete(r);
            }
            Behaviour::Underrun => {
                if let Some(s) = port.srb_mut(&r) {
                    s.data_transfer_length /= 2;
                    s.srb_status = SrbStatus::DATA_OVERRUN;
                }
                port.request_complete(r);
            }
            Behaviour::SystemDma => {
                port.io_map_transfer(&r);
                self.dma.push(r);
            }
            Behaviour::ResetDetected => {
                port.reset_detected();
                self.complete_held(
                    port,
                    AddressFilter::bus(address.path_id),
                    SrbStatus::BUS_RESET,
                    false,
                );
                Self::complete_success(port, r);
            }
            Behaviour::BusChange => {
                port.bus_change_detected(address.path_id);
                Self::complete_success(port, r);
            }
            Behaviour::WmiEvent => {
                if let Some(e) = WmiEvent::new(SCRIPT_WMI_GUID, Some(address), b"event") {
                    port.wmi_event(e);
                }
                Self::complete_success(port, r);
            }
        }
    }

    fn inquiry(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) {
        let luns = self.script.luns.lock().clone();
        let Some(srb) = port.srb_mut(&r) else { return };
        let a = srb.address;
        let target_present = luns
            .iter()
            .any(|l| l.path_id == a.path_id && l.target_id == a.target_id);
        if !target_present {
            return Self::complete(port, r, SrbStatus::SELECTION_TIMEOUT);
        }
        let mut data = [0u8; 36];
        data[0] = if luns.contains(&a) { 0x00 } else { 0x7F };
        data[2] = 0x06; // SPC-4
        data[3] = 0x02;
        data[4] = 31;
        data[7] = 0x02; // CmdQue
        data[8..16].copy_from_slice(b"SCSIPORT");
        data[16..32].copy_from_slice(b"SCRIPTED        ");
        data[32..36].copy_from_slice(b"0001");
        let n = data.len().min(srb.data_slice().len());
        srb.data[..n].copy_from_slice(&data[..n]);
        srb.data_transfer_length = n as u32;
        srb.srb_status = SrbStatus::SUCCESS;
        port.request_complete(r);
    }

    fn report_luns(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) {
        let luns = self.script.luns.lock().clone();
        let Some(srb) = port.srb_mut(&r) else { return };
        let a = srb.address;
        let mut list: Vec<u8> = luns
            .iter()
            .filter(|l| l.path_id == a.path_id && l.target_id == a.target_id)
            .map(|l| l.lun)
            .collect();
        list.sort_unstable();
        let mut data = vec![0u8; 8 + 8 * list.len()];
        data[..4].copy_from_slice(&((8 * list.len()) as u32).to_be_bytes());
        for (i, lun) in list.iter().enumerate() {
            data[8 + 8 * i + 1] = *lun;
        }
        let n = data.len().min(srb.data_slice().len());
        srb.data[..n].copy_from_slice(&data[..n]);
        srb.data_transfer_length = n as u32;
        srb.srb_status = SrbStatus::SUCCESS;
        port.request_complete(r);
    }

    fn request_sense(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) {
        let Some(a) = port.srb(&r).map(|s| s.address) else {
            return;
        };
        let sense = port
            .lu_extension(a)
            .and_then(|lu| lu.pending_sense.take())
            .unwrap_or_else(|| fixed_sense(0, 0, 0));
        let Some(srb) = port.srb_mut(&r) else { return };
        let n = sense.len().min(srb.data_slice().len());
        srb.data[..n].copy_from_slice(&sense[..n]);
        srb.data_transfer_length = n as u32;
        srb.srb_status = SrbStatus::SUCCESS;
        port.request_complete(r);
    }

    fn abort(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) {
        Self::count(&self.script.counters.aborts);
        if !self.script.config.abort_supported {
            return Self::complete(port, r, SrbStatus::INVALID_REQUEST);
        }
        let target = port.srb(&r).and_then(|s| s.next_srb);
        let mut found = None;
        if let Some(t) = target {
            for list in [&mut self.held, &mut self.never, &mut self.dma] {
                if let Some(pos) = list.iter().position(|x| x.id() == t) {
                    found = Some(list.remove(pos));
                    break;
                }
            }
        }
        match found {
            Some(t) => {
                if self.no_disconnect == Some(t.id()) {
                    self.no_disconnect = None;
                }
                Self::complete(port, t, SrbStatus::ABORTED);
                Self::complete(port, r, SrbStatus::SUCCESS);
            }
            None => Self::complete(port, r, SrbStatus::ABORT_FAILED),
        }
    }

    fn poll(&mut self, port: &mut PortContext<'_, Self>) {
        Self::count(&self.script.counters.timer_calls);
        for r in std::mem::take(&mut self.held) {
            Self::complete_success(port, r);
        }
        port.next_request();
    }

    fn finish_interrupt(&mut self, port: &mut PortContext<'_, Self>, order: FireOrder) {
        for r in std::mem::take(&mut self.stale) {
            port.request_complete(r); // late: the port drops and counts these
        }
        let mut held = std::mem::take(&mut self.held);
        let n = match order {
            FireOrder::All | FireOrder::Reversed | FireOrder::Shuffled(_) => held.len(),
            FireOrder::Oldest(n) => n.min(held.len()),
            FireOrder::Nothing => 0,
        };
        let rest = held.split_off(n);
        match order {
            FireOrder::Reversed => held.reverse(),
            FireOrder::Shuffled(seed) => {
                let mut x = seed | 1;
                for i in (1..held.len()).rev() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    held.swap(i, (x % (i as u64 + 1)) as usize);
                }
            }
            _ => {}
        }
        for r in held {
            Self::complete_success(port, r);
        }
        self.held = rest;
        port.next_request();
    }

    fn interrupt_body(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        Self::count(&self.script.counters.interrupts);
        if self.script.config.deferred_interrupts {
            if self.script.fire.lock().is_none() {
                return false;
            }
            port.call_enable_interrupts(Self::enable_callback);
            return true;
        }
        let Some(order) = self.script.take_fire() else {
            return false;
        };
        self.finish_interrupt(port, order);
        true
    }

    fn enable_callback(&mut self, port: &mut PortContext<'_, Self>) {
        Self::count(&self.script.counters.enable_callbacks);
        let order = self.script.take_fire().unwrap_or(FireOrder::All);
        self.finish_interrupt(port, order);
        port.call_disable_interrupts(Self::disable_callback);
    }

    fn disable_callback(&mut self, _port: &mut PortContext<'_, Self>) {
        Self::count(&self.script.counters.disable_callbacks);
    }
}

impl Miniport for ScriptedMiniport {
    type HwContext = Arc<Script>;
    type LuExtension = ScriptLu;
    type SrbExtension = ScriptSrbExtension;

    fn driver_entry() -> HwInitializationData {
        HwInitializationData {
            tagged_queuing: false,
            auto_request_sense: true,
            ..HwInitializationData::default()
        }
    }

    fn find_adapter(
        script: &mut Arc<Script>,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        Self::count(&script.counters.find_adapter);
        match script.config.find_result {
            FindAnswer::NotFound => return FindAdapterResult::NotFound,
            FindAnswer::Error => return FindAdapterResult::Error,
            FindAnswer::BadConfig => return FindAdapterResult::BadConfig,
            FindAnswer::Found => {}
        }
        let c = &script.config;
        config.number_of_buses = c.buses;
        config.maximum_number_of_targets = c.targets;
        config.maximum_number_of_logical_units = c.luns_per_target;
        config.tagged_queuing = c.tagged_queuing;
        config.multiple_request_per_lu = c.multiple_request_per_lu;
        config.auto_request_sense = c.auto_request_sense;
        config.caches_data = c.caches_data;
        config.wmi_data_provider = c.wmi;
        config.number_of_requests = c.number_of_requests;
        config.maximum_transfer_length = c.maximum_transfer_length;
        config.initiator_bus_id = [7; 8];
        config.bus_reset_hold_time = c.bus_reset_hold_time;
        if c.full_duplex {
            config.synchronization_model = SynchronizationModel::FullDuplex;
            config.concurrent_channels = c.concurrent_channels;
        }
        ctx.set_again(ctx.call_index() + 1 < c.adapters);
        script.lines.lock().push(ctx.interrupt_line());
        FindAdapterResult::Found(ScriptedMiniport {
            script: script.clone(),
            held: Vec::with_capacity(c.number_of_requests as usize),
            never: Vec::with_capacity(c.number_of_requests as usize),
            dma: Vec::new(),
            stale: Vec::new(),
            no_disconnect: None,
            wmi: ScriptWmi {
                reg: vec![WmiGuidRegInfo {
                    guid: SCRIPT_WMI_GUID,
                    instance_count: 1,
                    flags: 0,
                }],
                starts: 0,
            },
        })
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        Self::count(&self.script.counters.initialize);
        self.script.config.initialize_ok
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) -> bool {
        let script = self.script.clone();
        let c = &script.counters;
        let _running = StartIoRunning::enter(c);
        Self::count(&c.start_io);
        self.wmi.starts += 1;
        if self.no_disconnect.is_some_and(|id| port.srb(id).is_none()) {
            self.no_disconnect = None;
        }
        if self.no_disconnect.is_some() {
            Self::count(&c.started_during_no_disconnect);
        }
        if let Some(ext) = port.srb_extension(&r) {
            ext.uses += 1;
        }
        let Some(srb) = port.srb(&r) else {
            return false;
        };
        let address = srb.address;
        let function = srb.function;
        let no_disconnect = srb.flags.contains(SrbFlags::DISABLE_DISCONNECT);
        if self.script.config.record_starts {
            self.script.starts.lock().push(StartRecord {
                address,
                function,
                opcode: srb.cdb.opcode(),
                queue_tag: srb.queue_tag,
                original_request: srb.original_request,
            });
        }
        let id = r.id();
        match function {
            SrbFunction::ExecuteScsi => self.execute(port, r),
            SrbFunction::AbortCommand => self.abort(port, r),
            SrbFunction::ResetLogicalUnit | SrbFunction::ResetDevice => {
                Self::count(&c.lu_resets);
                if !self.script.config.lu_reset_supported {
                    Self::complete(port, r, SrbStatus::INVALID_REQUEST);
                } else {
                    let filter = if function == SrbFunction::ResetDevice {
                        AddressFilter::target(address.path_id, address.target_id)
                    } else {
                        AddressFilter::lu(address)
                    };
                    self.complete_held(port, filter, SrbStatus::BUS_RESET, false);
                    Self::complete(port, r, SrbStatus::SUCCESS);
                }
            }
            SrbFunction::Flush | SrbFunction::Shutdown => {
                Self::count(&c.flushes);
                Self::complete(port, r, SrbStatus::SUCCESS);
            }
            SrbFunction::Wmi => {
                Self::count(&c.wmi_requests);
                if let Some(srb) = port.srb_mut(&r) {
                    wmi::dispatch(&mut self.wmi, srb);
                }
                port.request_complete(r);
            }
            _ => Self::complete(port, r, SrbStatus::INVALID_REQUEST),
        }
        let still_held = port.srb(id).is_some();
        if no_disconnect && still_held {
            self.no_disconnect = Some(id);
        }
        let out = self.outstanding() as u64;
        bump_max(&c.max_outstanding, out);
        let per_lu = [&self.held, &self.never, &self.dma]
            .iter()
            .flat_map(|l| l.iter())
            .filter(|x| port.srb(*x).is_some_and(|s| s.address == address))
            .count() as u64;
        bump_max(&c.max_outstanding_per_lu, per_lu);
        let hang = self.script.config.hang_without_next_request && still_held;
        if !(hang || no_disconnect && still_held) {
            self.next(port, address);
        }
        true
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, path_id: u8) -> bool {
        Self::count(&self.script.counters.bus_resets);
        if self.script.config.reset_completes {
            self.complete_held(
                port,
                AddressFilter::bus(path_id),
                SrbStatus::BUS_RESET,
                true,
            );
            self.no_disconnect = None;
        }
        port.next_request();
        true
    }

    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        if self.script.config.polled {
            return false;
        }
        let script = self.script.clone();
        let c = &script.counters;
        let entered = c.start_io_entered.load(Ordering::Acquire);
        c.interrupt_running.fetch_add(1, Ordering::AcqRel);
        // Wait for a start_io to begin meanwhile (or one to be running).
        let us = script.config.interrupt_rendezvous_us;
        let end = std::time::Instant::now() + std::time::Duration::from_micros(us);
        while us > 0
            && std::time::Instant::now() < end
            && c.start_io_entered.load(Ordering::Acquire) == entered
            && c.start_io_running.load(Ordering::Acquire) == 0
        {
            std::thread::yield_now();
        }
        let claimed = self.interrupt_body(port);
        c.interrupt_running.fetch_sub(1, Ordering::AcqRel);
        claimed
    }

    fn dma_started(&mut self, port: &mut PortContext<'_, Self>) {
        Self::count(&self.script.counters.dma_started);
        for r in std::mem::take(&mut self.dma) {
            Self::complete_success(port, r);
        }
        port.next_request();
    }

    fn adapter_state(&mut self, _save: bool) -> bool {
        Self::count(&self.script.counters.adapter_state);
        true
    }

    fn adapter_control(
        &mut self,
        port: &mut PortContext<'_, Self>,
        control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        if !self.script.config.adapter_control {
            return AdapterControlStatus::Unsuccessful;
        }
        match control {
            AdapterControl::QuerySupportedControlTypes(list) => {
                list.set(AdapterControlType::QuerySupportedControlTypes);
                list.set(AdapterControlType::StopAdapter);
                list.set(AdapterControlType::RestartAdapter);
                list.set(AdapterControlType::SetRunningConfig);
            }
            AdapterControl::StopAdapter => {
                Self::count(&self.script.counters.stops);
                self.complete_held(port, AddressFilter::all(), SrbStatus::BUS_RESET, false);
            }
            AdapterControl::RestartAdapter => Self::count(&self.script.counters.restarts),
            AdapterControl::SetRunningConfig | AdapterControl::SetBootConfig => {}
        }
        AdapterControlStatus::Success
    }

    fn wmi(&mut self) -> Option<&mut dyn WmiProvider> {
        Some(&mut self.wmi)
    }
}

/// The scripted miniport under the Storport model: its shared part is the [`Script`].
impl crate::miniport::StorportMiniport for ScriptedMiniport {
    type Shared = Script;

    fn shared(&self) -> Arc<Script> {
        self.script.clone()
    }

    fn build_io(script: &Script, srb: &mut Srb) -> bool {
        let c = &script.counters;
        c.build_io.fetch_add(1, Ordering::Relaxed);
        let running = c.build_io_running.fetch_add(1, Ordering::AcqRel) + 1;
        bump_max(&c.build_io_max_concurrent, running);
        let wait = script.config.build_io_rendezvous_us;
        if wait > 0 {
            let end = std::time::Instant::now() + std::time::Duration::from_micros(wait);
            while std::time::Instant::now() < end {
                let now = c.build_io_running.load(Ordering::Acquire);
                bump_max(&c.build_io_max_concurrent, now);
                if now >= 2 {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        c.build_io_running.fetch_sub(1, Ordering::AcqRel);
        if Behaviour::from_cdb(srb.cdb.as_slice()) == Some(Behaviour::RejectInBuildIo) {
            srb.srb_status = SrbStatus::INVALID_REQUEST;
            return false;
        }
        true
    }

    /// Under the StartIo lock only: `Inline` EXECUTE_SCSI requests complete in hand; the rest
    /// go through the ordinary `start_io` inside `synchronize_access`.
    fn start_io_full_duplex(
        script: &Script,
        port: &mut StartIoContext<'_, Self>,
        r: SrbRef,
    ) -> bool {
        let c = &script.counters;
        c.full_duplex_starts.fetch_add(1, Ordering::Relaxed);
        let inline = {
            let _running = StartIoRunning::enter(c);
            // Only scripted requests wait (not the scan's INQUIRY / REPORT LUNS).
            let scripted = port
                .srb(&r)
                .is_some_and(|s| s.cdb.opcode() == SCRIPTED_OPCODE);
            if scripted && rendezvous(&c.interrupt_running, script.config.start_io_rendezvous_us) {
                c.start_io_during_interrupt.fetch_add(1, Ordering::Relaxed);
            }
            let inline = port.srb(&r).is_some_and(|s| {
                s.function == SrbFunction::ExecuteScsi
                    && Behaviour::from_cdb(s.cdb.as_slice()) == Some(Behaviour::Inline)
            });
            if inline {
                c.start_io.fetch_add(1, Ordering::Relaxed);
                if let Some(srb) = port.srb_mut(&r) {
                    if srb.flags.contains(SrbFlags::DATA_IN) {
                        srb.data_slice_mut().fill(0xA5);
                    }
                    srb.srb_status = SrbStatus::SUCCESS;
                    srb.scsi_status = scsi_status::GOOD;
                }
            }
            inline
        };
        if inline {
            port.request_complete(r);
            return true;
        }
        port.synchronize_access(|m, ctx| m.start_io(ctx, r))
    }

    fn unit_control(
        &mut self,
        _port: &mut PortContext<'_, Self>,
        control: UnitControl<'_>,
    ) -> UnitControlStatus {
        if !self.script.config.storport_controls {
            return UnitControlStatus::Unsuccessful;
        }
        let c = &self.script.counters;
        match control {
            UnitControl::QuerySupportedUnitControlTypes(list) => {
                list.set(UnitControlType::QuerySupportedUnitControlTypes);
                list.set(UnitControlType::Start);
                list.set(UnitControlType::Power);
                list.set(UnitControlType::SurpriseRemoval);
            }
            UnitControl::Start(_) => Self::count(&c.unit_starts),
            UnitControl::Power { .. } => Self::count(&c.unit_power),
            UnitControl::SurpriseRemoval(_) => Self::count(&c.unit_removals),
        }
        UnitControlStatus::Success
    }

    fn adapter_control_ex(
        &mut self,
        _port: &mut PortContext<'_, Self>,
        control: StorAdapterControl<'_>,
    ) -> AdapterControlStatus {
        if !self.script.config.storport_controls {
            return AdapterControlStatus::Unsuccessful;
        }
        let c = &self.script.counters;
        match control {
            StorAdapterControl::QuerySupportedControlTypes(list) => {
                list.set(StorAdapterControlType::AdapterPower);
                list.set(StorAdapterControlType::PrepareForBusReScan);
                list.set(StorAdapterControlType::PostHwInitialize);
            }
            StorAdapterControl::AdapterPower(DevicePowerState::D0 | DevicePowerState::D3) => {
                Self::count(&c.adapter_power)
            }
            StorAdapterControl::PrepareForBusReScan => Self::count(&c.prepare_rescans),
            StorAdapterControl::PostHwInitialize => Self::count(&c.post_hw_initialize),
        }
        AdapterControlStatus::Success
    }
}

/// A completion sink that collects completed requests for tests.
#[derive(Debug, Default)]
pub struct CollectingSink {
    done: Mutex<Vec<Srb>>,
    cv: parking_lot::Condvar,
    batches: AtomicU64,
}

impl CollectingSink {
    /// A new, empty sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Takes what has completed so far.
    pub fn take(&self) -> Vec<Srb> {
        std::mem::take(&mut *self.done.lock())
    }
    /// How many have completed and not been taken.
    pub fn len(&self) -> usize {
        self.done.lock().len()
    }
    /// True when nothing waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// How many batches were delivered.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// Waits until at least `n` requests are waiting (or `timeout` passes); returns how many.
    pub fn wait_for(&self, n: usize, timeout: std::time::Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        let mut d = self.done.lock();
        while d.len() < n {
            if self.cv.wait_until(&mut d, deadline).timed_out() {
                break;
            }
        }
        d.len()
    }
}

impl crate::CompletionSink for CollectingSink {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(srb);
        self.cv.notify_all();
    }
    fn batch_done(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Builds a scripted EXECUTE_SCSI request for `address` (`original_request` = `id`).
pub fn scripted_srb(address: Address, behaviour: Behaviour, id: u64) -> Srb {
    let mut srb = Srb::execute_scsi(address, &behaviour.cdb()).unwrap_or_default();
    srb.original_request = id;
    srb
}

/// Port options for tests: manual ticks, short hold-off and recovery steps.
pub fn test_options() -> crate::PortOptions {
    crate::PortOptions {
        tick: None,
        reset_hold_off_ticks: 1,
        recovery_ticks: 1,
        busy_retry_limit: 3,
        ..crate::PortOptions::default()
    }
}
