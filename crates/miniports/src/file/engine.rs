//! Where the file miniport's reads, writes and flushes go: the kernel's io_uring
//! ([`UringEngine`](super::uring::UringEngine)) or, where io_uring is refused, a small pool of
//! threads doing `pread` / `pwrite` / `fdatasync` ([`ThreadEngine`]).
//!
//! Both engines take the request's data buffer by value ([`IoRequest::buf`]) and give it back
//! with the result ([`IoDone`]): while the kernel (or a pool thread) works on a buffer, nothing
//! else owns it — not the port, not the miniport. Both are driven from the miniport's routines
//! under their channel's mutex (`&mut self`; see [`UringEngine`](super::uring::UringEngine));
//! the completion side is delivered as the channel's interrupt ([`InterruptLine::raise`]: the
//! adapter's line, or the channel's message line) or, for the polled configuration, found by
//! the miniport's timer routine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use device::BlockBackend;
use device::IoOp;
use device::backend::{BackendError, BackendErrorKind, BackendOp, BackendResult, FileBackend};
use parking_lot::{Condvar, Mutex};
use port::InterruptLine;

use super::uring::UringEngine;

/// Which engine an adapter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// io_uring if the kernel lets this process set up a ring, else the thread pool.
    #[default]
    Auto,
    /// io_uring only: `find_adapter` fails if the ring cannot be set up.
    IoUring,
    /// The `pread` / `pwrite` thread pool.
    Threads,
}

/// One backend operation handed to an engine.
pub(crate) struct IoRequest {
    /// The miniport's key for the request (returned in [`IoDone::tag`]).
    pub(crate) tag: usize,
    /// The file the LU lives on: an index into the engine's files (each engine holds its
    /// own references, taken once, so no reference count is touched per request; they keep
    /// the descriptors open while I/O is in the kernel).
    pub(crate) file: usize,
    /// Read, write (FUA or not) or flush.
    pub(crate) op: IoOp,
    /// Byte offset in the file.
    pub(crate) offset: u64,
    /// Bytes to move: a prefix of `buf` (0 for a flush).
    pub(crate) len: usize,
    /// The request's data buffer, owned by the engine until the I/O is done.
    pub(crate) buf: Vec<u8>,
}

/// A finished [`IoRequest`]: the buffer comes back with the result.
pub(crate) struct IoDone {
    pub(crate) tag: usize,
    pub(crate) buf: Vec<u8>,
    pub(crate) result: BackendResult<()>,
}

impl IoRequest {
    /// The device layer's name for the operation (for error sense).
    pub(crate) fn backend_op(&self) -> BackendOp {
        backend_op(self.op)
    }

    /// Finishes without I/O.
    pub(crate) fn done(self, result: BackendResult<()>) -> IoDone {
        IoDone {
            tag: self.tag,
            buf: self.buf,
            result,
        }
    }
}

pub(crate) fn backend_op(op: IoOp) -> BackendOp {
    match op {
        IoOp::Read => BackendOp::Read,
        IoOp::Write { .. } => BackendOp::Write,
        IoOp::Flush => BackendOp::Flush,
    }
}

/// The engine of one adapter.
pub(crate) enum Engine {
    Uring(Box<UringEngine>),
    Threads(ThreadEngine),
}

