//! Queue-depth gauges and latency histograms in the port's statistics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use port::testing::{
    Behaviour, CollectingSink, FireOrder, Script, ScriptConfig, ScriptedMiniport, scripted_srb,
    test_options,
};
use port::{Address, Srb, SrbFunction, SrbStatus, Statistics};

const LU0: Address = Address::new(0, 0, 0);
const N: u64 = 8;

fn adapter() -> (Arc<Script>, port::Adapter) {
    let script = Script::new(ScriptConfig::default());
    let mut adapters =
        port::initialize::<ScriptedMiniport>(script.clone(), test_options()).expect("adapter");
    (script, adapters.remove(0))
}

fn lu0(adapter: &port::Adapter) -> Statistics {
    adapter.lu_statistics(LU0).expect("LU0 has statistics")
}

/// Polls (bounded) until `cond` holds on the adapter; returns whether it did.
fn eventually(adapter: &port::Adapter, cond: impl Fn(&port::Adapter) -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if cond(adapter) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond(adapter)
}

#[test]
fn held_requests_are_outstanding_and_every_completion_is_timed_once() {
    let (script, adapter) = adapter();
    let sink = CollectingSink::new();
    let submitter = adapter.submitter(sink.clone());
    let lu_before = lu0(&adapter);
    let before = adapter.statistics();
    assert_eq!(lu_before.outstanding, 0);
    assert_eq!(before.outstanding, 0);

    for i in 0..N {
        submitter.submit(scripted_srb(LU0, Behaviour::Interrupt, i));
    }
    // The miniport holds them until the interrupt: all N are submitted and not completed.
    assert!(
        eventually(&adapter, |a| lu0(a).outstanding == N),
        "LU outstanding {} (want {N})",
        lu0(&adapter).outstanding
    );
    assert_eq!(adapter.statistics().outstanding, N);
    assert_eq!(sink.len(), 0);
    assert_eq!(lu0(&adapter).latency.count, lu_before.latency.count);

    let end = Instant::now() + Duration::from_secs(10);
    while (sink.len() as u64) < N && Instant::now() < end {
        script.fire(FireOrder::All);
        sink.wait_for(N as usize, Duration::from_millis(5));
    }
    let done = sink.take();
    assert_eq!(done.len() as u64, N);
    assert!(done.iter().all(|s| s.srb_status == SrbStatus::SUCCESS));

    let lu = lu0(&adapter);
    let all = adapter.statistics();
    assert_eq!(lu.outstanding, 0);
    assert_eq!(all.outstanding, 0);
    let timed = lu.latency.since(&lu_before.latency);
    assert_eq!(timed.count, N);
    assert_eq!(timed.buckets.iter().sum::<u64>(), N);
    assert_eq!(lu.latency.count - lu_before.latency.count, N);
    assert_eq!(lu.commands - lu_before.commands, N);
    assert_eq!(all.latency.count - before.latency.count, N);
    assert_eq!(lu.latency.count, lu.commands, "every command is timed");
    assert!(timed.percentile_us(99.0) >= timed.percentile_us(50.0));
    adapter.shutdown().unwrap();
}

#[test]
fn requests_the_port_completes_itself_leave_the_gauges() {
    let (_script, adapter) = adapter();
    let sink = CollectingSink::new();
    let submitter = adapter.submitter(sink.clone());
    let before = adapter.statistics();
    // Completed by the port without an LU (invalid target), by the port for an LU (a queue
    // function), and one refused by the miniport's build_io.
    submitter.submit(scripted_srb(Address::new(0, 200, 0), Behaviour::Inline, 1));
    submitter.submit(Srb::function(SrbFunction::ReleaseQueue, LU0));
    submitter.submit(scripted_srb(LU0, Behaviour::Inline, 3));
    // Last: the refusal freezes the LU's queue.
    submitter.submit(scripted_srb(LU0, Behaviour::RejectInBuildIo, 4));
    assert_eq!(sink.wait_for(4, Duration::from_secs(5)), 4);
    let after = adapter.statistics();
    assert_eq!(after.outstanding, 0);
    assert_eq!(lu0(&adapter).outstanding, 0);
    // The two EXECUTE_SCSI requests that reached the port's completion are timed like
    // they are counted.
    assert_eq!(
        after.latency.count - before.latency.count,
        after.commands - before.commands
    );
    assert!(after.latency.count > before.latency.count);
    adapter.shutdown().unwrap();
}
