//! Real initiators (libiscsi's command-line tools) against the front end
//! with the in-memory test disk, over loopback on an ephemeral port.

mod common;

use std::time::Duration;

use common::{have_tool, run_tool};
use iscsi::testing::{TEST_IQN, simple_config, spawn_server};

const T: Duration = Duration::from_secs(20);

#[test]
fn iscsi_ls_lists_the_target() {
    if !have_tool("iscsi-ls") {
        return;
    }
    let (config, disk) = simple_config(32768);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let url = format!("iscsi://{}/", server.addr);
    let out = run_tool("iscsi-ls", &["-s", &url], &[], T);
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("Target:{TEST_IQN} Portal:{},1", server.addr)),
        "{out:?}"
    );
    assert!(out.stdout.contains("Lun:0"), "{out:?}");
    assert!(out.stdout.contains("DIRECT_ACCESS"), "{out:?}");
}

#[test]
fn iscsi_inq_and_readcapacity16_answer() {
    if !have_tool("iscsi-inq") || !have_tool("iscsi-readcapacity16") {
        return;
    }
    let (config, disk) = simple_config(32768);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let url = format!("iscsi://{}/{}/0", server.addr, TEST_IQN);
    let out = run_tool("iscsi-inq", &[&url], &[], T);
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("Vendor:SCSIPORT"), "{out:?}");
    assert!(
        out.stdout.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{out:?}"
    );
    let out = run_tool("iscsi-inq", &["-e", "1", "-c", "128", &url], &[], T);
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("RAM00000000"), "{out:?}");
    let out = run_tool("iscsi-readcapacity16", &[&url], &[], T);
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout.contains("RETURNED LOGICAL BLOCK ADDRESS:32767"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("LOGICAL BLOCK LENGTH IN BYTES:512"),
        "{out:?}"
    );
    assert!(out.stdout.contains("Total size:16777216"), "{out:?}");
}
