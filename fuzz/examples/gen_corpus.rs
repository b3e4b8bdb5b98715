//! Writes the seed corpora (`corpus/<target>/seed-*`) in the input formats that
//! `src/lib.rs` documents. Run from `fuzz/`: `cargo run --example gen_corpus`.

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use iscsi::pdu::{self, Bhs, Opcode};
use iscsi::text;
use scsiport_fuzz::login_pdu;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

/// One cdb_ram record.
fn rec(op: u8, cdb: &[u8], edtl: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![op, cdb.len() as u8];
    v.extend_from_slice(cdb);
    v.extend_from_slice(&edtl.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn cdb_ram() {
    const AUTO: u8 = 3 << 2;
    let block = [0x5a; 512];
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "tur-inquiry",
            [
                rec(0, &[0; 6], 0, &[]),
                rec(AUTO, &[0x12, 0, 0, 0, 96, 0], 96, &[]),
            ]
            .concat(),
        ),
        (
            "vpd",
            [
                rec(AUTO, &[0x12, 1, 0x00, 0, 64, 0], 64, &[]),
                rec(AUTO, &[0x12, 1, 0x83, 0, 255, 0], 255, &[]),
                rec(AUTO, &[0x12, 1, 0xb0, 0, 64, 0], 64, &[]),
            ]
            .concat(),
        ),
        (
            "capacity",
            [
                rec(AUTO, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]),
                rec(
                    AUTO,
                    &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                    32,
                    &[],
                ),
            ]
            .concat(),
        ),
        (
            "write-read",
            [
                rec(AUTO, &[0x2a, 0, 0, 0, 0, 7, 0, 0, 1, 0], 512, &block),
                rec(AUTO | 0x10, &[0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0], 512, &[]),
            ]
            .concat(),
        ),
        (
            "write16-sync",
            [
                rec(
                    AUTO | 0x10,
                    &[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0],
                    512,
                    &block,
                ),
                rec(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, &[]),
            ]
            .concat(),
        ),
        (
            "mode-sense",
            [
                rec(AUTO, &[0x1a, 0, 0x3f, 0, 255, 0], 255, &[]),
                rec(AUTO, &[0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0], 255, &[]),
            ]
            .concat(),
        ),
        (
            "report-luns-sense",
            [
                rec(AUTO, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], 64, &[]),
                rec(AUTO, &[0x03, 0, 0, 0, 18, 0], 18, &[]),
            ]
            .concat(),
        ),
        ("pr-register-reserve", {
            let mut reg = [0u8; 24];
            reg[8..16].copy_from_slice(&0x1234u64.to_be_bytes());
            let mut res = [0u8; 24];
            res[..8].copy_from_slice(&0x1234u64.to_be_bytes());
            [
                rec(AUTO, &[0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], 24, &reg),
                rec(AUTO, &[0x5f, 0x01, 0x03, 0, 0, 0, 0, 0, 24, 0], 24, &res),
                rec(AUTO | 1, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, &block),
                rec(AUTO, &[0x5e, 0x00, 0, 0, 0, 0, 0, 0, 64, 0], 64, &[]),
            ]
            .concat()
        }),
        (
            "reset-ua",
            [
                rec(0xe0, &[], 0, &[]),
                rec(0, &[0; 6], 0, &[]),
                rec(1, &[0; 6], 0, &[]),
            ]
            .concat(),
        ),
        (
            "compare-write-same",
            [
                rec(
                    AUTO,
                    &[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0],
                    1024,
                    &[[0u8; 512], [1u8; 512]].concat(),
                ),
                rec(
                    AUTO,
                    &[0x93, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 4, 0, 0],
                    512,
                    &block,
                ),
            ]
            .concat(),
        ),
    ];
    for (n, s) in seeds {
        write("cdb_ram", n, &s);
    }
}

