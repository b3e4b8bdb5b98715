//! (6) Arbitrary PDU sequences through the iSCSI core to device logical units.
//!
//! After a valid login, each record builds one PDU:
//! - `kind` byte: low 3 bits pick SCSI Command, Data-Out, NOP-Out, Task Management,
//!   Text, Logout, or a raw BHS; bit 3 immediate; bits 4-5 the LUN (0-3; LUNs 0
//!   and 1 are mapped to RAM LUs); bit 6 a CmdSN outside the window.
//! - 16 bytes: the CDB (commands) or BHS bytes 20-35 (others);
//! - a big-endian u16 EDTL / transfer field, a flags byte, a data length byte
//!   and that many data bytes.
//!
//! Every SCSI Command gets a fresh ITT. Checked: no panic; no ITT gets two final
//! responses; every task handed to the service gets exactly one final response
//! while the connection is up; no block of the (initially zeroed) LUs holds data
//! outside the LBA ranges of the write-type commands that reached them.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use iscsi::conn::{Action, Connection};
use iscsi::pdu::{self, Bhs, FrameLimits, Opcode};
use iscsi::registry::Shared;
use iscsi::service::ScsiService;

use crate::conn_util::login_pdu;
use crate::input::{take, take_u8, take_u16};
use device::backend::RamBackend;
use device::{ItNexus, LogicalUnit, LuConfig, Residual, ScsiRequest};
use iscsi::config::{LunMapping, ServerConfig, TargetConfig};
use iscsi::service::{
    DataDirection, LuHandle, Nexus, ScsiTask, TmfFunction, TmfRequest, TmfResponse,
};
use std::collections::HashMap;

/// A [`ScsiService`] that executes every task synchronously on device LUs.
pub struct DeviceService {
    pub lus: Vec<LogicalUnit>,
    /// (LU index, first LBA, end LBA) of every write-type command submitted.
    pub written: Mutex<Vec<(usize, u64, u64)>>,
}

/// The LBA range a write-type CDB may change (`None` for commands that do not write
/// data: UNMAP and friends only ever zero blocks, which the check below allows).
/// WRITE SAME with NUMBER OF LOGICAL BLOCKS = 0 counts as "to the end".
pub fn write_range(cdb: &[u8; 16]) -> Option<(u64, u64)> {
    let be = |r: std::ops::Range<usize>| cdb[r].iter().fold(0u64, |a, &b| (a << 8) | b as u64);
    let (lba, len, same) = match cdb[0] {
        0x0a => {
            let lba = be(1..4) & 0x1f_ffff;
            let len = if cdb[4] == 0 { 256 } else { cdb[4] as u64 };
            (lba, len, false)
        }
        0x2a | 0x2e => (be(2..6), be(7..9), false),
        0x41 => (be(2..6), be(7..9), true),
        0xaa | 0xae => (be(2..6), be(6..10), false),
        0x8a | 0x8e | 0x8b => (be(2..10), be(10..14), false),
        0x93 => (be(2..10), be(10..14), true),
        0x89 => (be(2..10), cdb[13] as u64, false),
        _ => return None,
    };
    let end = if same && len == 0 {
        u64::MAX
    } else {
        lba.saturating_add(len)
    };
    Some((lba, end))
}

impl DeviceService {
    pub fn new(count: usize, blocks: u64) -> Arc<DeviceService> {
        let lus = (0..count)
            .map(|i| {
                let cfg = LuConfig {
                    lun: i as u64,
                    ..LuConfig::default()
                };
                let ram = Arc::new(RamBackend::new(blocks, 512).expect("RAM backend"));
                LogicalUnit::new(cfg, ram)
            })
            .collect();
        Arc::new(DeviceService {
            lus,
            written: Mutex::new(Vec::new()),
        })
    }

    /// Panics if a block of any LU holds non-zero data outside every range a
    /// write-type command was allowed to change (the LUs start zeroed).
    pub fn check_unwritten_blocks_are_zero(&self) {
        let written = self.written.lock().expect("written ranges");
        for (i, lu) in self.lus.iter().enumerate() {
            let bs = lu.block_size() as usize;
            let mut buf = vec![0u8; bs];
            for lba in 0..lu.num_blocks() {
                lu.backend()
                    .read_at(lba * bs as u64, &mut buf)
                    .expect("RAM read");
                if buf.iter().all(|&b| b == 0) {
                    continue;
                }
                let covered = written
                    .iter()
                    .any(|&(l, start, end)| l == i && (start..end).contains(&lba));
                assert!(
                    covered,
                    "LU {i} LBA {lba} changed outside every written range"
                );
            }
        }
    }
}

