//! Golden tests for the SPC commands: raw CDB in; exact status, sense and data-in out.

mod common;

use std::sync::Arc;

use common::*;
use device::{ItNexus, LunDirectory, ResetKind, Residual, ScsiRequest, ScsiStatus};
use scsi::{Asc, SenseKey};

fn ascii(s: &str, n: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.resize(n, b' ');
    v
}

#[test]
fn test_unit_ready_is_good_without_data() {
    let t = lu512();
    let (c, d) = run(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(
        (c.status, c.residual, d.len()),
        (ScsiStatus::Good, Residual::None, 0)
    );
    // NACA in the control byte is not supported.
    invalid_cdb(&t.lu, &[0, 0, 0, 0, 0, 0x04], 5, 2);
    invalid_cdb(&t.lu, &[0, 0, 0, 1, 0, 0], 3, 0);
}

#[test]
fn inquiry_standard_data_is_exact() {
    let t = lu512();
    let (c, d) = run(&t.lu, I1, &inquiry(false, 0, 255), &[], 255);
    assert_eq!(c.status, ScsiStatus::Good);
    let mut want = vec![0x00, 0x00, 0x06, 0x12, 91, 0x00, 0x00, 0x02];
    want.extend(ascii("SCSIPORT", 8));
    want.extend(ascii("GOLDEN DISK", 16));
    want.extend(ascii("0042", 4));
    want.extend([0u8; 22]);
    want.extend([0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0, 0x09, 0x60]);
    want.resize(96, 0);
    assert_eq!(d, want);
    assert_eq!(c.residual, Residual::Underflow(255 - 96));
    // Allocation length cuts the data; EDTL larger than allocation length underflows.
    let (c, d) = run(&t.lu, I1, &inquiry(false, 0, 36), &[], 255);
    assert_eq!((d.len(), c.residual), (36, Residual::Underflow(255 - 36)));
    assert_eq!(d[..], want[..36]);
    // EDTL smaller than what the command returns: overflow.
    let (c, d) = run(&t.lu, I1, &inquiry(false, 0, 255), &[], 8);
    assert_eq!((d.len(), c.residual), (8, Residual::Overflow(96 - 8)));
    // Allocation length 0: nothing, not an error.
    let (c, d) = run(&t.lu, I1, &inquiry(false, 0, 0), &[], 0);
    assert_eq!(
        (c.status, d.len(), c.residual),
        (ScsiStatus::Good, 0, Residual::None)
    );
}

#[test]
fn inquiry_rejects_page_without_evpd_cmddt_and_unknown_pages() {
    let t = lu512();
    invalid_cdb(&t.lu, &inquiry(false, 0x80, 255), 2, 7);
    invalid_cdb(&t.lu, &inquiry(true, 0x99, 255), 2, 7);
    invalid_cdb(&t.lu, &[0x12, 0x02, 0, 0, 255, 0], 1, 1); // CMDDT
}

#[test]
fn vpd_supported_pages_serial_and_limits_are_exact() {
    let t = lu512();
    let d = good(&t.lu, I1, &inquiry(true, 0x00, 255), &[], 255);
    assert_eq!(d, [0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]);
    let d = good(&t.lu, I1, &inquiry(true, 0x80, 255), &[], 255);
    assert_eq!(d, [0, 0x80, 0, 6, b'S', b'N', b'0', b'0', b'0', b'1']);
    let d = good(&t.lu, I1, &inquiry(true, 0xB0, 255), &[], 255);
    let mut want = vec![0, 0xB0, 0, 0x3C, 0x01, 16, 0, 1];
    want.extend(1024u32.to_be_bytes()); // MAXIMUM TRANSFER LENGTH
    want.extend(0u32.to_be_bytes()); // OPTIMAL TRANSFER LENGTH
    want.extend(1024u32.to_be_bytes()); // MAXIMUM PREFETCH LENGTH
    want.extend(8192u32.to_be_bytes()); // MAXIMUM UNMAP LBA COUNT
    want.extend(256u32.to_be_bytes()); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    want.extend(1u32.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    want.extend(0u32.to_be_bytes()); // UGAVALID = 0
    want.extend(4096u64.to_be_bytes()); // MAXIMUM WRITE SAME LENGTH
    want.resize(0x40, 0);
    assert_eq!(d, want);
    let d = good(&t.lu, I1, &inquiry(true, 0xB1, 255), &[], 255);
    let mut want = vec![0, 0xB1, 0, 0x3C, 0, 1];
    want.resize(0x40, 0);
    assert_eq!(d, want);
    let d = good(&t.lu, I1, &inquiry(true, 0xB2, 255), &[], 255);
    assert_eq!(d, [0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
}

#[test]
fn vpd_device_identification_is_stable_and_names_the_port() {
    let a = lu512();
    let b = lu512();
    let da = good(&a.lu, I1, &inquiry(true, 0x83, 1024), &[], 1024);
    let db = good(&b.lu, I1, &inquiry(true, 0x83, 1024), &[], 1024);
    assert_eq!(da, db, "same configuration, same designators");
    assert_eq!(&da[0..2], &[0, 0x83]);
    assert_eq!(
        usize::from(u16::from_be_bytes([da[2], da[3]])),
        da.len() - 4
    );
    // First designator: NAA 3 (locally assigned), 8 bytes, binary, LU association.
    assert_eq!(&da[4..8], &[0x01, 0x03, 0x00, 0x08]);
    assert_eq!(da[8] >> 4, 3);
    assert_eq!(&da[8..16], a.lu.naa_designator());
    // The port designators name the port the command arrived on.
    let dc = good(&a.lu, I3, &inquiry(true, 0x83, 1024), &[], 1024);
    let n = dc.len();
    assert_eq!(&dc[n - 16..n - 8], &[0x51, 0x94, 0, 4, 0, 0, 0, 2]);
    assert_eq!(&dc[n - 8..], &[0x51, 0x95, 0, 4, 0, 0, 0, 1]);
    assert_eq!(
        &da[da.len() - 16..da.len() - 8],
        &[0x51, 0x94, 0, 4, 0, 0, 0, 1]
    );
    // Another serial gives another identifier; a company id gives NAA 6.
    let mut cfg = config();
    cfg.serial = "SN0002".into();
    assert_ne!(
        lu_with(64, 512, cfg).lu.naa_designator(),
        a.lu.naa_designator()
    );
    let mut cfg = config();
    cfg.ieee_company_id = Some(0x00_1234);
    let l6 = lu_with(64, 512, cfg);
    let naa6 = l6.lu.naa_designator();
    assert_eq!(naa6.len(), 16);
    assert_eq!(&naa6[..4], &[0x60, 0x01, 0x23, 0x40 | (naa6[3] & 0x0F)]);
}

#[test]
fn request_sense_reports_no_sense_then_unit_attention_once() {
    let t = lu512();
    let (c, d) = run(&t.lu, I1, &[0x03, 0, 0, 0, 252, 0], &[], 252);
    assert_eq!(c.status, ScsiStatus::Good);
    assert_eq!(
        d,
        [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(c.residual, Residual::Underflow(252 - 18));
    t.lu.reset(ResetKind::LogicalUnitReset);
    let d = good(&t.lu, I1, &[0x03, 0x01, 0, 0, 252, 0], &[], 252);
    assert_eq!(d, [0x72, 0x06, 0x29, 0x03, 0, 0, 0, 0]);
    let d = good(&t.lu, I1, &[0x03, 0, 0, 0, 252, 0], &[], 252);
    assert_eq!(
        (d[2], d[12], d[13]),
        (0, 0, 0),
        "cleared by the first REQUEST SENSE"
    );
    // The other nexus still has its own.
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(&c, SenseKey::UnitAttention, Asc::BUS_DEVICE_RESET, None);
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(c.status, ScsiStatus::Good);
}

#[test]
fn unit_attention_is_not_reported_to_inquiry_or_report_luns() {
    let t = lu512();
    t.lu.reset(ResetKind::TargetReset);
    good(&t.lu, I1, &inquiry(false, 0, 96), &[], 96);
    good(
        &t.lu,
        I1,
        &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        &[],
        256,
    );
    let (c, _) = run(&t.lu, I1, &read10(0, 1), &[], 512);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::SCSI_BUS_RESET_OCCURRED,
        None,
    );
    good(&t.lu, I1, &read10(0, 1), &[], 512);
    // Power on: 29/01; nexus loss: 29/07 for that nexus only.
    t.lu.reset(ResetKind::PowerOn);
    let (c, _) = run(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(&c, SenseKey::UnitAttention, Asc::POWER_ON_OCCURRED, None);
    t.lu.nexus_loss(I1);
    let (c, _) = run(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::I_T_NEXUS_LOSS_OCCURRED,
        None,
    );
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(&c, SenseKey::UnitAttention, Asc::POWER_ON_OCCURRED, None);
    good(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    t.lu.notify_reported_luns_changed();
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::REPORTED_LUNS_DATA_HAS_CHANGED,
        None,
    );
    t.lu.notify_capacity_changed();
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::CAPACITY_DATA_HAS_CHANGED,
        None,
    );
}

fn mode_sense6(dbd: bool, pc: u8, page: u8, sub: u8, alloc: u8) -> [u8; 6] {
    [
        0x1a,
        if dbd { 0x08 } else { 0 },
        (pc << 6) | page,
        sub,
        alloc,
        0,
    ]
}

const CACHING_CURRENT: [u8; 20] = [
    0x88, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
const CONTROL_CURRENT: [u8; 12] = [0x8A, 0x0A, 0x02, 0x10, 0, 0x40, 0, 0, 0xFF, 0xFF, 0, 0];
const IE_CURRENT: [u8; 12] = [0x9C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn mode_sense6_all_pages_current_is_exact() {
    let t = lu512();
    let (c, d) = run(&t.lu, I1, &mode_sense6(false, 0, 0x3F, 0, 255), &[], 255);
    assert_eq!(c.status, ScsiStatus::Good);
    let mut want = vec![3 + 8 + 44, 0, 0x10, 8];
    want.extend((BLOCKS_512 as u32).to_be_bytes());
    want.extend([0, 0, 0x02, 0x00]);
    want.extend(CACHING_CURRENT);
    want.extend(CONTROL_CURRENT);
    want.extend(IE_CURRENT);
    assert_eq!(d, want);
    assert_eq!(c.residual, Residual::Underflow(255 - want.len() as u32));
    // Allocation length 4: just the header, no residual against EDTL 4.
    let (c, d) = run(&t.lu, I1, &mode_sense6(false, 0, 0x3F, 0, 4), &[], 4);
    assert_eq!((d, c.residual), (want[..4].to_vec(), Residual::None));
}

#[test]
fn mode_sense_page_controls_and_single_pages() {
    let t = lu512();
    let d = good(&t.lu, I1, &mode_sense6(true, 1, 0x0A, 0, 255), &[], 255);
    assert_eq!(
        d,
        [
            15, 0, 0x10, 0, 0x8A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    let d = good(&t.lu, I1, &mode_sense6(true, 1, 0x08, 0, 255), &[], 255);
    assert_eq!(&d[4..8], &[0x88, 0x12, 0x04, 0]);
    let d = good(&t.lu, I1, &mode_sense6(true, 2, 0x1C, 0, 255), &[], 255);
    assert_eq!(&d[4..], &IE_CURRENT);
    let d = good(&t.lu, I1, &mode_sense6(true, 3, 0x3F, 0xFF, 255), &[], 255);
    assert_eq!(d.len(), 4 + 44);
    invalid_cdb(&t.lu, &mode_sense6(true, 0, 0x19, 0, 255), 2, 5);
    invalid_cdb(&t.lu, &mode_sense6(true, 0, 0x0A, 1, 255), 3, 7);
    // MODE SENSE(10) with LLBAA: long block descriptor.
    let d = good(
        &t.lu,
        I1,
        &[0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0],
        &[],
        255,
    );
    let mut want = vec![0, 6 + 16 + 20, 0, 0x10, 1, 0, 0, 16];
    want.extend(BLOCKS_512.to_be_bytes());
    want.extend([0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    want.extend(CACHING_CURRENT);
    assert_eq!(d, want);
}

fn control_page(d_sense: bool, swp: bool) -> Vec<u8> {
    let mut l = vec![0, 0, 0, 0];
    let mut p = CONTROL_CURRENT;
    p[0] = 0x0A;
    p[2] |= u8::from(d_sense) << 2;
    p[4] |= u8::from(swp) << 3;
    l.extend(p);
    l
}

#[test]
fn mode_select_d_sense_switches_to_descriptor_sense() {
    let t = lu512();
    let list = control_page(true, false);
    good(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, list.len() as u8, 0],
        &list,
        0,
    );
    let (c, _) = run(&t.lu, I1, &read10(BLOCKS_512 as u32, 1), &[], 512);
    assert_eq!(
        c.sense.unwrap().as_bytes(),
        &[0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0]
    );
    // The other nexus is told the mode parameters changed.
    let (c, _) = run(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
    check(
        &c,
        SenseKey::UnitAttention,
        Asc::MODE_PARAMETERS_CHANGED,
        None,
    );
    // An invalid field in descriptor format carries the SKS descriptor.
    let (c, _) = run(&t.lu, I1, &[0x12, 0x02, 0, 0, 255, 0], &[], 255);
    assert_eq!(
        c.sense.unwrap().as_bytes(),
        &[
            0x72, 0x05, 0x24, 0x00, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0xC9, 0x00, 0x01, 0
        ]
    );
    let list = control_page(false, false);
    good(
        &t.lu,
        I1,
        &[0x55, 0x10, 0, 0, 0, 0, 0, 0, list.len() as u8 + 4, 0],
        &{
            let mut l = vec![0u8; 8];
            l.extend(&list[4..]);
            l
        },
        0,
    );
    let (c, _) = run(&t.lu, I1, &read10(BLOCKS_512 as u32, 1), &[], 512);
    assert_eq!(c.sense.unwrap().as_bytes()[0], 0x70);
}

#[test]
fn mode_select_swp_write_protects_and_sets_wp() {
    let t = lu512();
    let list = control_page(false, true);
    good(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, list.len() as u8, 0],
        &list,
        0,
    );
    expect_check(
        &t.lu,
        I1,
        &write10(0, 1),
        &[0; 512],
        SenseKey::DataProtect,
        Asc::WRITE_PROTECTED,
        None,
    );
    expect_check(
        &t.lu,
        I1,
        &cdb16(0x93, 0, 0, 1),
        &[0; 512],
        SenseKey::DataProtect,
        Asc::WRITE_PROTECTED,
        None,
    );
    good(&t.lu, I1, &read10(0, 1), &[], 512);
    let d = good(&t.lu, I1, &mode_sense6(true, 0, 0x0A, 0, 255), &[], 255);
    assert_eq!(d[2], 0x90, "WP and DPOFUA");
    let list = control_page(false, false);
    good(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, list.len() as u8, 0],
        &list,
        0,
    );
    good(&t.lu, I1, &write10(0, 1), &[0; 512], 0);
}

#[test]
fn mode_select_rejects_unchangeable_fields_with_parameter_pointer() {
    let t = lu512();
    let mut list = control_page(false, false);
    list[4 + 3] = 0x00; // QUEUE ALGORITHM MODIFIER is not changeable
    expect_check(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, list.len() as u8, 0],
        &list,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 7, Some(4))),
    );
    // Parameter list longer than the data sent.
    expect_check(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, 200, 0],
        &list,
        SenseKey::IllegalRequest,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
        None,
    );
    // Unknown page.
    let bad = [0, 0, 0, 0, 0x19, 2, 0, 0];
    expect_check(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, 8, 0],
        &bad,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 4, Some(5))),
    );
    // SP saves: the saved page control shows the new WCE, and a reset restores it.
    let mut caching = vec![0u8, 0, 0, 0];
    caching.extend(CACHING_CURRENT);
    caching[4] = 0x08;
    caching[6] = 0; // WCE off
    good(
        &t.lu,
        I1,
        &[0x15, 0x11, 0, 0, caching.len() as u8, 0],
        &caching,
        0,
    );
    t.lu.reset(ResetKind::PowerOn);
    let d = good(&t.lu, I2, &inquiry(false, 0, 36), &[], 36);
    assert_eq!(d.len(), 36);
    let (c, _) = run(&t.lu, I2, &mode_sense6(true, 0, 0x08, 0, 255), &[], 255);
    check(&c, SenseKey::UnitAttention, Asc::POWER_ON_OCCURRED, None);
    let d = good(&t.lu, I2, &mode_sense6(true, 3, 0x08, 0, 255), &[], 255);
    assert_eq!(d[6], 0, "saved WCE is off");
    let d = good(&t.lu, I2, &mode_sense6(true, 0, 0x08, 0, 255), &[], 255);
    assert_eq!(d[6], 0, "current restored from saved");
}

#[test]
fn report_luns_reports_own_lun_wlun_and_directory() {
    let t = lu512();
    let cdb = |sel: u8, alloc: u32| {
        let a = alloc.to_be_bytes();
        [0xa0, 0, sel, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0]
    };
    let d = good(&t.lu, I1, &cdb(0, 256), &[], 256);
    assert_eq!(d, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let d = good(&t.lu, I1, &cdb(1, 256), &[], 256);
    assert_eq!(d, [0, 0, 0, 8, 0, 0, 0, 0, 0xC1, 0x01, 0, 0, 0, 0, 0, 0]);
    let d = good(&t.lu, I1, &cdb(2, 256), &[], 256);
    assert_eq!(&d[0..4], &[0, 0, 0, 16]);
    let d = good(&t.lu, I1, &cdb(0x10, 256), &[], 256);
    assert_eq!(d, [0u8; 8]);
    invalid_cdb(&t.lu, &cdb(0x03, 256), 2, 7);
    // Allocation length 0 is not an error (SPC-4 4.2.5.6).
    let (c, d) = run(&t.lu, I1, &cdb(0, 0), &[], 0);
    assert_eq!((c.status, d.len()), (ScsiStatus::Good, 0));

    struct Dir;
    impl LunDirectory for Dir {
        fn luns(&self, _n: ItNexus, out: &mut Vec<u64>) {
            out.extend([3, 0, 300]);
        }
    }
    let t2 = lu512();
    let lu = {
        let cfg = config();
        device::LogicalUnit::new(cfg, t2.disk.clone()).with_lun_directory(Arc::new(Dir))
    };
    let d = good(&lu, I1, &cdb(0, 256), &[], 256);
    assert_eq!(
        d,
        [
            0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x41, 0x2C, 0,
            0, 0, 0, 0, 0
        ]
    );

    // The front end's helper for the REPORT LUNS well-known LU.
    let mut buf = [0u8; 64];
    let c = cdb(2, 64);
    let mut req = ScsiRequest {
        nexus: I1,
        cdb: &c,
        data_out: &[],
        data_in: &mut buf,
    };
    let comp = device::report_luns(&mut req, &[1, 2]);
    assert_eq!(comp.status, ScsiStatus::Good);
    assert_eq!(comp.data_in_len, 32);
    assert_eq!(comp.residual, Residual::Underflow(32));
    assert_eq!(
        &buf[8..32],
        &[
            0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0xC1, 1, 0, 0, 0, 0, 0, 0
        ]
    );
}

#[test]
fn report_supported_opcodes_all_and_one_command() {
    let t = lu512();
    let rsoc = |rctd: bool, opts: u8, op: u8, sa: u16, alloc: u32| {
        let a = alloc.to_be_bytes();
        let s = sa.to_be_bytes();
        [
            0xa3,
            0x0c,
            opts | if rctd { 0x80 } else { 0 },
            op,
            s[0],
            s[1],
            a[0],
            a[1],
            a[2],
            a[3],
            0,
            0,
        ]
    };
    let d = good(&t.lu, I1, &rsoc(false, 0, 0, 0, 65535), &[], 65535);
    let n = device::table::COMMANDS.len();
    assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize, 8 * n);
    assert_eq!(d.len(), 4 + 8 * n);
    // READ(10) descriptor.
    let i = (0..n).find(|i| d[4 + 8 * i] == 0x28).unwrap();
    assert_eq!(&d[4 + 8 * i..12 + 8 * i], &[0x28, 0, 0, 0, 0, 0, 0, 10]);
    // PR IN / READ KEYS has SERVACTV.
    let i = (0..n).find(|i| d[4 + 8 * i] == 0x5e).unwrap();
    assert_eq!(&d[4 + 8 * i..12 + 8 * i], &[0x5e, 0, 0, 0, 0, 0x01, 0, 10]);
    // With timeouts descriptors.
    let d = good(&t.lu, I1, &rsoc(true, 0, 0, 0, 65535), &[], 65535);
    assert_eq!(d.len(), 4 + 20 * n);
    assert_eq!(
        &d[4..24],
        &[
            0, 0, 0, 0, 0, 0x02, 0, 6, 0, 0x0A, 0, 0, 0, 0, 0, 5, 0, 0, 0, 10
        ]
    );
    // One command: READ(10) with its usage data.
    let d = good(&t.lu, I1, &rsoc(false, 1, 0x28, 0, 512), &[], 512);
    assert_eq!(
        d,
        [
            0, 0x03, 0, 10, 0x28, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0
        ]
    );
    let d = good(&t.lu, I1, &rsoc(true, 2, 0x9e, 0x10, 512), &[], 512);
    assert_eq!(&d[..6], &[0, 0x83, 0, 16, 0x9e, 0x10]);
    assert_eq!(&d[20..], &[0, 0x0A, 0, 0, 0, 0, 0, 5, 0, 0, 0, 10]);
    // RCTD is byte 2 bit 7: the usage data of REPORT SUPPORTED OPERATION CODES itself
    // allows it there, and every descriptor of the ALL form carries CTDP and a timeouts
    // descriptor of length 0x0A.
    let d = good(&t.lu, I1, &rsoc(false, 2, 0xa3, 0x0c, 512), &[], 512);
    assert_eq!(&d[..7], &[0, 0x03, 0, 12, 0xa3, 0x0c, 0x87]);
    let d = good(&t.lu, I1, &rsoc(true, 0, 0, 0, 65535), &[], 65535);
    for k in 0..n {
        let desc = &d[4 + 20 * k..24 + 20 * k];
        assert_eq!(desc[5] & 0x02, 0x02, "CTDP of descriptor {k}");
        assert_eq!(
            &desc[8..10],
            &[0, 0x0A],
            "timeouts length of descriptor {k}"
        );
    }
    // Byte 1 bit 7 is reserved.
    let mut c = rsoc(false, 0, 0, 0, 65535);
    c[1] |= 0x80;
    invalid_cdb(&t.lu, &c, 1, 7);
    // Unsupported opcode: SUPPORT = 001b.
    let d = good(&t.lu, I1, &rsoc(false, 1, 0x04, 0, 512), &[], 512);
    assert_eq!(d, [0, 0x01, 0, 0]);
    // Form mismatches.
    invalid_cdb(&t.lu, &rsoc(false, 1, 0x9e, 0x10, 512), 2, 2);
    invalid_cdb(&t.lu, &rsoc(false, 2, 0x28, 0, 512), 2, 2);
    invalid_cdb(&t.lu, &rsoc(false, 4, 0x28, 0, 512), 2, 2);
}

#[test]
fn unknown_opcode_and_service_action_are_illegal_requests() {
    let t = lu512();
    expect_check(
        &t.lu,
        I1,
        &[0x04, 0, 0, 0, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        Asc::INVALID_COMMAND_OPERATION_CODE,
        None,
    );
    expect_check(
        &t.lu,
        I1,
        &[0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        Asc::INVALID_COMMAND_OPERATION_CODE,
        None,
    );
    invalid_cdb(&t.lu, &[0x5e, 0x07, 0, 0, 0, 0, 0, 0, 64, 0], 1, 4);
    invalid_cdb(&t.lu, &cdb16(0x9e, 0x11, 0, 32), 1, 4);
}

#[test]
fn start_stop_unit_stops_media_access_and_refuses_eject() {
    let t = lu512();
    good(&t.lu, I1, &[0x1b, 0, 0, 0, 0x00, 0], &[], 0);
    assert!(!t.lu.is_started());
    let nr = Asc::LU_NOT_READY_INITIALIZING_COMMAND_REQUIRED;
    expect_check(
        &t.lu,
        I1,
        &[0, 0, 0, 0, 0, 0],
        &[],
        SenseKey::NotReady,
        nr,
        None,
    );
    expect_check(&t.lu, I1, &read10(0, 1), &[], SenseKey::NotReady, nr, None);
    good(&t.lu, I1, &inquiry(false, 0, 36), &[], 36);
    let d = good(&t.lu, I1, &[0x03, 0, 0, 0, 18, 0], &[], 18);
    assert_eq!((d[2], d[12], d[13]), (0x02, 0x04, 0x02));
    good(&t.lu, I1, &[0x1b, 0x01, 0, 0, 0x01, 0], &[], 0);
    good(&t.lu, I1, &[0, 0, 0, 0, 0, 0], &[], 0);
    invalid_cdb(&t.lu, &[0x1b, 0, 0, 0, 0x02, 0], 4, 1);
    invalid_cdb(&t.lu, &[0x1b, 0, 0, 0, 0x50, 0], 4, 7);
    good(&t.lu, I1, &[0x1b, 0, 0, 0, 0x30, 0], &[], 0); // STANDBY: accepted, no effect
    assert!(t.lu.is_started());
}

#[test]
fn prevent_allow_is_recorded_per_nexus() {
    let t = lu512();
    good(&t.lu, I1, &[0x1e, 0, 0, 0, 1, 0], &[], 0);
    good(&t.lu, I2, &[0x1e, 0, 0, 0, 1, 0], &[], 0);
    assert!(t.lu.removal_prevented());
    good(&t.lu, I1, &[0x1e, 0, 0, 0, 0, 0], &[], 0);
    assert!(t.lu.removal_prevented());
    t.lu.nexus_loss(I2);
    assert!(!t.lu.removal_prevented());
    invalid_cdb(&t.lu, &[0x1e, 0, 0, 0, 2, 0], 4, 1);
    good(&t.lu, I1, &[0x1e, 0, 0, 0, 1, 0], &[], 0);
    t.lu.reset(ResetKind::LogicalUnitReset);
    assert!(!t.lu.removal_prevented());
}

#[test]
fn reserve_release_6_and_10_follow_scsi2_rules() {
    let t = lu512();
    for (res, rel) in [
        (
            [0x16u8, 0, 0, 0, 0, 0].to_vec(),
            [0x17u8, 0, 0, 0, 0, 0].to_vec(),
        ),
        (
            vec![0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ] {
        good(&t.lu, I1, &res, &[], 0);
        good(&t.lu, I1, &res, &[], 0); // again by the holder
        conflict(&t.lu, I2, &res, &[], 0);
        conflict(&t.lu, I2, &read10(0, 1), &[], 512);
        conflict(&t.lu, I2, &[0, 0, 0, 0, 0, 0], &[], 0);
        good(&t.lu, I2, &inquiry(false, 0, 36), &[], 36);
        good(&t.lu, I2, &rel, &[], 0); // not the holder: no effect
        conflict(&t.lu, I2, &write10(0, 1), &[0; 512], 0);
        good(&t.lu, I1, &write10(0, 1), &[0; 512], 0);
        good(&t.lu, I1, &rel, &[], 0);
        good(&t.lu, I2, &read10(0, 1), &[], 512);
    }
    // Resets and nexus loss release it.
    good(&t.lu, I1, &[0x16, 0, 0, 0, 0, 0], &[], 0);
    t.lu.reset(ResetKind::LogicalUnitReset);
    let (c, _) = run(&t.lu, I2, &read10(0, 1), &[], 512);
    check(&c, SenseKey::UnitAttention, Asc::BUS_DEVICE_RESET, None);
    good(&t.lu, I2, &read10(0, 1), &[], 512);
    let (c, _) = run(&t.lu, I1, &[0x16, 0, 0, 0, 0, 0], &[], 0);
    check(&c, SenseKey::UnitAttention, Asc::BUS_DEVICE_RESET, None);
    good(&t.lu, I1, &[0x16, 0, 0, 0, 0, 0], &[], 0);
    t.lu.nexus_loss(I1);
    good(&t.lu, I2, &read10(0, 1), &[], 512);
    // Third-party and extent bits are not supported.
    invalid_cdb(&t.lu, &[0x16, 0x10, 0, 0, 0, 0], 1, 4);
    invalid_cdb(&t.lu, &[0x56, 0x02, 0, 0, 0, 0, 0, 0, 0, 0], 1, 1);
}

#[test]
fn no_such_lun_answers_inquiry_report_luns_and_refuses_the_rest() {
    let call = |cdb: &[u8], in_len: usize| {
        let mut buf = vec![0u8; in_len];
        let mut req = ScsiRequest {
            nexus: I1,
            cdb,
            data_out: &[],
            data_in: &mut buf,
        };
        let c = device::no_such_lun(&mut req, &[0]);
        buf.truncate(c.data_in_len);
        (c, buf)
    };
    let (c, d) = call(&inquiry(false, 0, 96), 96);
    assert_eq!((c.status, d.len(), d[0]), (ScsiStatus::Good, 36, 0x7F));
    let (c, d) = call(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], 16);
    assert_eq!(
        (c.status, &d[..]),
        (
            ScsiStatus::Good,
            &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]
        )
    );
    let (c, d) = call(&[0x03, 0, 0, 0, 18, 0], 18);
    assert_eq!((c.status, d[2], d[12]), (ScsiStatus::Good, 0x05, 0x25));
    let (c, _) = call(&read10(0, 1), 512);
    check(
        &c,
        SenseKey::IllegalRequest,
        Asc::LOGICAL_UNIT_NOT_SUPPORTED,
        None,
    );
    let (c, _) = call(&inquiry(true, 0x83, 96), 96);
    check(
        &c,
        SenseKey::IllegalRequest,
        Asc::LOGICAL_UNIT_NOT_SUPPORTED,
        None,
    );
}

#[test]
fn logical_unit_and_io_plan_are_shareable_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<device::LogicalUnit>();
    send::<device::IoPlan>();
}

#[test]
fn default_write_same_limit_is_not_above_the_transfer_limit() {
    let cfg = device::LuConfig::default();
    let t = lu_with(BLOCKS_512, 512, cfg.clone());
    let d = good(&t.lu, I1, &inquiry(true, 0xB0, 255), &[], 255);
    let max_transfer = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    let max_write_same = u64::from_be_bytes(d[36..44].try_into().unwrap());
    assert_eq!(max_transfer, cfg.max_transfer_blocks);
    assert_eq!(max_write_same, u64::from(cfg.max_write_same_blocks));
    assert!(max_write_same <= u64::from(max_transfer));
    // A WRITE SAME(16) one block longer than the limit is INVALID FIELD IN CDB (the
    // NUMBER OF LOGICAL BLOCKS field, byte 10).
    let mut ws = cdb16(0x93, 0x08, 0, cfg.max_write_same_blocks + 1);
    ws[1] = 0x08;
    expect_check(
        &t.lu,
        I1,
        &ws,
        &[0u8; 512],
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_CDB,
        Some((true, 10, Some(7))),
    );
}
