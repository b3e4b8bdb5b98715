//! The tokio network edge: listeners, one task per connection, bounded
//! buffers, large socket reads, and all queued PDUs written with one socket
//! write.
//!
//! Threads: the listeners run on the caller's runtime. Each accepted
//! connection is handed to one of the network threads (one per CPU, each a
//! current-thread tokio runtime), the one with the fewest connections, and
//! stays there: its state stays in one core's cache, and waking it never
//! involves another thread. There is no busy polling: an idle network thread
//! sleeps in `epoll_wait`.
//!
//! Everything protocol-related happens in [`crate::conn::Connection`]; this
//! module only moves bytes, runs timers and executes actions.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::config::ServerConfig;
use crate::conn::{Action, Connection};
use crate::registry::Shared;
use crate::service::{ScsiService, TmfResponse};

/// A bound iSCSI server. Create with [`Server::bind`], then `run().await`.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

/// Stops a running server: new logins are refused, sessions are closed,
/// and `run` returns once connections are gone (or after a grace period).
#[derive(Clone)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.tx.send(true);
    }
}

impl Server {
    /// Validates `config` and binds every portal. Nothing is served until `run`.
    pub async fn bind(
        portals: &[SocketAddr],
        config: ServerConfig,
        service: Arc<dyn ScsiService>,
    ) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut listeners = Vec::new();
        for p in portals {
            listeners.push(TcpListener::bind(p).await?);
        }
        let (tx, _) = watch::channel(false);
        Ok(Server {
            shared: Shared::new(config, service),
            listeners,
            shutdown_tx: Arc::new(tx),
        })
    }

    /// Addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.shutdown_tx.clone(),
        }
    }

    /// Shared state (session table, counters) for diagnostics and tests.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Accepts connections until shut down.
    pub async fn run(self) -> io::Result<()> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let net = Arc::new(NetThreads::start(threads, &self.shared));
        let mut accepts = tokio::task::JoinSet::new();
        for l in self.listeners {
            let shared = self.shared.clone();
            accepts.spawn(accept_loop(l, shared, net.clone()));
        }
        let mut rx = self.shutdown_tx.subscribe();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        // New logins are refused; logged-in initiators are asked to log
        // out (see `drive`) and get `logout_grace` to do so.
        self.shared.begin_shutdown();
        accepts.shutdown().await;
        let grace = self.shared.config.timeouts.logout_grace;
        let deadline = Instant::now() + grace + Duration::from_secs(1);
        while self.shared.connections.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.kill_all_sessions();
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.shared.connections.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(net) = Arc::into_inner(net) {
            net.stop(self.shared.connections.load(Ordering::Acquire) == 0);
        }
        Ok(())
    }
}

/// The network threads connections are handed to.
struct NetThreads {
    threads: Vec<NetThread>,
}

struct NetThread {
    tx: mpsc::UnboundedSender<TcpHandoff>,
    /// Connections this thread runs.
    load: Arc<AtomicUsize>,
    join: std::thread::JoinHandle<()>,
}

/// An accepted connection on its way to a network thread.
struct TcpHandoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
}

impl NetThreads {
    /// Starts `n` network threads. A thread that cannot be started is left
    /// out; with none, connections run on the caller's runtime.
    fn start(n: usize, shared: &Arc<Shared>) -> NetThreads {
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let load = Arc::new(AtomicUsize::new(0));
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create a network thread runtime");
                    break;
                }
            };
            let (shared, load2) = (shared.clone(), load.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("iscsi-net-{i}"))
                .spawn(move || runtime.block_on(net_thread(rx, shared, load2)));
            match spawned {
                Ok(join) => threads.push(NetThread { tx, load, join }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a network thread");
                    break;
                }
            }
        }
        NetThreads { threads }
    }

    /// Hands an accepted connection to the least loaded thread. `Err(Some)`:
    /// no thread took it, run it here; `Err(None)`: it was lost (logged).
    fn hand_off(&self, stream: TcpStream, peer: SocketAddr) -> Result<(), Option<TcpStream>> {
        let Some(t) = self
            .threads
            .iter()
            .min_by_key(|t| t.load.load(Ordering::Relaxed))
        else {
            return Err(Some(stream));
        };
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot detach the connection");
                return Err(None);
            }
        };
        t.load.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(h)) = t.tx.send(TcpHandoff { stream, peer }) {
            t.load.fetch_sub(1, Ordering::Relaxed);
            return Err(TcpStream::from_std(h.stream).ok());
        }
        Ok(())
    }

    /// Closes the hand-off channels; joins the threads if `join` (their
    /// connections are gone), else lets them finish on their own.
    fn stop(self, join: bool) {
        for t in self.threads {
            drop(t.tx);
            if join {
                let _ = t.join.join();
            }
        }
    }
}

