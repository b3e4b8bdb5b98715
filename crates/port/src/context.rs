//! The port services a miniport routine may use while it holds the interrupt lock
//! ([`PortContext`]), the request handle ([`SrbRef`]) and the notification latch.

use std::collections::HashMap;
use std::sync::Arc;

use crate::adapter::{AdapterShared, InHand};
use crate::interrupt::InterruptLine;
use crate::miniport::{HwRoutine, Miniport, PortConfiguration};
use crate::srb::{Address, AddressFilter, Srb, SrbId, SrbStatus};
use crate::stats::{ErrorCode, ErrorLogEntry, Shared};

/// Maximum payload of a WMI event (`WNODE_EVENT_ITEM`; larger events are ignored, as Storport).
pub const WMI_EVENT_MAX_DATA: usize = 128;
/// At most this many WMI events are latched between two deferred stages; more are dropped and
/// counted (the seed's small fixed event area).
pub const WMI_EVENT_LATCH_DEPTH: usize = 16;

/// The miniport's handle on a request it was given in `start_io`.
///
/// Not `Clone`: completing it with [`PortContext::request_complete`] consumes it, so a miniport
/// cannot complete the same request twice by mistake. If the port completes the request by
/// other means first (a reset, [`PortContext::complete_requests`], an abort escalation, adapter
/// restart or shutdown), a later `request_complete` with this handle is dropped and counted as a
/// late completion, never delivered.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SrbRef {
    pub(crate) id: SrbId,
}

impl SrbRef {
    /// The copyable identity of this request (for [`PortContext::srb`] and comparisons with
    /// [`Srb::next_srb`]).
    pub fn id(&self) -> SrbId {
        self.id
    }
}

impl From<&SrbRef> for SrbId {
    fn from(r: &SrbRef) -> SrbId {
        r.id
    }
}

/// A WMI event posted with [`PortContext::wmi_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WmiEvent {
    /// The event block's GUID.
    pub guid: [u8; 16],
    /// `None` for an adapter event (PathId 0xFF), else the LU.
    pub address: Option<Address>,
    data: [u8; WMI_EVENT_MAX_DATA],
    len: u8,
}

impl WmiEvent {
    /// An event with `data` (`None` if longer than [`WMI_EVENT_MAX_DATA`]).
    pub fn new(guid: [u8; 16], address: Option<Address>, data: &[u8]) -> Option<Self> {
        if data.len() > WMI_EVENT_MAX_DATA {
            return None;
        }
        let mut d = [0u8; WMI_EVENT_MAX_DATA];
        d[..data.len()].copy_from_slice(data);
        Some(Self {
            guid,
            address,
            data: d,
            len: data.len() as u8,
        })
    }
    /// The event payload.
    pub fn data(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// A slot of the interrupt-side request table: the request while the miniport owns it and the
/// slot's preallocated SRB extension.
pub(crate) struct ActiveEntry<M: Miniport> {
    pub(crate) srb: Option<Box<Srb>>,
    pub(crate) ext: M::SrbExtension,
    pub(crate) generation: u32,
    /// RequestComplete latched; the request belongs to the port again.
    pub(crate) completed: bool,
}

/// Notifications recorded under the interrupt lock (`InterruptData` of the seed).
pub(crate) struct Latch<M: Miniport> {
    pub(crate) completed: Vec<u32>,
    pub(crate) next_request: bool,
    pub(crate) ready_lus: Vec<Address>,
    pub(crate) reset_detected: bool,
    /// `Some((routine, µs))`; µs == 0 cancels.
    pub(crate) timer: Option<(Option<HwRoutine<M>>, u32)>,
    pub(crate) bus_changes: Vec<u8>,
    pub(crate) enable_interrupts: Option<HwRoutine<M>>,
    pub(crate) disable_interrupts: Option<HwRoutine<M>>,
    pub(crate) wmi_events: Vec<WmiEvent>,
    pub(crate) map_transfer: bool,
    pub(crate) queue_ops: Vec<QueueOp>,
}

/// Storport queue-management calls, latched like notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueOp {
    Busy(u32),
    Ready,
    Pause(u32),
    Resume,
    DeviceBusy(Address, u32),
    DeviceReady(Address),
    PauseDevice(Address, u32),
    ResumeDevice(Address),
    SetDeviceQueueDepth(Address, u32),
}

impl<M: Miniport> Latch<M> {
    /// Moves the notifications (all but completions) into `dst`; keeps this latch's capacity.
    pub(crate) fn merge_into(&mut self, dst: &mut Latch<M>) {
        dst.next_request |= std::mem::take(&mut self.next_request);
        dst.ready_lus.append(&mut self.ready_lus);
        dst.reset_detected |= std::mem::take(&mut self.reset_detected);
        if let Some(t) = self.timer.take() {
            dst.timer = Some(t);
        }
        dst.bus_changes.append(&mut self.bus_changes);
        if let Some(cb) = self.enable_interrupts.take() {
            dst.enable_interrupts = Some(cb);
        }
        if let Some(cb) = self.disable_interrupts.take() {
            dst.disable_interrupts = Some(cb);
        }
        dst.wmi_events.append(&mut self.wmi_events);
        dst.map_transfer |= std::mem::take(&mut self.map_transfer);
        dst.queue_ops.append(&mut self.queue_ops);
    }

