//! Malformed and hostile input over real sockets: every case gets a Reject
//! or a closed connection, the server never panics, memory stays bounded,
//! and a well-behaved session keeps reading and writing throughout.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iscsi::config::Timeouts;
use iscsi::pdu::{self, Bhs, Opcode, RESERVED_TAG};
use iscsi::testing::initiator::{Initiator, LoginOptions};
use iscsi::testing::{RunningServer, TEST_IQN, simple_config, spawn_server};

const INI: &str = "iqn.2026-11.org.scsiport:initiator";
const T: Duration = Duration::from_secs(10);

/// The two tests below each load the machine; run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Reject(u8),
    Closed,
}

/// Reads until a Reject or EOF (other PDUs, e.g. a login response, are skipped).
fn reject_or_close(ini: &mut Initiator) -> Outcome {
    loop {
        match ini.recv_pdu() {
            Ok(Some(p)) if p.bhs.opcode() == Some(Opcode::Reject) => {
                return Outcome::Reject(p.bhs.0[2]);
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Outcome::Closed,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no Reject and no close")
            }
            Err(_) => return Outcome::Closed,
        }
    }
}

fn logged_in(addr: SocketAddr, isid: u8, digests: bool) -> Initiator {
    let mut ini = Initiator::connect(addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.isid[5] = isid;
    o.header_digest = digests;
    o.data_digest = digests;
    o.max_recv_data_segment_length = 65536;
    ini.login(&o).unwrap();
    ini
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A well-behaved session writing and verifying in a loop on its own thread.
struct Background {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(addr: SocketAddr) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            let mut ini = logged_in(addr, 0x42, true);
            let mut i = 0u32;
            while !s.load(Ordering::Relaxed) {
                let data: Vec<u8> = (0..64 * 512).map(|x| (x as u32 ^ i) as u8).collect();
                let lba = 1000 + (i % 16) * 64;
                let w = ini.write10(0, lba, &data).expect("background write");
                assert_eq!(w.status, 0);
                let rd = ini.read10(0, lba, 64).expect("background read");
                assert_eq!(rd.status, 0);
                assert!(rd.data == data, "background data mismatch in round {i}");
                i += 1;
                r.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(ini.logout(0).unwrap(), 0);
        });
        Background {
            stop,
            rounds,
            thread: Some(thread),
        }
    }
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("background session failed");
        self.rounds.load(Ordering::Relaxed)
    }
}

fn server(login_timeout: Duration) -> RunningServer {
    let (mut config, disk) = simple_config(8192);
    config.timeouts = Timeouts {
        login: login_timeout,
        nop_in_interval: Duration::from_secs(30),
        nop_in_timeout: Duration::from_secs(30),
        ..Timeouts::default()
    };
    spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap()
}

