//! Must-show 3 of issue 6: I/O resumes on the same iSCSI session — no new login — after an
//! `adapter_control` stop and restart under load, and after a bus reset under load.
//!
//! `scsiport serve` exports a file-backed LU (adapter `a0`, Storport model) and a simulated
//! one (adapter `a1`, `sim` miniport, SCSI Port model). One iSCSI session keeps eight
//! commands in flight over both LUNs, writing and reading verifiable blocks (the soak test's
//! patterns and bookkeeping, `src/soak/`). Meanwhile the test runs, for each adapter,
//! `scsiport adapter stop` + `restart` and `scsiport adapter reset` through the control
//! socket, and after each event waits for the LU to complete more commands. At the end the
//! session reads back every block it wrote: no acknowledged write lost or corrupted, every
//! command completed exactly once, the TSIH and the TCP connection unchanged, one session in
//! `scsiport sessions`, and a clean logout. Every wait is bounded.

mod common;

#[allow(dead_code)]
#[path = "../src/soak/pattern.rs"]
mod pattern;
#[path = "../src/soak/session.rs"]
mod session;
#[allow(dead_code)]
#[path = "../src/soak/workload.rs"]
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{DEFAULT_IQN, Server, TempDir};
use parking_lot::Mutex;
use serde_json::Value;
use session::{Outcome, Session};
use workload::{Op, Workload};

const INITIATOR: &str = "iqn.2026-11.dev.scsiport:resume-test";
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an LU may take to complete the next batch of commands after an event.
const RESUME_DEADLINE: Duration = Duration::from_secs(30);
/// Blocks of each LU the session uses.
const REGION: u64 = 2048;

/// Adapter `a0`: a file LU (Storport); adapter `a1`: a sim LU (SCSI Port model), both 64 MiB
/// of 512-byte blocks, exported as LUN 0 and 1 of [`DEFAULT_IQN`]. Returns (config, socket).
fn config(dir: &TempDir) -> (PathBuf, PathBuf) {
    let socket = dir.path().join("ctl.sock");
    let image = dir.path().join("a0.img");
    let text = format!(
        r#"[[portal]]
listen = "127.0.0.1:0"

[[adapter]]
name = "a0"
miniport = "file"
model = "storport"
[[adapter.lu]]
size = "64 MiB"
file = {:?}

[[adapter]]
name = "a1"
miniport = "sim"
model = "scsiport"
[[adapter.lu]]
size = "64 MiB"

[[target]]
iqn = "{DEFAULT_IQN}"
[[target.lun]]
lun = 0
adapter = "a0"
[[target.lun]]
lun = 1
adapter = "a1"

[control]
socket = {:?}
"#,
        image.display().to_string(),
        socket.display().to_string()
    );
    let path = dir.path().join("resume.toml");
    std::fs::write(&path, text).expect("write config");
    (path, socket)
}

/// Runs `scsiport ARGS --socket SOCKET`, bounded in time; panics unless it succeeds.
fn control(socket: &Path, args: &[&str]) -> String {
    let out = common::control_command(socket, args, TOOL_TIMEOUT);
    assert!(out.success(), "scsiport {args:?}: {out:?}");
    out.stdout
}

/// What the load thread shares with the test.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    /// Good completions per LU index.
    good: [AtomicU64; 2],
    /// Failed completions (CHECK CONDITION after a reset, ...): legal, counted.
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// What the load thread found.
struct LoadResult {
    work: Workload,
    session: Session,
    tsih_at_login: u16,
    final_blocks: u64,
}

