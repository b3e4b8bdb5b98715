//! [`DiskQueue`]: the non-blocking submit + completion interface of a [`Disk`](crate::Disk).
//!
//! A queue is one client's view of the disk: it registers its own [`CompletionSink`] with the
//! adapter, owns a fixed number of request slots (its depth), and recycles its SRBs and bounce
//! buffers, so that once it has warmed up a request of at most the adapter's maximum transfer
//! length costs no heap allocation: the caller's buffer travels in the SRB and comes back in
//! the [`IoCompletion`].
//!
//! Threads: the port calls the sink on whatever thread runs its deferred stage; the sink only
//! pushes the SRB on a list and wakes the owner (condition variable for [`DiskQueue::wait_next`],
//! `Waker` for [`DiskQueue::next_completion`]). Everything else — classifying completions, releasing a
//! frozen queue, retries with backoff, re-reading the capacity, copying bounce buffers — runs on
//! the owner's thread inside `try_next` / `wait_next` / `next_completion`, under no lock but the sink's
//! list lock (held only to swap two vectors).

// SRBs stay boxed from the queue through the port to the sink and back: the port moves the
// box at each stage instead of the ~250-byte SRB (`Submitter::submit_boxed`).
#![allow(clippy::vec_box)]
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use port::{
    CompletionSink, DataDirection, InterruptLine, SENSE_BUFFER_SIZE, Srb, SrbFlags, SrbFunction,
    Submitter, TakenInterrupt,
};
use scsi::unmap::UnmapBlockDescriptor;

use crate::cdb;
use crate::disk::DiskShared;
use crate::error::{DiskError, Disposition, classify};

/// At most this many pieces of one split request are in the port at once.
const MAX_PIECES_IN_FLIGHT: u32 = 4;

/// Longest single wait on the adapter's hardware in [`DiskQueue::wait_next`] before the queue
/// looks at its sink again.
const POLL_SLICE: Duration = Duration::from_millis(1);

/// `original_request` bit marking the queue's own RELEASE_QUEUE requests.
const RELEASE_MARK: u64 = 1 << 63;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IoOp {
    /// READ `len` bytes at `offset` into the buffer.
    #[default]
    Read,
    /// WRITE `len` bytes of the buffer at `offset`.
    Write,
    /// SYNCHRONIZE CACHE of the whole disk (`offset` and `len` ignored).
    Flush,
    /// UNMAP (deallocate) `len` bytes at `offset`; thin-provisioned disks only.
    Unmap,
    /// Write zeroes over `len` bytes at `offset` (WRITE SAME of a zero block).
    WriteZeroes,
}

/// One block I/O. Offsets and lengths are in bytes and must be multiples of the block size.
#[derive(Debug, Default)]
pub struct IoRequest {
    /// What to do.
    pub op: IoOp,
    /// First byte.
    pub offset: u64,
    /// Bytes to read, write, unmap or zero.
    pub len: u64,
    /// Force unit access (writes): the data is on stable media when the request completes.
    pub fua: bool,
    /// The data buffer (READ / WRITE; at least `len` bytes), handed back in the completion.
    pub buffer: Vec<u8>,
}

impl IoRequest {
    /// READ `len` bytes at `offset` into `buffer[..len]`.
    pub fn read(offset: u64, len: u64, buffer: Vec<u8>) -> Self {
        Self {
            op: IoOp::Read,
            offset,
            len,
            fua: false,
            buffer,
        }
    }
    /// WRITE all of `buffer` at `offset`.
    pub fn write(offset: u64, buffer: Vec<u8>) -> Self {
        Self {
            op: IoOp::Write,
            offset,
            len: buffer.len() as u64,
            fua: false,
            buffer,
        }
    }
    /// SYNCHRONIZE CACHE.
    pub fn flush() -> Self {
        Self {
            op: IoOp::Flush,
            ..Self::default()
        }
    }
    /// UNMAP `len` bytes at `offset`.
    pub fn unmap(offset: u64, len: u64) -> Self {
        Self {
            op: IoOp::Unmap,
            offset,
            len,
            ..Self::default()
        }
    }
    /// Zero `len` bytes at `offset`.
    pub fn write_zeroes(offset: u64, len: u64) -> Self {
        Self {
            op: IoOp::WriteZeroes,
            offset,
            len,
            ..Self::default()
        }
    }
    /// With FUA set.
    pub fn with_fua(mut self, fua: bool) -> Self {
        self.fua = fua;
        self
    }
}

