//! Protocol behaviour over a real socket with the crate's test initiator.

use std::time::Duration;

use iscsi::config::{LunMapping, TargetConfig, Timeouts};
use iscsi::service::LuHandle;
use iscsi::testing::initiator::{Initiator, LoginOptions, cdb10};
use iscsi::testing::{RamDisk, TEST_IQN, simple_config, spawn_server};

const INI: &str = "iqn.2026-11.org.scsiport:initiator";
const T: Duration = Duration::from_secs(10);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn write_read_back_through_every_data_path() {
    let (config, disk) = simple_config(8192);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    // (InitialR2T, ImmediateData, digests, FirstBurst, MaxBurst, MRDSL)
    let cases = [
        (false, true, false, 65536, 262_144, 65536),
        (true, false, false, 65536, 16384, 8192),
        (false, false, true, 4096, 8192, 4096),
        (true, true, true, 8192, 65536, 16384),
    ];
    for (i, (r2t, imm, digests, fb, mb, mrdsl)) in cases.into_iter().enumerate() {
        let mut ini = Initiator::connect(server.addr, T).unwrap();
        let mut o = LoginOptions::normal(INI, TEST_IQN);
        o.initial_r2t = r2t;
        o.immediate_data = imm;
        o.header_digest = digests;
        o.data_digest = digests;
        o.first_burst_length = fb;
        o.max_burst_length = mb;
        o.max_recv_data_segment_length = mrdsl;
        ini.login(&o).unwrap();
        assert_eq!(ini.limits.header_digest, digests);
        let data = pattern(200 * 512, i as u8);
        let lba = 250 * i as u32;
        let w = ini.write10(0, lba, &data).unwrap();
        assert_eq!(w.status, 0, "case {i}: {w:?}");
        if r2t || data.len() > fb as usize {
            assert!(w.r2ts > 0, "case {i}: expected R2Ts");
        }
        let r = ini.read10(0, lba, 200).unwrap();
        assert_eq!(r.status, 0);
        assert!(r.data == data, "case {i}: data read back differs");
        assert!(
            r.data_ins as usize >= data.len() / mrdsl as usize,
            "Data-In split by MaxRecvDataSegmentLength"
        );
        assert!(!r.underflow && !r.overflow);
        assert_eq!(ini.logout(0).unwrap(), 0);
    }
    let stored = disk.contents(LuHandle(0)).unwrap();
    assert!(
        stored[250 * 512..450 * 512] == pattern(200 * 512, 1)[..],
        "disk contents"
    );
}

#[test]
fn residuals_and_sense() {
    let (config, disk) = simple_config(1024);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(&LoginOptions::normal(INI, TEST_IQN)).unwrap();
    // INQUIRY with a large allocation length: underflow.
    let r = ini.scsi(0, &[0x12, 0, 0, 0, 255, 0], 255, None).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.data.len(), 36);
    assert!(r.underflow);
    assert_eq!(r.residual, 255 - 36);
    // READ(10) of 2 blocks with EDTL of one block: overflow.
    let r = ini
        .scsi(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], 512, None)
        .unwrap();
    assert!(r.overflow);
    assert_eq!(r.residual, 512);
    assert_eq!(r.data.len(), 512);
    // Beyond the end: CHECK CONDITION with ILLEGAL REQUEST / LBA OUT OF RANGE.
    let r = ini.read10(0, 1024, 1).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense[2] & 0xf, 5);
    assert_eq!(r.sense[12], 0x21);
    // Unsupported opcode.
    let r = ini.scsi(0, &[0xd9, 0, 0, 0, 0, 0], 0, None).unwrap();
    assert_eq!((r.status, r.sense[12]), (2, 0x20));
    // Unmapped LUN: INQUIRY answered with PQ=3, other commands LOGICAL UNIT NOT SUPPORTED.
    let r = ini
        .scsi(5 << 48, &[0x12, 0, 0, 0, 36, 0], 36, None)
        .unwrap();
    assert_eq!(r.data[0], 0x7f);
    let r = ini.scsi(5 << 48, &[0x00; 6], 0, None).unwrap();
    assert_eq!((r.status, r.sense[12]), (2, 0x25));
}

