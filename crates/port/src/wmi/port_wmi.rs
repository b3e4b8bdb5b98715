//! The port's side of WMI (what the seed's port driver does with IRP_MJ_SYSTEM_CONTROL): one
//! [`PortWmi`] per adapter merges the port's own blocks ([`super::blocks`]) with the miniport's,
//! routes each operation to whoever owns the GUID — the port answers its statistics blocks from
//! its counters; the miniport's go to `start_io` as SRB_FUNCTION_WMI requests —, counts the
//! consumers of events and of expensive blocks' collection (exactly one ENABLE for the first,
//! one DISABLE for the last) and delivers the miniport's WMI events to the subscribers of their
//! GUID.
//!
//! Threads and locks. The operations run on the caller's thread and block until the miniport
//! answers (not from a completion or event sink: [`WaitError::WouldDeadlock`]). Every request to
//! the miniport goes through one ordered outbox: it is decided under the short `state` lock,
//! queued there, and submitted by whichever thread holds the `flushing` flag, so the miniport
//! sees ENABLE and DISABLE of a GUID in the order the port decided them even when a consumer is
//! dropped on another thread (or inside a sink, where the DISABLE is sent without waiting).
//! Enables are serialized by `enable_lock`, held while the first consumer waits for the
//! provider's answer, so a second consumer never succeeds on an ENABLE that then fails. Lock
//! order: `enable_lock`, then `state`, `waiters` and `subscribers` (leaf locks, never held while
//! submitting or calling a sink).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::blocks::{self, STATISTICS_BLOCK_SIZE, StatisticsBlock};
use super::{
    REGINFO_ENTRY_SIZE, WMIREG_FLAG_EVENT_ONLY_GUID, WMIREG_FLAG_EXPENSIVE,
    WMIREG_FLAG_REMOVE_GUID, WmiControl, WmiGuidRegInfo, sub_function,
};
use crate::adapter::{WaitError, in_deferred_stage};
use crate::context::WmiEvent;
use crate::handle::{Adapter, AdapterObject, CompletionSink, PortEvent, PortEventSink};
use crate::srb::{Address, DataDirection, Srb, SrbFlags, SrbFunction, SrbStatus, WmiRequest};

/// Largest buffer a WMI operation may be given (query, set data, method input or output).
pub const WMI_MAX_BUFFER: u32 = 1 << 20;
/// How long an operation waits for the miniport's answer (the adapter may be stopped).
pub const WMI_WAIT: Duration = Duration::from_secs(30);
/// First buffer for the miniport's REGINFO (room for 32 blocks; retried once with the size the
/// provider asks for).
const REGINFO_FIRST_BUFFER: u32 = 32 * REGINFO_ENTRY_SIZE as u32;

/// Why a WMI operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WmiError {
    /// The buffer is too small: retry with at least `needed` bytes.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// The size the block (or method output) needs.
        needed: u32,
    },
    /// The buffer asked for (or the data given) is larger than [`WMI_MAX_BUFFER`].
    #[error("buffer of {size} bytes is larger than the {WMI_MAX_BUFFER} allowed")]
    TooLarge {
        /// The size asked for.
        size: u64,
    },
    /// No block with this GUID is registered (by the port or the miniport).
    #[error("no WMI data block with this GUID")]
    UnknownGuid,
    /// The instance index is not below the block's instance count.
    #[error("instance {instance} does not exist (the block has {instance_count})")]
    InvalidInstance {
        /// The index asked for.
        instance: u32,
        /// The block's instance count.
        instance_count: u32,
    },
    /// The block is event-only (WMIREG_FLAG_EVENT_ONLY_GUID) and cannot be queried.
    #[error("the block is event-only and cannot be queried")]
    EventOnly,
    /// The block is one of the port's statistics blocks, which are read-only.
    #[error("the block is read-only")]
    ReadOnly,
    /// The port's statistics blocks have no methods.
    #[error("the block has no methods")]
    NoMethods,
    /// The provider refused the request (SRB_STATUS_ERROR: read-only block, unknown item or
    /// method, bad input, a routine it does not provide).
    #[error("the provider refused the request")]
    Refused,
    /// The request ended with another SRB status.
    #[error("the WMI request failed with SRB status {}", .0.name())]
    Failed(SrbStatus),
    /// The port could not run the request (called from a sink, or no answer in [`WMI_WAIT`]).
    #[error("{0}")]
    Port(WaitError),
}

