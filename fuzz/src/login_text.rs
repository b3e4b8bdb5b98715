//! (4) Login text negotiation.
//!
//! Input: byte 0 = flags (bit 0 discovery session, bits 1-4 the target's
//! InitialR2T / ImmediateData / header and data digest preferences, bits 5-6 the
//! login stages CSG/NSG pair); the rest is the text data segment. The text goes
//! through `text::parse` and `params::negotiate` key by key (the negotiated values
//! must stay within the target's limits), and then as the data of a Login Request
//! into a fresh connection.

use bytes::BytesMut;
use iscsi::pdu::{self, Bhs, FrameLimits, Opcode};

use crate::conn_util::new_connection;
use iscsi::params::{self, KeyOutcome, Negotiated, SessionType, TargetLimits};
use iscsi::text;

pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    negotiate_all(flags, rest);
    login(flags, rest);
}

fn negotiate_all(flags: u8, data: &[u8]) {
    let Ok(pairs) = text::parse(data) else { return };
    let limits = TargetLimits {
        initial_r2t: flags & 2 != 0,
        immediate_data: flags & 4 != 0,
        allow_header_digest: flags & 8 != 0,
        allow_data_digest: flags & 16 != 0,
        ..TargetLimits::default()
    };
    let session = if flags & 1 != 0 {
        SessionType::Discovery
    } else {
        SessionType::Normal
    };
    let mut n = Negotiated::defaults(&limits);
    for (k, v) in &pairs {
        let _ = text::decode_binary(v);
        if !params::is_operational_key(k) {
            continue;
        }
        if let KeyOutcome::Reply(r) = params::negotiate(k, v, &mut n, &limits, session) {
            let mut out = Vec::new();
            text::push(&mut out, k, &r);
            // Boolean results never go against the target's preference (OR / AND rules).
            match (k.as_str(), r.as_str()) {
                ("InitialR2T", "No") => assert!(!limits.initial_r2t),
                ("ImmediateData", "Yes") => assert!(limits.immediate_data),
                ("HeaderDigest", "CRC32C") => assert!(limits.allow_header_digest),
                ("DataDigest", "CRC32C") => assert!(limits.allow_data_digest),
                _ => {}
            }
            let back = text::parse(&out).expect("reply is valid text");
            assert_eq!(back, vec![(k.clone(), r)]);
        }
    }
    assert!(n.first_burst_length <= n.max_burst_length);
    assert!(n.max_burst_length <= limits.max_burst_length);
    assert!(n.first_burst_length <= limits.first_burst_length);
    assert!(n.max_outstanding_r2t <= limits.max_outstanding_r2t.max(1));
    assert!((512..=16_777_215).contains(&n.initiator_mrdsl));
    assert!(!n.header_digest || limits.allow_header_digest);
    assert!(!n.data_digest || limits.allow_data_digest);
    assert_eq!((n.max_connections, n.error_recovery_level), (1, 0));
}

fn login(flags: u8, data: &[u8]) {
    let mut conn = new_connection(None);
    let mut b = Bhs::new(Opcode::LoginRequest);
    b.0[0] |= 0x40;
    b.0[1] = match (flags >> 5) & 3 {
        0 => 0x81, // T, CSG=0 (security), NSG=1
        1 => 0x87, // T, CSG=1, NSG=3
        2 => 0x01, // CSG=0, NSG=1, no transit
        _ => 0x83, // T, CSG=0, NSG=3
    };
    b.0[8] = 0x80;
    b.0[13] = 1;
    b.set_u32(16, 1);
    let mut input = BytesMut::new();
    let data = &data[..data.len().min(8192)];
    pdu::encode(&mut input, &b, &[data], false, false);
    conn.receive(&mut input);
    // Exactly one Login Response to one Login Request (or a close without one).
    let mut out = conn.out.take_all();
    let limits = FrameLimits {
        header_digest: false,
        data_digest: false,
        max_data_segment: 1 << 24,
    };
    let mut n = 0;
    while let Some(p) = pdu::decode(&mut out, &limits).expect("target output frames") {
        assert_eq!(p.bhs.opcode(), Some(Opcode::LoginResponse));
        n += 1;
    }
    assert!(out.is_empty());
    assert!(n <= 1, "{n} login responses");
    conn.closed();
}
