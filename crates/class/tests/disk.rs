//! Must-show 2 of issue 5: splitting, the 10/16-byte choice at 2 TiB, retries with backoff,
//! frozen-queue release, and a capacity change picked up after a unit attention; plus the
//! typed errors and the blocking / async faces.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use class::{Disk, DiskError, DiskOptions, IoRequest, RetryPolicy};
use common::{Fault, GrowingBackend, LU, adapter, pattern, ram_adapter};
use device::backend::{FaultyBackend, InjectedFault, RamBackend};

const WAIT: Duration = Duration::from_secs(5);

fn options(initial_ms: u64, max_retries: u32) -> DiskOptions {
    DiskOptions {
        retry: RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(50),
        },
        ..DiskOptions::default()
    }
}

#[test]
fn open_discovers_capacity_block_size_and_limits() {
    let (a, _lu, faults) = adapter(Arc::new(RamBackend::new(2048, 4096).unwrap()), 1 << 20, 17);
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!((disk.num_blocks(), disk.block_size()), (2048, 4096));
    assert_eq!(disk.capacity(), 2048 * 4096);
    let l = disk.limits();
    // 17 physical breaks of 4 KiB are below the 1 MiB MaximumTransferLength.
    assert_eq!(l.max_transfer_bytes, 17 * 4096);
    assert!(l.thin, "the RAM backend is thin provisioned (LBPME)");
    // The power-on unit attention was consumed by open (retried), not by the first I/O.
    disk.write(0, &[1u8; 4096]).unwrap();
    assert_eq!(faults.take_log().len(), 1);
    // No LU there.
    assert!(matches!(
        Disk::open(&a, port::Address::new(0, 0, 1)),
        Err(DiskError::Transport(_))
    ));
    // After the adapter is gone, requests fail (NO_HBA) instead of hanging.
    a.shutdown().unwrap();
    let mut buf = [0u8; 4096];
    assert_eq!(
        disk.read(0, &mut buf),
        Err(DiskError::Transport(port::SrbStatus::NO_HBA))
    );
}

#[test]
fn read_capacity_16_refused_falls_back_to_10() {
    let (a, _lu, faults) = ram_adapter(1000);
    // INVALID COMMAND OPERATION CODE for SERVICE ACTION IN(16).
    faults.push_for(0x9E, Fault::Check(5, 0x20, 0));
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!(common::fired(&faults), 1);
    assert_eq!((disk.num_blocks(), disk.block_size()), (1000, 512));
    assert!(
        !disk.limits().thin,
        "READ CAPACITY(10) says nothing of provisioning"
    );
}

#[test]
fn requests_are_checked_against_capacity_and_alignment() {
    let (a, _lu, faults) = ram_adapter(64);
    let disk = Disk::open(&a, LU).unwrap();
    let mut buf = vec![0u8; 1024];
    assert!(matches!(
        disk.read(63 * 512, &mut buf),
        Err(DiskError::OutOfRange {
            capacity: 32768,
            ..
        })
    ));
    assert!(matches!(
        disk.read(100, &mut buf),
        Err(DiskError::Unaligned {
            block_size: 512,
            ..
        })
    ));
    assert!(matches!(
        disk.write(0, &buf[..700]),
        Err(DiskError::Unaligned { .. })
    ));
    assert!(matches!(
        disk.write_zeroes(u64::MAX - 511, 512),
        Err(DiskError::OutOfRange { .. })
    ));
    let c = disk.execute(IoRequest::read(0, 4096, vec![0; 512]));
    assert!(matches!(
        c.result,
        Err(DiskError::BufferTooSmall {
            need: 4096,
            have: 512
        })
    ));
    assert_eq!(c.buffer.len(), 512, "the buffer comes back");
    // Nothing reached the device.
    assert!(faults.take_log().is_empty());
    // The last block is fine.
    disk.read(63 * 512, &mut buf[..512]).unwrap();
}

