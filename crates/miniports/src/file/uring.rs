//! The io_uring engine of the file miniport.
//!
//! In the interrupt configuration requests are pushed on the ring's submission queue in the
//! miniport's `start_io` and submitted together, one `io_uring_enter` per dispatch pass, from
//! `start_io_batch_done` (both under the interrupt lock); the polled configuration submits in
//! `start_io`. The ring has an eventfd registered; a small thread (`file-uring-irq`) blocks on
//! it and raises the adapter's interrupt line for every batch of completions, and the
//! miniport's `interrupt` routine reaps the completion queue ([`UringEngine::reap`]). A thread
//! waiting for its own completions may instead wait on the ring itself and take the interrupt
//! ([`UringWait`], registered as the line's `InterruptWait`). In the polled configuration there
//! is no eventfd and no thread: the timer routine reaps the (memory-mapped) completion queue.
//!
//! **Interrupt masking.** While a miniport routine runs (interrupt lock held) the engine masks
//! its interrupt ([`UringEngine::mask_irq`]: `IORING_CQ_EVENTFD_DISABLED`, a flag in the
//! shared CQ ring, no system call) and reaps what is ready itself; when the routine ends it
//! unmasks and looks at the completion queue once more ([`UringEngine::unmask_irq`]): anything
//! that arrived meanwhile is reaped by the routine, and anything later signals the eventfd.
//! So while a thread keeps the adapter busy — a submitter whose `start_io` calls enter the
//! kernel, which posts the completions of its earlier requests on the way out — completions
//! are handled on that thread without waking the interrupt thread, as fio reaps on its own
//! thread. (No completion is lost: the kernel stores the CQ tail, then has a full barrier —
//! `io_cqring_wake`'s `wq_has_sleeper` — before it reads the flag; unmasking is a locked
//! read-modify-write before we read the tail. As a second safety net the interrupt thread
//! wakes every 50 ms while requests are in flight and raises the line if completions sit in
//! the queue with nobody polling.)
//!
//! **Poller lease.** A thread that waits on the ring itself ([`UringWait`]) keeps the
//! interrupt masked not only while it waits but for [`LEASE`] after: the time it takes to
//! handle what it reaped and send the next requests before it waits again. So a thread that
//! keeps the adapter busy gets every completion on its own thread, as fio does, and the
//! interrupt thread neither wakes for them nor submits requests from a second thread (whose
//! own kernel worker would then compete for the CPUs). While a lease is held the interrupt
//! thread looks every [`LEASE_CHECK`]; when it finds the lease ended — the thread stopped
//! waiting — it unmasks and raises the line for whatever is waiting, so completions of a
//! thread that walked away are late by at most `LEASE + LEASE_CHECK`, never lost. A thread
//! that comes to wait while nothing is on the ring (its requests are still with the port, or
//! another thread is delivering them) gives the lease back at once: it sleeps on its sink,
//! and the interrupt thread takes what is started meanwhile.
//!
//! The ring is set up with `IORING_SETUP_COOP_TASKRUN` where the kernel has it: completions of
//! requests the kernel punted to its workers are posted when the submitting thread next enters
//! the kernel instead of interrupting it with an IPI.
//!
//! Requests belong to the thread that submitted them: when it exits, the kernel cancels those
//! not yet started (ECANCELED). `start_io` runs on whichever thread runs the port's deferred
//! stage, so such requests are simply submitted again (from the thread reaping them).
//!
//! Short transfers are continued, `EINTR` / `EAGAIN` retried, and a FUA write uses
//! `RWF_DSYNC`; where the kernel or file system refuses that flag, the write is redone without
//! it and followed by an `IORING_OP_FSYNC` with `DATASYNC`, as the synchronous backend does.
//!
//! This is the only module of the crate with `unsafe`: handing buffer addresses to the kernel.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use device::IoOp;
use device::backend::{BackendError, BackendErrorKind, FileBackend};
use io_uring::{IoUring, opcode, squeue, types};
use port::{InterruptLine, InterruptWait};
use rustix::io::{Errno, ReadWriteFlags};
use slab::Slab;

use super::engine::{IoDone, IoRequest, backend_op};

/// Largest piece of one request handed to the kernel in a single SQE (the SQE length is 32
/// bits); longer transfers continue like short ones.
const MAX_CHUNK: usize = 1 << 30;

