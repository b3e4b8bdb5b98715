//! The tokio network edge: listeners, one task per connection, bounded
//! buffers, large socket reads, and all queued PDUs written with one socket
//! write.
//!
//! Threads: the listeners run on the caller's runtime. Each accepted
//! connection is handed to one of the network threads (one per CPU, each a
//! current-thread tokio runtime), the one with the fewest connections, and
//! stays there: its state stays in one core's cache, and waking it never
//! involves another thread. An idle network thread sleeps in `epoll_wait`;
//! the one exception is adaptive polling ([`Poll`]): a connection alone on
//! its thread whose initiator waits for each response polls its socket for
//! up to `ServerConfig::poll_before_sleep` (50 µs by default) before it
//! sleeps, which saves the cross-CPU wake-up per command of queue depth 1.
//!
//! Everything protocol-related happens in [`crate::conn::Connection`]; this
//! module only moves bytes, runs timers and executes actions.

use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::config::ServerConfig;
use crate::conn::{Action, Connection};
use crate::out::MAX_IO_SLICES;
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
                            serve_connection(shared, stream, peer, Some(load.clone())).await;
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
/// `thread_load`: the connection count of the network thread it runs on
/// (`None`: it runs on the listeners' runtime, and never polls).
async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    thread_load: Option<Arc<AtomicUsize>>,
) {
    if let Err(e) = run_connection(shared.clone(), stream, thread_load).await {
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
                tokio::spawn(serve_connection(shared.clone(), stream, peer, None));
            }
            Err(None) => {
                shared.connections.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Drives one connection. Runs as its own tokio task on its network thread.
async fn run_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    thread_load: Option<Arc<AtomicUsize>>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr().ok();
    let control = shared.new_conn_control();
    let mut conn = Connection::new(shared.clone(), control.clone(), local);
    let mut poll = Poll::new(shared.config.poll_before_sleep, thread_load);
    let result = drive(&shared, &stream, &mut conn, &mut poll).await;
    tracing::debug!(
        poll_hits = poll.hits,
        poll_timeouts = poll.timeouts,
        "connection closed"
    );
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
async fn drive(
    shared: &Arc<Shared>,
    stream: &TcpStream,
    conn: &mut Connection,
    poll: &mut Poll,
) -> io::Result<()> {
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
    // The commands of one turn, submitted together (`ScsiService::submit_burst`).
    let mut burst = Vec::new();
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
                    Action::Submit(task) => {
                        poll.commands_this_turn += 1;
                        burst.push(task);
                    }
                    Action::TaskManagement { itt, request } => {
                        // Commands before the TMF start before it runs.
                        shared.service.submit_burst(&mut burst);
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
                shared.service.submit_burst(&mut burst);
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
        if poll.should_poll(conn, &inbuf) {
            let read = poll.poll_socket(stream, &mut inbuf)?;
            let counter = match read {
                Read::WouldBlock => &shared.poll_timeouts,
                _ => &shared.poll_hits,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            match read {
                Read::Eof => return Ok(()),
                Read::Data => {
                    last_rx = Instant::now();
                    if ping_sent.take().is_some() {
                        idle_deadline = last_rx + timeouts.nop_in_interval;
                    }
                    conn.receive(&mut inbuf);
                    continue;
                }
                Read::WouldBlock => {}
            }
        }
        poll.going_to_sleep();
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
                        poll.woke_for_data();
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

/// Bytes a poll reads from the socket at once (more is read in further calls).
const POLL_READ_BYTES: usize = 64 * 1024;

/// Commands a turn may have submitted for the connection to poll afterwards:
/// more than this means the initiator keeps several commands in flight, and
/// its next ones are better waited for in `epoll_wait` (in batches) than
/// polled for one by one.
const POLL_MAX_COMMANDS_PER_TURN: u32 = 1;

/// Longest back-off of [`Poll`], in idle periods slept through.
const POLL_MAX_BACKOFF: u32 = 4096;

/// Adaptive polling of one connection's socket before its network thread
/// sleeps.
///
/// A connection that has nothing in flight waits for its initiator. When the
/// initiator sends its next command within a few tens of microseconds of our
/// last response (a queue depth 1 loop: a database log writer, a
/// synchronous file system), sleeping in `epoll_wait` costs more than the
/// wait itself: being woken is a cross-CPU wake-up, which on a virtual
/// machine means an IPI to a halted vCPU. Such a connection instead reads
/// its socket (non-blocking `recv`) for up to
/// [`ServerConfig::poll_before_sleep`](crate::config::ServerConfig) before it
/// sleeps.
///
/// It polls only when all of these hold, so that an idle or busy target
/// never burns a core: the connection is alone on its network thread (no
/// other connection waits while it polls); it has no commands in flight and
/// nothing to send; the last turn submitted at most
/// [`POLL_MAX_COMMANDS_PER_TURN`] commands; and the initiator answered within
/// the window the last time. A poll that times out turns polling off until
/// the initiator is again seen answering within the window, and backs off:
/// the connection then sleeps through the next 1, 2, 4, ... up to
/// [`POLL_MAX_BACKOFF`] idle periods before it polls again (each poll that
/// finds data halves the back-off). An initiator that pipelines in bursts
/// with pauses in between (a queue depth 32 load on a busy machine can look
/// like queue depth 1 from here) thus costs a few polls per second, not a
/// core.
///
/// Runs on the connection's network thread; no locks.
struct Poll {
    window: Duration,
    thread_load: Option<Arc<AtomicUsize>>,
    /// The initiator's last command came within `window` of our going idle.
    quick: bool,
    /// When the connection last went idle (started polling or sleeping).
    idle_since: Option<std::time::Instant>,
    /// Commands submitted since the connection last went idle.
    commands_this_turn: u32,
    /// Idle periods still to sleep through before the next poll.
    skip: u32,
    /// What `skip` becomes at the next poll that times out.
    backoff: u32,
    /// Read buffer of the polls (allocated on the first one).
    scratch: Vec<u8>,
    /// Polls of this connection that found data / that timed out.
    hits: u64,
    timeouts: u64,
}

impl Poll {
    fn new(window: Duration, thread_load: Option<Arc<AtomicUsize>>) -> Poll {
        Poll {
            window,
            thread_load,
            quick: false,
            idle_since: None,
            commands_this_turn: 0,
            skip: 0,
            backoff: 1,
            scratch: Vec::new(),
            hits: 0,
            timeouts: 0,
        }
    }

    /// Whether to poll the socket now, before sleeping.
    fn should_poll(&mut self, conn: &Connection, inbuf: &BytesMut) -> bool {
        let eligible = self.quick
            && !self.window.is_zero()
            && self.commands_this_turn <= POLL_MAX_COMMANDS_PER_TURN
            && self
                .thread_load
                .as_ref()
                .is_some_and(|l| l.load(Ordering::Relaxed) == 1)
            && conn.is_logged_in()
            && conn.wants_input()
            && conn.out.is_empty()
            && conn.outstanding_tasks() == 0
            && conn.initiator_caught_up()
            && conn.close_reason().is_none()
            && inbuf.len() < POLL_READ_BYTES;
        if eligible && self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        eligible
    }

    /// Reads the socket until data arrives or the window ends. `Data`: the
    /// bytes were appended to `inbuf` (the socket was read until it had no
    /// more: epoll is edge-triggered, so nothing may stay behind unseen).
    fn poll_socket(&mut self, stream: &TcpStream, inbuf: &mut BytesMut) -> io::Result<Read> {
        let start = std::time::Instant::now();
        self.commands_this_turn = 0;
        let read = self.poll_until(start, stream, inbuf)?;
        if matches!(read, Read::WouldBlock) {
            self.timeouts += 1;
            self.skip = self.backoff;
            self.backoff = (self.backoff * 2).min(POLL_MAX_BACKOFF);
        } else {
            self.hits += 1;
            self.backoff = (self.backoff / 2).max(1);
        }
        // A poll that found data starts a new turn; one that ended idle
        // counts its time as part of the wait.
        self.idle_since = matches!(read, Read::WouldBlock).then_some(start);
        Ok(read)
    }

    fn poll_until(
        &mut self,
        start: std::time::Instant,
        stream: &TcpStream,
        inbuf: &mut BytesMut,
    ) -> io::Result<Read> {
        if self.scratch.is_empty() {
            self.scratch = vec![0; POLL_READ_BYTES];
        }
        let sock = socket2::SockRef::from(stream);
        let mut got = false;
        loop {
            match (&*sock).read(&mut self.scratch) {
                Ok(0) if got => return Ok(Read::Data),
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => {
                    inbuf.extend_from_slice(&self.scratch[..n]);
                    got = true;
                    if n < self.scratch.len() {
                        return Ok(Read::Data);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got {
                        return Ok(Read::Data);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= self.window {
                self.quick = false;
                return Ok(Read::WouldBlock);
            }
            std::hint::spin_loop();
        }
    }

    /// The connection is about to sleep in `epoll_wait`.
    fn going_to_sleep(&mut self) {
        if self.idle_since.is_none() {
            self.idle_since = Some(std::time::Instant::now());
        }
        self.commands_this_turn = 0;
    }

    /// The socket woke the connection with data.
    fn woke_for_data(&mut self) {
        if let Some(since) = self.idle_since.take() {
            self.quick = since.elapsed() <= self.window;
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

/// Writes as much of `conn.out` as the socket takes now, with one `writev`
/// (the encoded bytes and the spliced Data-In buffers). Returns whether all of
/// it was written (false: wait for `writable`).
fn write_now(stream: &TcpStream, conn: &mut Connection) -> io::Result<bool> {
    let mut slices = [io::IoSlice::new(&[]); MAX_IO_SLICES];
    let k = conn.out.io_slices(&mut slices);
    match stream.try_write_vectored(&slices[..k]) {
        Ok(n) => {
            conn.out.advance(n);
            conn.reclaim_written();
            if conn.has_backlog() {
                conn.process_completions();
            }
            Ok(conn.out.is_empty())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
