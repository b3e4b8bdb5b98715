//! Statistics counters and the error log.
//!
//! Counters are relaxed atomics bumped by the deferred stage (one uncontended add per event), so
//! readers (a WMI block, a metrics endpoint) never take an adapter lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::srb::{Address, SrbStatus, scsi_status};

/// Error codes of `ScsiPortLogError` (`SP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// SP_BUS_PARITY_ERROR.
    BusParityError = 0x01,
    /// SP_UNEXPECTED_DISCONNECT.
    UnexpectedDisconnect = 0x02,
    /// SP_INVALID_RESELECTION.
    InvalidReselection = 0x03,
    /// SP_BUS_TIME_OUT.
    BusTimeOut = 0x04,
    /// SP_PROTOCOL_ERROR.
    ProtocolError = 0x05,
    /// SP_INTERNAL_ADAPTER_ERROR.
    InternalAdapterError = 0x06,
    /// SP_REQUEST_TIMEOUT.
    RequestTimeout = 0x07,
    /// SP_IRQ_NOT_RESPONDING.
    IrqNotResponding = 0x08,
    /// SP_BAD_FW_WARNING.
    BadFwWarning = 0x09,
    /// SP_BAD_FW_ERROR.
    BadFwError = 0x0a,
    /// SP_LOST_WMI_MINIPORT_REQUEST.
    LostWmiMiniportRequest = 0x0b,
}

/// One error-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorLogEntry {
    /// The LU concerned.
    pub address: Address,
    /// What happened.
    pub code: ErrorCode,
    /// Free-form id chosen by the logger (line number, firmware code...).
    pub unique_id: u32,
    /// Tag of the request concerned, if any.
    pub queue_tag: Option<u32>,
}

/// How many error-log entries an adapter keeps (oldest dropped first).
pub const ERROR_LOG_DEPTH: usize = 64;

/// Live counters of an adapter or an LU.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) commands: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) flushed: AtomicU64,
    pub(crate) aborted: AtomicU64,
    /// EXECUTE_SCSI failures by kind ([`ErrorKind`] order).
    pub(crate) error_kinds: [AtomicU64; ErrorKind::COUNT],
    /// Requests accepted from submitters and not yet completed to them (a gauge).
    pub(crate) outstanding: AtomicU64,
    pub(crate) latency: LatencyCounters,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// How an EXECUTE_SCSI request ended, for the counters: success, or the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome(pub(crate) Option<ErrorKind>);

impl Outcome {
    /// Classifies a completion by its SrbStatus (flags ignored) and SCSI status.
    pub(crate) fn of(status: SrbStatus, scsi: u8) -> Outcome {
        Outcome(match status.status() {
            SrbStatus::SUCCESS => None,
            SrbStatus::ERROR if scsi == scsi_status::CHECK_CONDITION => {
                Some(ErrorKind::CheckCondition)
            }
            SrbStatus::SELECTION_TIMEOUT => Some(ErrorKind::SelectionTimeout),
            SrbStatus::BUS_RESET => Some(ErrorKind::BusReset),
            SrbStatus::ABORTED => Some(ErrorKind::Aborted),
            _ => Some(ErrorKind::Other),
        })
    }
}

/// The kinds of failed EXECUTE_SCSI completions counted apart ([`Statistics::error_kinds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// SRB_STATUS_ERROR with SCSI status CHECK CONDITION (sense data).
    CheckCondition = 0,
    /// SRB_STATUS_SELECTION_TIMEOUT: nothing answered at the address.
    SelectionTimeout = 1,
    /// SRB_STATUS_BUS_RESET: a reset took the request.
    BusReset = 2,
    /// SRB_STATUS_ABORTED: an abort took the request.
    Aborted = 3,
    /// Any other status (TIMEOUT, BUSY given up, REQUEST_FLUSHED, underrun, ...).
    Other = 4,
}

impl ErrorKind {
    /// Number of kinds.
    pub const COUNT: usize = 5;
    /// Every kind, in index order.
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::CheckCondition,
        ErrorKind::SelectionTimeout,
        ErrorKind::BusReset,
        ErrorKind::Aborted,
        ErrorKind::Other,
    ];
    /// A short name (`check_condition`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::CheckCondition => "check_condition",
            ErrorKind::SelectionTimeout => "selection_timeout",
            ErrorKind::BusReset => "bus_reset",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Other => "other",
        }
    }
}