#[test]
fn transfers_split_by_maximum_transfer_length_and_physical_breaks() {
    // MaximumTransferLength 64 KiB, 8 physical breaks: pieces of 32 KiB (64 blocks).
    let (a, _lu, faults) = adapter(Arc::new(RamBackend::new(4096, 512).unwrap()), 64 << 10, 8);
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!(disk.limits().max_transfer_bytes, 32 << 10);
    let data = pattern(200 << 10, 7);
    disk.write(4096, &data).unwrap();
    let log = faults.take_log();
    assert_eq!(log.len(), 7, "200 KiB = 6 x 32 KiB + 8 KiB");
    let mut next = 8u64;
    for (i, cdb) in log.iter().enumerate() {
        assert_eq!(cdb[0], 0x2A, "WRITE(10)");
        let lba = u32::from_be_bytes(cdb[2..6].try_into().unwrap()) as u64;
        let blocks = u16::from_be_bytes(cdb[7..9].try_into().unwrap()) as u64;
        assert_eq!(lba, next, "piece {i} follows the previous one");
        assert_eq!(blocks, if i < 6 { 64 } else { 16 });
        next += blocks;
    }
    let mut back = vec![0u8; data.len()];
    disk.read(4096, &mut back).unwrap();
    assert!(back == data, "split read reassembles the split write");
    let log = faults.take_log();
    assert_eq!(log.len(), 7);
    assert!(log.iter().all(|c| c[0] == 0x28));
    // An unsplit request is one SRB.
    disk.read(0, &mut back[..32 << 10]).unwrap();
    assert_eq!(faults.take_log().len(), 1);
}

#[test]
fn ten_or_sixteen_byte_cdbs_at_the_2tib_boundary() {
    // 2^32 + 64 blocks of 512 bytes: a little over 2 TiB, sparse.
    let blocks = (1u64 << 32) + 64;
    let (a, _lu, faults) = ram_adapter(blocks);
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!(disk.num_blocks(), blocks);
    let below = (1u64 << 32) - 16;
    let data = pattern(32 * 512, 3);
    // Ends exactly at block 2^32 - 1: WRITE(10).
    disk.write(below * 512, &data[..16 * 512]).unwrap();
    // Crosses 2^32: WRITE(16).
    disk.write((below + 8) * 512, &data[16 * 512..]).unwrap();
    // The crossing write landed on both sides of the boundary (READ(16): it crosses too).
    let mut back = vec![0u8; 24 * 512];
    disk.read(below * 512, &mut back).unwrap();
    assert!(back[..8 * 512] == data[..8 * 512]);
    assert!(back[8 * 512..] == data[16 * 512..]);
    // Entirely above: WRITE(16), READ(16).
    disk.write((1u64 << 32) * 512, &data).unwrap();
    let mut back = vec![0u8; 32 * 512];
    disk.read((1u64 << 32) * 512, &mut back).unwrap();
    assert!(back == data, "data above 2 TiB reads back");
    // Entirely below: READ(10).
    disk.read((below - 8) * 512, &mut back[..8 * 512]).unwrap();
    let log = faults.take_log();
    let kinds: Vec<(u8, usize)> = log.iter().map(|c| (c[0], c.len())).collect();
    assert_eq!(
        kinds,
        [
            (0x2A, 10),
            (0x8A, 16),
            (0x88, 16),
            (0x8A, 16),
            (0x88, 16),
            (0x28, 10)
        ]
    );
    assert_eq!(&log[1][2..10], &(below + 8).to_be_bytes());
    assert_eq!(&log[0][2..6], &((below as u32).to_be_bytes()));
}

#[test]
fn busy_and_task_set_full_are_retried_with_exponential_backoff() {
    let (a, _lu, faults) = ram_adapter(256);
    let disk = Disk::open_with(&a, LU, options(2, 8)).unwrap();
    faults.push(Fault::SrbBusy);
    faults.push(Fault::ScsiStatus(0x28)); // TASK SET FULL
    faults.push(Fault::ScsiStatus(0x08)); // BUSY
    let mut q = disk.queue(1);
    let t0 = Instant::now();
    q.submit(IoRequest::write(0, vec![9u8; 512]), 1).unwrap();
    let c = q.wait_next(WAIT).expect("completion");
    let elapsed = t0.elapsed();
    c.result.unwrap();
    let s = q.stats();
    assert_eq!(s.retries, 3);
    assert_eq!(s.backoff, Duration::from_millis(2 + 4 + 8), "2, 4, 8 ms");
    assert!(elapsed >= s.backoff, "the backoff was waited: {elapsed:?}");
    // Each failure froze the LU queue (the port's busy retries are off) and was released.
    assert_eq!(s.queue_releases, 3);
    assert_eq!(s.srbs_sent, 4 + 3, "4 attempts and 3 RELEASE_QUEUE");
    let mut back = [0u8; 512];
    disk.read(0, &mut back).unwrap();
    assert_eq!(back, [9u8; 512]);
}

#[test]
fn busy_retries_are_bounded() {
    let (a, _lu, faults) = ram_adapter(256);
    let disk = Disk::open_with(&a, LU, options(1, 3)).unwrap();
    for _ in 0..10 {
        faults.push(Fault::SrbBusy);
    }
    let mut buf = [0u8; 512];
    assert_eq!(disk.read(0, &mut buf), Err(DiskError::Busy));
    assert_eq!(common::fired(&faults), 4, "first try + 3 retries");
    faults.clear();
    // The queue is not left frozen.
    disk.read(0, &mut buf).unwrap();
}

