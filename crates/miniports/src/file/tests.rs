//! Tests of the file miniports through the port: both engines, the interrupt and the polled
//! configuration, block sizes 512 and 4096, concurrency, resets, stop/restart, and the
//! SIGKILL durability check (a re-executed copy of this test binary is the child).

use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use device::backend::FileBackend;
use device::{BlockBackend, LuConfig};
use parking_lot::{Condvar, Mutex};
use port::{
    Adapter, Address, CompletionSink, DataDirection, PortOptions, Srb, SrbFlags, SrbFunction,
    SrbStatus,
};

use super::*;

const ADDR: Address = Address::new(0, 0, 0);
/// Blocks of every test disk.
const BLOCKS: u64 = 4096;

/// The io_uring engine's tests need io_uring: a machine that refuses it (seccomp, an old kernel)
/// fails them with this message instead of skipping them. (The miniport itself falls back to
/// the thread pool there; `EngineKind::Auto`.)
fn require_uring() {
    if let Err(e) = uring::UringEngine::new(8, None, &[]) {
        panic!("io_uring is refused on this machine ({e}): the io_uring engine cannot be tested");
    }
}

/// Both engines.
fn engines() -> Vec<EngineKind> {
    require_uring();
    vec![EngineKind::Threads, EngineKind::IoUring]
}

struct Rig {
    adapter: Adapter,
    file: tempfile::NamedTempFile,
    backend: Arc<FileBackend>,
    bs: u32,
    polled: bool,
}

impl Rig {
    fn new(engine: EngineKind, polled: bool, bs: u32) -> Rig {
        let file = tempfile::NamedTempFile::new().unwrap();
        let backend =
            Arc::new(FileBackend::open(file.path(), bs, Some(BLOCKS * u64::from(bs))).unwrap());
        let adapter = start(engine, polled, backend.clone());
        let rig = Rig {
            adapter,
            file,
            backend,
            bs,
            polled,
        };
        assert_eq!(rig.engine(), engine);
        rig.clear_unit_attention();
        rig
    }

    fn engine(&self) -> EngineKind {
        if self.polled {
            self.adapter
                .synchronize::<PolledFileMiniport, _>(|m, _| m.engine())
                .unwrap()
        } else {
            self.adapter
                .synchronize::<FileMiniport, _>(|m, _| m.engine())
                .unwrap()
        }
    }

    fn in_flight(&self) -> usize {
        if self.polled {
            self.adapter
                .synchronize::<PolledFileMiniport, _>(|m, _| m.in_flight())
                .unwrap()
        } else {
            self.adapter
                .synchronize::<FileMiniport, _>(|m, _| m.in_flight())
                .unwrap()
        }
    }

    /// Runs port ticks until the hold-off after a bus reset is over (no automatic tick here).
    fn end_hold_off(&self) {
        for _ in 0..=self.adapter.options().reset_hold_off_ticks {
            self.adapter.tick();
        }
    }

    /// TEST UNIT READY until GOOD (the power-on unit attention is reported once).
    fn clear_unit_attention(&self) {
        for _ in 0..4 {
            if self
                .run(cdb(&[0, 0, 0, 0, 0, 0]), None, 0)
                .srb_status
                .status()
                == SrbStatus::SUCCESS
            {
                return;
            }
        }
        panic!("the LU never became ready");
    }

    fn run(&self, srb: Srb, data: Option<(Vec<u8>, DataDirection)>, len: u32) -> Srb {
        self.adapter
            .execute_and_wait(with_data(srb, data, len))
            .unwrap()
    }

    fn write(&self, cdb_bytes: &[u8], data: Vec<u8>) -> Srb {
        let len = data.len() as u32;
        self.run(cdb(cdb_bytes), Some((data, DataDirection::Out)), len)
    }

    fn read(&self, cdb_bytes: &[u8], len: usize) -> Srb {
        self.run(
            cdb(cdb_bytes),
            Some((vec![0xCC; len], DataDirection::In)),
            len as u32,
        )
    }

    /// The file's bytes at `lba`, read past the miniport.
    fn file_bytes(&self, lba: u64, blocks: u64) -> Vec<u8> {
        let all = std::fs::read(self.file.path()).unwrap();
        let bs = u64::from(self.bs);
        all[(lba * bs) as usize..((lba + blocks) * bs) as usize].to_vec()
    }
}

fn start(engine: EngineKind, polled: bool, backend: Arc<FileBackend>) -> Adapter {
    let lu = FileLu::new(ADDR, LuConfig::default(), backend).unwrap();
    let hw = FileAdapterConfig::single(vec![lu]).with_engine(engine);
    let options = PortOptions {
        tick: None,
        ..PortOptions::default()
    };
    let mut adapters = if polled {
        port::initialize::<PolledFileMiniport>(hw, options).unwrap()
    } else {
        port::initialize::<FileMiniport>(hw, options).unwrap()
    };
    assert_eq!(adapters.len(), 1);
    let a = adapters.remove(0);
    assert_eq!(a.logical_units().len(), 1, "the scan finds the LU");
    a
}

fn cdb(bytes: &[u8]) -> Srb {
    let mut srb = Srb::execute_scsi(ADDR, bytes).unwrap();
    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    srb
}

