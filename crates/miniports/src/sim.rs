//! The `sim` miniport: a simulated host adapter that exercises every optional routine of the
//! routine table, with faults injectable by configuration (rates) and at run time
//! ([`SimControl::inject`], the WMI inject method).
//!
//! # The simulated hardware
//!
//! The adapter (module `hardware`) has registers (interrupt mask, mode, doorbell), a command
//! mailbox the miniport writes in `start_io`, a completion mailbox, and a device thread. The
//! device thread takes commands from the command mailbox in order, runs each CDB on its
//! [`device::LogicalUnit`] — the "DMA": data moves between the LU and a copy of the host
//! buffer taken when the command was handed over — and posts the completion to the completion
//! mailbox after [`SimAdapterConfig::interrupt_latency`], raising the adapter's interrupt line
//! unless masked.
//!
//! # Routine table
//!
//! - `find_adapter` takes the next [`SimAdapterConfig`] of the [`SimHwContext`], powers the
//!   hardware on (device thread, fault rates, seed) and declares the LUs, a WMI provider and
//!   tagged queuing with autosense.
//! - `start_io` (interrupt lock): EXECUTE_SCSI becomes a mailbox command. With
//!   [`SimAdapterConfig::system_dma`] a data transfer first asks the port to map it
//!   (`io_map_transfer`); the port then calls `dma_started`, which copies the data and rings
//!   the doorbell. ABORT_COMMAND, RESET_LOGICAL_UNIT and RESET_DEVICE are register operations
//!   on the hardware; WMI requests go to [`port::wmi::dispatch`].
//! - `interrupt` reads the interrupt status (nothing pending: returns false, spurious), then
//!   either reaps the completion mailbox and completes the requests, or — with more than
//!   [`SimAdapterConfig::defer_threshold`] entries — masks the adapter interrupt and defers the
//!   work with CallEnableInterrupts; the deferred routine reaps and ends with
//!   CallDisableInterrupts, whose routine unmasks.
//! - `reset_bus` resets the hardware's bus (ends a hang, drops its queued commands) and
//!   completes the bus's requests with BUS_RESET.
//! - `adapter_state` saves the registers after `find_adapter` and restores them at shutdown.
//! - `adapter_control` supports StopAdapter (mask, drop every queue, the device thread
//!   idles), RestartAdapter (re-initialize), SetRunningConfig and SetBootConfig.
//!
//! # Faults and data integrity
//!
//! A fault takes effect when the hardware processes a command ([`SimFaultKind`] says what each
//! does); the eligible commands are every EXECUTE_SCSI except INQUIRY, REPORT LUNS and
//! REQUEST SENSE, so a bus scan always succeeds. A fault happens either *before* the data
//! transfer (nothing written, error reported: selection timeout, BUSY, CHECK CONDITION, hang,
//! detected bus reset) or *after* it (written, but the interrupt is lost or the completion
//! late). The hardware executes commands and clears its queues under one lock, so a command an
//! abort or reset removed never transfers data afterwards. Every request completes exactly once:
//! resets complete the affected requests through the port (`complete_requests`), and a
//! completion the hardware still delivers for a request the port took back is handed to the
//! port with the stale handle, which drops and counts it (a late completion).
//!
//! # Recovery
//!
//! - Lost interrupt: the completion sits in the mailbox until the next interrupt or until the
//!   port times the request out and sends ABORT_COMMAND: the abort reaps the mailbox and the
//!   request completes normally.
//! - Late completion: the abort answers ABORT_FAILED (too late to abort), the port escalates to
//!   a LU reset, which completes the request with BUS_RESET; the held completion then arrives
//!   and the port drops it.
//! - Hang (and slow reset): the adapter does not acknowledge abort or LU reset, so they fail at
//!   once (ABORT_FAILED, ERROR) and the port's ladder goes straight on to `reset_bus`, which
//!   ends the hang (and keeps the adapter busy for `slow_reset_time` after a slow reset). A hang
//!   costs the request's TimeOutValue in port ticks plus the reset hold-off.
//!
//! - Bus reset detected: the hardware drops the bus's queued commands (nothing written), resets
//!   its LUs and posts a bus-reset entry; the interrupt routine reports ResetDetected and
//!   completes the bus's requests with BUS_RESET, which upper layers retry.
//! - Spurious interrupt: the hardware raises the line while its completion mailbox is empty;
//!   the interrupt routine finds nothing and returns false, and the port counts it. The
//!   `spurious_interrupts` counters (the sim's and the port's, equal) also count raises that
//!   coalesced with work another routine — an abort, a reset, the deferred routine — had
//!   already reaped; `injected` counts the deliberate ones.
//!
//! Use a short port tick ([`port::PortOptions::tick`]) and small request timeouts to make the
//! timeout-driven recoveries fast.
//!
//! # Use
//!
//! ```
//! use std::sync::Arc;
//! use device::{LogicalUnit, LuConfig, backend::RamBackend};
//! use miniports::DiskLu;
//! use miniports::sim::{SimAdapterConfig, SimFault, SimFaultKind, SimHwContext, SimMiniport};
//! use port::{Address, DataDirection, PortOptions, Srb, SrbStatus};
//!
//! let lu = Arc::new(LogicalUnit::new(
//!     LuConfig::default(),
//!     Arc::new(RamBackend::new(2048, 512).unwrap()),
//! ));
//! let hw = SimAdapterConfig::new(vec![DiskLu { address: Address::new(0, 0, 0), lu }]);
//! let control = hw.control();
//! // Or port::initialize_storport::<SimMiniport>.
//! let adapter = port::initialize::<SimMiniport>(SimHwContext::single(hw), PortOptions::default())
//!     .unwrap()
//!     .remove(0);
//! control.inject(SimFault::SelectionTimeout);
//! let mut w = Srb::execute_scsi(Address::new(0, 0, 0), &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0])
//!     .unwrap()
//!     .with_data(vec![0xA5; 512], 512, DataDirection::Out);
//! w.flags.insert(port::SrbFlags::NO_QUEUE_FREEZE);
//! let w = adapter.execute_and_wait(w).unwrap();
//! assert_eq!(w.srb_status.status(), SrbStatus::SELECTION_TIMEOUT);
//! assert_eq!(control.counters().injected[SimFaultKind::SelectionTimeout.index()], 1);
//! adapter.shutdown().unwrap();
//! ```

