//! What each submitting thread does next: which unit (a `block_size`-sized, aligned piece of the
//! disk), read or write, and — in verify mode — what a written unit holds and whether a read
//! one holds what was last written.

use crate::Pattern;

/// SplitMix64: a small, fast, deterministic generator (the quality a workload needs).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The next I/O of a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextIo {
    pub(crate) unit: u64,
    pub(crate) write: bool,
}

/// One thread's workload.
#[derive(Debug)]
pub(crate) struct Workload {
    pattern: Pattern,
    rng: Rng,
    /// Units of the disk.
    units: u64,
    /// This thread's index and the number of threads.
    thread: u64,
    threads: u64,
    /// Next unit of a sequential pattern.
    cursor: u64,
    /// Verify mode: the generation last written to each unit (0 = never: reads as zeroes).
    generations: Option<Vec<u32>>,
}

impl Workload {
    pub(crate) fn new(
        pattern: Pattern,
        units: u64,
        thread: u32,
        threads: u32,
        seed: u64,
        verify: bool,
    ) -> Self {
        let (thread, threads) = (u64::from(thread), u64::from(threads.max(1)));
        Workload {
            pattern,
            rng: Rng::new(seed ^ thread.wrapping_mul(0xA24B_AED4_963E_E407)),
            units,
            thread,
            threads,
            // Sequential threads start spread over the disk.
            cursor: units * thread / threads,
            generations: verify.then(|| vec![0; units as usize]),
        }
    }

    /// Picks the next I/O. In verify mode a thread only touches its own units (unit % threads
    /// == thread) and never one in `busy` (in flight), so what it reads is what it last wrote.
    pub(crate) fn next(&mut self, busy: &[u64]) -> NextIo {
        let write = match self.pattern {
            Pattern::Read | Pattern::RandRead => false,
            Pattern::Write | Pattern::RandWrite => true,
            Pattern::Mixed { read_percent } => self.rng.below(100) >= u64::from(read_percent),
        };
        let sequential = matches!(self.pattern, Pattern::Read | Pattern::Write);
        for _ in 0..64 {
            let unit = if sequential {
                let u = self.cursor;
                self.cursor = (self.cursor + 1) % self.units;
                u
            } else {
                self.rng.below(self.units)
            };
            let unit = if self.generations.is_some() {
                let own = unit - unit % self.threads + self.thread;
                if own >= self.units { self.thread } else { own }
            } else {
                unit
            };
            if self.generations.is_none() || !busy.contains(&unit) {
                return NextIo { unit, write };
            }
        }
        // Only possible with a queue deeper than this thread's units: read the first free one.
        let unit = (0..self.units)
            .map(|i| i * self.threads + self.thread)
            .find(|u| *u < self.units && !busy.contains(u))
            .unwrap_or(self.thread);
        NextIo { unit, write }
    }

    /// Verify mode: fills `buf` for a write of `unit` and records its new generation.
    pub(crate) fn fill(&mut self, unit: u64, buf: &mut [u8]) {
        if let Some(g) = &mut self.generations {
            let slot = &mut g[unit as usize];
            *slot = slot.wrapping_add(1).max(1);
            fill_pattern(unit, *slot, buf);
        }
    }

    /// Verify mode: checks a read of `unit`; true when it holds the last generation written.
    pub(crate) fn check(&self, unit: u64, buf: &[u8]) -> bool {
        match &self.generations {
            Some(g) => check_pattern(unit, g[unit as usize], buf),
            None => true,
        }
    }

    /// True in verify mode.
    pub(crate) fn verifying(&self) -> bool {
        self.generations.is_some()
    }
}

fn seed_of(unit: u64, generation: u32) -> u64 {
    let mut r = Rng::new(unit ^ (u64::from(generation) << 40) ^ 0x5EED);
    r.next_u64()
}

/// The verifiable content of `unit` at `generation`: words 0 and 1 hold the unit and the
/// generation, the rest a sequence seeded by both. Generation 0 is all zeroes.
pub(crate) fn fill_pattern(unit: u64, generation: u32, buf: &mut [u8]) {
    if generation == 0 {
        buf.fill(0);
        return;
    }
    let seed = seed_of(unit, generation);
    for (k, w) in buf.chunks_exact_mut(8).enumerate() {
        let v = match k {
            0 => unit,
            1 => u64::from(generation),
            _ => seed.wrapping_add((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        w.copy_from_slice(&v.to_le_bytes());
    }
}

/// True when `buf` is [`fill_pattern`]`(unit, generation)`.
pub(crate) fn check_pattern(unit: u64, generation: u32, buf: &[u8]) -> bool {
    if generation == 0 {
        return buf.iter().all(|b| *b == 0);
    }
    let seed = seed_of(unit, generation);
    buf.chunks_exact(8).enumerate().all(|(k, w)| {
        let v = match k {
            0 => unit,
            1 => u64::from(generation),
            _ => seed.wrapping_add((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        w == v.to_le_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_round_trips_and_catches_changes() {
        let mut b = vec![0u8; 4096];
        fill_pattern(77, 3, &mut b);
        assert!(check_pattern(77, 3, &b));
        assert!(
            !check_pattern(77, 2, &b),
            "an older generation is a mismatch"
        );
        assert!(
            !check_pattern(78, 3, &b),
            "another unit's data is a mismatch"
        );
        b[1000] ^= 1;
        assert!(!check_pattern(77, 3, &b));
        assert!(check_pattern(5, 0, &[0u8; 512]));
    }

    #[test]
    fn verify_threads_keep_to_their_units_and_avoid_busy_ones() {
        let mut w = Workload::new(Pattern::RandWrite, 100, 1, 3, 9, true);
        for _ in 0..1000 {
            let n = w.next(&[1, 4]);
            assert_eq!(n.unit % 3, 1);
            assert!(n.unit < 100 && n.unit != 1 && n.unit != 4);
            assert!(n.write);
        }
        let mut r = Workload::new(Pattern::Mixed { read_percent: 70 }, 1000, 0, 1, 1, false);
        let reads = (0..10_000).filter(|_| !r.next(&[]).write).count();
        assert!((6500..7500).contains(&reads), "{reads} reads of 10000");
        let mut s = Workload::new(Pattern::Read, 10, 0, 2, 1, false);
        let seq: Vec<u64> = (0..12).map(|_| s.next(&[]).unit).collect();
        assert_eq!(seq, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    }
}
