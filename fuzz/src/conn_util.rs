//! A sans-I/O iSCSI connection to the test target, driven directly.

use std::sync::Arc;

use bytes::BytesMut;
use iscsi::conn::{Action, Connection};
use iscsi::pdu::{self, Bhs, Opcode};
use iscsi::registry::Shared;
use iscsi::service::ScsiService;

use crate::input::take;

/// A connection to a fresh target ([`iscsi::testing::simple_config`], 64 blocks)
/// with the given service behind it.
pub fn new_connection(service: Option<Arc<dyn ScsiService>>) -> Connection {
    let (config, disk) = iscsi::testing::simple_config(64);
    let service: Arc<dyn ScsiService> = service.unwrap_or(disk);
    let shared = Shared::new(config, service);
    let control = shared.new_conn_control();
    Connection::new(shared, control, None)
}

/// A Login Request for the test target going straight to full feature phase
/// (CSG=1, NSG=3) with CmdSN `cmd_sn`, framed without digests.
pub fn login_pdu(cmd_sn: u32) -> Vec<u8> {
    let mut b = Bhs::new(Opcode::LoginRequest);
    b.0[0] |= 0x40;
    b.0[1] = 0x87;
    b.0[8] = 0x80;
    b.0[13] = 1;
    b.set_u32(16, 1);
    b.set_u32(24, cmd_sn);
    let mut d = Vec::new();
    iscsi::text::push(&mut d, "InitiatorName", "iqn.2026-11.org.scsiport:fuzz");
    iscsi::text::push(&mut d, "TargetName", iscsi::testing::TEST_IQN);
    iscsi::text::push(&mut d, "MaxRecvDataSegmentLength", "8192");
    let mut out = BytesMut::new();
    pdu::encode(&mut out, &b, &[&d], false, false);
    out.to_vec()
}

/// What a connection did with some input: its output bytes, its actions (as
/// debug text), whether it is logged in and why it closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    pub out: Vec<u8>,
    pub actions: Vec<String>,
    pub logged_in: bool,
    pub close: Option<String>,
    pub after_completions: Vec<u8>,
}

/// Feeds `stream` to a fresh connection in chunks of the given sizes (cycled;
/// empty = all at once), collecting actions after each chunk but dispatching them
/// only at the end, so that the result depends on the byte stream alone.
pub fn feed_in_chunks(stream: &[u8], sizes: &[usize]) -> Observed {
    let (config, disk) = iscsi::testing::simple_config(64);
    let shared = Shared::new(config, disk.clone());
    let control = shared.new_conn_control();
    let mut conn = Connection::new(shared, control, None);
    let mut input = BytesMut::new();
    let mut actions = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            sizes[i % sizes.len()].max(1)
        };
        i += 1;
        input.extend_from_slice(take(&mut rest, n));
        conn.receive(&mut input);
        actions.extend(conn.take_actions());
    }
    let out = conn.out.take_vec();
    let logged_in = conn.is_logged_in();
    let close = conn.close_reason().map(|c| format!("{c:?}"));
    let action_text = actions.iter().map(|a| format!("{a:?}")).collect();
    for a in actions {
        match a {
            Action::Submit(t) => disk.submit(t),
            Action::TaskManagement { itt, request } => {
                let r = disk.task_management(&request);
                conn.task_management_done(itt, &request, r);
            }
        }
    }
    conn.process_completions();
    let after_completions = conn.out.take_vec();
    conn.closed();
    Observed {
        out,
        actions: action_text,
        logged_in,
        close,
        after_completions,
    }
}
