//! The Storport model: unlocked concurrent build_io, push dispatch paced by queue depths,
//! adapter and device busy / pause, queue depth changes under load, BUSY retried without limit.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, LU0, LU1, T1, counter};
use port::testing::{
    Behaviour, FireOrder, ScriptConfig, ScriptedMiniport, scripted_srb, test_options,
};
use port::{DevicePowerState, PortEvent, PortOptions, SrbFlags, SrbStatus, WaitError};

fn luns() -> ScriptConfig {
    ScriptConfig {
        luns: vec![LU0, LU1, T1],
        ..ScriptConfig::default()
    }
}

fn luns_fd(full_duplex: bool) -> ScriptConfig {
    ScriptConfig {
        full_duplex,
        ..luns()
    }
}

/// Runs a Storport behaviour test under half duplex and under full duplex.
macro_rules! both_models {
    ($body:ident, $half:ident, $full:ident) => {
        #[test]
        fn $half() {
            $body(false);
        }
        #[test]
        fn $full() {
            $body(true);
        }
    };
}

both_models!(
    storport_pushes_requests_without_waiting_for_next_request,
    storport_pushes_requests_without_waiting_for_next_request_half_duplex,
    storport_pushes_requests_without_waiting_for_next_request_full_duplex
);

fn storport_pushes_requests_without_waiting_for_next_request(fd: bool) {
    let h = Harness::storport(ScriptConfig {
        hang_without_next_request: true,
        ..luns_fd(fd)
    });
    assert!(h.adapter.is_storport());
    assert_eq!(h.adapter.is_full_duplex(), fd);
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
    assert_eq!(
        counter(&h.script.counters.full_duplex_starts) > 0,
        fd,
        "start_io_full_duplex is used exactly when the miniport asked for full duplex"
    );
}

both_models!(
    the_device_queue_depth_limits_outstanding_requests_and_can_change_under_load,
    the_device_queue_depth_limits_outstanding_requests_and_can_change_under_load_half_duplex,
    the_device_queue_depth_limits_outstanding_requests_and_can_change_under_load_full_duplex
);

