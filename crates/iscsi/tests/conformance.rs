//! libiscsi's conformance suite, iSCSI family, against the front end with
//! the in-memory test disk (`iscsi-test-cu --test=iSCSI --dataloss` with
//! two initiator names).

mod common;

use std::time::Duration;

use common::{have_tool, run_tool};
use iscsi::testing::{TEST_IQN, simple_config, spawn_server};

/// Parses CUnit's "tests  <total> <ran> <passed> <failed> <inactive>" summary line.
fn summary(out: &str) -> Option<[u32; 5]> {
    let line = out.lines().find(|l| l.trim_start().starts_with("tests "))?;
    let nums: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    nums.try_into().ok()
}

#[test]
fn iscsi_test_cu_iscsi_family_passes() {
    if !have_tool("iscsi-test-cu") {
        return;
    }
    let (config, disk) = simple_config(64 * 2048);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let url = format!("iscsi://{}/{}/0", server.addr, TEST_IQN);
    let out = run_tool(
        "iscsi-test-cu",
        &[
            "--test=iSCSI",
            "--dataloss",
            "--initiator-name=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
            "--initiator-name-2=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
            &url,
        ],
        &[],
        Duration::from_secs(300),
    );
    let [total, ran, passed, failed, _] =
        summary(&out.stdout).unwrap_or_else(|| panic!("no summary: {out:?}"));
    eprintln!("iscsi-test-cu iSCSI family: {passed}/{total} passed, {failed} failed");
    assert_eq!(failed, 0, "{}", out.stdout);
    assert_eq!(ran, total);
    assert_eq!(passed, total);
    assert!(
        total >= 15,
        "the iSCSI family has 15 tests in libiscsi 1.19: {}",
        out.stdout
    );
}
