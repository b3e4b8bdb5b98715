//! `scsiport wmi list|query|set|exec` and `scsiport adapter reset` against a running
//! `scsiport serve` (RAM miniport, no WMI provider of its own: the port's statistics blocks;
//! and the sim miniport, a provider with a counters block and a fault-injection method),
//! driven by the iscsi crate's deterministic test initiator. Every wait is bounded; the server is
//! killed by its guard.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{DEFAULT_IQN, Server, TempDir};
use iscsi::testing::initiator::{Initiator, LoginOptions};
use serde_json::Value;

const INITIATOR: &str = "iqn.2026-11.dev.scsiport:wmi-test";
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const ADAPTER_GUID: &str = "5c515a90-3e1d-4a7b-9f20-534353490001";
const LU_GUID: &str = "5c515a90-3e1d-4a7b-9f20-534353490002";
/// The iSCSI LUN field of LUN 1 (SAM peripheral addressing, first level).
const LUN1: u64 = 1 << 48;

/// Adapter `a0` (RAM, 64 MiB) with two LUs (targets 0 and 1), both exported from the default target, and the
/// control socket in `dir`.
fn start(dir: &TempDir) -> (Server, PathBuf) {
    let socket = dir.path().join("ctl.sock");
    let text = format!(
        r#"[[portal]]
listen = "127.0.0.1:0"

[[adapter]]
name = "a0"
miniport = "ram"
[[adapter.lu]]
size = "64 MiB"
[[adapter.lu]]
target = 1
size = "16 MiB"

[[target]]
iqn = "{DEFAULT_IQN}"
[[target.lun]]
lun = 0
adapter = "a0"
adapter_lun = 0
[[target.lun]]
lun = 1
adapter = "a0"
target_id = 1

[control]
socket = {:?}
"#,
        socket.display().to_string()
    );
    serve(dir, "wmi.toml", &text, socket)
}