#[test]
fn report_luns_comes_from_the_lun_map() {
    let disk = RamDisk::new();
    let mut t = TargetConfig::new(TEST_IQN);
    for (lun, h) in [(0u16, 10u64), (3, 11), (300, 12)] {
        disk.add_lu(LuHandle(h), 64, 512);
        t.luns.push(LunMapping {
            lun,
            handle: LuHandle(h),
        });
    }
    let config = iscsi::config::ServerConfig {
        targets: vec![t],
        ..Default::default()
    };
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(&LoginOptions::normal(INI, TEST_IQN)).unwrap();
    let r = ini
        .scsi(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256, None)
        .unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(&r.data[..4], &24u32.to_be_bytes());
    assert_eq!(&r.data[8..10], &[0, 0]);
    assert_eq!(&r.data[16..18], &[0, 3]);
    assert_eq!(&r.data[24..26], &[0x41, 0x2c]);
    // LUN 300 (flat addressing) reaches its own LU.
    let lun300 = 0x412c_u64 << 48;
    let w = ini.write10(lun300, 1, &[7u8; 512]).unwrap();
    assert_eq!(w.status, 0);
    let r = ini.read10(lun300, 1, 1).unwrap();
    assert_eq!(r.data, vec![7u8; 512]);
    let r = ini.read10(0, 1, 1).unwrap();
    assert_eq!(r.data, vec![0u8; 512]);
}

#[test]
fn discovery_text_nop_and_logout() {
    let (mut config, disk) = simple_config(64);
    let mut hidden = TargetConfig::new("iqn.2026-11.org.scsiport:hidden");
    hidden.allowed_initiators = vec!["iqn.2026-11.org.scsiport:someone-else".into()];
    config.targets.push(hidden);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(&LoginOptions::discovery(INI)).unwrap();
    assert_eq!(
        ini.negotiated
            .get("MaxRecvDataSegmentLength")
            .map(String::as_str),
        Some("262144")
    );
    let st = ini.send_targets("All").unwrap();
    assert_eq!(
        st,
        vec![
            ("TargetName".into(), TEST_IQN.into()),
            ("TargetAddress".into(), format!("{},1", server.addr))
        ],
        "only targets this initiator may see"
    );
    assert_eq!(ini.nop(b"ping-data").unwrap(), b"ping-data");
    // Unknown keys are NotUnderstood.
    let mut d = Vec::new();
    iscsi::text::push(&mut d, "X-org.example.Foo", "1");
    let r = ini.text(&d).unwrap();
    assert_eq!(
        r,
        vec![("X-org.example.Foo".into(), "NotUnderstood".into())]
    );
    assert_eq!(ini.logout(0).unwrap(), 0);
    assert!(ini.expect_closed().unwrap());
}

#[test]
fn long_text_response_is_continued() {
    let (mut config, disk) = simple_config(64);
    for i in 0..200 {
        config.targets.push(TargetConfig::new(format!(
            "iqn.2026-11.org.scsiport:target-with-a-long-name-{i:04}"
        )));
    }
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::discovery(INI);
    o.max_recv_data_segment_length = 512;
    ini.login(&o).unwrap();
    let st = ini.send_targets("All").unwrap();
    assert_eq!(st.iter().filter(|(k, _)| k == "TargetName").count(), 201);
}

