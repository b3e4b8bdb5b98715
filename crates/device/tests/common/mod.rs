//! Test harness: a logical unit over a fault-injectable RAM disk, and helpers that send
//! raw CDB bytes and check status, sense and data-in.
#![allow(dead_code)]

use std::sync::Arc;

use device::backend::{FaultyBackend, RamBackend};
use device::{Completion, ItNexus, LogicalUnit, LuConfig, Residual, ScsiRequest, ScsiStatus};
use scsi::{Asc, Sense, SenseKey};

pub const I1: ItNexus = ItNexus::new(0x1111, 1);
pub const I2: ItNexus = ItNexus::new(0x2222, 1);
pub const I3: ItNexus = ItNexus::new(0x3333, 2);

/// Blocks in the test disk: 16 MiB at 512 bytes.
pub const BLOCKS_512: u64 = 32768;

pub struct Lu {
    pub lu: LogicalUnit,
    pub disk: Arc<FaultyBackend<RamBackend>>,
}

pub fn config() -> LuConfig {
    LuConfig {
        vendor: "SCSIPORT".into(),
        product: "GOLDEN DISK".into(),
        revision: "0042".into(),
        serial: "SN0001".into(),
        name: "iqn.2026-11.test:golden,lun0".into(),
        lun: 0,
        max_transfer_blocks: 1024,
        max_write_same_blocks: 4096,
        max_unmap_blocks: 8192,
        max_unmap_descriptors: 256,
        max_compare_and_write_blocks: 16,
        ..LuConfig::default()
    }
}

pub fn lu_with(blocks: u64, bs: u32, cfg: LuConfig) -> Lu {
    let disk = Arc::new(FaultyBackend::new(RamBackend::new(blocks, bs).unwrap()));
    let lu = LogicalUnit::new(cfg, disk.clone());
    for n in [I1, I2, I3] {
        lu.register_nexus(n, None);
    }
    Lu { lu, disk }
}

pub fn lu512() -> Lu {
    lu_with(BLOCKS_512, 512, config())
}

pub fn lu4k() -> Lu {
    lu_with(4096, 4096, config())
}

/// Sends `cdb` with `out` as data-out and room for `in_len` bytes of data-in.
pub fn run(
    lu: &LogicalUnit,
    n: ItNexus,
    cdb: &[u8],
    out: &[u8],
    in_len: usize,
) -> (Completion, Vec<u8>) {
    let mut buf = vec![0u8; in_len];
    let mut req = ScsiRequest {
        nexus: n,
        cdb,
        data_out: out,
        data_in: &mut buf,
    };
    let c = lu.execute(&mut req);
    buf.truncate(c.data_in_len);
    if c.status == ScsiStatus::CheckCondition {
        assert!(c.sense.is_some(), "CHECK CONDITION without sense");
    } else {
        assert!(c.sense.is_none(), "sense without CHECK CONDITION");
    }
    (c, buf)
}

/// Runs a command that must complete GOOD; returns the data-in.
pub fn good(lu: &LogicalUnit, n: ItNexus, cdb: &[u8], out: &[u8], in_len: usize) -> Vec<u8> {
    let (c, d) = run(lu, n, cdb, out, in_len);
    assert_eq!(
        c.status,
        ScsiStatus::Good,
        "{cdb:02x?}: sense {:?}",
        c.sense.map(|s| Sense::parse(&s))
    );
    d
}

pub fn sense_of(c: &Completion) -> Sense {
    Sense::parse(c.sense.as_ref().expect("sense present")).expect("sense parses")
}

/// Asserts CHECK CONDITION with `key`, `asc` and field pointer `fp` = (in CDB, byte, bit).
pub fn check(c: &Completion, key: SenseKey, asc: Asc, fp: Option<(bool, u16, Option<u8>)>) {
    assert_eq!(
        c.status,
        ScsiStatus::CheckCondition,
        "expected CHECK CONDITION"
    );
    let s = sense_of(c);
    assert_eq!((s.key, s.asc), (key, asc), "sense {s}");
    assert_eq!(s.field_pointer(), fp, "field pointer of {s}");
}

pub fn expect_check(
    lu: &LogicalUnit,
    n: ItNexus,
    cdb: &[u8],
    out: &[u8],
    key: SenseKey,
    asc: Asc,
    fp: Option<(bool, u16, Option<u8>)>,
) -> Completion {
    let (c, d) = run(lu, n, cdb, out, 65536);
    assert!(d.is_empty(), "no data with CHECK CONDITION");
    check(&c, key, asc, fp);
    c
}

pub fn invalid_cdb(lu: &LogicalUnit, cdb: &[u8], byte: u16, bit: u8) {
    expect_check(
        lu,
        I1,
        cdb,
        &[],
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_CDB,
        Some((true, byte, Some(bit))),
    );
}

pub fn lba_oob(lu: &LogicalUnit, cdb: &[u8], out: &[u8]) {
    expect_check(
        lu,
        I1,
        cdb,
        out,
        SenseKey::IllegalRequest,
        Asc::LBA_OUT_OF_RANGE,
        None,
    );
}

pub fn conflict(lu: &LogicalUnit, n: ItNexus, cdb: &[u8], out: &[u8], in_len: usize) {
    let (c, _) = run(lu, n, cdb, out, in_len);
    assert_eq!(c.status, ScsiStatus::ReservationConflict, "{cdb:02x?}");
}

pub fn residual(c: &Completion) -> Residual {
    c.residual
}

// ---- CDB builders (raw bytes, as an initiator sends them) ----

pub fn cdb10(op: u8, b1: u8, lba: u32, len: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = len.to_be_bytes();
    [op, b1, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

pub fn cdb12(op: u8, b1: u8, lba: u32, len: u32) -> [u8; 12] {
    let l = lba.to_be_bytes();
    let n = len.to_be_bytes();
    [op, b1, l[0], l[1], l[2], l[3], n[0], n[1], n[2], n[3], 0, 0]
}

pub fn cdb16(op: u8, b1: u8, lba: u64, len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = b1;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

pub fn read10(lba: u32, len: u16) -> [u8; 10] {
    cdb10(0x28, 0, lba, len)
}

pub fn write10(lba: u32, len: u16) -> [u8; 10] {
    cdb10(0x2a, 0, lba, len)
}

/// Writes `data` at `lba` with WRITE(16).
pub fn write_blocks(lu: &LogicalUnit, lba: u64, data: &[u8]) {
    let bs = lu.block_size() as usize;
    good(
        lu,
        I1,
        &cdb16(0x8a, 0, lba, (data.len() / bs) as u32),
        data,
        0,
    );
}

/// Reads `blocks` blocks at `lba` with READ(16).
pub fn read_blocks(lu: &LogicalUnit, lba: u64, blocks: u32) -> Vec<u8> {
    let bs = lu.block_size() as usize;
    good(
        lu,
        I1,
        &cdb16(0x88, 0, lba, blocks),
        &[],
        blocks as usize * bs,
    )
}

/// A recognisable block: every byte holds `(lba + i) % 251`.
pub fn pattern(lba: u64, blocks: usize, bs: usize) -> Vec<u8> {
    (0..blocks * bs)
        .map(|i| ((lba as usize * bs + i) % 251) as u8)
        .collect()
}

pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let a = alloc.to_be_bytes();
    [0x12, u8::from(evpd), page, a[0], a[1], 0]
}
