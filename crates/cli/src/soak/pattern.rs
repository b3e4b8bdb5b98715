//! Verifiable block contents and what a client knows about each of its blocks.
//!
//! Every 512-byte unit a soak client writes names itself: a magic number, the LU, the LBA,
//! the client and a generation, a fill derived from them, and a checksum over the rest. A
//! block read back is therefore either all zeroes (never written), a well-formed pattern
//! (which says exactly which write put it there), or corrupt.
//!
//! [`BlockState`] is the client's knowledge of one block: the generation it is known to hold
//! (`known`; 0 for "never written, reads as zeroes") and the generations of writes that
//! failed since (`maybe`: a failed or timed-out write either did not land or landed whole —
//! the sim's rule — so the block holds `known` or one of `maybe`). An acknowledged write
//! makes its generation known and clears `maybe`; a read that finds one of the `maybe`
//! generations settles the question the same way.

/// Bytes per pattern unit: the smallest logical block size the stack supports.
pub const UNIT: usize = 512;

/// "SCSISOAK" in ASCII.
const MAGIC: u64 = 0x5343_5349_534f_414b;

/// Offsets of the header fields inside a unit (little-endian; this is our format, not SCSI's).
const OFF_MAGIC: usize = 0;
const OFF_LBA: usize = 8;
const OFF_GEN: usize = 16;
const OFF_CLIENT: usize = 24;
const OFF_LU: usize = 28;
const OFF_FILL: usize = 32;
const OFF_SUM: usize = UNIT - 8;

/// Who owns a block and where it is: every unit written carries these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The writing client.
    pub client: u32,
    /// The LU (index in the soak's LU table).
    pub lu: u32,
    /// The logical block address (in 512-byte units).
    pub lba: u64,
}

/// 64-bit FNV-1a.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64: the fill generator and the soak's random numbers.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `unit` (exactly [`UNIT`] bytes) with the pattern of `stamp` at generation `generation`.
pub fn fill(unit: &mut [u8], stamp: Stamp, generation: u64) {
    assert_eq!(unit.len(), UNIT);
    unit[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC.to_le_bytes());
    unit[OFF_LBA..OFF_LBA + 8].copy_from_slice(&stamp.lba.to_le_bytes());
    unit[OFF_GEN..OFF_GEN + 8].copy_from_slice(&generation.to_le_bytes());
    unit[OFF_CLIENT..OFF_CLIENT + 4].copy_from_slice(&stamp.client.to_le_bytes());
    unit[OFF_LU..OFF_LU + 4].copy_from_slice(&stamp.lu.to_le_bytes());
    let mut seed = stamp.lba ^ generation.rotate_left(32) ^ u64::from(stamp.client) << 48;
    for chunk in unit[OFF_FILL..OFF_SUM].chunks_mut(8) {
        let v = splitmix(&mut seed).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let sum = fnv(&unit[..OFF_SUM]);
    unit[OFF_SUM..].copy_from_slice(&sum.to_le_bytes());
}

/// What a unit read back holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// All zeroes: never written.
    Zero,
    /// A well-formed pattern of the expected stamp at this generation.
    Generation(u64),
    /// Anything else: a bad checksum or magic, or another block's or client's pattern.
    Corrupt,
}

