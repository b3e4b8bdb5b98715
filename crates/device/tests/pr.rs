//! Persistent reservations with several initiators: registration, every reservation
//! type and its access rules, preemption, and the PR IN data formats.

mod common;

use common::*;
use device::{ItNexus, PrType, ResetKind, ScsiStatus};
use scsi::{Asc, SenseKey};

fn prout(sa: u8, ty: u8, key: u64, sa_key: u64) -> ([u8; 10], Vec<u8>) {
    let cdb = [0x5f, sa, ty, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, p)
}

fn pr_out_ok(t: &Lu, n: ItNexus, sa: u8, ty: u8, key: u64, sa_key: u64) {
    let (cdb, p) = prout(sa, ty, key, sa_key);
    good(&t.lu, n, &cdb, &p, 0);
}

fn pr_out_conflict(t: &Lu, n: ItNexus, sa: u8, ty: u8, key: u64, sa_key: u64) {
    let (cdb, p) = prout(sa, ty, key, sa_key);
    conflict(&t.lu, n, &cdb, &p, 0);
}

fn register(t: &Lu, n: ItNexus, key: u64) {
    pr_out_ok(t, n, 0x06, 0, 0, key); // REGISTER AND IGNORE EXISTING KEY
}

fn prin(t: &Lu, n: ItNexus, sa: u8) -> Vec<u8> {
    good(&t.lu, n, &[0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096)
}

fn read_keys(t: &Lu) -> (u32, Vec<u64>) {
    let d = prin(t, I1, 0);
    let generation = u32::from_be_bytes(d[0..4].try_into().unwrap());
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    let keys = d[8..8 + len]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    (generation, keys)
}

fn can_read(t: &Lu, n: ItNexus) -> bool {
    let (c, _) = run(&t.lu, n, &read10(1, 1), &[], 512);
    match c.status {
        ScsiStatus::Good => true,
        ScsiStatus::ReservationConflict => false,
        s => panic!("read: {s:?}"),
    }
}

fn can_write(t: &Lu, n: ItNexus) -> bool {
    let (c, _) = run(&t.lu, n, &write10(1, 1), &[0x44; 512], 0);
    match c.status {
        ScsiStatus::Good => true,
        ScsiStatus::ReservationConflict => false,
        s => panic!("write: {s:?}"),
    }
}

/// The libiscsi `ProutReserve.Access*` scenario: I1 reserves; I2 is registered, then
/// unregisters; I3 never registers. `expect` = (registered I2 read, write, unregistered
/// I2 read, write).
fn access_scenario(ty: PrType, expect: (bool, bool, bool, bool)) {
    let t = lu512();
    let ty = ty as u8;
    register(&t, I1, 0xA1);
    register(&t, I2, 0xB2);
    pr_out_ok(&t, I1, 0x01, ty, 0xA1, 0);
    let d = prin(&t, I2, 1);
    let all_reg = ty == 7 || ty == 8;
    let want_key: u64 = if all_reg { 0 } else { 0xA1 };
    assert_eq!(&d[4..8], &[0, 0, 0, 16]);
    assert_eq!(&d[8..16], &want_key.to_be_bytes());
    assert_eq!(d[21], ty, "READ RESERVATION type");
    assert!(
        can_read(&t, I1) && can_write(&t, I1),
        "holder has full access"
    );
    assert_eq!(
        (can_read(&t, I2), can_write(&t, I2)),
        (expect.0, expect.1),
        "registered I2"
    );
    // I3 (never registered) behaves as unregistered.
    assert_eq!(
        (can_read(&t, I3), can_write(&t, I3)),
        (expect.2, expect.3),
        "unregistered I3"
    );
    // Commands that are always allowed.
    good(&t.lu, I3, &inquiry(false, 0, 36), &[], 36);
    good(&t.lu, I3, &cdb16(0x9e, 0x10, 0, 32), &[], 32);
    good(&t.lu, I3, &[0, 0, 0, 0, 0, 0], &[], 0);
    prin(&t, I3, 0);
    // I2 unregisters.
    pr_out_ok(&t, I2, 0x00, 0, 0xB2, 0);
    assert_eq!(
        (can_read(&t, I2), can_write(&t, I2)),
        (expect.2, expect.3),
        "unregistered I2"
    );
    // Release; everyone has access again.
    pr_out_ok(&t, I1, 0x02, ty, 0xA1, 0);
    assert_eq!(prin(&t, I2, 1)[4..8], [0, 0, 0, 0]);
    assert!(can_read(&t, I3) && can_write(&t, I3));
    pr_out_ok(&t, I1, 0x00, 0, 0xA1, 0);
    assert_eq!(read_keys(&t).1, Vec::<u64>::new());
}

#[test]
fn access_write_exclusive() {
    access_scenario(PrType::WriteExclusive, (true, false, true, false));
}

#[test]
fn access_exclusive_access() {
    access_scenario(PrType::ExclusiveAccess, (false, false, false, false));
}

#[test]
fn access_write_exclusive_registrants_only() {
    access_scenario(
        PrType::WriteExclusiveRegistrantsOnly,
        (true, true, true, false),
    );
}

#[test]
fn access_exclusive_access_registrants_only() {
    access_scenario(
        PrType::ExclusiveAccessRegistrantsOnly,
        (true, true, false, false),
    );
}

#[test]
fn access_write_exclusive_all_registrants() {
    access_scenario(
        PrType::WriteExclusiveAllRegistrants,
        (true, true, true, false),
    );
}

#[test]
fn access_exclusive_access_all_registrants() {
    access_scenario(
        PrType::ExclusiveAccessAllRegistrants,
        (true, true, false, false),
    );
}

#[test]
fn register_rules_and_read_keys_format() {
    let t = lu512();
    assert_eq!(prin(&t, I1, 0), [0, 0, 0, 0, 0, 0, 0, 0]);
    let (cdb, p) = prout(0x06, 0, 0, 0x1122_3344_5566_7788);
    let (c, _) = run(&t.lu, I1, &cdb, &p, 0);
    assert_eq!(
        (c.status, c.residual),
        (ScsiStatus::Good, device::Residual::None)
    );
    // REGISTER while registered with a wrong key: conflict; with the right key: new key.
    pr_out_conflict(&t, I1, 0x00, 0, 0, 0x99);
    pr_out_ok(&t, I1, 0x00, 0, 0x1122_3344_5566_7788, 0x99);
    // REGISTER from an unregistered nexus with a non-zero key: conflict.
    pr_out_conflict(&t, I2, 0x00, 0, 0x5, 0x7);
    pr_out_ok(&t, I2, 0x00, 0, 0, 0x7);
    let d = prin(&t, I3, 0);
    assert_eq!(
        d,
        [
            0, 0, 0, 3, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0x07
        ]
    );
    // Unregistering with SA key 0; unregistering an unregistered nexus is a no-op.
    pr_out_ok(&t, I2, 0x00, 0, 0x7, 0);
    pr_out_ok(&t, I3, 0x00, 0, 0, 0);
    assert_eq!(read_keys(&t), (4, vec![0x99]));
    // Registrations survive a LU reset, not a power on.
    t.lu.reset(ResetKind::LogicalUnitReset);
    let (c, _) = run(&t.lu, I1, &[0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096);
    check(&c, SenseKey::UnitAttention, Asc::BUS_DEVICE_RESET, None);
    assert_eq!(read_keys(&t).1, vec![0x99]);
    t.lu.reset(ResetKind::PowerOn);
    let (c, _) = run(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(&c, SenseKey::UnitAttention, Asc::POWER_ON_OCCURRED, None);
    assert_eq!(read_keys(&t), (0, vec![]));
}

#[test]
fn reserve_release_conflicts_and_errors() {
    let t = lu512();
    register(&t, I1, 1);
    register(&t, I2, 2);
    // RESERVE by an unregistered nexus or with the wrong key: conflict.
    pr_out_conflict(&t, I3, 0x01, 1, 0, 0);
    pr_out_conflict(&t, I1, 0x01, 1, 2, 0);
    pr_out_ok(&t, I1, 0x01, 1, 1, 0);
    pr_out_ok(&t, I1, 0x01, 1, 1, 0); // same type again: fine
    pr_out_conflict(&t, I1, 0x01, 3, 1, 0); // other type by the holder
    pr_out_conflict(&t, I2, 0x01, 1, 2, 0); // other nexus
    // RELEASE by a non-holder: no effect; by the holder with the wrong type: 26/04.
    pr_out_ok(&t, I2, 0x02, 1, 2, 0);
    assert_eq!(prin(&t, I2, 1)[4..8], [0, 0, 0, 16]);
    let (cdb, p) = prout(0x02, 3, 1, 0);
    expect_check(
        &t.lu,
        I1,
        &cdb,
        &p,
        SenseKey::IllegalRequest,
        Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
        None,
    );
    // SCSI-2 RESERVE while registrations exist: conflict (CRH).
    conflict(&t.lu, I2, &[0x16, 0, 0, 0, 0, 0], &[], 0);
    // Invalid type, scope, APTPL, parameter list length, REGISTER AND MOVE.
    let (cdb, p) = prout(0x01, 2, 1, 0);
    invalid_cdb_with(&t, &cdb, &p, 2, 3);
    let (cdb, p) = prout(0x01, 0x11, 1, 0);
    invalid_cdb_with(&t, &cdb, &p, 2, 7);
    let (cdb, mut p) = prout(0x00, 0, 1, 5);
    p[20] = 0x01;
    expect_check(
        &t.lu,
        I1,
        &cdb,
        &p,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 20, Some(0))),
    );
    p[20] = 0x04;
    expect_check(
        &t.lu,
        I1,
        &cdb,
        &p,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 20, Some(2))),
    );
    let mut cdb = cdb;
    cdb[8] = 16;
    expect_check(
        &t.lu,
        I1,
        &cdb,
        &p[..16],
        SenseKey::IllegalRequest,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
        None,
    );
    let (cdb, p) = prout(0x07, 0, 1, 5);
    invalid_cdb_with(&t, &cdb, &p, 1, 4);
}

