//! The control socket: a Unix domain socket `serve` listens on for management commands
//! (`scsiport stat`, `sessions`, `adapter stop|restart|reset`, `wmi list|query|set|exec`), and
//! the client side
//! those commands use. The same [`ControlState`] feeds the Prometheus endpoint
//! ([`crate::metrics`]).
//!
//! Protocol: line-delimited JSON. The client writes one [`Request`] per line; the server answers
//! each with one [`Reply`] line, in order, on the same connection. A request line is at most
//! [`MAX_REQUEST`] bytes; a longer one is answered with an error and the connection is closed
//! (there is no way to find the next request). A line that is not a valid request gets
//! [`Reply::Error`] and the connection stays usable.
//!
//! Access: the socket file is created mode 0600 (owner only), and the server checks every
//! peer's uid (SO_PEERCRED) against its own: any other user, root included, gets one error line
//! and is disconnected. The socket file is removed when `serve` exits.
//!
//! Threads: the accept loop and the connections run as tasks on the `serve` tokio runtime;
//! `adapter stop|restart` and `wmi`, which block until the port has finished, run on tokio's
//! blocking pool; stop/restart/reset hold that adapter's control mutex (one at a time per
//! adapter). Statistics are read from the port's relaxed atomic counters without any lock.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use port::{Adapter, Address, LATENCY_BUCKETS, LatencyHistogram, Statistics};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::config::Config;

/// Longest request line the server reads, newline included (room for 32 KiB of WMI data in
/// hex).
pub const MAX_REQUEST: usize = 64 << 10;
/// Longest reply line the client accepts.
pub const MAX_REPLY: usize = 16 << 20;
/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `adapter stop` and `adapter restart` wait for the port.
pub const ADAPTER_CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// One management request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Counters of every adapter and LU. (Struct variants, so that unknown fields are refused.)
    Stat {},
    /// The logged-in iSCSI sessions.
    Sessions {},
    /// `ScsiStopAdapter`: hold new and queued requests, finish those in the miniport.
    AdapterStop {
        /// The adapter's name in the configuration.
        name: String,
    },
    /// Restart a stopped adapter and resume the held requests.
    AdapterRestart {
        /// The adapter's name in the configuration.
        name: String,
    },
    /// A bus reset of every bus of the adapter (SRB_FUNCTION_RESET_BUS through the port):
    /// requests in the miniport complete with BUS_RESET, the LUs report a unit attention.
    AdapterReset {
        /// The adapter's name in the configuration.
        name: String,
    },
    /// The WMI data blocks of the adapter: the port's statistics blocks and the miniport's
    /// (IRP_MN_REGINFO).
    WmiList {
        /// The adapter's name in the configuration.
        adapter: String,
    },
    /// Query a WMI data block: all instances, or one.
    WmiQuery {
        /// The adapter's name in the configuration.
        adapter: String,
        /// The block's GUID or port block name (see [`crate::wmi::parse_guid`]).
        guid: String,
        /// One instance (IRP_MN_QUERY_SINGLE_INSTANCE); absent: all (QUERY_ALL_DATA).
        #[serde(default)]
        instance: Option<u32>,
    },
    /// Change one instance of a block (CHANGE_SINGLE_INSTANCE), or one item of it
    /// (CHANGE_SINGLE_ITEM).
    WmiSet {
        /// The adapter's name in the configuration.
        adapter: String,
        /// The block's GUID.
        guid: String,
        /// The instance.
        instance: u32,
        /// The item id (absent: the whole instance).
        #[serde(default)]
        item: Option<u32>,
        /// The new data in hex.
        hex: String,
    },
    /// Run a method of a block (EXECUTE_METHOD).
    WmiExec {
        /// The adapter's name in the configuration.
        adapter: String,
        /// The block's GUID.
        guid: String,
        /// The instance.
        instance: u32,
        /// The method id.
        method: u32,
        /// The input in hex.
        #[serde(default)]
        hex: String,
    },
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The answer to [`Request::Stat`].
    Stat(StatSample),
    /// The answer to [`Request::Sessions`].
    Sessions(Vec<SessionInfo>),
    /// The answer to [`Request::WmiList`].
    WmiBlocks(Vec<crate::wmi::WmiBlock>),
    /// The answer to [`Request::WmiQuery`] and [`Request::WmiExec`]: the bytes returned, in
    /// hex.
    WmiData {
        /// Lowercase hex, two digits per byte.
        hex: String,
        /// The instances decoded, for the port's statistics blocks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statistics: Option<Vec<crate::wmi::StatisticsInstance>>,
    },
    /// A management operation finished.
    Done {
        /// What was done.
        message: String,
    },
    /// The request was malformed, refused or failed.
    Error {
        /// Why.
        message: String,
    },
}