/// Who answers a data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WmiSource {
    /// The port, from its statistics ([`blocks`]).
    Port,
    /// The miniport's WMI provider.
    Miniport,
}

/// One registered data block, as [`Adapter::wmi_reg_info`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WmiBlock {
    /// GUID, instance count and `WMIREG_FLAG_*`.
    pub info: WmiGuidRegInfo,
    /// Who answers it.
    pub source: WmiSource,
}

impl WmiBlock {
    /// True if WMIREG_FLAG_EXPENSIVE is set.
    pub fn expensive(&self) -> bool {
        self.info.flags & WMIREG_FLAG_EXPENSIVE != 0
    }
    /// True if WMIREG_FLAG_EVENT_ONLY_GUID is set.
    pub fn event_only(&self) -> bool {
        self.info.flags & WMIREG_FLAG_EVENT_ONLY_GUID != 0
    }
}

/// Receives the WMI events of the GUID it subscribed to ([`Adapter::wmi_subscribe`]).
///
/// Called on the deferred stage's thread, outside the adapter locks, like a [`PortEventSink`].
/// Must not block. Dropping a [`WmiConsumer`] from here is allowed (its DISABLE is sent without
/// waiting).
pub trait WmiEventSink: Send + Sync {
    /// One event of the subscribed GUID.
    fn wmi_event(&self, event: &WmiEvent);
}

/// A consumer of a block's events or of an expensive block's collection: the port keeps the
/// provider enabled while at least one exists. Dropping it (or [`close`](Self::close)) ends the
/// consumer; the last one makes the port send DISABLE once.
#[must_use = "dropping the consumer disables it at once"]
pub struct WmiConsumer {
    adapter: Adapter,
    guid: [u8; 16],
    control: WmiControl,
    id: u64,
    open: bool,
}

impl std::fmt::Debug for WmiConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WmiConsumer")
            .field("guid", &self.guid)
            .field("control", &self.control)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl WmiConsumer {
    /// The GUID consumed.
    pub fn guid(&self) -> [u8; 16] {
        self.guid
    }

    /// Events or collection.
    pub fn control(&self) -> WmiControl {
        self.control
    }

    /// Ends the consumer and, if it was the last, waits for the provider's answer to the
    /// DISABLE. Not from a sink (use drop there).
    pub fn close(mut self) -> Result<(), WmiError> {
        self.open = false;
        let a = &self.adapter;
        a.inner()
            .wmi()
            .release(a.inner(), self.guid, self.control, self.id, true)
    }
}

impl Drop for WmiConsumer {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let a = &self.adapter;
        let wait = !in_deferred_stage();
        match a
            .inner()
            .wmi()
            .release(a.inner(), self.guid, self.control, self.id, wait)
        {
            // The adapter is shut down: nothing left to disable.
            Ok(()) | Err(WmiError::Failed(SrbStatus::NO_HBA)) => {}
            Err(e) => tracing::warn!(error = %e, control = ?self.control, "WMI disable failed"),
        }
    }
}

/// Consumers of one (GUID, control).
#[derive(Debug, Default)]
struct Consumers {
    count: u32,
    /// The first consumer sent ENABLE to the miniport (so the last sends DISABLE).
    sent: bool,
}

#[derive(Default)]
struct State {
    consumers: HashMap<([u8; 16], WmiControl), Consumers>,
    /// Requests decided and not yet submitted, in decision order.
    outbox: VecDeque<Srb>,
}

/// Answers waited for, by ticket (`Srb::original_request`). `None`: not answered yet. A ticket
/// nobody waits for (a DISABLE sent from a sink, an operation that timed out) has no entry.
#[derive(Default)]
struct Waiters {
    done: Mutex<HashMap<u64, Option<Srb>>>,
    cv: Condvar,
}

impl CompletionSink for Waiters {
    fn complete(&self, srb: Srb) {
        let mut done = self.done.lock();
        match done.get_mut(&srb.original_request) {
            Some(slot) => {
                *slot = Some(srb);
                self.cv.notify_all();
            }
            None if !srb.srb_status.is_success() => tracing::warn!(
                sub_function = srb.wmi.sub_function,
                status = srb.srb_status.name(),
                "unawaited WMI request failed"
            ),
            None => {}
        }
    }
}