/// A finished request: the caller's token, the result and the buffer.
#[derive(Debug)]
pub struct IoCompletion {
    /// The token given to [`DiskQueue::submit`].
    pub token: u64,
    /// Success, or why it failed (the first error of a split request).
    pub result: Result<(), DiskError>,
    /// The request's buffer (filled for a successful READ).
    pub buffer: Vec<u8>,
}

/// A request [`DiskQueue::submit`] refused before sending anything, with the request given
/// back.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    /// Why.
    pub error: DiskError,
    /// The request, buffer included.
    pub request: IoRequest,
}

/// Counters of one queue (what its error handling did).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Requests completed (successfully or not).
    pub completed: u64,
    /// SRBs sent again after a unit attention, BUSY, TASK SET FULL or a transient port error.
    pub retries: u64,
    /// Time spent waiting before retries (the backoff), summed.
    pub backoff: Duration,
    /// RELEASE_QUEUE requests sent after a QUEUE_FROZEN completion.
    pub queue_releases: u64,
    /// Capacity re-reads after CAPACITY DATA HAS CHANGED.
    pub capacity_refreshes: u64,
    /// SRBs sent (pieces of split requests counted one by one, retries included).
    pub srbs_sent: u64,
}

/// The sink a queue registers with the adapter: a list the port pushes to and the owner
/// drains, with the owner's wake-up.
#[derive(Debug, Default)]
pub(crate) struct QueueSink {
    done: Mutex<Vec<Box<Srb>>>,
    cv: Condvar,
    sleeping: AtomicBool,
    has_waker: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CompletionSink for QueueSink {
    /// Deferred stage, any thread, outside the adapter locks: push only.
    fn complete(&self, srb: Srb) {
        self.done.lock().push(Box::new(srb));
    }

    /// Deferred stage, any thread, outside the adapter locks: push the box (no copy).
    fn complete_boxed(&self, srb: Box<Srb>) -> Option<Box<Srb>> {
        self.done.lock().push(srb);
        None
    }

    /// Wakes the owner once per batch.
    fn batch_done(&self) {
        if self.sleeping.load(Ordering::Acquire) {
            // Taking the lock orders this notify after the owner's check-then-wait.
            drop(self.done.lock());
            self.cv.notify_one();
        }
        if self.has_waker.load(Ordering::Acquire)
            && let Some(w) = self.waker.lock().take()
        {
            self.has_waker.store(false, Ordering::Release);
            w.wake();
        }
    }
}

impl QueueSink {
    /// Swaps the completed SRBs into `into` (which must be empty).
    fn take(&self, into: &mut Vec<Box<Srb>>) {
        let mut d = self.done.lock();
        std::mem::swap(&mut *d, into);
    }

    /// Blocks until something completed or `until` passes.
    fn wait_until(&self, until: Instant) {
        let mut d = self.done.lock();
        self.sleeping.store(true, Ordering::Release);
        while d.is_empty() {
            if self.cv.wait_until(&mut d, until).timed_out() {
                break;
            }
        }
        self.sleeping.store(false, Ordering::Release);
    }

    fn set_waker(&self, w: &Waker) {
        let mut slot = self.waker.lock();
        if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
            *slot = Some(w.clone());
        }
        self.has_waker.store(true, Ordering::Release);
    }

    fn is_empty(&self) -> bool {
        self.done.lock().is_empty()
    }
}