fn with_data(srb: Srb, data: Option<(Vec<u8>, DataDirection)>, len: u32) -> Srb {
    match data {
        Some((d, dir)) => srb.with_data(d, len, dir),
        None => srb,
    }
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

fn write10(lba: u32, blocks: u16, fua: bool) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    let flags = if fua { 0x08 } else { 0 };
    [0x2A, flags, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write16(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8A;
    c[1] = if fua { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

const SYNC10: [u8; 10] = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const SYNC16: [u8; 16] = [0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// UNMAP of one range: the CDB and its parameter list.
fn unmap(lba: u64, blocks: u32) -> ([u8; 10], Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[0..2].copy_from_slice(&22u16.to_be_bytes());
    p[2..4].copy_from_slice(&16u16.to_be_bytes());
    p[8..16].copy_from_slice(&lba.to_be_bytes());
    p[16..20].copy_from_slice(&blocks.to_be_bytes());
    ([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], p)
}

/// A recognisable pattern for `blocks` blocks from `lba`, varied by `seed`.
fn pattern(lba: u64, blocks: u64, bs: u32, seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity((blocks * u64::from(bs)) as usize);
    for b in 0..blocks {
        for i in 0..bs as u64 {
            let x = (lba + b)
                .wrapping_mul(31)
                .wrapping_add(i.wrapping_mul(7))
                .wrapping_add(u64::from(seed) * 13);
            v.push((x % 251) as u8 + 1);
        }
    }
    v
}

fn ok(srb: &Srb, what: &str) {
    assert_eq!(
        srb.srb_status.status(),
        SrbStatus::SUCCESS,
        "{what}: status {:?} scsi {:#x} sense {:02x?}",
        srb.srb_status,
        srb.scsi_status,
        srb.sense()
    );
}

/// Punching holes works on the file system of the temp dir.
fn punch_supported(dir: &Path) -> bool {
    let f = tempfile::tempfile_in(dir).unwrap();
    f.set_len(1 << 20).unwrap();
    rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        0,
        4096,
    )
    .is_ok()
}

fn exercise(engine: EngineKind, polled: bool, bs: u32) {
    let what = format!("{engine:?} polled={polled} bs={bs}");
    let rig = Rig::new(engine, polled, bs);
    let raised_before = rig.adapter.interrupt_line().raised_count();

    // WRITE(10) then READ(10).
    let data = pattern(3, 8, bs, 1);
    ok(&rig.write(&write10(3, 8, false), data.clone()), &what);
    let r = rig.read(&read10(3, 8), data.len());
    ok(&r, &what);
    assert_eq!(r.data, data, "{what}: read back");
    assert_eq!(r.data_transfer_length as usize, data.len());
    assert_eq!(rig.file_bytes(3, 8), data, "{what}: in the file");

    // WRITE(16) with FUA at the end of the disk, READ(16).
    let lba = BLOCKS - 5;
    let fua = pattern(lba, 5, bs, 2);
    ok(&rig.write(&write16(lba, 5, true), fua.clone()), &what);
    let r = rig.read(&read16(lba, 5), fua.len());
    ok(&r, &what);
    assert_eq!(r.data, fua, "{what}: FUA data read back");
    assert_eq!(rig.file_bytes(lba, 5), fua);

    // SYNCHRONIZE CACHE (10) and (16).
    ok(&rig.run(cdb(&SYNC10), None, 0), &what);
    ok(&rig.run(cdb(&SYNC16), None, 0), &what);

    // An initiator buffer shorter than the command's transfer: only that much moves.
    let r = rig.read(&read10(3, 2), bs as usize);
    assert_eq!(r.data[..], data[..bs as usize], "{what}: partial read");

    // Beyond capacity: LBA OUT OF RANGE from prepare, no I/O.
    let r = rig.read(&read10(BLOCKS as u32, 1), bs as usize);
    assert_eq!(r.srb_status.status(), SrbStatus::ERROR, "{what}");
    assert_eq!((r.sense()[2] & 0x0F, r.sense()[12]), (5, 0x21), "{what}");

    // UNMAP punches a hole: the range reads as zeroes and (where the file system can) gives
    // its space back. The range covers whole 4 KiB file-system blocks: 16 KiB at 16 KiB.
    let (ulba, ublocks) = (16384 / u64::from(bs), 16384 / u64::from(bs));
    let udata = pattern(ulba, ublocks, bs, 3);
    ok(
        &rig.write(&write10(ulba as u32, ublocks as u16, false), udata.clone()),
        &what,
    );
    ok(&rig.run(cdb(&SYNC10), None, 0), &what);
    let allocated = std::fs::metadata(rig.file.path()).unwrap().blocks();
    let (c, p) = unmap(ulba, ublocks as u32);
    ok(&rig.write(&c, p), &what);
    let r = rig.read(&read10(ulba as u32, ublocks as u16), udata.len());
    ok(&r, &what);
    assert!(
        r.data.iter().all(|&b| b == 0),
        "{what}: unmapped reads zero"
    );
    assert!(rig.file_bytes(ulba, ublocks).iter().all(|&b| b == 0));
    if punch_supported(rig.file.path().parent().unwrap()) {
        let after = std::fs::metadata(rig.file.path()).unwrap().blocks();
        assert!(
            after < allocated,
            "{what}: hole punched ({allocated} -> {after})"
        );
    }

    // Completions came through the interrupt, or (polled) without it.
    let raised = rig.adapter.interrupt_line().raised_count() - raised_before;
    if polled {
        assert_eq!(
            raised, 0,
            "{what}: the polled configuration has no interrupt"
        );
    } else {
        // Completions that had already finished when the doorbell rang are reaped there, so
        // how many came through the interrupt depends on timing; at least one always does
        // here (the writes and reads of 1 MiB are not done inside the submitting enter).
        assert!(raised >= 1, "{what}: no interrupt at all");
    }
    assert_eq!(rig.in_flight(), 0);
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.adapter.shutdown().unwrap();
}

#[test]
fn read_write_flush_unmap_interrupt_threads() {
    for bs in [512, 4096] {
        exercise(EngineKind::Threads, false, bs);
    }
}

#[test]
fn read_write_flush_unmap_polled_threads() {
    for bs in [512, 4096] {
        exercise(EngineKind::Threads, true, bs);
    }
}

#[test]
fn read_write_flush_unmap_interrupt_io_uring() {
    require_uring();
    for bs in [512, 4096] {
        exercise(EngineKind::IoUring, false, bs);
    }
}

#[test]
fn read_write_flush_unmap_polled_io_uring() {
    require_uring();
    for bs in [512, 4096] {
        exercise(EngineKind::IoUring, true, bs);
    }
}

#[test]
fn auto_picks_io_uring_where_allowed() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let backend = Arc::new(FileBackend::open(file.path(), 512, Some(1 << 20)).unwrap());
    let a = start(EngineKind::Auto, false, backend);
    let got = a.synchronize::<FileMiniport, _>(|m, _| m.engine()).unwrap();
    require_uring();
    assert_eq!(got, EngineKind::IoUring);
}

/// Completions of one submitter, for a waiting thread.
#[derive(Default)]
struct Collect {
    done: Mutex<Vec<Srb>>,
    cv: Condvar,
}

impl CompletionSink for Collect {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(srb);
    }
    fn batch_done(&self) {
        self.cv.notify_all();
    }
}

impl Collect {
    /// Waits for at least one completion (bounded) and takes all there are.
    fn take(&self) -> Vec<Srb> {
        let mut d = self.done.lock();
        if d.is_empty() {
            let timed_out = self
                .cv
                .wait_for(&mut d, Duration::from_secs(20))
                .timed_out();
            assert!(!timed_out || !d.is_empty(), "no completion within 20 s");
        }
        std::mem::take(&mut *d)
    }
}

/// Two threads, each with its own submitter, keep `depth` requests outstanding: first writes
/// of their own region, then reads verifying every block.
fn concurrent(engine: EngineKind, polled: bool, bs: u32) {
    let rig = Rig::new(engine, polled, bs);
    const PER_THREAD: u64 = 256;
    const DEPTH: usize = 16;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let adapter = rig.adapter.clone();
            s.spawn(move || {
                let sink = Arc::new(Collect::default());
                let sub = adapter.submitter(sink.clone());
                let base = t * PER_THREAD * 2;
                for phase in [DataDirection::Out, DataDirection::In] {
                    let mut next = 0u64;
                    let mut outstanding = 0usize;
                    let mut done = 0u64;
                    while done < PER_THREAD {
                        while outstanding < DEPTH && next < PER_THREAD {
                            // Two blocks per request, interleaved FUA.
                            let lba = base + next * 2;
                            let srb = if phase == DataDirection::Out {
                                let c = write10(lba as u32, 2, next.is_multiple_of(3));
                                cdb(&c).with_data(
                                    pattern(lba, 2, bs, t as u8),
                                    2 * bs,
                                    DataDirection::Out,
                                )
                            } else {
                                cdb(&read10(lba as u32, 2)).with_data(
                                    vec![0; 2 * bs as usize],
                                    2 * bs,
                                    DataDirection::In,
                                )
                            };
                            let mut srb = srb;
                            srb.original_request = lba;
                            sub.submit(srb);
                            next += 1;
                            outstanding += 1;
                        }
                        for srb in sink.take() {
                            ok(&srb, "concurrent request");
                            if phase == DataDirection::In {
                                let lba = srb.original_request;
                                assert_eq!(srb.data, pattern(lba, 2, bs, t as u8), "lba {lba}");
                            }
                            outstanding -= 1;
                            done += 1;
                        }
                    }
                }
            });
        }
    });
    assert_eq!(rig.in_flight(), 0);
    let stats = rig.adapter.statistics();
    assert!(stats.commands >= 4 * 256, "{stats:?}");
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.adapter.shutdown().unwrap();
}