// The runner counts through `crate::tally` and folds into these counters; the methods stay the
// reference its tests compare against.
#[cfg_attr(not(test), allow(dead_code))]
impl Counters {
    /// An EXECUTE_SCSI request completed (runner thread, `Runner::finish`).
    pub(crate) fn record_completion(&self, opcode: u8, outcome: Outcome, bytes: u64) {
        let ok = outcome.0.is_none();
        add(&self.commands, 1);
        match classify(opcode) {
            Some(true) => {
                add(&self.reads, 1);
                if ok {
                    add(&self.bytes_read, bytes);
                }
            }
            Some(false) => {
                add(&self.writes, 1);
                if ok {
                    add(&self.bytes_written, bytes);
                }
            }
            None => {}
        }
        if let Some(kind) = outcome.0 {
            add(&self.errors, 1);
            add(&self.error_kinds[kind as usize], 1);
        }
    }
    pub(crate) fn timeout(&self) {
        add(&self.timeouts, 1);
    }
    pub(crate) fn reset(&self) {
        add(&self.resets, 1);
    }
    pub(crate) fn busy(&self) {
        add(&self.busy, 1);
    }
    pub(crate) fn flushed(&self) {
        add(&self.flushed, 1);
    }
    pub(crate) fn aborted(&self) {
        add(&self.aborted, 1);
    }

    /// A request from a submitter entered the port (runner thread, `Runner::accept`).
    pub(crate) fn submitted(&self) {
        add(&self.outstanding, 1);
    }
    /// A request counted by [`Counters::submitted`] is being completed to its submitter
    /// (runner thread, `Runner::finish`, exactly once per request).
    pub(crate) fn completed(&self) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
    /// Adds one submit-to-completion time to the latency histogram.
    pub(crate) fn record_latency(&self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    /// A consistent-enough snapshot (each counter read once, relaxed).
    pub fn snapshot(&self) -> Statistics {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Statistics {
            outstanding: r(&self.outstanding),
            latency: self.latency.snapshot(),
            commands: r(&self.commands),
            reads: r(&self.reads),
            writes: r(&self.writes),
            bytes_read: r(&self.bytes_read),
            bytes_written: r(&self.bytes_written),
            errors: r(&self.errors),
            timeouts: r(&self.timeouts),
            resets: r(&self.resets),
            busy: r(&self.busy),
            flushed: r(&self.flushed),
            aborted: r(&self.aborted),
            error_kinds: std::array::from_fn(|i| r(&self.error_kinds[i])),
        }
    }
}

/// `Some(true)` for READ opcodes, `Some(false)` for WRITE opcodes (incl. WRITE AND VERIFY).
pub(crate) fn classify(opcode: u8) -> Option<bool> {
    match opcode {
        0x08 | 0x28 | 0xA8 | 0x88 => Some(true),
        0x0A | 0x2A | 0xAA | 0x8A | 0x2E | 0xAE | 0x8E => Some(false),
        _ => None,
    }
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statistics {
    /// EXECUTE_SCSI requests completed to submitters.
    pub commands: u64,
    /// READ(6/10/12/16) among them.
    pub reads: u64,
    /// WRITE(6/10/12/16) and WRITE AND VERIFY among them.
    pub writes: u64,
    /// Bytes read by successful reads.
    pub bytes_read: u64,
    /// Bytes written by successful writes.
    pub bytes_written: u64,
    /// Requests completed with a status other than SUCCESS.
    pub errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Resets (bus resets, LU resets, adapter restarts, reported resets).
    pub resets: u64,
    /// BUSY / QUEUE FULL completions the port retried or gave up on.
    pub busy: u64,
    /// Requests completed as REQUEST_FLUSHED.
    pub flushed: u64,
    /// Requests completed as ABORTED.
    pub aborted: u64,
    /// The `errors` by kind, indexed by [`ErrorKind`] (`error_kinds[ErrorKind::BusReset as
    /// usize]`); they add up to `errors`.
    pub error_kinds: [u64; ErrorKind::COUNT],
    /// Requests submitted to the port and not yet completed (queued in the port or held by
    /// the miniport) at the time of the snapshot: the queue depth seen by submitters.
    pub outstanding: u64,
    /// Submit-to-completion times of the EXECUTE_SCSI requests counted in `commands`.
    pub latency: LatencyHistogram,
}

impl Statistics {
    /// The failed commands of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.error_kinds[kind as usize]
    }
}

/// Number of latency buckets: bucket `i` holds times in `[2^i, 2^(i+1))` µs (bucket 0 also
/// holds 0 µs, the last one everything from 2^31 µs up).
pub const LATENCY_BUCKETS: usize = 32;

/// Bucket index of a time in µs.
pub(crate) fn bucket_of(us: u64) -> usize {
    let log2 = (u64::BITS - 1).saturating_sub(us.leading_zeros()) as usize;
    log2.min(LATENCY_BUCKETS - 1)
}

/// The live histogram (relaxed atomics, bumped on the runner thread without locks).
#[derive(Debug, Default)]
pub(crate) struct LatencyCounters {
    pub(crate) buckets: [AtomicU64; LATENCY_BUCKETS],
    pub(crate) sum_us: AtomicU64,
    pub(crate) count: AtomicU64,
}

impl LatencyCounters {
    #[cfg_attr(not(test), allow(dead_code))]
    fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        add(&self.buckets[bucket_of(us)], 1);
        add(&self.sum_us, us);
        add(&self.count, 1);
    }
    fn snapshot(&self) -> LatencyHistogram {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LatencyHistogram {
            buckets: std::array::from_fn(|i| r(&self.buckets[i])),
            sum_us: r(&self.sum_us),
            count: r(&self.count),
        }
    }
}