fn invalid_cdb_with(t: &Lu, cdb: &[u8], p: &[u8], byte: u16, bit: u8) {
    expect_check(
        &t.lu,
        I1,
        cdb,
        p,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_CDB,
        Some((true, byte, Some(bit))),
    );
}

#[test]
fn preempt_removes_registrations_and_takes_the_reservation() {
    let t = lu512();
    register(&t, I1, 1);
    register(&t, I2, 2);
    register(&t, I3, 3);
    pr_out_ok(&t, I2, 0x01, 3, 2, 0); // I2 holds Exclusive Access
    assert!(!can_read(&t, I1));
    // I1 preempts I2's key: I2 loses registration and reservation, I1 holds WE now.
    pr_out_ok(&t, I1, 0x04, 1, 1, 2);
    assert_eq!(read_keys(&t).1, vec![1, 3]);
    let d = prin(&t, I3, 1);
    assert_eq!((&d[8..16], d[21]), (&1u64.to_be_bytes()[..], 1));
    let (c, _) = run(&t.lu, I2, &read10(0, 1), &[], 512);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::REGISTRATIONS_PREEMPTED,
        None,
    );
    assert!(can_read(&t, I2) && !can_write(&t, I2));
    // Preempting a key nobody holds: conflict. SA key 0 without all-registrants: invalid.
    pr_out_conflict(&t, I1, 0x04, 1, 1, 0x77);
    let (cdb, p) = prout(0x04, 1, 1, 0);
    expect_check(
        &t.lu,
        I1,
        &cdb,
        &p,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 8, None)),
    );
    // PREEMPT AND ABORT of I3 without touching the reservation.
    pr_out_ok(&t, I1, 0x05, 1, 1, 3);
    assert_eq!(read_keys(&t).1, vec![1]);
    let (c, _) = run(&t.lu, I3, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::REGISTRATIONS_PREEMPTED,
        None,
    );
}