mod fault;
mod hardware;
mod wmi;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use device::ResetKind;
use port::{
    AdapterControl, AdapterControlStatus, AdapterControlType, Address, AddressFilter,
    DataDirection, FindAdapterContext, FindAdapterResult, HwInitializationData, Miniport,
    PortConfiguration, PortContext, SrbFunction, SrbId, SrbRef, SrbStatus, StorportMiniport,
};

pub use fault::{SIM_COUNTERS_FIELDS, SIM_COUNTERS_WMI_SIZE, SimCounters, SimFault, SimFaultKind};
pub use hardware::SimRegisters;
pub use wmi::{
    InjectInput, SIM_COUNTERS_GUID, SIM_METHODS_GUID, SIM_WMI_INJECT_INPUT_SIZE,
    SIM_WMI_INJECT_MAX_COUNT, SIM_WMI_INJECT_OUTPUT_SIZE, SIM_WMI_METHOD_INJECT,
};

use fault::bump;
use hardware::{AbortResult, Command, Hardware, HwSettings, MailboxEntry, Outcome};

use crate::{DiskLu, complete_srb, device_nexus};

/// Default [`SimAdapterConfig::interrupt_latency`].
pub const DEFAULT_INTERRUPT_LATENCY: Duration = Duration::from_micros(20);
/// Default [`SimAdapterConfig::slow_reset_time`].
pub const DEFAULT_SLOW_RESET_TIME: Duration = Duration::from_millis(200);
/// Upper bound on [`SimAdapterConfig::slow_reset_time`] and `reset_time` (`find_adapter`
/// answers BadConfig beyond).
pub const MAX_RESET_TIME: Duration = Duration::from_secs(10);
/// Upper bound on [`SimAdapterConfig::interrupt_latency`].
pub const MAX_INTERRUPT_LATENCY: Duration = Duration::from_secs(1);
/// Default [`SimAdapterConfig::defer_threshold`].
pub const DEFAULT_DEFER_THRESHOLD: u32 = 4;