impl ScsiService for DeviceService {
    fn submit(&self, mut task: ScsiTask) {
        let Some(lu) = self.lus.get(task.lu.0 as usize) else {
            task.check_condition(0x05, 0x25, 0x00);
            task.complete();
            return;
        };
        if let Some((start, end)) = write_range(&task.cdb) {
            let lu_index = task.lu.0 as usize;
            self.written
                .lock()
                .expect("written ranges")
                .push((lu_index, start, end));
        }
        let edtl = task.expected_transfer_length as usize;
        let mut data_in = std::mem::take(&mut task.data_in);
        data_in.clear();
        if task.direction == DataDirection::Read {
            data_in.resize(edtl, 0);
        }
        let mut req = ScsiRequest {
            nexus: ItNexus::new(task.nexus, 1),
            cdb: &task.cdb,
            data_out: &task.data_out,
            data_in: &mut data_in,
        };
        let c = lu.execute(&mut req);
        data_in.truncate(c.data_in_len);
        task.data_in = data_in;
        task.status = c.status.as_u8();
        if let Some(s) = c.sense {
            task.sense.set(&s);
        }
        let expected = edtl as u64;
        task.transfer_length = match c.residual {
            Residual::None => expected,
            Residual::Underflow(u) => expected.saturating_sub(u as u64),
            Residual::Overflow(o) => expected + o as u64,
        }
        .min(u32::MAX as u64) as u32;
        task.complete();
    }

    fn task_management(&self, request: &TmfRequest) -> TmfResponse {
        let reset = |h: LuHandle, kind| {
            if let Some(lu) = self.lus.get(h.0 as usize) {
                lu.reset(kind);
            }
        };
        match request.function {
            // Tasks complete inside submit: nothing is ever left to abort.
            TmfFunction::AbortTask { .. } => TmfResponse::TaskDoesNotExist,
            TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet => TmfResponse::FunctionComplete,
            TmfFunction::LogicalUnitReset => {
                if let Some(h) = request.lu {
                    reset(h, device::ResetKind::LogicalUnitReset);
                }
                TmfResponse::FunctionComplete
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                for h in &request.target_lus {
                    reset(*h, device::ResetKind::TargetReset);
                }
                TmfResponse::FunctionComplete
            }
        }
    }

    fn nexus_established(&self, nexus: &Nexus) {
        for lu in &self.lus {
            lu.register_nexus(ItNexus::new(nexus.id, 1), Some(&nexus.initiator_name));
        }
    }

    fn nexus_lost(&self, nexus: &Nexus) {
        for lu in &self.lus {
            lu.nexus_loss(ItNexus::new(nexus.id, 1));
        }
    }
}

fn config() -> ServerConfig {
    let mut t = TargetConfig::new(iscsi::testing::TEST_IQN);
    for l in 0..2u16 {
        t.luns.push(LunMapping {
            lun: l,
            handle: LuHandle(l as u64),
        });
    }
    ServerConfig {
        targets: vec![t],
        ..Default::default()
    }
}

/// Final responses per ITT in `out`: SCSI Response, or Data-In with the S bit.
fn count_final(out: &mut BytesMut, finals: &mut HashMap<u32, u32>) {
    let limits = FrameLimits {
        header_digest: false,
        data_digest: false,
        max_data_segment: 1 << 24,
    };
    while let Some(p) = pdu::decode(out, &limits).expect("target output frames") {
        let is_final = match p.bhs.opcode() {
            Some(Opcode::ScsiResponse) => true,
            Some(Opcode::DataIn) => p.bhs.flags() & 0x01 != 0,
            _ => false,
        };
        if is_final {
            *finals.entry(p.bhs.itt()).or_default() += 1;
        }
    }
}

pub fn run(data: &[u8]) {
    run_counted(data);
}