/// The counters of every adapter at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatSample {
    /// Nanoseconds since `serve` started (the time base for rates between two samples).
    pub uptime_ns: u64,
    /// The adapters, in configuration order.
    pub adapters: Vec<AdapterSample>,
}

/// One adapter's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterSample {
    /// Name in the configuration.
    pub name: String,
    /// `running` or `stopped` (by `scsiport adapter stop`).
    pub state: String,
    /// `storport` or `scsiport`.
    pub model: String,
    /// Adapter-wide I/O counters.
    pub totals: Counters,
    /// Adapter restarts by the port's timeout escalation.
    pub timeout_restarts: u64,
    /// Error-log entries the port wrote.
    pub errors_logged: u64,
    /// The adapter's logical units.
    pub lus: Vec<LuSample>,
}

/// One LU's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LuSample {
    /// `path:target:lun` on the adapter.
    pub address: String,
    /// Where the LU is exported: `IQN/LUN` for each mapping.
    pub exports: Vec<String>,
    /// Its I/O counters (zero until the port first addresses it).
    pub counters: Counters,
}

/// The port's I/O counters ([`port::Statistics`]) in a wire form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// EXECUTE_SCSI requests completed.
    pub commands: u64,
    /// READs among them.
    pub reads: u64,
    /// WRITEs among them.
    pub writes: u64,
    /// Bytes moved by successful reads.
    pub bytes_read: u64,
    /// Bytes moved by successful writes.
    pub bytes_written: u64,
    /// Completions with a status other than SUCCESS.
    pub errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Bus, LU and adapter resets.
    pub resets: u64,
    /// BUSY / QUEUE FULL completions.
    pub busy: u64,
    /// Requests completed as REQUEST_FLUSHED.
    pub flushed: u64,
    /// Requests completed as ABORTED.
    pub aborted: u64,
    /// Failed EXECUTE_SCSI completions by kind, in `port::ErrorKind::ALL` order
    /// (check condition, selection timeout, bus reset, aborted, other).
    #[serde(default)]
    pub error_kinds: [u64; port::ErrorKind::COUNT],
    /// Requests submitted to the port and not yet completed (queue depth; a gauge).
    #[serde(default)]
    pub outstanding: u64,
    /// Submit-to-completion times of the commands (cumulative histogram).
    #[serde(default)]
    pub latency: Latency,
}

/// The port's latency histogram ([`port::LatencyHistogram`]) in a wire form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// `buckets[i]`: commands that took `[2^i, 2^(i+1))` µs (bucket 0 also holds 0 µs, the
    /// last one everything longer).
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Sum of the times, µs.
    pub sum_us: u64,
    /// Number of times recorded (equals `commands`).
    pub count: u64,
}

impl From<LatencyHistogram> for Latency {
    fn from(h: LatencyHistogram) -> Self {
        Latency {
            buckets: h.buckets,
            sum_us: h.sum_us,
            count: h.count,
        }
    }
}

impl From<Latency> for LatencyHistogram {
    fn from(l: Latency) -> Self {
        LatencyHistogram {
            buckets: l.buckets,
            sum_us: l.sum_us,
            count: l.count,
        }
    }
}

impl From<Statistics> for Counters {
    fn from(s: Statistics) -> Self {
        Counters {
            commands: s.commands,
            reads: s.reads,
            writes: s.writes,
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
            errors: s.errors,
            timeouts: s.timeouts,
            resets: s.resets,
            busy: s.busy,
            flushed: s.flushed,
            aborted: s.aborted,
            error_kinds: s.error_kinds,
            outstanding: s.outstanding,
            latency: s.latency.into(),
        }
    }
}