#[test]
fn malformed_pdus_get_reject_or_close_while_a_good_session_runs() {
    let panicked = Arc::new(AtomicBool::new(false));
    {
        let p = panicked.clone();
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            p.store(true, Ordering::SeqCst);
            prev(info);
        }));
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server(Duration::from_secs(3));
    let addr = server.addr;
    let bg = Background::start(addr);
    let rounds_at = |bg: &Background| bg.rounds.load(Ordering::Relaxed);

    // 1. Non-login PDUs before login: Reject then close.
    for op in [
        Opcode::ScsiCommand,
        Opcode::NopOut,
        Opcode::TextRequest,
        Opcode::DataOut,
        Opcode::LogoutRequest,
    ] {
        let mut ini = Initiator::connect(addr, T).unwrap();
        ini.send_pdu(&Bhs::new(op), &[]).unwrap();
        assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x04), "{op:?}");
        assert_eq!(reject_or_close(&mut ini), Outcome::Closed, "{op:?}");
    }
    // A login PDU whose data segment exceeds the login limit (8192).
    let mut ini = Initiator::connect(addr, T).unwrap();
    let mut b = Bhs::new(Opcode::LoginRequest);
    b.set_data_segment_len(16_000_000);
    ini.send_raw(&b.0).unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x04));
    assert_eq!(reject_or_close(&mut ini), Outcome::Closed);
    // Garbage login text.
    drop(ini);
    let mut ini = Initiator::connect(addr, T).unwrap();
    let mut b = Bhs::new(Opcode::LoginRequest);
    b.0[0] |= 0x40;
    b.0[1] = 0x87;
    ini.send_pdu(&b, b"no-equals-sign-here-and-no-nul").unwrap();
    let p = ini.recv_pdu().unwrap().expect("login response");
    assert_eq!(p.bhs.u16_at(36) >> 8, 2, "initiator error class");
    assert_eq!(reject_or_close(&mut ini), Outcome::Closed);

    // 2. Unknown and target-only opcodes in full feature phase: Reject, session stays.
    drop(ini);
    let mut ini = logged_in(addr, 1, false);
    for raw in [0x07u8, 0x0f, 0x1c, 0x3e, 0x21, 0x25] {
        let mut b = Bhs::default();
        b.0[0] = raw;
        ini.send_pdu(&b, &[]).unwrap();
        assert_eq!(
            reject_or_close(&mut ini),
            Outcome::Reject(0x05),
            "opcode {raw:#x}"
        );
    }
    // SNACK at ERL 0.
    let mut b = Bhs::new(Opcode::Snack);
    b.0[1] = 0x80;
    ini.send_pdu(&b, &[]).unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x04));
    assert_eq!(ini.nop(b"alive").unwrap(), b"alive");

    // 3. TEXT with Continue and no data; TEXT with both F and C.
    let mut b = Bhs::new(Opcode::TextRequest);
    b.0[1] = 0x40;
    b.set_u32(16, 0x99);
    b.set_u32(20, RESERVED_TAG);
    b.set_u32(24, ini.cmd_sn);
    ini.send_pdu(&b, &[]).unwrap();
    ini.cmd_sn += 1;
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x04));
    b.0[1] = 0xc0;
    b.set_u32(24, ini.cmd_sn);
    ini.send_pdu(&b, b"A=1\0").unwrap();
    ini.cmd_sn += 1;
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x09));
    assert_eq!(ini.nop(b"alive").unwrap(), b"alive");

    // 4. CmdSN outside the window: silently ignored; the session continues.
    ini.set_read_timeout(Duration::from_millis(300)).unwrap();
    for bad in [
        ini.max_cmd_sn.wrapping_add(1),
        ini.cmd_sn.wrapping_sub(1),
        ini.cmd_sn.wrapping_add(1_000_000),
    ] {
        let mut b = ini.command_bhs(0, &[0u8; 6], false, false, 0);
        b.set_u32(24, bad);
        ini.send_pdu(&b, &[]).unwrap();
        let r = ini.recv_pdu();
        assert!(
            matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "{r:?}"
        );
    }
    ini.set_read_timeout(T).unwrap();
    assert_eq!(ini.scsi(0, &[0u8; 6], 0, None).unwrap().status, 0);

    // 5. Data-Out for an unknown task; duplicate ITT.
    ini.data_out(0, 0xdead, RESERVED_TAG, 0, 0, &[0u8; 512], true)
        .unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x09));
    assert_eq!(ini.read10(0, 0, 1).unwrap().status, 0);

    // 5b. Expected Data Transfer Length beyond any buffer the target will
    //     allocate: CHECK CONDITION, nothing allocated; an AHS (extended CDB)
    //     is not supported: Reject.
    let r = ini
        .scsi(
            0,
            &[0x28, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0],
            u32::MAX,
            None,
        )
        .unwrap();
    assert_eq!((r.status, r.sense[2] & 0xf, r.sense[12]), (2, 5, 0x24));
    let mut b = ini.command_bhs(0, &[0u8; 6], false, false, 0);
    b.0[4] = 1;
    let mut raw = Vec::from(b.0);
    raw.extend_from_slice(&[0, 1, 1, 0]);
    ini.send_raw(&raw).unwrap();
    ini.cmd_sn += 1;
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x05));
    assert_eq!(ini.read10(0, 0, 1).unwrap().status, 0);

    // 6. Data segment longer than negotiated MaxRecvDataSegmentLength: Reject, close.
    let mut b = ini.command_bhs(0, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], false, true, 512);
    b.set_data_segment_len(300_000);
    ini.send_raw(&b.0).unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x04));
    assert_eq!(reject_or_close(&mut ini), Outcome::Closed);

    // 7. Data segment longer than declared: the surplus is parsed as a
    //    header and rejected, or the connection is closed.
    drop(ini);
    let mut ini = logged_in(addr, 2, false);
    let b = ini.command_bhs(0, &[0u8; 6], false, false, 0);
    let mut raw = Vec::from(b.0);
    raw.extend_from_slice(&[0xee; 100]);
    ini.send_raw(&raw).unwrap();
    let mut saw = Vec::new();
    ini.set_read_timeout(Duration::from_secs(2)).unwrap();
    loop {
        match ini.recv_pdu() {
            Ok(Some(p)) => saw.push(p.bhs.opcode()),
            Ok(None) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    assert!(
        saw.contains(&Some(Opcode::ScsiResponse)),
        "the declared command still completes: {saw:?}"
    );
    assert!(
        saw.contains(&Some(Opcode::Reject)) || saw.len() == 1,
        "{saw:?}"
    );

    // 8. Wrong digests: header digest error closes; data digest error is rejected then closed.
    drop(ini);
    let mut ini = logged_in(addr, 3, true);
    let b = ini.command_bhs(0, &[0u8; 6], false, false, 0);
    let mut out = bytes::BytesMut::new();
    pdu::encode(&mut out, &b, &[], true, true);
    out[48] ^= 0xff;
    ini.send_raw(&out).unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Closed);
    drop(ini);
    let mut ini = logged_in(addr, 4, true);
    let mut b = Bhs::new(Opcode::NopOut);
    b.0[0] |= 0x40;
    b.0[1] = 0x80;
    b.set_u32(16, 7);
    b.set_u32(20, RESERVED_TAG);
    b.set_u32(24, ini.cmd_sn);
    let mut out = bytes::BytesMut::new();
    pdu::encode(&mut out, &b, &[b"payload!"], true, true);
    let n = out.len();
    out[n - 1] ^= 0xff;
    ini.send_raw(&out).unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x02));
    assert_eq!(reject_or_close(&mut ini), Outcome::Closed);

    // 9. Immediate data larger than FirstBurstLength, and unsolicited data past the burst.
    drop(ini);
    let mut ini = logged_in(addr, 5, false);
    let fb = ini.first_burst as usize;
    let lba_blocks = (fb / 512 + 8) as u16;
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[7..9].copy_from_slice(&lba_blocks.to_be_bytes());
    let b = ini.command_bhs(0, &cdb, false, true, lba_blocks as u32 * 512);
    ini.send_pdu(&b, &vec![1u8; fb + 512]).unwrap();
    assert_eq!(reject_or_close(&mut ini), Outcome::Reject(0x04));
    assert_eq!(reject_or_close(&mut ini), Outcome::Closed);

    // 10. Random garbage after a valid login.
    let mut seed = 0x1234_5678_u64;
    for round in 0..20 {
        let mut ini = logged_in(addr, 6 + round as u8, false);
        let mut junk = vec![0u8; 48 * (1 + round % 7)];
        for b in junk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        // Keep DataSegmentLength small so the target can frame it.
        junk[5] = 0;
        junk[6] &= 0x01;
        let _ = ini.send_raw(&junk);
        ini.set_read_timeout(Duration::from_millis(100)).unwrap();
        let _ = ini.recv_pdu();
    }

    assert!(rounds_at(&bg) > 0);
    let done = bg.finish();
    assert!(done > 0, "the good session made progress");
    assert!(!panicked.load(Ordering::SeqCst), "a thread panicked");
    let wait = Instant::now();
    while server.shared.session_count() > 0 && wait.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.shared.session_count(), 0, "all sessions gone");
}