#[test]
fn negotiation_answers_every_key() {
    let (config, disk) = simple_config(64);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.initial_r2t = true;
    o.immediate_data = false;
    for (k, v) in [
        ("MaxConnections", "4"),
        ("DefaultTime2Wait", "0"),
        ("DefaultTime2Retain", "60"),
        ("DataPDUInOrder", "No"),
        ("DataSequenceInOrder", "No"),
        ("IFMarker", "Yes"),
        ("OFMarker", "No"),
        ("OFMarkInt", "2048~8192"),
        ("X-com.example.Vendor", "1"),
        ("FancyNewKey", "Yes"),
    ] {
        o.extra_keys.push((k.into(), v.into()));
    }
    ini.login(&o).unwrap();
    let n = &ini.negotiated;
    let want = [
        ("TargetPortalGroupTag", "1"),
        ("MaxConnections", "1"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("OFMarkInt", "Irrelevant"),
        ("X-com.example.Vendor", "NotUnderstood"),
        ("FancyNewKey", "NotUnderstood"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("FirstBurstLength", "Irrelevant"),
        ("ErrorRecoveryLevel", "0"),
        ("HeaderDigest", "None"),
    ];
    for (k, v) in want {
        assert_eq!(n.get(k).map(String::as_str), Some(v), "{k}");
    }
    // With InitialR2T=Yes and no immediate data, every byte is solicited.
    let w = ini.write10(0, 0, &[1u8; 4096]).unwrap();
    assert_eq!((w.status, w.r2ts), (0, 1));
}

#[test]
fn session_reinstatement_closes_the_old_connection_and_keeps_the_nexus() {
    let (config, disk) = simple_config(64);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    let o = LoginOptions::normal(INI, TEST_IQN);
    let mut a = Initiator::connect(server.addr, T).unwrap();
    a.login(&o).unwrap();
    let mut b = Initiator::connect(server.addr, T).unwrap();
    b.login(&o).unwrap();
    assert!(
        a.expect_closed().unwrap(),
        "old connection closed on reinstatement"
    );
    assert_eq!(b.read10(0, 0, 1).unwrap().status, 0);
    // A different ISID is a second session of the same initiator.
    let mut c = Initiator::connect(server.addr, T).unwrap();
    let mut o2 = o.clone();
    o2.isid[5] = 0x99;
    c.login(&o2).unwrap();
    assert_eq!(server.shared.session_count(), 2);
    assert_eq!(c.read10(0, 0, 1).unwrap().status, 0);
    assert_eq!(b.read10(0, 0, 1).unwrap().status, 0);
    let ev = disk.nexus_events.lock().clone();
    let established: Vec<u64> = ev.iter().filter(|(_, up)| *up).map(|(n, _)| n.id).collect();
    assert_eq!(established.len(), 3);
    assert_eq!(
        established[0], established[1],
        "same initiator+ISID keeps its nexus id"
    );
    assert_ne!(established[0], established[2]);
    assert!(
        ev.iter().any(|(n, up)| !up && n.id == established[0]),
        "reinstated nexus reported lost"
    );
}

#[test]
fn task_management_aborts_held_tasks() {
    let (config, disk) = simple_config(64);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(&LoginOptions::normal(INI, TEST_IQN)).unwrap();
    disk.set_hold(true);
    // Queue a READ that the disk parks, then abort it.
    let b = ini.command_bhs(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], true, false, 512);
    let itt = b.itt();
    ini.send_pdu(&b, &[]).unwrap();
    ini.cmd_sn += 1;
    while disk.held() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        ini.task_mgmt(1, 0, itt).unwrap(),
        0,
        "ABORT TASK: function complete"
    );
    assert_eq!(
        ini.task_mgmt(1, 0, itt).unwrap(),
        1,
        "second abort: task does not exist"
    );
    // LU reset with a parked command; then every other function.
    let b = ini.command_bhs(0, &[0; 6], false, false, 0);
    ini.send_pdu(&b, &[]).unwrap();
    ini.cmd_sn += 1;
    while disk.held() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ini.task_mgmt(5, 0, 0).unwrap(), 0);
    assert_eq!(disk.held(), 0);
    assert_eq!(ini.task_mgmt(2, 0, 0).unwrap(), 0, "ABORT TASK SET");
    assert_eq!(ini.task_mgmt(4, 0, 0).unwrap(), 0, "CLEAR TASK SET");
    assert_eq!(ini.task_mgmt(6, 0, 0).unwrap(), 0, "TARGET WARM RESET");
    assert_eq!(
        ini.task_mgmt(3, 0, 0).unwrap(),
        5,
        "CLEAR ACA not supported"
    );
    assert_eq!(ini.task_mgmt(5, 7 << 48, 0).unwrap(), 2, "unmapped LUN");
    disk.set_hold(false);
    // The aborted commands never got a response; the session still works.
    assert_eq!(ini.nop(b"x").unwrap(), b"x");
    assert_eq!(ini.read10(0, 0, 1).unwrap().status, 0);
    let log = disk.tmf_log.lock();
    assert!(log.iter().any(|r| matches!(r.function, iscsi::service::TmfFunction::AbortTask { referenced_itt } if referenced_itt == itt)));
    drop(log);
    // TARGET COLD RESET: response, then the connection is dropped.
    assert_eq!(ini.task_mgmt(7, 0, 0).unwrap(), 0);
    assert!(ini.expect_closed().unwrap());
}