/// An event subscriber: consumer id, GUID, sink.
type Subscriber = (u64, [u8; 16], Arc<dyn WmiEventSink>);

/// The event subscribers.
#[derive(Default)]
struct Subscribers(RwLock<Vec<Subscriber>>);

impl PortEventSink for Subscribers {
    fn port_event(&self, event: &PortEvent) {
        let PortEvent::Wmi(e) = event else { return };
        let sinks: Vec<Arc<dyn WmiEventSink>> = self
            .0
            .read()
            .iter()
            .filter(|(_, g, _)| *g == e.guid)
            .map(|(_, _, s)| s.clone())
            .collect();
        for s in sinks {
            s.wmi_event(e);
        }
    }
}

/// The WMI state of one adapter (kept beside the adapter, shared by every [`Adapter`] handle).
pub(crate) struct PortWmi {
    state: Mutex<State>,
    flushing: AtomicBool,
    enable_lock: Mutex<()>,
    waiters: Arc<Waiters>,
    subscribers: Arc<Subscribers>,
    sink: OnceLock<u32>,
    address: OnceLock<Address>,
    next_ticket: AtomicU64,
    next_consumer: AtomicU64,
}

impl Default for PortWmi {
    fn default() -> Self {
        PortWmi {
            state: Mutex::new(State::default()),
            flushing: AtomicBool::new(false),
            enable_lock: Mutex::new(()),
            waiters: Arc::new(Waiters::default()),
            subscribers: Arc::new(Subscribers::default()),
            sink: OnceLock::new(),
            address: OnceLock::new(),
            next_ticket: AtomicU64::new(1),
            next_consumer: AtomicU64::new(1),
        }
    }
}