/// A handle on one simulated adapter's hardware: inject faults, change rates, read counters.
/// `Send + Sync`, cheap to clone; valid before and after the adapter exists.
#[derive(Clone)]
pub struct SimControl {
    hw: Arc<Hardware>,
}

impl std::fmt::Debug for SimControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimControl")
            .field("counters", &self.counters())
            .finish()
    }
}

impl SimControl {
    fn new() -> Self {
        Self {
            hw: Arc::new(Hardware::new()),
        }
    }

    /// Queues `fault` for the next eligible command the hardware processes (one-shot faults
    /// go before rate-drawn ones). At most 65536 are queued; more are dropped.
    pub fn inject(&self, fault: SimFault) {
        let _ = self.hw.inject(fault);
    }

    /// Sets the rate of `kind`, in faults per million eligible commands (capped at 10^6).
    /// Rates set before `find_adapter` are replaced by [`SimAdapterConfig::fault_rates`].
    pub fn set_rate(&self, kind: SimFaultKind, per_million: u32) {
        self.hw.set_rate(kind, per_million);
    }

    /// The current rates, indexed like [`SimFaultKind::ALL`].
    pub fn rates(&self) -> [u32; 9] {
        self.hw.rates()
    }

    /// One-shot faults still queued.
    pub fn queued_faults(&self) -> usize {
        self.hw.queued_faults()
    }

    /// The counters.
    pub fn counters(&self) -> SimCounters {
        self.hw.counters.snapshot()
    }

    /// The adapter's registers now.
    pub fn registers(&self) -> SimRegisters {
        self.hw.registers()
    }

    /// True while the adapter hangs (HangUntilReset / SlowReset until the next bus reset).
    pub fn is_hung(&self) -> bool {
        self.hw.is_hung()
    }
}

/// The [`SimControl`] of a running adapter, if its miniport is [`SimMiniport`] (taken under
/// the adapter's interrupt lock; not from a completion sink while that would deadlock — it
/// does not block on requests, only on the lock).
pub fn control_of(adapter: &port::Adapter) -> Option<SimControl> {
    adapter.synchronize::<SimMiniport, _>(|m, _| m.control())
}

/// One simulated adapter: its LUs, timing and fault settings. Build with
/// [`SimAdapterConfig::new`]; [`control`](SimAdapterConfig::control) is the handle on the
/// adapter this configuration creates.
#[derive(Debug)]
pub struct SimAdapterConfig {
    /// The LUs (any backend; the CLI uses RAM).
    pub lus: Vec<DiskLu>,
    /// `MaximumTransferLength` in bytes.
    pub maximum_transfer_length: u32,
    /// Time between the hardware processing a command and posting its completion (and raising
    /// the interrupt). At most [`MAX_INTERRUPT_LATENCY`].
    pub interrupt_latency: Duration,
    /// How long a normal bus reset keeps the adapter from processing commands.
    pub reset_time: Duration,
    /// How long the bus reset after a SlowReset fault keeps it from processing commands.
    pub slow_reset_time: Duration,
    /// Faults per million eligible commands, indexed like [`SimFaultKind::ALL`].
    pub fault_rates: [u32; 9],
    /// Seed of the fault draw.
    pub seed: u64,
    /// Sense (key, ASC, ASCQ) of rate-drawn CHECK CONDITION faults. Default ABORTED COMMAND
    /// (0x0B/0x00/0x00), which initiators retry.
    pub check_condition_sense: (u8, u8, u8),
    /// Data transfers go through the system-DMA path (`io_map_transfer`, then `dma_started`);
    /// false: the miniport hands them to the hardware directly (bus master).
    pub system_dma: bool,
    /// The interrupt routine defers its work through CallEnableInterrupts when more than this
    /// many completions are pending (0: always; `u32::MAX`: never).
    pub defer_threshold: u32,
    /// A late completion no reset released is delivered anyway after this long.
    pub late_completion_max_hold: Duration,
    control: SimControl,
}

