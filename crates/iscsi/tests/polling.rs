//! Adaptive polling (`ServerConfig::poll_before_sleep`): a connection whose initiator waits for
//! each response polls its socket for the next command instead of sleeping; a pipelining or
//! idle initiator is not polled for; and either way every byte arrives.

use std::sync::atomic::Ordering;
use std::time::Duration;

use iscsi::pdu::Opcode;
use iscsi::service::LuHandle;
use iscsi::testing::initiator::{Initiator, LoginOptions, cdb10};
use iscsi::testing::{RunningServer, TEST_IQN, simple_config, spawn_server};

const INI: &str = "iqn.2026-11.org.scsiport:initiator";
const T: Duration = Duration::from_secs(10);

fn server(
    window: Duration,
    blocks: u64,
) -> (RunningServer, std::sync::Arc<iscsi::testing::RamDisk>) {
    let (mut config, disk) = simple_config(blocks);
    config.poll_before_sleep = window;
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    (server, disk)
}

fn login(server: &RunningServer) -> Initiator {
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.first_burst_length = 65536;
    o.max_burst_length = 262_144;
    ini.login(&o).unwrap();
    ini
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8)
        .collect()
}

fn counts(server: &RunningServer) -> (u64, u64) {
    (
        server.shared.poll_hits.load(Ordering::Relaxed),
        server.shared.poll_timeouts.load(Ordering::Relaxed),
    )
}

/// A queue depth 1 initiator: writes of several sizes (immediate data, unsolicited and
/// solicited Data-Out, larger than one poll's read) each read back at once. The polls find the
/// commands, and the data is intact.
#[test]
fn queue_depth_1_initiator_is_polled_for_and_data_is_intact() {
    let (server, disk) = server(Duration::from_millis(1), 8192);
    let mut ini = login(&server);
    let sizes = [1u16, 8, 8, 128, 8, 513, 8, 1, 200];
    let mut lba = 0u32;
    for round in 0..40u32 {
        for &blocks in &sizes {
            let data = pattern(usize::from(blocks) * 512, round * 7 + u32::from(blocks));
            let at = lba % (8192 - 600);
            let w = ini.write10(0, at, &data).unwrap();
            assert_eq!(w.status, 0, "write {round}/{blocks}: {w:?}");
            let r = ini.read10(0, at, blocks).unwrap();
            assert_eq!(r.status, 0);
            assert!(
                r.data == data,
                "round {round}: {blocks} blocks at {at} read back differ"
            );
            lba = lba.wrapping_add(u32::from(blocks) * 3 + 17);
        }
    }
    let (hits, _) = counts(&server);
    assert!(
        hits > 0,
        "a queue depth 1 initiator answering within 1 ms was never polled for"
    );
    // What the initiator last wrote is what the disk holds.
    let stored = disk.contents(LuHandle(0)).unwrap();
    let last = pattern(200 * 512, 39 * 7 + 200);
    let at = (lba.wrapping_sub(200 * 3 + 17) % (8192 - 600)) as usize * 512;
    assert!(stored[at..at + last.len()] == last[..], "disk contents");
    assert_eq!(ini.logout(0).unwrap(), 0);
}

/// An initiator that sends its next commands before reading the responses to earlier ones
/// (its ExpStatSN lags our StatSN) is waited for in `epoll_wait`, not polled for: at most the
/// first command of each batch, sent when it had read everything, may start a poll (two, if
/// the poll catches the next command half-arrived). The
/// commands go one at a time, a little apart, so that each arrives in a turn of its own (the
/// turn rule alone would not stop the polls).
#[test]
fn pipelining_initiator_is_not_polled_for() {
    let (server, _disk) = server(Duration::from_millis(1), 4096);
    let mut ini = login(&server);
    let batches = 20u32;
    let per_batch = 16u32;
    for b in 0..batches {
        let mut itts = Vec::new();
        for i in 0..per_batch {
            let lba = (b * per_batch + i) * 8;
            let cdb = cdb10(0x28, lba, 8);
            let bhs = ini.command_bhs(0, &cdb, true, false, 4096);
            itts.push(bhs.itt());
            ini.send_pdu(&bhs, &[]).unwrap();
            ini.cmd_sn = ini.cmd_sn.wrapping_add(1);
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut done = 0;
        while done < per_batch {
            let p = ini.recv_non_ping().unwrap().expect("connection open");
            if p.bhs.opcode() == Some(Opcode::DataIn) && p.bhs.flags() & 1 != 0
                || p.bhs.opcode() == Some(Opcode::ScsiResponse)
            {
                assert!(itts.contains(&p.bhs.itt()));
                done += 1;
            }
        }
    }
    let (hits, timeouts) = counts(&server);
    assert!(
        hits + timeouts <= 2 * u64::from(batches),
        "{} polls for {} pipelined commands in {batches} batches",
        hits + timeouts,
        batches * per_batch
    );
    assert_eq!(ini.logout(0).unwrap(), 0);
}

/// `poll_before_sleep = 0` turns polling off.
#[test]
fn zero_window_never_polls() {
    let (server, _disk) = server(Duration::ZERO, 1024);
    let mut ini = login(&server);
    for i in 0..200u32 {
        let r = ini.read10(0, i % 1000, 1).unwrap();
        assert_eq!(r.status, 0);
    }
    assert_eq!(counts(&server), (0, 0));
    assert_eq!(ini.logout(0).unwrap(), 0);
}

/// An initiator that pauses: the poll ends after its window, the connection sleeps, and the
/// next command (which wakes it) is served as usual.
#[test]
fn idle_initiator_poll_times_out_and_the_connection_sleeps() {
    let (server, _disk) = server(Duration::from_micros(300), 1024);
    let mut ini = login(&server);
    for pause in 0..5u32 {
        for i in 0..50u32 {
            let data = pattern(512, pause * 100 + i);
            assert_eq!(ini.write10(0, i, &data).unwrap().status, 0);
            let r = ini.read10(0, i, 1).unwrap();
            assert!(r.status == 0 && r.data == data);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, timeouts) = counts(&server);
    assert!(
        timeouts >= 1,
        "the polls never timed out although the initiator paused 20 ms five times"
    );
    assert_eq!(ini.logout(0).unwrap(), 0);
}
