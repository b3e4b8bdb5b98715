//! The Storport model: unlocked concurrent build_io, push dispatch paced by queue depths,
//! adapter and device busy / pause, queue depth changes under load, BUSY retried without limit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, LU0, LU1, T1, counter};
use port::testing::{Behaviour, FireOrder, ScriptConfig, ScriptedMiniport, scripted_srb};
use port::{SrbFlags, SrbStatus};

fn luns() -> ScriptConfig {
    ScriptConfig {
        luns: vec![LU0, LU1, T1],
        ..ScriptConfig::default()
    }
}

#[test]
fn storport_pushes_requests_without_waiting_for_next_request() {
    let h = Harness::storport(ScriptConfig {
        hang_without_next_request: true,
        ..luns()
    });
    assert!(h.adapter.is_storport());
    for i in 0..6 {
        h.submit(LU0, Behaviour::Never, i);
    }
    h.submit(T1, Behaviour::Inline, 10);
    assert_eq!(h.wait(1)[0].original_request, 10);
    assert_eq!(
        h.active(LU0),
        6,
        "many outstanding per LU, no NextRequest needed"
    );
}

#[test]
fn the_device_queue_depth_limits_outstanding_requests_and_can_change_under_load() {
    let h = Harness::storport(luns());
    h.with_port(|p| p.set_device_queue_depth(LU0, 2));
    for i in 0..10 {
        h.submit(LU0, Behaviour::Interrupt, i);
    }
    h.assert_nothing_completes();
    assert_eq!(h.active(LU0), 2);
    h.with_port(|p| p.set_device_queue_depth(LU0, 5));
    assert_eq!(h.active(LU0), 5, "a deeper queue is filled at once");
    h.script.fire(FireOrder::Oldest(2));
    assert_eq!(h.wait(2).len(), 2);
    assert_eq!(h.active(LU0), 5);
    h.with_port(|p| p.set_device_queue_depth(LU0, 1));
    h.script.fire(FireOrder::All);
    let done = h.wait(5);
    assert_eq!(done.len(), 5);
    assert_eq!(h.active(LU0), 1, "the shallower depth holds from now on");
    for _ in 0..3 {
        h.script.fire(FireOrder::All);
        h.wait(1);
    }
}

#[test]
fn adapter_busy_holds_new_requests_until_enough_complete() {
    let h = Harness::storport(luns());
    for i in 0..3 {
        h.submit(LU0, Behaviour::Interrupt, i);
    }
    h.assert_nothing_completes();
    h.with_port(|p| p.busy(2));
    h.submit(LU1, Behaviour::Inline, 10);
    h.assert_nothing_completes();
    h.script.fire(FireOrder::Oldest(1));
    assert_eq!(h.wait(1)[0].original_request, 0);
    h.script.fire(FireOrder::Oldest(1));
    let done = h.wait(2);
    assert_eq!(done[0].original_request, 1);
    assert_eq!(
        done[1].original_request, 10,
        "released after two completions"
    );
    // Ready cancels busy at once.
    h.with_port(|p| p.busy(1));
    h.submit(LU1, Behaviour::Inline, 11);
    h.assert_nothing_completes();
    h.with_port(|p| p.ready());
    assert_eq!(h.wait(1)[0].original_request, 11);
    h.script.fire(FireOrder::All);
    h.wait(1);
}

#[test]
fn pause_holds_every_request_until_its_timeout_or_resume() {
    let h = Harness::storport(luns());
    h.with_port(|p| p.pause(2));
    h.submit(LU0, Behaviour::Inline, 1);
    h.assert_nothing_completes();
    h.tick(1);
    h.assert_nothing_completes();
    h.tick(1);
    assert_eq!(h.wait(1)[0].original_request, 1);
    h.with_port(|p| p.pause(100));
    h.submit(T1, Behaviour::Inline, 2);
    h.assert_nothing_completes();
    h.with_port(|p| p.resume());
    assert_eq!(h.wait(1)[0].original_request, 2);
}

