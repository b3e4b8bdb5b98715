//! Timeouts and the recovery ladder: abort, LU reset, bus reset, adapter restart.

mod common;

use std::time::Duration;

use common::{Harness, LU0, LU1, counter};
use port::testing::{Behaviour, ScriptConfig, scripted_srb, test_options};
use port::{ErrorCode, PortEvent, PortOptions, SrbFunction, SrbStatus, queue_request};

fn never(h: &Harness, id: u64, timeout: u32) {
    let mut srb = scripted_srb(LU0, Behaviour::Never, id);
    srb.time_out_value = timeout;
    h.submit_srb(srb);
}

#[test]
fn a_timed_out_request_is_aborted_first() {
    let h = Harness::new(ScriptConfig::default());
    never(&h, 1, 2);
    h.tick(1);
    h.assert_nothing_completes();
    h.tick(1);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::ABORTED);
    assert!(
        done[0].srb_status.queue_frozen(),
        "a timeout freezes the queue"
    );
    assert_eq!(counter(&h.script.counters.aborts), 1);
    assert_eq!(counter(&h.script.counters.lu_resets), 0);
    assert_eq!(h.adapter.statistics().timeouts, 1);
    assert!(
        h.adapter
            .error_log()
            .iter()
            .any(|e| e.code == ErrorCode::RequestTimeout)
    );
}

#[test]
fn a_failed_abort_escalates_to_a_logical_unit_reset() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, LU1],
        abort_supported: false,
        ..ScriptConfig::default()
    });
    never(&h, 1, 1);
    h.submit(LU1, Behaviour::Never, 2);
    h.tick(1);
    let done = h.wait(1);
    assert_eq!(done[0].original_request, 1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::BUS_RESET);
    assert_eq!(counter(&h.script.counters.lu_resets), 1);
    assert_eq!(counter(&h.script.counters.bus_resets), 0);
    assert!(
        h.events
            .wait_for(|e| *e == PortEvent::LogicalUnitReset { address: LU0 })
    );
    // The other LU's request (timeout 10) is untouched.
    h.assert_nothing_completes();
}

#[test]
fn a_failed_logical_unit_reset_escalates_to_a_bus_reset() {
    let h = Harness::new(ScriptConfig {
        abort_supported: false,
        lu_reset_supported: false,
        ..ScriptConfig::default()
    });
    never(&h, 1, 1);
    h.tick(1);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::BUS_RESET);
    assert_eq!(counter(&h.script.counters.aborts), 1);
    assert_eq!(counter(&h.script.counters.lu_resets), 1);
    assert_eq!(counter(&h.script.counters.bus_resets), 1);
    assert!(
        h.events
            .wait_for(|e| *e == PortEvent::BusReset { path_id: 0 })
    );
}

#[test]
fn a_bus_reset_that_does_not_help_escalates_to_an_adapter_restart() {
    let h = Harness::new(ScriptConfig {
        abort_supported: false,
        lu_reset_supported: false,
        reset_completes: false,
        ..ScriptConfig::default()
    });
    never(&h, 1, 1);
    h.tick(1);
    h.assert_nothing_completes();
    assert_eq!(counter(&h.script.counters.bus_resets), 1);
    // Bus-reset step: hold-off (1) + recovery (1) ticks.
    h.tick(2);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::TIMEOUT);
    assert_eq!(counter(&h.script.counters.stops), 1);
    assert_eq!(counter(&h.script.counters.restarts), 1);
    assert_eq!(h.adapter.port_counters().adapter_restarts, 1);
    assert!(h.events.wait_for(|e| *e == PortEvent::AdapterRestarted));
    // The miniport gave its handle back at StopAdapter: dropped, counted, never delivered.
    h.assert_nothing_completes();
    assert_eq!(h.adapter.port_counters().late_completions, 1);
    // The adapter works after the restart.
    h.submit_srb(queue_request(SrbFunction::ReleaseQueue, LU0));
    h.submit(LU0, Behaviour::Inline, 2);
    h.tick(1);
    let done = h.wait(2);
    assert_eq!(Harness::by_id(&done, 2).srb_status, SrbStatus::SUCCESS);
}

#[test]
fn an_adapter_without_adapter_control_is_reinitialized_instead() {
    let h = Harness::new(ScriptConfig {
        abort_supported: false,
        lu_reset_supported: false,
        reset_completes: false,
        adapter_control: false,
        ..ScriptConfig::default()
    });
    never(&h, 1, 1);
    h.tick(3);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::TIMEOUT);
    assert_eq!(counter(&h.script.counters.initialize), 2);
    assert_eq!(counter(&h.script.counters.stops), 0);
}

#[test]
fn a_request_that_completes_during_recovery_stops_the_ladder() {
    let h = Harness::new(ScriptConfig {
        abort_supported: false,
        ..ScriptConfig::default()
    });
    let mut srb = scripted_srb(LU0, Behaviour::Interrupt, 1);
    srb.time_out_value = 1;
    h.submit_srb(srb);
    // Abort fails (INVALID_REQUEST) -> LU reset, which completes the held request.
    h.tick(1);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::BUS_RESET);
    h.tick(5);
    assert_eq!(
        counter(&h.script.counters.bus_resets),
        0,
        "no bus reset needed"
    );
    assert_eq!(h.adapter.port_counters().adapter_restarts, 0);
}

#[test]
fn the_port_tick_runs_by_itself_and_enforces_time_out_value() {
    let h = Harness::with_options(
        ScriptConfig::default(),
        PortOptions {
            tick: Some(Duration::from_millis(10)),
            ..test_options()
        },
    );
    never(&h, 1, 2);
    let got = h.sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got, 1);
    assert_eq!(h.sink.take()[0].srb_status.status(), SrbStatus::ABORTED);
}