#[test]
fn concurrent_submitters_threads() {
    concurrent(EngineKind::Threads, false, 512);
    concurrent(EngineKind::Threads, true, 4096);
}

#[test]
fn concurrent_submitters_io_uring() {
    require_uring();
    concurrent(EngineKind::IoUring, false, 4096);
    concurrent(EngineKind::IoUring, true, 512);
}

/// A bus reset while writes are in flight: every request completes exactly once (SUCCESS or
/// BUS_RESET), nothing is late, nothing stays in the kernel, and the LU reports the reset.
#[test]
fn bus_reset_with_io_in_flight_completes_each_request_once() {
    for engine in engines() {
        for polled in [false, true] {
            let rig = Rig::new(engine, polled, 512);
            let sink = Arc::new(Collect::default());
            let sub = rig.adapter.submitter(sink.clone());
            const N: u64 = 64;
            for i in 0..N {
                let mut srb = cdb(&write10((i * 8) as u32, 8, true)).with_data(
                    pattern(i * 8, 8, 512, 9),
                    8 * 512,
                    DataDirection::Out,
                );
                srb.original_request = i;
                sub.submit(srb);
            }
            let reset = rig
                .adapter
                .execute_and_wait(Srb::function(SrbFunction::ResetBus, ADDR))
                .unwrap();
            assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
            // Requests still queued in the port start once the reset hold-off is over (the
            // port's tick is manual here).
            rig.end_hold_off();
            let mut seen = vec![0u32; N as usize];
            let mut ua_seen = 0;
            let mut n = 0;
            while n < N {
                for srb in sink.take() {
                    let s = srb.srb_status.status();
                    let ua = |srb: &Srb| (srb.sense()[2] & 0x0F, srb.sense()[12]) == (6, 0x29);
                    match s {
                        SrbStatus::SUCCESS | SrbStatus::BUS_RESET => {}
                        // Started after the reset: the first one reports it (29/02).
                        SrbStatus::ERROR if ua(&srb) => ua_seen += 1,
                        _ => panic!("{engine:?} polled={polled}: {s:?} {:02x?}", srb.sense()),
                    }
                    seen[srb.original_request as usize] += 1;
                    n += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{engine:?}: {seen:?}");
            assert_eq!(rig.in_flight(), 0);
            assert_eq!(rig.adapter.port_counters().late_completions, 0);
            // The reset shows as a unit attention (29/02), once: to a write started after it,
            // or else to the next command.
            let tur = rig.run(cdb(&[0, 0, 0, 0, 0, 0]), None, 0);
            if tur.scsi_status == 2 {
                assert_eq!((tur.sense()[2] & 0x0F, tur.sense()[12]), (6, 0x29));
                ua_seen += 1;
            }
            assert_eq!(ua_seen, 1, "{engine:?} polled={polled}");
            rig.adapter.shutdown().unwrap();
        }
    }
}

#[test]
fn logical_unit_reset_and_abort_of_a_finished_request() {
    for engine in engines() {
        let rig = Rig::new(engine, false, 4096);
        let mut reset = Srb::function(SrbFunction::ResetLogicalUnit, ADDR);
        reset.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
        let done = rig.adapter.execute_and_wait(reset).unwrap();
        assert_eq!(done.srb_status.status(), SrbStatus::SUCCESS);
        let ua = rig.run(cdb(&[0, 0, 0, 0, 0, 0]), None, 0);
        assert_eq!(
            (ua.sense()[2] & 0x0F, ua.sense()[12], ua.sense()[13]),
            (6, 0x29, 3)
        );
        // ABORT_COMMAND naming no request in the miniport fails.
        let mut abort = Srb::function(SrbFunction::AbortCommand, ADDR);
        abort.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
        let done = rig.adapter.execute_and_wait(abort).unwrap();
        assert_eq!(done.srb_status.status(), SrbStatus::ABORT_FAILED);
        rig.adapter.shutdown().unwrap();
    }
}

#[test]
fn stop_and_restart_keep_serving() {
    for engine in engines() {
        for polled in [false, true] {
            let rig = Rig::new(engine, polled, 512);
            let data = pattern(10, 4, 512, 5);
            ok(
                &rig.write(&write10(10, 4, false), data.clone()),
                "before stop",
            );
            rig.adapter.stop(Duration::from_secs(10)).unwrap();
            rig.adapter.restart(Duration::from_secs(10)).unwrap();
            let r = rig.read(&read10(10, 4), data.len());
            ok(&r, "after restart");
            assert_eq!(r.data, data);
            rig.adapter.shutdown().unwrap();
        }
    }
}

#[test]
fn shutdown_flushes_and_later_requests_get_no_hba() {
    for engine in engines() {
        let rig = Rig::new(engine, false, 512);
        let data = pattern(0, 1, 512, 3);
        ok(&rig.write(&write10(0, 1, false), data.clone()), "write");
        rig.adapter.shutdown().unwrap();
        assert_eq!(rig.backend.num_blocks(), BLOCKS);
        assert_eq!(rig.file_bytes(0, 1), data);
        let late = rig.read(&read10(0, 1), 512);
        assert_eq!(late.srb_status.status(), SrbStatus::NO_HBA);
    }
}

// ---- Durability: SIGKILL right after the completion ----

const CHILD_ENV: &str = "MINIPORTS_DURABILITY_CHILD";
const CHILD_LBA: u64 = 77;
const CHILD_BLOCKS: u64 = 16;

/// The child side: runs only when re-executed by the durability tests (env var set).
/// Writes through the file miniport — with FUA, or without FUA followed by SYNCHRONIZE CACHE —
/// prints "done" once the completion came back, and waits to be killed.
#[test]
#[ignore = "child process of the durability tests"]
fn durability_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let (path, mode, engine, bs) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u32>().unwrap(),
    );
    let engine = match engine {
        "uring" => EngineKind::IoUring,
        _ => EngineKind::Threads,
    };
    let backend = Arc::new(FileBackend::open(path, bs, None).unwrap());
    let rig = Rig {
        adapter: start(engine, false, backend.clone()),
        file: tempfile::NamedTempFile::new().unwrap(),
        backend,
        bs,
        polled: false,
    };
    rig.clear_unit_attention();
    let data = pattern(CHILD_LBA, CHILD_BLOCKS, bs, 42);
    let fua = mode == "fua";
    let w = rig.write(
        &write10(CHILD_LBA as u32, CHILD_BLOCKS as u16, fua),
        data.clone(),
    );
    ok(&w, "child write");
    if !fua {
        ok(&rig.run(cdb(&SYNC10), None, 0), "child SYNCHRONIZE CACHE");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(b"\ndone\n").unwrap();
    out.flush().unwrap();
    drop(out);
    std::thread::sleep(Duration::from_secs(60));
    panic!("the parent did not kill the child");
}

fn sigkill_after_completion(mode: &str, engine: &str, bs: u32) {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(BLOCKS * u64::from(bs)).unwrap();
    let spec = format!("{},{mode},{engine},{bs}", file.path().display());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "file::tests::durability_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test ... " without a newline before the child's output.
            if line.trim() == "done" || line.ends_with(" done") {
                let _ = tx.send(());
                break;
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(60));
    // SIGKILL at once: no destructor, no exit handler of the child runs.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        got.is_ok(),
        "{spec}: the child never reported its completion"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{spec}: the child was killed");
    let content = std::fs::read(file.path()).unwrap();
    let bs = bs as usize;
    let at = CHILD_LBA as usize * bs;
    let want = pattern(CHILD_LBA, CHILD_BLOCKS, bs as u32, 42);
    assert_eq!(&content[at..at + want.len()], &want[..], "{spec}");
    assert!(
        content[..at].iter().all(|&b| b == 0),
        "{spec}: nothing else written"
    );
}

#[test]
fn sigkill_after_fua_write_keeps_the_data() {
    sigkill_after_completion("fua", "threads", 512);
    require_uring();
    sigkill_after_completion("fua", "uring", 4096);
}

#[test]
fn sigkill_after_synchronize_cache_keeps_the_data() {
    sigkill_after_completion("sync", "threads", 4096);
    require_uring();
    sigkill_after_completion("sync", "uring", 512);
}

// ---- Requests the kernel has not finished (thread pool held by a test gate) ----

/// An interrupt-configuration adapter on the thread pool whose jobs wait for `gate`.
fn gated_rig(drain: Duration) -> (Rig, Arc<engine::Gate>) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let backend = Arc::new(FileBackend::open(file.path(), 512, Some(BLOCKS * 512)).unwrap());
    let lu = FileLu::new(ADDR, LuConfig::default(), backend.clone()).unwrap();
    let mut hw = FileAdapterConfig::single(vec![lu]).with_engine(EngineKind::Threads);
    hw.reset_drain_timeout = drain;
    let options = PortOptions {
        tick: None,
        ..PortOptions::default()
    };
    let adapter = port::initialize::<FileMiniport>(hw, options)
        .unwrap()
        .remove(0);
    let rig = Rig {
        adapter,
        file,
        backend,
        bs: 512,
        polled: false,
    };
    rig.clear_unit_attention();
    let gate = Arc::new(engine::Gate::default());
    let g = gate.clone();
    rig.adapter
        .synchronize::<FileMiniport, _>(move |m, _| m.hba.shared.channel(0).engine.set_gate(g))
        .unwrap();
    (rig, gate)
}