/// Keeps `session.depth` commands in flight over both LUNs until `load.stop`, drains, then
/// reads back every block it wrote.
fn run_load(mut session: Session, load: &Load) -> Result<LoadResult, String> {
    let tsih_at_login = session.tsih();
    let mut work = Workload::new(1, 99, &[(0, 0, REGION), (1, 0, REGION)]);
    let mut ops: HashMap<u64, Op> = HashMap::new();
    let mut token = 1u64;
    let complete = |session: &mut Session,
                    ops: &mut HashMap<u64, Op>,
                    work: &mut Workload|
     -> Result<Option<bool>, String> {
        let Some(c) = session
            .poll(Duration::from_millis(50))
            .map_err(|e| format!("connection: {e}"))?
        else {
            return Ok(None);
        };
        let op = ops
            .remove(&c.token)
            .ok_or_else(|| format!("completion for unknown token {}", c.token))?;
        let ok = match c.outcome {
            Outcome::Good(data) => {
                match op.write {
                    Some(_) => work.write_done(&op, true),
                    None => work.read_done(&op, Some(&data)),
                }
                load.good[op.lu as usize].fetch_add(1, Ordering::Relaxed);
                true
            }
            other => {
                match op.write {
                    Some(_) => work.write_done(&op, false),
                    None => work.read_done(&op, None),
                }
                load.failed.fetch_add(1, Ordering::Relaxed);
                *load.errors.lock().entry(format!("{other:?}")).or_default() += 1;
                false
            }
        };
        Ok(Some(ok))
    };
    let send = |session: &mut Session, token: u64, op: &Op, work: &Workload| {
        let lun = u64::from(op.lu);
        if op.write.is_some() {
            session.write(token, lun, op.lba, work.data(op))
        } else {
            session.read(token, lun, op.lba, op.blocks)
        }
        .map_err(|e| format!("send: {e}"))
    };
    while !load.stop.load(Ordering::Acquire) {
        // At most half the window per LU: a stopped adapter holds its commands, and the other
        // LU must keep slots to show the session is alive meanwhile.
        for _ in 0..16 {
            if !session.can_submit() {
                break;
            }
            let Some(op) = work.next_op() else { break };
            if ops.values().filter(|o| o.lu == op.lu).count() >= session.depth / 2 {
                work.release(&op);
                continue;
            }
            send(&mut session, token, &op, &work)?;
            ops.insert(token, op);
            token += 1;
        }
        complete(&mut session, &mut ops, &mut work)?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ops.is_empty() && Instant::now() < deadline {
        complete(&mut session, &mut ops, &mut work)?;
    }
    if !ops.is_empty() {
        return Err(format!("{} commands never completed", ops.len()));
    }
    let before = work.stats.blocks_verified;
    for (region, start, blocks) in work.touched_runs(64) {
        let mut tries = 0;
        loop {
            let op = work
                .claim(region, start, blocks, false)
                .ok_or("busy block after the drain")?;
            send(&mut session, token, &op, &work)?;
            ops.insert(token, op);
            token += 1;
            let give_up = Instant::now() + Duration::from_secs(30);
            let ok = loop {
                if let Some(ok) = complete(&mut session, &mut ops, &mut work)? {
                    break ok;
                }
                if Instant::now() > give_up {
                    return Err("a verification read never completed".into());
                }
            };
            tries += 1;
            if ok {
                break;
            }
            if tries == 20 {
                return Err(format!(
                    "reading back {blocks} blocks at {start} kept failing"
                ));
            }
        }
    }
    Ok(LoadResult {
        final_blocks: work.stats.blocks_verified - before,
        work,
        session,
        tsih_at_login,
    })
}

/// Waits until LU `lu` has completed `n` more commands with GOOD status.
fn wait_progress(load: &Load, lu: usize, n: u64, what: &str) {
    let start = load.good[lu].load(Ordering::Relaxed);
    let deadline = Instant::now() + RESUME_DEADLINE;
    while load.good[lu].load(Ordering::Relaxed) < start + n {
        assert!(
            Instant::now() < deadline,
            "LU {lu}: I/O did not resume within {RESUME_DEADLINE:?} after {what} ({} more \
             completions; errors so far {:?})",
            load.good[lu].load(Ordering::Relaxed) - start,
            load.errors.lock()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sessions(socket: &Path) -> Vec<Value> {
    let out = control(socket, &["sessions", "--json"]);
    serde_json::from_str::<Value>(&out)
        .expect("sessions JSON")
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn io_resumes_on_the_same_session_after_stop_restart_and_bus_reset_under_load() {
    let dir = TempDir::new("resume");
    let (cfg, socket) = config(&dir);
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    let addr: SocketAddr = server.addr.parse().expect("server address");
    let mut session = Session::login(
        addr,
        INITIATOR,
        DEFAULT_IQN,
        [0x80, 0, 0, 0x52, 0x45, 0x53],
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("login: {e}; server:\n{}", server.stderr_tail()));
    session.depth = 8;
    let listed = sessions(&socket);
    assert_eq!(listed.len(), 1, "{listed:?}");

    let load = Arc::new(Load::default());
    let worker = {
        let load = load.clone();
        std::thread::spawn(move || run_load(session, &load))
    };
    let stop_load = |load: &Load| load.stop.store(true, Ordering::Release);

    let events = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for lu in 0..2 {
            wait_progress(&load, lu, 200, "login");
        }
        for round in 0..2 {
            for (lu, name) in ["a0", "a1"].into_iter().enumerate() {
                let other = 1 - lu;
                let out = control(&socket, &["adapter", "stop", name]);
                assert!(out.contains("stopped"), "{out}");
                // The other adapter keeps working while this one is stopped.
                wait_progress(&load, other, 50, &format!("stopping {name}"));
                std::thread::sleep(Duration::from_millis(200));
                control(&socket, &["adapter", "restart", name]);
                wait_progress(&load, lu, 200, &format!("round {round}: restart of {name}"));

                control(&socket, &["adapter", "reset", name]);
                wait_progress(
                    &load,
                    lu,
                    200,
                    &format!("round {round}: bus reset of {name}"),
                );
            }
        }
    }));
    if events.is_err() {
        // Whatever failed, let held commands run so the load thread can finish.
        for name in ["a0", "a1"] {
            let bin = env!("CARGO_BIN_EXE_scsiport");
            let sock = socket.to_str().expect("utf-8 path");
            let _ = common::run_tool(
                bin,
                &["adapter", "restart", name, "--socket", sock],
                TOOL_TIMEOUT,
            );
        }
    }
    stop_load(&load);
    let result = worker.join().expect("load thread");
    if let Err(e) = events {
        std::panic::resume_unwind(e);
    }
    let LoadResult {
        work,
        session,
        tsih_at_login,
        final_blocks,
    } = result.unwrap_or_else(|e| panic!("load: {e}; server:\n{}", server.stderr_tail()));

    let s = &work.stats;
    assert_eq!(
        (s.lost, s.corrupt),
        (0, 0),
        "violations: {:?}",
        s.violations
    );
    assert!(final_blocks > 0, "nothing read back");
    assert!(s.writes_acked > 1000, "{s:?}");
    let c = session.counters();
    assert_eq!(c.unexpected, 0, "double completions: {c:?}");
    assert_eq!(c.issued, c.completed, "missing completions: {c:?}");
    assert_eq!(session.tsih(), tsih_at_login, "the session changed");
    let listed = sessions(&socket);
    assert_eq!(listed.len(), 1, "a new session appeared: {listed:?}");
    assert_eq!(listed[0]["initiator"], INITIATOR);
    assert_eq!(session.logout().expect("logout"), 0, "logout response");
    // The resets reached the LUs under load: each one's unit attention (6/29/xx) came back to
    // this session, once per reset.
    let reset_uas: u64 = load
        .errors
        .lock()
        .iter()
        .filter(|(e, _)| e.starts_with("Check(6, 41,"))
        .map(|(_, n)| n)
        .sum();
    assert!(reset_uas >= 4, "bus reset unit attentions: {reset_uas}");
    eprintln!(
        "resume: {} writes acked, {} failed; {} reads ok, {} failed; {} blocks read back; \
         errors {:?}",
        s.writes_acked,
        s.writes_failed,
        s.reads_ok,
        s.reads_failed,
        final_blocks,
        load.errors.lock()
    );
}
