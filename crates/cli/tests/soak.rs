//! The CI version of the soak test (issue 6): `scsiport soak` for 45 s — iSCSI sessions over
//! loopback and class-driver clients on simulated and file-backed LUs, every kind of sim
//! fault injected at random — must end with 0 lost or corrupted acknowledged writes, 0 double
//! or missing completions, 0 hung clients and 0 broken sessions. A second run sabotages the
//! data behind the clients' backs and must fail: the verifier can see what it claims to see.
//!
//! The long version is run by hand (`scsiport soak --duration 10m --min-faults 1000`,
//! docs/soak.md).

mod common;

use std::time::Duration;

use serde_json::Value;

/// Runs `scsiport soak ARGS --json` with a deadline and returns (exit code, report).
fn soak(args: &[&str], deadline: Duration) -> (i32, Value) {
    let bin = env!("CARGO_BIN_EXE_scsiport");
    let mut all = vec!["soak", "--json"];
    all.extend_from_slice(args);
    let out = common::run_tool(bin, &all, deadline);
    let status = out.status.unwrap_or_else(|| {
        panic!(
            "scsiport soak did not end within {deadline:?}: {}",
            out.stderr
        )
    });
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); exit {status:?}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    });
    (status.code().unwrap_or(-1), report)
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no number {key}: {v}"))
}

#[test]
fn soak_45s_under_every_fault_kind_loses_nothing() {
    let (code, r) = soak(
        &[
            "--duration",
            "45s",
            "--fault-rate",
            "2",
            "--events-every",
            "3s",
            "--seed",
            "7",
        ],
        Duration::from_secs(200),
    );
    let table = format!("{:#}", r["violations"]);
    for key in [
        "lost_writes",
        "corrupted_blocks",
        "unverifiable_runs",
        "double_completions",
        "missing_completions",
        "hung",
        "sessions_lost",
    ] {
        assert_eq!(num(&r, key), 0, "{key}: {table}");
    }
    assert_eq!(num(&r["port"], "outstanding"), 0, "{table}");
    assert_eq!(r["pass"], Value::Bool(true), "{table}");
    assert_eq!(code, 0, "exit code of a passing soak");

    // Every fault kind fired, several times.
    let faults = r["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 9);
    for f in faults {
        let (name, n) = (f[0].as_str().expect("name"), f[1].as_u64().expect("count"));
        assert!(n >= 10, "fault {name} injected only {n} times");
    }
    // The faults had effects the port saw: timeouts, resets, dropped late completions.
    assert!(num(&r["port"], "timeouts") > 0);
    assert!(num(&r["port"], "resets") > 0);
    assert!(num(&r["port"], "late_completions") > 0);
    assert_eq!(
        num(&r["port"], "sim_late_completions"),
        num(&r["port"], "sim_port_late_completions"),
        "every late completion the sim delivered was dropped by the port"
    );
    // Adapter stops/restarts and bus resets happened under load, and none failed.
    let ev = &r["events"];
    assert!(
        num(ev, "stop_restarts") + num(ev, "bus_resets") >= 2,
        "{ev}"
    );
    assert_eq!(num(ev, "failed"), 0, "{ev}");

    // I/O made progress on every client, some writes failed (so old-or-new was exercised),
    // and the final read-back checked blocks.
    assert!(num(&r, "writes_failed") > 0);
    assert!(num(&r, "final_blocks_verified") > 1000);
    let clients = r["clients"].as_array().expect("clients");
    assert!(clients.iter().any(|c| c["kind"] == "iscsi"));
    assert!(clients.iter().any(|c| c["kind"] == "class"));
    for c in clients {
        let s = &c["stats"];
        assert!(
            num(s, "writes_acked") > 100 && num(s, "reads_ok") > 100,
            "client {} made too little progress: {s}",
            c["name"]
        );
        if c["kind"] == "iscsi" {
            // The same session (TSIH) from login to the end.
            let t = c["tsih"].as_array().expect("tsih");
            assert_eq!(t[0], t[1], "client {} changed session", c["name"]);
        }
    }
    let issued = num(&r, "commands_issued");
    assert!(issued > 10_000, "only {issued} commands");
}

#[test]
fn soak_detects_data_changed_behind_its_back() {
    let (code, r) = soak(
        &["--duration", "4s", "--sabotage", "--seed", "3"],
        Duration::from_secs(120),
    );
    assert_ne!(code, 0, "a sabotaged soak must fail");
    assert_eq!(r["pass"], Value::Bool(false));
    assert!(num(&r, "lost_writes") > 0, "{r}");
    assert!(!r["violations"].as_array().expect("violations").is_empty());
}
