//! Counter updates gathered by the DPC-token holder during one pass of the deferred stage and
//! folded into the shared atomic [`Counters`] before the pass delivers its completions.
//!
//! Every request is counted twice (adapter and LU) in about eight counters each when it is
//! accepted and completed; as atomic read-modify-writes that is a few hundred cycles per
//! request on the hot path. Only the token holder counts requests, so it adds into a plain
//! [`Tally`] and folds the sums in with one load and store per counter that changed
//! ([`Tally::fold`]; no locked instruction: the token holder is the only writer) at the end of
//! the pass, before any sink sees a completion: a reader of
//! [`Statistics`](crate::Statistics) never sees a completion the counters do not have yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stats::{Counters, ErrorKind, LATENCY_BUCKETS, Outcome, bucket_of, classify};

/// Pending increments of one [`Counters`] (adapter or LU). Runner thread only.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Something to fold.
    pub(crate) dirty: bool,
    submitted: u64,
    completed: u64,
    commands: u64,
    reads: u64,
    writes: u64,
    bytes_read: u64,
    bytes_written: u64,
    errors: u64,
    error_kinds: [u64; ErrorKind::COUNT],
    flushed: u64,
    aborted: u64,
    buckets: [u64; LATENCY_BUCKETS],
    sum_us: u64,
    count: u64,
}

impl Tally {
    /// [`Counters::submitted`].
    pub(crate) fn submitted(&mut self) {
        self.dirty = true;
        self.submitted += 1;
    }

    /// [`Counters::completed`].
    pub(crate) fn completed(&mut self) {
        self.dirty = true;
        self.completed += 1;
    }

    /// [`Counters::record_completion`].
    pub(crate) fn record_completion(&mut self, opcode: u8, outcome: Outcome, bytes: u64) {
        self.dirty = true;
        let ok = outcome.0.is_none();
        self.commands += 1;
        match classify(opcode) {
            Some(true) => {
                self.reads += 1;
                if ok {
                    self.bytes_read += bytes;
                }
            }
            Some(false) => {
                self.writes += 1;
                if ok {
                    self.bytes_written += bytes;
                }
            }
            None => {}
        }
        if let Some(kind) = outcome.0 {
            self.errors += 1;
            self.error_kinds[kind as usize] += 1;
        }
    }

    /// [`Counters::record_latency`].
    pub(crate) fn record_latency(&mut self, elapsed: Duration) {
        self.dirty = true;
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    /// [`Counters::flushed`].
    pub(crate) fn flushed(&mut self) {
        self.dirty = true;
        self.flushed += 1;
    }

    /// [`Counters::aborted`].
    pub(crate) fn aborted(&mut self) {
        self.dirty = true;
        self.aborted += 1;
    }

    /// Adds everything gathered to `c` and starts over.
    pub(crate) fn fold(&mut self, c: &Counters) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        // Only the DPC-token holder writes the counters (this fold, and the runner's rare
        // direct bumps), and the token's mutex orders one holder's writes before the next
        // one's: a plain load and store does what `fetch_add` would, without the locked
        // instruction (readers load relaxed either way).
        fn add(c: &AtomicU64, n: &mut u64) {
            if *n != 0 {
                let v = c.load(Ordering::Relaxed);
                c.store(v.wrapping_add(std::mem::take(n)), Ordering::Relaxed);
            }
        }
        // The gauge goes up before it goes down, so it never wraps below zero.
        add(&c.outstanding, &mut self.submitted);
        if self.completed != 0 {
            let v = c.outstanding.load(Ordering::Relaxed);
            c.outstanding.store(
                v.wrapping_sub(std::mem::take(&mut self.completed)),
                Ordering::Relaxed,
            );
        }
        add(&c.commands, &mut self.commands);
        add(&c.reads, &mut self.reads);
        add(&c.writes, &mut self.writes);
        add(&c.bytes_read, &mut self.bytes_read);
        add(&c.bytes_written, &mut self.bytes_written);
        add(&c.errors, &mut self.errors);
        for (c, n) in c.error_kinds.iter().zip(self.error_kinds.iter_mut()) {
            add(c, n);
        }
        add(&c.flushed, &mut self.flushed);
        add(&c.aborted, &mut self.aborted);
        if self.count != 0 {
            for (c, n) in c.latency.buckets.iter().zip(self.buckets.iter_mut()) {
                add(c, n);
            }
            add(&c.latency.sum_us, &mut self.sum_us);
            add(&c.latency.count, &mut self.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SrbStatus;

    #[test]
    fn a_folded_tally_counts_like_the_counters_themselves() {
        let direct = Counters::default();
        let folded = Counters::default();
        let mut t = Tally::default();
        let cases = [
            (0x28, SrbStatus::SUCCESS, 0u8, 4096u64, 3u64),
            (0x2A, SrbStatus::SUCCESS, 0, 512, 70),
            (0x28, SrbStatus::ERROR, 0x02, 0, 1500),
            (0x12, SrbStatus::SELECTION_TIMEOUT, 0, 0, 0),
        ];
        for (op, status, scsi, bytes, us) in cases {
            for _ in 0..3 {
                direct.submitted();
                t.submitted();
                let o = Outcome::of(status, scsi);
                direct.record_completion(op, o, bytes);
                t.record_completion(op, Outcome::of(status, scsi), bytes);
                direct.record_latency(Duration::from_micros(us));
                t.record_latency(Duration::from_micros(us));
                direct.completed();
                t.completed();
            }
        }
        direct.flushed();
        t.flushed();
        direct.aborted();
        t.aborted();
        t.submitted();
        direct.submitted();
        assert_ne!(direct.snapshot(), folded.snapshot());
        t.fold(&folded);
        assert!(!t.dirty);
        assert_eq!(direct.snapshot(), folded.snapshot());
        assert_eq!(folded.snapshot().outstanding, 1);
        // Folding again adds nothing.
        t.fold(&folded);
        assert_eq!(direct.snapshot(), folded.snapshot());
    }
}
