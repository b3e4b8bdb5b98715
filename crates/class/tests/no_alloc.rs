//! The class driver's steady state allocates nothing: after a warm-up, reads and writes through
//! a `DiskQueue` — unsplit ones with the caller's buffer in the SRB, and split ones through the
//! queue's recycled bounce buffers — make no heap allocation on the submitting thread (the ram
//! miniport completes inside `start_io`, so the whole path runs on it).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use class::{Disk, IoRequest};
use device::backend::RamBackend;
use device::{LogicalUnit, LuConfig};
use port::{Address, PortOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the only addition is a thread-local counter that never allocates (const-initialized Cell).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_state_reads_and_writes_do_not_allocate() {
    let lu = Arc::new(LogicalUnit::new(
        LuConfig::default(),
        Arc::new(RamBackend::new(4096, 512).unwrap()),
    ));
    let address = Address::new(0, 0, 0);
    let mut hw = miniports::ram::single_adapter(vec![(address, lu)]);
    // Pieces of 64 KiB: the 256 KiB requests below are split in four.
    hw.maximum_transfer_length = 64 << 10;
    let options = PortOptions {
        tick: None,
        ..PortOptions::default()
    };
    let adapter = port::initialize::<miniports::ram::RamMiniport>(hw, options)
        .unwrap()
        .remove(0);
    let disk = Disk::open(&adapter, address).unwrap();
    assert!(disk.limits().max_transfer_bytes <= 64 << 10);
    const DEPTH: u32 = 4;
    let mut q = disk.queue(DEPTH);
    let mut buffers: Vec<Vec<u8>> = (0..DEPTH).map(|_| vec![0u8; 256 << 10]).collect();
    let round = |q: &mut class::DiskQueue, buffers: &mut Vec<Vec<u8>>, i: u64| {
        for d in 0..u64::from(DEPTH) {
            let mut buf = buffers.pop().unwrap();
            let n = (i * 7 + d) % 64;
            // Alternate small (unsplit) and large (split) requests, reads and writes.
            let len = if (i + d).is_multiple_of(3) {
                256 << 10
            } else {
                4096
            };
            let off = (n * 8 * 512) % (1 << 20);
            let req = if (i + d).is_multiple_of(2) {
                buf.truncate(len);
                IoRequest::write(off, buf)
            } else {
                IoRequest::read(off, len as u64, buf)
            };
            q.submit(req, d).unwrap();
        }
        for _ in 0..DEPTH {
            let mut c = q.wait_next(Duration::from_secs(5)).unwrap();
            c.result.unwrap();
            // Give truncated write buffers their length back (capacity is kept).
            c.buffer.resize(256 << 10, 0);
            buffers.push(c.buffer);
        }
    };
    for i in 0..500 {
        round(&mut q, &mut buffers, i);
    }
    // The counter counts.
    let probe = allocations();
    drop(std::hint::black_box(vec![1u8; 16]));
    assert!(allocations() > probe);
    let before = allocations();
    for i in 0..2000 {
        round(&mut q, &mut buffers, i);
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "allocations in 8000 steady-state requests"
    );
    assert!(q.stats().srbs_sent > 8000);
}
