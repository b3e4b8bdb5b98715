//! (1) CDB parsing and execution against a RAM logical unit.
//!
//! Input: a sequence of records.
//! - `op` byte: bits 0-1 the I_T nexus (one of four), bits 2-3 the data direction
//!   (0 none, 1 data-in, 2 data-out, 3 the command's own per the table), bit 4 the
//!   prepare/do_io/finish path instead of `execute`, bits 5-7 = 7 an event instead of a
//!   command (reset / nexus loss / register, chosen by the next byte).
//! - `cdb_len` byte (mod 33), then the CDB bytes.
//! - a big-endian u16 expected transfer length; for data-out that many bytes follow
//!   (fewer if the input ends).

use std::sync::Arc;

use crate::input::{take, take_u8, take_u16};
use device::backend::RamBackend;
use device::table::DataDirection;
use device::{ItNexus, LogicalUnit, LuConfig, Prepared, ResetKind, ScsiRequest, ScsiStatus};

/// Blocks of the RAM LU (512 bytes each).
pub const BLOCKS: u64 = 256;

pub fn run(mut data: &[u8]) {
    let ram = Arc::new(RamBackend::new(BLOCKS, 512).expect("small RAM backend"));
    let lu = LogicalUnit::new(LuConfig::default(), ram);
    let nexuses: [ItNexus; 4] = [
        ItNexus::new(1, 1),
        ItNexus::new(2, 1),
        ItNexus::new(1, 2),
        ItNexus::new(3, 2),
    ];
    for n in &nexuses[..3] {
        lu.register_nexus(*n, Some("iqn.2026-11.fuzz:init"));
    }
    let mut records = 0;
    while let Some(op) = take_u8(&mut data) {
        records += 1;
        if records > 64 {
            break;
        }
        let nexus = nexuses[(op & 3) as usize];
        if op >> 5 == 7 {
            match take_u8(&mut data).unwrap_or(0) % 5 {
                0 => lu.reset(ResetKind::PowerOn),
                1 => lu.reset(ResetKind::TargetReset),
                2 => lu.reset(ResetKind::LogicalUnitReset),
                3 => lu.nexus_loss(nexus),
                _ => lu.register_nexus(nexus, None),
            }
            continue;
        }
        let cdb_len = (take_u8(&mut data).unwrap_or(0) % 33) as usize;
        let cdb = take(&mut data, cdb_len);
        let edtl = take_u16(&mut data) as usize;
        let dir = match (op >> 2) & 3 {
            0 => None,
            1 => Some(DataDirection::In),
            2 => Some(DataDirection::Out),
            _ => LogicalUnit::direction_of(cdb),
        };
        let mut data_in = Vec::new();
        let mut data_out: &[u8] = &[];
        match dir {
            Some(DataDirection::In) => data_in = vec![0u8; edtl],
            Some(DataDirection::Out) => data_out = take(&mut data, edtl),
            _ => {}
        }
        let in_len = data_in.len();
        let mut req = ScsiRequest {
            nexus,
            cdb,
            data_out,
            data_in: &mut data_in,
        };
        let c = if op & 0x10 != 0 {
            match lu.prepare(&mut req) {
                Prepared::Done(c) => c,
                Prepared::Io(plan) => {
                    assert!(plan.len <= req.expected_len(), "plan beyond the buffer");
                    let r = lu.do_io(&plan, &mut req);
                    lu.finish(plan, r)
                }
            }
        } else {
            lu.execute(&mut req)
        };
        assert!(c.data_in_len <= in_len, "filled more than data-in");
        match c.status {
            ScsiStatus::CheckCondition => {
                let s = c.sense.expect("CHECK CONDITION carries sense");
                scsi::Sense::parse(&s).expect("sense the LU encodes parses");
            }
            _ => assert!(c.sense.is_none(), "sense without CHECK CONDITION"),
        }
    }
}
