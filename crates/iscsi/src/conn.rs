//! The sans-I/O connection state machine: bytes in, PDUs (bytes) and
//! actions out.
//!
//! One [`Connection`] per TCP connection. It runs on the connection's tokio
//! task (one at a time; no locks of its own). The network edge
//! ([`crate::server`]) feeds received bytes with [`Connection::receive`],
//! writes [`Connection::out`] to the socket, executes the [`Action`]s it
//! yields (submitting tasks to the SCSI service, running task management),
//! and calls [`Connection::process_completions`] when the completion queue
//! is signalled.
//!
//! Sessions have one connection (MaxConnections=1) and error recovery level
//! 0: any error that leaves a command's data stream inconsistent (bad
//! DataSN/offset, digest error, framing error) closes the connection, and
//! the initiator recovers by logging in again (session reinstatement).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use slab::Slab;

use crate::chap::{self, Challenge, ChapAlgorithm};
use crate::config::{ChapConfig, TargetConfig};
use crate::out::OutQueue;
use crate::params::{self, KeyOutcome, Negotiated, SessionType};
use crate::pdu::{
    self, Bhs, DecodeError, FrameLimits, Opcode, PduRef, RESERVED_TAG, RejectReason, Residual,
    SeqNums,
};
use crate::registry::{ConnControl, Shared};
use crate::service::{
    CompletionQueue, DataDirection, LuHandle, Nexus, ScsiTask, Sense, TmfFunction, TmfRequest,
    TmfResponse, status,
};
use crate::text;

/// Data segment limit while logging in (RFC 7143 §13.12 default).
const LOGIN_MAX_DATA_SEGMENT: u32 = 8192;
/// Output bytes above which the connection stops reading and completing
/// until the socket drains.
pub const OUT_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Extra task slots for immediate commands beyond the CmdSN window.
const IMMEDIATE_SLACK: usize = 8;
/// Recycled data buffers larger than this are freed instead of pooled.
const POOL_MAX_BUF: usize = 1024 * 1024;

/// Something the edge must do on the connection's behalf.
#[derive(Debug)]
pub enum Action {
    /// Hand the task to [`crate::service::ScsiService::submit`].
    Submit(ScsiTask),
    /// Run [`crate::service::ScsiService::task_management`] (may block) and
    /// report the result with [`Connection::task_management_done`].
    TaskManagement { itt: u32, request: TmfRequest },
}

/// Why the connection ended (for logs and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Logout,
    LoginFailed(u16),
    ProtocolError(&'static str),
    Killed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Login,
    FullFeature,
}

#[derive(Debug)]
enum Auth {
    Start,
    WaitAlgorithm,
    WaitResponse(Challenge),
    Done,
}

struct Login {
    first: bool,
    stage: u8,
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    itt: u32,
    initiator: Option<String>,
    target: Option<usize>,
    session_type: SessionType,
    auth: Auth,
    declared_mrdsl: bool,
    partial: Vec<u8>,
}

struct SessionInfo {
    initiator: String,
    isid: [u8; 6],
    target: Option<usize>,
    session_type: SessionType,
    cid: u16,
    nexus: Option<Nexus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskState {
    /// Waiting for Data-Out.
    Collecting,
    /// With the service (or answered locally, waiting in `completed`).
    Submitted,
    /// Aborted by a TMF: its completion is dropped.
    Aborted,
}

struct Task {
    itt: u32,
    generation: u32,
    state: TaskState,
    lun: u16,
    lu: Option<LuHandle>,
    cdb: [u8; 16],
    attribute: pdu::TaskAttribute,
    direction: DataDirection,
    edtl: u32,
    data_out: Vec<u8>,
    /// Data-Out bytes expected (EDTL for writes).
    want: u32,
    /// End of the unsolicited part (immediate + unsolicited Data-Out).
    unsolicited_end: u32,
    unsolicited_done: bool,
    /// Next DataSN expected in the current sequence.
    data_sn: u32,
    /// End offset of the current R2T sequence.
    seq_end: u32,
    /// R2TSN of the sequence currently being received.
    cur_r2t_sn: u32,
    /// Next R2TSN to issue, and the offset it starts at.
    next_r2t_sn: u32,
    next_r2t_offset: u32,
    ttt_base: u32,
    /// A DataSN or offset error was seen: the data is still consumed, then
    /// the command ends with CHECK CONDITION instead of executing (ERL 0
    /// recovery at the command level; the connection stays up).
    failed: bool,
    /// Bytes of this task's buffers counted against the connection budget.
    charged: usize,
}

struct TextState {
    /// Initiator text being continued (C bit), bounded by `text::MAX_TEXT_LEN`.
    request: Vec<u8>,
    /// Our response still to send in further PDUs: (itt, ttt, bytes, offset).
    response: Option<(u32, u32, Vec<u8>, usize)>,
}

/// One iSCSI connection (and, with MaxConnections=1, its session).
pub struct Connection {
    shared: Arc<Shared>,
    control: Arc<ConnControl>,
    local_addr: Option<SocketAddr>,
    state: State,
    limits: FrameLimits,
    /// What to write to the socket, in order (Data-In payloads spliced in, not copied).
    pub out: OutQueue,
    actions: Vec<Action>,
    stat_sn: u32,
    /// Responses sent that the initiator had not yet read when it sent its
    /// last SCSI command (our StatSN minus its ExpStatSN).
    unread_responses: u32,
    exp_cmd_sn: u32,
    neg: Negotiated,
    login: Option<Box<Login>>,
    session: Option<SessionInfo>,
    tasks: Slab<Task>,
    by_itt: IttMap,
    generation: u32,
    queue: Arc<CompletionQueue>,
    completed: VecDeque<ScsiTask>,
    pool: Vec<Vec<u8>>,
    next_ttt: u32,
    text: TextState,
    logout: Option<(u32, u8)>,
    close: Option<CloseReason>,
    ping_ttt: Option<u32>,
    /// Data buffer bytes held by this connection's tasks (see
    /// `ServerConfig::max_buffered_bytes_per_connection`).
    buffered: usize,
    /// Tasks waiting for buffer budget (key, generation), in arrival order.
    waiting: VecDeque<(usize, u32)>,
    /// Highest MaxCmdSN advertised.
    max_cmd_sn: std::cell::Cell<u32>,
}

/// Slab keys of the connection's tasks by Initiator Task Tag.
type IttMap = HashMap<u32, usize, BuildHasherDefault<IttHasher>>;

/// Hash of an Initiator Task Tag: one multiply instead of SipHash on every
/// command. Tags are the initiator's choice, but the table holds at most the
/// session's task window, so even a deliberately bad spread costs little.
#[derive(Default, Clone, Copy)]
struct IttHasher(u64);

impl Hasher for IttHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(32) ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn decode_lun(lun: u64) -> Option<u16> {
    let b = lun.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(b[1] as u16),
        1 => Some((((b[0] & 0x3f) as u16) << 8) | b[1] as u16),
        _ => None,
    }
}

/// Encodes a LUN number in the single-level format REPORT LUNS returns.
pub fn encode_lun(lun: u16) -> u64 {
    let b0 = if lun < 256 {
        0
    } else {
        0x40 | (lun >> 8) as u8
    };
    u64::from_be_bytes([b0, (lun & 0xff) as u8, 0, 0, 0, 0, 0, 0])
}

impl Connection {
    /// A new connection in the login phase. Runs on the connection task.
    pub fn new(
        shared: Arc<Shared>,
        control: Arc<ConnControl>,
        local_addr: Option<SocketAddr>,
    ) -> Connection {
        let neg = Negotiated::defaults(&shared.config.limits);
        let queue = CompletionQueue::with_notify(control.wake().clone());
        Connection {
            control,
            local_addr,
            state: State::Login,
            limits: FrameLimits {
                header_digest: false,
                data_digest: false,
                max_data_segment: LOGIN_MAX_DATA_SEGMENT,
            },
            out: OutQueue::default(),
            actions: Vec::new(),
            stat_sn: 1,
            unread_responses: 0,
            exp_cmd_sn: 0,
            neg,
            login: Some(Box::new(Login {
                first: true,
                stage: 0,
                isid: [0; 6],
                tsih: 0,
                cid: 0,
                itt: 0,
                initiator: None,
                target: None,
                session_type: SessionType::Normal,
                auth: Auth::Start,
                declared_mrdsl: false,
                partial: Vec::new(),
            })),
            session: None,
            tasks: Slab::new(),
            by_itt: IttMap::default(),
            generation: 0,
            queue,
            completed: VecDeque::new(),
            pool: Vec::new(),
            next_ttt: 0x100,
            text: TextState {
                request: Vec::new(),
                response: None,
            },
            logout: None,
            close: None,
            ping_ttt: None,
            buffered: 0,
            waiting: VecDeque::new(),
            max_cmd_sn: std::cell::Cell::new(0),
            shared,
        }
    }