    pub(crate) fn new(slots: usize) -> Self {
        Self {
            completed: Vec::with_capacity(slots),
            next_request: false,
            ready_lus: Vec::with_capacity(16),
            reset_detected: false,
            timer: None,
            bus_changes: Vec::with_capacity(8),
            enable_interrupts: None,
            disable_interrupts: None,
            wmi_events: Vec::with_capacity(WMI_EVENT_LATCH_DEPTH),
            map_transfer: false,
            queue_ops: Vec::with_capacity(16),
        }
    }
}

/// Everything under the interrupt lock except the miniport itself.
pub(crate) struct Core<M: Miniport> {
    pub(crate) active: Vec<ActiveEntry<M>>,
    pub(crate) latch: Latch<M>,
    pub(crate) lu_ext: HashMap<Address, M::LuExtension>,
    pub(crate) config: Arc<PortConfiguration>,
    pub(crate) line: InterruptLine,
    pub(crate) shared: Arc<Shared>,
}

impl<M: Miniport> Core<M> {
    pub(crate) fn new(
        slots: usize,
        config: Arc<PortConfiguration>,
        line: InterruptLine,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            active: (0..slots)
                .map(|_| ActiveEntry {
                    srb: None,
                    ext: M::SrbExtension::default(),
                    generation: 0,
                    completed: false,
                })
                .collect(),
            latch: Latch::new(slots),
            lu_ext: HashMap::new(),
            config,
            line,
            shared,
        }
    }

    fn entry(&self, id: SrbId) -> Option<&ActiveEntry<M>> {
        self.active
            .get(id.slot as usize)
            .filter(|e| e.generation == id.generation && !e.completed && e.srb.is_some())
    }

    fn entry_mut(&mut self, id: SrbId) -> Option<&mut ActiveEntry<M>> {
        self.active
            .get_mut(id.slot as usize)
            .filter(|e| e.generation == id.generation && !e.completed && e.srb.is_some())
    }
}

/// The port's services to a miniport routine (`ScsiPortNotification`, `ScsiPortCompleteRequest`,
/// `ScsiPortGetSrb`, `ScsiPortGetLogicalUnit`, `ScsiPortLogError`, ...).
///
/// Exists only while the routine runs, under the adapter's interrupt lock. Notifications are
/// only *latched* here; the port's deferred stage acts on them after the lock is released
/// (completes requests, starts the next ones, arms the timer, resets hold-off).
pub struct PortContext<'a, M: Miniport> {
    pub(crate) core: &'a mut Core<M>,
}

impl<M: Miniport> std::fmt::Debug for PortContext<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortContext").finish_non_exhaustive()
    }
}

