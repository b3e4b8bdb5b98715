//! Durability through the file backend: a child process writes with FUA (or writes and
//! then sends SYNCHRONIZE CACHE), reports the completion, and is killed with SIGKILL
//! right after; the data must be in the file afterwards.
//!
//! What this proves: the data left the process (it is in the kernel, and FUA / SYNCHRONIZE
//! CACHE issued `RWF_DSYNC` / `fdatasync` before completing) by the time the command
//! completed. Power-loss durability itself cannot be observed from a test; it rests on
//! those two system calls, which the file backend uses (see `backend::file`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device::backend::FileBackend;
use device::{ItNexus, LogicalUnit, LuConfig, ScsiRequest, ScsiStatus};

const CHILD_ENV: &str = "DEVICE_DURABILITY_CHILD";
const LBA: u32 = 100;
const BLOCKS: u16 = 8;

fn payload() -> Vec<u8> {
    (0..usize::from(BLOCKS) * 512)
        .map(|i| (i * 7 % 253) as u8 ^ 0x5A)
        .collect()
}

/// Child side: write through a logical unit, report the completion, wait to be killed.
fn child(path: &str, mode: &str) {
    let fb = FileBackend::open(path, 512, None).expect("open");
    let lu = LogicalUnit::new(LuConfig::default(), Arc::new(fb));
    let nexus = ItNexus::new(9, 1);
    let data = payload();
    let l = LBA.to_be_bytes();
    let n = BLOCKS.to_be_bytes();
    let fua = if mode == "fua" { 0x08 } else { 0x00 };
    let cdb = [0x2a, fua, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0];
    let mut req = ScsiRequest {
        nexus,
        cdb: &cdb,
        data_out: &data,
        data_in: &mut [],
    };
    assert_eq!(lu.execute(&mut req).status, ScsiStatus::Good);
    if mode == "sync" {
        let cdb = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut req = ScsiRequest::new(nexus, &cdb);
        assert_eq!(lu.execute(&mut req).status, ScsiStatus::Good);
    }
    println!("<<COMPLETED>>");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_parent(test_name: &str, mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{mode}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut saw_done = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("<<COMPLETED>>") {
            saw_done = true;
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(saw_done, "child did not complete the write");
    let file = std::fs::read(&path).unwrap();
    let at = LBA as usize * 512;
    assert_eq!(&file[at..at + payload().len()], &payload()[..]);
    assert!(file[..at].iter().all(|b| *b == 0));
}

fn maybe_child() -> bool {
    match std::env::var(CHILD_ENV) {
        Ok(v) => {
            let (path, mode) = v.split_once('|').unwrap();
            child(path, mode);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn fua_write_is_in_the_file_after_sigkill() {
    if maybe_child() {
        return;
    }
    run_parent("fua_write_is_in_the_file_after_sigkill", "fua");
}

#[test]
fn write_then_synchronize_cache_is_in_the_file_after_sigkill() {
    if maybe_child() {
        return;
    }
    run_parent(
        "write_then_synchronize_cache_is_in_the_file_after_sigkill",
        "sync",
    );
}