#[test]
fn target_pings_idle_initiator_and_drops_a_dead_one() {
    let (mut config, disk) = simple_config(64);
    config.timeouts = Timeouts {
        login: Duration::from_secs(2),
        nop_in_interval: Duration::from_millis(200),
        nop_in_timeout: Duration::from_millis(400),
        ..Timeouts::default()
    };
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    // A live initiator answers the pings and stays connected.
    let mut live = Initiator::connect(server.addr, T).unwrap();
    live.login(&LoginOptions::normal(INI, TEST_IQN)).unwrap();
    let mut dead = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.isid[5] = 1;
    dead.login(&o).unwrap();
    let start = std::time::Instant::now();
    live.set_read_timeout(Duration::from_millis(100)).unwrap();
    while start.elapsed() < Duration::from_millis(1500) {
        match live.recv_non_ping() {
            Ok(_) => {}
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
    }
    assert!(
        live.pings_answered >= 2,
        "pings answered: {}",
        live.pings_answered
    );
    live.set_read_timeout(T).unwrap();
    assert_eq!(live.nop(b"still here").unwrap(), b"still here");
    // The dead one never answered: it was dropped.
    let mut saw_ping = false;
    loop {
        match dead.recv_pdu() {
            Ok(Some(p)) => saw_ping |= p.bhs.opcode() == Some(iscsi::pdu::Opcode::NopIn),
            Ok(None) => break,
            Err(e) => panic!("expected the target to close the idle connection: {e}"),
        }
    }
    assert!(saw_ping);
}

#[test]
fn pipelined_writes_respect_the_buffer_budget_and_outstanding_r2ts() {
    use iscsi::pdu::Opcode;
    let (mut config, disk) = simple_config(4096);
    config.max_buffered_bytes_per_connection = 128 * 1024;
    config.limits.max_outstanding_r2t = 4;
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.initial_r2t = true;
    o.immediate_data = false;
    o.max_burst_length = 16384;
    o.max_outstanding_r2t = 8;
    ini.login(&o).unwrap();
    assert_eq!(
        ini.negotiated.get("MaxOutstandingR2T").map(String::as_str),
        Some("4")
    );
    let blocks = 256u16; // 128 KiB each: one command fills the budget
    let mut itts = Vec::new();
    let mut datas = std::collections::HashMap::new();
    for i in 0..4u32 {
        let data = pattern(blocks as usize * 512, 40 + i as u8);
        let mut cdb = [0u8; 10];
        cdb[0] = 0x2a;
        cdb[2..6].copy_from_slice(&(i * 300).to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        let b = ini.command_bhs(0, &cdb, false, true, data.len() as u32);
        ini.send_pdu(&b, &[]).unwrap();
        ini.cmd_sn += 1;
        itts.push(b.itt());
        datas.insert(b.itt(), data);
    }
    let mut done = Vec::new();
    let mut r2t_order = Vec::new();
    while done.len() < 4 {
        let p = ini.recv_non_ping().unwrap().expect("connection open");
        match p.bhs.opcode() {
            Some(Opcode::R2t) => {
                let (itt, ttt, off, len) = (
                    p.bhs.itt(),
                    p.bhs.u32_at(20),
                    p.bhs.u32_at(40),
                    p.bhs.u32_at(44),
                );
                if r2t_order.last() != Some(&itt) {
                    r2t_order.push(itt);
                }
                let data = datas[&itt][off as usize..(off + len) as usize].to_vec();
                let mut sent = 0;
                let mut sn = 0;
                while sent < data.len() {
                    let n = (data.len() - sent).min(ini.target_mrdsl as usize);
                    ini.data_out(
                        0,
                        itt,
                        ttt,
                        sn,
                        off + sent as u32,
                        &data[sent..sent + n],
                        sent + n == data.len(),
                    )
                    .unwrap();
                    sent += n;
                    sn += 1;
                }
            }
            Some(Opcode::ScsiResponse) => {
                assert_eq!(p.bhs.0[3], 0, "status");
                done.push(p.bhs.itt());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        done, itts,
        "commands complete in order: each waits for budget"
    );
    assert_eq!(
        r2t_order, itts,
        "R2Ts for a command start only after the previous one finished"
    );
    for (i, itt) in itts.iter().enumerate() {
        let r = ini.read10(0, i as u32 * 300, blocks).unwrap();
        assert!(r.data == datas[itt], "command {i} data");
    }
}

#[test]
fn max_outstanding_r2t_is_used() {
    let (mut config, disk) = simple_config(4096);
    config.limits.max_outstanding_r2t = 4;
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.initial_r2t = true;
    o.immediate_data = false;
    o.max_burst_length = 8192;
    o.max_outstanding_r2t = 4;
    ini.login(&o).unwrap();
    let data = pattern(64 * 1024, 9);
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[2..6].copy_from_slice(&10u32.to_be_bytes());
    cdb[7..9].copy_from_slice(&128u16.to_be_bytes());
    let b = ini.command_bhs(0, &cdb, false, true, data.len() as u32);
    let itt = b.itt();
    ini.send_pdu(&b, &[]).unwrap();
    ini.cmd_sn += 1;
    for round in 0..2 {
        // Four R2Ts arrive before any data is sent, and no fifth.
        let mut r2ts = Vec::new();
        for _ in 0..4 {
            let p = ini.recv_non_ping().unwrap().unwrap();
            assert_eq!(p.bhs.opcode(), Some(iscsi::pdu::Opcode::R2t));
            r2ts.push((
                p.bhs.u32_at(20),
                p.bhs.u32_at(36),
                p.bhs.u32_at(40),
                p.bhs.u32_at(44),
            ));
        }
        let offsets: Vec<u32> = r2ts.iter().map(|r| r.2).collect();
        let base = round * 32768;
        assert_eq!(offsets, vec![base, base + 8192, base + 16384, base + 24576]);
        let sns: Vec<u32> = r2ts.iter().map(|r| r.1).collect();
        assert_eq!(
            sns,
            (round * 4..round * 4 + 4).collect::<Vec<u32>>(),
            "R2TSN"
        );
        ini.set_read_timeout(Duration::from_millis(200)).unwrap();
        assert!(
            ini.recv_pdu().is_err(),
            "no fifth R2T while four are outstanding"
        );
        ini.set_read_timeout(T).unwrap();
        for (ttt, _, off, len) in r2ts {
            ini.data_out(
                0,
                itt,
                ttt,
                0,
                off,
                &data[off as usize..(off + len) as usize],
                true,
            )
            .unwrap();
        }
    }
    let p = ini.recv_non_ping().unwrap().unwrap();
    assert_eq!(
        (p.bhs.opcode(), p.bhs.0[3]),
        (Some(iscsi::pdu::Opcode::ScsiResponse), 0)
    );
    assert!(ini.read10(0, 10, 128).unwrap().data == data);
    // Unsolicited burst ended early by the initiator (F bit before FirstBurstLength).
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.isid[5] = 2;
    o.initial_r2t = false;
    o.immediate_data = false;
    o.first_burst_length = 16384;
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(&o).unwrap();
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[2..6].copy_from_slice(&200u32.to_be_bytes());
    cdb[7..9].copy_from_slice(&64u16.to_be_bytes());
    let mut b = ini.command_bhs(0, &cdb, false, true, 32768);
    b.0[1] &= !0x80;
    let itt = b.itt();
    ini.send_pdu(&b, &[]).unwrap();
    ini.cmd_sn += 1;
    let d = pattern(32768, 3);
    ini.data_out(0, itt, iscsi::pdu::RESERVED_TAG, 0, 0, &d[..4096], true)
        .unwrap();
    let p = ini.recv_non_ping().unwrap().unwrap();
    assert_eq!(p.bhs.opcode(), Some(iscsi::pdu::Opcode::R2t));
    assert_eq!((p.bhs.u32_at(40), p.bhs.u32_at(44)), (4096, 28672));
    ini.data_out(0, itt, p.bhs.u32_at(20), 0, 4096, &d[4096..], true)
        .unwrap();
    let p = ini.recv_non_ping().unwrap().unwrap();
    assert_eq!(
        (p.bhs.opcode(), p.bhs.0[3]),
        (Some(iscsi::pdu::Opcode::ScsiResponse), 0)
    );
    assert!(ini.read10(0, 200, 64).unwrap().data == d);
}

#[test]
fn shutdown_asks_initiators_to_log_out_then_closes() {
    let (mut config, disk) = simple_config(64);
    config.timeouts.logout_grace = Duration::from_secs(2);
    let mut server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut polite = Initiator::connect(server.addr, T).unwrap();
    polite.login(&LoginOptions::normal(INI, TEST_IQN)).unwrap();
    let mut stubborn = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.isid[5] = 7;
    stubborn.login(&o).unwrap();
    let start = std::time::Instant::now();
    server.trigger_shutdown();
    let p = polite.recv_non_ping().unwrap().unwrap();
    assert_eq!(p.bhs.opcode(), Some(iscsi::pdu::Opcode::AsyncMessage));
    assert_eq!(p.bhs.0[36], 1, "AsyncEvent 1: target requests logout");
    // In-flight work still completes while draining.
    assert_eq!(polite.read10(0, 0, 1).unwrap().status, 0);
    assert_eq!(polite.logout(0).unwrap(), 0);
    assert!(polite.expect_closed().unwrap());
    // New connections are refused.
    assert!(
        Initiator::connect(server.addr, Duration::from_secs(1))
            .and_then(|mut i| {
                i.login(&LoginOptions::normal(INI, TEST_IQN))
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))
            })
            .is_err()
    );
    assert!(
        stubborn.expect_closed().unwrap(),
        "closed after the grace period"
    );
    server.shutdown();
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[test]
fn many_sessions_in_parallel() {
    let (config, disk) = simple_config(16 * 1024);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(17));
    let threads: Vec<_> = (0..16u8)
        .map(|n| {
            let addr = server.addr;
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut ini = Initiator::connect(addr, T).unwrap();
                let mut o = LoginOptions::normal(&format!("{INI}-{n}"), TEST_IQN);
                o.isid[5] = n;
                o.header_digest = n % 2 == 0;
                o.data_digest = n % 3 == 0;
                ini.login(&o).unwrap();
                barrier.wait();
                for round in 0..20u8 {
                    let data = pattern(64 * 512, n.wrapping_mul(17).wrapping_add(round));
                    let lba = n as u32 * 1024 + (round as u32 % 8) * 64;
                    assert_eq!(ini.write10(0, lba, &data).unwrap().status, 0);
                    assert!(
                        ini.read10(0, lba, 64).unwrap().data == data,
                        "session {n} round {round}"
                    );
                }
                barrier.wait();
                // Logout reasons: 2 (recovery) is not supported at ERL 0; 1 closes this connection.
                assert_eq!(ini.logout(2).unwrap(), 2);
                assert_eq!(ini.logout(1).unwrap(), 0);
                assert!(ini.expect_closed().unwrap());
            })
        })
        .collect();
    barrier.wait();
    assert_eq!(server.shared.session_count(), 16);
    let ids: std::collections::HashSet<u64> =
        server.shared.nexuses().iter().map(|n| n.id).collect();
    assert_eq!(ids.len(), 16, "one nexus per session");
    barrier.wait();
    for t in threads {
        t.join().unwrap();
    }
    let wait = std::time::Instant::now();
    while server.shared.session_count() > 0 && wait.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.shared.session_count(), 0);
}

