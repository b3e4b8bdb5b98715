//! (3) PDU framing and header decoding.
//!
//! Input: byte 0 selects header digest (bit 0), data digest (bit 1) and a small
//! receive limit (bit 2); the rest is the byte stream. Every PDU that decodes is
//! viewed through each typed parser, and re-encoding it gives the same PDU back.

use bytes::BytesMut;
use iscsi::pdu::{self, Bhs, FrameLimits, Opcode};

pub fn limits(flags: u8) -> FrameLimits {
    FrameLimits {
        header_digest: flags & 1 != 0,
        data_digest: flags & 2 != 0,
        max_data_segment: if flags & 4 != 0 { 512 } else { 8192 },
    }
}

pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let limits = limits(flags);
    let mut buf = BytesMut::from(rest);
    for _ in 0..64 {
        let before = buf.len();
        match pdu::decode(&mut buf, &limits) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a decoded PDU consumes bytes");
                view(&p.bhs);
                let mut again = BytesMut::new();
                let mut b = p.bhs;
                // encode() writes no AHS: compare without it.
                b.0[4] = 0;
                pdu::encode(
                    &mut again,
                    &b,
                    &[&p.data],
                    limits.header_digest,
                    limits.data_digest,
                );
                let q = pdu::decode(&mut again, &limits)
                    .expect("re-encoded PDU decodes")
                    .expect("whole PDU");
                assert_eq!(q.bhs, b);
                assert_eq!(q.data, p.data);
                assert!(again.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "no PDU, no bytes consumed");
                break;
            }
            Err(_) => break,
        }
    }
}

fn view(b: &Bhs) {
    let _ = (b.opcode(), b.immediate(), b.final_bit(), b.lun(), b.itt());
    let _ = (b.total_ahs_len(), b.data_segment_len());
    match b.opcode() {
        Some(Opcode::ScsiCommand) => drop(pdu::ScsiCommand::parse(b)),
        Some(Opcode::DataOut) => drop(pdu::DataOut::parse(b)),
        Some(Opcode::LoginRequest) => drop(pdu::LoginRequest::parse(b)),
        Some(Opcode::TextRequest) => drop(pdu::TextRequest::parse(b)),
        Some(Opcode::NopOut) => drop(pdu::NopOut::parse(b)),
        Some(Opcode::LogoutRequest) => drop(pdu::LogoutRequest::parse(b)),
        Some(Opcode::TaskMgmtRequest) => drop(pdu::TaskMgmtRequest::parse(b)),
        _ => {}
    }
}
