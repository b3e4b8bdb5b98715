//! What a soak client does and what it learns: random reads and writes of pattern blocks
//! inside the client's own regions, and the verification of every block it reads.
//!
//! A [`Workload`] owns one client's regions (disjoint LBA ranges of LUs no other client
//! touches). It hands out [`Op`]s (never two at once on the same block), takes their outcomes
//! back ([`Workload::write_done`], [`Workload::read_done`]) and keeps the books
//! ([`ClientStats`]). It does no I/O itself: the iSCSI session and the class-driver client
//! carry the operations, so both are judged by the same rules.

use std::fmt::Write as _;

use serde::Serialize;

use super::pattern::{self, BlockState, Found, Stamp, UNIT, Verdict};

/// One contiguous range of 512-byte blocks on one LU, owned by one client.
#[derive(Debug)]
pub struct Region {
    /// The LU's index in the soak's LU table (stamped into every block).
    pub lu: u32,
    /// First LBA.
    pub first: u64,
    /// What the client knows about each block.
    pub blocks: Vec<BlockState>,
}

/// An operation handed out by [`Workload::next_op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Index of the region in the workload.
    pub region: usize,
    /// The LU (same as the region's).
    pub lu: u32,
    /// First LBA on the LU.
    pub lba: u64,
    /// Blocks.
    pub blocks: u32,
    /// `Some(generation)` for a write, `None` for a read.
    pub write: Option<u64>,
}

/// One client's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStats {
    /// Writes the target acknowledged (GOOD).
    pub writes_acked: u64,
    /// Writes that failed or timed out (their blocks hold old or new data).
    pub writes_failed: u64,
    /// Reads that returned data.
    pub reads_ok: u64,
    /// Reads that failed (not a violation: nothing to check).
    pub reads_failed: u64,
    /// Blocks read and checked.
    pub blocks_verified: u64,
    /// Blocks that held older data than an acknowledged write: lost acknowledged writes.
    pub lost: u64,
    /// Blocks that held something no write of the client put there.
    pub corrupt: u64,
    /// The first few violations, described.
    pub violations: Vec<String>,
}

/// Violations described per client at most.
const MAX_DESCRIBED: usize = 8;

/// One client's regions, random source and books.
#[derive(Debug)]
pub struct Workload {
    /// The client id stamped into every block.
    pub client: u32,
    /// The regions.
    pub regions: Vec<Region>,
    /// The figures.
    pub stats: ClientStats,
    rng: u64,
    next_generation: u64,
    /// Most blocks per operation.
    pub max_blocks: u32,
    /// Percentage of operations that are writes.
    pub write_percent: u32,
}

impl Workload {
    /// A workload for `client` over `regions` given as (LU, first LBA, blocks).
    pub fn new(client: u32, seed: u64, regions: &[(u32, u64, u64)]) -> Self {
        Self {
            client,
            regions: regions
                .iter()
                .map(|&(lu, first, n)| Region {
                    lu,
                    first,
                    blocks: vec![BlockState::default(); n as usize],
                })
                .collect(),
            stats: ClientStats::default(),
            rng: seed ^ u64::from(client).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            next_generation: 1,
            max_blocks: 8,
            write_percent: 60,
        }
    }

    fn random(&mut self, below: u64) -> u64 {
        pattern::splitmix(&mut self.rng) % below.max(1)
    }

    /// A new random operation on blocks with nothing in flight, or `None` if a few tries
    /// found only busy blocks.
    pub fn next_op(&mut self) -> Option<Op> {
        for _ in 0..8 {
            let region = self.random(self.regions.len() as u64) as usize;
            let n = self.regions[region].blocks.len() as u64;
            let blocks = 1 + self.random(u64::from(self.max_blocks)).min(n - 1);
            let start = self.random(n - blocks + 1);
            let write = self.random(100) < u64::from(self.write_percent);
            if let Some(op) = self.claim(region, start, blocks as u32, write) {
                return Some(op);
            }
        }
        None
    }

    /// Claims `blocks` blocks at `start` (index in the region) for one operation, if none
    /// is busy.
    pub fn claim(&mut self, region: usize, start: u64, blocks: u32, write: bool) -> Option<Op> {
        let r = &mut self.regions[region];
        let range = start as usize..start as usize + blocks as usize;
        if r.blocks.get(range.clone())?.iter().any(|b| b.busy) {
            return None;
        }
        for b in &mut r.blocks[range] {
            b.busy = true;
        }
        let write = write.then(|| {
            let g = self.next_generation;
            self.next_generation += 1;
            g
        });
        Some(Op {
            region,
            lu: r.lu,
            lba: r.first + start,
            blocks,
            write,
        })
    }

    /// The data of write `op` (its pattern units).
    pub fn data(&self, op: &Op) -> Vec<u8> {
        let mut buf = vec![0u8; op.blocks as usize * UNIT];
        let generation = op.write.expect("a write");
        for (i, unit) in buf.chunks_mut(UNIT).enumerate() {
            pattern::fill(unit, self.stamp(op.lu, op.lba + i as u64), generation);
        }
        buf
    }

