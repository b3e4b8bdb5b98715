//! The submitting threads: one loop through the class driver's [`DiskQueue`], one with raw
//! SRBs. Each keeps `queue_depth` requests in flight, reusing its buffers (and SRBs), records
//! latencies in its own histogram and publishes its counts for the progress display.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use class::{Disk, IoRequest};
use parking_lot::{Condvar, Mutex};
use port::{CompletionSink, DataDirection, SENSE_BUFFER_SIZE, Srb, SrbFlags, SrbFunction};

use crate::workload::{NextIo, Workload};
use crate::{BenchConfig, RunShared, ThreadResult};

/// How long a submitting thread waits for a completion before it checks the stop flag.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy)]
struct InFlight {
    io: NextIo,
    start: Instant,
}

/// Bookkeeping shared by both loops.
struct Thread<'a> {
    cfg: &'a BenchConfig,
    shared: &'a RunShared,
    index: usize,
    workload: Workload,
    slots: Vec<InFlight>,
    /// Units in flight (verify mode keeps reads and writes of one unit apart).
    busy: Vec<u64>,
    res: ThreadResult,
}

impl<'a> Thread<'a> {
    fn new(cfg: &'a BenchConfig, disk: &Disk, t: u32, shared: &'a RunShared) -> Self {
        let units = disk.capacity() / u64::from(cfg.block_size);
        let qd = cfg.queue_depth as usize;
        let start = Instant::now();
        Thread {
            cfg,
            shared,
            index: t as usize,
            workload: Workload::new(cfg.pattern, units, t, cfg.threads, cfg.seed, cfg.verify),
            slots: vec![
                InFlight {
                    io: NextIo {
                        unit: 0,
                        write: false
                    },
                    start
                };
                qd
            ],
            busy: vec![u64::MAX; qd],
            res: ThreadResult::new(),
        }
    }

    /// Picks the next I/O for slot `i` and prepares `buf` (pattern for a verified write);
    /// `now` is its start time.
    fn next(&mut self, i: usize, buf: &mut [u8], now: Instant) -> NextIo {
        let io = self.workload.next(&self.busy);
        if io.write {
            self.workload.fill(io.unit, buf);
        }
        self.busy[i] = io.unit;
        self.slots[i] = InFlight { io, start: now };
        io
    }

    /// Slot `i` completed (`ok`, with `buf` for a read), seen at `now` (one clock read per
    /// batch of completions: they were all there when the wait returned).
    fn done(&mut self, i: usize, ok: Result<(), String>, buf: &[u8], now: Instant) {
        let s = self.slots[i];
        self.busy[i] = u64::MAX;
        self.res.last = now;
        match ok {
            Ok(()) => {
                let ns = now.duration_since(s.start).as_nanos() as u64;
                self.res.hist.saturating_record(ns.max(1));
                if s.io.write {
                    self.res.writes += 1;
                } else {
                    self.res.reads += 1;
                    if self.workload.verifying() {
                        let v = &mut self.res.verify;
                        v.reads_checked += 1;
                        if !self.workload.check(s.io.unit, buf) {
                            v.mismatches += 1;
                            v.first_mismatch_offset
                                .get_or_insert(s.io.unit * u64::from(self.cfg.block_size));
                        }
                    }
                }
                self.res.bytes += u64::from(self.cfg.block_size);
                let live = &self.shared.live[self.index];
                live.ios
                    .store(self.res.reads + self.res.writes, Ordering::Relaxed);
                live.bytes.store(self.res.bytes, Ordering::Relaxed);
            }
            Err(e) => self.res.error(e),
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }
}

/// A submitting thread through the class driver.
pub(crate) fn class_thread(
    cfg: &BenchConfig,
    disk: &Disk,
    t: u32,
    shared: &RunShared,
) -> ThreadResult {
    let mut th = Thread::new(cfg, disk, t, shared);
    let bs = u64::from(cfg.block_size);
    let mut q = disk.queue(cfg.queue_depth);
    let submit = |th: &mut Thread<'_>,
                  q: &mut class::DiskQueue,
                  i: usize,
                  mut buf: Vec<u8>,
                  now: Instant| {
        let io = th.next(i, &mut buf, now);
        let req = if io.write {
            IoRequest::write(io.unit * bs, buf)
        } else {
            IoRequest::read(io.unit * bs, bs, buf)
        };
        if let Err(r) = q.submit(req, i as u64) {
            th.busy[i] = u64::MAX;
            th.res.error(r.error);
        }
    };
    for i in 0..cfg.queue_depth as usize {
        submit(&mut th, &mut q, i, vec![0u8; bs as usize], Instant::now());
    }
    loop {
        let Some(mut c) = q.wait_next(POLL) else {
            if q.in_flight() == 0 {
                break;
            }
            continue;
        };
        // Handle every completion that is there and send the replacements as one batch (the
        // port starts them in one pass; the file miniport submits them with one enter).
        q.plug();
        let now = Instant::now();
        loop {
            let i = c.token as usize;
            th.done(i, c.result.map_err(|e| e.to_string()), &c.buffer, now);
            if !th.stopping() {
                submit(&mut th, &mut q, i, c.buffer, now);
            }
            match q.try_next() {
                Some(next) => c = next,
                None => break,
            }
        }
        q.unplug();
        if th.stopping() && q.in_flight() == 0 {
            break;
        }
    }
    th.res
}

/// The raw path's completion sink: a list and a condition variable.
#[derive(Debug, Default)]
struct RawSink {
    done: Mutex<Vec<Srb>>,
    cv: Condvar,
}

impl CompletionSink for RawSink {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(srb);
    }
    fn batch_done(&self) {
        self.cv.notify_one();
    }
}