fn sense_parse() {
    let mut fixed = [0u8; 18];
    fixed[0] = 0x70;
    fixed[2] = 0x05;
    fixed[7] = 10;
    fixed[12] = 0x24;
    write("sense_parse", "fixed-invalid-field", &fixed);
    let mut info = fixed;
    info[0] = 0xf0;
    info[2] = 0x03;
    info[3..7].copy_from_slice(&0x100u32.to_be_bytes());
    info[12] = 0x11;
    info[15] = 0x80;
    write("sense_parse", "fixed-medium-error-info", &info);
    let mut deferred = fixed;
    deferred[0] = 0x71;
    write("sense_parse", "fixed-deferred", &deferred);
    let mut desc = vec![0x72, 0x0e, 0x1d, 0x00, 0, 0, 0, 12 + 8];
    desc.extend_from_slice(&[0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00]);
    desc.extend_from_slice(&[0x02, 0x06, 0, 0, 0x80, 0x00, 0x02, 0]);
    write("sense_parse", "descriptor-miscompare", &desc);
    write("sense_parse", "descriptor-short", &[0x73, 0x06, 0x29, 0x00]);
}

fn frame(b: &Bhs, data: &[u8], hd: bool, dd: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    pdu::encode(&mut out, b, &[data], hd, dd);
    out.to_vec()
}

fn command(itt: u32, cmd_sn: u32, cdb: &[u8], edtl: u32, flags: u8) -> Bhs {
    let mut b = Bhs::new(Opcode::ScsiCommand);
    b.0[1] = flags;
    b.set_u32(16, itt);
    b.set_u32(20, edtl);
    b.set_u32(24, cmd_sn);
    b.0[32..32 + cdb.len()].copy_from_slice(cdb);
    b
}

fn nop(itt: u32, cmd_sn: u32) -> Bhs {
    let mut b = Bhs::new(Opcode::NopOut);
    b.0[0] |= 0x40;
    b.0[1] = 0x80;
    b.set_u32(16, itt);
    b.set_u32(20, pdu::RESERVED_TAG);
    b.set_u32(24, cmd_sn);
    b
}

fn text_req(itt: u32, cmd_sn: u32) -> (Bhs, Vec<u8>) {
    let mut b = Bhs::new(Opcode::TextRequest);
    b.0[1] = 0x80;
    b.set_u32(16, itt);
    b.set_u32(20, pdu::RESERVED_TAG);
    b.set_u32(24, cmd_sn);
    let mut d = Vec::new();
    text::push(&mut d, "SendTargets", "All");
    (b, d)
}

fn logout(itt: u32, cmd_sn: u32) -> Bhs {
    let mut b = Bhs::new(Opcode::LogoutRequest);
    b.0[1] = 0x80;
    b.set_u32(16, itt);
    b.set_u32(24, cmd_sn);
    b
}

fn pdu_header() {
    let login = login_pdu(1);
    for (flags, name) in [(0u8, "plain"), (1, "hdigest"), (3, "digests")] {
        let hd = flags & 1 != 0;
        let dd = flags & 2 != 0;
        let mut v = vec![flags];
        v.extend(frame(
            &command(1, 1, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, 0xc1),
            &[],
            hd,
            dd,
        ));
        v.extend(frame(
            &command(2, 2, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, 0xa1),
            &[0x11; 512],
            hd,
            dd,
        ));
        v.extend(frame(&nop(3, 3), b"ping", hd, dd));
        let (t, d) = text_req(4, 3);
        v.extend(frame(&t, &d, hd, dd));
        write("pdu_header", &format!("{name}-stream"), &v);
    }
    let mut v = vec![0u8];
    v.extend_from_slice(&login);
    write("pdu_header", "login", &v);
}

fn login_text() {
    let mut normal = Vec::new();
    for (k, v) in [
        ("InitiatorName", "iqn.2026-11.org.scsiport:fuzz"),
        ("TargetName", iscsi::testing::TEST_IQN),
        ("SessionType", "Normal"),
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "CRC32C,None"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxOutstandingR2T", "1"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("ErrorRecoveryLevel", "0"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("MaxConnections", "1"),
    ] {
        text::push(&mut normal, k, v);
    }
    write(
        "login_text",
        "normal-op",
        &[&[0x3f & !1 | (1 << 5)][..], &normal].concat(),
    );
    let mut disc = Vec::new();
    text::push(&mut disc, "InitiatorName", "iqn.2026-11.org.scsiport:fuzz");
    text::push(&mut disc, "SessionType", "Discovery");
    text::push(&mut disc, "AuthMethod", "None");
    text::push(&mut disc, "X-com.example.Key", "0x0102ab");
    write(
        "login_text",
        "discovery-security",
        &[&[0x01][..], &disc].concat(),
    );
    let mut chap = Vec::new();
    text::push(&mut chap, "InitiatorName", "iqn.2026-11.org.scsiport:fuzz");
    text::push(&mut chap, "TargetName", iscsi::testing::TEST_IQN);
    text::push(&mut chap, "AuthMethod", "CHAP,None");
    text::push(&mut chap, "CHAP_A", "5,7");
    text::push(&mut chap, "CHAP_C", "0bAAECAwQFBgcICQ==");
    write("login_text", "auth-chap", &[&[0x40][..], &chap].concat());
}