/// Submits `n` one-block writes (original_request = LBA) and waits until all are in the
/// kernel.
fn submit_writes(rig: &Rig, sub: &port::Submitter, n: u64) {
    for i in 0..n {
        let mut srb = cdb(&write10(i as u32, 1, false)).with_data(
            pattern(i, 1, 512, 4),
            512,
            DataDirection::Out,
        );
        srb.original_request = i;
        sub.submit(srb);
    }
    for _ in 0..2000 {
        if rig.in_flight() == n as usize {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("requests did not reach the engine: {}", rig.in_flight());
}

fn open_later(gate: &Arc<engine::Gate>, after: Duration) -> std::thread::JoinHandle<()> {
    let gate = gate.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        gate.open();
    })
}

/// Collects exactly `n` completions (bounded in time) and returns them by original_request.
fn collect(sink: &Collect, n: usize) -> Vec<Srb> {
    let mut all = Vec::new();
    while all.len() < n {
        all.extend(sink.take());
    }
    assert_eq!(all.len(), n, "exactly once");
    all.sort_by_key(|s| s.original_request);
    all
}

#[test]
fn bus_reset_waits_for_the_kernel_and_returns_the_buffers() {
    let (rig, gate) = gated_rig(Duration::from_secs(20));
    let sink = Arc::new(Collect::default());
    let sub = rig.adapter.submitter(sink.clone());
    submit_writes(&rig, &sub, 8);
    let opener = open_later(&gate, Duration::from_millis(100));
    let reset = rig
        .adapter
        .execute_and_wait(Srb::function(SrbFunction::ResetBus, ADDR))
        .unwrap();
    opener.join().unwrap();
    assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
    // reset_bus returned only after the kernel finished: nothing left in flight.
    assert_eq!(rig.in_flight(), 0);
    let done = collect(&sink, 8);
    for (i, srb) in done.iter().enumerate() {
        assert_eq!(srb.original_request, i as u64);
        assert_eq!(srb.srb_status.status(), SrbStatus::BUS_RESET);
        assert_eq!(
            srb.data,
            pattern(i as u64, 1, 512, 4),
            "the buffer came back"
        );
    }
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.end_hold_off();
    rig.adapter.shutdown().unwrap();
}

#[test]
fn reset_that_cannot_wait_completes_the_requests_when_the_kernel_does() {
    let (rig, gate) = gated_rig(Duration::from_millis(30));
    let sink = Arc::new(Collect::default());
    let sub = rig.adapter.submitter(sink.clone());
    submit_writes(&rig, &sub, 4);
    let reset = rig
        .adapter
        .execute_and_wait(Srb::function(SrbFunction::ResetBus, ADDR))
        .unwrap();
    assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
    // Still in the kernel, still owned by the miniport: nothing was completed yet.
    assert_eq!(rig.in_flight(), 4);
    assert!(sink.done.lock().is_empty());
    gate.open();
    let done = collect(&sink, 4);
    assert!(
        done.iter()
            .all(|s| s.srb_status.status() == SrbStatus::BUS_RESET)
    );
    assert!(done.iter().all(|s| s.data.len() == 512));
    assert_eq!(rig.in_flight(), 0);
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.end_hold_off();
    rig.adapter.shutdown().unwrap();
}

#[test]
fn abort_of_a_request_in_the_kernel() {
    let (rig, gate) = gated_rig(Duration::from_secs(20));
    let sink = Arc::new(Collect::default());
    let sub = rig.adapter.submitter(sink.clone());
    submit_writes(&rig, &sub, 2);
    let opener = open_later(&gate, Duration::from_millis(100));
    let mut abort = Srb::function(SrbFunction::AbortCommand, ADDR);
    abort.abort_target = 1;
    abort.original_request = 100;
    abort.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
    sub.submit(abort);
    let done = collect(&sink, 3);
    opener.join().unwrap();
    let status: Vec<_> = done
        .iter()
        .map(|s| (s.original_request, s.srb_status.status()))
        .collect();
    assert_eq!(
        status,
        [
            (0, SrbStatus::SUCCESS),
            (1, SrbStatus::ABORTED),
            (100, SrbStatus::SUCCESS)
        ]
    );
    assert_eq!(rig.in_flight(), 0);
    rig.adapter.shutdown().unwrap();
}