#[test]
fn continued_text_request_is_assembled() {
    use iscsi::pdu::{Bhs, Opcode, RESERVED_TAG};
    let (config, disk) = simple_config(64);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(&LoginOptions::discovery(INI)).unwrap();
    // "SendTargets=All\0" split over two PDUs: the first with C=1.
    let mut b = Bhs::new(Opcode::TextRequest);
    b.0[1] = 0x40;
    b.set_u32(16, 0x55);
    b.set_u32(20, RESERVED_TAG);
    b.set_u32(24, ini.cmd_sn);
    ini.send_pdu(&b, b"SendTar").unwrap();
    ini.cmd_sn += 1;
    let p = ini.recv_non_ping().unwrap().unwrap();
    assert_eq!(p.bhs.opcode(), Some(Opcode::TextResponse));
    assert!(
        p.data.is_empty() && !p.bhs.final_bit(),
        "empty interim response"
    );
    b.0[1] = 0x80;
    b.set_u32(20, p.bhs.u32_at(20));
    b.set_u32(24, ini.cmd_sn);
    ini.send_pdu(&b, b"gets=All\0").unwrap();
    ini.cmd_sn += 1;
    let p = ini.recv_non_ping().unwrap().unwrap();
    assert!(p.bhs.final_bit());
    let kv = iscsi::text::parse(&p.data).unwrap();
    assert_eq!(kv[0], ("TargetName".to_string(), TEST_IQN.to_string()));
}