/// Resubmissions of a request the kernel gave back unstarted before it fails.
const MAX_RETRIES: u32 = 64;

/// How long dropping the engine waits for requests still in the kernel before it leaks their
/// buffers (never frees memory the kernel may still write).
const DROP_WAIT: Duration = Duration::from_secs(10);

/// `io_uring_enter` flags (linux/io_uring.h).
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;

/// How long the interrupt thread waits on the eventfd before it raises the line anyway when
/// requests are in flight (a safety net; see the module documentation).
const IRQ_SAFETY_NET: Duration = Duration::from_millis(50);

/// How long a thread that waited on the ring keeps the interrupt masked after its wait (see
/// the module documentation): longer than it takes to handle a batch of completions and send
/// their replacements.
pub(crate) const LEASE: Duration = Duration::from_millis(2);

/// How often the interrupt thread looks whether a lease has ended.
const LEASE_CHECK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Moving bytes: `pread` / `pwrite`, with `RWF_DSYNC` when `dsync`.
    Transfer { dsync: bool },
    /// `fdatasync` (SYNCHRONIZE CACHE, or the second half of a FUA write without RWF_DSYNC).
    Sync,
}

/// A request in the kernel's hands.
struct Op {
    tag: usize,
    /// The file: an index into [`UringEngine::files`] (which keeps the descriptor named in
    /// the SQE open).
    file: usize,
    op: IoOp,
    offset: u64,
    len: usize,
    /// The data buffer. Not touched (not even moved out of) while an SQE naming it is in the
    /// kernel; moving the `Op` itself (the slab may grow) does not move the heap allocation.
    buf: Vec<u8>,
    /// Bytes already transferred.
    done: usize,
    stage: Stage,
    /// Times the kernel gave the request back unstarted (EINTR, EAGAIN, ECANCELED).
    retries: u32,
}

/// Wakes the adapter: the thread that turns the ring's eventfd into interrupts.
struct IrqThread {
    efd: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
}

impl IrqThread {
    fn start(
        ring: &Arc<IoUring>,
        line: InterruptLine,
        state: Arc<IrqState>,
    ) -> std::io::Result<IrqThread> {
        let efd = Arc::new(rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?);
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (fd, flag, ring) = (efd.clone(), stop.clone(), ring.clone());
        // Detached: it ends when `stop` is set and the eventfd written (Drop below). Not
        // joined, because the adapter may be dropped on this very thread (the last handle
        // released by a sink running in the deferred stage the interrupt started).
        std::thread::Builder::new()
            .name("file-uring-irq".into())
            .spawn(move || {
                let mut count = [0u8; 8];
                loop {
                    let timeout = if state.watching() {
                        LEASE_CHECK
                    } else {
                        // Going to sleep long: a thread that takes a lease from now on kicks
                        // the eventfd (`irq_far`; the lease is stored before the flag is read
                        // there, the flag before the lease here).
                        state.irq_far.store(true, Ordering::SeqCst);
                        if state.watching() {
                            state.irq_far.store(false, Ordering::SeqCst);
                            LEASE_CHECK
                        } else {
                            if state.end_lease() {
                                // The lease ended with the interrupt masked: unmask (a locked
                                // RMW, then the tail) and take what came meanwhile.
                                peek_cq(&ring, |cq| cq.enable_eventfd());
                                if state.in_flight.load(Ordering::Acquire) > 0
                                    && peek_cq(&ring, |cq| !io_uring::CompletionQueue::is_empty(cq))
                                {
                                    line.raise();
                                }
                            }
                            IRQ_SAFETY_NET
                        }
                    };
                    let net = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: timeout.as_nanos() as _,
                    };
                    let mut pfd = [rustix::event::PollFd::new(
                        &*fd,
                        rustix::event::PollFlags::IN,
                    )];
                    match rustix::event::poll(&mut pfd, Some(&net)) {
                        Ok(0) => {
                            // Timed out: raise only if completions wait in the queue and
                            // nobody is about to reap them (a lost signal; see above).
                            if flag.load(Ordering::Acquire) {
                                return;
                            }
                            if state.in_flight.load(Ordering::Acquire) > 0
                                && !state.watching()
                                && peek_cq(&ring, |cq| !io_uring::CompletionQueue::is_empty(cq))
                            {
                                line.raise();
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(Errno::INTR) => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "file miniport: eventfd poll failed");
                            return;
                        }
                    }
                    match rustix::io::read(fd.as_fd(), &mut count) {
                        Ok(_) if flag.load(Ordering::Acquire) => return,
                        // A thread waits on the completion queue, or holds a lease: it reaps
                        // (it looks at the queue when its wait ends; a lease that ends is
                        // looked after above). This is its kick, or a kernel signal that got
                        // through because a lease began just as this thread unmasked at the
                        // end of the last one: masked again.
                        Ok(_) if state.watching() => {
                            if state.pollers.load(Ordering::SeqCst) == 0 {
                                peek_cq(&ring, |cq| cq.disable_eventfd());
                            }
                        }
                        Ok(_) => line.raise(),
                        Err(Errno::INTR | Errno::AGAIN) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "file miniport: eventfd read failed");
                            return;
                        }
                    }
                }
            })?;
        Ok(IrqThread { efd, stop })
    }
}