/// A snapshot of a latency histogram with log2 buckets in microseconds.
///
/// Counts only grow, so the histogram of an interval is the difference of two snapshots
/// ([`LatencyHistogram::since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyHistogram {
    /// `buckets[i]`: requests that took `[2^i, 2^(i+1))` µs (see [`LATENCY_BUCKETS`]).
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Sum of all recorded times in µs.
    pub sum_us: u64,
    /// Number of recorded times.
    pub count: u64,
}

impl LatencyHistogram {
    /// Lower bound in µs of bucket `i` (0 for bucket 0).
    pub fn bucket_lower_us(i: usize) -> u64 {
        if i == 0 { 0 } else { 1u64 << i.min(63) }
    }

    /// Exclusive upper bound in µs of bucket `i` (`2^(i+1)`; the last bucket is open-ended
    /// and reports its nominal bound).
    pub fn bucket_upper_us(i: usize) -> u64 {
        1u64 << (i + 1).min(63)
    }

    /// Mean time in µs (0 when nothing was recorded).
    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.count).unwrap_or(0)
    }

    /// Approximate `p`-th percentile (`p` in 0..=100) in µs: the upper bound of the bucket
    /// holding the request of that rank, so the true value is at most this (within a factor
    /// of 2). 0 when nothing was recorded.
    pub fn percentile_us(&self, p: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let p = if p.is_nan() {
            100.0
        } else {
            p.clamp(0.0, 100.0)
        };
        // Rank of the request (1-based), at least the first one.
        let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::bucket_upper_us(i);
            }
        }
        Self::bucket_upper_us(LATENCY_BUCKETS - 1)
    }

    /// The requests recorded after `earlier` (a snapshot of the same histogram taken before
    /// this one); counts that went backwards (a restarted source) saturate at 0.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        LatencyHistogram {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            count: self.count.saturating_sub(earlier.count),
        }
    }
}

/// Adapter-wide shared state reachable without adapter locks.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    late_completions: AtomicU64,
    spurious_interrupts: AtomicU64,
    dropped_wmi_events: AtomicU64,
    errors_logged: AtomicU64,
    restarts: AtomicU64,
    error_log: Mutex<VecDeque<ErrorLogEntry>>,
}

impl Shared {
    pub(crate) fn count_late_completion(&self) {
        add(&self.late_completions, 1);
    }
    pub(crate) fn count_spurious_interrupt(&self) {
        add(&self.spurious_interrupts, 1);
    }
    pub(crate) fn count_dropped_wmi_event(&self) {
        add(&self.dropped_wmi_events, 1);
    }
    pub(crate) fn count_restart(&self) {
        add(&self.restarts, 1);
    }
    pub(crate) fn log_error(&self, e: ErrorLogEntry) {
        tracing::warn!(address = %e.address, code = ?e.code, unique_id = e.unique_id, "port error log");
        add(&self.errors_logged, 1);
        let mut log = self.error_log.lock();
        if log.len() == ERROR_LOG_DEPTH {
            log.pop_front();
        }
        log.push_back(e);
    }
    pub(crate) fn error_log(&self) -> Vec<ErrorLogEntry> {
        self.error_log.lock().iter().copied().collect()
    }
    pub(crate) fn port_counters(&self) -> PortCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PortCounters {
            late_completions: r(&self.late_completions),
            spurious_interrupts: r(&self.spurious_interrupts),
            dropped_wmi_events: r(&self.dropped_wmi_events),
            errors_logged: r(&self.errors_logged),
            adapter_restarts: r(&self.restarts),
        }
    }
}

