//! State shared by all connections of a server: configuration, the SCSI
//! service, the session table (for reinstatement and target resets) and the
//! I_T nexus id map.
//!
//! Locking: one `parking_lot::Mutex` around the session table, taken briefly
//! by connection tasks at login, logout/close and target cold reset. No other
//! lock is held while it is held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::ServerConfig;
use crate::service::{Nexus, NexusId, ScsiService};

/// Lets other connections (reinstatement, cold reset, shutdown) close a connection.
///
/// Its wake-up is the same `Notify` the connection's completion queue uses,
/// so the connection task waits on one thing for both.
#[derive(Default)]
pub struct ConnControl {
    pub id: u64,
    killed: AtomicBool,
    wake: Arc<Notify>,
}

impl ConnControl {
    pub fn new(id: u64) -> Arc<ConnControl> {
        Arc::new(ConnControl {
            id,
            ..Default::default()
        })
    }
    /// Asks the connection to close (it finishes at its next loop turn).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
    /// The connection's wake-up (shared with its completion queue).
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }
}

/// Nexus ids remembered for initiators without a session, at most.
const MAX_REMEMBERED_NEXUS: usize = 16384;

#[derive(Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    initiator: String,
    isid: [u8; 6],
    target: String,
}

struct SessionEntry {
    tsih: u16,
    control: Arc<ConnControl>,
    nexus: Nexus,
}

#[derive(Default)]
struct Sessions {
    by_key: HashMap<SessionKey, SessionEntry>,
    nexus_ids: HashMap<(String, [u8; 6], u16, String), NexusId>,
    next_nexus: NexusId,
    next_tsih: u16,
}

/// Shared server state.
pub struct Shared {
    pub config: ServerConfig,
    pub service: Arc<dyn ScsiService>,
    sessions: Mutex<Sessions>,
    /// Open connections (logged in or not).
    pub connections: AtomicUsize,
    next_conn_id: AtomicU64,
    /// Set at shutdown: new logins are refused, connections wind down.
    pub shutting_down: AtomicBool,
    /// Every open connection's control, to wake them all at shutdown.
    live: Mutex<HashMap<u64, Weak<ConnControl>>>,
    /// Adaptive polling: polls that found the initiator's next command.
    pub poll_hits: AtomicU64,
    /// Adaptive polling: polls that ended without data (the connection
    /// then slept in `epoll_wait`).
    pub poll_timeouts: AtomicU64,
}

/// A registered session as returned by [`Shared::register_session`].
pub struct Registered {
    pub tsih: u16,
    pub nexus: Nexus,
}

impl Shared {
    pub fn new(config: ServerConfig, service: Arc<dyn ScsiService>) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            service,
            sessions: Mutex::new(Sessions {
                next_nexus: 1,
                next_tsih: 1,
                ..Default::default()
            }),
            connections: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            poll_hits: AtomicU64::new(0),
            poll_timeouts: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The control of a new connection; [`Shared::conn_closed`] when it ends.
    pub fn new_conn_control(&self) -> Arc<ConnControl> {
        let c = ConnControl::new(self.next_conn_id.fetch_add(1, Ordering::Relaxed));
        self.live.lock().insert(c.id, Arc::downgrade(&c));
        c
    }

    /// The connection with control `id` has ended.
    pub fn conn_closed(&self, id: u64) {
        self.live.lock().remove(&id);
    }