impl Drop for IrqThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = rustix::io::write(self.efd.as_fd(), &1u64.to_ne_bytes());
    }
}

/// What the engine shares with its interrupt thread and its [`UringWait`].
struct IrqState {
    /// Requests in the engine (`ops.len()`).
    in_flight: AtomicUsize,
    /// 1 while a thread waits in [`UringWait::wait`]: meanwhile the eventfd stays masked and
    /// the interrupt thread does not raise the line.
    pollers: AtomicUsize,
    /// The poller lease (module documentation): nanoseconds since `epoch` until which the
    /// last thread that waited on the ring keeps the interrupt masked; 0 when no lease is
    /// held (the interrupt thread has unmasked after the last one).
    lease_until: AtomicU64,
    /// The interrupt thread sleeps for [`IRQ_SAFETY_NET`], not watching a lease: a thread
    /// that takes a lease wakes it (writes the eventfd) so that it looks every
    /// [`LEASE_CHECK`].
    irq_far: AtomicBool,
    epoch: Instant,
}

impl IrqState {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            pollers: AtomicUsize::new(0),
            lease_until: AtomicU64::new(0),
            irq_far: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        // Never 0 (0 means "no lease"); u64 nanoseconds last 584 years.
        self.epoch.elapsed().as_nanos() as u64 | 1
    }

    /// A thread waits on the ring or holds a lease: the interrupt stays masked and the
    /// interrupt thread does not raise the line.
    fn watching(&self) -> bool {
        self.pollers.load(Ordering::SeqCst) > 0 || self.leased()
    }

    fn leased(&self) -> bool {
        self.lease_until.load(Ordering::SeqCst) > self.now_ns()
    }

    /// Takes (or renews) the lease at the end of a wait; true when the interrupt thread
    /// sleeps long and must be woken to watch it.
    fn take_lease(&self) -> bool {
        self.lease_until
            .store(self.now_ns() + LEASE.as_nanos() as u64, Ordering::SeqCst);
        self.irq_far.swap(false, Ordering::SeqCst)
    }

    /// Clears a lease that has run out; true when there was one (the interrupt is still
    /// masked from it). False when none was held or another wait renewed it meanwhile.
    fn end_lease(&self) -> bool {
        let until = self.lease_until.load(Ordering::SeqCst);
        until != 0
            && until <= self.now_ns()
            && self
                .lease_until
                .compare_exchange(until, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }
}

/// The ring's [`InterruptWait`]: a thread that waits for its completions (the class driver's
/// queue, in `wait_next`) waits on the completion queue itself — `io_uring_enter` with
/// `GETEVENTS`, which also runs the completion work the kernel queued for it as the submitter
/// — and takes the interrupt, instead of the interrupt thread doing it and waking it.
struct UringWait {
    ring: Arc<IoUring>,
    state: Arc<IrqState>,
    /// The interrupt thread's eventfd, to wake it when a lease starts while it sleeps long.
    efd: Arc<OwnedFd>,
}

