//! Bad input never panics and the LU keeps serving; every rejected CDB bit is reported
//! with the right field pointer.

mod common;

use common::*;
use device::table::{COMMANDS, DataDirection};
use device::{Residual, ScsiStatus};
use proptest::prelude::*;
use scsi::{Asc, SenseKey};

/// A CDB for `entry` with only the opcode and service action set.
fn minimal_cdb(e: &device::table::CommandEntry) -> Vec<u8> {
    let mut c = vec![0u8; e.cdb_len()];
    c[0] = e.opcode;
    if let Some(sa) = e.service_action {
        c[1] = sa as u8;
    }
    c
}

#[test]
fn every_bit_outside_every_usage_mask_is_invalid_field_with_its_pointer() {
    let t = lu512();
    let mut checked = 0;
    for e in COMMANDS {
        for byte in 1..e.cdb_len() {
            for bit in 0..8u8 {
                if e.usage[byte] & (1 << bit) != 0 {
                    continue;
                }
                if byte == 1 && e.service_action.is_some() && bit < 5 {
                    continue; // changes the service action: a different command
                }
                let mut cdb = minimal_cdb(e);
                cdb[byte] |= 1 << bit;
                let (c, d) = run(&t.lu, I1, &cdb, &[], 512);
                assert!(d.is_empty());
                check(
                    &c,
                    SenseKey::IllegalRequest,
                    Asc::INVALID_FIELD_IN_CDB,
                    Some((true, byte as u16, Some(bit))),
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} bits checked");
}

#[test]
fn truncated_cdbs_are_rejected_for_every_command() {
    let t = lu512();
    for e in COMMANDS {
        let cdb = minimal_cdb(e);
        for len in 1..e.cdb_len() {
            let (c, _) = run(&t.lu, I1, &cdb[..len], &[], 512);
            assert_eq!(
                c.status,
                ScsiStatus::CheckCondition,
                "{} cut to {len}",
                e.name
            );
            assert_eq!(sense_of(&c).key, SenseKey::IllegalRequest);
        }
    }
    let (c, _) = run(&t.lu, I1, &[], &[], 0);
    check(
        &c,
        SenseKey::IllegalRequest,
        Asc::INVALID_COMMAND_OPERATION_CODE,
        None,
    );
    good(&t.lu, I1, &read10(0, 1), &[], 512);
}

/// (opcode, service action, offset, width) of each allocation length field.
const ALLOCATION_LENGTHS: &[(u8, Option<u8>, usize, usize)] = &[
    (0x03, None, 4, 1),
    (0x12, None, 3, 2),
    (0x1a, None, 4, 1),
    (0x5a, None, 7, 2),
    (0x5e, Some(0), 7, 2),
    (0x5e, Some(1), 7, 2),
    (0x5e, Some(2), 7, 2),
    (0x5e, Some(3), 7, 2),
    (0x9e, Some(0x10), 10, 4),
    (0x9e, Some(0x12), 10, 4),
    (0xa0, None, 6, 4),
    (0xa3, Some(0x0c), 6, 4),
];

#[test]
fn allocation_lengths_zero_and_maximum_for_every_data_in_command() {
    let t = lu512();
    // Some state so PR IN has data.
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&5u64.to_be_bytes());
    good(&t.lu, I1, &[0x5f, 0x06, 0, 0, 0, 0, 0, 0, 24, 0], &p, 0);
    for e in COMMANDS.iter().filter(|e| e.direction == DataDirection::In) {
        let Some(&(_, _, at, width)) = ALLOCATION_LENGTHS
            .iter()
            .find(|(op, sa, ..)| *op == e.opcode && sa.map(u16::from) == e.service_action)
        else {
            continue;
        };
        let mut max = [0u8; 4];
        max[4 - width..].fill(0xFF);
        for (alloc, edtl) in [
            (0u64, 0usize),
            (0, 65535),
            (u64::MAX, 65535),
            (u64::MAX, 0),
            (u64::MAX, 3),
        ] {
            let mut cdb = minimal_cdb(e);
            if e.opcode == 0x1a || e.opcode == 0x5a {
                cdb[2] = 0x3F; // all pages
            }
            let bytes = alloc.to_be_bytes();
            cdb[at..at + width].copy_from_slice(&bytes[8 - width..]);
            let (c, d) = run(&t.lu, I1, &cdb, &[], edtl);
            assert_eq!(
                c.status,
                ScsiStatus::Good,
                "{} alloc {alloc:#x} edtl {edtl}",
                e.name
            );
            let limit = if alloc == 0 { 0 } else { edtl };
            assert!(d.len() <= limit, "{}: {} bytes", e.name, d.len());
            match c.residual {
                Residual::None => assert_eq!(d.len(), edtl),
                Residual::Underflow(u) => assert_eq!(d.len() + u as usize, edtl),
                Residual::Overflow(_) => assert_eq!(d.len(), edtl),
            }
        }
    }
}

#[test]
fn data_out_commands_survive_short_and_long_data() {
    let t = lu512();
    for e in COMMANDS
        .iter()
        .filter(|e| e.direction == DataDirection::Out)
    {
        for out_len in [0usize, 1, 7, 511, 513, 70000] {
            let mut cdb = minimal_cdb(e);
            // Ask for one block / a short parameter list where the command has a length.
            match e.cdb_len() {
                10 => cdb[8] = 1,
                12 => cdb[9] = 1,
                16 => cdb[13] = 1,
                _ => cdb[4] = 1,
            }
            let out = vec![0xA5u8; out_len];
            let (c, _) = run(&t.lu, I1, &cdb, &out, 0);
            assert!(
                matches!(c.status, ScsiStatus::Good | ScsiStatus::CheckCondition),
                "{} with {out_len} bytes: {:?}",
                e.name,
                c.status
            );
        }
    }
    good(&t.lu, I1, &inquiry(false, 0, 36), &[], 36);
    good(&t.lu, I1, &read10(0, 1), &[], 512);
}

fn table_opcode() -> impl Strategy<Value = Vec<u8>> {
    (
        0..COMMANDS.len(),
        proptest::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(i, mut tail)| {
            let e = &COMMANDS[i];
            let mut c = vec![e.opcode];
            if let Some(sa) = e.service_action {
                c.push(sa as u8 | (tail.first().copied().unwrap_or(0) & 0xE0));
            }
            // Mostly valid: clear bits outside the usage mask in half of the cases.
            let clean = tail.first().is_some_and(|b| b & 1 == 0);
            c.append(&mut tail);
            c.truncate(e.cdb_len().max(1) + 4);
            if clean {
                for (b, m) in c.iter_mut().zip(e.usage) {
                    *b &= *m;
                }
                if let Some(sa) = e.service_action {
                    c[1] = (c[1] & 0xE0) | sa as u8;
                }
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn random_cdbs_never_panic_and_the_lu_keeps_serving(
        cdb in prop_oneof![proptest::collection::vec(any::<u8>(), 0..24), table_opcode()],
        out in prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..2048),
            Just(vec![0u8; 4096]),
            Just(vec![0xFFu8; 65536]),
        ],
        in_len in prop_oneof![Just(0usize), 0usize..2048, Just(65535)],
        nexus in 0u64..3,
    ) {
        let t = lu512();
        let n = device::ItNexus::new(nexus, 1);
        let (c, d) = run(&t.lu, n, &cdb, &out, in_len);
        prop_assert!(d.len() <= in_len);
        prop_assert!(matches!(
            c.status,
            ScsiStatus::Good | ScsiStatus::CheckCondition | ScsiStatus::ReservationConflict | ScsiStatus::Busy
        ));
        // Still serving: INQUIRY always works, and media access works once started.
        good(&t.lu, I3, &inquiry(false, 0, 36), &[], 36);
        t.lu.reset(device::ResetKind::PowerOn);
        let (c, _) = run(&t.lu, I3, &[0, 0, 0, 0, 0, 0], &[], 0);
        prop_assert_eq!(c.status, ScsiStatus::CheckCondition);
        good(&t.lu, I3, &read10(0, 1), &[], 512);
    }
}
