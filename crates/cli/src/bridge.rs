//! The bridge between the iSCSI front end and the port driver: [`PortService`] implements
//! [`iscsi::service::ScsiService`] by turning each [`ScsiTask`] into an EXECUTE_SCSI [`Srb`]
//! submitted to the adapter that hosts the LU, and each completed SRB back into the task.
//!
//! Threads: `submit` runs on a tokio worker (the connection's task) and never blocks: it parks
//! the task in the in-flight table and hands the SRB to the port. Completions arrive on
//! whichever thread runs the port's deferred stage ([`BridgeSink::complete`]), which moves the
//! buffers back into the task and wakes its connection. Task management runs on tokio's
//! blocking pool and waits for its SRBs.
//!
//! No allocation per command at steady state: the data buffers move task -> SRB -> task, the
//! in-flight table is a slab whose storage is reused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use device::{ItNexus as DeviceNexus, LogicalUnit};
use iscsi::service::{
    DataDirection as TaskDirection, LuHandle, Nexus, ScsiService, ScsiTask, TaskAttribute,
    TmfFunction, TmfRequest, TmfResponse, status,
};
use parking_lot::{Condvar, Mutex};
use port::{
    Adapter, Address, CompletionSink, DataDirection, ItNexus, QueueAction, Srb, SrbFlags,
    SrbFunction, SrbStatus, Submitter,
};
use slab::Slab;

/// Seconds an iSCSI command may spend in the port before the timeout recovery starts.
pub const COMMAND_TIMEOUT_SECS: u32 = 30;

/// One LU the front end can address: which adapter, where on it, and the device behind it.
#[derive(Debug, Clone)]
pub struct LuRoute {
    /// Index into the bridge's adapters.
    pub adapter: usize,
    /// Address on that adapter.
    pub address: Address,
    /// The emulated device (for nexus registration).
    pub lu: Arc<LogicalUnit>,
}

/// Control requests (aborts, resets) issued by the bridge itself carry this bit in
/// `original_request`; their completions wake a waiter instead of a task.
const CONTROL_BIT: u64 = 1 << 63;

struct InFlight {
    /// The task while its SRB is in the port, by slab key.
    tasks: Slab<ParkedTask>,
    /// Counts parked tasks; its low 32 bits tell reuses of one slab key apart in cookies.
    parked: u32,
    /// Completed control requests by cookie.
    control_done: Vec<(u64, Srb)>,
}

struct ParkedTask {
    task: ScsiTask,
    cookie: u64,
    adapter: usize,
    address: Address,
}

struct Shared {
    inflight: Mutex<InFlight>,
    control_cv: Condvar,
    seq: AtomicU32,
}

/// The completion sink of one adapter's submitter.
struct BridgeSink {
    shared: Arc<Shared>,
}

impl CompletionSink for BridgeSink {
    fn complete(&self, srb: Srb) {
        let cookie = srb.original_request;
        if cookie & CONTROL_BIT != 0 {
            self.shared.inflight.lock().control_done.push((cookie, srb));
            self.shared.control_cv.notify_all();
            return;
        }
        let key = (cookie & 0xFFFF_FFFF) as usize;
        let parked = {
            let mut inflight = self.shared.inflight.lock();
            match inflight.tasks.get(key) {
                Some(p) if p.cookie == cookie => inflight.tasks.remove(key),
                _ => {
                    tracing::warn!(cookie, "completion for an unknown task dropped");
                    return;
                }
            }
        };
        let mut task = parked.task;
        finish_task(&mut task, srb);
        task.complete();
    }
}

/// READ(6), READ(10), READ(12), READ(16).
fn is_read(opcode: u8) -> bool {
    matches!(opcode, 0x08 | 0x28 | 0xA8 | 0x88)
}