impl UringWait {
    fn with_cq<R>(&self, f: impl FnOnce(&mut io_uring::CompletionQueue<'_>) -> R) -> R {
        peek_cq(&self.ring, f)
    }
}

/// A view of the completion queue for a thread that is not the engine's: never dropped, since
/// dropping one (or `sync`) writes the head, which belongs to the engine. Only the flag word is
/// changed through it, and the head and tail it read when it was made are looked at.
fn peek_cq<R>(ring: &IoUring, f: impl FnOnce(&mut io_uring::CompletionQueue<'_>) -> R) -> R {
    // SAFETY: see `UringEngine::cq`; this view reads the head and tail and atomically updates
    // the flags only, and `ManuallyDrop` keeps it from storing its (stale) head on drop.
    let mut cq = std::mem::ManuallyDrop::new(unsafe { ring.completion_shared() });
    f(&mut cq)
}

impl InterruptWait for UringWait {
    fn wait(&self, timeout: Duration) -> Option<bool> {
        let st = &self.state;
        if st.in_flight.load(Ordering::Acquire) == 0 {
            // This thread sleeps elsewhere (its sink) until another thread delivers: give the
            // lease back, so the interrupt thread takes whatever is started on this ring
            // meanwhile (nothing is in the completion queue: a CQE not yet reaped is a
            // request still in flight).
            if st.lease_until.swap(0, Ordering::SeqCst) != 0 {
                self.with_cq(|cq| cq.enable_eventfd());
            }
            return None;
        }
        // One poller at a time: it takes the interrupt for every submitter (their sinks wake
        // them); a second one would only spin on a queue the first is about to reap.
        if st
            .pollers
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        self.with_cq(|cq| cq.disable_eventfd());
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        // `io_uring_enter(fd, 0, 1, GETEVENTS | EXT_ARG)`: submits nothing (the SQ is the
        // engine's) and waits for one completion or the timeout.
        // SAFETY: no SQE is submitted; the argument is a valid `io_uring_getevents_arg`
        // (`SubmitArgs` is `repr(transparent)` over it) holding a timespec that outlives the
        // call.
        let r = unsafe {
            self.ring.submitter().enter(
                0,
                1,
                IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                Some(&args),
            )
        };
        // Left masked under a lease: this thread is expected back within `LEASE`, and the
        // interrupt thread unmasks if it is not. The lease is stored before `pollers` drops,
        // so the interrupt thread never sees neither.
        if st.take_lease() {
            let _ = rustix::io::write(self.efd.as_fd(), &1u64.to_ne_bytes());
        }
        st.pollers.store(0, Ordering::SeqCst);
        // Look at the queue (a fresh view reads the tail; `sync` would store the view's head).
        let waiting = self.with_cq(|cq| !io_uring::CompletionQueue::is_empty(cq));
        Some(r.is_ok() || waiting)
    }
}

/// One io_uring instance per adapter, or per concurrent channel. Driven only through `&mut
/// self`, i.e. under its channel's mutex (taken by the miniport's routines: under the interrupt
/// lock, or — the doorbell of a concurrent channel — under that channel's StartIo lock).
pub(crate) struct UringEngine {
    /// In-flight requests; the key is the SQE's `user_data`.
    ops: Slab<Op>,
    /// CQEs copied out of the completion queue before they are handled (reused).
    cqes: Vec<(u64, i32)>,
    /// The kernel refused `RWF_DSYNC` once: FUA writes use write + fsync from now on.
    dsync_refused: bool,
    /// SQEs are queued and not yet submitted ([`queue`](Self::queue), or an `io_uring_enter`
    /// failed): submit at the next chance.
    unsubmitted: bool,
    /// Being dropped: cancelled requests are not resubmitted.
    closing: bool,
    /// The adapter's files, by index; the engine's own references, taken once, keep their
    /// descriptors open while requests are in the kernel.
    files: Vec<Arc<FileBackend>>,
    /// The files are registered with the ring (fixed files, same indexes): no descriptor
    /// lookup per SQE.
    registered: bool,
    /// `ops.len()` and the pollers, shared with the interrupt thread and [`UringWait`].
    state: Arc<IrqState>,
    irq: Option<IrqThread>,
    /// Declared last: dropped after `Drop::drop` has waited for (or leaked) every buffer.
    /// Shared with [`UringWait`], which only waits on it and flips the eventfd flag; every
    /// submission- and completion-queue view is the engine's (`&mut self`, under its channel's
    /// mutex).
    ring: Arc<IoUring>,
}

impl UringEngine {
    /// A ring for `slots` requests at once. With `line`, completions raise it (interrupt
    /// configuration); without, they are only reaped (polled configuration). Fails where the
    /// kernel or a seccomp policy refuses io_uring (ENOSYS, EPERM).
    /// `files`: the adapter's files, registered with the ring (fixed files: no descriptor
    /// lookup per SQE) where the kernel allows.
    pub(crate) fn new(
        slots: usize,
        line: Option<InterruptLine>,
        files: &[Arc<FileBackend>],
    ) -> std::io::Result<Self> {
        let slots = slots.clamp(1, 65_536) as u32;
        let sq = slots.next_power_of_two().clamp(8, 4096);
        // Every in-flight request has at most one SQE in the kernel, so a CQ as large as the
        // slot count never overflows.
        let cq = slots.next_power_of_two().max(sq * 2);
        // COOP_TASKRUN (Linux 5.19): no IPI to the submitting thread for each completion the
        // kernel's workers finish; they are posted at its next kernel entry or wake-up.
        let ring = match IoUring::builder()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .build(sq)
        {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
                IoUring::builder().setup_cqsize(cq).build(sq)?
            }
            Err(e) => return Err(e),
        };
        let fds: Vec<std::os::fd::RawFd> = files.iter().map(|f| f.fd().as_raw_fd()).collect();
        let registered = !fds.is_empty() && ring.submitter().register_files(&fds).is_ok();
        let ring = Arc::new(ring);
        let state = Arc::new(IrqState::new());
        let irq = match line {
            Some(line) => {
                let irq = IrqThread::start(&ring, line.clone(), state.clone())?;
                line.set_wait(Arc::new(UringWait {
                    ring: ring.clone(),
                    state: state.clone(),
                    efd: irq.efd.clone(),
                }));
                Some(irq)
            }
            None => None,
        };
        Ok(Self {
            ops: Slab::with_capacity(slots as usize),
            cqes: Vec::with_capacity(cq as usize),
            dsync_refused: false,
            unsubmitted: false,
            closing: false,
            files: files.to_vec(),
            registered,
            state,
            irq,
            ring,
        })
    }

    /// Masks the interrupt (no eventfd signal for new completions) while a miniport routine
    /// runs and reaps itself. No system call. No-op without an interrupt thread.
    pub(crate) fn mask_irq(&mut self) {
        if self.irq.is_some() {
            self.cq().disable_eventfd();
        }
    }

    /// Unmasks the interrupt; true when completions are already waiting (the caller reaps
    /// them, masking again, before it returns). Left masked while a thread polls or holds a
    /// lease ([`UringWait`]): it reaps the completion queue itself when it waits again, and
    /// the interrupt thread unmasks when the lease ends. Without an interrupt thread: always
    /// false.
    pub(crate) fn unmask_irq(&mut self) -> bool {
        if self.irq.is_none() || self.state.watching() {
            return false;
        }
        let mut cq = self.cq();
        // A locked read-modify-write (a full barrier) before the tail is read below.
        cq.enable_eventfd();
        cq.sync();
        !cq.is_empty()
    }

    /// True when completions wait in the completion queue (no system call).
    pub(crate) fn completions_waiting(&mut self) -> bool {
        let mut cq = self.cq();
        cq.sync();
        !cq.is_empty()
    }

    /// The completion queue.
    fn cq(&mut self) -> io_uring::CompletionQueue<'_> {
        // SAFETY: the engine is the only holder of completion-queue views it drops (`&mut
        // self`, under its channel's mutex), and it keeps none across calls.
        // `UringWait` makes transient views that it never drops (so never writes the head) and
        // only uses for the atomic flag and for reading the tail.
        unsafe { self.ring.completion_shared() }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn submit(&mut self, req: IoRequest) -> Option<IoDone> {
        self.submit_inner(req, true)
    }

    /// Like [`submit`](Self::submit), but only queues the SQE: [`flush`](Self::flush) (or the
    /// next reap) submits everything queued with one `io_uring_enter`.
    pub(crate) fn queue(&mut self, req: IoRequest) -> Option<IoDone> {
        self.submit_inner(req, false)
    }

    /// Submits the queued SQEs.
    pub(crate) fn flush(&mut self) {
        if self.unsubmitted {
            self.enter();
        }
    }

    fn submit_inner(&mut self, req: IoRequest, enter: bool) -> Option<IoDone> {
        let op = req.backend_op();
        if req.len > req.buf.len() || req.file >= self.files.len() {
            return Some(req.done(Err(BackendError::new(BackendErrorKind::OutOfRange, op))));
        }
        let stage = match req.op {
            IoOp::Flush => Stage::Sync,
            IoOp::Write { fua: true } if req.len == 0 => Stage::Sync,
            _ if req.len == 0 => return Some(req.done(Ok(()))),
            IoOp::Write { fua } => Stage::Transfer {
                dsync: fua && !self.dsync_refused,
            },
            IoOp::Read => Stage::Transfer { dsync: false },
        };
        let key = self.ops.insert(Op {
            tag: req.tag,
            file: req.file,
            op: req.op,
            offset: req.offset,
            len: req.len,
            buf: req.buf,
            done: 0,
            stage,
            retries: 0,
        });
        self.state
            .in_flight
            .store(self.ops.len(), Ordering::Release);
        if enter {
            self.start(key)
        } else {
            self.start_queued(key)
        }
    }

    pub(crate) fn reap(&mut self, out: &mut Vec<IoDone>) -> usize {
        if self.unsubmitted {
            self.enter();
        }
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.cq().map(|c| (c.user_data(), c.result())));
        self.cqes = cqes;
        let mut n = 0;
        for i in 0..self.cqes.len() {
            let (key, res) = self.cqes[i];
            if let Some(done) = self.on_cqe(key as usize, res) {
                out.push(done);
                n += 1;
            }
        }
        n
    }