impl SimAdapterConfig {
    /// An adapter with `lus` and the defaults: 8 MiB transfers, 20 µs interrupt latency, no
    /// reset time, 200 ms slow reset, no faults, system DMA on, defer threshold 4.
    pub fn new(lus: Vec<DiskLu>) -> Self {
        Self {
            lus,
            maximum_transfer_length: 8 << 20,
            interrupt_latency: DEFAULT_INTERRUPT_LATENCY,
            reset_time: Duration::ZERO,
            slow_reset_time: DEFAULT_SLOW_RESET_TIME,
            fault_rates: [0; 9],
            seed: 1,
            check_condition_sense: (0x0B, 0x00, 0x00),
            system_dma: true,
            defer_threshold: DEFAULT_DEFER_THRESHOLD,
            late_completion_max_hold: Duration::from_secs(30),
            control: SimControl::new(),
        }
    }

    /// The handle on the adapter this configuration creates (valid before `initialize`).
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Checks the settings; the error names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.lus.is_empty() {
            return Err("lus: a sim adapter needs at least one LU".into());
        }
        if self.interrupt_latency > MAX_INTERRUPT_LATENCY {
            return Err(format!(
                "interrupt_latency: at most {MAX_INTERRUPT_LATENCY:?}"
            ));
        }
        if self.reset_time > MAX_RESET_TIME {
            return Err(format!("reset_time: at most {MAX_RESET_TIME:?}"));
        }
        if self.slow_reset_time > MAX_RESET_TIME {
            return Err(format!("slow_reset_time: at most {MAX_RESET_TIME:?}"));
        }
        let total: u64 = self.fault_rates.iter().map(|&r| r as u64).sum();
        if total > 1_000_000 {
            return Err("fault_rates: the rates add up to more than 1000000 per million".into());
        }
        Ok(())
    }
}

/// The `HwContext` of [`SimMiniport`]: the adapters to create, in order.
#[derive(Debug, Default)]
pub struct SimHwContext {
    /// Adapters still to be found.
    pub adapters: Vec<SimAdapterConfig>,
}

impl SimHwContext {
    /// One adapter.
    pub fn single(adapter: SimAdapterConfig) -> Self {
        Self {
            adapters: vec![adapter],
        }
    }

    /// The handles of the adapters still to be created, in order.
    pub fn controls(&self) -> Vec<SimControl> {
        self.adapters.iter().map(|a| a.control()).collect()
    }
}

impl From<Vec<SimAdapterConfig>> for SimHwContext {
    fn from(adapters: Vec<SimAdapterConfig>) -> Self {
        Self { adapters }
    }
}

/// A request the hardware (or the DMA path) has.
#[derive(Debug)]
struct Outstanding {
    srb: SrbRef,
    address: Address,
}

/// The device extension of a simulated adapter. Every routine runs under the adapter's
/// interrupt lock (`&mut self`); the hardware has its own lock, taken inside.
pub struct SimMiniport {
    hw: Arc<Hardware>,
    lus: Vec<DiskLu>,
    /// Requests handed to the hardware (or waiting for `dma_started`), by hardware tag.
    outstanding: HashMap<u64, Outstanding>,
    /// Tags of requests waiting for `dma_started`.
    dma_pending: VecDeque<u64>,
    /// Handles of requests the port has taken back whose completion the hardware will still
    /// deliver (late completions): given to the port when it arrives.
    zombies: HashMap<u64, SrbRef>,
    next_tag: u64,
    system_dma: bool,
    defer_threshold: u32,
    saved: Option<SimRegisters>,
    wmi: wmi::SimWmi,
    /// Reaped mailbox entries (reused).
    reaped: Vec<MailboxEntry>,
    /// While a task-management request is handled, sweeps (reset completions) wait in
    /// `held_sweeps` so they do not complete that request too.
    hold_sweeps: bool,
    held_sweeps: Vec<(AddressFilter, Vec<u64>)>,
}