/// Moves the SRB's outcome and buffers back into the task.
fn finish_task(task: &mut ScsiTask, mut srb: Srb) {
    let moved = srb.data_transfer_length.min(srb.data.len() as u32);
    task.transfer_length = moved.saturating_add(srb.overflow);
    let code = srb.srb_status.status();
    task.sense.clear();
    match code {
        SrbStatus::SUCCESS | SrbStatus::DATA_OVERRUN | SrbStatus::ERROR => {
            task.status = srb.scsi_status;
            task.sense.set(srb.sense());
            if code == SrbStatus::ERROR && srb.scsi_status == status::GOOD {
                // An adapter error without a SCSI status.
                task.check_condition(0x04, 0x44, 0x00);
            }
        }
        SrbStatus::BUSY => task.status = status::BUSY,
        SrbStatus::ABORTED => task.status = status::TASK_ABORTED,
        SrbStatus::SELECTION_TIMEOUT
        | SrbStatus::NO_DEVICE
        | SrbStatus::INVALID_LUN
        | SrbStatus::INVALID_TARGET_ID
        | SrbStatus::INVALID_PATH_ID => {
            // LOGICAL UNIT NOT SUPPORTED
            task.check_condition(0x05, 0x25, 0x00);
        }
        _ => {
            // Timeouts, resets, flushed queues, a stopped adapter: ABORTED COMMAND, which
            // initiators retry.
            task.check_condition(0x0B, 0x00, 0x00);
        }
    }
    match task.direction {
        TaskDirection::Read => {
            let mut buf = std::mem::take(&mut srb.data);
            let keep = if task.status == status::GOOD || task.status == status::CHECK_CONDITION {
                moved as usize
            } else {
                0
            };
            buf.truncate(keep);
            if task.status == status::CHECK_CONDITION {
                buf.clear();
            }
            task.data_in = buf;
        }
        TaskDirection::Write => task.data_out = std::mem::take(&mut srb.data),
        TaskDirection::None => {}
    }
}

/// [`ScsiService`] over the port driver.
pub struct PortService {
    adapters: Vec<(Adapter, Submitter)>,
    routes: Vec<LuRoute>,
    shared: Arc<Shared>,
}

impl PortService {
    /// A service for `adapters`; LU handle `n` is `routes[n]`.
    pub fn new(adapters: Vec<Adapter>, routes: Vec<LuRoute>) -> Self {
        let shared = Arc::new(Shared {
            inflight: Mutex::new(InFlight {
                tasks: Slab::with_capacity(1024),
                parked: 0,
                control_done: Vec::new(),
            }),
            control_cv: Condvar::new(),
            seq: AtomicU32::new(1),
        });
        let adapters = adapters
            .into_iter()
            .map(|a| {
                let sink = Arc::new(BridgeSink {
                    shared: shared.clone(),
                });
                let s = a.submitter(sink);
                (a, s)
            })
            .collect();
        Self {
            adapters,
            routes,
            shared,
        }
    }

    /// The adapters behind the service.
    pub fn adapters(&self) -> impl Iterator<Item = &Adapter> {
        self.adapters.iter().map(|(a, _)| a)
    }

    fn route(&self, lu: LuHandle) -> Option<&LuRoute> {
        self.routes.get(usize::try_from(lu.0).ok()?)
    }