impl<'a, M: Miniport> PortContext<'a, M> {
    /// The adapter's configuration as `find_adapter` left it.
    pub fn configuration(&self) -> &PortConfiguration {
        &self.core.config
    }

    /// The request, while the miniport owns it (`None` once completed or for a stale id).
    pub fn srb(&self, id: impl Into<SrbId>) -> Option<&Srb> {
        self.core.entry(id.into()).and_then(|e| e.srb.as_deref())
    }

    /// The request, mutable: the miniport sets status, data, sense, transfer length.
    pub fn srb_mut(&mut self, id: impl Into<SrbId>) -> Option<&mut Srb> {
        self.core
            .entry_mut(id.into())
            .and_then(|e| e.srb.as_deref_mut())
    }

    /// The request's SRB extension (preallocated per slot, not reset between uses).
    pub fn srb_extension(&mut self, id: impl Into<SrbId>) -> Option<&mut M::SrbExtension> {
        self.core.entry_mut(id.into()).map(|e| &mut e.ext)
    }

    /// The request and its extension together.
    pub fn srb_and_extension(
        &mut self,
        id: impl Into<SrbId>,
    ) -> Option<(&mut Srb, &mut M::SrbExtension)> {
        let e = self.core.entry_mut(id.into())?;
        let srb = e.srb.as_mut()?;
        Some((srb, &mut e.ext))
    }

    /// `ScsiPortNotification(RequestComplete)`: the request is finished (its SrbStatus must be
    /// set, never PENDING). Ownership returns to the port immediately. A stale handle (the port
    /// already completed the request) is dropped and counted.
    pub fn request_complete(&mut self, srb: SrbRef) {
        let id = srb.id;
        match self.core.active.get_mut(id.slot as usize) {
            Some(e) if e.generation == id.generation && !e.completed && e.srb.is_some() => {
                e.completed = true;
                self.core.latch.completed.push(id.slot);
            }
            _ => {
                self.core.shared.count_late_completion();
                tracing::debug!(slot = id.slot, "late completion dropped");
            }
        }
    }

    /// `ScsiPortNotification(NextRequest)`: the miniport can take another request.
    pub fn next_request(&mut self) {
        self.core.latch.next_request = true;
    }

    /// `ScsiPortNotification(NextLuRequest)`: the miniport can take another request, including
    /// one for `address` while that LU still has requests outstanding (tagged or multi-request
    /// adapters only; otherwise the same as `next_request`).
    pub fn next_lu_request(&mut self, address: Address) {
        self.core.latch.next_request = true;
        if !self.core.latch.ready_lus.contains(&address) {
            self.core.latch.ready_lus.push(address);
        }
    }

    /// `ScsiPortNotification(ResetDetected)`: the adapter saw a bus reset. The miniport still
    /// completes its active requests itself; the port holds off new requests for the reset
    /// hold-off and reports the reset to upper layers.
    pub fn reset_detected(&mut self) {
        self.core.latch.reset_detected = true;
    }

    /// `ScsiPortNotification(RequestTimerCall)`: call `routine` once after `micros` µs, under
    /// the interrupt lock. Replaces a pending request; `micros == 0` cancels it.
    pub fn request_timer_call(&mut self, routine: HwRoutine<M>, micros: u32) {
        self.core.latch.timer = Some((Some(routine), micros));
    }

    /// Cancels a pending timer request (`RequestTimerCall` with 0 µs).
    pub fn cancel_timer_call(&mut self) {
        self.core.latch.timer = Some((None, 0));
    }

    /// `ScsiPortNotification(BusChangeDetected)`: devices on `path_id` came or went; the port
    /// re-scans the bus on a helper thread.
    pub fn bus_change_detected(&mut self, path_id: u8) {
        if !self.core.latch.bus_changes.contains(&path_id) {
            self.core.latch.bus_changes.push(path_id);
        }
    }