#[test]
fn a_thousand_idle_connections_are_bounded_and_timed_out() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server(Duration::from_secs(10));
    let addr = server.addr;
    let bg = Background::start(addr);
    let before = rss_kib();
    let start = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let s = TcpStream::connect_timeout(&addr, T).unwrap();
        idle.push(s);
    }
    // A few of them send a partial header and stall.
    for s in idle.iter_mut().take(100) {
        s.write_all(&[0x43, 0x87, 0, 0, 0, 0, 0x10]).unwrap();
    }
    // Connections beyond the listen backlog reach accept() a little later.
    let wait = Instant::now();
    while server.shared.connections.load(Ordering::Relaxed) < 1001
        && wait.elapsed() < Duration::from_secs(8)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = rss_kib();
    assert!(
        server.shared.connections.load(Ordering::Relaxed) >= 1001,
        "{}",
        server.shared.connections.load(Ordering::Relaxed)
    );
    // A new session still logs in and works while they sit there.
    let mut fresh = logged_in(addr, 9, false);
    assert_eq!(fresh.read10(0, 0, 8).unwrap().status, 0);
    // The login timeout (10 s) closes every idle connection.
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 64];
        let r = std::io::Read::read(&mut s, &mut buf);
        assert!(
            matches!(r, Ok(0)) || r.is_err(),
            "idle connection was not closed: {r:?}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(fresh.nop(b"ok").unwrap(), b"ok");
    let done = bg.finish();
    assert!(done > 0);
    // 1000 connections cost a few KiB each, not megabytes.
    let grown = during.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB -> {during} KiB with 1000 idle connections; good session rounds: {done}"
    );
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB for 1000 idle connections"
    );
}
