//! The port's own WMI data blocks: I/O statistics of the adapter and of each logical unit,
//! answered by the port from its counters ([`crate::Statistics`]) without calling the miniport.
//!
//! Both blocks have the same fixed little-endian layout, [`StatisticsBlock`]
//! ([`STATISTICS_BLOCK_SIZE`] bytes per instance):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 1 | PathId (0xFF in the adapter block) |
//! | 1 | 1 | TargetId (0xFF in the adapter block) |
//! | 2 | 1 | Lun (0xFF in the adapter block) |
//! | 3 | 5 | reserved, 0 |
//! | 8 | 8 | commands: EXECUTE_SCSI requests completed |
//! | 16 | 8 | reads |
//! | 24 | 8 | writes |
//! | 32 | 8 | bytes read (successful reads) |
//! | 40 | 8 | bytes written (successful writes) |
//! | 48 | 8 | errors: commands completed with a status other than SUCCESS |
//! | 56 | 8 | errors: CHECK CONDITION |
//! | 64 | 8 | errors: SELECTION_TIMEOUT |
//! | 72 | 8 | errors: BUS_RESET |
//! | 80 | 8 | errors: ABORTED |
//! | 88 | 8 | errors: any other status (the five kinds add up to `errors`) |
//! | 96 | 8 | timeouts (requests whose TimeOutValue ran out) |
//! | 104 | 8 | resets (bus, LU, adapter restarts, reported resets) |
//! | 112 | 8 | busy (BUSY / QUEUE FULL completions) |
//! | 120 | 8 | queue depth: requests submitted and not yet completed, now |
//! | 128 | 8 | latency: number of times recorded |
//! | 136 | 8 | latency: sum in µs |
//! | 144 | 256 | latency histogram: 32 × u64, bucket i = `[2^i, 2^(i+1))` µs |
//!
//! [`ADAPTER_STATISTICS_GUID`] has one instance (the adapter); [`LU_STATISTICS_GUID`] one
//! instance per logical unit, in the order of [`crate::Adapter::logical_units`] (the scan order:
//! PathId, TargetId, Lun ascending); each instance names its LU in its first three bytes.
//! The blocks are read-only, not expensive and fire no events.

use crate::srb::Address;
use crate::stats::{ErrorKind, LATENCY_BUCKETS, LatencyHistogram, Statistics};
use crate::wmi::WmiGuidRegInfo;

/// The adapter statistics block (one instance). Bytes in the order the port carries them.
pub const ADAPTER_STATISTICS_GUID: [u8; 16] = [
    0x5c, 0x51, 0x5a, 0x90, 0x3e, 0x1d, 0x4a, 0x7b, 0x9f, 0x20, 0x53, 0x43, 0x53, 0x49, 0x00, 0x01,
];
/// The logical-unit statistics block (one instance per LU).
pub const LU_STATISTICS_GUID: [u8; 16] = [
    0x5c, 0x51, 0x5a, 0x90, 0x3e, 0x1d, 0x4a, 0x7b, 0x9f, 0x20, 0x53, 0x43, 0x53, 0x49, 0x00, 0x02,
];

/// Bytes of one instance of a statistics block.
pub const STATISTICS_BLOCK_SIZE: usize = 400;

/// Offset of the first latency bucket.
const LATENCY_OFFSET: usize = 144;
const _: () = assert!(LATENCY_OFFSET + 8 * LATENCY_BUCKETS == STATISTICS_BLOCK_SIZE);

/// The PathId/TargetId/Lun bytes of the adapter instance.
const ADAPTER_ADDRESS: u8 = 0xFF;

/// True for the GUIDs the port answers itself.
pub fn is_port_block(guid: &[u8; 16]) -> bool {
    *guid == ADAPTER_STATISTICS_GUID || *guid == LU_STATISTICS_GUID
}

/// The registration of the port's blocks on an adapter with `lu_count` logical units.
pub fn port_reg_info(lu_count: u32) -> [WmiGuidRegInfo; 2] {
    [
        WmiGuidRegInfo {
            guid: ADAPTER_STATISTICS_GUID,
            instance_count: 1,
            flags: 0,
        },
        WmiGuidRegInfo {
            guid: LU_STATISTICS_GUID,
            instance_count: lu_count,
            flags: 0,
        },
    ]
}

/// One instance of a statistics block: whose counters, and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatisticsBlock {
    /// The LU, or `None` for the adapter instance.
    pub address: Option<Address>,
    /// The counters. `flushed` and `aborted` of [`Statistics`] (which count every function,
    /// not only commands) are not carried and decode as 0; `error_kinds` carries the aborted
    /// commands.
    pub statistics: Statistics,
}

/// The u64 fields from offset 8 to the latency histogram, in layout order.
fn scalar_fields(s: &Statistics) -> [u64; 17] {
    [
        s.commands,
        s.reads,
        s.writes,
        s.bytes_read,
        s.bytes_written,
        s.errors,
        s.errors_of(ErrorKind::CheckCondition),
        s.errors_of(ErrorKind::SelectionTimeout),
        s.errors_of(ErrorKind::BusReset),
        s.errors_of(ErrorKind::Aborted),
        s.errors_of(ErrorKind::Other),
        s.timeouts,
        s.resets,
        s.busy,
        s.outstanding,
        s.latency.count,
        s.latency.sum_us,
    ]
}
const _: () = assert!(8 + 17 * 8 == LATENCY_OFFSET);