/// One request in flight.
#[derive(Debug, Default)]
struct Slot {
    token: u64,
    op: IoOp,
    fua: bool,
    /// The caller's buffer while it is not travelling in an SRB.
    buffer: Vec<u8>,
    /// First block.
    lba: u64,
    /// Blocks in all.
    blocks: u64,
    /// Blocks handed to pieces so far.
    issued: u64,
    /// Pieces in the port or waiting for a retry.
    outstanding: u32,
    /// Blocks per piece.
    piece_blocks: u64,
    /// Block size when the request was checked.
    block_size: u32,
    /// The caller's buffer is in the (single) SRB.
    zero_copy: bool,
    /// First error of the request.
    error: Option<DiskError>,
}

/// An SRB waiting for its backoff to pass.
#[derive(Debug)]
struct Delayed {
    due: Instant,
    srb: Box<Srb>,
}

/// A client's submission queue on a [`Disk`](crate::Disk): `submit` requests with a token,
/// collect [`IoCompletion`]s with [`try_next`](Self::try_next) (non-blocking),
/// [`wait_next`](Self::wait_next) (blocking) or [`next_completion`](Self::next_completion) (a future).
///
/// Owned by one thread or task at a time (`&mut self`); open one queue per submitting thread.
#[derive(Debug)]
pub struct DiskQueue {
    disk: Arc<DiskShared>,
    submitter: Submitter,
    sink: Arc<QueueSink>,
    /// The adapter's interrupt line, for polled completion in `wait_next`.
    line: InterruptLine,
    /// Between `plug` and `unplug`: SRBs are held in `held` and sent together.
    plugged: bool,
    held: Vec<Box<Srb>>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    free_srbs: Vec<Box<Srb>>,
    bounce: Vec<Vec<u8>>,
    incoming: Vec<Box<Srb>>,
    delayed: Vec<Delayed>,
    ready: VecDeque<IoCompletion>,
    in_flight: u32,
    timer_armed: Option<Instant>,
    stats: QueueStats,
}

impl DiskQueue {
    pub(crate) fn new(disk: Arc<DiskShared>, depth: u32) -> Self {
        let depth = depth.max(1);
        let sink = Arc::new(QueueSink::default());
        let srbs = depth as usize * MAX_PIECES_IN_FLIGHT as usize;
        sink.done.lock().reserve(srbs + 1);
        let submitter = disk.adapter.submitter(sink.clone());
        let line = disk.adapter.interrupt_line();
        Self {
            disk,
            submitter,
            sink,
            line,
            plugged: false,
            held: Vec::with_capacity(srbs + 1),
            slots: (0..depth).map(|_| Slot::default()).collect(),
            free_slots: (0..depth).rev().collect(),
            free_srbs: Vec::with_capacity(srbs + 1),
            bounce: Vec::new(),
            incoming: Vec::with_capacity(srbs + 1),
            delayed: Vec::with_capacity(srbs),
            ready: VecDeque::with_capacity(depth as usize),
            in_flight: 0,
            timer_armed: None,
            stats: QueueStats::default(),
        }
    }