/// Decodes `unit` and checks it belongs to `stamp`.
pub fn decode(unit: &[u8], stamp: Stamp) -> Found {
    if unit.len() != UNIT {
        return Found::Corrupt;
    }
    if unit.iter().all(|b| *b == 0) {
        return Found::Zero;
    }
    let u64_at = |o: usize| u64::from_le_bytes(unit[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(unit[o..o + 4].try_into().expect("4 bytes"));
    if u64_at(OFF_MAGIC) != MAGIC || u64_at(OFF_SUM) != fnv(&unit[..OFF_SUM]) {
        return Found::Corrupt;
    }
    let generation = u64_at(OFF_GEN);
    if u64_at(OFF_LBA) != stamp.lba
        || u32_at(OFF_CLIENT) != stamp.client
        || u32_at(OFF_LU) != stamp.lu
        || generation == 0
    {
        return Found::Corrupt;
    }
    // The checksum covers header and fill: a unit torn between two writes fails it.
    Found::Generation(generation)
}

/// What a read found, judged against the client's knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The block holds a legal generation.
    Ok,
    /// The block holds older data than an acknowledged write (or zeroes after one): a lost
    /// acknowledged write.
    Lost,
    /// The block holds something no write of this client put there.
    Corrupt,
}

/// A client's knowledge of one block.
#[derive(Debug, Clone, Default)]
pub struct BlockState {
    /// The generation the block is known to hold; 0: never written (zeroes).
    pub known: u64,
    /// Generations of failed writes since `known` was established: each may have landed.
    pub maybe: Vec<u64>,
    /// An operation on the block is in flight: the client issues no other until it ends.
    pub busy: bool,
}

/// Most failed attempts remembered per block; older ones are dropped (never needed in
/// practice: a block is read, which settles them, long before).
const MAX_MAYBE: usize = 64;

impl BlockState {
    /// A write of `generation` was acknowledged.
    pub fn acked(&mut self, generation: u64) {
        self.known = generation;
        self.maybe.clear();
    }

    /// A write of `generation` failed: the block may or may not hold it.
    pub fn failed(&mut self, generation: u64) {
        if self.maybe.len() == MAX_MAYBE {
            self.maybe.remove(0);
        }
        self.maybe.push(generation);
    }

    /// Judges what a read found and learns from it.
    pub fn check(&mut self, found: Found) -> Verdict {
        match found {
            Found::Corrupt => Verdict::Corrupt,
            Found::Zero if self.known == 0 => {
                self.maybe.clear();
                Verdict::Ok
            }
            Found::Zero => Verdict::Lost,
            Found::Generation(g) if g == self.known => {
                self.maybe.clear();
                Verdict::Ok
            }
            Found::Generation(g) if self.maybe.contains(&g) => {
                self.acked(g);
                Verdict::Ok
            }
            Found::Generation(g) if g < self.known => Verdict::Lost,
            Found::Generation(_) => Verdict::Corrupt,
        }
    }

    /// Written at least once (acknowledged or maybe).
    pub fn touched(&self) -> bool {
        self.known != 0 || !self.maybe.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Stamp = Stamp {
        client: 3,
        lu: 1,
        lba: 77,
    };

    #[test]
    fn a_filled_unit_decodes_to_its_generation() {
        let mut u = vec![0u8; UNIT];
        fill(&mut u, S, 9);
        assert_eq!(decode(&u, S), Found::Generation(9));
        assert_eq!(decode(&[0u8; UNIT], S), Found::Zero);
    }

    #[test]
    fn wrong_place_or_flipped_bit_is_corrupt() {
        let mut u = vec![0u8; UNIT];
        fill(&mut u, S, 9);
        assert_eq!(decode(&u, Stamp { lba: 78, ..S }), Found::Corrupt);
        assert_eq!(decode(&u, Stamp { client: 4, ..S }), Found::Corrupt);
        assert_eq!(decode(&u, Stamp { lu: 2, ..S }), Found::Corrupt);
        u[200] ^= 1;
        assert_eq!(decode(&u, S), Found::Corrupt);
    }

    #[test]
    fn knowledge_accepts_old_or_new_after_a_failed_write_and_nothing_else() {
        let mut b = BlockState::default();
        assert_eq!(b.check(Found::Zero), Verdict::Ok);
        b.acked(5);
        assert_eq!(b.check(Found::Generation(5)), Verdict::Ok);
        assert_eq!(b.check(Found::Zero), Verdict::Lost);
        assert_eq!(b.check(Found::Generation(4)), Verdict::Lost);
        assert_eq!(b.check(Found::Generation(6)), Verdict::Corrupt);
        b.failed(6);
        b.failed(7);
        assert_eq!(b.check(Found::Generation(5)), Verdict::Ok);
        // Reading 5 settled it: no failed write lands later, so 6 and 7 are no longer legal.
        assert_eq!(b.check(Found::Generation(7)), Verdict::Corrupt);
        b.failed(8);
        assert_eq!(b.check(Found::Generation(8)), Verdict::Ok);
        assert_eq!(b.known, 8);
        assert_eq!(b.check(Found::Generation(5)), Verdict::Lost);
    }
}