    /// `ScsiPortNotification(CallEnableInterrupts)`: the miniport has masked its interrupt (the
    /// port will not call `interrupt`, nor `start_io`, until `CallDisableInterrupts`) and wants
    /// `routine` run from the deferred stage to finish long work. The routine may complete
    /// requests and must end with [`call_disable_interrupts`](Self::call_disable_interrupts).
    pub fn call_enable_interrupts(&mut self, routine: HwRoutine<M>) {
        self.core.latch.enable_interrupts = Some(routine);
    }

    /// `ScsiPortNotification(CallDisableInterrupts)`: run `routine` synchronized with the
    /// interrupt routine (it should only unmask the adapter's interrupt), then interrupts flow
    /// again.
    pub fn call_disable_interrupts(&mut self, routine: HwRoutine<M>) {
        self.core.latch.disable_interrupts = Some(routine);
    }

    /// `ScsiPortNotification(WMIEvent)`: post an event to the port's event subscribers. At most
    /// [`WMI_EVENT_LATCH_DEPTH`] per deferred stage; more are dropped and counted.
    pub fn wmi_event(&mut self, event: WmiEvent) {
        if self.core.latch.wmi_events.len() < WMI_EVENT_LATCH_DEPTH {
            self.core.latch.wmi_events.push(event);
        } else {
            self.core.shared.count_dropped_wmi_event();
        }
    }

    /// `ScsiPortIoMapTransfer` (system DMA): the port "programs the DMA controller" and then
    /// calls the miniport's `dma_started` from the deferred stage, under the interrupt lock.
    pub fn io_map_transfer(&mut self, srb: impl Into<SrbId>) {
        if self.core.entry(srb.into()).is_some() {
            self.core.latch.map_transfer = true;
        }
    }

    /// `ScsiPortCompleteRequest`: completes every active request matching `filter` with
    /// `status` (DataTransferLength set to 0). Returns how many were completed. Handles the
    /// miniport still holds for them become stale.
    pub fn complete_requests(&mut self, filter: AddressFilter, status: SrbStatus) -> usize {
        let mut n = 0;
        for (slot, e) in self.core.active.iter_mut().enumerate() {
            if e.completed {
                continue;
            }
            if let Some(srb) = e.srb.as_mut()
                && filter.matches(srb.address)
            {
                srb.srb_status = status;
                srb.data_transfer_length = 0;
                e.completed = true;
                self.core.latch.completed.push(slot as u32);
                n += 1;
            }
        }
        n
    }

    /// `ScsiPortGetSrb`: the active request of `address` with `queue_tag` ([`SP_UNTAGGED`]
    /// for the untagged one).
    ///
    /// [`SP_UNTAGGED`]: crate::SP_UNTAGGED
    pub fn get_srb(&self, address: Address, queue_tag: u32) -> Option<SrbId> {
        self.core.active.iter().enumerate().find_map(|(slot, e)| {
            let srb = e.srb.as_ref()?;
            (!e.completed && srb.address == address && srb.queue_tag == queue_tag).then_some(
                SrbId {
                    slot: slot as u32,
                    generation: e.generation,
                },
            )
        })
    }