#[test]
fn preempt_all_registrants_with_zero_key_and_clear() {
    let t = lu512();
    register(&t, I1, 1);
    register(&t, I2, 2);
    pr_out_ok(&t, I2, 0x01, 8, 2, 0); // EA all registrants
    // The holder unregistering does not end an all-registrants reservation.
    register(&t, I3, 3);
    pr_out_ok(&t, I3, 0x00, 0, 3, 0);
    assert_eq!(prin(&t, I1, 1)[21], 8);
    pr_out_ok(&t, I1, 0x04, 3, 1, 0);
    assert_eq!(read_keys(&t).1, vec![1]);
    let d = prin(&t, I1, 1);
    assert_eq!((&d[8..16], d[21]), (&1u64.to_be_bytes()[..], 3));
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::REGISTRATIONS_PREEMPTED,
        None,
    );
    register(&t, I2, 22);
    pr_out_conflict(&t, I3, 0x03, 0, 3, 0); // CLEAR needs a registered nexus
    pr_out_ok(&t, I2, 0x03, 0, 22, 0);
    let (c, _) = run(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::RESERVATIONS_PREEMPTED,
        None,
    );
    assert_eq!(read_keys(&t).1, Vec::<u64>::new());
    assert_eq!(prin(&t, I1, 1)[4..8], [0, 0, 0, 0]);
}

