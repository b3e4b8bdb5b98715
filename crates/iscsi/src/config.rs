//! Target configuration: which targets exist, their LUN maps, ACLs and CHAP
//! credentials, and the limits and timers the front end enforces.
//!
//! The lead builds a [`ServerConfig`] from the TOML file (cli crate) and hands
//! it to [`crate::server::serve`]. Nothing here does I/O.

use std::time::Duration;

use crate::params::TargetLimits;
use crate::service::LuHandle;

/// A CHAP user name and secret. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredential {
    pub user: String,
    pub secret: String,
}

impl ChapCredential {
    pub fn new(user: impl Into<String>, secret: impl Into<String>) -> ChapCredential {
        ChapCredential {
            user: user.into(),
            secret: secret.into(),
        }
    }
}

impl std::fmt::Debug for ChapCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredential")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// CHAP requirements of a target (or of discovery sessions).
#[derive(Clone, Debug, Default)]
pub struct ChapConfig {
    /// Initiator credentials the target accepts (one-way CHAP). Non-empty
    /// means CHAP is required: a login offering only `AuthMethod=None` fails
    /// with an authentication failure.
    pub users: Vec<ChapCredential>,
    /// Credential the target answers with when the initiator asks for mutual
    /// CHAP. When `None`, a request for mutual CHAP fails authentication.
    pub mutual: Option<ChapCredential>,
}

/// One LUN as the initiator sees it, and the handle the service gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LunMapping {
    /// The LUN number reported by REPORT LUNS (flat space, 0..=16383).
    pub lun: u16,
    /// Opaque handle passed to [`crate::service::ScsiService`].
    pub handle: LuHandle,
}

/// One iSCSI target node.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// iSCSI name (iqn./eui./naa.).
    pub name: String,
    pub alias: Option<String>,
    pub luns: Vec<LunMapping>,
    /// Initiator names allowed to see and log in to this target. Empty: any initiator.
    pub allowed_initiators: Vec<String>,
    /// `None`: no authentication (AuthMethod=None accepted).
    pub chap: Option<ChapConfig>,
    pub portal_group_tag: u16,
}

impl TargetConfig {
    pub fn new(name: impl Into<String>) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            alias: None,
            luns: Vec::new(),
            allowed_initiators: Vec::new(),
            chap: None,
            portal_group_tag: 1,
        }
    }
    /// Whether `initiator` passes this target's ACL (case-insensitive: iSCSI names are normalised to lower case).
    pub fn allows(&self, initiator: &str) -> bool {
        self.allowed_initiators.is_empty()
            || self
                .allowed_initiators
                .iter()
                .any(|a| a.eq_ignore_ascii_case(initiator))
    }
    pub fn lu(&self, lun: u16) -> Option<LuHandle> {
        self.luns.iter().find(|m| m.lun == lun).map(|m| m.handle)
    }
}

/// Shortest CHAP secret accepted (RFC 7143 §12.1.3: at least 96 bits).
pub const MIN_CHAP_SECRET_LEN: usize = 12;

/// Default of [`ServerConfig::poll_before_sleep`].
pub const DEFAULT_POLL_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// Largest [`ServerConfig::poll_before_sleep`] accepted.
pub const MAX_POLL_BEFORE_SLEEP: Duration = Duration::from_millis(1);

fn check_chap(c: &ChapConfig, at: &str) -> Result<(), String> {
    if c.users.is_empty() {
        return Err(format!("{at}.users: at least one user is required"));
    }
    for (j, u) in c.users.iter().enumerate() {
        if u.user.is_empty() {
            return Err(format!("{at}.users[{j}].user: must not be empty"));
        }
        if u.secret.len() < MIN_CHAP_SECRET_LEN {
            return Err(format!(
                "{at}.users[{j}].secret: must be at least {MIN_CHAP_SECRET_LEN} bytes"
            ));
        }
    }
    if let Some(m) = &c.mutual {
        if m.secret.len() < MIN_CHAP_SECRET_LEN {
            return Err(format!(
                "{at}.mutual.secret: must be at least {MIN_CHAP_SECRET_LEN} bytes"
            ));
        }
        if c.users.iter().any(|u| u.secret == m.secret) {
            return Err(format!(
                "{at}.mutual.secret: must differ from the initiator secrets"
            ));
        }
    }
    Ok(())
}

