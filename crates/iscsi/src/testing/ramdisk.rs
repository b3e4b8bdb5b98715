//! A simple in-memory SCSI block device implementing [`ScsiService`].
//!
//! Answers INQUIRY (standard, VPD 0x00/0x80/0x83), TEST UNIT READY, READ
//! CAPACITY (10)/(16), READ/WRITE (6/10/12/16), WRITE AND VERIFY
//! (10/12/16), SYNCHRONIZE CACHE (10/16), MODE SENSE (6)/(10), REQUEST
//! SENSE and REPORT LUNS; anything else gets CHECK CONDITION / ILLEGAL
//! REQUEST / INVALID COMMAND OPERATION CODE. Commands complete on the
//! submitting thread unless [`RamDisk::set_hold`] parks them (for abort tests).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::service::{
    DataDirection, LuHandle, Nexus, ScsiService, ScsiTask, TmfFunction, TmfRequest, TmfResponse,
    status,
};

const ILLEGAL_REQUEST: u8 = 0x05;

struct Lu {
    block_size: u32,
    blocks: u64,
    data: RwLock<Vec<u8>>,
}

/// In-memory disks keyed by [`LuHandle`].
#[derive(Default)]
pub struct RamDisk {
    lus: RwLock<HashMap<LuHandle, Arc<Lu>>>,
    hold: Mutex<Option<Vec<ScsiTask>>>,
    /// Nexus events seen (established = true / lost = false), for tests.
    pub nexus_events: Mutex<Vec<(Nexus, bool)>>,
    /// Task management requests seen, for tests.
    pub tmf_log: Mutex<Vec<TmfRequest>>,
}

impl RamDisk {
    pub fn new() -> Arc<RamDisk> {
        Arc::new(RamDisk::default())
    }

    /// Adds a zero-filled LU.
    pub fn add_lu(&self, handle: LuHandle, blocks: u64, block_size: u32) {
        let len = (blocks * block_size as u64) as usize;
        self.lus.write().insert(
            handle,
            Arc::new(Lu {
                block_size,
                blocks,
                data: RwLock::new(vec![0u8; len]),
            }),
        );
    }

    /// When `true`, submitted tasks are parked instead of executed, until
    /// released with `set_hold(false)` or aborted by task management.
    pub fn set_hold(&self, hold: bool) {
        let parked = {
            let mut h = self.hold.lock();
            if hold {
                h.get_or_insert_with(Vec::new);
                None
            } else {
                h.take()
            }
        };
        for t in parked.into_iter().flatten() {
            self.execute(t);
        }
    }

    /// Number of parked tasks.
    pub fn held(&self) -> usize {
        self.hold.lock().as_ref().map_or(0, |v| v.len())
    }

    /// Copy of an LU's bytes (tests).
    pub fn contents(&self, handle: LuHandle) -> Option<Vec<u8>> {
        self.lus
            .read()
            .get(&handle)
            .map(|lu| lu.data.read().clone())
    }

    fn execute(&self, mut t: ScsiTask) {
        // `data_in` may hold bytes of earlier commands (see `ScsiTask::data_in`).
        t.data_in.clear();
        let lu = self.lus.read().get(&t.lu).cloned();
        match lu {
            Some(lu) => execute_cdb(&lu, &mut t),
            None => t.check_condition(ILLEGAL_REQUEST, 0x25, 0x00),
        }
        t.complete();
    }
}

impl ScsiService for RamDisk {
    fn submit(&self, task: ScsiTask) {
        {
            let mut h = self.hold.lock();
            if let Some(parked) = h.as_mut() {
                parked.push(task);
                return;
            }
        }
        self.execute(task);
    }