/// A network thread's loop: runs the connections handed to it until the
/// hand-off channel closes and they have all ended.
async fn net_thread(
    mut rx: mpsc::UnboundedReceiver<TcpHandoff>,
    shared: Arc<Shared>,
    load: Arc<AtomicUsize>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            h = rx.recv() => {
                let Some(TcpHandoff { stream, peer }) = h else { break };
                match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        let (shared, load) = (shared.clone(), load.clone());
                        conns.spawn(async move {
                            serve_connection(shared, stream, peer).await;
                            load.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot register the connection");
                        shared.connections.fetch_sub(1, Ordering::AcqRel);
                        load.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Runs one connection to its end and releases its place in the count.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = run_connection(shared.clone(), stream).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    shared.connections.fetch_sub(1, Ordering::AcqRel);
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, net: Arc<NetThreads>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.connections.load(Ordering::Acquire) >= shared.config.max_connections {
            tracing::warn!(%peer, "connection limit reached: closing");
            drop(stream);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::AcqRel);
        match net.hand_off(stream, peer) {
            Ok(()) => {}
            // No network thread: run it here.
            Err(Some(stream)) => {
                tokio::spawn(serve_connection(shared.clone(), stream, peer));
            }
            Err(None) => {
                shared.connections.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Drives one connection. Runs as its own tokio task on its network thread.
async fn run_connection(shared: Arc<Shared>, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr().ok();
    let control = shared.new_conn_control();
    let mut conn = Connection::new(shared.clone(), control.clone(), local);
    let result = drive(&shared, &stream, &mut conn).await;
    conn.closed();
    shared.conn_closed(control.id);
    result
}

/// The connection loop. Each turn first does all the work there is without
/// waiting — submit what the connection asks for (with the completion queue
/// in inline mode, so a service that completes inside `submit` costs no
/// wake-up), turn completions into PDUs, write them, feed buffered input —
/// and only then waits for the socket, a completion from another thread, a
/// kill, shutdown or the timer. A READ that the service completes in
/// `submit` thus goes from socket read to socket write in one turn, on one
/// thread, with one `recv` and one `send`.
async fn drive(shared: &Arc<Shared>, stream: &TcpStream, conn: &mut Connection) -> io::Result<()> {
    let timeouts = shared.config.timeouts.clone();
    let queue = conn.completion_queue().clone();
    let control = conn.control().clone();
    let mut inbuf = BytesMut::new();
    let login_deadline = Instant::now() + timeouts.login;
    let mut last_rx = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    // The idle deadline is not moved on every read (re-arming a timer costs a
    // trip through the timer wheel): when it fires, the time since the last
    // read decides whether to ping or to re-arm.
    let mut idle_deadline = last_rx + timeouts.nop_in_interval;
    let timer = sleep_until(login_deadline);
    tokio::pin!(timer);
    let mut armed = login_deadline;
    let mut actions = Vec::new();
    let mut drain_deadline: Option<Instant> = None;
    loop {
        // Everything that can be done without waiting.
        loop {
            actions.extend(conn.take_actions());
            let ran = !actions.is_empty();
            if ran {
                queue.begin_inline();
            }
            for action in actions.drain(..) {
                match action {
                    Action::Submit(task) => shared.service.submit(task),
                    Action::TaskManagement { itt, request } => {
                        queue.end_inline();
                        let svc = shared.service.clone();
                        let req = request.clone();
                        let resp = tokio::task::spawn_blocking(move || svc.task_management(&req))
                            .await
                            .unwrap_or(TmfResponse::Rejected);
                        conn.task_management_done(itt, &request, resp);
                        queue.begin_inline();
                    }
                }
            }
            if ran {
                queue.end_inline();
                conn.process_completions();
            }
            if !conn.out.is_empty() && !write_now(stream, conn)? {
                break;
            }
            if !inbuf.is_empty() && conn.wants_input() {
                let before = inbuf.len();
                conn.receive(&mut inbuf);
                if inbuf.len() != before {
                    continue;
                }
            }
            if !ran {
                break;
            }
        }
        let shutting_down = shared.shutting_down.load(Ordering::Acquire);
        if control.is_killed() || shutting_down && !conn.is_logged_in() {
            return Ok(());
        }
        if shutting_down && drain_deadline.is_none() {
            conn.request_logout(timeouts.logout_grace);
            drain_deadline = Some(Instant::now() + timeouts.logout_grace);
            continue;
        }
        if conn.close_reason().is_some() && conn.out.is_empty() {
            return Ok(());
        }
        let deadline = if !conn.is_logged_in() {
            login_deadline
        } else if let Some(d) = drain_deadline {
            d
        } else if let Some(p) = ping_sent {
            p + timeouts.nop_in_timeout
        } else {
            idle_deadline
        };
        if deadline != armed {
            timer.as_mut().reset(deadline);
            armed = deadline;
        }
        tokio::select! {
            biased;
            // Completions from other threads, kills and shutdown.
            _ = queue.notified() => {
                if control.is_killed() {
                    return Ok(());
                }
                conn.process_completions();
            }
            r = stream.readable(), if conn.wants_input() => {
                r?;
                match read_now(stream, &mut inbuf, conn)? {
                    Read::Eof => return Ok(()),
                    Read::Data => {
                        last_rx = Instant::now();
                        if ping_sent.take().is_some() {
                            idle_deadline = last_rx + timeouts.nop_in_interval;
                        }
                    }
                    Read::WouldBlock => {}
                }
            }
            r = stream.writable(), if !conn.out.is_empty() => {
                r?;
                write_now(stream, conn)?;
            }
            _ = &mut timer => {
                // Disarmed until the next deadline is computed.
                armed = Instant::now() + Duration::from_secs(365 * 24 * 3600);
                timer.as_mut().reset(armed);
                if !conn.is_logged_in() {
                    tracing::debug!("login timeout");
                    return Ok(());
                }
                if drain_deadline.is_some() {
                    tracing::info!("initiator did not log out before shutdown: closing");
                    return Ok(());
                }
                if ping_sent.is_some() {
                    tracing::info!("initiator did not answer the NOP-In ping: dropping the connection");
                    return Ok(());
                }
                let idle_until = last_rx + timeouts.nop_in_interval;
                if idle_until > Instant::now() {
                    idle_deadline = idle_until;
                } else {
                    conn.send_ping();
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }
}

/// What one socket read brought.
enum Read {
    /// The initiator closed the connection.
    Eof,
    /// Bytes were read and handed to the connection.
    Data,
    /// Nothing to read.
    WouldBlock,
}

/// Reads what the socket has (up to the connection's read size) and feeds it
/// to the connection.
fn read_now(stream: &TcpStream, inbuf: &mut BytesMut, conn: &mut Connection) -> io::Result<Read> {
    inbuf.reserve(conn.read_chunk());
    let room = inbuf.capacity() - inbuf.len();
    match stream.try_read_buf(inbuf) {
        Ok(0) => Ok(Read::Eof),
        Ok(n) => {
            if n < room {
                // A short read drained the socket (epoll is edge-triggered; tokio's own
                // `poll_read` does the same): forget the readiness now instead of learning
                // it from a `recv` that fails with EAGAIN.
                let _ = stream.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            conn.receive(inbuf);
            Ok(Read::Data)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Read::WouldBlock),
        Err(e) => Err(e),
    }
}

/// Writes as much of `conn.out` as the socket takes now. Returns whether all
/// of it was written (false: wait for `writable`).
fn write_now(stream: &TcpStream, conn: &mut Connection) -> io::Result<bool> {
    match stream.try_write(&conn.out) {
        Ok(n) => {
            conn.out.advance(n);
            if conn.has_backlog() {
                conn.process_completions();
            }
            Ok(conn.out.is_empty())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