    fn next_seq(&self) -> u64 {
        u64::from(self.shared.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Submits a control SRB on `adapter`'s submitter and waits for it (blocking pool only).
    fn control(&self, adapter: usize, mut srb: Srb) -> Option<Srb> {
        let cookie = CONTROL_BIT | self.next_seq();
        srb.original_request = cookie;
        self.adapters[adapter].1.submit(srb);
        let deadline =
            std::time::Instant::now() + Duration::from_secs(u64::from(COMMAND_TIMEOUT_SECS) * 3);
        let mut inflight = self.shared.inflight.lock();
        loop {
            if let Some(i) = inflight.control_done.iter().position(|(c, _)| *c == cookie) {
                return Some(inflight.control_done.swap_remove(i).1);
            }
            if self
                .shared
                .control_cv
                .wait_until(&mut inflight, deadline)
                .timed_out()
            {
                tracing::error!(adapter, "control request did not complete");
                return None;
            }
        }
    }

    /// Aborts every in-flight task that `hit` selects; returns how many were found.
    fn abort_where(&self, hit: impl Fn(&ParkedTask) -> bool) -> usize {
        let victims: Vec<(usize, Address, u64)> = {
            let inflight = self.shared.inflight.lock();
            inflight
                .tasks
                .iter()
                .filter(|(_, p)| hit(p))
                .map(|(_, p)| (p.adapter, p.address, p.cookie))
                .collect()
        };
        for (adapter, address, cookie) in &victims {
            let mut abort = Srb::function(SrbFunction::AbortCommand, *address);
            abort.abort_target = *cookie;
            let _ = self.control(*adapter, abort);
        }
        victims.len()
    }

    fn reset(&self, adapter: usize, function: SrbFunction, address: Address) -> bool {
        self.control(adapter, Srb::function(function, address))
            .is_some_and(|s| s.srb_status.is_success())
    }
}

impl PortService {
    /// Turns `task` into an SRB for its adapter and parks the task until the SRB completes.
    /// `None`: the task was completed here (no such LU, a CDB the port cannot carry).
    fn park(&self, mut task: ScsiTask) -> Option<(usize, Srb)> {
        // Copied out of the route: cloning it would touch the LU's shared reference count.
        let Some((adapter, address)) = self.route(task.lu).map(|r| (r.adapter, r.address)) else {
            task.check_condition(0x05, 0x25, 0x00);
            task.complete();
            return None;
        };
        let cdb_len = scsi::cdb::cdb_len(&task.cdb).unwrap_or(16).min(16);
        let Some(mut srb) = Srb::execute_scsi(address, &task.cdb[..cdb_len]) else {
            task.check_condition(0x05, 0x24, 0x00);
            task.complete();
            return None;
        };
        let edtl = task.expected_transfer_length;
        match task.direction {
            TaskDirection::Read => {
                let mut buf = std::mem::take(&mut task.data_in);
                // READ fills the whole transfer from the medium (or fails, and the buffer is
                // cleared); its buffer may keep the connection's earlier bytes instead of being
                // zeroed first. Everything else gets a zeroed buffer.
                if !is_read(task.cdb[0]) {
                    buf.clear();
                }
                buf.truncate(edtl as usize);
                buf.resize(edtl as usize, 0);
                srb = srb.with_data(buf, edtl, DataDirection::In);
            }
            TaskDirection::Write => {
                let buf = std::mem::take(&mut task.data_out);
                let len = buf.len() as u32;
                srb = srb.with_data(buf, len, DataDirection::Out);
            }
            TaskDirection::None => {}
        }
        srb.sense_info_buffer_length = port::SENSE_BUFFER_SIZE as u8;
        srb.time_out_value = COMMAND_TIMEOUT_SECS;
        srb.nexus = ItNexus {
            initiator: task.nexus,
            relative_target_port: 1,
        };
        // iSCSI has no RELEASE QUEUE: a CHECK CONDITION must not stall the LU for everyone.
        srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        let action = match task.attribute {
            TaskAttribute::Ordered => Some(QueueAction::Ordered),
            TaskAttribute::HeadOfQueue => Some(QueueAction::HeadOfQueue),
            TaskAttribute::Simple | TaskAttribute::Untagged | TaskAttribute::Aca => None,
        };
        if let Some(action) = action {
            srb.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
            srb.queue_action = action;
        }
        {
            let mut inflight = self.shared.inflight.lock();
            inflight.parked = inflight.parked.wrapping_add(1);
            let seq = u64::from(inflight.parked & !(1 << 31));
            let entry = inflight.tasks.vacant_entry();
            let cookie = (seq << 32) | entry.key() as u64;
            srb.original_request = cookie;
            entry.insert(ParkedTask {
                task,
                cookie,
                adapter,
                address,
            });
        }
        Some((adapter, srb))
    }
}

thread_local! {
    /// SRBs of a burst on their way to one adapter (`submit_burst`), kept per thread so that
    /// their storage is reused.
    static BURST: std::cell::RefCell<Vec<Srb>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ScsiService for PortService {
    fn submit(&self, task: ScsiTask) {
        if let Some((adapter, srb)) = self.park(task) {
            self.adapters[adapter].1.submit(srb);
        }
    }

    /// The tasks' SRBs go to their adapters in batches (`Submitter::submit_batch`: one trip
    /// through the port's deferred stage and one dispatch pass for a run of SRBs to the same
    /// adapter), in order.
    fn submit_burst(&self, tasks: &mut Vec<ScsiTask>) {
        if tasks.len() == 1 {
            let t = tasks.pop().expect("one task");
            return self.submit(t);
        }
        BURST.with(|cell| {
            let Ok(mut batch) = cell.try_borrow_mut() else {
                // Called again from inside a batch (not done today): no batching.
                for t in tasks.drain(..) {
                    self.submit(t);
                }
                return;
            };
            let mut current: Option<usize> = None;
            for t in tasks.drain(..) {
                let Some((adapter, srb)) = self.park(t) else {
                    continue;
                };
                if let Some(a) = current
                    && a != adapter
                {
                    self.adapters[a].1.submit_batch(&mut batch);
                }
                current = Some(adapter);
                batch.push(srb);
            }
            if let Some(a) = current {
                self.adapters[a].1.submit_batch(&mut batch);
            }
        });
    }

    fn task_management(&self, request: &TmfRequest) -> TmfResponse {
        let lu_route = request.lu.and_then(|h| self.route(h).cloned());
        match request.function {
            TmfFunction::AbortTask { referenced_itt } => {
                let n = self
                    .abort_where(|p| p.task.itt == referenced_itt && p.task.nexus == request.nexus);
                if n == 0 {
                    TmfResponse::TaskDoesNotExist
                } else {
                    TmfResponse::FunctionComplete
                }
            }
            TmfFunction::AbortTaskSet => {
                let Some(lu) = request.lu else {
                    return TmfResponse::LunDoesNotExist;
                };
                self.abort_where(|p| p.task.lu == lu && p.task.nexus == request.nexus);
                TmfResponse::FunctionComplete
            }
            TmfFunction::ClearTaskSet => {
                let Some(lu) = request.lu else {
                    return TmfResponse::LunDoesNotExist;
                };
                self.abort_where(|p| p.task.lu == lu);
                TmfResponse::FunctionComplete
            }
            TmfFunction::LogicalUnitReset => {
                let Some(route) = lu_route else {
                    return TmfResponse::LunDoesNotExist;
                };
                if self.reset(route.adapter, SrbFunction::ResetLogicalUnit, route.address) {
                    TmfResponse::FunctionComplete
                } else {
                    TmfResponse::Rejected
                }
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                let mut buses: Vec<(usize, u8)> = request
                    .target_lus
                    .iter()
                    .filter_map(|h| self.route(*h))
                    .map(|r| (r.adapter, r.address.path_id))
                    .collect();
                buses.sort_unstable();
                buses.dedup();
                let mut ok = true;
                for (adapter, path_id) in buses {
                    ok &= self.reset(adapter, SrbFunction::ResetBus, Address::new(path_id, 0, 0));
                }
                if ok {
                    TmfResponse::FunctionComplete
                } else {
                    TmfResponse::Rejected
                }
            }
        }
    }

    fn nexus_established(&self, nexus: &Nexus) {
        for r in &self.routes {
            r.lu.register_nexus(
                DeviceNexus::new(nexus.id, 1),
                Some(nexus.initiator_name.as_str()),
            );
        }
    }

    fn nexus_lost(&self, nexus: &Nexus) {
        for r in &self.routes {
            r.lu.nexus_loss(DeviceNexus::new(nexus.id, 1));
        }
    }
}