    /// Most requests this queue holds at once.
    pub fn depth(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Requests submitted and not yet returned by `try_next` / `wait_next` / `next_completion`.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// What the queue's error handling did so far.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Checks `req` against the disk (alignment, capacity, buffer) and sends it (split into
    /// pieces the adapter can carry). Never blocks; the port may run the miniport on this
    /// thread. Its completion comes back through `try_next` / `wait_next` / `next_completion` with
    /// `token`.
    pub fn submit(&mut self, req: IoRequest, token: u64) -> Result<(), Rejected> {
        let Some(index) = self.free_slots.pop() else {
            return Err(Rejected {
                error: DiskError::QueueFull {
                    depth: self.depth(),
                },
                request: req,
            });
        };
        let (lba, blocks, piece_blocks, block_size) = match self.check(&req) {
            Ok(v) => v,
            Err(error) => {
                self.free_slots.push(index);
                return Err(Rejected {
                    error,
                    request: req,
                });
            }
        };
        self.in_flight += 1;
        let zero_copy = matches!(req.op, IoOp::Read | IoOp::Write) && blocks <= piece_blocks;
        let slot = &mut self.slots[index as usize];
        *slot = Slot {
            token,
            op: req.op,
            fua: req.fua,
            buffer: req.buffer,
            lba,
            blocks,
            issued: 0,
            outstanding: 0,
            piece_blocks,
            block_size,
            zero_copy,
            error: None,
        };
        if blocks == 0 && req.op != IoOp::Flush {
            self.finish(index);
        } else {
            self.issue(index);
        }
        Ok(())
    }

    /// Holds the requests submitted from now on (and retries sent meanwhile) until
    /// [`unplug`](Self::unplug), which hands them to the port as one batch — one pass of its
    /// deferred stage, one doorbell for the miniport — like Linux's block plug. `wait_next` and
    /// `next_completion` unplug before they wait; `try_next` does not.
    pub fn plug(&mut self) {
        self.plugged = true;
    }

    /// Sends what was held since [`plug`](Self::plug) as one batch and stops holding.
    pub fn unplug(&mut self) {
        self.plugged = false;
        if !self.held.is_empty() {
            self.submitter.submit_batch_boxed(&mut self.held);
        }
    }

    /// The next finished request, if any, without blocking (also sends due retries; held
    /// requests stay held).
    pub fn try_next(&mut self) -> Option<IoCompletion> {
        self.process();
        self.pop()
    }

    /// Blocks until a request finishes (or `timeout` passes); `None` on timeout or when nothing
    /// is in flight.
    ///
    /// Polled completion: if the adapter's hardware offers a wait
    /// ([`InterruptLine::take_interrupt`]), this thread waits on the hardware and takes the
    /// interrupt itself — the port's interrupt routine and deferred stage run here and the
    /// completions reach this queue without waking another thread — in slices of at most
    /// 1 ms (another thread may have delivered this queue's completions meanwhile).
    /// Otherwise it sleeps until the sink wakes it.
    pub fn wait_next(&mut self, timeout: Duration) -> Option<IoCompletion> {
        self.unplug();
        let deadline = Instant::now() + timeout;
        loop {
            self.process();
            if let Some(c) = self.pop() {
                return Some(c);
            }
            if self.in_flight == 0 {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let until = self
                .delayed
                .iter()
                .map(|d| d.due)
                .min()
                .map_or(deadline, |d| d.min(deadline));
            // When the interrupt was taken but another thread runs the deferred stage, sleep
            // on the sink: that thread delivers and wakes it (polling again at once would spin
            // on completions it is about to reap).
            let slice = until.saturating_duration_since(now).min(POLL_SLICE);
            match self.line.take_interrupt(slice) {
                TakenInterrupt::Here | TakenInterrupt::Idle => {}
                TakenInterrupt::Elsewhere | TakenInterrupt::Unavailable => {
                    self.sink.wait_until(until)
                }
            }
        }
    }

    /// A future of the next finished request (`None` when nothing is in flight). Works on any
    /// executor: the sink wakes the task; a pending backoff is timed by a short-lived thread.
    pub fn next_completion(&mut self) -> NextCompletion<'_> {
        NextCompletion { queue: self }
    }

    fn pop(&mut self) -> Option<IoCompletion> {
        let c = self.ready.pop_front()?;
        self.in_flight -= 1;
        Some(c)
    }

    /// Alignment, range and buffer checks; returns (lba, blocks, blocks per piece, block size).
    fn check(&self, req: &IoRequest) -> Result<(u64, u64, u64, u32), DiskError> {
        let bs = self.disk.block_size();
        let capacity = self.disk.capacity();
        if req.op == IoOp::Flush {
            return Ok((0, 0, 1, bs));
        }
        let bs64 = u64::from(bs);
        if !req.offset.is_multiple_of(bs64) || !req.len.is_multiple_of(bs64) {
            return Err(DiskError::Unaligned {
                offset: req.offset,
                len: req.len,
                block_size: bs,
            });
        }
        if req.offset.checked_add(req.len).is_none_or(|e| e > capacity) {
            return Err(DiskError::OutOfRange {
                offset: req.offset,
                len: req.len,
                capacity,
            });
        }
        let limits = self.disk.limits();
        let piece_blocks = match req.op {
            IoOp::Read | IoOp::Write => {
                if (req.buffer.len() as u64) < req.len {
                    return Err(DiskError::BufferTooSmall {
                        need: req.len,
                        have: req.buffer.len() as u64,
                    });
                }
                (limits.max_transfer_bytes / bs64).max(1)
            }
            IoOp::Unmap => {
                if !limits.thin {
                    return Err(DiskError::Unsupported("UNMAP on a fully provisioned disk"));
                }
                limits.max_unmap_blocks
            }
            IoOp::WriteZeroes => limits.max_write_same_blocks,
            IoOp::Flush => 1,
        };
        Ok((
            req.offset / bs64,
            req.len / bs64,
            piece_blocks.clamp(1, u64::from(u32::MAX)),
            bs,
        ))
    }

    /// Sends pieces of slot `index` while it has blocks left and room for pieces.
    fn issue(&mut self, index: u32) {
        loop {
            let slot = &self.slots[index as usize];
            let more = if slot.op == IoOp::Flush {
                slot.issued == 0 && slot.outstanding == 0
            } else {
                slot.issued < slot.blocks
            };
            if !more || slot.outstanding >= MAX_PIECES_IN_FLIGHT || slot.error.is_some() {
                return;
            }
            let srb = self.build_piece(index);
            self.send(srb);
        }
    }

    /// Builds the next piece of slot `index` and counts it outstanding.
    fn build_piece(&mut self, index: u32) -> Box<Srb> {
        let mut srb = self.free_srbs.pop().unwrap_or_default();
        let mut data = std::mem::take(&mut srb.data);
        let slot = &mut self.slots[index as usize];
        let bs = u64::from(slot.block_size);
        let lba = slot.lba + slot.issued;
        let blocks = (slot.blocks - slot.issued).min(slot.piece_blocks);
        let (cdb, len, direction) = match slot.op {
            IoOp::Read | IoOp::Write => {
                let write = slot.op == IoOp::Write;
                let len = (blocks * bs) as usize;
                if slot.zero_copy {
                    data = std::mem::take(&mut slot.buffer);
                } else {
                    if data.capacity() == 0
                        && let Some(b) = self.bounce.pop()
                    {
                        data = b;
                    }
                    data.resize(len, 0);
                    if write {
                        let from = (slot.issued * bs) as usize;
                        data[..len].copy_from_slice(&slot.buffer[from..from + len]);
                    }
                }
                let dir = if write {
                    DataDirection::Out
                } else {
                    DataDirection::In
                };
                (
                    cdb::read_write(write, lba, blocks as u32, slot.fua),
                    len,
                    dir,
                )
            }
            IoOp::WriteZeroes => {
                data.clear();
                data.resize(bs as usize, 0);
                (
                    cdb::write_same(lba, blocks as u32),
                    bs as usize,
                    DataDirection::Out,
                )
            }
            IoOp::Unmap => {
                data.clear();
                let list = scsi::unmap::unmap_parameter_list(&[UnmapBlockDescriptor::new(
                    lba,
                    blocks as u32,
                )])
                .unwrap_or_default();
                data.extend_from_slice(&list);
                let c = scsi::cdb::Unmap::new(list.len() as u16);
                (
                    scsi::CdbBuf::from_layout(&c),
                    list.len(),
                    DataDirection::Out,
                )
            }
            IoOp::Flush => (cdb::synchronize_cache(), 0, DataDirection::None),
        };
        slot.issued += if slot.op == IoOp::Flush { 1 } else { blocks };
        slot.outstanding += 1;
        self.fill_srb(&mut srb, cdb.as_bytes(), data, len, direction);
        srb.original_request = u64::from(index);
        srb
    }

    /// Resets `srb` for a new EXECUTE_SCSI use with this queue's address, flags and timeout.
    fn fill_srb(
        &self,
        srb: &mut Srb,
        cdb: &[u8],
        data: Vec<u8>,
        len: usize,
        direction: DataDirection,
    ) {
        let mut fresh = Srb::default();
        fresh.address = self.disk.address;
        fresh.cdb = port::Cdb::new(cdb).unwrap_or_default();
        fresh.sense_info_buffer_length = SENSE_BUFFER_SIZE as u8;
        fresh.time_out_value = self.disk.options.timeout_secs;
        fresh.nexus = self.disk.options.nexus;
        *srb = fresh.with_data(data, len as u32, direction);
        if self.disk.tagged {
            srb.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
        }
    }

    fn send(&mut self, srb: Box<Srb>) {
        self.stats.srbs_sent += 1;
        if self.plugged {
            self.held.push(srb);
        } else {
            self.submitter.submit_boxed(srb);
        }
    }

    /// Takes what the sink collected and handles it; sends retries whose backoff is over.
    fn process(&mut self) {
        if !self.delayed.is_empty() {
            let now = Instant::now();
            let mut i = 0;
            while i < self.delayed.len() {
                if self.delayed[i].due <= now {
                    let d = self.delayed.swap_remove(i);
                    self.send(d.srb);
                } else {
                    i += 1;
                }
            }
        }
        let mut incoming = std::mem::take(&mut self.incoming);
        self.sink.take(&mut incoming);
        for srb in incoming.drain(..) {
            self.on_complete(srb);
        }
        self.incoming = incoming;
    }

    /// One completed SRB: classify it (the sense is read here), release a frozen queue,
    /// retry, or account the piece.
    fn on_complete(&mut self, mut srb: Box<Srb>) {
        if srb.original_request & RELEASE_MARK != 0 {
            self.recycle(srb);
            return;
        }
        let index = (srb.original_request & 0xFFFF_FFFF) as u32;
        let attempts = ((srb.original_request >> 32) & 0xFF) as u32;
        let disposition = classify(&srb);
        if srb.srb_status.queue_frozen() {
            // The sense travelled inline in the SRB and was read by classify: now let the
            // LU's queue move again.
            self.release_queue();
        }
        match disposition {
            Disposition::Done => self.piece_done(index, srb),
            Disposition::Retry {
                error,
                immediate,
                capacity_changed,
            } => {
                if capacity_changed {
                    self.stats.capacity_refreshes += 1;
                    if let Err(e) = self.disk.refresh_capacity() {
                        tracing::warn!(address = %self.disk.address, error = %e, "capacity re-read failed");
                    }
                }
                let policy = &self.disk.options.retry;
                if attempts >= policy.max_retries {
                    return self.piece_failed(index, srb, error);
                }
                let delay = if immediate {
                    Duration::ZERO
                } else {
                    policy.backoff(attempts)
                };
                self.stats.retries += 1;
                self.stats.backoff += delay;
                let requested = srb.requested_length();
                srb.recycle();
                srb.data_transfer_length = requested;
                srb.sense_info_buffer_length = SENSE_BUFFER_SIZE as u8;
                srb.original_request = u64::from(index) | (u64::from(attempts + 1) << 32);
                tracing::debug!(address = %self.disk.address, attempt = attempts + 1, ?delay, error = %error, "retrying");
                if delay.is_zero() {
                    self.send(srb);
                } else {
                    self.delayed.push(Delayed {
                        due: Instant::now() + delay,
                        srb,
                    });
                }
            }
            Disposition::Fail(e) => self.piece_failed(index, srb, e),
        }
    }

    fn release_queue(&mut self) {
        self.stats.queue_releases += 1;
        let mut srb = port::queue_request(SrbFunction::ReleaseQueue, self.disk.address);
        srb.original_request = RELEASE_MARK;
        self.send(Box::new(srb));
    }

    fn piece_done(&mut self, index: u32, mut srb: Box<Srb>) {
        let slot = &mut self.slots[index as usize];
        if slot.zero_copy {
            slot.buffer = std::mem::take(&mut srb.data);
        } else if slot.op == IoOp::Read {
            // Copy the bounce buffer to its place in the caller's buffer.
            if let Ok(rw) = scsi::RwCommand::parse(srb.cdb.as_slice()) {
                let bs = u64::from(slot.block_size);
                let from = ((rw.lba - slot.lba) * bs) as usize;
                let n = srb.data_slice().len();
                if let Some(dst) = slot.buffer.get_mut(from..from + n) {
                    dst.copy_from_slice(&srb.data[..n]);
                }
            }
        }
        slot.outstanding -= 1;
        self.recycle(srb);
        self.after_piece(index);
    }

    fn piece_failed(&mut self, index: u32, mut srb: Box<Srb>, error: DiskError) {
        let slot = &mut self.slots[index as usize];
        if slot.zero_copy {
            slot.buffer = std::mem::take(&mut srb.data);
        }
        slot.error.get_or_insert(error);
        slot.outstanding -= 1;
        self.recycle(srb);
        self.after_piece(index);
    }

    fn after_piece(&mut self, index: u32) {
        let slot = &self.slots[index as usize];
        let all_sent = slot.issued >= slot.blocks || slot.op == IoOp::Flush;
        if slot.outstanding == 0 && (all_sent || slot.error.is_some()) {
            self.finish(index);
        } else {
            self.issue(index);
        }
    }

    fn finish(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let result = match slot.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        self.ready.push_back(IoCompletion {
            token: slot.token,
            result,
            buffer: std::mem::take(&mut slot.buffer),
        });
        self.stats.completed += 1;
        self.free_slots.push(index);
    }

    /// Keeps the SRB (and a bounce buffer) for reuse.
    fn recycle(&mut self, mut srb: Box<Srb>) {
        if srb.data.capacity() > 0
            && self.bounce.len() < self.slots.len() * MAX_PIECES_IN_FLIGHT as usize
        {
            self.bounce.push(std::mem::take(&mut srb.data));
        }
        srb.data = Vec::new();
        self.free_srbs.push(srb);
    }

    /// Future support: registers `w` and arms a timer for the earliest pending retry.
    fn register(&mut self, w: &Waker) -> bool {
        self.sink.set_waker(w);
        if let Some(due) = self.delayed.iter().map(|d| d.due).min()
            && self
                .timer_armed
                .is_none_or(|t| t > due || t < Instant::now())
        {
            self.timer_armed = Some(due);
            let w = w.clone();
            std::thread::spawn(move || {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                w.wake();
            });
        }
        // A completion that raced with the registration.
        !self.sink.is_empty()
    }
}

/// The future [`DiskQueue::next_completion`] returns.
#[derive(Debug)]
pub struct NextCompletion<'a> {
    queue: &'a mut DiskQueue,
}

impl Future for NextCompletion<'_> {
    type Output = Option<IoCompletion>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let q = &mut *self.queue;
        q.unplug();
        loop {
            q.process();
            if let Some(c) = q.pop() {
                return Poll::Ready(Some(c));
            }
            if q.in_flight == 0 {
                return Poll::Ready(None);
            }
            if !q.register(cx.waker()) {
                return Poll::Pending;
            }
        }
    }
}

/// How the class driver retries transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries per SRB before its error is reported.
    pub max_retries: u32,
    /// Backoff before the first BUSY / TASK SET FULL / transient retry; doubled each time.
    pub initial_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `attempt + 1` (0-based `attempt`): initial * 2^attempt,
    /// at most `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
        };
        let b: Vec<u128> = (0..6).map(|a| p.backoff(a).as_millis()).collect();
        assert_eq!(b, [2, 4, 8, 16, 20, 20]);
        assert_eq!(p.backoff(1000), Duration::from_millis(20));
    }
}
