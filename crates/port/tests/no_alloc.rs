//! The steady-state path submit -> start_io -> complete -> sink allocates nothing.
//!
//! A counting global allocator counts allocations made by *this* thread (the whole path runs on
//! the submitting thread when the miniport completes inline). After a warm-up that lets every
//! queue, buffer and table reach its working size, thousands of requests must not allocate.
#![allow(unsafe_code)]
// The boxed path keeps lists of boxes on purpose (see `steady_state_with_boxed_srbs_...`).
#![allow(clippy::vec_box)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use parking_lot::Mutex;
use port::testing::{Behaviour, Script, ScriptConfig, ScriptedMiniport, test_options};
use port::{Address, CompletionSink, DataDirection, Srb, SrbFlags, SrbStatus};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-local may be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the only addition is a thread-local counter that itself never allocates (const-initialized
// `Cell<u64>`).
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

/// Keeps completed requests for reuse; its Vec never grows past its initial capacity.
struct ReuseSink {
    done: Mutex<Vec<Srb>>,
}

impl CompletionSink for ReuseSink {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(srb);
    }
}

/// `rounds` times: submits every request of `pool` (`T` is an `Srb` or a box of one), then
/// takes all eight back from the sink — they completed inline, on this thread — successful.
fn circulate<T>(
    rounds: usize,
    pool: &mut Vec<T>,
    done: &Mutex<Vec<T>>,
    srb_of: impl Fn(&mut T) -> &mut Srb,
    submit: impl Fn(T),
) {
    for _ in 0..rounds {
        for mut srb in pool.drain(..) {
            let s = srb_of(&mut srb);
            s.recycle();
            s.data_transfer_length = 4096;
            submit(srb);
        }
        let mut done = done.lock();
        assert_eq!(done.len(), 8, "inline completion on the submitting thread");
        for mut srb in done.drain(..) {
            assert_eq!(srb_of(&mut srb).srb_status, SrbStatus::SUCCESS);
            pool.push(srb);
        }
    }
}

fn run(config: ScriptConfig, tagged: bool) {
    run_model(config, tagged, false)
}

fn run_model(config: ScriptConfig, tagged: bool, storport: bool) {
    let script = Script::new(config);
    let adapter = if storport {
        port::initialize_storport::<ScriptedMiniport>(script, test_options())
    } else {
        port::initialize::<ScriptedMiniport>(script, test_options())
    }
    .unwrap()
    .remove(0);
    assert_eq!(adapter.is_storport(), storport);
    let sink = Arc::new(ReuseSink {
        done: Mutex::new(Vec::with_capacity(64)),
    });
    let submitter = adapter.submitter(sink.clone());
    let lus = [Address::new(0, 0, 0), Address::new(0, 1, 0)];
    // Eight requests in circulation, each with its own 4 KiB buffer, reused forever.
    let mut pool: Vec<Srb> = (0..8)
        .map(|i| {
            let mut srb = Srb::execute_scsi(lus[i % 2], &Behaviour::Inline.cdb())
                .unwrap()
                .with_data(vec![0; 4096], 4096, DataDirection::In);
            if tagged {
                srb.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
            }
            srb
        })
        .collect();
    let cycle = |rounds: usize, pool: &mut Vec<Srb>| {
        circulate(rounds, pool, &sink.done, |s| s, |s| submitter.submit(s))
    };
    cycle(200, &mut pool); // warm-up
    let probe = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert_eq!(allocations(), probe + 1, "the counting allocator counts");
    let before = allocations();
    cycle(2_000, &mut pool); // 16,000 requests
    let after = allocations();
    assert_eq!(after - before, 0, "allocations on the steady-state path");
    adapter.shutdown().unwrap();
}

#[test]
fn steady_state_submit_start_io_complete_allocates_nothing() {
    run(
        ScriptConfig {
            luns: vec![Address::new(0, 0, 0), Address::new(0, 1, 0)],
            ..ScriptConfig::default()
        },
        false,
    );
}

#[test]
fn steady_state_on_a_tagged_adapter_allocates_nothing() {
    run(
        ScriptConfig {
            luns: vec![Address::new(0, 0, 0), Address::new(0, 1, 0)],
            tagged_queuing: true,
            multiple_request_per_lu: true,
            next_lu_request: true,
            ..ScriptConfig::default()
        },
        true,
    );
}

#[test]
fn steady_state_under_storport_half_duplex_allocates_nothing() {
    run_model(
        ScriptConfig {
            luns: vec![Address::new(0, 0, 0), Address::new(0, 1, 0)],
            ..ScriptConfig::default()
        },
        false,
        true,
    );
}

#[test]
fn steady_state_under_storport_full_duplex_allocates_nothing() {
    run_model(
        ScriptConfig {
            luns: vec![Address::new(0, 0, 0), Address::new(0, 1, 0)],
            full_duplex: true,
            ..ScriptConfig::default()
        },
        false,
        true,
    );
}

/// A sink that keeps the boxes the port hands back (`complete_boxed`), as the class driver does.
struct BoxSink {
    done: Mutex<Vec<Box<Srb>>>,
}

impl CompletionSink for BoxSink {
    fn complete(&self, srb: Srb) {
        self.done.lock().push(Box::new(srb));
    }
    fn complete_boxed(&self, srb: Box<Srb>) -> Option<Box<Srb>> {
        self.done.lock().push(srb);
        None
    }
}

/// The boxed path (`submit_boxed` -> `complete_boxed`): the submitter's boxes go round and come
/// back to it; nothing is allocated and the same eight boxes are in circulation throughout.
#[test]
fn steady_state_with_boxed_srbs_allocates_nothing_and_returns_the_same_boxes() {
    let script = Script::new(ScriptConfig {
        luns: vec![Address::new(0, 0, 0), Address::new(0, 1, 0)],
        full_duplex: true,
        ..ScriptConfig::default()
    });
    let adapter = port::initialize_storport::<ScriptedMiniport>(script, test_options())
        .unwrap()
        .remove(0);
    let sink = Arc::new(BoxSink {
        done: Mutex::new(Vec::with_capacity(64)),
    });
    let submitter = adapter.submitter(sink.clone());
    let lus = [Address::new(0, 0, 0), Address::new(0, 1, 0)];
    let mut pool: Vec<Box<Srb>> = (0..8)
        .map(|i| {
            Box::new(
                Srb::execute_scsi(lus[i % 2], &Behaviour::Inline.cdb())
                    .unwrap()
                    .with_data(vec![0; 4096], 4096, DataDirection::In),
            )
        })
        .collect();
    let mut addresses: Vec<usize> = pool.iter().map(|b| &**b as *const Srb as usize).collect();
    addresses.sort_unstable();
    let cycle = |rounds: usize, pool: &mut Vec<Box<Srb>>| {
        circulate(
            rounds,
            pool,
            &sink.done,
            |b| &mut **b,
            |b| submitter.submit_boxed(b),
        )
    };
    cycle(200, &mut pool); // warm-up
    let before = allocations();
    cycle(2_000, &mut pool); // 16,000 requests
    let after = allocations();
    assert_eq!(after - before, 0, "allocations on the steady-state path");
    let mut now: Vec<usize> = pool.iter().map(|b| &**b as *const Srb as usize).collect();
    now.sort_unstable();
    assert_eq!(now, addresses, "the submitter's own boxes came back");
    adapter.shutdown().unwrap();
}