/// The operation of one request, with what it carries.
#[derive(Clone, Copy)]
enum Op<'a> {
    RegInfo,
    QueryAll,
    QuerySingle(u32),
    SetBlock(u32, &'a [u8]),
    SetItem(u32, u32, &'a [u8]),
    Execute(u32, u32, &'a [u8]),
    Control(WmiControl, bool),
}

fn check_size(size: usize) -> Result<u32, WmiError> {
    match u32::try_from(size) {
        Ok(s) if s <= WMI_MAX_BUFFER => Ok(s),
        _ => Err(WmiError::TooLarge { size: size as u64 }),
    }
}

fn check_instance(block: &WmiBlock, instance: u32) -> Result<(), WmiError> {
    if instance < block.info.instance_count {
        Ok(())
    } else {
        Err(WmiError::InvalidInstance {
            instance,
            instance_count: block.info.instance_count,
        })
    }
}

impl PortWmi {
    /// The sink to subscribe to the adapter's events (miniport WMI events to their GUID's
    /// subscribers).
    pub(crate) fn event_router(&self) -> Arc<dyn PortEventSink> {
        self.subscribers.clone()
    }

    /// Consumers of (`guid`, `control`) now.
    pub(crate) fn consumers(&self, guid: [u8; 16], control: WmiControl) -> u32 {
        self.state
            .lock()
            .consumers
            .get(&(guid, control))
            .map_or(0, |c| c.count)
    }

    /// The port's blocks, then the miniport's (a miniport block with a port GUID is hidden).
    pub(crate) fn reg_info(&self, a: &dyn AdapterObject) -> Result<Vec<WmiBlock>, WmiError> {
        let lus = u32::try_from(a.logical_units().len()).unwrap_or(u32::MAX);
        let mut v: Vec<WmiBlock> = blocks::port_reg_info(lus)
            .into_iter()
            .map(|info| WmiBlock {
                info,
                source: WmiSource::Port,
            })
            .collect();
        for info in self.miniport_reg_info(a)? {
            if blocks::is_port_block(&info.guid) {
                tracing::warn!("the miniport registers a port statistics GUID; ignored");
                continue;
            }
            v.push(WmiBlock {
                info,
                source: WmiSource::Miniport,
            });
        }
        Ok(v)
    }

    fn find(&self, a: &dyn AdapterObject, guid: &[u8; 16]) -> Result<WmiBlock, WmiError> {
        self.reg_info(a)?
            .into_iter()
            .find(|b| b.info.guid == *guid)
            .ok_or(WmiError::UnknownGuid)
    }

    /// QUERY_ALL_DATA (`instance` None) or QUERY_SINGLE_INSTANCE into a buffer of
    /// `buffer_size` bytes; returns the bytes used.
    pub(crate) fn query(
        &self,
        a: &dyn AdapterObject,
        guid: &[u8; 16],
        instance: Option<u32>,
        buffer_size: u32,
    ) -> Result<Vec<u8>, WmiError> {
        check_size(buffer_size as usize)?;
        let block = self.find(a, guid)?;
        if block.event_only() {
            return Err(WmiError::EventOnly);
        }
        if let Some(i) = instance {
            check_instance(&block, i)?;
        }
        match block.source {
            WmiSource::Port => Self::query_port_block(a, guid, instance, buffer_size),
            WmiSource::Miniport => {
                let op = instance.map_or(Op::QueryAll, Op::QuerySingle);
                self.exchange(a, guid, op, buffer_size)
            }
        }
    }

    /// CHANGE_SINGLE_INSTANCE (`item` None) or CHANGE_SINGLE_ITEM.
    pub(crate) fn set(
        &self,
        a: &dyn AdapterObject,
        guid: &[u8; 16],
        instance: u32,
        item: Option<u32>,
        data: &[u8],
    ) -> Result<(), WmiError> {
        check_size(data.len())?;
        let block = self.find(a, guid)?;
        check_instance(&block, instance)?;
        if block.source == WmiSource::Port {
            return Err(WmiError::ReadOnly);
        }
        let op = match item {
            None => Op::SetBlock(instance, data),
            Some(id) => Op::SetItem(instance, id, data),
        };
        self.exchange(a, guid, op, 0).map(drop)
    }

    /// EXECUTE_METHOD: `input` in, up to `buffer_size` bytes out.
    pub(crate) fn execute(
        &self,
        a: &dyn AdapterObject,
        guid: &[u8; 16],
        instance: u32,
        method: u32,
        input: &[u8],
        buffer_size: u32,
    ) -> Result<Vec<u8>, WmiError> {
        check_size(input.len())?;
        check_size(buffer_size as usize)?;
        let block = self.find(a, guid)?;
        check_instance(&block, instance)?;
        if block.source == WmiSource::Port {
            return Err(WmiError::NoMethods);
        }
        self.exchange(a, guid, Op::Execute(instance, method, input), buffer_size)
    }

    /// A new consumer of `control` on `guid`; the first one sends ENABLE_EVENTS (any miniport
    /// block) or ENABLE_COLLECTION (expensive miniport blocks only) and fails if the provider
    /// refuses. With `sink`, the consumer receives the GUID's events.
    pub(crate) fn enable(
        &self,
        adapter: &Adapter,
        guid: &[u8; 16],
        control: WmiControl,
        sink: Option<Arc<dyn WmiEventSink>>,
    ) -> Result<WmiConsumer, WmiError> {
        if in_deferred_stage() {
            return Err(WmiError::Port(WaitError::WouldDeadlock));
        }
        let a = adapter.inner();
        let _serial = self.enable_lock.lock();
        let block = self.find(a, guid)?;
        let send = block.source == WmiSource::Miniport
            && (control == WmiControl::Event || block.expensive());
        let key = (*guid, control);
        let (ticket, srb) = self.request(a, guid, Op::Control(control, true), 0)?;
        let send_now = {
            let mut st = self.state.lock();
            let c = st.consumers.entry(key).or_default();
            c.count += 1;
            let first = c.count == 1 && send;
            if first {
                c.sent = true;
                self.waiters.done.lock().insert(ticket, None);
                st.outbox.push_back(srb);
            }
            first
        };
        if send_now {
            self.flush(a);
            let result = self.wait(ticket).and_then(|s| Self::status(&s).map(drop));
            if let Err(e) = result {
                // Nobody else could join meanwhile (enable_lock): this was the only consumer.
                self.state.lock().consumers.remove(&key);
                return Err(e);
            }
        }
        let id = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        if let Some(sink) = sink {
            self.subscribers.0.write().push((id, *guid, sink));
        }
        Ok(WmiConsumer {
            adapter: adapter.clone(),
            guid: *guid,
            control,
            id,
            open: true,
        })
    }

    /// One consumer fewer; the last one sends DISABLE if its first sent ENABLE. `wait`: wait for
    /// the provider's answer (not from a sink).
    fn release(
        &self,
        a: &dyn AdapterObject,
        guid: [u8; 16],
        control: WmiControl,
        id: u64,
        wait: bool,
    ) -> Result<(), WmiError> {
        self.subscribers.0.write().retain(|(i, _, _)| *i != id);
        let (ticket, srb) = self.request(a, &guid, Op::Control(control, false), 0)?;
        {
            let mut st = self.state.lock();
            let key = (guid, control);
            let Some(c) = st.consumers.get_mut(&key) else {
                return Ok(());
            };
            c.count = c.count.saturating_sub(1);
            if c.count > 0 {
                return Ok(());
            }
            let sent = c.sent;
            st.consumers.remove(&key);
            if !sent {
                return Ok(());
            }
            if wait {
                self.waiters.done.lock().insert(ticket, None);
            }
            st.outbox.push_back(srb);
        }
        self.flush(a);
        if wait {
            self.wait(ticket).and_then(|s| Self::status(&s).map(drop))
        } else {
            Ok(())
        }
    }

    /// The miniport's REGINFO (empty if it is not a WMI data provider).
    fn miniport_reg_info(&self, a: &dyn AdapterObject) -> Result<Vec<WmiGuidRegInfo>, WmiError> {
        if !a.configuration().wmi_data_provider {
            return Ok(Vec::new());
        }
        let data = match self.exchange(a, &[0; 16], Op::RegInfo, REGINFO_FIRST_BUFFER) {
            Err(WmiError::BufferTooSmall { needed }) => {
                check_size(needed as usize)?;
                self.exchange(a, &[0; 16], Op::RegInfo, needed)?
            }
            other => other?,
        };
        Ok(data
            .chunks_exact(REGINFO_ENTRY_SIZE)
            .map(|e| {
                let mut guid = [0u8; 16];
                guid.copy_from_slice(&e[..16]);
                let word = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
                WmiGuidRegInfo {
                    guid,
                    instance_count: word(16),
                    flags: word(20),
                }
            })
            .filter(|g| g.flags & WMIREG_FLAG_REMOVE_GUID == 0)
            .collect())
    }

    /// The port's statistics blocks, from the counters (no miniport call).
    fn query_port_block(
        a: &dyn AdapterObject,
        guid: &[u8; 16],
        instance: Option<u32>,
        buffer_size: u32,
    ) -> Result<Vec<u8>, WmiError> {
        let instances: Vec<StatisticsBlock> = if *guid == blocks::ADAPTER_STATISTICS_GUID {
            vec![StatisticsBlock {
                address: None,
                statistics: a.statistics(),
            }]
        } else {
            let lus = a.logical_units();
            let pick: Vec<Address> = match instance {
                Some(i) => lus.get(i as usize).map(|l| l.address).into_iter().collect(),
                None => lus.iter().map(|l| l.address).collect(),
            };
            pick.into_iter()
                .map(|address| StatisticsBlock {
                    address: Some(address),
                    statistics: a.lu_statistics(address).unwrap_or_default(),
                })
                .collect()
        };
        let needed = instances.len() * STATISTICS_BLOCK_SIZE;
        if needed > buffer_size as usize {
            return Err(WmiError::BufferTooSmall {
                needed: check_size(needed)?,
            });
        }
        let mut out = Vec::with_capacity(needed);
        for b in &instances {
            out.extend_from_slice(&b.to_bytes());
        }
        Ok(out)
    }

    /// Sends one request to the miniport in order with the others and waits for it; returns the
    /// bytes it used.
    fn exchange(
        &self,
        a: &dyn AdapterObject,
        guid: &[u8; 16],
        op: Op<'_>,
        buffer_size: u32,
    ) -> Result<Vec<u8>, WmiError> {
        if in_deferred_stage() {
            return Err(WmiError::Port(WaitError::WouldDeadlock));
        }
        let (ticket, srb) = self.request(a, guid, op, buffer_size)?;
        self.waiters.done.lock().insert(ticket, None);
        self.state.lock().outbox.push_back(srb);
        self.flush(a);
        let mut done = self.wait(ticket)?;
        Self::status(&done)?;
        let n = (done.data_transfer_length as usize).min(done.data.len());
        done.data.truncate(n);
        Ok(done.data)
    }

    /// Builds the SRB_FUNCTION_WMI request of `op` and its ticket.
    fn request(
        &self,
        a: &dyn AdapterObject,
        guid: &[u8; 16],
        op: Op<'_>,
        buffer_size: u32,
    ) -> Result<(u64, Srb), WmiError> {
        let (sub, instance, item, input): (u8, u32, u32, &[u8]) = match op {
            Op::RegInfo => (sub_function::REGINFO, 0, 0, &[]),
            Op::QueryAll => (sub_function::QUERY_ALL_DATA, 0, 0, &[]),
            Op::QuerySingle(i) => (sub_function::QUERY_SINGLE_INSTANCE, i, 0, &[]),
            Op::SetBlock(i, d) => (sub_function::CHANGE_SINGLE_INSTANCE, i, 0, d),
            Op::SetItem(i, id, d) => (sub_function::CHANGE_SINGLE_ITEM, i, id, d),
            Op::Execute(i, m, d) => (sub_function::EXECUTE_METHOD, i, m, d),
            Op::Control(c, on) => {
                let sub = match (c, on) {
                    (WmiControl::Event, true) => sub_function::ENABLE_EVENTS,
                    (WmiControl::Event, false) => sub_function::DISABLE_EVENTS,
                    (WmiControl::DataBlock, true) => sub_function::ENABLE_COLLECTION,
                    (WmiControl::DataBlock, false) => sub_function::DISABLE_COLLECTION,
                };
                (sub, 0, 0, &[])
            }
        };
        let len = check_size(input.len().max(buffer_size as usize))?;
        let mut data = vec![0u8; len as usize];
        data[..input.len()].copy_from_slice(input);
        let direction = match op {
            Op::SetBlock(..) | Op::SetItem(..) => DataDirection::Out,
            Op::Execute(..) => DataDirection::Unspecified,
            _ if len == 0 => DataDirection::None,
            _ => DataDirection::In,
        };
        // One fixed address per adapter keeps every WMI request in one queue, in order.
        let address = *self.address.get_or_init(|| {
            a.logical_units()
                .first()
                .map_or(Address::new(0, 0, 0), |l| l.address)
        });
        let mut srb = Srb::function(SrbFunction::Wmi, address).with_data(data, len, direction);
        srb.flags
            .insert(SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE);
        srb.wmi = WmiRequest {
            sub_function: sub,
            adapter_request: true,
            guid: *guid,
            instance_index: instance,
            item_id: item,
            in_size: input.len() as u32,
        };
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        srb.original_request = ticket;
        Ok((ticket, srb))
    }

    /// Submits the outbox in order. Whoever finds `flushing` set leaves its requests to the
    /// thread that set it (possibly itself, further up the stack, when a sink dropped a
    /// consumer while this thread submitted).
    fn flush(&self, a: &dyn AdapterObject) {
        let sink = *self
            .sink
            .get_or_init(|| a.register_sink(self.waiters.clone()));
        loop {
            if self.flushing.swap(true, Ordering::AcqRel) {
                return;
            }
            loop {
                let next = self.state.lock().outbox.pop_front();
                match next {
                    Some(srb) => a.submit(sink, srb),
                    None => break,
                }
            }
            self.flushing.store(false, Ordering::Release);
            if self.state.lock().outbox.is_empty() {
                return;
            }
        }
    }

    /// Waits up to [`WMI_WAIT`] for the answer to `ticket`.
    fn wait(&self, ticket: u64) -> Result<Srb, WmiError> {
        let deadline = Instant::now() + WMI_WAIT;
        let mut done = self.waiters.done.lock();
        loop {
            if let Some(slot) = done.get_mut(&ticket)
                && let Some(srb) = slot.take()
            {
                done.remove(&ticket);
                return Ok(srb);
            }
            if self.waiters.cv.wait_until(&mut done, deadline).timed_out() {
                if let Some(Some(srb)) = done.remove(&ticket) {
                    return Ok(srb);
                }
                return Err(WmiError::Port(WaitError::TimedOut));
            }
        }
    }

    /// The provider's answer as a result.
    fn status(srb: &Srb) -> Result<&Srb, WmiError> {
        match srb.srb_status.status() {
            SrbStatus::SUCCESS => Ok(srb),
            SrbStatus::DATA_OVERRUN => Err(WmiError::BufferTooSmall {
                needed: srb.data_transfer_length,
            }),
            SrbStatus::ERROR => Err(WmiError::Refused),
            other => Err(WmiError::Failed(other)),
        }
    }
}