    pub(crate) fn wait(&mut self, out: &mut Vec<IoDone>, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.reap(out);
            if n > 0 || self.ops.is_empty() {
                return n;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return 0;
            }
            let ts = types::Timespec::new()
                .sec(left.as_secs())
                .nsec(left.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error().map(Errno::from_raw_os_error),
                        Some(Errno::TIME | Errno::INTR | Errno::BUSY)
                    ) => {}
                // A kernel without IORING_ENTER_EXT_ARG: poll the completion queue.
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    /// Queues the next SQE of request `key` and submits it. On failure the request is
    /// finished with an error (its SQE never reached the ring, so the buffer is free).
    fn start(&mut self, key: usize) -> Option<IoDone> {
        let done = self.start_queued(key);
        if done.is_none() {
            self.enter();
        }
        done
    }

    /// Queues the next SQE of request `key` without submitting it (`unsubmitted` is set; the
    /// next enter takes it). On failure the request is finished with an error.
    fn start_queued(&mut self, key: usize) -> Option<IoDone> {
        let entry = self.entry(key);
        let mut pushed = self.push(&entry);
        if !pushed {
            // The submission queue is full of SQEs not submitted yet.
            self.enter();
            pushed = self.push(&entry);
        }
        if pushed {
            self.unsubmitted = true;
            None
        } else {
            tracing::warn!("file miniport: io_uring submission queue full");
            let op = backend_op(self.ops[key].op);
            Some(self.finish(key, Err(BackendError::new(BackendErrorKind::Other, op))))
        }
    }

    fn push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: the SQE names (a) the descriptor of `files[ops[key].file]`, kept open by the
        // engine's reference (or its registered index: the ring holds its own reference to a
        // registered file),
        // and (b) for reads and writes `len` bytes of `ops[key].buf` from `done`, which
        // `entry` checked lie inside the buffer. The `Op` stays in `self.ops` — its buffer
        // neither dropped, reallocated nor accessed — until the CQE for this SQE is reaped
        // (`on_cqe`), and `Drop` waits for every outstanding CQE or leaks the buffers of
        // those that never come. Moving the `Op` inside the slab does not move the heap
        // allocation the pointer refers to.
        // The view: the engine is the only one that makes submission-queue views (`&mut self`,
        // under its channel's mutex), and it keeps none across calls.
        unsafe { self.ring.submission_shared().push(entry) }.is_ok()
    }