#[test]
fn unit_attention_is_retried_at_once() {
    let (a, _lu, faults) = ram_adapter(256);
    let disk = Disk::open_with(&a, LU, options(50, 8)).unwrap();
    disk.write(512, &[5u8; 512]).unwrap();
    faults.push(Fault::Check(6, 0x29, 0x00));
    let mut q = disk.queue(1);
    q.submit(IoRequest::read(512, 512, vec![0; 512]), 7)
        .unwrap();
    let c = q.wait_next(WAIT).unwrap();
    assert_eq!(c.token, 7);
    c.result.unwrap();
    assert_eq!(c.buffer, [5u8; 512]);
    let s = q.stats();
    assert_eq!(
        (s.retries, s.backoff, s.queue_releases),
        (1, Duration::ZERO, 1)
    );
}

#[test]
fn frozen_queue_is_released_after_the_sense_is_read() {
    let (a, _lu, faults) = ram_adapter(1024);
    let disk = Disk::open(&a, LU).unwrap();
    let data = pattern(8 * 512, 1);
    disk.write(0, &data).unwrap();
    // The first READ comes back CHECK CONDITION / UNIT ATTENTION with QUEUE_FROZEN; the other
    // seven wait in the frozen LU queue until the class driver releases it.
    faults.push(Fault::Check(6, 0x2A, 0x01)); // MODE PARAMETERS CHANGED
    let mut q = disk.queue(8);
    for i in 0..8u64 {
        q.submit(IoRequest::read(i * 512, 512, vec![0; 512]), i)
            .unwrap();
    }
    let mut seen = 0u64;
    while let Some(c) = q.wait_next(WAIT) {
        c.result.unwrap();
        let i = c.token as usize;
        assert_eq!(c.buffer, &data[i * 512..(i + 1) * 512]);
        seen |= 1 << c.token;
    }
    assert_eq!(seen, 0xFF, "all eight completed");
    assert_eq!(q.stats().queue_releases, 1);
    assert_eq!(q.stats().retries, 1);
}

#[test]
fn capacity_change_is_picked_up_after_the_unit_attention() {
    let backend = Arc::new(GrowingBackend {
        inner: RamBackend::new(4096, 512).unwrap(),
        blocks: AtomicU64::new(1024),
    });
    let (a, lu, _faults) = adapter(backend.clone(), 1 << 20, port::SP_UNINITIALIZED_VALUE);
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!(disk.num_blocks(), 1024);
    let beyond = 1500 * 512;
    assert!(matches!(
        disk.write(beyond, &[1u8; 512]),
        Err(DiskError::OutOfRange { .. })
    ));
    backend.blocks.store(2048, Ordering::Release);
    lu.notify_capacity_changed();
    // The next I/O meets CAPACITY DATA HAS CHANGED: the driver re-reads the capacity and
    // retries.
    let mut q = disk.queue(1);
    q.submit(IoRequest::read(0, 512, vec![0; 512]), 0).unwrap();
    q.wait_next(WAIT).unwrap().result.unwrap();
    assert_eq!(q.stats().capacity_refreshes, 1);
    assert_eq!(disk.num_blocks(), 2048);
    disk.write(beyond, &[1u8; 512]).unwrap();
    let mut back = [0u8; 512];
    disk.read(beyond, &mut back).unwrap();
    assert_eq!(back, [1u8; 512]);
}

#[test]
fn errors_are_typed() {
    let faulty = Arc::new(FaultyBackend::new(RamBackend::new(256, 512).unwrap()));
    let (a, _lu, faults) = adapter(faulty.clone(), 1 << 20, port::SP_UNINITIALIZED_VALUE);
    let disk = Disk::open_with(&a, LU, options(1, 2)).unwrap();
    let mut buf = [0u8; 512];
    faulty.inject(InjectedFault::READ_EIO);
    match disk.read(0, &mut buf) {
        Err(DiskError::Medium { sense }) => assert_eq!(sense.asc.asc, 0x11),
        other => panic!("expected a medium error, got {other:?}"),
    }
    faulty.clear();
    faulty.inject(InjectedFault::WRITE_ENOSPC);
    assert!(matches!(
        disk.write(0, &buf),
        Err(DiskError::WriteProtected { .. })
    ));
    faulty.clear();
    faults.push(Fault::ScsiStatus(0x18));
    assert_eq!(disk.read(0, &mut buf), Err(DiskError::ReservationConflict));
    faults.push(Fault::Check(2, 0x04, 0x03));
    assert!(matches!(
        disk.read(0, &mut buf),
        Err(DiskError::NotReady { .. })
    ));
    // NOT READY, BECOMING READY is retried.
    faults.push(Fault::Check(2, 0x04, 0x01));
    disk.read(0, &mut buf).unwrap();
    faults.push(Fault::Check(5, 0x24, 0x00));
    assert!(matches!(
        disk.read(0, &mut buf),
        Err(DiskError::IllegalRequest { .. })
    ));
    faults.push(Fault::SrbBusy);
    faults.push(Fault::SrbBusy);
    faults.push(Fault::SrbBusy);
    assert_eq!(disk.flush(), Err(DiskError::Busy));
    disk.flush().unwrap();
}