#[test]
fn releasing_a_registrants_only_reservation_tells_the_others() {
    let t = lu512();
    register(&t, I1, 1);
    register(&t, I2, 2);
    pr_out_ok(&t, I1, 0x01, 5, 1, 0);
    pr_out_ok(&t, I1, 0x02, 5, 1, 0);
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::RESERVATIONS_RELEASED,
        None,
    );
    good(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
}

#[test]
fn report_capabilities_and_read_full_status_are_exact() {
    let t = lu512();
    assert_eq!(prin(&t, I1, 2), [0, 8, 0x10, 0x80, 0xEA, 0x01, 0, 0]);
    t.lu.register_nexus(I1, Some("iqn.a"));
    register(&t, I1, 0xAA);
    register(&t, I3, 0xCC);
    pr_out_ok(&t, I1, 0x01, 1, 0xAA, 0);
    let d = prin(&t, I2, 3);
    let tid_a = [
        5u8, 0, 0, 20, b'i', b'q', b'n', b'.', b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut want = vec![0, 0, 0, 2]; // two registrations; RESERVE does not count
    let mut body = Vec::new();
    body.extend(0xAAu64.to_be_bytes());
    body.extend([0, 0, 0, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 1]);
    body.extend((tid_a.len() as u32).to_be_bytes());
    body.extend(tid_a);
    body.extend(0xCCu64.to_be_bytes());
    body.extend([0, 0, 0, 0, 0x00, 0x00, 0, 0, 0, 0, 0, 2]);
    let name = format!("initiator-{:016x}", I3.initiator);
    let mut tid_c = vec![5u8, 0, 0, 28];
    tid_c.extend(name.as_bytes());
    tid_c.resize(32, 0);
    body.extend((tid_c.len() as u32).to_be_bytes());
    body.extend(tid_c);
    want.extend((body.len() as u32).to_be_bytes());
    want.extend(body);
    assert_eq!(d, want);
    // Allocation length truncates.
    let (c, d) = run(&t.lu, I1, &[0x5e, 3, 0, 0, 0, 0, 0, 0, 8, 0], &[], 8);
    assert_eq!((c.status, d.len()), (ScsiStatus::Good, 8));
    assert_eq!(&d[..4], &want[..4]);
}

#[test]
fn scsi2_reservation_blocks_persistent_reserve_out_of_others() {
    let t = lu512();
    good(&t.lu, I1, &[0x16, 0, 0, 0, 0, 0], &[], 0);
    let (cdb, p) = prout(0x06, 0, 0, 5);
    conflict(&t.lu, I2, &cdb, &p, 0);
    good(&t.lu, I1, &[0x17, 0, 0, 0, 0, 0], &[], 0);
    good(&t.lu, I2, &cdb, &p, 0);
}