#[test]
fn device_busy_and_pause_device_hold_one_lu_only() {
    let h = Harness::storport(luns());
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.assert_nothing_completes();
    h.with_port(|p| p.device_busy(LU0, 1));
    h.submit(LU0, Behaviour::Inline, 2);
    h.submit(LU1, Behaviour::Inline, 3);
    assert_eq!(h.wait(1)[0].original_request, 3, "other LUs keep going");
    h.script.fire(FireOrder::All);
    let ids: Vec<u64> = h.wait(2).iter().map(|s| s.original_request).collect();
    assert_eq!(ids, vec![1, 2]);
    h.with_port(|p| p.pause_device(LU1, 3));
    h.submit(LU1, Behaviour::Inline, 4);
    h.submit(LU0, Behaviour::Inline, 5);
    assert_eq!(h.wait(1)[0].original_request, 5);
    h.tick(2);
    h.assert_nothing_completes();
    h.with_port(|p| p.resume_device(LU1));
    assert_eq!(h.wait(1)[0].original_request, 4);
    // DeviceReady cancels DeviceBusy before the outstanding request completes.
    h.submit(LU1, Behaviour::Interrupt, 7);
    h.assert_nothing_completes();
    h.with_port(|p| p.device_busy(LU1, 5));
    h.submit(LU1, Behaviour::Inline, 6);
    h.assert_nothing_completes();
    h.with_port(|p| p.device_ready(LU1));
    assert_eq!(h.wait(1)[0].original_request, 6);
    h.script.fire(FireOrder::All);
    assert_eq!(h.wait(1)[0].original_request, 7);
}

#[test]
fn storport_retries_busy_without_limit() {
    // test_options: busy_retry_limit = 3; Storport ignores it.
    let h = Harness::storport(luns());
    h.submit(LU0, Behaviour::Busy(8), 1);
    for _ in 0..7 {
        h.tick(1);
        h.assert_nothing_completes();
    }
    h.tick(1);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(h.adapter.statistics().busy, 8);
}

#[test]
fn build_io_can_complete_a_request_without_start_io() {
    let h = Harness::storport(luns());
    h.submit(LU0, Behaviour::RejectInBuildIo, 1);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status, SrbStatus::INVALID_REQUEST);
    assert_eq!(h.starts(), 0);
    assert!(counter(&h.script.counters.build_io) >= 1);
}

#[test]
fn build_io_runs_without_the_interrupt_lock() {
    let h = Harness::storport(luns());
    let before = counter(&h.script.counters.build_io);
    let submitter = h.submitter.clone();
    let script = h.script.clone();
    let ran_while_locked = h
        .adapter
        .synchronize::<ScriptedMiniport, _>(move |_, _| {
            // The interrupt lock is held here; another thread submits.
            let t = std::thread::spawn(move || {
                submitter.submit(scripted_srb(LU0, Behaviour::Inline, 1))
            });
            let mut ok = false;
            for _ in 0..2000 {
                if counter(&script.counters.build_io) > before {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            (ok, t)
        })
        .unwrap();
    let (ok, t) = ran_while_locked;
    assert!(
        ok,
        "build_io ran while another thread held the interrupt lock"
    );
    t.join().unwrap();
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
}

#[test]
fn build_io_runs_concurrently_on_several_submitting_threads() {
    let h = Arc::new(Harness::storport(ScriptConfig {
        build_io_rendezvous_us: 20_000,
        ..luns()
    }));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let mut srb = scripted_srb(
                        if t == 0 { LU0 } else { LU1 },
                        Behaviour::Inline,
                        t * 100 + i,
                    );
                    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
                    h.submitter.submit(srb);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.wait(40).len(), 40);
    assert!(counter(&h.script.counters.build_io_max_concurrent) >= 2);
}