    fn stamp(&self, lu: u32, lba: u64) -> Stamp {
        Stamp {
            client: self.client,
            lu,
            lba,
        }
    }

    fn states(&mut self, op: &Op) -> &mut [BlockState] {
        let r = &mut self.regions[op.region];
        let start = (op.lba - r.first) as usize;
        &mut r.blocks[start..start + op.blocks as usize]
    }

    /// `op` was never sent: its blocks are free again and nothing changed.
    pub fn release(&mut self, op: &Op) {
        for b in self.states(op) {
            b.busy = false;
        }
    }

    /// Write `op` ended: acknowledged (`ok`) or not.
    pub fn write_done(&mut self, op: &Op, ok: bool) {
        let generation = op.write.expect("a write");
        for b in self.states(op) {
            b.busy = false;
            if ok {
                b.acked(generation);
            } else {
                b.failed(generation);
            }
        }
        if ok {
            self.stats.writes_acked += 1;
        } else {
            self.stats.writes_failed += 1;
        }
    }

    /// Read `op` ended with `data` (`None`: it failed). Checks every block.
    pub fn read_done(&mut self, op: &Op, data: Option<&[u8]>) {
        let Some(data) = data else {
            for b in self.states(op) {
                b.busy = false;
            }
            self.stats.reads_failed += 1;
            return;
        };
        self.stats.reads_ok += 1;
        for i in 0..op.blocks as usize {
            let lba = op.lba + i as u64;
            let stamp = self.stamp(op.lu, lba);
            let found = match data.get(i * UNIT..(i + 1) * UNIT) {
                Some(unit) => pattern::decode(unit, stamp),
                None => Found::Corrupt,
            };
            let r = &mut self.regions[op.region];
            let state = &mut r.blocks[(lba - r.first) as usize];
            state.busy = false;
            let before = (state.known, state.maybe.clone());
            let verdict = state.check(found);
            self.stats.blocks_verified += 1;
            if verdict == Verdict::Ok {
                continue;
            }
            match verdict {
                Verdict::Lost => self.stats.lost += 1,
                _ => self.stats.corrupt += 1,
            }
            if self.stats.violations.len() < MAX_DESCRIBED {
                let mut s = String::new();
                let _ = write!(
                    s,
                    "client {} lu {} lba {lba}: {verdict:?}: found {found:?}, known {} maybe {:?}",
                    self.client, op.lu, before.0, before.1
                );
                self.stats.violations.push(s);
            }
        }
    }

    /// The blocks to read back at the end: runs of touched blocks, as (region, start, blocks)
    /// with at most `max` blocks each.
    pub fn touched_runs(&self, max: u32) -> Vec<(usize, u64, u32)> {
        let mut runs = Vec::new();
        for (ri, r) in self.regions.iter().enumerate() {
            let mut i = 0;
            while i < r.blocks.len() {
                if !r.blocks[i].touched() {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < r.blocks.len() && r.blocks[i].touched() && i - start < max as usize {
                    i += 1;
                }
                runs.push((ri, start as u64, (i - start) as u32));
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_never_overlap_in_flight_and_reads_verify_writes() {
        let mut w = Workload::new(1, 42, &[(0, 100, 16)]);
        let mut ops = Vec::new();
        while let Some(op) = w.next_op() {
            ops.push(op);
            if ops.len() > 32 {
                break;
            }
        }
        let mut seen = vec![0u32; 16];
        for op in &ops {
            for i in 0..op.blocks {
                seen[(op.lba - 100) as usize + i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|n| *n <= 1), "{seen:?}");
        // Complete the writes, then read everything back from a "disk" that applied them.
        let mut disk = vec![0u8; 16 * UNIT];
        for op in ops.iter().filter(|o| o.write.is_some()) {
            let data = w.data(op);
            let at = (op.lba - 100) as usize * UNIT;
            disk[at..at + data.len()].copy_from_slice(&data);
            w.write_done(op, true);
        }
        for op in ops.iter().filter(|o| o.write.is_none()) {
            w.read_done(op, None);
        }
        let read = w.claim(0, 0, 16, false).expect("all idle");
        w.read_done(&read, Some(&disk));
        assert_eq!(w.stats.blocks_verified, 16);
        assert_eq!((w.stats.lost, w.stats.corrupt), (0, 0), "{:?}", w.stats);
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let mut w = Workload::new(1, 42, &[(0, 0, 4)]);
        let op = w.claim(0, 0, 2, true).expect("idle");
        let old = w.data(&op);
        w.write_done(&op, true);
        let op2 = w.claim(0, 0, 2, true).expect("idle");
        w.write_done(&op2, true);
        // The disk still holds the first write.
        let read = w.claim(0, 0, 2, false).expect("idle");
        w.read_done(&read, Some(&old));
        assert_eq!(w.stats.lost, 2);
        assert_eq!(w.stats.violations.len(), 2);
        assert_eq!(w.touched_runs(64), vec![(0, 0, 2)]);
    }
}