#[test]
fn write_zeroes_unmap_and_flush() {
    let (a, _lu, faults) = ram_adapter(4096);
    let disk = Disk::open(&a, LU).unwrap();
    let data = pattern(64 * 512, 9);
    disk.write(0, &data).unwrap();
    disk.write_zeroes(8 * 512, 8 * 512).unwrap();
    disk.unmap(32 * 512, 16 * 512).unwrap();
    disk.flush().unwrap();
    let ops: Vec<u8> = faults.take_log().iter().map(|c| c[0]).collect();
    assert_eq!(ops, [0x2A, 0x41, 0x42, 0x35]);
    let mut back = vec![0u8; data.len()];
    disk.read(0, &mut back).unwrap();
    let mut want = data.clone();
    want[8 * 512..16 * 512].fill(0);
    want[32 * 512..48 * 512].fill(0);
    assert!(back == want);
}

#[test]
fn blocking_calls_from_many_threads() {
    let (a, _lu, _faults) = ram_adapter(4096);
    let disk = Disk::open(&a, LU).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let disk = disk.clone();
            s.spawn(move || {
                for i in 0..50u64 {
                    let off = (t * 1000 + i * 8) * 512;
                    let data = pattern(4096, (t * 50 + i) as u8);
                    disk.write(off, &data).unwrap();
                    let mut back = vec![0u8; 4096];
                    disk.read(off, &mut back).unwrap();
                    assert!(back == data);
                }
            });
        }
    });
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `f` on this thread, parking between wake-ups.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "future never completed");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn async_requests_complete_through_the_waker() {
    let (a, _lu, faults) = ram_adapter(1024);
    let disk = Disk::open_with(&a, LU, options(5, 8)).unwrap();
    let data = pattern(4096, 4);
    // A BUSY on the write: the retry waits for its backoff timer to wake the task.
    faults.push(Fault::SrbBusy);
    let (res, _buf) = block_on(disk.write_async(8192, data.clone()));
    res.unwrap();
    let (res, back) = block_on(disk.read_async(8192, 4096, vec![0; 4096]));
    res.unwrap();
    assert!(back == data);
    // A deeper queue driven from async code.
    let mut q = disk.queue(4);
    for i in 0..4u64 {
        q.submit(IoRequest::read(i * 4096, 4096, vec![0; 4096]), i)
            .unwrap();
    }
    let mut n = 0;
    while let Some(c) = block_on(q.next_completion()) {
        c.result.unwrap();
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn a_plugged_queue_holds_its_requests_until_unplug_and_wait_next_unplugs() {
    let (a, _lu, _faults) = ram_adapter(256);
    let disk = Disk::open(&a, LU).unwrap();
    let data = pattern(8 * 512, 3);
    disk.write(0, &data).unwrap();
    let reads_before = a.statistics().reads;
    let mut q = disk.queue(8);
    q.plug();
    for i in 0..8u64 {
        q.submit(IoRequest::read(i * 512, 512, vec![0; 512]), i)
            .unwrap();
    }
    assert!(
        q.try_next().is_none(),
        "held requests are not sent by try_next"
    );
    assert_eq!(
        a.statistics().reads,
        reads_before,
        "nothing reached the port"
    );
    q.unplug();
    let mut seen = 0u64;
    while seen < 8 {
        let c = q.wait_next(WAIT).expect("completion");
        c.result.unwrap();
        let i = c.token as usize;
        assert_eq!(c.buffer[..], data[i * 512..(i + 1) * 512]);
        seen += 1;
    }
    assert_eq!(a.statistics().reads, reads_before + 8);
    // wait_next sends what is held before it waits.
    q.plug();
    q.submit(IoRequest::read(0, 512, vec![0; 512]), 9).unwrap();
    let c = q.wait_next(WAIT).expect("wait_next unplugs");
    assert_eq!((c.token, c.result.is_ok()), (9, true));
}