    /// The ids of every active request matching `filter` (in slot order).
    pub fn active_requests(&self, filter: AddressFilter) -> impl Iterator<Item = SrbId> + '_ {
        self.core
            .active
            .iter()
            .enumerate()
            .filter_map(move |(slot, e)| {
                let srb = e.srb.as_ref()?;
                (!e.completed && filter.matches(srb.address)).then_some(SrbId {
                    slot: slot as u32,
                    generation: e.generation,
                })
            })
    }

    /// `ScsiPortGetLogicalUnit`: the per-LU extension of `address`, if the port has addressed
    /// that LU.
    pub fn lu_extension(&mut self, address: Address) -> Option<&mut M::LuExtension> {
        self.core.lu_ext.get_mut(&address)
    }

    /// `ScsiPortLogError`: a structured error-log entry (also a `tracing` warning and a counter).
    pub fn log_error(
        &mut self,
        srb: Option<SrbId>,
        address: Address,
        code: ErrorCode,
        unique_id: u32,
    ) {
        self.core.shared.log_error(ErrorLogEntry {
            address,
            code,
            unique_id,
            queue_tag: srb.and_then(|id| self.srb(id)).map(|s| s.queue_tag),
        });
    }

    /// `StorPortBusy`: hold new requests until `requests_to_complete` outstanding requests have
    /// completed (all of them if fewer are outstanding). Honoured in both models.
    pub fn busy(&mut self, requests_to_complete: u32) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::Busy(requests_to_complete));
    }

    /// `StorPortReady`: cancels [`busy`](Self::busy).
    pub fn ready(&mut self) {
        self.core.latch.queue_ops.push(QueueOp::Ready);
    }

    /// `StorPortPause`: hold all requests to all LUs for `timeout_seconds` seconds (rounded up
    /// to port ticks; counted by the tick) or until [`resume`](Self::resume), whichever comes
    /// first. `u32::MAX`: until resumed.
    pub fn pause(&mut self, timeout_seconds: u32) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::Pause(timeout_seconds));
    }

    /// `StorPortResume`: ends [`pause`](Self::pause).
    pub fn resume(&mut self) {
        self.core.latch.queue_ops.push(QueueOp::Resume);
    }

    /// `StorPortDeviceBusy`: hold new requests for `address` until `requests_to_complete` of
    /// its outstanding requests have completed.
    pub fn device_busy(&mut self, address: Address, requests_to_complete: u32) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::DeviceBusy(address, requests_to_complete));
    }

    /// `StorPortDeviceReady`: cancels [`device_busy`](Self::device_busy).
    pub fn device_ready(&mut self, address: Address) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::DeviceReady(address));
    }

    /// `StorPortPauseDevice`: hold requests for `address` for `timeout_seconds` seconds
    /// (rounded up to port ticks) or until [`resume_device`](Self::resume_device).
    /// `u32::MAX`: until resumed.
    pub fn pause_device(&mut self, address: Address, timeout_seconds: u32) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::PauseDevice(address, timeout_seconds));
    }

    /// `StorPortResumeDevice`.
    pub fn resume_device(&mut self, address: Address) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::ResumeDevice(address));
    }

    /// `StorPortSetDeviceQueueDepth`: most requests outstanding for `address` in the Storport
    /// model (at least 1). Ignored by the SCSI Port model, which is paced by NextLuRequest.
    pub fn set_device_queue_depth(&mut self, address: Address, depth: u32) {
        self.core
            .latch
            .queue_ops
            .push(QueueOp::SetDeviceQueueDepth(address, depth.max(1)));
    }

    /// The adapter's interrupt line (for the miniport's "hardware").
    pub fn interrupt_line(&self) -> InterruptLine {
        self.core.line.clone()
    }

    /// `ScsiPortStallExecution`: busy-waits `micros` µs (keep it under 1 ms per routine).
    pub fn stall_execution(&self, micros: u32) {
        let end =
            std::time::Instant::now() + std::time::Duration::from_micros(micros.min(1000) as u64);
        while std::time::Instant::now() < end {
            std::hint::spin_loop();
        }
    }
}

/// The port's services to a full-duplex Storport `start_io`
/// ([`StorportMiniport::start_io_full_duplex`](crate::StorportMiniport::start_io_full_duplex)),
/// which runs under the *StartIo lock* only.
///
/// The request being started is *in hand*: [`srb`](Self::srb) / [`srb_mut`](Self::srb_mut)
/// reach it without the interrupt lock, and [`request_complete`](Self::request_complete)
/// finishes it in place. Everything the interrupt side owns (the miniport's `&mut self`, LU and
/// SRB extensions, other requests) is reached with [`synchronize_access`](Self::synchronize_access)
/// (`StorPortSynchronizeAccess`), which first hands the request in hand over to the interrupt
/// side: from then on it is reached through the [`PortContext`] there. Notifications are
/// latched and acted on after `start_io` returns, as with [`PortContext`]. NextRequest and
/// NextLuRequest are accepted and ignored, as Storport does.
pub struct StartIoContext<'a, M: Miniport> {
    pub(crate) adapter: &'a AdapterShared<M>,
    pub(crate) latch: &'a mut Latch<M>,
    /// Requests of this batch started before this one, still to be handed over.
    pub(crate) done: &'a mut Vec<InHand>,
    /// The concurrent channel this `start_io` runs on.
    pub(crate) channel: u32,
    pub(crate) id: SrbId,
    /// The request in hand (`None` once handed to the interrupt side).
    pub(crate) srb: Option<Box<Srb>>,
    /// RequestComplete latched for the request in hand.
    pub(crate) completed: bool,
}