impl Engine {
    /// Sets up the engine for an adapter with `slots` request slots. `line` is the adapter's
    /// interrupt line (`None` in the polled configuration: completions are only collected).
    pub(crate) fn new(
        kind: EngineKind,
        slots: usize,
        threads: usize,
        line: Option<InterruptLine>,
        files: &[Arc<FileBackend>],
    ) -> std::io::Result<Engine> {
        match kind {
            EngineKind::Threads => Ok(Engine::Threads(ThreadEngine::new(
                threads, slots, line, files,
            )?)),
            EngineKind::IoUring => Ok(Engine::Uring(Box::new(UringEngine::new(
                slots, line, files,
            )?))),
            EngineKind::Auto => match UringEngine::new(slots, line.clone(), files) {
                Ok(u) => Ok(Engine::Uring(Box::new(u))),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring refused; the file miniport uses threads");
                    Ok(Engine::Threads(ThreadEngine::new(
                        threads, slots, line, files,
                    )?))
                }
            },
        }
    }

    /// The engine in use (never `Auto`).
    pub(crate) fn kind(&self) -> EngineKind {
        match self {
            Engine::Uring(_) => EngineKind::IoUring,
            Engine::Threads(_) => EngineKind::Threads,
        }
    }

    /// Starts `req`. `Some` when it finished at once (nothing to transfer, or it could not be
    /// started: the error is in the result); `None` when its [`IoDone`] will come from
    /// [`reap`](Self::reap) or [`wait`](Self::wait).
    pub(crate) fn submit(&mut self, req: IoRequest) -> Option<IoDone> {
        match self {
            Engine::Uring(u) => u.submit(req),
            Engine::Threads(t) => t.submit(req),
        }
    }

    /// Like [`submit`](Self::submit), but io_uring only queues the request until
    /// [`flush`](Self::flush) (the thread pool starts it at once).
    pub(crate) fn queue(&mut self, req: IoRequest) -> Option<IoDone> {
        match self {
            Engine::Uring(u) => u.queue(req),
            Engine::Threads(t) => t.submit(req),
        }
    }

    /// Hands every queued request to the kernel (one `io_uring_enter`).
    pub(crate) fn flush(&mut self) {
        if let Engine::Uring(u) = self {
            u.flush();
        }
    }

    /// Appends every finished request to `out` without blocking; returns how many.
    pub(crate) fn reap(&mut self, out: &mut Vec<IoDone>) -> usize {
        match self {
            Engine::Uring(u) => u.reap(out),
            Engine::Threads(t) => t.reap(out),
        }
    }

    /// Like [`reap`](Self::reap), but waits up to `timeout` for at least one request to finish
    /// when none has yet (and some are in flight).
    pub(crate) fn wait(&mut self, out: &mut Vec<IoDone>, timeout: Duration) -> usize {
        match self {
            Engine::Uring(u) => u.wait(out, timeout),
            Engine::Threads(t) => t.wait(out, timeout),
        }
    }

    /// Masks the engine's interrupt while a miniport routine runs (io_uring; the thread pool
    /// always interrupts).
    pub(crate) fn mask_irq(&mut self) {
        if let Engine::Uring(u) = self {
            u.mask_irq();
        }
    }

    /// Unmasks it; true when completions are waiting to be reaped by the routine.
    pub(crate) fn unmask_irq(&mut self) -> bool {
        match self {
            Engine::Uring(u) => u.unmask_irq(),
            Engine::Threads(_) => false,
        }
    }

    /// True when the io_uring has completions waiting to be reaped (the thread pool raises
    /// the interrupt itself: always false).
    pub(crate) fn completions_waiting(&mut self) -> bool {
        match self {
            Engine::Uring(u) => u.completions_waiting(),
            Engine::Threads(_) => false,
        }
    }

    /// Requests started and not yet reaped.
    pub(crate) fn in_flight(&self) -> usize {
        match self {
            Engine::Uring(u) => u.in_flight(),
            Engine::Threads(t) => t.in_flight(),
        }
    }

    /// Test hook: hold the thread pool's jobs until `gate` opens.
    #[cfg(test)]
    pub(crate) fn set_gate(&mut self, gate: Arc<Gate>) {
        match self {
            Engine::Threads(t) => *t.done.gate.lock() = Some(gate),
            Engine::Uring(_) => panic!("only the thread pool can be gated"),
        }
    }
}

/// Completions the pool threads hand back.
struct DoneQueue {
    list: Mutex<Vec<IoDone>>,
    cv: Condvar,
    /// Raised after each completion (`None`: polled configuration).
    line: Option<InterruptLine>,
    /// Test hook: the workers hold every job until the gate opens.
    #[cfg(test)]
    gate: Mutex<Option<Arc<Gate>>>,
}