fn the_device_queue_depth_limits_outstanding_requests_and_can_change_under_load(fd: bool) {
    let h = Harness::storport(luns_fd(fd));
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

both_models!(
    adapter_busy_holds_new_requests_until_enough_complete,
    adapter_busy_holds_new_requests_until_enough_complete_half_duplex,
    adapter_busy_holds_new_requests_until_enough_complete_full_duplex
);

fn adapter_busy_holds_new_requests_until_enough_complete(fd: bool) {
    let h = Harness::storport(luns_fd(fd));
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

both_models!(
    pause_holds_every_request_until_its_timeout_or_resume,
    pause_holds_every_request_until_its_timeout_or_resume_half_duplex,
    pause_holds_every_request_until_its_timeout_or_resume_full_duplex
);

fn pause_holds_every_request_until_its_timeout_or_resume(fd: bool) {
    let h = Harness::storport(luns_fd(fd));
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

both_models!(
    device_busy_and_pause_device_hold_one_lu_only,
    device_busy_and_pause_device_hold_one_lu_only_half_duplex,
    device_busy_and_pause_device_hold_one_lu_only_full_duplex
);

fn device_busy_and_pause_device_hold_one_lu_only(fd: bool) {
    let h = Harness::storport(luns_fd(fd));
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

both_models!(
    storport_retries_busy_without_limit,
    storport_retries_busy_without_limit_half_duplex,
    storport_retries_busy_without_limit_full_duplex
);

fn storport_retries_busy_without_limit(fd: bool) {
    // test_options: busy_retry_limit = 3; Storport ignores it.
    let h = Harness::storport(luns_fd(fd));
    h.submit(LU0, Behaviour::Busy(8), 1);
    for _ in 0..7 {
        h.tick(1);
        h.assert_nothing_completes();
    }
    h.tick(1);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(h.adapter.statistics().busy, 8);
}

both_models!(
    build_io_can_complete_a_request_without_start_io,
    build_io_can_complete_a_request_without_start_io_half_duplex,
    build_io_can_complete_a_request_without_start_io_full_duplex
);

fn build_io_can_complete_a_request_without_start_io(fd: bool) {
    let h = Harness::storport(luns_fd(fd));
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

/// Waits (bounded) until `c` is non-zero.
fn wait_nonzero(c: &std::sync::atomic::AtomicU64) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if counter(c) > 0 {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

#[test]
fn full_duplex_start_io_runs_while_the_interrupt_routine_runs() {
    let h = Harness::storport(ScriptConfig {
        full_duplex: true,
        interrupt_rendezvous_us: 2_000_000,
        ..luns()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.assert_nothing_completes();
    // The "hardware" raises the interrupt on its own thread; the interrupt routine waits there
    // (under the interrupt lock) for a start_io to overlap with it.
    let script = h.script.clone();
    let hw = std::thread::spawn(move || script.fire(FireOrder::All));
    assert!(wait_nonzero(&h.script.counters.interrupt_running));
    h.submit(LU1, Behaviour::Inline, 2);
    hw.join().unwrap();
    let mut ids: Vec<u64> = h.wait(2).iter().map(|s| s.original_request).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    assert!(
        counter(&h.script.counters.start_io_during_interrupt) >= 1,
        "start_io (StartIo lock) overlapped the interrupt routine (interrupt lock)"
    );
    assert_eq!(counter(&h.script.counters.start_io_max_concurrent), 1);
}

#[test]
fn half_duplex_start_io_never_runs_while_the_interrupt_routine_runs() {
    let h = Harness::storport(ScriptConfig {
        interrupt_rendezvous_us: 50_000,
        ..luns()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.assert_nothing_completes();
    let script = h.script.clone();
    let hw = std::thread::spawn(move || script.fire(FireOrder::All));
    assert!(wait_nonzero(&h.script.counters.interrupts));
    h.submit(LU1, Behaviour::Inline, 2);
    hw.join().unwrap();
    assert_eq!(h.wait(2).len(), 2);
    assert_eq!(counter(&h.script.counters.start_io_during_interrupt), 0);
}

#[test]
fn full_duplex_start_io_calls_never_overlap_each_other() {
    let h = Arc::new(Harness::storport(ScriptConfig {
        full_duplex: true,
        start_io_rendezvous_us: 200,
        ..luns()
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hw = {
        let (script, stop) = (h.script.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                script.fire(FireOrder::All);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let b = if i % 3 == 0 {
                        Behaviour::Interrupt
                    } else {
                        Behaviour::Inline
                    };
                    let lu = [LU0, LU1, T1][(i % 3) as usize];
                    let mut srb = scripted_srb(lu, b, t * 1000 + i);
                    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
                    h.submitter.submit(srb);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = h.sink.wait_for(450, Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Release);
    hw.join().unwrap();
    assert_eq!(got, 450);
    let mut ids: Vec<u64> = h.sink.take().iter().map(|s| s.original_request).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 450, "each request exactly once");
    assert_eq!(
        counter(&h.script.counters.start_io_max_concurrent),
        1,
        "the StartIo lock serializes start_io"
    );
    assert!(counter(&h.script.counters.full_duplex_starts) >= 450);
}

fn adapter_queue_depth_limits_outstanding_requests(fd: bool) {
    let h = Harness::storport(ScriptConfig {
        number_of_requests: 4,
        ..luns_fd(fd)
    });
    for i in 0..9 {
        h.submit([LU0, LU1, T1][i % 3], Behaviour::Interrupt, i as u64);
    }
    h.assert_nothing_completes();
    let total = h.active(LU0) + h.active(LU1) + h.active(T1);
    assert_eq!(total, 4, "NumberOfRequests is the adapter's queue depth");
    let mut done = 0;
    for _ in 0..9 {
        if done == 9 {
            break;
        }
        h.script.fire(FireOrder::All);
        let n = h.sink.wait_for(1, Duration::from_secs(5));
        assert!(n >= 1);
        done += h.sink.take().len();
    }
    while done < 9 {
        h.script.fire(FireOrder::All);
        h.sink.wait_for(1, Duration::from_secs(5));
        done += h.sink.take().len();
    }
    assert_eq!(done, 9);
    assert!(counter(&h.script.counters.max_outstanding) <= 4);
}
both_models!(
    adapter_queue_depth_limits_outstanding_requests,
    adapter_queue_depth_limits_outstanding_requests_half_duplex,
    adapter_queue_depth_limits_outstanding_requests_full_duplex
);

fn bus_reset_hold_time_is_in_microseconds(fd: bool) {
    // 2.5 s with a 1 s tick: the port holds requests for 3 ticks after ResetDetected.
    let h = Harness::build(
        ScriptConfig {
            bus_reset_hold_time: 2_500_000,
            ..luns_fd(fd)
        },
        PortOptions {
            tick: None,
            reset_hold_off_ticks: 10,
            ..test_options()
        },
        true,
    );
    h.submit(LU0, Behaviour::ResetDetected, 1);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert!(h.events.wait_for(|e| *e == PortEvent::ResetDetected));
    h.submit(LU1, Behaviour::Inline, 2);
    h.assert_nothing_completes();
    h.tick(2);
    h.assert_nothing_completes();
    h.tick(1);
    assert_eq!(h.wait(1)[0].original_request, 2);
    // 0: no hold at all.
    let h = Harness::build(
        ScriptConfig {
            bus_reset_hold_time: 0,
            ..luns_fd(fd)
        },
        test_options(),
        true,
    );
    h.submit(LU0, Behaviour::ResetDetected, 1);
    h.submit(LU1, Behaviour::Inline, 2);
    assert_eq!(h.wait(2).len(), 2);
}
both_models!(
    bus_reset_hold_time_is_in_microseconds,
    bus_reset_hold_time_is_in_microseconds_half_duplex,
    bus_reset_hold_time_is_in_microseconds_full_duplex
);

fn notifications_from_start_io_reach_the_port(fd: bool) {
    let h = Harness::storport(ScriptConfig {
        wmi: true,
        ..luns_fd(fd)
    });
    h.submit(LU0, Behaviour::WmiEvent, 1);
    h.submit(LU0, Behaviour::BusChange, 2);
    assert_eq!(h.wait(2).len(), 2);
    assert!(h.events.wait_for(|e| matches!(e, PortEvent::Wmi(_))));
    assert!(
        h.events
            .wait_for(|e| matches!(e, PortEvent::BusChangeDetected { path_id: 0 }))
    );
    // ResetDetected: the miniport completes what it holds with BUS_RESET.
    h.submit(LU1, Behaviour::Interrupt, 3);
    h.assert_nothing_completes();
    h.submit(LU0, Behaviour::ResetDetected, 4);
    let done = h.wait(2);
    assert!(
        done.iter()
            .any(|s| s.original_request == 3 && s.srb_status.status() == SrbStatus::BUS_RESET)
    );
    assert!(h.events.wait_for(|e| *e == PortEvent::ResetDetected));
}
both_models!(
    notifications_from_start_io_reach_the_port,
    notifications_from_start_io_reach_the_port_half_duplex,
    notifications_from_start_io_reach_the_port_full_duplex
);

fn unit_control_and_extended_adapter_control(fd: bool) {
    let h = Harness::build(
        ScriptConfig {
            storport_controls: true,
            ..luns_fd(fd)
        },
        test_options(),
        true,
    );
    let c = &h.script.counters;
    assert_eq!(counter(&c.post_hw_initialize), 1);
    assert!(counter(&c.prepare_rescans) >= 1, "before the first scan");
    assert_eq!(counter(&c.unit_starts), 3, "ScsiUnitStart per LU found");
    // ScsiUnitPower D3 holds the LU's requests; D0 starts them.
    assert_eq!(
        h.adapter.unit_power(LU0, DevicePowerState::D3),
        Ok(port::UnitControlStatus::Success)
    );
    h.submit(LU0, Behaviour::Inline, 1);
    h.submit(LU1, Behaviour::Inline, 2);
    assert_eq!(h.wait(1)[0].original_request, 2);
    h.tick(3);
    h.assert_nothing_completes();
    h.adapter.unit_power(LU0, DevicePowerState::D0).unwrap();
    assert_eq!(h.wait(1)[0].original_request, 1);
    // ScsiAdapterPower D3 holds everything.
    h.adapter.adapter_power(DevicePowerState::D3).unwrap();
    h.submit(T1, Behaviour::Inline, 3);
    h.assert_nothing_completes();
    h.adapter.adapter_power(DevicePowerState::D0).unwrap();
    assert_eq!(h.wait(1)[0].original_request, 3);
    assert_eq!(counter(&c.unit_power), 2);
    assert_eq!(counter(&c.adapter_power), 2);
    // A rescan that no longer finds T1: ScsiUnitSurpriseRemoval.
    h.script.set_luns(vec![LU0, LU1]);
    let before = counter(&c.prepare_rescans);
    h.adapter.rescan();
    assert_eq!(counter(&c.prepare_rescans), before + 1);
    assert_eq!(counter(&c.unit_removals), 1);
}
both_models!(
    unit_control_and_extended_adapter_control,
    unit_control_and_extended_adapter_control_half_duplex,
    unit_control_and_extended_adapter_control_full_duplex
);

#[test]
fn unit_control_is_unsupported_without_the_miniport_or_the_model() {
    let h = Harness::storport(luns());
    assert_eq!(
        h.adapter.unit_power(LU0, DevicePowerState::D3),
        Err(WaitError::Unsupported)
    );
    assert_eq!(
        h.adapter.adapter_power(DevicePowerState::D3),
        Err(WaitError::Unsupported)
    );
    assert_eq!(counter(&h.script.counters.unit_starts), 0);
    let scsiport = Harness::new(ScriptConfig {
        storport_controls: true,
        ..luns()
    });
    assert_eq!(
        scsiport.adapter.unit_power(LU0, DevicePowerState::D3),
        Err(WaitError::Unsupported)
    );
}

#[test]
fn the_pause_timeout_is_in_seconds_whatever_the_tick() {
    // A 20 ms tick: StorPortPause(1) is 50 ticks, not 1.
    let h = Harness::build(
        luns(),
        PortOptions {
            tick: Some(Duration::from_millis(20)),
            ..test_options()
        },
        true,
    );
    h.with_port(|p| p.pause(1));
    let paused_at = Instant::now();
    h.submit(LU0, Behaviour::Inline, 1);
    std::thread::sleep(Duration::from_millis(300));
    if paused_at.elapsed() < Duration::from_millis(900) {
        assert!(h.sink.is_empty(), "still paused after 15 ticks");
    }
    assert_eq!(h.wait(1)[0].original_request, 1, "resumed by the timeout");
}