/// Reads whose data fits one Data-In PDU go out spliced (the service's buffer written with the
/// header in one `writev`); larger ones are split. Both with header and data digests, and an
/// odd length that needs padding: what arrives is what was written, digests verified by the
/// initiator.
#[test]
fn spliced_and_split_data_in_with_digests_and_padding() {
    let (config, disk) = simple_config(4096);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.header_digest = true;
    o.data_digest = true;
    o.max_recv_data_segment_length = 8192;
    ini.login(&o).unwrap();
    let data = pattern(64 * 512, 9);
    assert_eq!(ini.write10(0, 100, &data).unwrap().status, 0);
    for (blocks, pdus) in [(1u16, 1u32), (16, 1), (17, 2), (64, 4)] {
        let r = ini.read10(0, 100, blocks).unwrap();
        assert_eq!(r.status, 0);
        assert!(
            r.data == data[..usize::from(blocks) * 512],
            "{blocks} blocks"
        );
        assert_eq!(r.data_ins, pdus, "{blocks} blocks: Data-In PDUs");
    }
    // INQUIRY with allocation length 5: 5 bytes of data, 3 of padding.
    let r = ini.scsi(0, &[0x12, 0, 0, 0, 5, 0], 5, None).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.data.len(), 5);
    assert_eq!(r.data[0] & 0x1F, 0, "direct-access device");
    assert_eq!(ini.logout(0).unwrap(), 0);
}