/// Test hook holding the pool's jobs "in the kernel" until opened.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

#[cfg(test)]
impl Gate {
    pub(crate) fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }

    fn pass(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.cv.wait(&mut open);
        }
    }
}

/// A pool of threads doing positioned I/O with the backend's own synchronous calls
/// (`pread`, `pwrite` / `pwritev2(RWF_DSYNC)`, `fdatasync`); each completion is pushed on a
/// list and raises the adapter's interrupt.
pub(crate) struct ThreadEngine {
    jobs: Sender<IoRequest>,
    done: Arc<DoneQueue>,
    in_flight: usize,
}

impl ThreadEngine {
    pub(crate) fn new(
        threads: usize,
        slots: usize,
        line: Option<InterruptLine>,
        files: &[Arc<FileBackend>],
    ) -> std::io::Result<Self> {
        let files: Arc<[Arc<FileBackend>]> = files.into();
        // At most `slots` requests are in flight, so neither the channel nor the list ever
        // has to grow (no allocation per request).
        let (tx, rx) = crossbeam_channel::bounded::<IoRequest>(slots.max(1));
        let done = Arc::new(DoneQueue {
            list: Mutex::new(Vec::with_capacity(slots)),
            cv: Condvar::new(),
            line,
            #[cfg(test)]
            gate: Mutex::new(None),
        });
        for i in 0..threads.clamp(1, 64) {
            let rx = rx.clone();
            let done = done.clone();
            let files = files.clone();
            // Detached: a worker ends when the engine (the only sender) is dropped. Joining
            // is not needed for safety (each job owns its buffer) and could deadlock when the
            // adapter is dropped on a worker thread (the last handle released in a sink).
            std::thread::Builder::new()
                .name(format!("file-io-{i}"))
                .spawn(move || worker(rx, done, files))?;
        }
        Ok(Self {
            jobs: tx,
            done,
            in_flight: 0,
        })
    }

    fn submit(&mut self, req: IoRequest) -> Option<IoDone> {
        match self.jobs.try_send(req) {
            Ok(()) => {
                self.in_flight += 1;
                None
            }
            Err(e) => {
                let req = e.into_inner();
                let op = req.backend_op();
                Some(req.done(Err(BackendError::new(BackendErrorKind::Other, op))))
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<IoDone>) -> usize {
        let mut list = self.done.list.lock();
        let n = list.len();
        out.append(&mut list);
        self.in_flight -= n;
        n
    }

    fn wait(&mut self, out: &mut Vec<IoDone>, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut list = self.done.list.lock();
        while list.is_empty() && self.in_flight > 0 {
            if self.done.cv.wait_until(&mut list, deadline).timed_out() {
                break;
            }
        }
        let n = list.len();
        out.append(&mut list);
        self.in_flight -= n;
        n
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn worker(jobs: Receiver<IoRequest>, done: Arc<DoneQueue>, files: Arc<[Arc<FileBackend>]>) {
    for mut req in jobs {
        #[cfg(test)]
        {
            let gate = done.gate.lock().clone();
            if let Some(gate) = gate {
                gate.pass();
            }
        }
        let op = req.backend_op();
        let short = || BackendError::new(BackendErrorKind::OutOfRange, op);
        let Some(file) = files.get(req.file) else {
            done.list.lock().push(req.done(Err(short())));
            continue;
        };
        let result = match req.op {
            IoOp::Read => match req.buf.get_mut(..req.len) {
                Some(buf) => file.read_at(req.offset, buf),
                None => Err(short()),
            },
            IoOp::Write { fua } => match req.buf.get(..req.len) {
                Some(buf) => file.write_at(req.offset, buf, fua),
                None => Err(short()),
            },
            IoOp::Flush => file.flush(),
        };
        done.list.lock().push(req.done(result));
        done.cv.notify_all();
        if let Some(line) = &done.line {
            line.raise();
        }
    }
}