    /// `io_uring_enter` for the queued SQEs.
    fn enter(&mut self) {
        loop {
            match self.ring.submit() {
                Ok(_) => {
                    self.unsubmitted = false;
                    return;
                }
                Err(e) if e.raw_os_error() == Some(Errno::INTR.raw_os_error()) => {}
                Err(e) => {
                    // The SQEs stay queued in the ring and go with the next enter.
                    tracing::warn!(error = %e, "file miniport: io_uring submit failed");
                    self.unsubmitted = true;
                    return;
                }
            }
        }
    }

    /// The SQE for the current stage of request `key`.
    fn entry(&mut self, key: usize) -> squeue::Entry {
        let op = &mut self.ops[key];
        // `submit_inner` checked the index.
        let raw = self.files[op.file].fd().as_raw_fd();
        let fixed = self.registered.then_some(op.file);
        macro_rules! sqe {
            ($fd:expr) => {
                match (op.stage, op.op) {
                    (Stage::Sync, _) | (_, IoOp::Flush) => opcode::Fsync::new($fd)
                        .flags(types::FsyncFlags::DATASYNC)
                        .build(),
                    (Stage::Transfer { dsync }, io) => {
                        let rest = &mut op.buf[op.done..op.len];
                        let n = rest.len().min(MAX_CHUNK) as u32;
                        let offset = op.offset + op.done as u64;
                        match io {
                            IoOp::Read => opcode::Read::new($fd, rest.as_mut_ptr(), n)
                                .offset(offset)
                                .build(),
                            _ => {
                                let flags = if dsync {
                                    ReadWriteFlags::DSYNC.bits() as i32
                                } else {
                                    0
                                };
                                opcode::Write::new($fd, rest.as_ptr(), n)
                                    .offset(offset)
                                    .rw_flags(flags)
                                    .build()
                            }
                        }
                    }
                }
            };
        }
        let entry = match fixed {
            Some(i) => sqe!(types::Fixed(i as u32)),
            None => sqe!(types::Fd(raw)),
        };
        entry.user_data(key as u64)
    }