/// One logged-in iSCSI session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The initiator's iSCSI name.
    pub initiator: String,
    /// The initiator session id, 12 hex digits.
    pub isid: String,
    /// The target logged in to.
    pub target: String,
    /// Target portal group tag.
    pub portal_group_tag: u16,
    /// The I_T nexus id the SCSI layer knows the session by.
    pub nexus: u64,
}

/// A WMI operation, its GUID parsed and its data decoded.
enum WmiCall {
    List,
    Query([u8; 16], Option<u32>),
    Set([u8; 16], u32, Option<u32>, Vec<u8>),
    Exec([u8; 16], u32, u32, Vec<u8>),
}

/// One adapter as the control socket sees it.
struct AdapterEntry {
    name: String,
    adapter: Adapter,
    /// The LUs of the configuration, with their exports.
    lus: Vec<(Address, Vec<String>)>,
    /// Set while stopped through the control socket.
    stopped: AtomicBool,
    /// Serializes stop/restart of this adapter (taken on the blocking pool only).
    control: parking_lot::Mutex<()>,
}

/// What the control socket serves: the adapters (by configuration name) and the iSCSI
/// front end's session registry.
pub struct ControlState {
    adapters: Vec<AdapterEntry>,
    iscsi: Arc<iscsi::registry::Shared>,
    started: Instant,
    uid: u32,
}

impl ControlState {
    /// `adapters` are the running adapters in configuration order (as `serve::build` made
    /// them); `iscsi` is the front end's registry ([`iscsi::server::Server::shared`]).
    pub fn new(
        config: &Config,
        adapters: impl IntoIterator<Item = Adapter>,
        iscsi: Arc<iscsi::registry::Shared>,
    ) -> Self {
        let adapters = config
            .adapters
            .iter()
            .zip(adapters)
            .map(|(a, adapter)| {
                let lus = a
                    .lus
                    .iter()
                    .map(|l| {
                        let exports = config
                            .targets
                            .iter()
                            .flat_map(|t| {
                                t.luns
                                    .iter()
                                    .filter(|m| {
                                        m.adapter == a.name
                                            && (m.path, m.target_id, m.adapter_lun)
                                                == (l.path, l.target, l.lun)
                                    })
                                    .map(|m| format!("{}/{}", t.iqn, m.lun))
                            })
                            .collect();
                        (Address::new(l.path, l.target, l.lun), exports)
                    })
                    .collect();
                AdapterEntry {
                    name: a.name.clone(),
                    adapter,
                    lus,
                    stopped: AtomicBool::new(false),
                    control: parking_lot::Mutex::new(()),
                }
            })
            .collect();
        ControlState {
            adapters,
            iscsi,
            started: Instant::now(),
            uid: rustix::process::getuid().as_raw(),
        }
    }