/// A submitting thread that sends READ / WRITE SRBs straight to the port (no class driver:
/// no splitting, no retries; failures are counted). Requests carry NO_QUEUE_FREEZE.
pub(crate) fn raw_thread(
    cfg: &BenchConfig,
    disk: &Disk,
    t: u32,
    shared: &RunShared,
) -> ThreadResult {
    let mut th = Thread::new(cfg, disk, t, shared);
    let qd = cfg.queue_depth as usize;
    let bs = cfg.block_size;
    let lbs = disk.block_size();
    let tagged = disk.adapter().configuration().tagged_queuing;
    let address = disk.address();
    let sink = Arc::new(RawSink::default());
    sink.done.lock().reserve(qd + 1);
    let submitter = disk.adapter().submitter(sink.clone());
    let mut in_flight = 0usize;
    let submit = |th: &mut Thread<'_>, i: usize, mut srb: Srb| {
        let mut data = std::mem::take(&mut srb.data);
        let io = th.next(i, &mut data, Instant::now());
        let lba = io.unit * u64::from(bs / lbs);
        let cdb = class::cdb::read_write(io.write, lba, bs / lbs, false);
        let dir = if io.write {
            DataDirection::Out
        } else {
            DataDirection::In
        };
        let mut fresh = Srb::default();
        fresh.function = SrbFunction::ExecuteScsi;
        fresh.address = address;
        fresh.cdb = port::Cdb::new(&cdb).unwrap_or_default();
        fresh.sense_info_buffer_length = SENSE_BUFFER_SIZE as u8;
        fresh.time_out_value = 10;
        fresh.original_request = i as u64;
        let mut srb = fresh.with_data(data, bs, dir);
        srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        if tagged {
            srb.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
        }
        submitter.submit(srb);
    };
    for i in 0..qd {
        let mut srb = Srb::default();
        srb.data = vec![0u8; bs as usize];
        submit(&mut th, i, srb);
        in_flight += 1;
    }
    let mut batch: Vec<Srb> = Vec::with_capacity(qd + 1);
    while in_flight > 0 {
        {
            let mut d = sink.done.lock();
            if d.is_empty() {
                sink.cv.wait_for(&mut d, POLL);
            }
            std::mem::swap(&mut *d, &mut batch);
        }
        for srb in batch.drain(..) {
            in_flight -= 1;
            let i = srb.original_request as usize;
            let ok = if srb.srb_status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "SRB status {:?}, SCSI status {:#04x}",
                    srb.srb_status, srb.scsi_status
                ))
            };
            th.done(i, ok, srb.data_slice(), Instant::now());
            if !th.stopping() {
                submit(&mut th, i, srb);
                in_flight += 1;
            }
        }
    }
    th.res
}