#[test]
fn shutdown_with_requests_in_the_kernel_completes_each_once() {
    let (rig, gate) = gated_rig(Duration::from_secs(20));
    let sink = Arc::new(Collect::default());
    let sub = rig.adapter.submitter(sink.clone());
    submit_writes(&rig, &sub, 3);
    // Long enough for shutdown to reach the reset on a loaded machine (50 ms was not, about
    // once in 25 runs with four copies of the test at once): the writes must still be in the
    // kernel when the reset comes.
    let opener = open_later(&gate, Duration::from_millis(400));
    rig.adapter.shutdown().unwrap();
    opener.join().unwrap();
    let done = collect(&sink, 3);
    assert!(
        done.iter()
            .all(|s| s.srb_status.status() == SrbStatus::BUS_RESET)
    );
    assert!(done.iter().all(|s| s.data.len() == 512), "buffers returned");
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
}

/// A file truncated behind the LU's back: the missing part reads as zeroes (a short read
/// followed by end of file, continued by the engine).
#[test]
fn reads_past_a_truncated_end_return_zeroes() {
    for engine in engines() {
        for bs in [512u32, 4096] {
            let rig = Rig::new(engine, false, bs);
            let data = pattern(8, 8, bs, 6);
            ok(&rig.write(&write10(8, 8, false), data.clone()), "write");
            rig.file.as_file().set_len(12 * u64::from(bs)).unwrap();
            let r = rig.read(&read10(8, 8), data.len());
            ok(&r, "read over the truncated end");
            let half = 4 * bs as usize;
            assert_eq!(r.data[..half], data[..half], "{engine:?}");
            assert!(r.data[half..].iter().all(|&b| b == 0), "{engine:?}");
            rig.adapter.shutdown().unwrap();
        }
    }
}

/// io_uring requests belong to the thread that submitted them; the kernel cancels the unstarted
/// ones when it exits. Here the submitting thread (which runs `start_io` in the port's deferred
/// stage) exits right after submitting FUA writes (which the kernel runs in its workers): every
/// write must still complete successfully.
#[test]
fn io_uring_requests_survive_the_exit_of_the_submitting_thread() {
    require_uring();
    for polled in [false, true] {
        let rig = Rig::new(EngineKind::IoUring, polled, 4096);
        let sink = Arc::new(Collect::default());
        const N: u64 = 32;
        for round in 0..8u64 {
            let sub = rig.adapter.submitter(sink.clone());
            std::thread::spawn(move || {
                for i in 0..N {
                    let lba = round * N + i;
                    let mut srb = cdb(&write10(lba as u32, 1, true)).with_data(
                        pattern(lba, 1, 4096, 8),
                        4096,
                        DataDirection::Out,
                    );
                    srb.original_request = lba;
                    sub.submit(srb);
                }
            })
            .join()
            .unwrap();
        }
        let done = collect(&sink, 8 * N as usize);
        for srb in &done {
            ok(srb, "write submitted by a thread that exited");
        }
        assert_eq!(rig.file_bytes(0, 8 * N), pattern(0, 8 * N, 4096, 8));
        rig.adapter.shutdown().unwrap();
    }
}

#[test]
fn runs_under_the_storport_model() {
    for engine in engines() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let backend = Arc::new(FileBackend::open(file.path(), 512, Some(BLOCKS * 512)).unwrap());
        let lu = FileLu::new(ADDR, LuConfig::default(), backend.clone()).unwrap();
        let hw = FileAdapterConfig::single(vec![lu]).with_engine(engine);
        let options = PortOptions {
            tick: None,
            ..PortOptions::default()
        };
        let adapter = port::initialize_storport::<FileMiniport>(hw, options)
            .unwrap()
            .remove(0);
        assert!(adapter.is_storport());
        let rig = Rig {
            adapter,
            file,
            backend,
            bs: 512,
            polled: false,
        };
        rig.clear_unit_attention();
        let data = pattern(5, 3, 512, 7);
        ok(
            &rig.write(&write10(5, 3, true), data.clone()),
            "storport write",
        );
        let r = rig.read(&read10(5, 3), data.len());
        ok(&r, "storport read");
        assert_eq!(r.data, data);
        assert_eq!(rig.file_bytes(5, 3), data);
        rig.adapter.shutdown().unwrap();
    }
}

/// Completions with the thread that delivered each.
#[derive(Default)]
struct ByThread {
    done: Mutex<Vec<(Srb, std::thread::ThreadId)>>,
}

impl CompletionSink for ByThread {
    fn complete(&self, srb: Srb) {
        self.done.lock().push((srb, std::thread::current().id()));
    }
}

/// An io_uring adapter (interrupt configuration) on a 4 KiB-block file in tmpfs where there
/// is one: there the kernel hands reads to its workers, so they are still in flight when a
/// poll starts; elsewhere they may all finish inside the submitting enter.
fn shm_uring_rig() -> Rig {
    require_uring();
    let file = if Path::new("/dev/shm").is_dir() {
        tempfile::NamedTempFile::new_in("/dev/shm").unwrap()
    } else {
        tempfile::NamedTempFile::new().unwrap()
    };
    let bs = 4096u32;
    let backend =
        Arc::new(FileBackend::open(file.path(), bs, Some(BLOCKS * u64::from(bs))).unwrap());
    let rig = Rig {
        adapter: start(EngineKind::IoUring, false, backend.clone()),
        file,
        backend,
        bs,
        polled: false,
    };
    rig.clear_unit_attention();
    rig
}

/// [`shm_uring_rig`] on a file written in full: reads of a hole in tmpfs finish inside the
/// submitting enter, reads of data go to the kernel's workers and complete while the
/// submitting thread does other things.
fn written_shm_uring_rig() -> Rig {
    let rig = shm_uring_rig();
    std::fs::write(
        rig.file.path(),
        vec![0x5a; (BLOCKS * u64::from(rig.bs)) as usize],
    )
    .unwrap();
    rig
}

/// Polls `line` — taking the interrupt on this thread — until `sink` holds `n` completions;
/// fails with `what` at `deadline`.
fn poll_until(
    line: &port::InterruptLine,
    sink: &ByThread,
    n: usize,
    deadline: std::time::Instant,
    what: &str,
) {
    while sink.done.lock().len() < n {
        assert!(std::time::Instant::now() < deadline, "{what}");
        if line.take_interrupt(Duration::from_millis(1)) == port::TakenInterrupt::Unavailable {
            std::thread::yield_now();
        }
    }
}

/// A tagged READ(16) of `blocks` at `lba` with its buffer; `original_request` = `id`.
fn tagged_read(rig: &Rig, lba: u64, blocks: u32, id: u64) -> Srb {
    let mut srb = cdb(&read16(lba, blocks));
    srb.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
    srb.original_request = id;
    let len = blocks * rig.bs;
    with_data(srb, Some((vec![0; len as usize], DataDirection::In)), len)
}