    /// The counters of every adapter and LU now (relaxed atomics; no adapter lock).
    pub(crate) fn stat(&self) -> StatSample {
        StatSample {
            uptime_ns: u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            adapters: self
                .adapters
                .iter()
                .map(|e| {
                    let pc = e.adapter.port_counters();
                    AdapterSample {
                        name: e.name.clone(),
                        state: if e.stopped.load(Ordering::Acquire) {
                            "stopped"
                        } else {
                            "running"
                        }
                        .into(),
                        model: if e.adapter.is_storport() {
                            "storport"
                        } else {
                            "scsiport"
                        }
                        .into(),
                        totals: e.adapter.statistics().into(),
                        timeout_restarts: pc.adapter_restarts,
                        errors_logged: pc.errors_logged,
                        lus: e
                            .lus
                            .iter()
                            .map(|(address, exports)| LuSample {
                                address: format!(
                                    "{}:{}:{}",
                                    address.path_id, address.target_id, address.lun
                                ),
                                exports: exports.clone(),
                                counters: e
                                    .adapter
                                    .lu_statistics(*address)
                                    .unwrap_or_default()
                                    .into(),
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// The iSCSI front end's figures for the metrics endpoint.
    pub(crate) fn iscsi_sample(&self) -> crate::metrics::IscsiSample {
        use std::sync::atomic::Ordering::Relaxed;
        crate::metrics::IscsiSample {
            sessions: self.iscsi.nexuses().len(),
            poll_hits: self.iscsi.poll_hits.load(Relaxed),
            poll_timeouts: self.iscsi.poll_timeouts.load(Relaxed),
        }
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .iscsi
            .nexuses()
            .into_iter()
            .map(|n| SessionInfo {
                initiator: n.initiator_name,
                isid: n.isid.iter().map(|b| format!("{b:02x}")).collect(),
                target: n.target_name,
                portal_group_tag: n.portal_group_tag,
                nexus: n.id,
            })
            .collect();
        v.sort_by(|a, b| {
            (&a.target, &a.initiator, &a.isid).cmp(&(&b.target, &b.initiator, &b.isid))
        });
        v
    }

    /// Stops or restarts adapter `index`. Blocking pool only: waits for the port.
    fn adapter_control(&self, index: usize, stop: bool) -> Reply {
        let e = &self.adapters[index];
        let _serial = e.control.lock();
        let result = if stop {
            e.adapter.stop(ADAPTER_CONTROL_TIMEOUT)
        } else {
            e.adapter.restart(ADAPTER_CONTROL_TIMEOUT)
        };
        match result {
            Ok(()) => {
                e.stopped.store(stop, Ordering::Release);
                tracing::info!(adapter = %e.name, stop, "adapter control through the control socket");
                Reply::Done {
                    message: format!(
                        "adapter {} {}",
                        e.name,
                        if stop { "stopped" } else { "restarted" }
                    ),
                }
            }
            Err(err) => Reply::Error {
                message: format!(
                    "adapter {}: {} failed: {err}",
                    e.name,
                    if stop { "stop" } else { "restart" }
                ),
            },
        }
    }

    /// Executes one request (a tokio task; blocking work goes to the blocking pool).
    async fn execute(self: &Arc<Self>, request: Request) -> Reply {
        match request {
            Request::Stat {} => Reply::Stat(self.stat()),
            Request::Sessions {} => Reply::Sessions(self.sessions()),
            Request::AdapterStop { name } => self.adapter_request(name, true).await,
            Request::AdapterRestart { name } => self.adapter_request(name, false).await,
            Request::AdapterReset { name } => self.reset_request(name).await,
            Request::WmiList { adapter } => self.wmi_request(adapter, WmiCall::List).await,
            Request::WmiQuery {
                adapter,
                guid,
                instance,
            } => match crate::wmi::parse_guid(&guid) {
                Ok(g) => self.wmi_request(adapter, WmiCall::Query(g, instance)).await,
                Err(message) => Reply::Error { message },
            },
            Request::WmiSet {
                adapter,
                guid,
                instance,
                item,
                hex,
            } => match crate::wmi::parse_guid(&guid)
                .and_then(|g| Ok((g, crate::wmi::parse_hex(&hex)?)))
            {
                Ok((g, data)) => {
                    self.wmi_request(adapter, WmiCall::Set(g, instance, item, data))
                        .await
                }
                Err(message) => Reply::Error { message },
            },
            Request::WmiExec {
                adapter,
                guid,
                instance,
                method,
                hex,
            } => match crate::wmi::parse_guid(&guid)
                .and_then(|g| Ok((g, crate::wmi::parse_hex(&hex)?)))
            {
                Ok((g, input)) => {
                    self.wmi_request(adapter, WmiCall::Exec(g, instance, method, input))
                        .await
                }
                Err(message) => Reply::Error { message },
            },
        }
    }

    /// Resets every bus of adapter `index` (RESET_BUS through the port). Blocking pool only.
    fn reset(&self, index: usize) -> Reply {
        let e = &self.adapters[index];
        let _serial = e.control.lock();
        for path in 0..e.adapter.configuration().number_of_buses {
            let srb = port::queue_request(port::SrbFunction::ResetBus, Address::new(path, 0, 0));
            match e.adapter.execute_and_wait(srb) {
                Ok(done) if done.srb_status.is_success() => {}
                Ok(done) => {
                    return Reply::Error {
                        message: format!(
                            "adapter {}: reset of bus {path} failed with SRB status {}",
                            e.name,
                            done.srb_status.name()
                        ),
                    };
                }
                Err(err) => {
                    return Reply::Error {
                        message: format!("adapter {}: reset of bus {path} failed: {err}", e.name),
                    };
                }
            }
        }
        tracing::info!(adapter = %e.name, "bus reset through the control socket");
        Reply::Done {
            message: format!("adapter {} reset", e.name),
        }
    }

    async fn reset_request(self: &Arc<Self>, name: String) -> Reply {
        let index = match self.adapter_index(&name) {
            Ok(i) => i,
            Err(reply) => return reply,
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.reset(index))
            .await
            .unwrap_or_else(|e| Reply::Error {
                message: format!("adapter reset failed: {e}"),
            })
    }

    fn adapter_index(&self, name: &str) -> Result<usize, Reply> {
        self.adapters
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.adapters.iter().map(|e| e.name.as_str()).collect();
                Reply::Error {
                    message: format!("no adapter named {name:?}; adapters: {}", known.join(", ")),
                }
            })
    }

    /// A WMI operation on adapter `name`, on the blocking pool.
    async fn wmi_request(self: &Arc<Self>, name: String, call: WmiCall) -> Reply {
        let index = match self.adapter_index(&name) {
            Ok(i) => i,
            Err(reply) => return reply,
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let e = &me.adapters[index];
            let a = &e.adapter;
            let result = match call {
                WmiCall::List => crate::wmi::list(a).map(Reply::WmiBlocks),
                WmiCall::Query(g, instance) => {
                    crate::wmi::query(a, &g, instance).map(|(data, statistics)| Reply::WmiData {
                        hex: crate::wmi::to_hex(&data),
                        statistics,
                    })
                }
                WmiCall::Set(g, instance, item, data) => {
                    crate::wmi::set(a, &g, instance, item, &data).map(|()| Reply::Done {
                        message: format!("adapter {}: WMI block set", e.name),
                    })
                }
                WmiCall::Exec(g, instance, method, input) => {
                    crate::wmi::exec(a, &g, instance, method, &input).map(|out| Reply::WmiData {
                        hex: crate::wmi::to_hex(&out),
                        statistics: None,
                    })
                }
            };
            result.unwrap_or_else(|err| Reply::Error {
                message: format!("adapter {}: WMI: {err}", e.name),
            })
        })
        .await
        .unwrap_or_else(|e| Reply::Error {
            message: format!("WMI request failed: {e}"),
        })
    }

    async fn adapter_request(self: &Arc<Self>, name: String, stop: bool) -> Reply {
        let index = match self.adapter_index(&name) {
            Ok(i) => i,
            Err(reply) => return reply,
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.adapter_control(index, stop))
            .await
            .unwrap_or_else(|e| Reply::Error {
                message: format!("adapter control failed: {e}"),
            })
    }
}

/// The bound control socket; removes its file when dropped.
pub struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Creates the socket at `path`, mode 0600. A stale socket file (nobody accepting) is
    /// replaced; a live one, or a file that is not a socket, is an error.
    pub fn bind(path: &Path) -> Result<ControlSocket> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!(
                    "control socket {}: the path exists and is not a socket; remove it or set [control] socket",
                    path.display()
                );
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {}: another scsiport serve is using it; set [control] socket to another path",
                    path.display()
                );
            }
            std::fs::remove_file(path).with_context(|| {
                format!(
                    "control socket {}: cannot remove the stale socket",
                    path.display()
                )
            })?;
        }
        // Owner-only from creation: no window in which another user could connect.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = std::os::unix::net::UnixListener::bind(path);
        rustix::process::umask(old);
        let listener =
            bound.with_context(|| format!("control socket {}: cannot bind", path.display()))?;
        let socket = ControlSocket {
            listener,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("control socket {}: cannot set mode 0600", path.display()))?;
        socket.listener.set_nonblocking(true)?;
        Ok(socket)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Spawns the accept loop on the current tokio runtime. The socket file stays until `self`
    /// is dropped.
    pub fn spawn(&self, state: Arc<ControlState>) -> Result<()> {
        let listener = UnixListener::from_std(self.listener.try_clone()?)?;
        tokio::spawn(accept_loop(listener, state));
        Ok(())
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop(listener: UnixListener, state: Arc<ControlState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    connection(stream, state).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = send(
                        &mut stream,
                        &Reply::Error {
                            message: format!(
                                "too many control connections (at most {MAX_CONNECTIONS})"
                            ),
                        },
                    )
                    .await;
                });
            }
        }
    }
}