impl std::fmt::Debug for SimMiniport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMiniport")
            .field("outstanding", &self.outstanding.len())
            .field("zombies", &self.zombies.len())
            .finish_non_exhaustive()
    }
}

impl Drop for SimMiniport {
    fn drop(&mut self) {
        self.hw.power_off();
    }
}

fn next<M: Miniport>(port: &mut PortContext<'_, M>, tagged: bool, address: Address) {
    if tagged {
        port.next_lu_request(address);
    } else {
        port.next_request();
    }
}

/// Deferred interrupt work (CallEnableInterrupts): the adapter's interrupt is masked; reap the
/// mailbox, then ask for the unmask routine.
fn deferred_completion(m: &mut SimMiniport, port: &mut PortContext<'_, SimMiniport>) {
    m.service(port);
    bump(&m.hw.counters.deferred_rounds);
    port.call_disable_interrupts(unmask_interrupts);
}

/// CallDisableInterrupts routine: unmask the adapter (it raises again if work is pending).
fn unmask_interrupts(m: &mut SimMiniport, _port: &mut PortContext<'_, SimMiniport>) {
    m.hw.set_mask(false);
}

impl SimMiniport {
    /// The LUs of this adapter.
    pub fn logical_units(&self) -> &[DiskLu] {
        &self.lus
    }

    /// A handle on this adapter's hardware.
    pub fn control(&self) -> SimControl {
        SimControl {
            hw: self.hw.clone(),
        }
    }

    fn new_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Builds the mailbox command of request `o` (copies the data of a write: the "DMA").
    fn command(port: &PortContext<'_, Self>, tag: u64, srb: &SrbRef) -> Option<Command> {
        let s = port.srb(srb)?;
        let len = (s.data_transfer_length as usize).min(s.data.len());
        let direction = s.direction();
        Some(Command {
            tag,
            address: s.address,
            cdb: s.cdb,
            nexus: device_nexus(s),
            direction,
            data_out: match direction {
                DataDirection::Out => s.data[..len].to_vec(),
                _ => Vec::new(),
            },
            transfer_length: len,
        })
    }

    fn execute_scsi(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) {
        let tag = self.new_tag();
        let Some(srb) = port.srb(&r) else {
            return;
        };
        let address = srb.address;
        let has_data = srb.direction() != DataDirection::None
            && srb.data_transfer_length > 0
            && !srb.data.is_empty();
        if self.system_dma && has_data {
            port.io_map_transfer(&r);
            self.dma_pending.push_back(tag);
            self.outstanding
                .insert(tag, Outstanding { srb: r, address });
            return;
        }
        if let Some(cmd) = Self::command(port, tag, &r) {
            self.hw.submit(cmd);
            self.outstanding
                .insert(tag, Outstanding { srb: r, address });
        }
    }

    /// Reaps the completion mailbox and completes what it holds.
    fn service(&mut self, port: &mut PortContext<'_, Self>) {
        let mut reaped = std::mem::take(&mut self.reaped);
        self.hw.take_mailbox(&mut reaped);
        for e in reaped.drain(..) {
            match e {
                MailboxEntry::Done { tag, outcome } => self.complete(port, tag, outcome),
                MailboxEntry::BusReset { path_id, released } => {
                    port.reset_detected();
                    let filter = AddressFilter::bus(path_id);
                    let mut late = released;
                    late.extend(self.hw.clear(filter));
                    if self.hold_sweeps {
                        self.held_sweeps.push((filter, late));
                    } else {
                        self.sweep(port, filter, &late);
                    }
                }
            }
        }
        self.reaped = reaped;
    }