#[test]
fn a_polling_thread_takes_the_io_uring_interrupt_itself() {
    let rig = shm_uring_rig();
    let bs = rig.bs;
    const N: u64 = 16;
    const PER: u64 = 256; // 1 MiB
    for i in 0..N {
        let w = rig.write(
            &write16(i * PER, PER as u32, false),
            pattern(i * PER, PER, bs, 9),
        );
        ok(&w, "write");
    }
    let sink = Arc::new(ByThread::default());
    let sub = rig.adapter.submitter(sink.clone());
    let mut batch: Vec<Srb> = (0..N)
        .map(|i| tagged_read(&rig, i * PER, PER as u32, i))
        .collect();
    sub.submit_batch(&mut batch);
    let line = rig.adapter.interrupt_line();
    let taken = line.take_interrupt(Duration::from_millis(500));
    let first = taken != port::TakenInterrupt::Unavailable;
    let mut ran_here = taken == port::TakenInterrupt::Here;
    // The ring offers a wait while reads are in flight (on tmpfs the kernel's workers usually
    // still have them); it may refuse only when nothing is in flight any more (a loaded
    // machine can finish all 16 before the first poll).
    if !first {
        assert_eq!(rig.in_flight(), 0, "no wait only when nothing is in flight");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sink.done.lock().len() < N as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "reads did not complete"
        );
        match line.take_interrupt(Duration::from_millis(10)) {
            port::TakenInterrupt::Unavailable => std::thread::sleep(Duration::from_millis(1)),
            port::TakenInterrupt::Here => ran_here = true,
            _ => {}
        }
    }
    let me = std::thread::current().id();
    let done = std::mem::take(&mut *sink.done.lock());
    assert_eq!(done.len(), N as usize, "each read completes once");
    for (srb, _) in &done {
        ok(srb, "read");
        let i = srb.original_request;
        assert_eq!(
            srb.data_slice(),
            &pattern(i * PER, PER, bs, 9)[..],
            "read {i}"
        );
    }
    // When the interrupt routine ran on this thread, it delivered completions to this thread.
    if ran_here {
        assert!(
            done.iter().any(|(_, t)| *t == me),
            "the polling thread delivered completions itself"
        );
    }
    // Nothing in flight: no wait.
    assert_eq!(
        line.take_interrupt(Duration::from_secs(5)),
        port::TakenInterrupt::Unavailable
    );
    rig.adapter.shutdown().unwrap();
}

/// A thread that keeps the adapter busy and polls for its completions gets them on its own
/// thread, including those that arrive while it handles the previous batch (the poller lease:
/// the interrupt stays masked between its waits, so the interrupt thread does not take them).
#[test]
fn a_busy_polling_thread_keeps_its_completions_between_waits() {
    let rig = written_shm_uring_rig();
    let sink = Arc::new(ByThread::default());
    let sub = rig.adapter.submitter(sink.clone());
    let line = rig.adapter.interrupt_line();
    const QD: u64 = 8;
    // 128 KiB each: the kernel's workers take a while over the eight, so most complete while
    // this thread handles the first.
    const PER: u64 = 32;
    const TOTAL: usize = 2000;
    let mut next = 0u64;
    let mut batch: Vec<Srb> = (0..QD)
        .map(|_| {
            next += 1;
            tagged_read(&rig, (next * PER) % (BLOCKS - PER), PER as u32, next)
        })
        .collect();
    sub.submit_batch(&mut batch);
    let me = std::thread::current().id();
    let (mut seen, mut elsewhere) = (0usize, 0usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen < TOTAL {
        assert!(
            std::time::Instant::now() < deadline,
            "reads did not complete"
        );
        if line.take_interrupt(Duration::from_millis(1)) == port::TakenInterrupt::Unavailable {
            std::thread::sleep(Duration::from_micros(100));
        }
        let done = std::mem::take(&mut *sink.done.lock());
        // Work on the batch for a while, as a caller does — with system calls (waking
        // another thread, a socket write): the kernel posts the completions its workers
        // finished meanwhile on the way out of each — then send their replacements.
        let until = std::time::Instant::now() + Duration::from_micros(200);
        while std::time::Instant::now() < until {
            std::thread::yield_now();
        }
        let mut more: Vec<Srb> = Vec::new();
        for (srb, t) in done {
            ok(&srb, "read");
            seen += 1;
            elsewhere += usize::from(t != me);
            if (next as usize) < TOTAL {
                next += 1;
                more.push(tagged_read(
                    &rig,
                    (next * PER) % (BLOCKS - PER),
                    PER as u32,
                    next,
                ));
            }
        }
        sub.submit_batch(&mut more);
    }
    assert_eq!(seen, TOTAL, "each read completes once");
    assert!(sink.done.lock().is_empty(), "no completion after the last");
    // A few may go to the interrupt thread when this thread is descheduled past its lease.
    assert!(
        elsewhere * 10 < TOTAL,
        "{elsewhere} of {TOTAL} completions were delivered by another thread"
    );
    rig.adapter.shutdown().unwrap();
}

/// A thread that looks for its completions when nothing of its is on the ring (its requests
/// are still with the port, or another thread delivers them) sleeps on its sink: it gives its
/// lease back, so what is started on the ring meanwhile is delivered by the interrupt thread at
/// once, not when the lease would have run out.
#[test]
fn a_poller_with_nothing_in_flight_gives_its_lease_back() {
    let rig = written_shm_uring_rig();
    let sink = Arc::new(ByThread::default());
    let sub = rig.adapter.submitter(sink.clone());
    let line = rig.adapter.interrupt_line();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut latencies = Vec::new();
    for i in 0..15u64 {
        // Poll one read home: this thread now holds the lease.
        let mut one = vec![tagged_read(&rig, i * 8, 8, i)];
        sub.submit_batch(&mut one);
        poll_until(&line, &sink, 1, deadline, "read did not complete");
        ok(&sink.done.lock().pop().unwrap().0, "read");
        // Nothing in flight: no wait, and the lease is given back.
        assert_eq!(
            line.take_interrupt(Duration::from_millis(1)),
            port::TakenInterrupt::Unavailable
        );
        // A read started now is delivered without this thread polling.
        let t0 = std::time::Instant::now();
        let mut one = vec![tagged_read(&rig, 1000 + i * 8, 8, 100 + i)];
        sub.submit_batch(&mut one);
        while sink.done.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "read was stranded");
            std::thread::sleep(Duration::from_micros(20));
        }
        latencies.push(t0.elapsed());
        ok(&sink.done.lock().pop().unwrap().0, "read");
    }
    latencies.sort();
    // Held, the lease would keep the interrupt masked for up to `LEASE` after the last wait
    // (about half of these, measured). A few slow wake-ups on a busy machine are allowed.
    let p75 = latencies[latencies.len() * 3 / 4];
    assert!(
        p75 < super::uring::LEASE / 2,
        "3/4 of deliveries took up to {p75:?} (all: {latencies:?})"
    );
    rig.adapter.shutdown().unwrap();
}