/// [`run`], returning (tasks handed to the service, final responses seen).
pub fn run_counted(mut data: &[u8]) -> (usize, usize) {
    let service = DeviceService::new(2, 128);
    let shared = Shared::new(config(), service.clone());
    let control = shared.new_conn_control();
    let mut conn = Connection::new(shared, control, None);
    let mut input = BytesMut::from(&login_pdu(1)[..]);
    conn.receive(&mut input);
    let mut finals: HashMap<u32, u32> = HashMap::new();
    let mut submitted: Vec<u32> = Vec::new();
    let mut out = conn.out.take_all();
    count_final(&mut out, &mut finals);
    let mut cmd_sn: u32 = 1;
    let mut next_itt: u32 = 0x1000;
    let mut records = 0;
    while let Some(kind) = take_u8(&mut data) {
        records += 1;
        if records > 48 || conn.close_reason().is_some() {
            break;
        }
        let fields = take(&mut data, 16);
        let edtl = take_u16(&mut data) as u32;
        let flags = take_u8(&mut data).unwrap_or(0);
        let dlen = take_u8(&mut data).unwrap_or(0) as usize;
        let payload = take(&mut data, dlen);
        let lun = iscsi::conn::encode_lun(((kind >> 4) & 3) as u16);
        let immediate = kind & 0x08 != 0;
        let sn = if kind & 0x40 != 0 {
            cmd_sn.wrapping_add(1000)
        } else {
            cmd_sn
        };
        let mut b = match kind & 7 {
            0 | 1 => {
                let mut b = Bhs::new(Opcode::ScsiCommand);
                // F, R/W from the flags byte, task attribute SIMPLE.
                b.0[1] = 0x80 | (flags & 0x60) | 1;
                b.set_u64(8, lun);
                b.set_u32(16, next_itt);
                next_itt += 1;
                b.set_u32(20, edtl);
                b.0[32..32 + fields.len()].copy_from_slice(fields);
                b
            }
            2 => {
                let mut b = Bhs::new(Opcode::DataOut);
                b.0[1] = flags & 0x80;
                b.set_u64(8, lun);
                // ITT of a recent command, TTT / DataSN / offset from the fields.
                b.set_u32(16, next_itt.wrapping_sub(1 + (flags as u32 & 3)));
                b.0[20..20 + fields.len()].copy_from_slice(fields);
                b
            }
            3 => {
                let mut b = Bhs::new(Opcode::NopOut);
                b.0[1] = 0x80;
                b.set_u32(16, 0x10_0000 + records);
                b.set_u32(20, pdu::RESERVED_TAG);
                b
            }
            4 => {
                let mut b = Bhs::new(Opcode::TaskMgmtRequest);
                b.0[1] = 0x80 | (flags & 0x0f);
                b.set_u64(8, lun);
                b.set_u32(16, 0x20_0000 + records);
                b.set_u32(20, next_itt.wrapping_sub(1 + (edtl & 3)));
                b
            }
            5 => {
                let mut b = Bhs::new(Opcode::TextRequest);
                b.0[1] = 0x80;
                b.set_u32(16, 0x30_0000 + records);
                b.set_u32(20, pdu::RESERVED_TAG);
                b
            }
            6 => {
                let mut b = Bhs::new(Opcode::LogoutRequest);
                b.0[1] = 0x80 | (flags & 0x03);
                b.set_u32(16, 0x40_0000 + records);
                b
            }
            _ => {
                let mut b = Bhs::default();
                b.0[0] = flags & 0x7f;
                b.0[1] = edtl as u8;
                b.set_u32(16, 0x50_0000 + records);
                b.0[20..20 + fields.len()].copy_from_slice(fields);
                b
            }
        };
        if immediate {
            b.0[0] |= 0x40;
        }
        if kind & 7 != 2 {
            b.set_u32(24, sn);
            // Every non-immediate request in the window takes a CmdSN.
            if !immediate && kind & 0x40 == 0 && kind & 7 != 7 {
                cmd_sn = cmd_sn.wrapping_add(1);
            }
        }
        let mut input = BytesMut::new();
        pdu::encode(&mut input, &b, &[payload], false, false);
        conn.receive(&mut input);
        let actions: Vec<Action> = conn.take_actions().collect();
        for a in actions {
            match a {
                Action::Submit(t) => {
                    submitted.push(t.itt);
                    service.submit(t);
                }
                Action::TaskManagement { itt, request } => {
                    let r = service.task_management(&request);
                    conn.task_management_done(itt, &request, r);
                }
            }
        }
        conn.process_completions();
        let mut out = conn.out.take_all();
        count_final(&mut out, &mut finals);
    }
    for (itt, n) in &finals {
        assert!(*n <= 1, "ITT {itt:#x} has {n} final responses");
    }
    if conn.close_reason().is_none() {
        for itt in &submitted {
            assert_eq!(finals.get(itt), Some(&1), "submitted ITT {itt:#x}");
        }
    }
    conn.closed();
    service.check_unwritten_blocks_are_zero();
    (submitted.len(), finals.values().map(|&n| n as usize).sum())
}