    /// Completes the request of hardware tag `tag` with `outcome`.
    fn complete(&mut self, port: &mut PortContext<'_, Self>, tag: u64, outcome: Outcome) {
        let Some(o) = self.outstanding.remove(&tag) else {
            if let Some(z) = self.zombies.remove(&tag) {
                // The port took this request back: it drops the completion and counts it.
                bump(&self.hw.counters.late_completions);
                port.request_complete(z);
            } else {
                bump(&self.hw.counters.dropped_completions);
            }
            return;
        };
        if let Some(srb) = port.srb_mut(&o.srb) {
            match outcome {
                Outcome::Executed {
                    completion,
                    data_in,
                } => {
                    let n = completion
                        .data_in_len
                        .min(data_in.len())
                        .min(srb.data.len());
                    srb.data[..n].copy_from_slice(&data_in[..n]);
                    complete_srb(srb, &completion);
                }
                Outcome::Failed {
                    srb_status,
                    scsi_status,
                    sense,
                } => {
                    srb.data_transfer_length = 0;
                    srb.scsi_status = scsi_status;
                    match sense {
                        Some(s) => srb.set_check_condition(&s),
                        None => srb.srb_status = srb_status,
                    }
                }
            }
        }
        port.request_complete(o.srb);
    }

    /// Runs the sweeps held while a task-management request was being handled (after it was
    /// completed, so they leave it alone).
    fn release_sweeps(&mut self, port: &mut PortContext<'_, Self>) {
        self.hold_sweeps = false;
        for (filter, late) in std::mem::take(&mut self.held_sweeps) {
            self.sweep(port, filter, &late);
        }
    }

    /// After a reset of `filter`: completes every request of `filter` the port has active with
    /// BUS_RESET; keeps the handles of those whose completion the hardware will still deliver
    /// (`late` tags).
    fn sweep(&mut self, port: &mut PortContext<'_, Self>, filter: AddressFilter, late: &[u64]) {
        port.complete_requests(filter, SrbStatus::BUS_RESET);
        let tags: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| filter.matches(o.address))
            .map(|(t, _)| *t)
            .collect();
        for tag in tags {
            if let Some(o) = self.outstanding.remove(&tag)
                && late.contains(&tag)
            {
                self.zombies.insert(tag, o.srb);
            }
        }
        self.dma_pending
            .retain(|t| self.outstanding.contains_key(t));
    }

    /// ABORT_COMMAND for `target`: the status of the abort, or `None` if the hung hardware did
    /// not acknowledge it.
    fn abort(
        &mut self,
        port: &mut PortContext<'_, Self>,
        target: Option<SrbId>,
    ) -> Option<SrbStatus> {
        bump(&self.hw.counters.aborts);
        let Some(target) = target else {
            return Some(SrbStatus::ABORT_FAILED);
        };
        let find = |m: &Self| {
            m.outstanding
                .iter()
                .find(|(_, o)| o.srb.id() == target)
                .map(|(t, _)| *t)
        };
        let Some(tag) = find(self) else {
            return Some(SrbStatus::ABORT_FAILED);
        };
        if let Some(i) = self.dma_pending.iter().position(|&t| t == tag) {
            self.dma_pending.remove(i);
            self.finish_aborted(port, tag);
            return Some(SrbStatus::SUCCESS);
        }
        match self.hw.abort(tag)? {
            AbortResult::Removed => {
                self.finish_aborted(port, tag);
                Some(SrbStatus::SUCCESS)
            }
            AbortResult::Completed => {
                // Finished meanwhile (a lost interrupt): complete it normally.
                self.service(port);
                Some(if find(self).is_none() {
                    SrbStatus::SUCCESS
                } else {
                    SrbStatus::ABORT_FAILED
                })
            }
            AbortResult::TooLate | AbortResult::NotFound => Some(SrbStatus::ABORT_FAILED),
        }
    }

    fn finish_aborted(&mut self, port: &mut PortContext<'_, Self>, tag: u64) {
        if let Some(o) = self.outstanding.remove(&tag) {
            if let Some(srb) = port.srb_mut(&o.srb) {
                srb.srb_status = SrbStatus::ABORTED;
                srb.data_transfer_length = 0;
            }
            port.request_complete(o.srb);
        }
    }

    /// LU or target reset; `None` if the hung hardware did not acknowledge it.
    fn reset_lus(
        &mut self,
        port: &mut PortContext<'_, Self>,
        filter: AddressFilter,
        kind: ResetKind,
    ) -> Option<Vec<u64>> {
        if self.hw.is_hung() {
            return None;
        }
        self.service(port);
        let late = self.hw.reset_lu(filter, kind)?;
        bump(&self.hw.counters.lu_resets);
        Some(late)
    }

    fn flush_all(&self) -> SrbStatus {
        let mut status = SrbStatus::SUCCESS;
        for d in &self.lus {
            if d.lu.backend().flush().is_err() {
                status = SrbStatus::ERROR;
            }
        }
        status
    }

    /// Drops everything the miniport tracks (the port has taken every request back, or none
    /// is outstanding).
    fn forget_all(&mut self) {
        self.outstanding.clear();
        self.dma_pending.clear();
        self.zombies.clear();
    }
}