/// A thread that polled once (and so holds the lease) and then stops polling with requests
/// in flight does not strand them: when its lease ends the interrupt thread delivers them.
#[test]
fn completions_of_a_thread_that_stops_polling_are_delivered() {
    let rig = shm_uring_rig();
    let sink = Arc::new(ByThread::default());
    let sub = rig.adapter.submitter(sink.clone());
    let line = rig.adapter.interrupt_line();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Poll until the first read is back: this thread now holds the lease.
    let mut first = vec![tagged_read(&rig, 0, 1, 0)];
    sub.submit_batch(&mut first);
    poll_until(&line, &sink, 1, deadline, "first read did not complete");
    // More reads, and no more polls.
    const N: u64 = 64;
    let mut batch: Vec<Srb> = (1..=N).map(|i| tagged_read(&rig, i * 8, 8, i)).collect();
    sub.submit_batch(&mut batch);
    while sink.done.lock().len() < N as usize + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "reads of a thread that stopped polling were stranded"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = std::mem::take(&mut *sink.done.lock());
    assert_eq!(done.len(), N as usize + 1, "each read completes once");
    for (srb, _) in &done {
        ok(srb, "read");
    }
    rig.adapter.shutdown().unwrap();
}

// ---- Storport concurrent channels: one engine per channel ----

/// A Storport file adapter with `channels` concurrent channels.
fn channel_rig(engine: EngineKind, channels: usize, drain: Duration) -> Rig {
    let file = tempfile::NamedTempFile::new().unwrap();
    let backend = Arc::new(FileBackend::open(file.path(), 512, Some(BLOCKS * 512)).unwrap());
    let lu = FileLu::new(ADDR, LuConfig::default(), backend.clone()).unwrap();
    let mut hw = FileAdapterConfig::single(vec![lu])
        .with_engine(engine)
        .with_channels(channels);
    hw.reset_drain_timeout = drain;
    let options = PortOptions {
        tick: None,
        ..PortOptions::default()
    };
    let adapter = port::initialize_storport::<FileMiniport>(hw, options)
        .unwrap()
        .remove(0);
    assert_eq!(adapter.configuration().concurrent_channels, channels as u32);
    assert!(adapter.is_full_duplex());
    let rig = Rig {
        adapter,
        file,
        backend,
        bs: 512,
        polled: false,
    };
    assert_eq!(rig.engine(), engine);
    assert_eq!(
        rig.adapter
            .synchronize::<FileMiniport, _>(|m, _| m.channels())
            .unwrap(),
        channels
    );
    rig.clear_unit_attention();
    rig
}

fn channel_requests(rig: &Rig) -> Vec<u64> {
    rig.adapter
        .synchronize::<FileMiniport, _>(|m, _| m.channel_requests())
        .unwrap()
}

/// Runs `f` on a thread bound to "processor" `p` (so its requests use channel `p % n`).
fn on_processor<R: Send>(p: u32, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(move || {
            port::set_current_processor(p);
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn channels_data_written_on_one_channel_reads_back_on_another() {
    for engine in engines() {
        let rig = channel_rig(engine, 2, RESET_DRAIN_TIMEOUT);
        let before = channel_requests(&rig);
        let data = pattern(100, 16, 512, 7);
        on_processor(0, || {
            ok(&rig.write(&write10(100, 16, true), data.clone()), "write")
        });
        let after_write = channel_requests(&rig);
        assert_eq!(
            after_write[0],
            before[0] + 1,
            "{engine:?}: the write used channel 0"
        );
        assert_eq!(after_write[1], before[1], "{engine:?}");
        let r = on_processor(1, || rig.read(&read10(100, 16), data.len()));
        ok(&r, "read");
        assert_eq!(r.data, data, "{engine:?}");
        let after_read = channel_requests(&rig);
        assert_eq!(
            after_read[1],
            after_write[1] + 1,
            "{engine:?}: the read used channel 1"
        );
        assert_eq!(rig.file_bytes(100, 16), data);
        // Many requests from both channels at once, each reading what the other wrote.
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let rig = &rig;
                s.spawn(move || {
                    port::set_current_processor(t);
                    let sink = Arc::new(Collect::default());
                    let sub = rig.adapter.submitter(sink.clone());
                    for i in 0..32u64 {
                        let lba = 200 + u64::from(t) * 64 + i * 2;
                        let mut srb = cdb(&write10(lba as u32, 2, false)).with_data(
                            pattern(lba, 2, 512, t as u8),
                            1024,
                            DataDirection::Out,
                        );
                        srb.original_request = lba;
                        sub.submit(srb);
                    }
                    let done = collect(&sink, 32);
                    assert!(
                        done.iter()
                            .all(|s| s.srb_status.status() == SrbStatus::SUCCESS)
                    );
                });
            }
        });
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let rig = &rig;
                s.spawn(move || {
                    port::set_current_processor(t);
                    let other = 1 - t;
                    let sink = Arc::new(Collect::default());
                    let sub = rig.adapter.submitter(sink.clone());
                    for i in 0..32u64 {
                        let lba = 200 + u64::from(other) * 64 + i * 2;
                        let mut srb = cdb(&read10(lba as u32, 2)).with_data(
                            vec![0; 1024],
                            1024,
                            DataDirection::In,
                        );
                        srb.original_request = lba;
                        sub.submit(srb);
                    }
                    for srb in collect(&sink, 32) {
                        ok(&srb, "cross read");
                        let lba = srb.original_request;
                        assert_eq!(srb.data, pattern(lba, 2, 512, other as u8), "lba {lba}");
                    }
                });
            }
        });
        let end = channel_requests(&rig);
        assert!(
            end[0] >= after_read[0] + 64 && end[1] >= after_read[1] + 64,
            "{end:?}"
        );
        assert_eq!(rig.in_flight(), 0);
        assert_eq!(rig.adapter.port_counters().late_completions, 0);
        rig.adapter.shutdown().unwrap();
    }
}

/// A channel rig on the thread pool whose jobs wait for a gate (on every channel).
fn gated_channel_rig(drain: Duration) -> (Rig, Arc<engine::Gate>) {
    let rig = channel_rig(EngineKind::Threads, 2, drain);
    let gate = Arc::new(engine::Gate::default());
    let g = gate.clone();
    rig.adapter
        .synchronize::<FileMiniport, _>(move |m, _| {
            for i in 0..m.channels() {
                m.hba.shared.channel(i).engine.set_gate(g.clone());
            }
        })
        .unwrap();
    (rig, gate)
}

