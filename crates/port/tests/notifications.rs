//! Each ScsiPortNotification type and the other miniport services, against the scripted
//! miniport.

mod common;

use std::time::Duration;

use common::{Harness, LU0, LU1, T1, counter};
use port::testing::{Behaviour, FireOrder, SCRIPT_WMI_GUID, ScriptConfig, ScriptedMiniport};
use port::{AddressFilter, ErrorCode, PortEvent, SP_UNTAGGED, SrbStatus};

#[test]
fn request_complete_from_the_interrupt_routine_completes_held_requests() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.assert_nothing_completes();
    h.script.fire(FireOrder::All);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(counter(&h.script.counters.interrupts), 1);
}

#[test]
fn out_of_order_completions_are_each_delivered_once() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, LU1, T1],
        ..ScriptConfig::default()
    });
    // Three LUs, one request each, so the untagged adapter holds all three at once.
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(LU1, Behaviour::Interrupt, 2);
    h.submit(T1, Behaviour::Interrupt, 3);
    h.assert_nothing_completes();
    h.script.fire(FireOrder::Reversed);
    let done = h.wait(3);
    let order: Vec<u64> = done.iter().map(|s| s.original_request).collect();
    assert_eq!(order, vec![3, 2, 1]);
    assert!(done.iter().all(|s| s.srb_status == SrbStatus::SUCCESS));
}

#[test]
fn next_request_is_required_before_the_next_start_io() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, T1],
        hang_without_next_request: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Never, 1);
    h.submit(T1, Behaviour::Inline, 2);
    h.assert_nothing_completes();
    assert_eq!(h.starts(), 1, "no start_io before NextRequest");
    // The adapter timer (TimeOutValue 10 ticks) resets the bus; the reset completes the held
    // request and the miniport asks for the next one.
    h.tick(10);
    let done = h.wait(1);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    h.tick(1); // reset hold-off
    let done = h.wait(1);
    assert_eq!(Harness::by_id(&done, 2).srb_status, SrbStatus::SUCCESS);
    assert_eq!(counter(&h.script.counters.bus_resets), 1);
}

#[test]
fn next_lu_request_lets_a_tagged_adapter_hold_several_requests_per_lu() {
    let h = Harness::new(ScriptConfig {
        tagged_queuing: true,
        multiple_request_per_lu: true,
        next_lu_request: true,
        ..ScriptConfig::default()
    });
    for i in 0..5 {
        let mut srb = port::testing::scripted_srb(LU0, Behaviour::Interrupt, i);
        srb.flags.insert(port::SrbFlags::QUEUE_ACTION_ENABLE);
        h.submit_srb(srb);
    }
    h.assert_nothing_completes();
    assert_eq!(counter(&h.script.counters.max_outstanding_per_lu), 5);
    h.script.fire(FireOrder::All);
    let done = h.wait(5);
    assert!(done.iter().all(|s| s.queue_tag != SP_UNTAGGED));
}

#[test]
fn next_request_alone_keeps_one_request_per_lu() {
    let h = Harness::new(ScriptConfig {
        tagged_queuing: true,
        multiple_request_per_lu: true,
        next_lu_request: false,
        ..ScriptConfig::default()
    });
    for i in 0..3 {
        h.submit(LU0, Behaviour::Interrupt, i);
    }
    h.assert_nothing_completes();
    assert_eq!(counter(&h.script.counters.max_outstanding_per_lu), 1);
    for _ in 0..3 {
        h.script.fire(FireOrder::All);
        h.wait(1);
    }
}

#[test]
fn reset_detected_holds_off_new_requests_and_is_reported() {
    let h = Harness::with_options(
        ScriptConfig::default(),
        port::PortOptions {
            reset_hold_off_ticks: 2,
            ..port::testing::test_options()
        },
    );
    h.submit(LU0, Behaviour::ResetDetected, 1);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert!(h.events.wait_for(|e| *e == PortEvent::ResetDetected));
    h.submit(LU0, Behaviour::Inline, 2);
    h.assert_nothing_completes();
    h.tick(1);
    h.assert_nothing_completes();
    h.tick(1);
    assert_eq!(h.wait(1)[0].original_request, 2);
    assert!(h.adapter.statistics().resets >= 1);
}