/// Many reads answered before the initiator reads anything: the target's socket buffer fills,
/// writes end part-way through spliced buffers, and the rest follows when the initiator
/// drains. Every byte arrives, in order.
#[test]
fn spliced_data_in_survives_partial_socket_writes() {
    let (config, disk) = simple_config(8192);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.max_recv_data_segment_length = 262_144;
    ini.login(&o).unwrap();
    let data = pattern(8192 * 512, 3);
    for lba in (0..8192u32).step_by(256) {
        let at = lba as usize * 512;
        assert_eq!(
            ini.write10(0, lba, &data[at..at + 256 * 512])
                .unwrap()
                .status,
            0
        );
    }
    // 60 READs of 512 blocks (256 KiB each, one Data-In PDU; 15 MiB in all: more than the
    // loopback socket buffers hold) sent before any response is read (the CmdSN window is 64).
    let mut want = std::collections::HashMap::new();
    for i in 0..60u32 {
        let lba = (i * 167) % (8192 - 512);
        let cdb = cdb10(0x28, lba, 512);
        let bhs = ini.command_bhs(0, &cdb, true, false, 512 * 512);
        want.insert(bhs.itt(), lba as usize * 512);
        ini.send_pdu(&bhs, &[]).unwrap();
        ini.cmd_sn = ini.cmd_sn.wrapping_add(1);
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut got = std::collections::HashMap::<u32, Vec<u8>>::new();
    let mut finished = 0;
    while finished < want.len() {
        let p = ini.recv_non_ping().unwrap().expect("connection open");
        assert_eq!(
            p.bhs.opcode(),
            Some(iscsi::pdu::Opcode::DataIn),
            "{:?}",
            p.bhs
        );
        got.entry(p.bhs.itt())
            .or_default()
            .extend_from_slice(&p.data);
        if p.bhs.flags() & 1 != 0 {
            finished += 1;
        }
    }
    for (itt, at) in want {
        assert!(
            got[&itt] == data[at..at + 512 * 512],
            "read at byte {at} arrived changed"
        );
    }
    assert_eq!(ini.logout(0).unwrap(), 0);
}