/// Connection timers.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// A connection that has not completed login in this time is closed.
    pub login: Duration,
    /// After this much silence from the initiator the target sends a NOP-In ping.
    pub nop_in_interval: Duration,
    /// A connection that stays silent this long after a ping is dropped.
    pub nop_in_timeout: Duration,
    /// At shutdown, how long logged-in initiators get to log out (after an
    /// Async Message requesting it) before their connections are closed.
    pub logout_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            login: Duration::from_secs(15),
            nop_in_interval: Duration::from_secs(30),
            nop_in_timeout: Duration::from_secs(15),
            logout_grace: Duration::from_secs(5),
        }
    }
}

/// Everything the front end needs: targets, discovery authentication,
/// negotiation limits, bounds and timers.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub targets: Vec<TargetConfig>,
    /// CHAP for discovery sessions (`None`: discovery without authentication).
    pub discovery_chap: Option<ChapConfig>,
    pub limits: TargetLimits,
    pub timeouts: Timeouts,
    /// Commands a session may have outstanding (CmdSN window size).
    pub max_tasks_per_session: u32,
    /// Largest Expected Data Transfer Length accepted for one command.
    pub max_transfer_length: u32,
    /// Connections accepted at once; more are closed immediately.
    pub max_connections: usize,
    /// Data buffer bytes one connection's commands may hold at once
    /// (solicited write data and read buffers). Commands beyond it wait
    /// (no R2T is sent, no read is started) until earlier ones complete; a
    /// single command larger than this still runs when it is alone.
    pub max_buffered_bytes_per_connection: usize,
    /// Adaptive polling (see `crate::server`): how long a connection that is
    /// alone on its network thread, has nothing in flight, and whose initiator
    /// answered within this window last time, polls its socket before it
    /// goes to sleep in `epoll_wait`. Zero turns polling off.
    pub poll_before_sleep: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            targets: Vec::new(),
            discovery_chap: None,
            limits: TargetLimits::default(),
            timeouts: Timeouts::default(),
            max_tasks_per_session: 64,
            max_transfer_length: 16 * 1024 * 1024,
            max_connections: 4096,
            max_buffered_bytes_per_connection: 64 * 1024 * 1024,
            poll_before_sleep: DEFAULT_POLL_BEFORE_SLEEP,
        }
    }
}

impl ServerConfig {
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// Checks the configuration for mistakes that would make the server
    /// misbehave; the message names the offending item.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if !(512..=16_777_215).contains(&l.max_recv_data_segment_length) {
            return Err(format!(
                "limits.max_recv_data_segment_length = {}: must be 512..=16777215",
                l.max_recv_data_segment_length
            ));
        }
        if !(512..=16_777_215).contains(&l.max_burst_length)
            || !(512..=16_777_215).contains(&l.first_burst_length)
        {
            return Err(
                "limits.max_burst_length / first_burst_length: must be 512..=16777215".into(),
            );
        }
        if l.max_outstanding_r2t == 0 {
            return Err("limits.max_outstanding_r2t: must be at least 1".into());
        }
        if self.poll_before_sleep > MAX_POLL_BEFORE_SLEEP {
            return Err(format!(
                "poll_before_sleep = {:?}: must be at most {:?}",
                self.poll_before_sleep, MAX_POLL_BEFORE_SLEEP
            ));
        }
        if self.max_tasks_per_session == 0 || self.max_tasks_per_session > 4096 {
            return Err("max_tasks_per_session: must be 1..=4096".into());
        }
        if let Some(c) = &self.discovery_chap {
            check_chap(c, "discovery_chap")?;
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !(t.name.starts_with("iqn.")
                || t.name.starts_with("eui.")
                || t.name.starts_with("naa."))
            {
                return Err(format!(
                    "targets[{i}].name = {:?}: must start with iqn., eui. or naa.",
                    t.name
                ));
            }
            if self.targets[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&t.name))
            {
                return Err(format!(
                    "targets[{i}].name = {:?}: duplicate target name",
                    t.name
                ));
            }
            for (j, m) in t.luns.iter().enumerate() {
                if m.lun > 16383 {
                    return Err(format!(
                        "targets[{i}].luns[{j}].lun = {}: must be 0..=16383",
                        m.lun
                    ));
                }
                if t.luns[..j].iter().any(|o| o.lun == m.lun) {
                    return Err(format!(
                        "targets[{i}].luns[{j}].lun = {}: duplicate LUN",
                        m.lun
                    ));
                }
            }
            if let Some(c) = &t.chap {
                check_chap(c, &format!("targets[{i}].chap"))?;
            }
        }
        Ok(())
    }
}
