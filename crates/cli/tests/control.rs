//! End-to-end tests of the control socket: `scsiport serve` with a `[control]` socket in a
//! scratch directory, driven by a deterministic iSCSI initiator (the iscsi crate's test
//! initiator: exactly the commands the test issues) and by the `scsiport stat`, `sessions`
//! and `adapter` commands. Every server is killed by its guard; every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{DEFAULT_IQN, Server, TempDir};
use iscsi::testing::initiator::{Initiator, LoginOptions};
use serde_json::Value;

const INITIATOR: &str = "iqn.2026-11.dev.scsiport:control-test";
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback port that was free a moment ago (for the metrics endpoint).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port()
}

/// Writes a configuration with adapter `a0` (RAM, 64 MiB, 512-byte blocks) exported as LUN 0
/// of [`DEFAULT_IQN`], the control socket at `dir/ctl.sock` and the metrics endpoint on
/// `metrics_port`. Returns (config, socket).
fn config(dir: &TempDir, metrics_port: u16) -> (PathBuf, PathBuf) {
    let socket = dir.path().join("ctl.sock");
    let text = format!(
        r#"[[portal]]
listen = "127.0.0.1:0"

[[adapter]]
name = "a0"
miniport = "ram"
[[adapter.lu]]
size = "64 MiB"

[[target]]
iqn = "{DEFAULT_IQN}"
[[target.lun]]
lun = 0
adapter = "a0"

[control]
socket = {:?}

[metrics]
listen = "127.0.0.1:{metrics_port}"
"#,
        socket.display().to_string()
    );
    let path = dir.path().join("control.toml");
    std::fs::write(&path, text).expect("write config");
    (path, socket)
}

fn start(dir: &TempDir) -> (Server, PathBuf) {
    start_with_metrics(dir, free_port())
}

fn start_with_metrics(dir: &TempDir, metrics_port: u16) -> (Server, PathBuf) {
    let (cfg, socket) = config(dir, metrics_port);
    // --log-level overrides the RUST_LOG=warn the common helper sets.
    let server = Server::start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "info",
    ]);
    assert!(
        socket.exists(),
        "no control socket at {}; stderr:\n{}",
        socket.display(),
        server.stderr_tail()
    );
    (server, socket)
}

/// Runs `scsiport ARGS` (optionally through `prefix`, e.g. setpriv), bounded in time.
fn scsiport(prefix: &[&str], args: &[&str]) -> common::ToolOutput {
    let bin = env!("CARGO_BIN_EXE_scsiport");
    let (program, rest): (&str, Vec<&str>) = match prefix.split_first() {
        Some((p, more)) => (
            p,
            more.iter()
                .copied()
                .chain([bin])
                .chain(args.iter().copied())
                .collect(),
        ),
        None => (bin, args.to_vec()),
    };
    common::run_tool(program, &rest, TOOL_TIMEOUT)
}

/// `scsiport stat --once --json`: the LU view of adapter a0, LU 0:0:0.
fn stat(socket: &Path) -> Value {
    let out = scsiport(
        &[],
        &[
            "stat",
            "--once",
            "--json",
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    assert!(out.success(), "scsiport stat failed: {out:?}");
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("stat prints JSON");
    let lus = v.as_array().expect("an array of LUs");
    assert_eq!(lus.len(), 1, "{v}");
    assert_eq!(lus[0]["adapter"], "a0");
    assert_eq!(lus[0]["address"], "0:0:0");
    assert_eq!(lus[0]["exports"][0], format!("{DEFAULT_IQN}/0"));
    lus[0].clone()
}

/// `GET /metrics` on loopback `port`: the value of each integer `scsiport_lu_*` series of LU
/// 0:0:0 of adapter a0, by metric name (histogram `_bucket` series carry an extra label and are
/// not matched; `_seconds_sum` is fractional and left out).
fn scrape(port: u16) -> std::collections::HashMap<String, u64> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let labels = format!(r#"{{adapter="a0",lu="0:0:0",target="{DEFAULT_IQN}",lun="0"}} "#);
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.strip_prefix("scsiport_lu_")?.split_once(&labels)?;
            if name.ends_with("_seconds_sum") {
                return None;
            }
            Some((name.to_string(), value.parse().expect("a counter value")))
        })
        .collect()
}

fn counter(lu: &Value, name: &str) -> u64 {
    lu["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {lu}"))
}