    /// Handles one CQE: continues the request (next piece, next stage, retry) or finishes it.
    fn on_cqe(&mut self, key: usize, res: i32) -> Option<IoDone> {
        let Some(op) = self.ops.get_mut(key) else {
            tracing::error!(key, "file miniport: CQE for no request");
            return None;
        };
        let bop = backend_op(op.op);
        if res < 0 {
            let e = Errno::from_raw_os_error(-res);
            // ECANCELED: this engine never cancels, but the kernel cancels the not yet started
            // requests a thread submitted when that thread exits — and `start_io` runs on
            // whichever thread runs the port's deferred stage (a submitter that may come and
            // go). The request did not run: submit it again from this (live) thread.
            let unstarted =
                matches!(e, Errno::INTR | Errno::AGAIN) || (e == Errno::CANCELED && !self.closing);
            if unstarted && op.retries < MAX_RETRIES {
                op.retries += 1;
                return self.start(key);
            }
            if op.stage == (Stage::Transfer { dsync: true })
                && matches!(e, Errno::OPNOTSUPP | Errno::INVAL)
            {
                self.dsync_refused = true;
                op.stage = Stage::Transfer { dsync: false };
                return self.start(key);
            }
            return Some(self.finish(key, Err(BackendError::from_os(bop, e))));
        }
        let n = res as usize;
        match (op.stage, op.op) {
            (Stage::Sync, _) | (_, IoOp::Flush) => Some(self.finish(key, Ok(()))),
            (Stage::Transfer { .. }, IoOp::Read) if n == 0 => {
                // A file truncated behind our back: the missing tail reads as zeroes.
                op.buf[op.done..op.len].fill(0);
                Some(self.finish(key, Ok(())))
            }
            (Stage::Transfer { .. }, IoOp::Write { .. }) if n == 0 => {
                Some(self.finish(key, Err(BackendError::from_os(bop, Errno::IO))))
            }
            (Stage::Transfer { dsync }, io) => {
                op.done = (op.done + n).min(op.len);
                if op.done < op.len {
                    return self.start(key);
                }
                if io == (IoOp::Write { fua: true }) && !dsync {
                    op.stage = Stage::Sync;
                    return self.start(key);
                }
                Some(self.finish(key, Ok(())))
            }
        }
    }

    fn finish(&mut self, key: usize, result: device::backend::BackendResult<()>) -> IoDone {
        let op = self.ops.remove(key);
        self.state
            .in_flight
            .store(self.ops.len(), Ordering::Release);
        IoDone {
            tag: op.tag,
            buf: op.buf,
            result,
        }
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        self.irq = None;
        self.closing = true;
        let deadline = Instant::now() + DROP_WAIT;
        let mut out = Vec::new();
        while !self.ops.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.wait(&mut out, left);
            out.clear();
        }
        if !self.ops.is_empty() {
            tracing::error!(
                in_flight = self.ops.len(),
                "file miniport: io_uring requests did not finish; leaking their buffers"
            );
            for op in self.ops.drain() {
                std::mem::forget(op.buf);
            }
        }
    }
}
