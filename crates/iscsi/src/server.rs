//! The tokio network edge: listeners, one task per connection (spread over
//! the runtime's worker threads by tokio's scheduler), bounded buffers,
//! large socket reads, and all queued PDUs written with one socket write.
//!
//! Everything protocol-related happens in [`crate::conn::Connection`]; this
//! module only moves bytes, runs timers and executes actions.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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
        let mut accepts = tokio::task::JoinSet::new();
        for l in self.listeners {
            let shared = self.shared.clone();
            let rx = self.shutdown_tx.subscribe();
            accepts.spawn(accept_loop(l, shared, rx));
        }
        let mut rx = self.shutdown_tx.subscribe();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        // New logins are refused; logged-in initiators were asked to log
        // out (see `drive`) and get `logout_grace` to do so.
        self.shared.shutting_down.store(true, Ordering::Release);
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
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
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
        let shared2 = shared.clone();
        let rx = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = run_connection(shared2.clone(), stream, rx).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            shared2.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Drives one connection. Runs as its own tokio task on any worker thread.
async fn run_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr().ok();
    let control = shared.new_conn_control();
    let mut conn = Connection::new(shared.clone(), control.clone(), local);
    let result = drive(&shared, &stream, &mut conn, &mut shutdown).await;
    conn.closed();
    result
}

async fn drive(
    shared: &Arc<Shared>,
    stream: &TcpStream,
    conn: &mut Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    let timeouts = shared.config.timeouts.clone();
    let queue = conn.completion_queue().clone();
    let control = conn.control().clone();
    let mut inbuf = BytesMut::new();
    let login_deadline = Instant::now() + timeouts.login;
    let mut last_rx = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut actions = Vec::new();
    let mut shutdown_open = true;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        loop {
            actions.extend(conn.take_actions());
            if actions.is_empty() {
                break;
            }
            for action in actions.drain(..) {
                match action {
                    Action::Submit(task) => shared.service.submit(task),
                    Action::TaskManagement { itt, request } => {
                        let svc = shared.service.clone();
                        let req = request.clone();
                        let resp = tokio::task::spawn_blocking(move || svc.task_management(&req))
                            .await
                            .unwrap_or(TmfResponse::Rejected);
                        conn.task_management_done(itt, &request, resp);
                    }
                }
            }
        }
        if control.is_killed() || *shutdown.borrow() && !conn.is_logged_in() {
            return Ok(());
        }
        if *shutdown.borrow() && drain_deadline.is_none() {
            conn.request_logout(timeouts.logout_grace);
            drain_deadline = Some(Instant::now() + timeouts.logout_grace);
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
            last_rx + timeouts.nop_in_interval
        };
        tokio::select! {
            r = stream.readable(), if conn.wants_input() => {
                r?;
                inbuf.reserve(conn.read_chunk());
                match stream.try_read_buf(&mut inbuf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {
                        last_rx = Instant::now();
                        ping_sent = None;
                        conn.receive(&mut inbuf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            r = stream.writable(), if !conn.out.is_empty() => {
                r?;
                match stream.try_write(&conn.out) {
                    Ok(n) => conn.out.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if conn.has_backlog() {
                    conn.process_completions();
                }
                if !inbuf.is_empty() && conn.wants_input() {
                    conn.receive(&mut inbuf);
                }
            }
            _ = queue.notified() => conn.process_completions(),
            _ = control.killed() => return Ok(()),
            r = shutdown.changed(), if shutdown_open => {
                if r.is_err() {
                    shutdown_open = false;
                }
            }
            _ = sleep_until(deadline) => {
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
                conn.send_ping();
                ping_sent = Some(Instant::now());
            }
        }
    }
}