async fn send<W: AsyncWriteExt + Unpin>(w: &mut W, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|e| {
        format!("{{\"error\":{{\"message\":\"cannot encode the reply: {e}\"}}}}").into_bytes()
    });
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))
}

/// Serves one client: checks its uid, then answers request lines until EOF, an oversized line,
/// an I/O error or [`IDLE_TIMEOUT`].
async fn connection(stream: UnixStream, state: Arc<ControlState>) {
    let peer = stream.peer_cred();
    let (rd, mut wr) = stream.into_split();
    match peer {
        Ok(c) if c.uid() == state.uid => {}
        Ok(c) => {
            tracing::warn!(
                uid = c.uid(),
                "control socket: connection from another user refused"
            );
            let _ = send(
                &mut wr,
                &Reply::Error {
                    message: format!(
                        "permission denied: uid {} is not the owner of this scsiport (uid {})",
                        c.uid(),
                        state.uid
                    ),
                },
            )
            .await;
            return;
        }
        Err(e) => {
            let _ = send(
                &mut wr,
                &Reply::Error {
                    message: format!("permission denied: cannot identify the peer: {e}"),
                },
            )
            .await;
            return;
        }
    }
    let mut rd = tokio::io::BufReader::new(rd);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut rd)
                .take(MAX_REQUEST as u64)
                .read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() >= MAX_REQUEST {
            let _ = send(
                &mut wr,
                &Reply::Error {
                    message: format!("request longer than {MAX_REQUEST} bytes"),
                },
            )
            .await;
            return;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let reply = match parse_request(text) {
            Ok(request) => state.execute(request).await,
            Err(message) => Reply::Error { message },
        };
        if send(&mut wr, &reply).await.is_err() || !complete {
            return;
        }
    }
}

