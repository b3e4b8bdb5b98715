//! The commands one socket read brings are submitted as a burst (`ScsiService::submit_burst`:
//! one port batch per run of commands to the same adapter). A burst that alternates between
//! LUNs on two adapters of different models, with an ORDERED task and an unknown LUN in it,
//! completes every command with the right data.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{DEFAULT_IQN, Server, TempDir};
use iscsi::pdu::Opcode;
use iscsi::testing::initiator::{Initiator, LoginOptions, cdb10};

const INITIATOR: &str = "iqn.2026-11.dev.scsiport:bursts-test";
const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn config(dir: &TempDir) -> std::path::PathBuf {
    let text = format!(
        r#"[[portal]]
listen = "127.0.0.1:0"

[[adapter]]
name = "a0"
miniport = "ram"
model = "storport"
[[adapter.lu]]
size = "16 MiB"
block_size = 512

[[adapter]]
name = "a1"
miniport = "ram"
model = "scsiport"
[[adapter.lu]]
size = "16 MiB"
block_size = 512

[[target]]
iqn = "{DEFAULT_IQN}"
initiators = []
[[target.lun]]
lun = 0
adapter = "a0"
[[target.lun]]
lun = 1
adapter = "a1"
"#
    );
    let path = dir.path().join("bursts.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The wire form of a single-level LUN below 256 (SAM peripheral addressing).
fn wire_lun(lun: u64) -> u64 {
    lun << 48
}

fn login(addr: &str) -> Initiator {
    let addr: SocketAddr = addr.parse().expect("server address");
    let mut ini = Initiator::connect(addr, IO_TIMEOUT).expect("connect");
    ini.login(&LoginOptions::normal(INITIATOR, DEFAULT_IQN))
        .expect("login");
    for lun in [0, 1] {
        // Clear each LU's unit attention of the new nexus.
        let ok = (0..4).any(|_| {
            ini.scsi(wire_lun(lun), &[0u8; 6], 0, None)
                .expect("TUR")
                .status
                == 0
        });
        assert!(ok, "LUN {lun}: TEST UNIT READY never answered GOOD");
    }
    ini
}

fn block(lun: u64, lba: u32, round: u8) -> Vec<u8> {
    (0..512u32)
        .map(|i| (i as u8) ^ (lba as u8).wrapping_mul(7) ^ (lun as u8 * 0x55) ^ round)
        .collect()
}

/// One command of a burst: LUN, CDB, write data (`None`: a one-block read), ORDERED.
type Cmd = (u64, [u8; 10], Option<Vec<u8>>, bool);

/// Sends the PDUs of `cmds` (LUN, CDB, write data or read length, ORDERED?) with one socket
/// write, so the target reads them together, and returns the status and data of each by ITT
/// order.
fn burst(ini: &mut Initiator, cmds: &[Cmd]) -> Vec<(u8, Vec<u8>)> {
    let mut wire = Vec::new();
    let mut itts = Vec::new();
    for (lun, cdb, data, ordered) in cmds {
        let (read, write, edtl) = match data {
            Some(d) => (false, true, d.len() as u32),
            None => (true, false, 512),
        };
        let mut bhs = ini.command_bhs(wire_lun(*lun), cdb, read, write, edtl);
        if *ordered {
            bhs.0[1] = (bhs.0[1] & !7) | 2;
        }
        let payload = data.as_deref().unwrap_or(&[]);
        let mut b = bhs;
        b.set_data_segment_len(payload.len() as u32);
        wire.extend_from_slice(&b.0);
        wire.extend_from_slice(payload);
        while wire.len() % 4 != 0 {
            wire.push(0);
        }
        itts.push(bhs.itt());
        ini.cmd_sn = ini.cmd_sn.wrapping_add(1);
    }
    ini.send_raw(&wire).expect("send burst");
    let mut results = vec![None; itts.len()];
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); itts.len()];
    while results.iter().any(Option::is_none) {
        let p = ini
            .recv_non_ping()
            .expect("receive")
            .expect("connection open");
        let i = itts
            .iter()
            .position(|t| *t == p.bhs.itt())
            .expect("answer to a command of the burst");
        match p.bhs.opcode() {
            Some(Opcode::DataIn) => {
                data[i].extend_from_slice(&p.data);
                if p.bhs.flags() & 1 != 0 {
                    results[i] = Some(p.bhs.0[3]);
                }
            }
            Some(Opcode::ScsiResponse) => results[i] = Some(p.bhs.0[3]),
            other => panic!("unexpected {other:?}"),
        }
    }
    results
        .into_iter()
        .zip(data)
        .map(|(s, d)| (s.expect("status"), d))
        .collect()
}

#[test]
fn bursts_across_two_adapters_complete_in_full() {
    let dir = TempDir::new("bursts");
    let cfg = config(&dir);
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    let mut ini = login(&server.addr);
    for round in 0..20u8 {
        // Writes alternating between the adapters, one ORDERED, then the reads back.
        let mut writes = Vec::new();
        for i in 0..16u32 {
            let lun = u64::from(i % 2);
            let lba = u32::from(round) * 16 + i;
            writes.push((
                lun,
                cdb10(0x2A, lba, 1),
                Some(block(lun, lba, round)),
                i == 7,
            ));
        }
        for (i, (status, _)) in burst(&mut ini, &writes).into_iter().enumerate() {
            assert_eq!(status, 0, "round {round} write {i}");
        }
        let mut reads = Vec::new();
        for i in 0..16u32 {
            let lun = u64::from(i % 2);
            reads.push((lun, cdb10(0x28, u32::from(round) * 16 + i, 1), None, false));
        }
        // A LUN that is not mapped, in the middle: CHECK CONDITION, the others unaffected.
        reads.insert(5, (9, cdb10(0x28, 0, 1), None, false));
        let results = burst(&mut ini, &reads);
        assert_eq!(results[5].0, 2, "unmapped LUN answers CHECK CONDITION");
        for (i, (status, data)) in results.into_iter().enumerate() {
            if i == 5 {
                continue;
            }
            let (lun, lba) = (
                reads[i].0,
                u32::from_be_bytes(reads[i].1[2..6].try_into().unwrap()),
            );
            assert_eq!(status, 0, "round {round} read {i}");
            assert!(
                data == block(lun, lba, round),
                "round {round}: LUN {lun} LBA {lba} read back differs"
            );
        }
    }
    assert_eq!(ini.logout(0).expect("logout"), 0);
}