    /// Sets `shutting_down` and wakes every open connection, which then asks
    /// its initiator to log out (or closes, before login).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let live: Vec<Arc<ConnControl>> = self
            .live
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for c in live {
            c.wake.notify_one();
        }
    }

    /// Registers a session reaching full feature phase. An existing session
    /// with the same initiator name, ISID and target is reinstated: its
    /// connection is told to close and its nexus is reported lost.
    pub fn register_session(
        &self,
        initiator: &str,
        isid: [u8; 6],
        target: &str,
        tpgt: u16,
        control: &Arc<ConnControl>,
    ) -> Registered {
        let key = SessionKey {
            initiator: initiator.to_ascii_lowercase(),
            isid,
            target: target.to_ascii_lowercase(),
        };
        let (old, reg) = {
            let mut s = self.sessions.lock();
            let nkey = (key.initiator.clone(), isid, tpgt, key.target.clone());
            if s.nexus_ids.len() >= MAX_REMEMBERED_NEXUS && !s.nexus_ids.contains_key(&nkey) {
                // Forget ids of nexuses without a session so the map stays bounded.
                let live: std::collections::HashSet<NexusId> =
                    s.by_key.values().map(|e| e.nexus.id).collect();
                s.nexus_ids.retain(|_, id| live.contains(id));
            }
            let next = s.next_nexus;
            let id = *s.nexus_ids.entry(nkey).or_insert(next);
            if id == next {
                s.next_nexus += 1;
            }
            let mut tsih = s.next_tsih;
            while tsih == 0 || s.by_key.values().any(|e| e.tsih == tsih) {
                tsih = tsih.wrapping_add(1);
            }
            s.next_tsih = tsih.wrapping_add(1);
            let nexus = Nexus {
                id,
                initiator_name: initiator.to_owned(),
                isid,
                target_name: target.to_owned(),
                portal_group_tag: tpgt,
            };
            let old = s.by_key.insert(
                key,
                SessionEntry {
                    tsih,
                    control: control.clone(),
                    nexus: nexus.clone(),
                },
            );
            (old, Registered { tsih, nexus })
        };
        if let Some(old) = old {
            tracing::info!(
                initiator,
                target,
                "session reinstatement: closing the previous session"
            );
            old.control.kill();
            // I_T nexus loss of the old session happens before the new one
            // is reported established (its connection may close later).
            if !target.is_empty() {
                self.service.nexus_lost(&old.nexus);
            }
        }
        reg
    }

    /// Removes the session owned by `control`; `false` if it had already
    /// been replaced (reinstated) by another connection.
    pub fn unregister_session(
        &self,
        initiator: &str,
        isid: [u8; 6],
        target: &str,
        control: &Arc<ConnControl>,
    ) -> bool {
        let key = SessionKey {
            initiator: initiator.to_ascii_lowercase(),
            isid,
            target: target.to_ascii_lowercase(),
        };
        let mut s = self.sessions.lock();
        if s.by_key
            .get(&key)
            .is_some_and(|e| e.control.id == control.id)
        {
            s.by_key.remove(&key);
            return true;
        }
        false
    }

    /// Whether a session with this TSIH exists for the initiator/ISID.
    pub fn session_exists(&self, initiator: &str, isid: [u8; 6], tsih: u16) -> bool {
        let s = self.sessions.lock();
        s.by_key.iter().any(|(k, e)| {
            e.tsih == tsih && k.isid == isid && k.initiator.eq_ignore_ascii_case(initiator)
        })
    }

    /// Closes every session logged in to `target` except the caller's
    /// (TARGET COLD RESET: the caller closes itself after sending its response).
    pub fn kill_target_sessions(&self, target: &str, except: &ConnControl) {
        let s = self.sessions.lock();
        for (k, e) in s.by_key.iter() {
            if k.target.eq_ignore_ascii_case(target) && e.control.id != except.id {
                e.control.kill();
            }
        }
    }

    /// Closes every session (shutdown).
    pub fn kill_all_sessions(&self) {
        let s = self.sessions.lock();
        for e in s.by_key.values() {
            e.control.kill();
        }
    }

    /// Number of registered sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().by_key.len()
    }

    /// Nexus of the registered sessions (diagnostics and tests).
    pub fn nexuses(&self) -> Vec<Nexus> {
        self.sessions
            .lock()
            .by_key
            .values()
            .map(|e| e.nexus.clone())
            .collect()
    }
}
