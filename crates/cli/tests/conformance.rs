//! libiscsi's conformance suite against the real stack: `scsiport serve` with a 256 MiB RAM
//! LU, `iscsi-test-cu --dataloss -s` family ALL (the tool logs in with both of its default
//! initiator names). Every remaining skip is listed with its reason in docs/conformance.md.

mod common;

use std::time::Duration;

use common::{Server, TempDir, run_tool, write_config};

/// The whole suite must finish within this (CI budget: well under 15 minutes).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

/// The iSCSI family alone.
const ISCSI_TIMEOUT: Duration = Duration::from_secs(120);

/// The passed count this stack reaches (libiscsi 1.19: 615 of 615); a lower count is a
/// regression.
const MIN_PASSED: u32 = 615;

/// Tests in libiscsi 1.19's iSCSI family.
const MIN_ISCSI_TESTS: u32 = 15;

/// CUnit's "Run Summary" tests line: total, ran, passed, failed, inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TestsSummary {
    total: u32,
    ran: u32,
    passed: u32,
    failed: u32,
    inactive: u32,
}

/// Parses the "tests  <total> <ran> <passed> <failed> <inactive>" line that follows
/// "Run Summary:".
fn tests_summary(out: &str) -> Option<TestsSummary> {
    let after = &out[out.find("Run Summary:")?..];
    let line = after
        .lines()
        .find(|l| l.trim_start().starts_with("tests "))?;
    let n: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [total, ran, passed, failed, inactive] = n.try_into().ok()?;
    Some(TestsSummary {
        total,
        ran,
        passed,
        failed,
        inactive,
    })
}

/// The "Suite S, Test T had failures:" lines CUnit prints even in silent mode.
fn failing_tests(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.trim_start().strip_prefix("Suite "))
        .filter(|l| l.trim_end().ends_with("had failures:"))
        .collect()
}

#[test]
fn summary_parser_reads_cunit_output() {
    let out = "Suite CompareAndWrite, Test Simple had failures:\n    1. x.c:71 - CU_ASSERT\n\n\
               Run Summary:    Type  Total    Ran Passed Failed Inactive\n\
               \x20             suites    134    134    n/a      0        0\n\
               \x20              tests    615    615    603     12        0\n\
               \x20            asserts 637948 637948 184807 453141      n/a\n";
    assert_eq!(
        tests_summary(out),
        Some(TestsSummary {
            total: 615,
            ran: 615,
            passed: 603,
            failed: 12,
            inactive: 0
        })
    );
    assert_eq!(
        failing_tests(out),
        vec!["CompareAndWrite, Test Simple had failures:"]
    );
    assert_eq!(tests_summary("no summary here"), None);
    assert_eq!(tests_summary("Run Summary:\n tests 1 2 x 4 5\n"), None);
}

#[test]
fn iscsi_test_cu_all_families_pass_against_a_ram_lu() {
    let dir = TempDir::new("conformance");
    let config = write_config(&dir, "ram", "256 MiB", None);
    let server = Server::start(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
    ]);
    let url = server.lun0_url();
    let out = run_tool("iscsi-test-cu", &["--dataloss", "-s", &url], SUITE_TIMEOUT);
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        out.status.is_some(),
        "iscsi-test-cu did not finish within {SUITE_TIMEOUT:?}; last output:\n{}\nserver stderr:\n{}",
        tail(&text),
        server.stderr_tail()
    );
    let summary = tests_summary(&text).unwrap_or_else(|| {
        panic!(
            "no CUnit Run Summary in the output ({:?}):\n{}",
            out.status,
            tail(&text)
        )
    });
    let failing = failing_tests(&text);
    assert_eq!(
        summary.failed,
        0,
        "failing tests: {failing:#?}\n{summary:?}\nserver stderr:\n{}",
        server.stderr_tail()
    );
    assert!(failing.is_empty(), "failing tests: {failing:#?}");
    assert_eq!(summary.ran, summary.total, "{summary:?}");
    assert!(
        summary.passed >= MIN_PASSED,
        "passed {} < {MIN_PASSED}: {summary:?}",
        summary.passed
    );
    // The iSCSI family on its own (it ran above as part of ALL; its own summary shows that
    // every one of its tests passed and none skipped).
    let out = run_tool(
        "iscsi-test-cu",
        &["--dataloss", "-s", "--test=iSCSI", &url],
        ISCSI_TIMEOUT,
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let summary = tests_summary(&text).unwrap_or_else(|| {
        panic!(
            "no CUnit Run Summary for the iSCSI family ({:?}):\n{}",
            out.status,
            tail(&text)
        )
    });
    assert_eq!(
        summary.failed,
        0,
        "iSCSI family: {summary:?}\n{}",
        tail(&text)
    );
    assert!(
        summary.total >= MIN_ISCSI_TESTS && summary.passed == summary.total,
        "iSCSI family: {summary:?}\n{}",
        tail(&text)
    );
    assert!(
        !text.contains("[SKIPPED]"),
        "iSCSI family skipped tests:\n{}",
        tail(&text)
    );
}

fn tail(s: &str) -> &str {
    let cut = s.len().saturating_sub(6000);
    let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    &s[cut..]
}