impl StatisticsBlock {
    /// Writes the instance into `out` (exactly [`STATISTICS_BLOCK_SIZE`] bytes).
    pub fn encode(&self, out: &mut [u8; STATISTICS_BLOCK_SIZE]) {
        out.fill(0);
        match self.address {
            Some(a) => out[..3].copy_from_slice(&[a.path_id, a.target_id, a.lun]),
            None => out[..3].fill(ADAPTER_ADDRESS),
        }
        for (i, v) in scalar_fields(&self.statistics).iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        for (i, v) in self.statistics.latency.buckets.iter().enumerate() {
            let o = LATENCY_OFFSET + 8 * i;
            out[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The instance as bytes.
    pub fn to_bytes(&self) -> [u8; STATISTICS_BLOCK_SIZE] {
        let mut b = [0u8; STATISTICS_BLOCK_SIZE];
        self.encode(&mut b);
        b
    }

    /// Reads one instance from the first [`STATISTICS_BLOCK_SIZE`] bytes of `data` (`None` if
    /// shorter).
    pub fn decode(data: &[u8]) -> Option<StatisticsBlock> {
        let b: &[u8; STATISTICS_BLOCK_SIZE] = data.get(..STATISTICS_BLOCK_SIZE)?.try_into().ok()?;
        let u = |o: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(v)
        };
        let f: [u64; 17] = std::array::from_fn(|i| u(8 + 8 * i));
        let address = if b[..3] == [ADAPTER_ADDRESS; 3] {
            None
        } else {
            Some(Address::new(b[0], b[1], b[2]))
        };
        let statistics = Statistics {
            commands: f[0],
            reads: f[1],
            writes: f[2],
            bytes_read: f[3],
            bytes_written: f[4],
            errors: f[5],
            error_kinds: [f[6], f[7], f[8], f[9], f[10]],
            timeouts: f[11],
            resets: f[12],
            busy: f[13],
            outstanding: f[14],
            latency: LatencyHistogram {
                buckets: std::array::from_fn(|i| u(LATENCY_OFFSET + 8 * i)),
                sum_us: f[16],
                count: f[15],
            },
            flushed: 0,
            aborted: 0,
        };
        Some(StatisticsBlock {
            address,
            statistics,
        })
    }

    /// Every instance in `data` (a QUERY_ALL_DATA answer); trailing bytes that do not make a
    /// whole instance are ignored.
    pub fn decode_all(data: &[u8]) -> Vec<StatisticsBlock> {
        data.chunks_exact(STATISTICS_BLOCK_SIZE)
            .filter_map(StatisticsBlock::decode)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_and_has_the_documented_offsets() {
        let mut s = Statistics {
            commands: 1,
            reads: 2,
            writes: 3,
            bytes_read: 4,
            bytes_written: 5,
            errors: 6,
            error_kinds: [7, 8, 9, 10, 11],
            timeouts: 12,
            resets: 13,
            busy: 14,
            outstanding: 15,
            ..Statistics::default()
        };
        s.latency.count = 16;
        s.latency.sum_us = 17;
        s.latency.buckets[0] = 100;
        s.latency.buckets[31] = 131;
        let blk = StatisticsBlock {
            address: Some(Address::new(1, 2, 3)),
            statistics: s,
        };
        let b = blk.to_bytes();
        assert_eq!(&b[..8], &[1, 2, 3, 0, 0, 0, 0, 0]);
        for (i, want) in (1u64..=17).enumerate() {
            let o = 8 + 8 * i;
            assert_eq!(u64::from_le_bytes(b[o..o + 8].try_into().unwrap()), want);
        }
        assert_eq!(u64::from_le_bytes(b[144..152].try_into().unwrap()), 100);
        assert_eq!(u64::from_le_bytes(b[392..400].try_into().unwrap()), 131);
        assert_eq!(StatisticsBlock::decode(&b), Some(blk));
        assert_eq!(StatisticsBlock::decode(&b[..399]), None);

        let adapter = StatisticsBlock {
            address: None,
            statistics: Statistics::default(),
        };
        let mut two = adapter.to_bytes().to_vec();
        assert_eq!(&two[..3], &[0xFF; 3]);
        two.extend_from_slice(&b);
        two.push(0);
        assert_eq!(StatisticsBlock::decode_all(&two), vec![adapter, blk]);
    }

    #[test]
    fn port_blocks_are_recognised() {
        assert!(is_port_block(&ADAPTER_STATISTICS_GUID));
        assert!(is_port_block(&LU_STATISTICS_GUID));
        assert!(!is_port_block(&[0; 16]));
        let reg = port_reg_info(3);
        assert_eq!(reg[0].instance_count, 1);
        assert_eq!(reg[1].instance_count, 3);
    }
}