/// Port-level counters of an adapter (beyond the I/O [`Statistics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Completions of requests the port had already finished (dropped, never delivered).
    pub late_completions: u64,
    /// Interrupts the miniport's `interrupt` routine did not claim.
    pub spurious_interrupts: u64,
    /// WMI events dropped because the latch was full.
    pub dropped_wmi_events: u64,
    /// Error-log entries written.
    pub errors_logged: u64,
    /// Adapter restarts by the timeout escalation.
    pub adapter_restarts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_log2_microseconds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 1);
        assert_eq!(bucket_of(4), 2);
        assert_eq!(bucket_of(1023), 9);
        assert_eq!(bucket_of(1024), 10);
        assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
        for i in 1..LATENCY_BUCKETS {
            let lo = LatencyHistogram::bucket_lower_us(i);
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(LatencyHistogram::bucket_upper_us(i) - 1), i);
        }

        let c = LatencyCounters::default();
        c.record(Duration::from_nanos(500));
        c.record(Duration::from_micros(5));
        c.record(Duration::from_millis(1));
        let h = c.snapshot();
        assert_eq!(h.count, 3);
        assert_eq!(h.sum_us, 1005);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[2], 1);
        assert_eq!(h.buckets[9], 1);
        assert_eq!(h.mean_us(), 335);
    }

    #[test]
    fn percentiles_and_intervals() {
        let c = LatencyCounters::default();
        assert_eq!(c.snapshot().percentile_us(99.0), 0);
        assert_eq!(c.snapshot().mean_us(), 0);
        // 98 fast requests (~100 µs, bucket 6) and 2 slow ones (~10 ms, bucket 13).
        for _ in 0..98 {
            c.record(Duration::from_micros(100));
        }
        let before = c.snapshot();
        for _ in 0..2 {
            c.record(Duration::from_micros(10_000));
        }
        let h = c.snapshot();
        assert_eq!(h.percentile_us(50.0), 128);
        assert_eq!(h.percentile_us(98.0), 128);
        assert_eq!(h.percentile_us(99.0), 16_384);
        assert_eq!(h.percentile_us(100.0), 16_384);
        assert_eq!(h.percentile_us(0.0), 128);

        let d = h.since(&before);
        assert_eq!(d.count, 2);
        assert_eq!(d.sum_us, 20_000);
        assert_eq!(d.mean_us(), 10_000);
        assert_eq!(d.percentile_us(50.0), 16_384);
        assert_eq!(before.since(&h).count, 0);
    }

    #[test]
    fn failures_are_counted_by_kind() {
        let c = Counters::default();
        let ok = Outcome::of(SrbStatus::SUCCESS.with(SrbStatus::AUTOSENSE_VALID), 0);
        c.record_completion(0x28, ok, 512);
        let cc = Outcome::of(
            SrbStatus::ERROR.with(SrbStatus::AUTOSENSE_VALID),
            scsi_status::CHECK_CONDITION,
        );
        c.record_completion(0x2A, cc, 512);
        c.record_completion(0x00, Outcome::of(SrbStatus::SELECTION_TIMEOUT, 0), 0);
        c.record_completion(0x00, Outcome::of(SrbStatus::BUS_RESET, 0), 0);
        c.record_completion(0x00, Outcome::of(SrbStatus::ABORTED, 0), 0);
        c.record_completion(0x00, Outcome::of(SrbStatus::TIMEOUT, 0), 0);
        c.record_completion(0x00, Outcome::of(SrbStatus::ERROR, scsi_status::BUSY), 0);
        let s = c.snapshot();
        assert_eq!(s.commands, 7);
        assert_eq!(s.errors, 6);
        assert_eq!(s.bytes_read, 512);
        assert_eq!(s.bytes_written, 0);
        assert_eq!(s.errors_of(ErrorKind::CheckCondition), 1);
        assert_eq!(s.errors_of(ErrorKind::SelectionTimeout), 1);
        assert_eq!(s.errors_of(ErrorKind::BusReset), 1);
        assert_eq!(s.errors_of(ErrorKind::Aborted), 1);
        assert_eq!(s.errors_of(ErrorKind::Other), 2);
        assert_eq!(s.error_kinds.iter().sum::<u64>(), s.errors);
    }

    #[test]
    fn outstanding_is_a_gauge() {
        let c = Counters::default();
        c.submitted();
        c.submitted();
        assert_eq!(c.snapshot().outstanding, 2);
        c.completed();
        c.completed();
        assert_eq!(c.snapshot().outstanding, 0);
    }
}