    pub fn completion_queue(&self) -> &Arc<CompletionQueue> {
        &self.queue
    }
    pub fn control(&self) -> &Arc<ConnControl> {
        &self.control
    }
    pub fn is_logged_in(&self) -> bool {
        self.state == State::FullFeature
    }
    /// `Some` once the connection should be closed after `out` is flushed.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }
    /// Whether the edge should read more input now (bounded buffering).
    pub fn wants_input(&self) -> bool {
        self.close.is_none() && self.out.len() < OUT_HIGH_WATER
    }
    /// Suggested socket read size: small before login, large after.
    pub fn read_chunk(&self) -> usize {
        if self.is_logged_in() {
            256 * 1024
        } else {
            4096
        }
    }
    pub fn take_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }
    /// Whether the initiator had read every response sent on this connection
    /// when it sent its last SCSI command (its ExpStatSN was our next
    /// StatSN): it waits for each answer before it asks again, as a queue
    /// depth 1 initiator does. A pipelining initiator's commands acknowledge
    /// older responses.
    pub fn initiator_caught_up(&self) -> bool {
        self.unread_responses == 0
    }

    /// Tasks currently held by this connection (collecting data or executing).
    pub fn outstanding_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Current StatSN/ExpCmdSN/MaxCmdSN. MaxCmdSN = ExpCmdSN + free task
    /// slots - 1, never moved backwards (initiators ignore a decrease, so a
    /// shrinking window would strand commands they already may send).
    fn seq(&self) -> SeqNums {
        let free = (self.shared.config.max_tasks_per_session as usize)
            .saturating_sub(self.tasks.len()) as u32;
        let mut max = self.exp_cmd_sn.wrapping_add(free).wrapping_sub(1);
        let prev = self.max_cmd_sn.get();
        if self.state == State::FullFeature && pdu::sn_lt(max, prev) {
            max = prev;
        }
        self.max_cmd_sn.set(max);
        SeqNums {
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: max,
        }
    }

    fn send(&mut self, bhs: &Bhs, data: &[&[u8]]) {
        pdu::encode(
            self.out.bytes_mut(),
            bhs,
            data,
            self.limits.header_digest,
            self.limits.data_digest,
        );
    }

    /// Sends a status-bearing PDU built from the current sequence numbers and advances StatSN.
    fn send_status(&mut self, build: impl FnOnce(&SeqNums) -> Bhs, data: &[&[u8]]) {
        let bhs = build(&self.seq());
        self.stat_sn = self.stat_sn.wrapping_add(1);
        self.send(&bhs, data);
    }

    fn reject(&mut self, reason: RejectReason, bhs: &Bhs) {
        tracing::debug!(?reason, opcode = bhs.opcode_raw(), "reject");
        let header = bhs.0;
        self.send_status(|sn| pdu::reject(reason, sn), &[&header]);
    }

    fn fail(&mut self, why: &'static str) {
        tracing::debug!(why, "closing connection");
        if self.close.is_none() {
            self.close = Some(CloseReason::ProtocolError(why));
        }
    }

    /// Consumes as many whole PDUs from `input` as possible; returns how
    /// many. Each PDU is handled in place in `input` (no copy) and then
    /// removed from it.
    pub fn receive(&mut self, input: &mut BytesMut) -> usize {
        let mut pdus = 0;
        while self.close.is_none() && self.out.len() < OUT_HIGH_WATER {
            let limits = self.limits;
            match pdu::decode_ref(input, &limits) {
                Ok(Some((p, len))) => {
                    self.on_pdu(p);
                    input.advance(len);
                    pdus += 1;
                }
                Ok(None) => break,
                Err(DecodeError::HeaderDigest) => {
                    self.fail("header digest error");
                }
                Err(DecodeError::DataDigest { bhs }) => {
                    self.reject(RejectReason::DataDigestError, &bhs);
                    self.fail("data digest error");
                }
                Err(DecodeError::DataSegmentTooLong { bhs, .. }) => {
                    self.reject(RejectReason::ProtocolError, &bhs);
                    self.fail("data segment longer than MaxRecvDataSegmentLength");
                }
            }
        }
        self.pump_waiting();
        pdus
    }

    fn on_pdu(&mut self, p: PduRef<'_>) {
        match self.state {
            State::Login => match p.bhs.opcode() {
                Some(Opcode::LoginRequest) => self.on_login(p),
                _ => {
                    self.reject(RejectReason::ProtocolError, &p.bhs);
                    self.fail("non-login PDU before login");
                }
            },
            State::FullFeature => self.on_ff_pdu(p),
        }
    }

    // ------------------------------------------------------------------
    // Login
    // ------------------------------------------------------------------

    fn login_reply(
        &mut self,
        req: &pdu::LoginRequest,
        transit: bool,
        nsg: u8,
        data: &[u8],
        status: u16,
    ) {
        let login = self.login.as_ref().expect("login state");
        let resp = pdu::LoginResponse {
            transit,
            cont: false,
            csg: req.csg,
            nsg: if transit { nsg } else { 0 },
            isid: login.isid,
            tsih: login.tsih,
            itt: req.itt,
            status_class: (status >> 8) as u8,
            status_detail: status as u8,
        };
        self.send_status(|sn| resp.to_bhs(sn), &[data]);
    }

    fn login_fail(&mut self, req: &pdu::LoginRequest, status: u16) {
        tracing::info!(status = format_args!("{status:#06x}"), "login refused");
        self.login_reply(req, false, 0, &[], status);
        self.close = Some(CloseReason::LoginFailed(status));
    }

    fn chap_config(&self) -> Option<ChapConfig> {
        let login = self.login.as_ref()?;
        match login.session_type {
            SessionType::Discovery => self.shared.config.discovery_chap.clone(),
            SessionType::Normal => login
                .target
                .and_then(|i| self.shared.config.targets[i].chap.clone()),
        }
    }

    fn on_login(&mut self, p: PduRef<'_>) {
        let req = pdu::LoginRequest::parse(&p.bhs);
        let mut login = self.login.take().expect("login state");
        if login.first {
            login.isid = req.isid;
            login.tsih = req.tsih;
            login.cid = req.cid;
            login.itt = req.itt;
            self.exp_cmd_sn = req.cmd_sn;
        }
        // Continued text (C bit): collect, answer with an empty response.
        if login.partial.len() + p.data.len() > text::MAX_TEXT_LEN {
            self.login = Some(login);
            self.login_fail(&req, 0x0200);
            return;
        }
        login.partial.extend_from_slice(p.data);
        if req.cont {
            self.login = Some(login);
            self.login_reply(&req, false, 0, &[], 0);
            return;
        }
        let data = std::mem::take(&mut login.partial);
        self.login = Some(login);
        if req.version_min > 0 {
            return self.login_fail(&req, 0x0205);
        }
        if self
            .shared
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return self.login_fail(&req, 0x0301);
        }
        let keys = match text::parse(&data) {
            Ok(k) => k,
            Err(_) => return self.login_fail(&req, 0x0200),
        };
        let mut reply = Vec::new();
        if self.login.as_ref().expect("login").first
            && let Err(status) = self.login_first(&keys, &req, &mut reply)
        {
            return self.login_fail(&req, status);
        }
        let stage = self.login.as_ref().expect("login").stage;
        if req.csg == 3
            || req.csg < stage
            || (req.transit && req.nsg <= req.csg)
            || (req.transit && req.nsg == 2)
        {
            return self.login_fail(&req, 0x0200);
        }
        let chap_cfg = self.chap_config();
        if req.csg == 1 && stage == 0 {
            // Skipping security negotiation is allowed only without CHAP.
            if chap_cfg.is_some() {
                return self.login_fail(&req, 0x0201);
            }
            let login = self.login.as_mut().expect("login");
            login.auth = Auth::Done;
            login.stage = 1;
        }
        let session_type = self.login.as_ref().expect("login").session_type;
        let mut auth_keys: Vec<(String, String)> = Vec::new();
        let mut offered_fbl = false;
        for (k, v) in keys {
            match k.as_str() {
                "InitiatorName" | "TargetName" | "SessionType" => {}
                "AuthMethod" | "CHAP_A" | "CHAP_I" | "CHAP_C" | "CHAP_N" | "CHAP_R" => {
                    if req.csg == 0 {
                        auth_keys.push((k, v));
                    } else {
                        text::push(&mut reply, &k, "Irrelevant");
                    }
                }
                _ => {
                    if k == "FirstBurstLength" {
                        offered_fbl = true;
                    }
                    match params::negotiate(
                        &k,
                        &v,
                        &mut self.neg,
                        &self.shared.config.limits,
                        session_type,
                    ) {
                        KeyOutcome::Reply(r) => {
                            if k != "FirstBurstLength" {
                                text::push(&mut reply, &k, &r);
                            }
                        }
                        KeyOutcome::NoReply => {}
                    }
                }
            }
        }
        if offered_fbl {
            let v = if session_type == SessionType::Discovery
                || params::first_burst_irrelevant(&self.neg)
            {
                "Irrelevant".to_owned()
            } else {
                self.neg.first_burst_length.to_string()
            };
            text::push(&mut reply, "FirstBurstLength", &v);
        }
        if req.csg == 0
            && let Err(status) = self.login_security(&auth_keys, chap_cfg.as_ref(), &mut reply)
        {
            return self.login_fail(&req, status);
        }
        let login = self.login.as_mut().expect("login");
        if req.csg == 1 && !login.declared_mrdsl {
            login.declared_mrdsl = true;
            text::push(
                &mut reply,
                "MaxRecvDataSegmentLength",
                &self.neg.target_mrdsl.to_string(),
            );
        }
        let auth_done = matches!(login.auth, Auth::Done);
        let transit = req.transit && (req.csg == 1 || auth_done);
        login.first = false;
        if transit {
            login.stage = req.nsg;
        }
        if transit && req.nsg == 3 {
            if let Err(status) = self.enter_full_feature() {
                return self.login_fail(&req, status);
            }
            let tsih = self.login.as_ref().expect("login").tsih;
            let resp = pdu::LoginResponse {
                transit: true,
                cont: false,
                csg: req.csg,
                nsg: 3,
                isid: req.isid,
                tsih,
                itt: req.itt,
                status_class: 0,
                status_detail: 0,
            };
            self.send_status(|sn| resp.to_bhs(sn), &[&reply]);
            // Digests and the negotiated receive limit apply from the next PDU on.
            self.limits = FrameLimits {
                header_digest: self.neg.header_digest,
                data_digest: self.neg.data_digest,
                max_data_segment: self.neg.target_mrdsl,
            };
            self.login = None;
            self.state = State::FullFeature;
            // Task tables are sized once, at login, so commands do not allocate.
            let cap = self.shared.config.max_tasks_per_session as usize + IMMEDIATE_SLACK;
            self.tasks.reserve(cap);
            self.by_itt.reserve(cap);
            self.completed.reserve(cap);
            self.queue.reserve(cap);
            self.waiting.reserve(cap);
            return;
        }
        self.login_reply(&req, transit, req.nsg, &reply, 0);
    }

    /// Checks the identity keys of the first login PDU.
    fn login_first(
        &mut self,
        keys: &[(String, String)],
        req: &pdu::LoginRequest,
        reply: &mut Vec<u8>,
    ) -> Result<(), u16> {
        let get = |name: &str| {
            keys.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let initiator = get("InitiatorName").ok_or(0x0207u16)?;
        if initiator.is_empty() {
            return Err(0x0207);
        }
        let session_type = match get("SessionType") {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(_) => return Err(0x0209),
        };
        let mut target = None;
        if session_type == SessionType::Normal {
            let name = get("TargetName").ok_or(0x0207u16)?;
            let idx = self
                .shared
                .config
                .targets
                .iter()
                .position(|t| t.name.eq_ignore_ascii_case(name))
                .ok_or(0x0203u16)?;
            let t: &TargetConfig = &self.shared.config.targets[idx];
            if !t.allows(initiator) {
                tracing::info!(initiator, target = %t.name, "initiator not in the target's ACL");
                return Err(0x0202);
            }
            text::push(
                reply,
                "TargetPortalGroupTag",
                &t.portal_group_tag.to_string(),
            );
            if let Some(a) = &t.alias {
                text::push(reply, "TargetAlias", a);
            }
            target = Some(idx);
        }
        if req.tsih != 0 {
            // MaxConnections=1: a login naming an existing session cannot add a connection.
            return Err(
                if self.shared.session_exists(initiator, req.isid, req.tsih) {
                    0x0206
                } else {
                    0x020a
                },
            );
        }
        let login = self.login.as_mut().expect("login");
        login.initiator = Some(initiator.to_owned());
        login.session_type = session_type;
        login.target = target;
        Ok(())
    }

    /// Security negotiation: AuthMethod and the CHAP exchange.
    fn login_security(
        &mut self,
        keys: &[(String, String)],
        chap_cfg: Option<&ChapConfig>,
        reply: &mut Vec<u8>,
    ) -> Result<(), u16> {
        let get = |name: &str| {
            keys.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let login = self.login.as_mut().expect("login");
        if let Some(methods) = get("AuthMethod") {
            if !matches!(login.auth, Auth::Start) {
                return Err(0x0200);
            }
            let offered: Vec<&str> = methods.split(',').collect();
            match chap_cfg {
                Some(_) if offered.contains(&"CHAP") => {
                    text::push(reply, "AuthMethod", "CHAP");
                    login.auth = Auth::WaitAlgorithm;
                }
                Some(_) => return Err(0x0201),
                None if offered.contains(&"None") => {
                    text::push(reply, "AuthMethod", "None");
                    login.auth = Auth::Done;
                }
                None => {
                    text::push(reply, "AuthMethod", "Reject");
                    return Err(0x0201);
                }
            }
        } else if matches!(login.auth, Auth::Start) {
            // No AuthMethod offered: acceptable only when no authentication is required.
            if chap_cfg.is_some() {
                return Err(0x0201);
            }
            login.auth = Auth::Done;
        }
        if let Some(algs) = get("CHAP_A") {
            if !matches!(login.auth, Auth::WaitAlgorithm) {
                return Err(0x0201);
            }
            let Some(alg) = algs.split(',').find_map(ChapAlgorithm::from_code) else {
                text::push(reply, "CHAP_A", "Reject");
                return Err(0x0201);
            };
            let c = Challenge::new(alg);
            text::push(reply, "CHAP_A", &alg.code().to_string());
            text::push(reply, "CHAP_I", &c.id.to_string());
            text::push(reply, "CHAP_C", &text::encode_hex(&c.challenge));
            login.auth = Auth::WaitResponse(c);
            return Ok(());
        }
        if get("CHAP_N").is_some() || get("CHAP_R").is_some() {
            let Auth::WaitResponse(challenge) = &login.auth else {
                return Err(0x0201);
            };
            let cfg = chap_cfg.ok_or(0x0201u16)?;
            let (Some(name), Some(r)) = (get("CHAP_N"), get("CHAP_R")) else {
                return Err(0x0201);
            };
            let r = text::decode_binary(r).ok_or(0x0201u16)?;
            let Some(cred) = cfg.users.iter().find(|c| c.user == name) else {
                tracing::info!(user = name, "CHAP: unknown user");
                return Err(0x0201);
            };
            if !challenge.verify(cred.secret.as_bytes(), &r) {
                tracing::info!(user = name, "CHAP: wrong response");
                return Err(0x0201);
            }
            match (get("CHAP_I"), get("CHAP_C")) {
                (Some(i), Some(c)) => {
                    let mutual = cfg.mutual.as_ref().ok_or(0x0201u16)?;
                    let id = chap::parse_identifier(i).ok_or(0x0201u16)?;
                    let c = text::decode_binary(c).ok_or(0x0201u16)?;
                    if c.is_empty() || c.len() > chap::MAX_CHALLENGE_LEN || c == challenge.challenge
                    {
                        return Err(0x0201);
                    }
                    let resp = chap::response(challenge.alg, id, mutual.secret.as_bytes(), &c);
                    text::push(reply, "CHAP_N", &mutual.user);
                    text::push(reply, "CHAP_R", &text::encode_hex(&resp));
                }
                (None, None) => {}
                _ => return Err(0x0201),
            }
            login.auth = Auth::Done;
        }
        Ok(())
    }

    /// Registers the session at the end of login.
    fn enter_full_feature(&mut self) -> Result<(), u16> {
        let login = self.login.as_mut().expect("login");
        let initiator = login.initiator.clone().ok_or(0x0207u16)?;
        let (target_name, tpgt) = match login.target {
            Some(i) => {
                let t = &self.shared.config.targets[i];
                (t.name.clone(), t.portal_group_tag)
            }
            None => (String::new(), 0),
        };
        let reg =
            self.shared
                .register_session(&initiator, login.isid, &target_name, tpgt, &self.control);
        login.tsih = reg.tsih;
        let nexus = (login.session_type == SessionType::Normal).then_some(reg.nexus);
        if let Some(n) = &nexus {
            self.shared.service.nexus_established(n);
        }
        tracing::info!(
            initiator,
            target = %target_name,
            tsih = reg.tsih,
            header_digest = self.neg.header_digest,
            data_digest = self.neg.data_digest,
            mrdsl = self.neg.initiator_mrdsl,
            "login complete"
        );
        self.session = Some(SessionInfo {
            initiator,
            isid: login.isid,
            target: login.target,
            session_type: login.session_type,
            cid: login.cid,
            nexus,
        });
        Ok(())
    }

    /// Called by the edge when the connection is gone: unregisters the
    /// session and reports the nexus lost. Tasks still with the service
    /// complete into a queue nobody reads.
    pub fn closed(&mut self) {
        if let Some(s) = self.session.take() {
            let target = s
                .target
                .map(|i| self.shared.config.targets[i].name.clone())
                .unwrap_or_default();
            // A reinstated session's nexus was already reported lost by
            // the login that replaced it.
            let still_registered =
                self.shared
                    .unregister_session(&s.initiator, s.isid, &target, &self.control);
            if still_registered && let Some(n) = &s.nexus {
                self.shared.service.nexus_lost(n);
            }
        }
    }

    // ------------------------------------------------------------------
    // Full feature phase
    // ------------------------------------------------------------------

    /// CmdSN check for a non-immediate command: only the next expected
    /// CmdSN is accepted (one connection per session delivers in order);
    /// anything else — outside [ExpCmdSN, MaxCmdSN] or a duplicate — is
    /// silently ignored (RFC 7143 §4.2.2.1).
    fn accept_cmd_sn(&mut self, immediate: bool, cmd_sn: u32) -> bool {
        if immediate {
            return true;
        }
        let sn = self.seq();
        if cmd_sn != self.exp_cmd_sn || !pdu::sn_le(cmd_sn, sn.max_cmd_sn) {
            tracing::debug!(
                cmd_sn,
                exp = self.exp_cmd_sn,
                max = sn.max_cmd_sn,
                "CmdSN outside window: ignored"
            );
            return false;
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        true
    }

    fn is_discovery(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.session_type == SessionType::Discovery)
    }

    fn on_ff_pdu(&mut self, p: PduRef<'_>) {
        let discovery = self.is_discovery();
        if self.logout.is_some()
            && matches!(
                p.bhs.opcode(),
                Some(Opcode::ScsiCommand | Opcode::TextRequest | Opcode::LogoutRequest)
            )
        {
            // A session logout is in progress: no new work is accepted.
            return self.reject(RejectReason::WaitingForLogout, &p.bhs);
        }
        match p.bhs.opcode() {
            Some(Opcode::ScsiCommand) if !discovery => self.on_scsi_command(p),
            Some(Opcode::DataOut) if !discovery => self.on_data_out(p),
            Some(Opcode::TaskMgmtRequest) if !discovery => self.on_tmf(p),
            Some(Opcode::NopOut) => self.on_nop_out(p),
            Some(Opcode::TextRequest) => self.on_text(p),
            Some(Opcode::LogoutRequest) => self.on_logout(p),
            Some(Opcode::LoginRequest) => {
                self.reject(RejectReason::ProtocolError, &p.bhs);
            }
            Some(Opcode::Snack) => self.reject(RejectReason::ProtocolError, &p.bhs),
            Some(Opcode::ScsiCommand | Opcode::DataOut | Opcode::TaskMgmtRequest) => {
                self.reject(RejectReason::CommandNotSupported, &p.bhs)
            }
            _ => self.reject(RejectReason::CommandNotSupported, &p.bhs),
        }
    }

    fn on_nop_out(&mut self, p: PduRef<'_>) {
        let n = pdu::NopOut::parse(&p.bhs);
        if n.itt == RESERVED_TAG {
            // Answer to our ping (or a ping that wants no answer).
            if n.ttt != RESERVED_TAG && Some(n.ttt) == self.ping_ttt {
                self.ping_ttt = None;
            }
            return;
        }
        if !self.accept_cmd_sn(n.immediate, n.cmd_sn) {
            return;
        }
        let len = p.data.len().min(self.neg.initiator_mrdsl as usize);
        self.send_status(
            |sn| pdu::nop_in(n.lun, n.itt, RESERVED_TAG, sn),
            &[&p.data[..len]],
        );
    }

    /// Asks the initiator to log out within `within` (Async Message, event 1
    /// "target requests logout"); used at shutdown. Commands already
    /// received keep running.
    pub fn request_logout(&mut self, within: std::time::Duration) {
        if self.state != State::FullFeature || self.close.is_some() {
            return;
        }
        let secs = within.as_secs().min(u16::MAX as u64) as u16;
        self.send_status(|sn| pdu::async_message(1, 0, 0, secs, sn), &[]);
    }

    /// Sends an unsolicited NOP-In asking the initiator to answer (idle ping).
    pub fn send_ping(&mut self) {
        if self.state != State::FullFeature || self.close.is_some() {
            return;
        }
        let ttt = self.alloc_ttt();
        self.ping_ttt = Some(ttt);
        let bhs = pdu::nop_in(0, RESERVED_TAG, ttt, &self.seq());
        self.send(&bhs, &[]);
    }

    fn alloc_ttt(&mut self) -> u32 {
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        self.next_ttt
    }

    fn on_logout(&mut self, p: PduRef<'_>) {
        let l = pdu::LogoutRequest::parse(&p.bhs);
        if !self.accept_cmd_sn(l.immediate, l.cmd_sn) {
            return;
        }
        let cid = self.session.as_ref().map(|s| s.cid).unwrap_or(0);
        let response = match l.reason {
            0 => 0,
            1 if l.cid == cid => 0,
            1 => 1,
            2 => 2,
            _ => {
                self.reject(RejectReason::InvalidPduField, &p.bhs);
                return;
            }
        };
        if response != 0 {
            self.send_status(|sn| pdu::logout_response(l.itt, response, sn), &[]);
            return;
        }
        // Tasks still waiting for data will never get it: drop them.
        let collecting: Vec<usize> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Collecting)
            .map(|(k, _)| k)
            .collect();
        for k in collecting {
            self.free_task(k);
        }
        self.logout = Some((l.itt, l.reason));
        self.maybe_finish_logout();
    }

    fn maybe_finish_logout(&mut self) {
        if let Some((itt, _)) = self.logout
            && self
                .tasks
                .iter()
                .all(|(_, t)| t.state == TaskState::Aborted)
        {
            self.logout = None;
            self.send_status(|sn| pdu::logout_response(itt, 0, sn), &[]);
            self.close = Some(CloseReason::Logout);
        }
    }

    // --- Text ---------------------------------------------------------

    fn on_text(&mut self, p: PduRef<'_>) {
        let t = pdu::TextRequest::parse(&p.bhs);
        if !self.accept_cmd_sn(t.immediate, t.cmd_sn) {
            return;
        }
        if t.cont && t.final_bit {
            self.text.request.clear();
            return self.reject(RejectReason::InvalidPduField, &p.bhs);
        }
        if t.cont && p.data.is_empty() {
            self.text.request.clear();
            return self.reject(RejectReason::ProtocolError, &p.bhs);
        }
        // Continuation of our long response.
        if let Some((itt, ttt, _, _)) = &self.text.response
            && t.ttt != RESERVED_TAG
        {
            if *itt != t.itt || *ttt != t.ttt || !p.data.is_empty() {
                self.text.response = None;
                return self.reject(RejectReason::ProtocolError, &p.bhs);
            }
            return self.send_text_chunk(t.lun);
        }
        self.text.response = None;
        if self.text.request.len() + p.data.len() > text::MAX_TEXT_LEN {
            self.text.request.clear();
            return self.reject(RejectReason::ProtocolError, &p.bhs);
        }
        self.text.request.extend_from_slice(p.data);
        if t.cont {
            let ttt = self.alloc_ttt();
            self.send_status(
                |sn| pdu::text_response(false, false, t.lun, t.itt, ttt, sn),
                &[],
            );
            return;
        }
        let data = std::mem::take(&mut self.text.request);
        let keys = match text::parse(&data) {
            Ok(k) => k,
            Err(_) => return self.reject(RejectReason::ProtocolError, &p.bhs),
        };
        let mut reply = Vec::new();
        for (k, v) in keys {
            match k.as_str() {
                "SendTargets" => self.send_targets(&v, &mut reply),
                "MaxRecvDataSegmentLength" => {
                    if let Ok(n) = v.parse::<u32>()
                        && (512..=16_777_215).contains(&n)
                    {
                        self.neg.initiator_mrdsl = n;
                    } else {
                        text::push(&mut reply, &k, "Reject");
                    }
                }
                _ if params::is_operational_key(&k) => text::push(&mut reply, &k, "Reject"),
                _ => text::push(&mut reply, &k, "NotUnderstood"),
            }
        }
        self.text.response = Some((t.itt, 0, reply, 0));
        self.send_text_chunk(t.lun);
    }

    fn send_text_chunk(&mut self, lun: u64) {
        let Some((itt, _, data, off)) = self.text.response.take() else {
            return;
        };
        let max = self.neg.initiator_mrdsl as usize;
        let end = (off + max).min(data.len());
        if end < data.len() {
            let ttt = self.alloc_ttt();
            self.send_status(
                |sn| pdu::text_response(false, true, lun, itt, ttt, sn),
                &[&data[off..end]],
            );
            self.text.response = Some((itt, ttt, data, end));
        } else {
            self.send_status(
                |sn| pdu::text_response(true, false, lun, itt, RESERVED_TAG, sn),
                &[&data[off..end]],
            );
        }
    }

    /// SendTargets (RFC 7143 Appendix C): the targets this initiator may see.
    fn send_targets(&self, which: &str, reply: &mut Vec<u8>) {
        let Some(s) = &self.session else { return };
        let addr = match self.local_addr {
            Some(SocketAddr::V4(a)) => format!("{}:{}", a.ip(), a.port()),
            Some(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            None => String::new(),
        };
        for (i, t) in self.shared.config.targets.iter().enumerate() {
            let wanted = match which {
                "All" => s.session_type == SessionType::Discovery,
                "" => s.target == Some(i),
                name => name.eq_ignore_ascii_case(&t.name),
            };
            if !wanted || !t.allows(&s.initiator) {
                continue;
            }
            text::push(reply, "TargetName", &t.name);
            if !addr.is_empty() {
                text::push(
                    reply,
                    "TargetAddress",
                    &format!("{addr},{}", t.portal_group_tag),
                );
            }
        }
    }

    // --- SCSI commands ----------------------------------------------------

    fn take_buf(&mut self, cap: usize) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b.reserve(cap);
        b
    }

    /// A Data-In buffer of capacity >= `cap` that keeps what it held before
    /// (bytes of this connection's earlier commands), so that a service
    /// which overwrites it need not zero it first (see `ScsiTask::data_in`).
    fn take_data_in_buf(&mut self, cap: usize) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.reserve(cap.saturating_sub(b.len()));
        b
    }

    /// Pools `b` with its contents (`take_buf` clears, `take_data_in_buf` does not).
    fn give_buf(&mut self, b: Vec<u8>) {
        if b.capacity() > 0
            && b.capacity() <= POOL_MAX_BUF
            && self.pool.len() < 2 * self.tasks.capacity().max(16)
        {
            self.pool.push(b);
        }
    }

    fn free_task(&mut self, key: usize) {
        let t = self.tasks.remove(key);
        self.by_itt.remove(&t.itt);
        self.buffered -= t.charged;
        self.give_buf(t.data_out);
    }

    /// Counts `bytes` of buffers for `key` against the connection budget.
    /// Always succeeds when nothing else is buffered, so one command larger
    /// than the budget still makes progress.
    fn try_charge(&mut self, key: usize, bytes: usize) -> bool {
        let budget = self.shared.config.max_buffered_bytes_per_connection;
        if self.buffered > 0 && self.buffered + bytes > budget {
            return false;
        }
        self.buffered += bytes;
        self.tasks[key].charged += bytes;
        true
    }

    fn enqueue_waiting(&mut self, key: usize) {
        let g = self.tasks[key].generation;
        if !self.waiting.contains(&(key, g)) {
            self.waiting.push_back((key, g));
        }
    }

    /// Starts tasks that were waiting for buffer budget, oldest first.
    fn pump_waiting(&mut self) {
        while let Some(&(key, g)) = self.waiting.front() {
            self.waiting.pop_front();
            if !self
                .tasks
                .get(key)
                .is_some_and(|t| t.generation == g && t.state == TaskState::Collecting)
            {
                continue;
            }
            self.advance_task(key);
            if self.waiting.back() == Some(&(key, g)) {
                // Still no budget: keep its place at the head and wait for more releases.
                self.waiting.pop_back();
                self.waiting.push_front((key, g));
                break;
            }
        }
    }

    fn target_config(&self) -> Option<&TargetConfig> {
        self.session
            .as_ref()
            .and_then(|s| s.target)
            .map(|i| &self.shared.config.targets[i])
    }

    fn on_scsi_command(&mut self, p: PduRef<'_>) {
        let c = pdu::ScsiCommand::parse(&p.bhs);
        self.unread_responses = self.stat_sn.wrapping_sub(c.exp_stat_sn);
        let cap = self.shared.config.max_tasks_per_session as usize;
        if c.immediate && self.tasks.len() >= cap + IMMEDIATE_SLACK {
            return self.reject(RejectReason::ImmediateCommandReject, &p.bhs);
        }
        // A command inside the window uses up its CmdSN even if it is then
        // rejected, so the initiator's numbering stays in step.
        if !self.accept_cmd_sn(c.immediate, c.cmd_sn) {
            return;
        }
        if !p.ahs.is_empty() {
            // Extended CDBs and bidirectional commands are not supported.
            return self.reject(RejectReason::CommandNotSupported, &p.bhs);
        }
        if self.by_itt.contains_key(&c.itt) || c.itt == RESERVED_TAG {
            return self.reject(RejectReason::TaskInProgress, &p.bhs);
        }
        if c.read && c.write {
            return self.reject(RejectReason::CommandNotSupported, &p.bhs);
        }
        let imm = p.data.len() as u32;
        if imm > 0
            && (!c.write
                || !self.neg.immediate_data
                || imm > self.neg.first_burst_length
                || imm > c.expected_data_transfer_length)
        {
            self.reject(RejectReason::ProtocolError, &p.bhs);
            return self.fail("immediate data not allowed or too long");
        }
        let direction = if c.write {
            DataDirection::Write
        } else if c.read {
            DataDirection::Read
        } else {
            DataDirection::None
        };
        let (lun, lu) = match decode_lun(c.lun) {
            Some(l) => (l, self.target_config().and_then(|t| t.lu(l))),
            None => (u16::MAX, None),
        };
        let edtl = c.expected_data_transfer_length;
        let too_long = edtl > self.shared.config.max_transfer_length;
        let want = if c.write && !too_long { edtl } else { 0 };
        let unsolicited_end = if want == 0 {
            0
        } else if self.neg.initial_r2t {
            imm
        } else {
            want.min(self.neg.first_burst_length).max(imm)
        };
        self.generation = self.generation.wrapping_add(1);
        let data_out = if want > 0 {
            self.take_buf(unsolicited_end.max(imm) as usize)
        } else {
            Vec::new()
        };
        let mut task = Task {
            itt: c.itt,
            generation: self.generation,
            state: TaskState::Collecting,
            lun,
            lu,
            cdb: c.cdb,
            attribute: c.attribute,
            direction,
            edtl,
            data_out,
            want,
            unsolicited_end,
            unsolicited_done: unsolicited_end == imm || c.final_bit,
            data_sn: 0,
            seq_end: unsolicited_end,
            cur_r2t_sn: 0,
            next_r2t_sn: 0,
            next_r2t_offset: unsolicited_end,
            ttt_base: 0,
            failed: false,
            charged: 0,
        };
        if task.unsolicited_done && unsolicited_end != imm {
            // F bit on the command: no unsolicited Data-Out follows.
            task.unsolicited_end = imm;
            task.next_r2t_offset = imm;
        }
        task.data_out.extend_from_slice(p.data);
        // The unsolicited part (at most FirstBurstLength) is always accepted.
        task.charged = task.data_out.capacity().min(unsolicited_end as usize);
        self.buffered += task.charged;
        let key = self.tasks.insert(task);
        self.by_itt.insert(c.itt, key);
        if too_long {
            return self.complete_locally(
                key,
                status::CHECK_CONDITION,
                Sense::fixed(0x05, 0x24, 0x00),
                &[],
                0,
            );
        }
        self.advance_task(key);
    }

    /// Issues R2Ts (within the buffer budget) or starts the task once all
    /// its data is in.
    fn advance_task(&mut self, key: usize) {
        let max_burst = self.neg.max_burst_length;
        let max_r2t = self.neg.max_outstanding_r2t as u32;
        let task = &self.tasks[key];
        if task.state != TaskState::Collecting {
            return;
        }
        if task.data_out.len() as u32 >= task.want {
            if task.failed {
                // ABORTED COMMAND / DATA PHASE ERROR.
                let sense = Sense::fixed(0x0b, 0x4b, 0x00);
                return self.complete_locally(key, status::CHECK_CONDITION, sense, &[], 0);
            }
            return self.start_task(key);
        }
        if !task.unsolicited_done {
            return;
        }
        if task.ttt_base == 0 {
            // First R2T: the solicited remainder must fit the buffer budget.
            let need = (task.want - task.next_r2t_offset) as usize;
            if !self.try_charge(key, need) {
                return self.enqueue_waiting(key);
            }
            let task = &mut self.tasks[key];
            task.data_out.reserve(need);
            task.ttt_base = ((key as u32 + 1) << 16) | ((task.generation & 0xff) << 8);
            task.seq_end = task
                .next_r2t_offset
                .saturating_add(max_burst)
                .min(task.want);
            task.data_sn = 0;
        }
        loop {
            let task = &mut self.tasks[key];
            if task.next_r2t_sn.wrapping_sub(task.cur_r2t_sn) >= max_r2t
                || task.next_r2t_offset >= task.want
            {
                break;
            }
            let len = max_burst.min(task.want - task.next_r2t_offset);
            let (ttt, r2t_sn, off) = (
                task.ttt_base.wrapping_add(task.next_r2t_sn),
                task.next_r2t_sn,
                task.next_r2t_offset,
            );
            task.next_r2t_sn += 1;
            task.next_r2t_offset += len;
            let (lun, itt) = (encode_lun(task.lun), task.itt);
            let bhs = pdu::r2t(lun, itt, ttt, r2t_sn, off, len, &self.seq());
            self.send(&bhs, &[]);
        }
    }

    fn on_data_out(&mut self, p: PduRef<'_>) {
        let d = pdu::DataOut::parse(&p.bhs);
        let Some(&key) = self.by_itt.get(&d.itt) else {
            return self.reject(RejectReason::InvalidPduField, &p.bhs);
        };
        let task = &mut self.tasks[key];
        if task.state != TaskState::Collecting {
            return self.reject(RejectReason::InvalidPduField, &p.bhs);
        }
        let received = task.data_out.len() as u32;
        let len = p.data.len() as u32;
        let unsolicited = d.ttt == RESERVED_TAG;
        let seq_end = if unsolicited {
            if task.unsolicited_done {
                return self.fail("unsolicited Data-Out after the unsolicited burst");
            }
            task.unsolicited_end
        } else {
            if !task.unsolicited_done
                || task.ttt_base == 0
                || d.ttt != task.ttt_base.wrapping_add(task.cur_r2t_sn)
            {
                return self.fail("Data-Out with an unknown Target Transfer Tag");
            }
            task.seq_end
        };
        if len == 0 || received + len > seq_end {
            return self.fail("Data-Out length outside the expected range");
        }
        if d.data_sn != task.data_sn || d.buffer_offset != received {
            tracing::debug!(
                itt = d.itt,
                data_sn = d.data_sn,
                offset = d.buffer_offset,
                "Data-Out out of sequence"
            );
            task.failed = true;
        }
        task.data_out.extend_from_slice(p.data);
        task.data_sn += 1;
        let received = received + len;
        if received == seq_end {
            if !d.final_bit {
                return self.fail("Data-Out sequence complete without the F bit");
            }
            task.data_sn = 0;
            if unsolicited {
                task.unsolicited_done = true;
            } else {
                task.cur_r2t_sn += 1;
                task.seq_end = seq_end
                    .saturating_add(self.neg.max_burst_length)
                    .min(task.want);
            }
        } else if d.final_bit {
            if !unsolicited {
                return self.fail("Data-Out F bit before the end of the R2T sequence");
            }
            // The initiator ended its unsolicited burst early: solicit the rest.
            task.data_sn = 0;
            task.unsolicited_end = received;
            task.next_r2t_offset = received;
            task.unsolicited_done = true;
        }
        self.advance_task(key);
    }

    /// All Data-Out is in: answer locally or hand to the service.
    fn start_task(&mut self, key: usize) {
        let task = &self.tasks[key];
        if task.direction == DataDirection::Read
            && task.lu.is_some()
            && task.cdb[0] != 0xa0
            && task.charged == 0
        {
            let need = task.edtl.min(self.shared.config.max_transfer_length) as usize;
            if !self.try_charge(key, need) {
                return self.enqueue_waiting(key);
            }
        }
        let task = &mut self.tasks[key];
        task.state = TaskState::Submitted;
        let cdb = task.cdb;
        let edtl = task.edtl;
        let lu = task.lu;
        // REPORT LUNS: the front end owns the LUN map.
        if cdb[0] == 0xa0 {
            return self.report_luns(key);
        }
        let Some(lu) = lu else {
            if cdb[0] == 0x12 && cdb[1] & 1 == 0 {
                // INQUIRY to an unmapped LUN: peripheral qualifier 3, no device type.
                let mut d = [0u8; 36];
                d[0] = 0x7f;
                d[2] = 0x06;
                d[3] = 0x02;
                d[4] = 31;
                let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
                let n = alloc.min(36);
                return self.complete_locally(
                    key,
                    status::GOOD,
                    Sense::default(),
                    &d[..n],
                    n as u32,
                );
            }
            return self.complete_locally(
                key,
                status::CHECK_CONDITION,
                Sense::fixed(0x05, 0x25, 0x00),
                &[],
                0,
            );
        };
        let nexus = self
            .session
            .as_ref()
            .and_then(|s| s.nexus.as_ref())
            .map(|n| n.id)
            .unwrap_or(0);
        let data_in = if task.direction == DataDirection::Read {
            let cap = edtl.min(self.shared.config.max_transfer_length) as usize;
            self.take_data_in_buf(cap)
        } else {
            Vec::new()
        };
        let task = &mut self.tasks[key];
        let st = ScsiTask {
            nexus,
            lu,
            lun: task.lun,
            itt: task.itt,
            cdb,
            attribute: task.attribute,
            direction: task.direction,
            expected_transfer_length: edtl,
            data_out: std::mem::take(&mut task.data_out),
            data_in,
            status: status::GOOD,
            sense: Sense::default(),
            transfer_length: 0,
            slot: key as u32,
            generation: task.generation,
            sink: Some(self.queue.sink()),
        };
        self.actions.push(Action::Submit(st));
    }

    fn complete_locally(
        &mut self,
        key: usize,
        st: u8,
        sense: Sense,
        data: &[u8],
        transfer_length: u32,
    ) {
        let mut data_in = self.take_buf(data.len());
        data_in.extend_from_slice(data);
        let task = &mut self.tasks[key];
        task.state = TaskState::Submitted;
        let t = ScsiTask {
            nexus: 0,
            lu: LuHandle(u64::MAX),
            lun: task.lun,
            itt: task.itt,
            cdb: task.cdb,
            attribute: task.attribute,
            direction: task.direction,
            expected_transfer_length: task.edtl,
            data_out: std::mem::take(&mut task.data_out),
            data_in,
            status: st,
            sense,
            transfer_length,
            slot: key as u32,
            generation: task.generation,
            sink: None,
        };
        self.completed.push_back(t);
        self.process_completions();
    }

    fn report_luns(&mut self, key: usize) {
        let cdb = self.tasks[key].cdb;
        let alloc = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize;
        if alloc < 16 || cdb[2] > 2 {
            return self.complete_locally(
                key,
                status::CHECK_CONDITION,
                Sense::fixed(0x05, 0x24, 0x00),
                &[],
                0,
            );
        }
        let mut luns: Vec<u16> = self
            .target_config()
            .map(|t| t.luns.iter().map(|m| m.lun).collect())
            .unwrap_or_default();
        luns.sort_unstable();
        let mut d = Vec::with_capacity(8 + 8 * luns.len());
        d.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        for l in luns {
            d.extend_from_slice(&encode_lun(l).to_be_bytes());
        }
        let n = d.len().min(alloc);
        self.complete_locally(key, status::GOOD, Sense::default(), &d[..n], n as u32);
    }

    /// Turns completed tasks into Data-In / SCSI Response PDUs. Runs on the
    /// connection task; takes the completion queue lock once.
    pub fn process_completions(&mut self) {
        self.queue.drain_into(&mut self.completed);
        while self.out.len() < OUT_HIGH_WATER {
            let Some(t) = self.completed.pop_front() else {
                break;
            };
            self.finish_task(t);
        }
        self.pump_waiting();
        self.maybe_finish_logout();
    }

    /// Returns the spliced Data-In buffers the socket has written to the buffer pool (call
    /// after advancing `out`).
    pub fn reclaim_written(&mut self) {
        let keep = 2 * self.tasks.capacity().max(16);
        for b in self.out.take_written() {
            if b.capacity() > 0 && b.capacity() <= POOL_MAX_BUF && self.pool.len() < keep {
                self.pool.push(b);
            }
        }
    }

    /// Whether completed tasks are waiting for output space.
    pub fn has_backlog(&self) -> bool {
        !self.completed.is_empty()
    }

    fn finish_task(&mut self, mut t: ScsiTask) {
        let key = t.slot as usize;
        let live = self
            .tasks
            .get(key)
            .is_some_and(|x| x.generation == t.generation);
        if !live {
            self.give_buf(std::mem::take(&mut t.data_in));
            self.give_buf(std::mem::take(&mut t.data_out));
            return;
        }
        let (state, r2t_count) = {
            let x = &self.tasks[key];
            (x.state, x.next_r2t_sn)
        };
        if state == TaskState::Aborted {
            self.give_buf(std::mem::take(&mut t.data_in));
            self.give_buf(std::mem::take(&mut t.data_out));
            self.free_task(key);
            return;
        }
        let edtl = t.expected_transfer_length;
        let residual = Residual::of(edtl, t.transfer_length);
        let lun = encode_lun(t.lun);
        let mut data_sn = 0u32;
        let good = t.status == status::GOOD && t.sense.is_empty();
        if t.direction == DataDirection::Read {
            let n = t.data_in.len().min(edtl as usize);
            let seg = self.neg.initiator_mrdsl as usize;
            let burst = self.neg.max_burst_length as usize;
            if n > 0 && good && n <= seg && n <= burst {
                // The whole read in one Data-In PDU with the status: its payload is the
                // buffer the service filled, spliced into the output (no copy).
                let mut bhs =
                    pdu::data_in(t.itt, true, Some((t.status, residual)), 0, 0, &self.seq());
                self.stat_sn = self.stat_sn.wrapping_add(1);
                bhs.set_u64(8, lun);
                let digest = self
                    .limits
                    .data_digest
                    .then(|| pdu::data_digest(&t.data_in[..n]));
                pdu::encode_header(self.out.bytes_mut(), &bhs, n, self.limits.header_digest);
                self.out.splice(std::mem::take(&mut t.data_in), n);
                pdu::encode_trailer(self.out.bytes_mut(), n, digest);
                return self.release(key, t);
            }
            let mut off = 0usize;
            while off < n {
                let end = (off + seg).min(n).min((off / burst + 1) * burst);
                let last = end == n;
                let final_bit = last || end.is_multiple_of(burst);
                let with_status = last && good;
                let bhs = if with_status {
                    let b = pdu::data_in(
                        t.itt,
                        true,
                        Some((t.status, residual)),
                        data_sn,
                        off as u32,
                        &self.seq(),
                    );
                    self.stat_sn = self.stat_sn.wrapping_add(1);
                    b
                } else {
                    pdu::data_in(t.itt, final_bit, None, data_sn, off as u32, &self.seq())
                };
                let mut bhs = bhs;
                bhs.set_u64(8, lun);
                pdu::encode(
                    self.out.bytes_mut(),
                    &bhs,
                    &[&t.data_in[off..end]],
                    self.limits.header_digest,
                    self.limits.data_digest,
                );
                data_sn += 1;
                off = end;
            }
            if n > 0 && good {
                return self.release(key, t);
            }
        }
        let exp_data_sn = if t.direction == DataDirection::Read {
            data_sn
        } else {
            r2t_count
        };
        let itt = t.itt;
        let st = t.status;
        if t.sense.is_empty() {
            self.send_status(
                |sn| pdu::scsi_response(itt, st, residual, exp_data_sn, sn),
                &[],
            );
        } else {
            let len = (t.sense.as_bytes().len() as u16).to_be_bytes();
            let sense = t.sense;
            self.send_status(
                |sn| pdu::scsi_response(itt, st, residual, exp_data_sn, sn),
                &[&len, sense.as_bytes()],
            );
        }
        self.release(key, t);
    }

    fn release(&mut self, key: usize, mut t: ScsiTask) {
        self.give_buf(std::mem::take(&mut t.data_in));
        self.give_buf(std::mem::take(&mut t.data_out));
        self.free_task(key);
    }

    // --- Task management ----------------------------------------------

    fn on_tmf(&mut self, p: PduRef<'_>) {
        let m = pdu::TaskMgmtRequest::parse(&p.bhs);
        if !self.accept_cmd_sn(m.immediate, m.cmd_sn) {
            return;
        }
        // Send what has already completed first, so "task does not exist"
        // is answered for tasks whose response is on its way.
        self.process_completions();
        let target = self.target_config();
        let target_lus: Vec<LuHandle> = target
            .map(|t| t.luns.iter().map(|m| m.handle).collect())
            .unwrap_or_default();
        let lun = decode_lun(m.lun);
        let lu = lun.and_then(|l| target.and_then(|t| t.lu(l)));
        let nexus = self
            .session
            .as_ref()
            .and_then(|s| s.nexus.as_ref())
            .map(|n| n.id)
            .unwrap_or(0);
        let function = match m.function {
            1 => TmfFunction::AbortTask {
                referenced_itt: m.referenced_task_tag,
            },
            2 => TmfFunction::AbortTaskSet,
            4 => TmfFunction::ClearTaskSet,
            5 => TmfFunction::LogicalUnitReset,
            6 => TmfFunction::TargetWarmReset,
            7 => TmfFunction::TargetColdReset,
            8 => return self.tmf_respond(m.itt, TmfResponse::ReassignmentNotSupported),
            3 => return self.tmf_respond(m.itt, TmfResponse::NotSupported),
            _ => return self.tmf_respond(m.itt, TmfResponse::Rejected),
        };
        let lu_scoped = matches!(
            function,
            TmfFunction::AbortTask { .. }
                | TmfFunction::AbortTaskSet
                | TmfFunction::ClearTaskSet
                | TmfFunction::LogicalUnitReset
        );
        if lu_scoped && lu.is_none() {
            return self.tmf_respond(m.itt, TmfResponse::LunDoesNotExist);
        }
        if let TmfFunction::AbortTask { referenced_itt } = function {
            match self.by_itt.get(&referenced_itt).copied() {
                None => return self.tmf_respond(m.itt, TmfResponse::TaskDoesNotExist),
                Some(k) if self.tasks[k].state == TaskState::Collecting => {
                    self.free_task(k);
                    return self.tmf_respond(m.itt, TmfResponse::FunctionComplete);
                }
                Some(k) if self.tasks[k].state == TaskState::Aborted => {
                    return self.tmf_respond(m.itt, TmfResponse::FunctionComplete);
                }
                Some(_) => {}
            }
        } else {
            // Tasks still collecting data on the affected LUs are dropped here.
            let affected: Vec<usize> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.state == TaskState::Collecting && (!lu_scoped || t.lu == lu))
                .map(|(k, _)| k)
                .collect();
            for k in affected {
                self.free_task(k);
            }
        }
        let request = TmfRequest {
            function,
            nexus,
            lu: if lu_scoped { lu } else { None },
            target_lus,
        };
        self.actions.push(Action::TaskManagement {
            itt: m.itt,
            request,
        });
    }

    /// Result of a task management function run by the edge.
    pub fn task_management_done(&mut self, itt: u32, request: &TmfRequest, response: TmfResponse) {
        if response == TmfResponse::FunctionComplete {
            let lu = request.lu;
            let keys: Vec<usize> = self
                .tasks
                .iter()
                .filter(|(_, t)| {
                    t.state == TaskState::Submitted
                        && match request.function {
                            TmfFunction::AbortTask { referenced_itt } => t.itt == referenced_itt,
                            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => true,
                            _ => t.lu == lu,
                        }
                })
                .map(|(k, _)| k)
                .collect();
            for k in keys {
                self.tasks[k].state = TaskState::Aborted;
            }
        }
        self.tmf_respond(itt, response);
        self.pump_waiting();
        if request.function == TmfFunction::TargetColdReset
            && response == TmfResponse::FunctionComplete
            && let Some(t) = self.target_config()
        {
            let name = t.name.clone();
            self.shared.kill_target_sessions(&name, &self.control);
            self.close = Some(CloseReason::Killed);
        }
        self.maybe_finish_logout();
    }

    fn tmf_respond(&mut self, itt: u32, response: TmfResponse) {
        self.send_status(|sn| pdu::task_mgmt_response(itt, response as u8, sn), &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Pdu;
    use crate::service::ScsiService;
    use crate::testing::{TEST_IQN, simple_config};

    /// Drives a `Connection` directly: bytes in, PDUs and actions out.
    struct Harness {
        conn: Connection,
        disk: Arc<crate::testing::RamDisk>,
        cmd_sn: u32,
    }

    impl Harness {
        fn new() -> Harness {
            let (config, disk) = simple_config(64);
            let shared = Shared::new(config, disk.clone());
            let control = shared.new_conn_control();
            Harness {
                conn: Connection::new(shared, control, None),
                disk,
                cmd_sn: 5,
            }
        }
        fn feed(&mut self, bhs: &Bhs, data: &[u8]) -> Vec<Pdu> {
            let mut input = BytesMut::new();
            pdu::encode(
                &mut input,
                bhs,
                &[data],
                self.conn.limits.header_digest,
                self.conn.limits.data_digest,
            );
            self.conn.receive(&mut input);
            assert!(input.is_empty());
            let actions: Vec<Action> = self.conn.take_actions().collect();
            for a in actions {
                match a {
                    Action::Submit(t) => self.disk.submit(t),
                    Action::TaskManagement { itt, request } => {
                        let r = self.disk.task_management(&request);
                        self.conn.task_management_done(itt, &request, r);
                    }
                }
            }
            self.conn.process_completions();
            let mut out = self.conn.out.take_all();
            let limits = FrameLimits {
                max_data_segment: 1 << 24,
                ..self.conn.limits
            };
            let mut pdus = Vec::new();
            while let Some(p) = pdu::decode(&mut out, &limits).unwrap() {
                pdus.push(p);
            }
            pdus
        }
        fn login(&mut self) {
            let mut b = Bhs::new(Opcode::LoginRequest);
            b.0[0] |= 0x40;
            b.0[1] = 0x87; // T, CSG=1, NSG=3
            b.0[8] = 0x80;
            b.set_u32(16, 1);
            b.set_u32(24, self.cmd_sn);
            let mut d = Vec::new();
            text::push(&mut d, "InitiatorName", "iqn.2026-11.test:unit");
            text::push(&mut d, "TargetName", TEST_IQN);
            text::push(&mut d, "MaxRecvDataSegmentLength", "4096");
            let r = self.feed(&b, &d);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].bhs.opcode(), Some(Opcode::LoginResponse));
            assert_eq!(r[0].bhs.u16_at(36), 0);
            assert_eq!(r[0].bhs.flags(), 0x87);
            assert_ne!(r[0].bhs.u16_at(14), 0, "TSIH assigned");
            assert_eq!(r[0].bhs.u32_at(28), self.cmd_sn, "ExpCmdSN = login CmdSN");
            assert!(self.conn.is_logged_in());
        }
        fn command(&mut self, cdb: &[u8], read: u32) -> Vec<Pdu> {
            let mut b = Bhs::new(Opcode::ScsiCommand);
            b.0[1] = 0x81 | if read > 0 { 0x40 } else { 0 };
            b.set_u32(16, 100 + self.cmd_sn);
            b.set_u32(20, read);
            b.set_u32(24, self.cmd_sn);
            b.0[32..32 + cdb.len()].copy_from_slice(cdb);
            self.cmd_sn += 1;
            self.feed(&b, &[])
        }
    }

    #[test]
    fn sans_io_login_and_commands() {
        let mut h = Harness::new();
        h.login();
        // TEST UNIT READY: one SCSI Response, StatSN advancing, window moving.
        let r = h.command(&[0; 6], 0);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].bhs.opcode(), Some(Opcode::ScsiResponse));
        assert_eq!(r[0].bhs.0[3], 0);
        let exp = r[0].bhs.u32_at(28);
        assert_eq!(exp, 6);
        // MaxCmdSN counts the slot the command still held while answering.
        assert_eq!(r[0].bhs.u32_at(32), exp + 62);
        // READ(10) of 16 blocks with the initiator's 4096-byte limit: two
        // Data-In PDUs, status in the last one.
        let r = h.command(&[0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0], 8192);
        assert_eq!(r.len(), 2);
        assert!(
            r.iter()
                .all(|p| p.bhs.opcode() == Some(Opcode::DataIn) && p.data.len() == 4096)
        );
        assert_eq!(r[0].bhs.flags() & 0x81, 0);
        assert_eq!(r[1].bhs.flags() & 0x81, 0x81);
        assert_eq!((r[0].bhs.u32_at(36), r[1].bhs.u32_at(36)), (0, 1), "DataSN");
        assert_eq!(r[1].bhs.u32_at(40), 4096, "buffer offset");
        // A CmdSN outside the window produces nothing and does not advance ExpCmdSN.
        h.cmd_sn += 1000;
        assert!(h.command(&[0; 6], 0).is_empty());
        h.cmd_sn -= 1001;
        let r = h.command(&[0; 6], 0);
        assert_eq!(r.len(), 1);
        // An unknown opcode is rejected with the header echoed back.
        let mut b = Bhs::default();
        b.0[0] = 0x1b;
        let r = h.feed(&b, &[]);
        assert_eq!(r[0].bhs.opcode(), Some(Opcode::Reject));
        assert_eq!(r[0].bhs.0[2], RejectReason::CommandNotSupported as u8);
        assert_eq!(&r[0].data[..], &b.0[..]);
        assert!(h.conn.close_reason().is_none());
    }

    /// Random well-framed PDUs with random fields: never a panic, and the
    /// connection either keeps going or asks to be closed.
    #[test]
    fn sans_io_random_pdus_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let opcodes = [0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x1f, 0x3f];
        let mut fed = 0;
        let mut answered = 0;
        for round in 0..300 {
            let mut h = Harness::new();
            if round % 4 != 0 {
                h.login();
            }
            for _ in 0..60 {
                if h.conn.close_reason().is_some() {
                    break;
                }
                let mut b = Bhs::default();
                for byte in b.0.iter_mut() {
                    *byte = rnd() as u8;
                }
                b.0[0] = opcodes[(rnd() % opcodes.len() as u64) as usize] | (b.0[0] & 0x40);
                b.0[4] = 0;
                if rnd() % 2 == 0 {
                    // Plausible sequence numbers and small lengths half of the time.
                    b.set_u32(24, h.cmd_sn);
                    b.set_u32(20, (rnd() % 4096) as u32);
                    b.0[8] = 0;
                    b.0[9] = 0;
                }
                let len = (rnd() % 600) as usize;
                let data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                fed += 1;
                answered += h.feed(&b, &data).len();
                if rnd() % 3 == 0 {
                    h.cmd_sn = h.cmd_sn.wrapping_add(1);
                }
            }
            h.conn.closed();
        }
        assert!(
            fed > 2000 && answered > 1000,
            "fed {fed}, answered {answered}"
        );
    }

    #[test]
    fn sans_io_max_cmd_sn_never_decreases() {
        let mut h = Harness::new();
        h.login();
        let first = h.command(&[0; 6], 0)[0].bhs.u32_at(32);
        // An immediate command occupies a slot without consuming a CmdSN.
        h.disk.set_hold(true);
        let mut b = Bhs::new(Opcode::ScsiCommand);
        b.0[0] |= 0x40;
        b.0[1] = 0x81;
        b.set_u32(16, 77);
        b.set_u32(24, h.cmd_sn);
        assert!(h.feed(&b, &[]).is_empty());
        let mut nop = Bhs::new(Opcode::NopOut);
        nop.0[0] |= 0x40;
        nop.set_u32(16, 78);
        nop.set_u32(20, RESERVED_TAG);
        nop.set_u32(24, h.cmd_sn);
        let r = h.feed(&nop, &[]);
        assert_eq!(r[0].bhs.opcode(), Some(Opcode::NopIn));
        assert_eq!(r[0].bhs.u32_at(32), first);
        h.disk.set_hold(false);
    }

    #[test]
    fn lun_encoding() {
        for l in [0u16, 1, 255, 256, 16383] {
            assert_eq!(decode_lun(encode_lun(l)), Some(l));
        }
        assert_eq!(decode_lun(0x0000_0001_0000_0000), None);
        assert_eq!(decode_lun(0x8000_0000_0000_0000), None);
    }
}