    fn task_management(&self, request: &TmfRequest) -> TmfResponse {
        self.tmf_log.lock().push(request.clone());
        let mut aborted = Vec::new();
        {
            let mut h = self.hold.lock();
            if let Some(parked) = h.as_mut() {
                let mut i = 0;
                while i < parked.len() {
                    let t = &parked[i];
                    let hit = match request.function {
                        TmfFunction::AbortTask { referenced_itt } => {
                            t.itt == referenced_itt && t.nexus == request.nexus
                        }
                        TmfFunction::AbortTaskSet => {
                            Some(t.lu) == request.lu && t.nexus == request.nexus
                        }
                        TmfFunction::ClearTaskSet | TmfFunction::LogicalUnitReset => {
                            Some(t.lu) == request.lu
                        }
                        TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                            request.target_lus.contains(&t.lu)
                        }
                    };
                    if hit {
                        aborted.push(parked.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
        }
        let found = !aborted.is_empty();
        for mut t in aborted {
            t.status = status::TASK_ABORTED;
            t.data_in.clear();
            t.complete();
        }
        match request.function {
            TmfFunction::AbortTask { .. } if !found => TmfResponse::TaskDoesNotExist,
            _ => TmfResponse::FunctionComplete,
        }
    }

    fn nexus_established(&self, nexus: &Nexus) {
        self.nexus_events.lock().push((nexus.clone(), true));
    }

    fn nexus_lost(&self, nexus: &Nexus) {
        self.nexus_events.lock().push((nexus.clone(), false));
        // I_T nexus loss aborts the nexus' parked tasks.
        let mut aborted = Vec::new();
        if let Some(parked) = self.hold.lock().as_mut() {
            let mut i = 0;
            while i < parked.len() {
                if parked[i].nexus == nexus.id {
                    aborted.push(parked.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        for mut t in aborted {
            t.status = status::TASK_ABORTED;
            t.complete();
        }
    }
}

fn be16(b: &[u8]) -> u32 {
    u16::from_be_bytes([b[0], b[1]]) as u32
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8"))
}

/// Puts `data` (truncated to `alloc` and to the initiator's EDTL) into the
/// task's Data-In buffer and records the transfer length.
fn reply(t: &mut ScsiTask, data: &[u8], alloc: usize) {
    let n = data.len().min(alloc);
    t.transfer_length = n as u32;
    if t.direction == DataDirection::Read {
        let m = n.min(t.expected_transfer_length as usize);
        t.data_in.extend_from_slice(&data[..m]);
    }
}

fn execute_cdb(lu: &Lu, t: &mut ScsiTask) {
    let cdb = t.cdb;
    t.status = status::GOOD;
    match cdb[0] {
        0x00 => {} // TEST UNIT READY
        0x03 => {
            // REQUEST SENSE: no pending sense.
            let mut d = [0u8; 18];
            d[0] = 0x70;
            d[7] = 10;
            reply(t, &d, cdb[4] as usize);
        }
        0x12 => inquiry(lu, t),
        0x1a | 0x5a => mode_sense(t),
        0x25 => {
            let last = lu.blocks.saturating_sub(1).min(u32::MAX as u64) as u32;
            let mut d = [0u8; 8];
            d[..4].copy_from_slice(&last.to_be_bytes());
            d[4..].copy_from_slice(&lu.block_size.to_be_bytes());
            reply(t, &d, 8);
        }
        0x9e if cdb[1] & 0x1f == 0x10 => {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(lu.blocks - 1).to_be_bytes());
            d[8..12].copy_from_slice(&lu.block_size.to_be_bytes());
            reply(t, &d, be32(&cdb[10..14]) as usize);
        }
        0x35 | 0x91 => {} // SYNCHRONIZE CACHE (10/16): nothing cached
        0xa0 => t.check_condition(ILLEGAL_REQUEST, 0x20, 0x00), // answered by the front end
        0x08 | 0x28 | 0xa8 | 0x88 => {
            let (lba, blocks) = rw_range(&cdb);
            read(lu, t, lba, blocks);
        }
        0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e => {
            let (lba, blocks) = rw_range(&cdb);
            write(lu, t, lba, blocks);
        }
        _ => t.check_condition(ILLEGAL_REQUEST, 0x20, 0x00),
    }
}

fn rw_range(cdb: &[u8; 16]) -> (u64, u64) {
    match cdb[0] {
        0x08 | 0x0a => {
            let lba = (((cdb[1] & 0x1f) as u64) << 16) | (cdb[2] as u64) << 8 | cdb[3] as u64;
            let n = if cdb[4] == 0 { 256 } else { cdb[4] as u64 };
            (lba, n)
        }
        0x28 | 0x2a | 0x2e => (be32(&cdb[2..6]) as u64, be16(&cdb[7..9]) as u64),
        0xa8 | 0xaa | 0xae => (be32(&cdb[2..6]) as u64, be32(&cdb[6..10]) as u64),
        _ => (be64(&cdb[2..10]), be32(&cdb[10..14]) as u64),
    }
}

fn in_range(lu: &Lu, lba: u64, blocks: u64) -> bool {
    lba.checked_add(blocks).is_some_and(|end| end <= lu.blocks)
}

fn read(lu: &Lu, t: &mut ScsiTask, lba: u64, blocks: u64) {
    if !in_range(lu, lba, blocks) {
        return t.check_condition(ILLEGAL_REQUEST, 0x21, 0x00);
    }
    let bs = lu.block_size as u64;
    t.transfer_length = (blocks * bs).min(u32::MAX as u64) as u32;
    if t.direction != DataDirection::Read {
        return;
    }
    let n = (blocks * bs).min(t.expected_transfer_length as u64) as usize;
    let start = (lba * bs) as usize;
    let data = lu.data.read();
    t.data_in.extend_from_slice(&data[start..start + n]);
}

fn write(lu: &Lu, t: &mut ScsiTask, lba: u64, blocks: u64) {
    if !in_range(lu, lba, blocks) {
        return t.check_condition(ILLEGAL_REQUEST, 0x21, 0x00);
    }
    let bs = lu.block_size as u64;
    let want = blocks * bs;
    t.transfer_length = want.min(u32::MAX as u64) as u32;
    // Only whole blocks actually received are written (EDTL may be short).
    let have = (t.data_out.len() as u64).min(want) / bs * bs;
    let start = (lba * bs) as usize;
    let mut data = lu.data.write();
    data[start..start + have as usize].copy_from_slice(&t.data_out[..have as usize]);
}

fn inquiry(lu: &Lu, t: &mut ScsiTask) {
    let cdb = t.cdb;
    let alloc = be16(&cdb[3..5]) as usize;
    let evpd = cdb[1] & 1 != 0;
    let _ = lu;
    if !evpd {
        if cdb[2] != 0 {
            return t.check_condition(ILLEGAL_REQUEST, 0x24, 0x00);
        }
        let mut d = [0u8; 36];
        d[0] = 0x00; // direct-access block device
        d[2] = 0x06; // SPC-4
        d[3] = 0x02; // response data format 2
        d[4] = 31;
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(b"SCSIPORT");
        d[16..32].copy_from_slice(b"RAMDISK         ");
        d[32..36].copy_from_slice(b"0001");
        return reply(t, &d, alloc);
    }
    let serial = format!("RAM{:08X}", t.lu.0);
    let mut d = vec![0u8, cdb[2], 0, 0];
    match cdb[2] {
        0x00 => d.extend_from_slice(&[0x00, 0x80, 0x83]),
        0x80 => d.extend_from_slice(serial.as_bytes()),
        0x83 => {
            // NAA IEEE Registered designator (type 3) derived from the handle.
            let mut naa = [0u8; 8];
            naa[..].copy_from_slice(
                &(0x6000_0000_0000_0000u64 | (t.lu.0 & 0xffff_ffff)).to_be_bytes(),
            );
            d.extend_from_slice(&[0x01, 0x03, 0x00, 8]);
            d.extend_from_slice(&naa);
            // T10 vendor ID designator (type 1).
            let vid = format!("SCSIPORT{serial}");
            d.extend_from_slice(&[0x02, 0x01, 0x00, vid.len() as u8]);
            d.extend_from_slice(vid.as_bytes());
        }
        _ => return t.check_condition(ILLEGAL_REQUEST, 0x24, 0x00),
    }
    let len = (d.len() - 4) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    reply(t, &d, alloc);
}

fn mode_sense(t: &mut ScsiTask) {
    let cdb = t.cdb;
    let ten = cdb[0] == 0x5a;
    let page = cdb[2] & 0x3f;
    let alloc = if ten {
        be16(&cdb[7..9]) as usize
    } else {
        cdb[4] as usize
    };
    let caching: [u8; 20] = {
        let mut p = [0u8; 20];
        p[0] = 0x08;
        p[1] = 18;
        p
    };
    let control: [u8; 12] = {
        let mut p = [0u8; 12];
        p[0] = 0x0a;
        p[1] = 10;
        p
    };
    let mut pages = Vec::new();
    match page {
        0x08 => pages.extend_from_slice(&caching),
        0x0a => pages.extend_from_slice(&control),
        0x3f => {
            pages.extend_from_slice(&caching);
            pages.extend_from_slice(&control);
        }
        _ => return t.check_condition(ILLEGAL_REQUEST, 0x24, 0x00),
    }
    let mut d = Vec::new();
    if ten {
        let len = (6 + pages.len()) as u16;
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    } else {
        d.extend_from_slice(&[(3 + pages.len()) as u8, 0, 0, 0]);
    }
    d.extend_from_slice(&pages);
    reply(t, &d, alloc);
}
