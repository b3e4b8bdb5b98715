//! Shared pieces of the end-to-end tests: the `scsiport serve` process behind a guard that
//! kills it on drop, external tools run with a deadline, scratch directories and
//! configuration files.
//!
//! Every helper is bounded in time and talks to loopback only. A missing external tool is
//! a test failure (scripts/test installs libiscsi-bin and qemu-img with the iscsi driver),
//! never a skip.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The IQN of the built-in default target (README).
pub const DEFAULT_IQN: &str = "iqn.2026-11.dev.scsiport:default";

/// How long the server may take to print its address.
const STARTUP: Duration = Duration::from_secs(30);

/// Panics with a clear message unless `program` is on PATH.
pub fn require_tool(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run scripts/test (it installs libiscsi-bin and qemu-img \
         with the iscsi block driver)"
    );
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name includes `tag`, the process id and a counter.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("scsiport-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Self(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a configuration with one adapter of `miniport` ("ram" or "file") holding one LU
/// of `size` (e.g. "256 MiB"), exported as LUN 0 of [`DEFAULT_IQN`]; `file` is the backing
/// file of a file LU. Returns the path of the TOML file inside `dir`.
pub fn write_config(dir: &TempDir, miniport: &str, size: &str, file: Option<&Path>) -> PathBuf {
    let file_line = match file {
        Some(f) => format!("file = {:?}\n", f.display().to_string()),
        None => String::new(),
    };
    let text = format!(
        r#"[[portal]]
listen = "127.0.0.1:0"

[[adapter]]
name = "a0"
miniport = "{miniport}"
model = "scsiport"
[[adapter.lu]]
target = 0
lun = 0
size = "{size}"
block_size = 512
{file_line}
[[target]]
iqn = "{DEFAULT_IQN}"
initiators = []
[[target.lun]]
lun = 0
adapter = "a0"
target_id = 0
adapter_lun = 0
"#
    );
    let path = dir.path().join(format!("{miniport}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// A running `scsiport serve`. Dropping it kills the process (SIGKILL) and reaps it, so a
/// failing test never leaves a server behind.
pub struct Server {
    child: Option<Child>,
    /// The address the server printed (`scsiport: listening on ADDR`).
    pub addr: String,
    /// The iSCSI URLs the server printed, one per LU.
    pub urls: Vec<String>,
    stderr_path: PathBuf,
    _logs: TempDir,
}

impl Server {
    /// Starts `scsiport serve ARGS` and waits until it has printed its address and URLs.
    /// Panics (after killing the process) if it exits or stays silent for 30 s.
    pub fn start(args: &[&str]) -> Self {
        let logs = TempDir::new("serve-log");
        let stderr_path = logs.path().join("stderr");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let child = Command::new(env!("CARGO_BIN_EXE_scsiport"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn scsiport serve");
        let mut server = Self {
            child: Some(child),
            addr: String::new(),
            urls: Vec::new(),
            stderr_path,
            _logs: logs,
        };
        let stdout = server.child_mut().stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Drains stdout for the life of the process so the server never blocks on a pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // After startup nobody listens any more; keep draining.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("scsiport: listening on ") {
                        server.addr = a.trim().to_string();
                    } else if let Some(u) = line.trim().strip_prefix("iscsi://") {
                        server.urls.push(format!("iscsi://{u}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = server.child_mut().wait().ok();
                    panic!(
                        "scsiport serve exited before printing its address ({st:?}); stderr:\n{}",
                        server.stderr_tail()
                    );
                }
            }
            // The URLs follow the address line immediately; give them a moment.
            if !server.addr.is_empty() && !server.urls.is_empty() {
                while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                    if let Some(u) = line.trim().strip_prefix("iscsi://") {
                        server.urls.push(format!("iscsi://{u}"));
                    }
                }
                return server;
            }
            if Instant::now() > deadline {
                panic!(
                    "scsiport serve printed no address within {STARTUP:?}; stderr:\n{}",
                    server.stderr_tail()
                );
            }
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("server process")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server process").id()
    }

    /// The URL of LUN 0 of [`DEFAULT_IQN`].
    pub fn lun0_url(&self) -> String {
        format!("iscsi://{}/{DEFAULT_IQN}/0", self.addr)
    }

    /// The last 4 KiB of the server's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        let cut = s.len().saturating_sub(4096);
        let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s[cut..].to_string()
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its status,
    /// or `None` if it was still running (it is then killed by the guard).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child_mut().try_wait().expect("wait") {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a tool run produced.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status; `None` if the tool was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ToolOutput {
    /// Whether the tool exited 0 before the deadline.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `scsiport ARGS --socket SOCKET` (a command on a server's control socket), killing it
/// after `timeout`.
pub fn control_command(socket: &Path, args: &[&str], timeout: Duration) -> ToolOutput {
    let mut all = args.to_vec();
    all.extend([
        "--socket",
        socket.to_str().expect("control socket path is UTF-8"),
    ]);
    run_tool(env!("CARGO_BIN_EXE_scsiport"), &all, timeout)
}

/// Runs `program ARGS`, killing it after `timeout`. The tool must be installed.
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> ToolOutput {
    require_tool(program);
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ToolOutput {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}
