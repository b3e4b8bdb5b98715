//! The connection recycles its Data-In buffers without zeroing them for READs (the medium
//! overwrites every byte it reports; `iscsi::ScsiTask::data_in`). This test makes sure no byte
//! of an earlier READ on the same connection ever reaches the initiator: after a READ that
//! fills the pooled buffers with a pattern, commands that return less than the expected
//! transfer length, nothing, or an error answer exactly as they do on a fresh connection.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{DEFAULT_IQN, Server};
use iscsi::testing::initiator::{Initiator, LoginOptions, ScsiResult};

const INITIATOR: &str = "iqn.2026-11.dev.scsiport:read-buffers-test";
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const PATTERN: u8 = 0xAB;
/// Blocks written with the pattern at LBA 0 (512-byte blocks: 32 KiB).
const PATTERN_BLOCKS: u16 = 64;

fn login(addr: &str, isid_tail: u8) -> Initiator {
    let addr: SocketAddr = addr.parse().expect("server address");
    let mut ini = Initiator::connect(addr, IO_TIMEOUT).expect("connect");
    let mut o = LoginOptions::normal(INITIATOR, DEFAULT_IQN);
    o.isid[5] = isid_tail;
    ini.login(&o).expect("login");
    // Clear the unit attention of the new nexus.
    for _ in 0..4 {
        if ini
            .scsi(0, &[0u8; 6], 0, None)
            .expect("TEST UNIT READY")
            .status
            == 0
        {
            return ini;
        }
    }
    panic!("TEST UNIT READY never answered GOOD");
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// The commands whose answers are compared: (name, CDB, expected transfer length).
fn probes() -> Vec<(&'static str, Vec<u8>, u32)> {
    let edtl = u32::from(PATTERN_BLOCKS) * 512;
    let mut inquiry = vec![0x12, 0, 0, 0, 0, 0];
    inquiry[3..5].copy_from_slice(&(edtl as u16 - 1).to_be_bytes());
    let mut mode_sense = vec![0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 0, 0];
    mode_sense[7..9].copy_from_slice(&(edtl as u16 - 1).to_be_bytes());
    let mut capacity16 = vec![0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    capacity16[10..14].copy_from_slice(&edtl.to_be_bytes());
    vec![
        // Underflow: one unwritten block (zeroes) for a 32 KiB expected length.
        (
            "READ(10) 1 block, EDTL 32 KiB",
            read10(1000, 1).to_vec(),
            edtl,
        ),
        // No data at all.
        ("READ(10) 0 blocks", read10(1000, 0).to_vec(), edtl),
        // An error: beyond the capacity (1 GiB default LU).
        (
            "READ(10) beyond capacity",
            read10(0xFFFF_FF00, 8).to_vec(),
            edtl,
        ),
        // Short answers built by the device.
        ("INQUIRY", inquiry, edtl),
        ("MODE SENSE(10) all pages", mode_sense, edtl),
        ("READ CAPACITY(16)", capacity16, edtl),
    ]
}

fn comparable(r: &ScsiResult) -> (u8, Vec<u8>, Vec<u8>, bool, bool, u32) {
    (
        r.status,
        r.sense.clone(),
        r.data.clone(),
        r.underflow,
        r.overflow,
        r.residual,
    )
}

#[test]
fn earlier_read_data_never_leaks_into_later_answers() {
    let server = Server::start(&["--listen", "127.0.0.1:0"]);

    // Reference answers from a connection whose buffers never held the pattern.
    let mut fresh = login(&server.addr, 1);
    let reference: Vec<_> = probes()
        .into_iter()
        .map(|(name, cdb, edtl)| {
            let r = fresh.scsi(0, &cdb, edtl, None).expect(name);
            (name, comparable(&r))
        })
        .collect();

    let mut ini = login(&server.addr, 2);
    let pattern = vec![PATTERN; usize::from(PATTERN_BLOCKS) * 512];
    let w = ini.write10(0, 0, &pattern).expect("WRITE(10)");
    assert_eq!(w.status, 0, "WRITE(10) of the pattern");

    for round in 0..3 {
        for ((name, cdb, edtl), (_, expected)) in probes().into_iter().zip(&reference) {
            // Fill the connection's pooled buffers with the pattern (several READs in a row,
            // so every buffer of the pool has held it).
            for _ in 0..4 {
                let r = ini
                    .read10(0, 0, PATTERN_BLOCKS)
                    .expect("READ(10) of the pattern");
                assert_eq!(r.status, 0);
                assert!(r.data.iter().all(|&b| b == PATTERN), "pattern read back");
            }
            let r = ini.scsi(0, &cdb, edtl, None).expect(name);
            let got = comparable(&r);
            assert_eq!(
                &got, expected,
                "round {round}, {name}: the answer after a READ of the pattern differs from \
                 a fresh connection's"
            );
            let pattern_run = r.data.windows(16).any(|w| w.iter().all(|&b| b == PATTERN));
            assert!(
                !pattern_run,
                "round {round}, {name}: earlier READ data in the answer"
            );
        }
    }
    // The probes did return short or empty data (so the test can catch a leak at all).
    assert!(
        reference
            .iter()
            .any(|(_, (status, _, data, underflow, ..))| *status == 0
                && *underflow
                && !data.is_empty()),
        "no probe returned a short answer"
    );
    assert!(
        reference.iter().any(|(_, (status, ..))| *status == 2),
        "no probe returned CHECK CONDITION"
    );
}
