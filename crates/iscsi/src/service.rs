//! The interface between the iSCSI front end and whatever executes SCSI
//! commands (the port driver, bridged by the cli crate; or
//! [`crate::testing::RamDisk`] in tests).
//!
//! Flow: the connection builds a [`ScsiTask`] once all its Data-Out has
//! arrived and hands it to [`ScsiService::submit`]. The service executes it on
//! any thread, fills the result fields and calls [`ScsiTask::complete`], which
//! pushes the task onto its connection's completion queue and wakes the
//! connection. No channel, box or callback is allocated per command: the
//! queue is per connection and its storage is reused, and the task's data
//! buffers come back with it so the connection recycles them.
//!
//! REPORT LUNS is answered by the front end itself (it owns the LUN map);
//! INQUIRY to a LUN that is not mapped is answered by the front end with
//! peripheral qualifier 3; any other command to an unmapped LUN gets CHECK
//! CONDITION / LOGICAL UNIT NOT SUPPORTED without reaching the service.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use crate::pdu::TaskAttribute;

/// Opaque logical-unit handle from the configuration's LUN map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LuHandle(pub u64);

/// Stable small id of an I_T nexus: (initiator name, ISID, target portal
/// group tag, target). The same nexus keeps its id across session
/// reinstatement, so reservations and unit attentions keyed by it survive.
pub type NexusId = u64;

/// Identity of an I_T nexus, reported when a session starts and ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nexus {
    pub id: NexusId,
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub target_name: String,
    pub portal_group_tag: u16,
}

/// Data direction from the R and W bits of the SCSI Command PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirection {
    None,
    /// Data-In: the service fills `data_in`.
    Read,
    /// Data-Out: `data_out` holds the bytes the initiator sent.
    Write,
}

/// SCSI status codes used by the front end.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const TASK_ABORTED: u8 = 0x40;
}

/// Sense data carried inline (no allocation). 96 bytes covers fixed and
/// descriptor formats as SPC devices produce them.
#[derive(Clone, Copy)]
pub struct Sense {
    buf: [u8; 96],
    len: u8,
}

impl Default for Sense {
    fn default() -> Self {
        Sense {
            buf: [0; 96],
            len: 0,
        }
    }
}

impl std::fmt::Debug for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sense({:02x?})", self.as_bytes())
    }
}

impl Sense {
    /// Copies up to 96 bytes of sense data.
    pub fn set(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len());
        self.buf[..n].copy_from_slice(&bytes[..n]);
        self.len = n as u8;
    }
    /// Fixed-format (0x70) sense with key, ASC and ASCQ.
    pub fn fixed(key: u8, asc: u8, ascq: u8) -> Sense {
        let mut s = Sense::default();
        let mut b = [0u8; 18];
        b[0] = 0x70;
        b[2] = key & 0x0f;
        b[7] = 10;
        b[12] = asc;
        b[13] = ascq;
        s.set(&b);
        s
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Where a task goes back to when it completes: its connection's queue.
#[derive(Clone)]
pub struct CompletionSink {
    queue: Arc<CompletionQueue>,
}

impl std::fmt::Debug for CompletionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompletionSink")
    }
}

/// Per-connection completion queue: a mutex-protected deque whose storage is
/// reused, plus a `Notify` the connection task waits on.
///
/// While the connection task itself is submitting (between
/// [`CompletionQueue::begin_inline`] and [`CompletionQueue::end_inline`]),
/// completions are queued without waking it: a service that completes inside
/// `submit` (the RAM miniport completes in its start routine) then costs no
/// wake-up, and the task picks the completions up right after submitting.
#[derive(Default)]
pub struct CompletionQueue {
    done: Mutex<VecDeque<ScsiTask>>,
    /// The connection task is submitting and drains the queue afterwards.
    /// Stored and loaded SeqCst: a completer that still sees `true` pushed
    /// before the connection's `end_inline`, so the drain after it finds
    /// the task.
    inline: AtomicBool,
    notify: Arc<Notify>,
}