#[test]
fn request_timer_call_polls_a_miniport_without_an_interrupt_routine() {
    let h = Harness::new(ScriptConfig {
        polled: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status, SrbStatus::SUCCESS);
    assert!(counter(&h.script.counters.timer_calls) >= 1);
}

fn count_timer(m: &mut ScriptedMiniport, port: &mut port::PortContext<'_, ScriptedMiniport>) {
    let _ = (m, port);
    TIMER_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}
static TIMER_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[test]
fn request_timer_call_replaces_a_pending_request_and_zero_cancels() {
    let h = Harness::new(ScriptConfig::default());
    // Two requests in a row: only the second stays pending -> one call.
    h.adapter
        .synchronize::<ScriptedMiniport, _>(|_, port| {
            port.request_timer_call(count_timer, 1_000);
            port.request_timer_call(count_timer, 2_000);
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(TIMER_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A request cancelled before it fires never runs.
    h.adapter
        .synchronize::<ScriptedMiniport, _>(|_, port| {
            port.request_timer_call(count_timer, 50_000);
            port.cancel_timer_call();
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(TIMER_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn bus_change_detected_rescans_and_finds_a_new_lu() {
    let h = Harness::new(ScriptConfig::default());
    assert_eq!(h.adapter.logical_units().len(), 1);
    h.script.set_luns(vec![LU0, T1]);
    h.submit(LU0, Behaviour::BusChange, 1);
    h.wait(1);
    assert!(
        h.events
            .wait_for(|e| *e == PortEvent::BusChangeDetected { path_id: 0 })
    );
    assert!(h.events.wait_for(|e| *e == PortEvent::LogicalUnitsChanged));
    let lus: Vec<_> = h
        .adapter
        .logical_units()
        .iter()
        .map(|l| l.address)
        .collect();
    assert_eq!(lus, vec![LU0, T1]);
}

#[test]
fn call_enable_interrupts_runs_the_deferred_work_then_the_disable_callback() {
    let h = Harness::new(ScriptConfig {
        deferred_interrupts: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.assert_nothing_completes();
    h.script.fire(FireOrder::All);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(counter(&h.script.counters.enable_callbacks), 1);
    assert_eq!(counter(&h.script.counters.disable_callbacks), 1);
    // Interrupts flow again afterwards.
    h.submit(LU0, Behaviour::Interrupt, 2);
    h.script.fire(FireOrder::All);
    assert_eq!(h.wait(1)[0].original_request, 2);
    assert_eq!(counter(&h.script.counters.disable_callbacks), 2);
}

#[test]
fn wmi_event_reaches_event_subscribers() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::WmiEvent, 1);
    h.wait(1);
    assert!(h.events.wait_for(|e| matches!(
        e,
        PortEvent::Wmi(w) if w.guid == SCRIPT_WMI_GUID && w.data() == b"event" && w.address == Some(LU0)
    )));
}

#[test]
fn io_map_transfer_leads_to_dma_started() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::SystemDma, 1);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(counter(&h.script.counters.dma_started), 1);
}

#[test]
fn complete_requests_completes_every_active_request_of_an_address() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, T1],
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(T1, Behaviour::Interrupt, 2);
    h.assert_nothing_completes();
    let n = h
        .adapter
        .synchronize::<ScriptedMiniport, _>(|_, port| {
            port.complete_requests(AddressFilter::target(0, 1), SrbStatus::ABORTED)
        })
        .unwrap();
    assert_eq!(n, 1);
    let done = h.wait(1);
    assert_eq!(done[0].original_request, 2);
    assert_eq!(done[0].srb_status.status(), SrbStatus::ABORTED);
    // The miniport's own handle for request 2 is stale now: firing completes 1 and drops 2.
    h.script.fire(FireOrder::All);
    let done = h.wait(1);
    assert_eq!(done[0].original_request, 1);
    assert_eq!(h.adapter.port_counters().late_completions, 1);
}

#[test]
fn get_srb_finds_the_active_request_by_tag() {
    let h = Harness::new(ScriptConfig {
        tagged_queuing: true,
        multiple_request_per_lu: true,
        next_lu_request: true,
        ..ScriptConfig::default()
    });
    let mut srb = port::testing::scripted_srb(LU0, Behaviour::Interrupt, 7);
    srb.flags.insert(port::SrbFlags::QUEUE_ACTION_ENABLE);
    h.submit_srb(srb);
    h.submit(LU0, Behaviour::Never, 8);
    h.assert_nothing_completes();
    let found = h
        .adapter
        .synchronize::<ScriptedMiniport, _>(|_, port| {
            let ids: Vec<_> = port.active_requests(AddressFilter::lu(LU0)).collect();
            let tags: Vec<u32> = ids
                .iter()
                .map(|id| port.srb(*id).unwrap().queue_tag)
                .collect();
            let tagged = tags.iter().copied().find(|t| *t != SP_UNTAGGED).unwrap();
            let by_tag = port
                .get_srb(LU0, tagged)
                .map(|id| port.srb(id).unwrap().original_request);
            let untagged = port
                .get_srb(LU0, SP_UNTAGGED)
                .map(|id| port.srb(id).unwrap().original_request);
            let missing = port.get_srb(T1, tagged);
            (by_tag, untagged, missing.is_none())
        })
        .unwrap();
    assert_eq!(found, (Some(7), None, true));
}

#[test]
fn log_error_is_kept_in_the_error_log_and_counted() {
    let h = Harness::new(ScriptConfig::default());
    h.adapter
        .synchronize::<ScriptedMiniport, _>(|_, port| {
            port.log_error(None, LU0, ErrorCode::BusParityError, 42);
        })
        .unwrap();
    let log = h.adapter.error_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].code, ErrorCode::BusParityError);
    assert_eq!(log[0].unique_id, 42);
    assert_eq!(h.adapter.port_counters().errors_logged, 1);
}

#[test]
fn a_late_completion_after_a_reset_is_dropped_and_counted() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, T1],
        late_after_reset: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(T1, Behaviour::Interrupt, 2);
    h.assert_nothing_completes();
    h.submit_srb(port::Srb::function(port::SrbFunction::ResetBus, LU0));
    let done = h.wait(3);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    assert_eq!(
        Harness::by_id(&done, 2).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    // The "hardware" finishes the two requests after all: the port drops both completions.
    h.script.fire(FireOrder::All);
    h.assert_nothing_completes();
    assert_eq!(h.adapter.port_counters().late_completions, 2);
}

#[test]
fn an_unclaimed_interrupt_is_counted_as_spurious() {
    let h = Harness::new(ScriptConfig::default());
    h.script.raise_spurious();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.adapter.port_counters().spurious_interrupts, 1);
}