/// Writes `text` as `dir/name` and starts `scsiport serve` with it on loopback; the control
/// socket `socket` must exist once the server is up.
fn serve(dir: &TempDir, name: &str, text: &str, socket: PathBuf) -> (Server, PathBuf) {
    let cfg = dir.path().join(name);
    std::fs::write(&cfg, text).expect("write config");
    let server = Server::start(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(
        socket.exists(),
        "no control socket; stderr:\n{}",
        server.stderr_tail()
    );
    (server, socket)
}

fn scsiport(socket: &Path, args: &[&str]) -> common::ToolOutput {
    common::control_command(socket, args, TOOL_TIMEOUT)
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let out = scsiport(socket, args);
    assert!(out.success(), "scsiport {args:?} failed: {out:?}");
    serde_json::from_str(out.stdout.trim()).expect("JSON output")
}

/// `wmi query ADAPTER lu-statistics --json`: the decoded instance of LU `lu`.
fn lu_stats_of(socket: &Path, adapter: &str, lu: &str) -> Value {
    let v = json(
        socket,
        &["wmi", "query", adapter, "lu-statistics", "--json"],
    );
    let list = v["statistics"].as_array().expect("decoded statistics");
    list.iter()
        .find(|s| s["instance"] == lu)
        .unwrap_or_else(|| panic!("no instance {lu} in {v}"))
        .clone()
}

/// [`lu_stats_of`] adapter `a0`.
fn lu_stats(socket: &Path, lu: &str) -> Value {
    lu_stats_of(socket, "a0", lu)
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

fn login(addr: &str) -> Initiator {
    let addr: SocketAddr = addr.parse().expect("server address");
    let mut ini = Initiator::connect(addr, IO_TIMEOUT).expect("connect");
    ini.login(&LoginOptions::normal(INITIATOR, DEFAULT_IQN))
        .expect("login");
    for lun in [0, LUN1] {
        clear_unit_attention(&mut ini, lun);
    }
    ini
}

/// TEST UNIT READY until GOOD; returns the sense keys of the CHECK CONDITIONs on the way.
fn clear_unit_attention(ini: &mut Initiator, lun: u64) -> Vec<u8> {
    let mut keys = Vec::new();
    for _ in 0..4 {
        let r = ini.scsi(lun, &[0u8; 6], 0, None).expect("TEST UNIT READY");
        if r.status == 0 {
            return keys;
        }
        keys.push(r.sense.get(2).map_or(0xFF, |k| k & 0x0F));
    }
    panic!("TEST UNIT READY never returned GOOD on LUN {lun}");
}

#[test]
fn list_and_query_show_the_port_blocks_with_the_initiators_io() {
    let dir = TempDir::new("wmi-query");
    let (server, socket) = start(&dir);
    let mut ini = login(&server.addr);

    // list: the port's blocks, one LU instance per LU.
    let blocks = json(&socket, &["wmi", "list", "a0", "--json"]);
    let blocks = blocks.as_array().expect("array");
    assert_eq!(
        blocks.len(),
        2,
        "the RAM miniport has no blocks: {blocks:?}"
    );
    assert_eq!(blocks[0]["guid"], ADAPTER_GUID);
    assert_eq!(blocks[0]["name"], "adapter-statistics");
    assert_eq!(blocks[0]["instance_count"], 1);
    assert_eq!(blocks[0]["source"], "port");
    assert_eq!(blocks[1]["guid"], LU_GUID);
    assert_eq!(blocks[1]["name"], "lu-statistics");
    assert_eq!(blocks[1]["instance_count"], 2);
    let text = scsiport(&socket, &["wmi", "list", "a0"]);
    assert!(text.success(), "{text:?}");
    assert!(text.stdout.contains("lu-statistics"), "{}", text.stdout);

    let before = lu_stats(&socket, "0:0:0");
    let before1 = lu_stats(&socket, "0:1:0");
    const WRITES: u64 = 6;
    const READS: u64 = 9;
    for i in 0..WRITES {
        let data: Vec<u8> = (0..2048).map(|b| (b as u8) ^ (i as u8)).collect();
        let r = ini.write10(0, (i * 4) as u32, &data).expect("WRITE(10)");
        assert_eq!(r.status, 0, "WRITE(10) {i}: {:?}", r.sense);
    }
    for i in 0..READS {
        let r = ini.read10(0, (i * 8) as u32, 8).expect("READ(10)");
        assert_eq!(r.status, 0, "READ(10) {i}: {:?}", r.sense);
    }
    let r = ini.read10(LUN1, 0, 1).expect("READ(10) on LUN 1");
    assert_eq!(r.status, 0);
    let after = lu_stats(&socket, "0:0:0");
    let d = |f: &str| n(&after, f) - n(&before, f);
    assert_eq!(d("commands"), READS + WRITES, "{before}\n{after}");
    assert_eq!(d("reads"), READS);
    assert_eq!(d("writes"), WRITES);
    assert_eq!(d("bytes_read"), READS * 4096);
    assert_eq!(d("bytes_written"), WRITES * 2048);
    assert_eq!(d("errors"), 0);
    assert_eq!(n(&after, "queue_depth"), 0);
    assert_eq!(after["latency"]["count"], after["commands"]);
    let after1 = lu_stats(&socket, "0:1:0");
    assert_eq!(n(&after1, "reads") - n(&before1, "reads"), 1);
    assert_eq!(n(&after1, "bytes_read") - n(&before1, "bytes_read"), 512);

    // One instance, by index; the adapter block; the human-readable form; the raw bytes.
    let one = json(
        &socket,
        &["wmi", "query", "a0", LU_GUID, "--instance", "1", "--json"],
    );
    assert_eq!(one["statistics"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["statistics"][0]["instance"], "0:1:0");
    assert_eq!(one["hex"].as_str().map(str::len), Some(800));
    let ad = json(&socket, &["wmi", "query", "a0", ADAPTER_GUID, "--json"]);
    assert_eq!(ad["statistics"][0]["instance"], "adapter");
    assert!(n(&ad["statistics"][0], "commands") >= n(&after, "commands") + n(&after1, "commands"));
    let text = scsiport(&socket, &["wmi", "query", "a0", "lu-statistics"]);
    assert!(text.success(), "{text:?}");
    assert!(text.stdout.contains("0:0:0:"), "{}", text.stdout);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["errors.check_condition", "0"]),
        "{}",
        text.stdout
    );
    let raw = scsiport(&socket, &["wmi", "query", "a0", ADAPTER_GUID, "--raw"]);
    assert!(raw.success(), "{raw:?}");
    assert!(
        raw.stdout.starts_with("00000000  ffffff00"),
        "{}",
        raw.stdout
    );
}

#[test]
fn wmi_errors_are_reported() {
    let dir = TempDir::new("wmi-errors");
    let (_server, socket) = start(&dir);
    let fails = |args: &[&str], needle: &str| {
        let out = scsiport(&socket, args);
        assert!(!out.success(), "{args:?} should fail: {out:?}");
        assert!(
            out.stderr.contains(needle),
            "{args:?}: expected {needle:?} in {:?}",
            out.stderr
        );
    };
    fails(&["wmi", "query", "a0", "not-a-guid"], "is not a GUID");
    fails(&["wmi", "set", "a0", "12345", "0", "00"], "is not a GUID");
    fails(
        &["wmi", "query", "a0", "00000000-0000-0000-0000-000000000000"],
        "no WMI data block",
    );
    fails(
        &["wmi", "query", "a0", "lu-statistics", "--instance", "2"],
        "instance 2 does not exist",
    );
    // The port's blocks are read-only and have no methods.
    fails(
        &["wmi", "set", "a0", "lu-statistics", "0", "00112233"],
        "read-only",
    );
    fails(
        &["wmi", "set", "a0", ADAPTER_GUID, "0", "00", "--item", "1"],
        "read-only",
    );
    fails(&["wmi", "exec", "a0", ADAPTER_GUID, "0", "1"], "no methods");
    fails(&["wmi", "set", "a0", LU_GUID, "0", "abc"], "hex");
    fails(&["wmi", "list", "nope"], "no adapter named");
    // Set data from a file too large to send.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 40 << 10]).unwrap();
    fails(
        &[
            "wmi",
            "set",
            "a0",
            LU_GUID,
            "0",
            "--file",
            big.to_str().unwrap(),
        ],
        "at most",
    );
    // Still serving.
    let v = json(&socket, &["wmi", "list", "a0", "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
}

#[test]
fn adapter_reset_resets_the_bus_and_initiators_see_a_unit_attention() {
    let dir = TempDir::new("wmi-reset");
    let (server, socket) = start(&dir);
    let mut ini = login(&server.addr);
    let resets = |socket: &Path| {
        let v = json(
            socket,
            &["wmi", "query", "a0", "adapter-statistics", "--json"],
        );
        n(&v["statistics"][0], "resets")
    };
    let before = resets(&socket);
    let out = scsiport(&socket, &["adapter", "reset", "a0"]);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("adapter a0 reset"), "{out:?}");
    assert!(resets(&socket) > before, "the reset is counted");
    let keys = clear_unit_attention(&mut ini, 0);
    assert_eq!(keys, vec![6], "one UNIT ATTENTION after the reset");
    let r = ini.read10(0, 0, 1).expect("READ(10) after the reset");
    assert_eq!(r.status, 0);
    let out = scsiport(&socket, &["adapter", "reset", "nope"]);
    assert!(!out.success());
}

/// The sim miniport's WMI blocks (crates/miniports/src/sim/wmi.rs).
const SIM_COUNTERS_GUID: &str = "5c1d0e8a-4327-4b61-9a1e-53494d434e54";
const SIM_METHODS_GUID: &str = "5c1d0e8b-4327-4b61-9a1e-53494d4d5448";

/// Adapter `sim0` (the simulated HBA, a WMI provider) with one LU exported as LUN 0.
fn start_sim(dir: &TempDir) -> (Server, PathBuf) {
    let socket = dir.path().join("ctl.sock");
    let text = format!(
        r#"[[portal]]
listen = "127.0.0.1:0"

[[adapter]]
name = "sim0"
miniport = "sim"
model = "scsiport"
[adapter.sim]
port_tick_ms = 50
[[adapter.lu]]
size = "16 MiB"

[[target]]
iqn = "{DEFAULT_IQN}"
[[target.lun]]
lun = 0
adapter = "sim0"

[control]
socket = {:?}
"#,
        socket.display().to_string()
    );
    serve(dir, "sim.toml", &text, socket)
}

#[test]
fn a_provider_miniports_blocks_are_listed_queried_and_its_method_runs() {
    let dir = TempDir::new("wmi-sim");
    let (server, socket) = start_sim(&dir);
    let addr: SocketAddr = server.addr.parse().expect("server address");
    let mut ini = Initiator::connect(addr, IO_TIMEOUT).expect("connect");
    ini.login(&LoginOptions::normal(INITIATOR, DEFAULT_IQN))
        .expect("login");
    clear_unit_attention(&mut ini, 0);

    let blocks = json(&socket, &["wmi", "list", "sim0", "--json"]);
    let guids: Vec<(&str, &str)> = blocks
        .as_array()
        .expect("array")
        .iter()
        .map(|b| (b["guid"].as_str().unwrap(), b["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        guids,
        vec![
            (ADAPTER_GUID, "port"),
            (LU_GUID, "port"),
            (SIM_COUNTERS_GUID, "miniport"),
            (SIM_METHODS_GUID, "miniport"),
        ]
    );
    // The counters block is 200 bytes: hex, not decoded.
    let q = json(
        &socket,
        &["wmi", "query", "sim0", SIM_COUNTERS_GUID, "--json"],
    );
    assert_eq!(q["hex"].as_str().map(str::len), Some(400), "{q}");
    assert!(q["statistics"].is_null(), "{q}");
    // It has no set routine: the provider refuses.
    let out = scsiport(
        &socket,
        &["wmi", "set", "sim0", SIM_COUNTERS_GUID, "0", "00"],
    );
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("refused"), "{out:?}");

    // Inject one BUSY (kind 5, count 1) through the method; the next READ meets it, the port
    // retries it on a tick, and the LU block counts one busy.
    let before = n(&lu_stats_of(&socket, "sim0", "0:0:0"), "busy");
    let out = json(
        &socket,
        &[
            "wmi",
            "exec",
            "sim0",
            SIM_METHODS_GUID,
            "0",
            "1",
            "0500000001000000000000",
            "--json",
        ],
    );
    let hex = out["hex"].as_str().expect("output hex");
    assert!(hex.starts_with("01000000"), "one fault queued: {hex}");
    let r = ini.read10(0, 0, 1).expect("READ(10)");
    assert_eq!(r.status, 0, "the BUSY was retried: {:?}", r.sense);
    let after = lu_stats_of(&socket, "sim0", "0:0:0");
    assert_eq!(n(&after, "busy") - before, 1, "{after}");
    // A bad method input is refused before anything is injected.
    let out = scsiport(
        &socket,
        &["wmi", "exec", "sim0", SIM_METHODS_GUID, "0", "1", "ff"],
    );
    assert!(!out.success(), "{out:?}");
}
