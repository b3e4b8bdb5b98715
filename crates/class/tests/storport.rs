//! The class driver over an adapter running the Storport model: splitting, unit attention
//! with frozen-queue release, a capacity change and a deep queue behave as under SCSI Port.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use class::{Disk, IoRequest};
use common::{Fault, GrowingBackend, LU, adapter_model, pattern};
use device::backend::RamBackend;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn split_transfers_and_unit_attention_under_storport() {
    let (a, _lu, faults) = adapter_model(
        Arc::new(RamBackend::new(4096, 512).unwrap()),
        64 << 10,
        8,
        true,
    );
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!(disk.limits().max_transfer_bytes, 32 << 10);
    let data = pattern(100 << 10, 5);
    disk.write(0, &data).unwrap();
    assert_eq!(faults.take_log().len(), 4, "100 KiB in pieces of 32 KiB");
    // A unit attention on the first of eight queued reads: released and retried.
    faults.push(Fault::Check(6, 0x29, 0x00));
    let mut q = disk.queue(8);
    for i in 0..8u64 {
        q.submit(IoRequest::read(i * 4096, 4096, vec![0; 4096]), i)
            .unwrap();
    }
    let mut seen = 0u32;
    while let Some(c) = q.wait_next(WAIT) {
        c.result.unwrap();
        let i = c.token as usize;
        assert!(c.buffer == data[i * 4096..(i + 1) * 4096]);
        seen += 1;
    }
    assert_eq!(seen, 8);
    let s = q.stats();
    assert_eq!((s.retries, s.queue_releases), (1, 1));
}

#[test]
fn capacity_change_under_storport() {
    let backend = Arc::new(GrowingBackend {
        inner: RamBackend::new(2048, 512).unwrap(),
        blocks: AtomicU64::new(512),
    });
    let (a, lu, _faults) =
        adapter_model(backend.clone(), 1 << 20, port::SP_UNINITIALIZED_VALUE, true);
    let disk = Disk::open(&a, LU).unwrap();
    assert_eq!(disk.num_blocks(), 512);
    backend.blocks.store(2048, Ordering::Release);
    lu.notify_capacity_changed();
    let mut buf = [0u8; 512];
    disk.read(0, &mut buf).unwrap();
    assert_eq!(disk.num_blocks(), 2048);
    disk.write(2047 * 512, &[3u8; 512]).unwrap();
}