/// On each of the two channels (processors 0 and 1), `n` one-block writes with
/// original_request = LBA (`base + 100 * channel + i`); waits until all `2 n` are in the
/// kernel. Returns the two sinks.
fn writes_on_both_channels(rig: &Rig, base: u64, n: u64) -> Vec<(Arc<Collect>, port::Submitter)> {
    let subs: Vec<_> = (0..2u32)
        .map(|t| {
            on_processor(t, || {
                let sink = Arc::new(Collect::default());
                let sub = rig.adapter.submitter(sink.clone());
                for i in 0..n {
                    let lba = base + 100 * u64::from(t) + i;
                    let mut srb = cdb(&write10(lba as u32, 1, false)).with_data(
                        pattern(lba, 1, 512, 4),
                        512,
                        DataDirection::Out,
                    );
                    srb.original_request = lba;
                    sub.submit(srb);
                }
                (sink, sub)
            })
        })
        .collect();
    for _ in 0..5000 {
        if rig.in_flight() == 2 * n as usize {
            let per = channel_requests(rig);
            assert!(per.iter().all(|&c| c >= n), "both channels busy: {per:?}");
            return subs;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("requests did not reach the engines: {}", rig.in_flight());
}

#[test]
fn channels_bus_reset_with_io_in_flight_on_both_completes_each_once() {
    let (rig, gate) = gated_channel_rig(Duration::from_secs(20));
    let subs = writes_on_both_channels(&rig, 0, 4);
    let opener = open_later(&gate, Duration::from_millis(100));
    let reset = rig
        .adapter
        .execute_and_wait(Srb::function(SrbFunction::ResetBus, ADDR))
        .unwrap();
    opener.join().unwrap();
    assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
    assert_eq!(rig.in_flight(), 0, "reset_bus drained every channel");
    for (t, (sink, _)) in subs.iter().enumerate() {
        let done = collect(sink, 4);
        for (i, srb) in done.iter().enumerate() {
            let lba = 100 * t as u64 + i as u64;
            assert_eq!(srb.original_request, lba);
            assert_eq!(srb.srb_status.status(), SrbStatus::BUS_RESET);
            assert_eq!(srb.data, pattern(lba, 1, 512, 4), "the buffer came back");
        }
    }
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.end_hold_off();
    rig.adapter.shutdown().unwrap();
}

#[test]
fn channels_abort_of_a_request_in_the_kernel_on_the_other_channel() {
    let (rig, gate) = gated_channel_rig(Duration::from_secs(20));
    let subs = writes_on_both_channels(&rig, 0, 2);
    let opener = open_later(&gate, Duration::from_millis(100));
    // The abort goes through channel 1's start_io; the target is channel 1's LBA 101.
    on_processor(1, || {
        let mut abort = Srb::function(SrbFunction::AbortCommand, ADDR);
        abort.abort_target = 101;
        abort.original_request = 1000;
        abort.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
        subs[1].1.submit(abort);
    });
    let zero: Vec<_> = collect(&subs[0].0, 2)
        .iter()
        .map(|s| (s.original_request, s.srb_status.status()))
        .collect();
    let one: Vec<_> = collect(&subs[1].0, 3)
        .iter()
        .map(|s| (s.original_request, s.srb_status.status()))
        .collect();
    opener.join().unwrap();
    assert_eq!(zero, [(0, SrbStatus::SUCCESS), (1, SrbStatus::SUCCESS)]);
    assert_eq!(
        one,
        [
            (100, SrbStatus::SUCCESS),
            (101, SrbStatus::ABORTED),
            (1000, SrbStatus::SUCCESS)
        ]
    );
    assert_eq!(rig.in_flight(), 0);
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.adapter.shutdown().unwrap();
}

#[test]
fn channels_stop_and_restart_with_io_in_flight_on_both() {
    let (rig, gate) = gated_channel_rig(Duration::from_secs(20));
    let subs = writes_on_both_channels(&rig, 0, 3);
    let opener = open_later(&gate, Duration::from_millis(100));
    // The stop waits for the requests in the kernel (they finish when the gate opens).
    rig.adapter.stop(Duration::from_secs(20)).unwrap();
    opener.join().unwrap();
    for (sink, _) in &subs {
        let done = collect(sink, 3);
        assert!(
            done.iter()
                .all(|s| s.srb_status.status() == SrbStatus::SUCCESS),
            "{:?}",
            done.iter().map(|s| s.srb_status).collect::<Vec<_>>()
        );
    }
    assert_eq!(rig.in_flight(), 0);
    rig.adapter.restart(Duration::from_secs(10)).unwrap();
    // Both channels serve again.
    for t in 0..2u32 {
        let lba = 100 * u64::from(t);
        let r = on_processor(t, || rig.read(&read10(lba as u32, 1), 512));
        ok(&r, "after restart");
        assert_eq!(r.data, pattern(lba, 1, 512, 4));
    }
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.adapter.shutdown().unwrap();
}

#[test]
fn channels_shutdown_with_io_in_flight_on_both_completes_each_once() {
    let (rig, gate) = gated_channel_rig(Duration::from_secs(20));
    let subs = writes_on_both_channels(&rig, 0, 3);
    let opener = open_later(&gate, Duration::from_millis(50));
    rig.adapter.shutdown().unwrap();
    opener.join().unwrap();
    for (sink, _) in &subs {
        let done = collect(sink, 3);
        assert!(
            done.iter()
                .all(|s| s.srb_status.status() == SrbStatus::BUS_RESET)
        );
        assert!(done.iter().all(|s| s.data.len() == 512), "buffers returned");
    }
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
}

/// io_uring on both channels: a bus reset and a logical-unit reset while both keep writing;
/// every request completes exactly once.
#[test]
fn channels_io_uring_resets_under_load_complete_each_request_once() {
    require_uring();
    let rig = channel_rig(EngineKind::IoUring, 2, RESET_DRAIN_TIMEOUT);
    const N: u64 = 64;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u32)
            .map(|t| {
                let rig = &rig;
                s.spawn(move || {
                    port::set_current_processor(t);
                    let sink = Arc::new(Collect::default());
                    let sub = rig.adapter.submitter(sink.clone());
                    for i in 0..N {
                        let lba = u64::from(t) * 1024 + i * 8;
                        let mut srb = cdb(&write10(lba as u32, 8, i % 2 == 0)).with_data(
                            pattern(lba, 8, 512, 9),
                            8 * 512,
                            DataDirection::Out,
                        );
                        srb.original_request = i;
                        sub.submit(srb);
                    }
                    let mut seen = vec![0u32; N as usize];
                    let mut n = 0;
                    while n < N {
                        for srb in sink.take() {
                            let st = srb.srb_status.status();
                            let sense = srb.sense();
                            let ua = sense.len() > 12 && (sense[2] & 0x0F, sense[12]) == (6, 0x29);
                            assert!(
                                matches!(st, SrbStatus::SUCCESS | SrbStatus::BUS_RESET)
                                    || (st == SrbStatus::ERROR && ua),
                                "{st:?}"
                            );
                            seen[srb.original_request as usize] += 1;
                            n += 1;
                        }
                    }
                    assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
                })
            })
            .collect();
        let reset = rig
            .adapter
            .execute_and_wait(Srb::function(SrbFunction::ResetBus, ADDR))
            .unwrap();
        assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
        rig.end_hold_off();
        let mut lu_reset = Srb::function(SrbFunction::ResetLogicalUnit, ADDR);
        lu_reset.flags = SrbFlags::BYPASS_FROZEN_QUEUE | SrbFlags::BYPASS_LOCKED_QUEUE;
        let done = rig.adapter.execute_and_wait(lu_reset).unwrap();
        assert_eq!(done.srb_status.status(), SrbStatus::SUCCESS);
        rig.end_hold_off();
        for w in workers {
            w.join().unwrap();
        }
    });
    assert_eq!(rig.in_flight(), 0);
    assert_eq!(rig.adapter.port_counters().late_completions, 0);
    rig.adapter.shutdown().unwrap();
}