impl<M: Miniport> std::fmt::Debug for StartIoContext<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartIoContext")
            .field("slot", &self.id.slot)
            .field("in_hand", &self.srb.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a, M: Miniport> StartIoContext<'a, M> {
    /// Hands the request in hand and the earlier ones of this batch to the interrupt side's
    /// table (under the interrupt lock), with the latched notifications.
    pub(crate) fn publish(&mut self, core: &mut Core<M>) {
        if let Some(srb) = self.srb.take() {
            self.done.push((self.id, srb, self.completed));
        }
        publish(self.done, self.latch, core);
    }

    /// The adapter's configuration as `find_adapter` left it.
    pub fn configuration(&self) -> &PortConfiguration {
        &self.adapter.config
    }

    /// The concurrent channel this call runs on (`0..concurrent_channels`; always 0 without
    /// concurrent channels). Calls on different channels may run at the same time; calls on
    /// one channel never do. Per-channel state of the miniport is indexed by it.
    pub fn channel(&self) -> u32 {
        self.channel
    }

    /// The request in hand (`None` for another id, or once completed or handed over with
    /// [`synchronize_access`](Self::synchronize_access)).
    pub fn srb(&self, id: impl Into<SrbId>) -> Option<&Srb> {
        let id = id.into();
        (id == self.id && !self.completed)
            .then_some(self.srb.as_deref())
            .flatten()
    }

    /// The request in hand, mutable.
    pub fn srb_mut(&mut self, id: impl Into<SrbId>) -> Option<&mut Srb> {
        let id = id.into();
        if id == self.id && !self.completed {
            self.srb.as_deref_mut()
        } else {
            None
        }
    }

    /// `StorPortNotification(RequestComplete)`: for the request in hand, finished in place;
    /// for any other handle (or after a hand-over), completed under the interrupt lock.
    pub fn request_complete(&mut self, srb: SrbRef) {
        if srb.id == self.id && self.srb.is_some() && !self.completed {
            self.completed = true;
            return;
        }
        self.synchronize_access(|_, port| port.request_complete(srb));
    }

    /// `StorPortSynchronizeAccess`: runs `f` with the device extension and the port services
    /// under the interrupt lock (the interrupt routine is excluded meanwhile). The request in
    /// hand is handed over to the interrupt side first.
    pub fn synchronize_access<R>(
        &mut self,
        f: impl FnOnce(&mut M, &mut PortContext<'_, M>) -> R,
    ) -> R {
        let mut g = self.adapter.interrupt.lock();
        let st = &mut *g;
        self.publish(&mut st.core);
        f(&mut st.miniport, &mut PortContext { core: &mut st.core })
    }

    /// NextRequest: accepted and ignored (Storport pushes requests).
    pub fn next_request(&mut self) {}

    /// NextLuRequest: accepted and ignored (Storport pushes requests).
    pub fn next_lu_request(&mut self, address: Address) {
        let _ = address;
    }

    /// `StorPortNotification(ResetDetected)`: see [`PortContext::reset_detected`].
    pub fn reset_detected(&mut self) {
        self.latch.reset_detected = true;
    }

    /// `StorPortNotification(RequestTimerCall)`: see [`PortContext::request_timer_call`]; the
    /// routine runs under both locks.
    pub fn request_timer_call(&mut self, routine: HwRoutine<M>, micros: u32) {
        self.latch.timer = Some((Some(routine), micros));
    }

    /// Cancels a pending timer request.
    pub fn cancel_timer_call(&mut self) {
        self.latch.timer = Some((None, 0));
    }

    /// `StorPortNotification(BusChangeDetected)`: see [`PortContext::bus_change_detected`].
    pub fn bus_change_detected(&mut self, path_id: u8) {
        if !self.latch.bus_changes.contains(&path_id) {
            self.latch.bus_changes.push(path_id);
        }
    }

    /// `StorPortNotification(WMIEvent)`: see [`PortContext::wmi_event`].
    pub fn wmi_event(&mut self, event: WmiEvent) {
        if self.latch.wmi_events.len() < WMI_EVENT_LATCH_DEPTH {
            self.latch.wmi_events.push(event);
        } else {
            self.adapter.shared.count_dropped_wmi_event();
        }
    }

    /// `StorPortBusy`: see [`PortContext::busy`].
    pub fn busy(&mut self, requests_to_complete: u32) {
        self.latch
            .queue_ops
            .push(QueueOp::Busy(requests_to_complete));
    }

    /// `StorPortReady`.
    pub fn ready(&mut self) {
        self.latch.queue_ops.push(QueueOp::Ready);
    }

    /// `StorPortPause`: see [`PortContext::pause`].
    pub fn pause(&mut self, timeout_seconds: u32) {
        self.latch.queue_ops.push(QueueOp::Pause(timeout_seconds));
    }

    /// `StorPortResume`.
    pub fn resume(&mut self) {
        self.latch.queue_ops.push(QueueOp::Resume);
    }

    /// `StorPortDeviceBusy`: see [`PortContext::device_busy`].
    pub fn device_busy(&mut self, address: Address, requests_to_complete: u32) {
        self.latch
            .queue_ops
            .push(QueueOp::DeviceBusy(address, requests_to_complete));
    }

    /// `StorPortDeviceReady`.
    pub fn device_ready(&mut self, address: Address) {
        self.latch.queue_ops.push(QueueOp::DeviceReady(address));
    }

    /// `StorPortPauseDevice`: see [`PortContext::pause_device`].
    pub fn pause_device(&mut self, address: Address, timeout_seconds: u32) {
        self.latch
            .queue_ops
            .push(QueueOp::PauseDevice(address, timeout_seconds));
    }

    /// `StorPortResumeDevice`.
    pub fn resume_device(&mut self, address: Address) {
        self.latch.queue_ops.push(QueueOp::ResumeDevice(address));
    }

    /// `StorPortSetDeviceQueueDepth`: see [`PortContext::set_device_queue_depth`].
    pub fn set_device_queue_depth(&mut self, address: Address, depth: u32) {
        self.latch
            .queue_ops
            .push(QueueOp::SetDeviceQueueDepth(address, depth.max(1)));
    }

    /// `StorPortLogError`: see [`PortContext::log_error`].
    pub fn log_error(&mut self, address: Address, code: ErrorCode, unique_id: u32) {
        let queue_tag = self.srb.as_ref().map(|s| s.queue_tag);
        self.adapter.shared.log_error(ErrorLogEntry {
            address,
            code,
            unique_id,
            queue_tag,
        });
    }

    /// The adapter's interrupt line (for the miniport's "hardware").
    pub fn interrupt_line(&self) -> InterruptLine {
        self.adapter.line.clone()
    }
}

/// Moves started requests into the interrupt side's table (completed ones straight onto the
/// completion latch) and the StartIo-side notifications into its latch. Under the interrupt
/// lock; keeps the capacity of `done` and `latch`.
pub(crate) fn publish<M: Miniport>(
    done: &mut Vec<InHand>,
    latch: &mut Latch<M>,
    core: &mut Core<M>,
) {
    for (id, srb, completed) in done.drain(..) {
        core.lu_ext.entry(srb.address).or_default();
        let e = &mut core.active[id.slot as usize];
        e.generation = id.generation;
        e.srb = Some(srb);
        e.completed = completed;
        if completed {
            core.latch.completed.push(id.slot);
        }
    }
    latch.merge_into(&mut core.latch);
}