/// Logs in to LUN 0 of the default target with `isid_tail`, and clears the unit attention
/// of the new nexus with TEST UNIT READY.
fn login(addr: &str, isid_tail: u8) -> Initiator {
    let addr: SocketAddr = addr.parse().expect("server address");
    let mut ini = Initiator::connect(addr, IO_TIMEOUT).expect("connect");
    let mut o = LoginOptions::normal(INITIATOR, DEFAULT_IQN);
    o.isid[5] = isid_tail;
    ini.login(&o).expect("login");
    for _ in 0..4 {
        let r = ini.scsi(0, &[0u8; 6], 0, None).expect("TEST UNIT READY");
        if r.status == 0 {
            return ini;
        }
    }
    panic!("TEST UNIT READY never returned GOOD");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn stat_counts_match_the_commands_the_initiator_issued() {
    let dir = TempDir::new("control-stat");
    let metrics_port = free_port();
    let (server, socket) = start_with_metrics(&dir, metrics_port);
    let mut ini = login(&server.addr, 1);

    // --config finds the socket through the server's configuration file.
    let cfg = dir.path().join("control.toml");
    let sessions = scsiport(
        &[],
        &["sessions", "--json", "--config", cfg.to_str().unwrap()],
    );
    assert!(sessions.success(), "{sessions:?}");
    let list: Value = serde_json::from_str(sessions.stdout.trim()).expect("sessions JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["initiator"], INITIATOR);
    assert_eq!(list[0]["target"], DEFAULT_IQN);
    assert_eq!(list[0]["isid"], "800000123401");

    let before = stat(&socket);
    let scraped_before = scrape(metrics_port);
    assert_eq!(
        scraped_before["commands_total"],
        counter(&before, "commands")
    );
    const WRITES: u64 = 10;
    const READS: u64 = 25;
    for i in 0..WRITES {
        let r = ini
            .write10(0, (i * 8) as u32, &pattern(4096, i as u8))
            .expect("WRITE(10)");
        assert_eq!(r.status, 0, "WRITE(10) {i}: {:?}", r.sense);
    }
    for i in 0..READS {
        let r = ini.read10(0, (i * 16) as u32, 16).expect("READ(10)");
        assert_eq!(r.status, 0, "READ(10) {i}: {:?}", r.sense);
        assert_eq!(r.data.len(), 8192);
    }
    let after = stat(&socket);
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    assert_eq!(delta("commands"), READS + WRITES, "{before}\n{after}");
    assert_eq!(delta("reads"), READS);
    assert_eq!(delta("writes"), WRITES);
    assert_eq!(delta("bytes_read"), READS * 8192);
    assert_eq!(delta("bytes_written"), WRITES * 4096);
    assert_eq!(delta("errors"), 0);
    assert_eq!(after["state"], "running");
    // Every command is timed once, and nothing is outstanding once the initiator is idle.
    let latency_count = |v: &Value| {
        v["counters"]["latency"]["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("no latency count in {v}"))
    };
    assert_eq!(
        latency_count(&after) - latency_count(&before),
        READS + WRITES
    );
    assert_eq!(
        latency_count(&after),
        counter(&after, "commands"),
        "{after}"
    );
    let buckets: u64 = after["counters"]["latency"]["buckets"]
        .as_array()
        .expect("latency buckets")
        .iter()
        .map(|b| b.as_u64().expect("a bucket count"))
        .sum();
    assert_eq!(buckets, latency_count(&after));
    assert_eq!(counter(&after, "outstanding"), 0, "{after}");
    assert_eq!(after["qd"], 0, "{after}");
    // Nothing ran during the view's own 1 s interval.
    assert_eq!(after["avg_us"], 0, "{after}");
    assert_eq!(after["p99_us"], 0, "{after}");

    // The metrics endpoint reports the same counts.
    let scraped = scrape(metrics_port);
    let mdelta = |name: &str| scraped[name] - scraped_before[name];
    assert_eq!(mdelta("commands_total"), READS + WRITES, "{scraped:?}");
    assert_eq!(mdelta("reads_total"), READS);
    assert_eq!(mdelta("writes_total"), WRITES);
    assert_eq!(mdelta("read_bytes_total"), READS * 8192);
    assert_eq!(mdelta("written_bytes_total"), WRITES * 4096);
    assert_eq!(mdelta("errors_total"), 0);
    assert_eq!(
        mdelta("latency_seconds_count"),
        READS + WRITES,
        "{scraped:?}"
    );
    assert_eq!(scraped["latency_seconds_count"], scraped["commands_total"]);
    assert_eq!(scraped["outstanding"], 0, "{scraped:?}");

    // The table form names the LU and its export too.
    let table = scsiport(
        &[],
        &["stat", "--once", "--socket", socket.to_str().unwrap()],
    );
    assert!(table.success(), "{table:?}");
    assert!(
        table.stdout.contains("a0") && table.stdout.contains(DEFAULT_IQN),
        "{table:?}"
    );
    assert!(
        ["AVG us", "P99 us", "QD"]
            .iter()
            .all(|h| table.stdout.contains(h)),
        "{table:?}"
    );

    ini.logout(0).expect("logout");
    drop(ini);
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let s = scsiport(
            &[],
            &["sessions", "--json", "--socket", socket.to_str().unwrap()],
        );
        if s.stdout.trim() == "[]" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session still listed after logout: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
}

#[test]
fn adapter_stop_holds_commands_and_restart_completes_them() {
    let dir = TempDir::new("control-stop");
    let (server, socket) = start(&dir);
    let sock = socket.to_str().unwrap().to_string();
    let mut writer = login(&server.addr, 2);
    let data = pattern(64 * 512, 7);
    assert_eq!(writer.write10(0, 0, &data).expect("WRITE(10)").status, 0);

    // A reader keeps reading the pattern back for the whole test.
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let mut reader = login(&server.addr, 3);
    let reader_thread = {
        let (done, completed, data) = (done.clone(), completed.clone(), data.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let r = reader.read10(0, 0, 64).expect("READ(10) in the reader");
                assert_eq!(r.status, 0, "reader READ(10) failed: {:?}", r.sense);
                assert_eq!(r.data, data, "reader read wrong data");
                completed.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    while completed.load(Ordering::Acquire) < 5 {
        assert!(Instant::now() < deadline, "the reader made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }

    let out = scsiport(&[], &["adapter", "stop", "a0", "--socket", &sock]);
    assert!(out.success(), "adapter stop: {out:?}");
    assert!(out.stdout.contains("adapter a0 stopped"), "{out:?}");

    // A new command issued while stopped: it must wait, then succeed.
    let (tx, rx) = mpsc::channel();
    let new_cmd = {
        let data = data.clone();
        std::thread::spawn(move || {
            let r = writer.read10(0, 0, 64).expect("READ(10) while stopped");
            tx.send(()).ok();
            assert_eq!(r.status, 0, "held READ(10) failed: {:?}", r.sense);
            assert_eq!(r.data, data);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let held_at = completed.load(Ordering::Acquire);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        completed.load(Ordering::Acquire),
        held_at,
        "reads completed while the adapter was stopped"
    );
    assert!(
        rx.try_recv().is_err(),
        "a command completed while the adapter was stopped"
    );
    let s = stat(&socket);
    assert_eq!(s["state"], "stopped");
    assert_eq!(s["iops"].as_f64(), Some(0.0), "{s}");

    let out = scsiport(&[], &["adapter", "restart", "a0", "--socket", &sock]);
    assert!(out.success(), "adapter restart: {out:?}");
    rx.recv_timeout(IO_TIMEOUT)
        .expect("the held command did not complete after the restart");
    new_cmd.join().expect("held command thread");
    let deadline = Instant::now() + IO_TIMEOUT;
    while completed.load(Ordering::Acquire) < held_at + 5 {
        assert!(
            Instant::now() < deadline,
            "the reader did not resume after the restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::Release);
    reader_thread.join().expect("reader thread (a READ failed)");
    let s = stat(&socket);
    assert_eq!(s["state"], "running");
    assert_eq!(counter(&s, "errors"), 0, "{s}");

    // Both operations are logged, one line each, naming the adapter.
    let log = server.stderr_tail();
    for stop in ["true", "false"] {
        let want = format!("adapter control through the control socket adapter=a0 stop={stop}");
        assert_eq!(
            log.lines().filter(|l| l.contains(&want)).count(),
            1,
            "{want:?} in:\n{log}"
        );
    }

    let out = scsiport(&[], &["adapter", "stop", "nope", "--socket", &sock]);
    assert!(!out.success());
    assert!(out.stderr.contains("no adapter named \"nope\""), "{out:?}");
    drop(server);
}

/// Sends raw bytes on a fresh connection and returns the reply lines until EOF or reset
/// (bounded by the read timeout).
fn raw_exchange(socket: &Path, bytes: &[u8]) -> Vec<Value> {
    let mut s = UnixStream::connect(socket).expect("connect to the control socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(bytes).expect("send");
    s.shutdown(std::net::Shutdown::Write)
        .expect("shutdown write");
    // A server closing with our bytes unread resets the connection after its last line.
    BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).expect("reply is JSON"))
        .collect()
}

#[test]
fn malformed_requests_get_errors_and_the_server_survives() {
    let dir = TempDir::new("control-bad");
    let (mut server, socket) = start(&dir);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");

    let replies = raw_exchange(
        &socket,
        b"hello\n{\"cmd\":\"format\"}\n{\"cmd\":\"stat\",\"x\":1}\n\xff\xfe\n{\"cmd\":\"sessions\"}\n",
    );
    assert_eq!(replies.len(), 5, "{replies:?}");
    for r in &replies[..4] {
        let m = r["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert!(m.starts_with("malformed request"), "{m}");
    }
    assert_eq!(replies[4]["sessions"], Value::Array(vec![]));

    // An oversized line: an error, then the server closes the connection.
    let mut big = b"{\"cmd\":\"stat\",\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 70_000));
    big.extend(b"\"}\n{\"cmd\":\"stat\"}\n");
    let replies = raw_exchange(&socket, &big);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than 65536")),
        "{replies:?}"
    );

    // WMI: the RAM miniport registers no provider (the port's blocks only), and a bad GUID is
    // refused before the port is asked.
    let sock = socket.to_str().unwrap();
    let out = scsiport(&[], &["wmi", "list", "a0", "--socket", sock]);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("adapter-statistics"), "{out:?}");
    assert!(out.stdout.contains("lu-statistics"), "{out:?}");
    let out = scsiport(&[], &["wmi", "query", "a0", "not-a-guid", "--socket", sock]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("is not a GUID"), "{out:?}");

    // Still serving.
    let lu = stat(&socket);
    assert_eq!(lu["state"], "running");

    // SIGTERM: the socket file goes away with the server.
    let st = server.terminate(Duration::from_secs(20));
    assert!(
        st.is_some_and(|s| s.success()),
        "serve did not exit cleanly: {st:?}"
    );
    assert!(!socket.exists(), "control socket left behind");
}

#[test]
fn another_uid_is_refused() {
    // Running a client as another uid needs root; the test command (scripts/test) runs as
    // root because it installs packages. Failing here is deliberate: no silent skip.
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "another_uid_is_refused needs root to run a client as uid 65534 (run scripts/test as root)"
    );
    let dir = TempDir::new("control-uid");
    let (server, socket) = start(&dir);
    let sock = socket.to_str().unwrap();
    // Let uid 65534 reach the socket file: only the socket's own mode keeps it out.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let check = Command::new("setpriv")
        .args(&nobody[1..])
        .args(["id", "-u"])
        .output()
        .expect("setpriv");
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "65534");

    // Mode 0600 refuses the connection.
    let out = scsiport(&nobody, &["stat", "--once", "--socket", sock]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");

    // With the mode opened up, the server's SO_PEERCRED check still refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [
        &["stat", "--once", "--socket", sock][..],
        &["adapter", "stop", "a0", "--socket", sock],
    ] {
        let out = scsiport(&nobody, args);
        assert!(!out.success(), "{out:?}");
        assert!(
            out.stderr
                .contains("permission denied: uid 65534 is not the owner"),
            "{out:?}"
        );
    }
    // The refused stop did nothing; the owner still gets answers.
    assert_eq!(stat(&socket)["state"], "running");
    drop(server);
}

#[test]
fn stat_after_iscsi_perf_accounts_for_every_read() {
    let dir = TempDir::new("control-perf");
    let (server, socket) = start(&dir);
    let before = stat(&socket);
    // One second of 8-block (4 KiB) reads, 8 in flight.
    let out = common::run_tool(
        "iscsi-perf",
        &["-t", "1", "-b", "8", "-m", "8", &server.lun0_url()],
        TOOL_TIMEOUT,
    );
    assert!(out.success(), "iscsi-perf: {out:?}");
    let after = stat(&socket);
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    assert!(delta("reads") > 0, "{before}\n{after}");
    assert_eq!(delta("bytes_read"), delta("reads") * 4096, "{after}");
    assert_eq!(delta("writes"), 0);
    assert_eq!(delta("errors"), 0);
    // Besides its READs, the client sent only its connect-time commands (TEST UNIT READY,
    // READ CAPACITY, INQUIRY...): a handful, not per-I/O overhead.
    let others = delta("commands") - delta("reads");
    assert!(
        (1..=10).contains(&others),
        "{others} non-READ commands: {after}"
    );
    drop(server);
}