impl Miniport for SimMiniport {
    type HwContext = SimHwContext;
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
        hw: &mut SimHwContext,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        let Some(a) = crate::next_adapter(&mut hw.adapters, ctx) else {
            return FindAdapterResult::NotFound;
        };
        if let Err(e) = a.validate() {
            tracing::error!(error = %e, "sim adapter: bad configuration");
            return FindAdapterResult::BadConfig;
        }
        crate::ram::configure(config, &a.lus, a.maximum_transfer_length);
        config.wmi_data_provider = true;
        config.bus_interrupt_level = 1;
        let hwa = a.control.hw.clone();
        let settings = HwSettings {
            interrupt_latency: a.interrupt_latency,
            reset_time: a.reset_time,
            slow_reset_time: a.slow_reset_time,
            late_completion_max_hold: a.late_completion_max_hold,
            check_condition_sense: a.check_condition_sense,
        };
        if !hwa.power_on(
            a.lus.clone(),
            settings,
            a.fault_rates,
            a.seed,
            ctx.interrupt_line(),
        ) {
            tracing::error!("sim adapter: hardware already in use or device thread failed");
            return FindAdapterResult::Error;
        }
        FindAdapterResult::Found(SimMiniport {
            wmi: wmi::SimWmi::new(hwa.clone()),
            hw: hwa,
            lus: a.lus,
            outstanding: HashMap::new(),
            dma_pending: VecDeque::new(),
            zombies: HashMap::new(),
            next_tag: 0,
            system_dma: a.system_dma,
            defer_threshold: a.defer_threshold,
            saved: None,
            reaped: Vec::new(),
            hold_sweeps: false,
            held_sweeps: Vec::new(),
        })
    }

    /// Also called by `Adapter::restart` on an adapter that was not stopped: requests the
    /// hardware holds stay there and complete normally.
    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        self.hw.start();
        true
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) -> bool {
        let Some(srb) = port.srb(&r) else {
            return false;
        };
        let address = srb.address;
        let tagged = srb.queue_tag != port::SP_UNTAGGED;
        let function = srb.function;
        let target = srb.next_srb;
        let known = self.lus.iter().any(|d| d.address == address);
        // A bus reset the hardware reports while task management runs must not sweep the
        // task-management request itself: hold the sweeps until it is completed.
        self.hold_sweeps = matches!(
            function,
            SrbFunction::AbortCommand | SrbFunction::ResetLogicalUnit | SrbFunction::ResetDevice
        );
        let status = match function {
            SrbFunction::ExecuteScsi if known => {
                self.execute_scsi(port, r);
                next(port, tagged, address);
                return true;
            }
            SrbFunction::ExecuteScsi => SrbStatus::SELECTION_TIMEOUT,
            SrbFunction::Wmi => {
                if let Some(srb) = port.srb_mut(&r) {
                    port::wmi::dispatch(&mut self.wmi, srb);
                }
                port.request_complete(r);
                next(port, tagged, address);
                return true;
            }
            SrbFunction::AbortCommand => match self.abort(port, target) {
                Some(s) => s,
                // The hung adapter does not acknowledge the abort.
                None => SrbStatus::ABORT_FAILED,
            },
            SrbFunction::ResetLogicalUnit | SrbFunction::ResetDevice => {
                let (filter, kind) = if function == SrbFunction::ResetLogicalUnit {
                    (AddressFilter::lu(address), ResetKind::LogicalUnitReset)
                } else {
                    (
                        AddressFilter::target(address.path_id, address.target_id),
                        ResetKind::TargetReset,
                    )
                };
                match self.reset_lus(port, filter, kind) {
                    Some(late) => {
                        // Swept after the reset request itself is completed.
                        self.held_sweeps.push((filter, late));
                        SrbStatus::SUCCESS
                    }
                    // The hung adapter does not acknowledge the reset.
                    None => SrbStatus::ERROR,
                }
            }
            SrbFunction::Flush | SrbFunction::Shutdown => self.flush_all(),
            _ => SrbStatus::INVALID_REQUEST,
        };
        if let Some(srb) = port.srb_mut(&r) {
            srb.srb_status = status;
        }
        port.request_complete(r);
        self.release_sweeps(port);
        next(port, tagged, address);
        true
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, path_id: u8) -> bool {
        self.service(port);
        let late = self.hw.reset_bus(path_id);
        bump(&self.hw.counters.resets);
        self.sweep(port, AddressFilter::bus(path_id), &late);
        port.next_request();
        true
    }

    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        let pending = self.hw.interrupt_status();
        if pending == 0 {
            bump(&self.hw.counters.spurious_interrupts);
            return false;
        }
        bump(&self.hw.counters.interrupts);
        if pending > self.defer_threshold as usize {
            // Long work: mask the adapter and finish from the deferred stage.
            self.hw.set_mask(true);
            port.call_enable_interrupts(deferred_completion);
        } else {
            self.service(port);
        }
        true
    }

    fn dma_started(&mut self, port: &mut PortContext<'_, Self>) {
        bump(&self.hw.counters.dma_started);
        while let Some(tag) = self.dma_pending.pop_front() {
            let cmd = self
                .outstanding
                .get(&tag)
                .and_then(|o| Self::command(port, tag, &o.srb));
            if let Some(cmd) = cmd {
                bump(&self.hw.counters.dma_transfers);
                self.hw.submit(cmd);
            }
        }
    }

    fn adapter_state(&mut self, save: bool) -> bool {
        if save {
            self.saved = Some(self.hw.registers());
            bump(&self.hw.counters.state_saves);
        } else if let Some(regs) = self.saved {
            self.hw.set_registers(regs);
            bump(&self.hw.counters.state_restores);
        }
        true
    }

    fn adapter_control(
        &mut self,
        _port: &mut PortContext<'_, Self>,
        control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        match control {
            AdapterControl::QuerySupportedControlTypes(list) => {
                list.set(AdapterControlType::QuerySupportedControlTypes);
                list.set(AdapterControlType::StopAdapter);
                list.set(AdapterControlType::RestartAdapter);
                list.set(AdapterControlType::SetBootConfig);
                list.set(AdapterControlType::SetRunningConfig);
            }
            AdapterControl::StopAdapter => {
                // The port has no request in the miniport (or has taken them all back).
                self.hw.stop();
                self.forget_all();
                bump(&self.hw.counters.stops);
            }
            AdapterControl::RestartAdapter => {
                self.hw.start();
                bump(&self.hw.counters.restarts);
            }
            AdapterControl::SetBootConfig => {
                let mut regs = self.hw.registers();
                regs.mode = SimRegisters::MODE_BIOS;
                self.hw.set_registers(regs);
            }
            AdapterControl::SetRunningConfig => {
                let mut regs = self.hw.registers();
                regs.mode = SimRegisters::MODE_RUNNING;
                self.hw.set_registers(regs);
            }
        }
        AdapterControlStatus::Success
    }

    fn wmi(&mut self) -> Option<&mut dyn port::wmi::WmiProvider> {
        Some(&mut self.wmi)
    }
}

/// The simulated adapter under the Storport model: half duplex (the default), so `start_io`
/// runs under the interrupt lock like every other routine, and the default `build_io`.
impl StorportMiniport for SimMiniport {
    type Shared = ();

    fn shared(&self) -> Arc<()> {
        Arc::new(())
    }
}