/// Client side: sends `request` to the server at `socket` and returns its reply.
/// Blocking; bounded by `timeout` for connect, write and read each.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        anyhow!(
            "cannot connect to the control socket {}: {e} (is scsiport serve running as this user? use --socket PATH)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    // A refused peer gets its error line and the server closes at once, possibly before the
    // request is written: the reply is read even when the write fails.
    let sent = stream.write_all(&line);
    let mut reader = BufReader::new(std::io::Read::take(stream, MAX_REPLY as u64));
    let mut reply = Vec::new();
    let read = reader.read_until(b'\n', &mut reply);
    if reply.is_empty() {
        sent.with_context(|| format!("control socket {}: cannot send", socket.display()))?;
        read.with_context(|| format!("control socket {}: no reply", socket.display()))?;
        bail!(
            "control socket {}: the server closed the connection",
            socket.display()
        );
    }
    serde_json::from_slice(reply.trim_ascii())
        .with_context(|| format!("control socket {}: malformed reply", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_have_a_stable_wire_form() {
        let r = Request::AdapterStop { name: "a0".into() };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"cmd":"adapter_stop","name":"a0"}"#);
        assert_eq!(parse_request(text.as_bytes()).unwrap(), r);
        assert_eq!(
            parse_request(br#"{"cmd":"stat"}"#).unwrap(),
            Request::Stat {}
        );
        assert_eq!(
            serde_json::to_string(&Request::Stat {}).unwrap(),
            r#"{"cmd":"stat"}"#
        );
    }

    #[test]
    fn malformed_requests_are_errors() {
        for bad in [
            &b"not json"[..],
            br#"{"cmd":"format_disk"}"#,
            br#"{"cmd":"adapter_stop"}"#,
            br#"{"cmd":"stat","extra":1}"#,
            b"\xff\xfe",
            br#"[1,2,3]"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.starts_with("malformed request: "), "{e}");
        }
    }
}