fn session_stream() -> Vec<u8> {
    let mut v = login_pdu(1);
    v.extend(frame(
        &command(0x10, 1, &[0; 6], 0, 0x81),
        &[],
        false,
        false,
    ));
    v.extend(frame(
        &command(0x11, 2, &[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], 1024, 0xc1),
        &[],
        false,
        false,
    ));
    v.extend(frame(
        &command(0x12, 3, &[0x2a, 0, 0, 0, 0, 4, 0, 0, 1, 0], 512, 0xa1),
        &[0x77; 512],
        false,
        false,
    ));
    v.extend(frame(&nop(0x13, 4), b"abcd", false, false));
    let (t, d) = text_req(0x14, 4);
    v.extend(frame(&t, &d, false, false));
    v.extend(frame(&logout(0x15, 5), &[], false, false));
    v
}

fn pdu_stream() {
    let s = session_stream();
    // flags 0 (the stream carries its own login), then chunk sizes.
    for (name, sizes) in [
        ("whole", vec![]),
        ("bytes", vec![1u8]),
        ("mixed", vec![7, 48, 3, 200, 1]),
    ] {
        let mut v = vec![0u8, sizes.len() as u8];
        v.extend(&sizes);
        v.extend(&s);
        write("pdu_stream", name, &v);
    }
    // flags 1: the harness logs in; a write whose data comes in a Data-Out.
    let mut v = vec![1u8, 2, 13, 5];
    v.extend(frame(
        &command(0x20, 1, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, 0xa1),
        &[],
        false,
        false,
    ));
    let mut d = Bhs::new(Opcode::DataOut);
    d.0[1] = 0x80;
    d.set_u32(16, 0x20);
    d.set_u32(20, 0x100);
    v.extend(frame(&d, &[0x42; 512], false, false));
    write("pdu_stream", "data-out", &v);
}

/// One pipeline record.
fn prec(kind: u8, fields: &[u8], edtl: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = [0u8; 16];
    f[..fields.len()].copy_from_slice(fields);
    let mut v = vec![kind];
    v.extend_from_slice(&f);
    v.extend_from_slice(&edtl.to_be_bytes());
    v.push(flags);
    v.push(data.len() as u8);
    v.extend_from_slice(data);
    v
}

fn pipeline() {
    let w = [0x33u8; 255];
    write(
        "pipeline",
        "rw",
        &[
            prec(0, &[0; 6], 0, 0, &[]),
            prec(0, &[0x12, 0, 0, 0, 96, 0], 96, 0x40, &[]),
            prec(0, &[0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0], 512, 0x20, &w),
            prec(
                2,
                &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255],
                0,
                0x80,
                &w,
            ),
            prec(0, &[0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0], 512, 0x40, &[]),
        ]
        .concat(),
    );
    write(
        "pipeline",
        "lun1-tmf",
        &[
            prec(0x10, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, 0x40, &[]),
            prec(0x30, &[0; 6], 0, 0, &[]),
            prec(4, &[], 0, 0x05, &[]),
            prec(0x10, &[0; 6], 0, 0, &[]),
            prec(3, &[], 0, 0, &[]),
        ]
        .concat(),
    );
    write(
        "pipeline",
        "text-logout",
        &[
            prec(5, &[], 0, 0, b"SendTargets=All\0"),
            prec(
                0x48,
                &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0],
                64,
                0x40,
                &[],
            ),
            prec(0x40, &[0; 6], 0, 0, &[]),
            prec(0, &[0x1a, 0, 0x3f, 0, 255, 0], 255, 0x40, &[]),
            prec(6, &[], 0, 0, &[]),
        ]
        .concat(),
    );
}

fn main() {
    cdb_ram();
    sense_parse();
    pdu_header();
    login_text();
    pdu_stream();
    pipeline();
}