impl CompletionQueue {
    pub fn new() -> Arc<CompletionQueue> {
        Arc::new(CompletionQueue::default())
    }
    /// A queue that wakes its connection through `notify` (shared with the
    /// connection's other wake-ups, see [`crate::registry::ConnControl`]).
    pub fn with_notify(notify: Arc<Notify>) -> Arc<CompletionQueue> {
        Arc::new(CompletionQueue {
            notify,
            ..CompletionQueue::default()
        })
    }
    pub fn sink(self: &Arc<Self>) -> CompletionSink {
        CompletionSink {
            queue: self.clone(),
        }
    }
    /// Sizes the queue for `n` tasks so pushes do not allocate (connection thread).
    pub fn reserve(&self, n: usize) {
        self.done.lock().reserve(n);
    }
    /// Moves every completed task into `into` (connection thread).
    pub fn drain_into(&self, into: &mut VecDeque<ScsiTask>) {
        let mut q = self.done.lock();
        into.extend(q.drain(..));
    }
    /// The connection task starts submitting: completions until
    /// [`CompletionQueue::end_inline`] are queued without a wake-up.
    pub fn begin_inline(&self) {
        self.inline.store(true, Ordering::SeqCst);
    }
    /// The connection task finished submitting; it drains the queue next.
    pub fn end_inline(&self) {
        self.inline.store(false, Ordering::SeqCst);
    }
    /// Resolves when a completion was pushed (or the shared `Notify` was
    /// otherwise signalled) since the last wait.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
    /// Queues a finished task; wakes the connection unless it is submitting
    /// (and so drains the queue itself). Any thread; takes the queue lock briefly.
    fn push(&self, task: ScsiTask) {
        self.done.lock().push_back(task);
        if !self.inline.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

/// One SCSI command on its way through the service and back.
///
/// Inputs are set by the front end; outputs (`status`, `sense`,
/// `transfer_length`, the contents of `data_in`) by the service before
/// [`ScsiTask::complete`].
#[derive(Debug)]
pub struct ScsiTask {
    // --- inputs ---
    /// The I_T nexus (session) the command came from.
    pub nexus: NexusId,
    pub lu: LuHandle,
    /// The LUN number as addressed by the initiator.
    pub lun: u16,
    /// Initiator Task Tag; what ABORT TASK refers to.
    pub itt: u32,
    pub cdb: [u8; 16],
    pub attribute: TaskAttribute,
    pub direction: DataDirection,
    /// The initiator's Expected Data Transfer Length.
    pub expected_transfer_length: u32,
    /// Data-Out bytes received (may be shorter than the CDB asks for if the
    /// initiator's EDTL is smaller; the device transfers only these).
    pub data_out: Vec<u8>,
    /// Buffer for Data-In with capacity >= `expected_transfer_length`. It
    /// may still hold bytes of this connection's earlier commands (so a
    /// service that overwrites it need not zero it first): the service
    /// replaces its contents — clear, truncate or overwrite — and leaves
    /// exactly what the command produced. The front end sends at most
    /// `expected_transfer_length` bytes of it.
    pub data_in: Vec<u8>,
    // --- outputs ---
    pub status: u8,
    pub sense: Sense,
    /// Bytes the command, as decoded from its CDB, would transfer (the SCSI
    /// transfer length in bytes; for commands with an allocation length, the
    /// bytes the device had to return). The front end derives the residual
    /// (underflow/overflow) from this and the EDTL.
    pub transfer_length: u32,
    // --- routing ---
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    /// `None` for tasks the front end answers itself.
    pub(crate) sink: Option<CompletionSink>,
}

impl ScsiTask {
    /// Hands the finished task back to its connection. Call exactly once per
    /// submitted task, also for aborted tasks (with status TASK ABORTED).
    /// Runs on the service's thread; takes the connection's queue lock briefly.
    pub fn complete(mut self) {
        if let Some(sink) = self.sink.take() {
            sink.queue.push(self);
        }
    }

    /// Sets CHECK CONDITION with fixed-format sense.
    pub fn check_condition(&mut self, key: u8, asc: u8, ascq: u8) {
        self.status = status::CHECK_CONDITION;
        self.sense = Sense::fixed(key, asc, ascq);
        self.data_in.clear();
    }
}

/// Task management functions (RFC 7143 §11.5.1) mapped to the port's SRB
/// functions by the service implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmfFunction {
    /// ABORT TASK -> SRB_FUNCTION_ABORT_COMMAND for the task with `referenced_itt`.
    AbortTask { referenced_itt: u32 },
    /// ABORT TASK SET: every task of this nexus on the LU.
    AbortTaskSet,
    /// CLEAR TASK SET: every task of every nexus on the LU.
    ClearTaskSet,
    /// LOGICAL UNIT RESET -> SRB_FUNCTION_RESET_LOGICAL_UNIT.
    LogicalUnitReset,
    /// TARGET WARM RESET -> SRB_FUNCTION_RESET_BUS for the target's LUs.
    TargetWarmReset,
    /// TARGET COLD RESET: as warm reset; the front end then drops every
    /// connection to the target.
    TargetColdReset,
}

/// One task management request.
#[derive(Clone, Debug)]
pub struct TmfRequest {
    pub function: TmfFunction,
    pub nexus: NexusId,
    /// The LU addressed (for LU-scoped functions). `None` for target-scoped ones.
    pub lu: Option<LuHandle>,
    /// All LUs of the target (for target resets).
    pub target_lus: Vec<LuHandle>,
}

/// TMF response codes (RFC 7143 §11.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TmfResponse {
    FunctionComplete = 0,
    TaskDoesNotExist = 1,
    LunDoesNotExist = 2,
    TaskStillAllegiant = 3,
    ReassignmentNotSupported = 4,
    NotSupported = 5,
    AuthorizationFailed = 6,
    Rejected = 255,
}

/// What executes SCSI commands behind the front end.
///
/// Implementations must be cheap to call from the connection tasks (tokio
/// worker threads): `submit` must not block; `task_management` may block and
/// is called on a blocking-pool thread.
pub trait ScsiService: Send + Sync + 'static {
    /// Starts executing `task`; completes it later with [`ScsiTask::complete`]
    /// (possibly before returning).
    fn submit(&self, task: ScsiTask);

    /// Starts executing every task of `tasks`, in order (drains it, keeping its capacity): the
    /// commands one socket read brought. A service may start them together (one trip through
    /// its queues for the burst). Default: [`ScsiService::submit`] each.
    fn submit_burst(&self, tasks: &mut Vec<ScsiTask>) {
        for t in tasks.drain(..) {
            self.submit(t);
        }
    }

    /// Performs a task management function and returns its response.
    ///
    /// For ABORT TASK: return `FunctionComplete` if the task was found and
    /// will complete with TASK ABORTED (the front end then sends no response
    /// for it), `TaskDoesNotExist` if it already completed.
    fn task_management(&self, request: &TmfRequest) -> TmfResponse;

    /// A session for this nexus reached full feature phase.
    fn nexus_established(&self, _nexus: &Nexus) {}

    /// The session of this nexus ended (logout, connection loss, reinstatement).
    /// Outstanding tasks of the nexus should be aborted.
    fn nexus_lost(&self, _nexus: &Nexus) {}
}
