//! Adapter life cycle: find_adapter results and `again`, initialize, stop/restart, shutdown,
//! blocking helpers, sinks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, LU0, T1, counter};
use parking_lot::Mutex;
use port::testing::{
    Behaviour, FindAnswer, FireOrder, Script, ScriptConfig, ScriptedMiniport, scripted_srb,
    test_options,
};
use port::{
    Adapter, CompletionSink, InitializeError, Srb, SrbStatus, Submitter, WaitError, initialize,
};

#[test]
fn find_adapter_with_again_creates_several_adapters() {
    let script = Script::new(ScriptConfig {
        adapters: 3,
        ..ScriptConfig::default()
    });
    let adapters = initialize::<ScriptedMiniport>(script.clone(), test_options()).unwrap();
    assert_eq!(adapters.len(), 3);
    assert_eq!(counter(&script.counters.find_adapter), 3);
    assert_eq!(counter(&script.counters.initialize), 3);
    for a in &adapters {
        assert_eq!(a.logical_units().len(), 1);
        let done = a
            .execute_and_wait(scripted_srb(LU0, Behaviour::Inline, 5))
            .unwrap();
        assert_eq!(done.srb_status, SrbStatus::SUCCESS);
        assert_eq!(
            done.original_request, 5,
            "execute_and_wait restores original_request"
        );
        a.shutdown().unwrap();
    }
}

#[test]
fn find_adapter_failures_are_reported() {
    for (answer, expected) in [
        (FindAnswer::NotFound, InitializeError::NotFound),
        (
            FindAnswer::Error,
            InitializeError::FindAdapter {
                bus: 0,
                result: "Error",
            },
        ),
        (
            FindAnswer::BadConfig,
            InitializeError::FindAdapter {
                bus: 0,
                result: "BadConfig",
            },
        ),
    ] {
        let script = Script::new(ScriptConfig {
            find_result: answer,
            ..ScriptConfig::default()
        });
        let err = initialize::<ScriptedMiniport>(script, test_options()).unwrap_err();
        assert_eq!(err, expected);
    }
}

#[test]
fn a_failing_initialize_yields_no_adapter() {
    let script = Script::new(ScriptConfig {
        initialize_ok: false,
        ..ScriptConfig::default()
    });
    let err = initialize::<ScriptedMiniport>(script, test_options()).unwrap_err();
    assert_eq!(err, InitializeError::InitializeFailed);
}

#[test]
fn an_inconsistent_configuration_is_refused() {
    let script = Script::new(ScriptConfig {
        buses: 0,
        ..ScriptConfig::default()
    });
    let err = initialize::<ScriptedMiniport>(script, test_options()).unwrap_err();
    assert!(matches!(err, InitializeError::BadConfiguration(_)));
}

#[test]
fn adapter_state_is_saved_at_start_and_restored_at_shutdown() {
    let h = Harness::new(ScriptConfig::default());
    assert_eq!(counter(&h.script.counters.adapter_state), 1);
    h.adapter.shutdown().unwrap();
    assert_eq!(counter(&h.script.counters.adapter_state), 2);
}

#[test]
fn shutdown_completes_everything_outstanding_exactly_once() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, T1],
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Never, 1);
    h.submit(LU0, Behaviour::Inline, 2); // queued behind 1
    h.submit(T1, Behaviour::Interrupt, 3);
    h.submit(T1, Behaviour::Busy(5), 4); // queued behind 3
    h.assert_nothing_completes();
    h.adapter.shutdown().unwrap();
    let done = h.wait(4);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    assert_eq!(
        Harness::by_id(&done, 2).srb_status,
        SrbStatus::REQUEST_FLUSHED
    );
    assert_eq!(
        Harness::by_id(&done, 3).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    assert_eq!(
        Harness::by_id(&done, 4).srb_status,
        SrbStatus::REQUEST_FLUSHED
    );
    assert_eq!(counter(&h.script.counters.stops), 1);
    // After shutdown everything is refused at once, still exactly once.
    h.submit(LU0, Behaviour::Inline, 5);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::NO_HBA);
    h.script.fire(FireOrder::All);
    h.assert_nothing_completes();
}

#[test]
fn stop_holds_requests_and_restart_resumes_them() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Interrupt, 1);
    let adapter = h.adapter.clone();
    let stopper = std::thread::spawn(move || adapter.stop(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        counter(&h.script.counters.stops),
        0,
        "stop waits for the active request"
    );
    h.script.fire(FireOrder::All);
    stopper.join().unwrap().unwrap();
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(counter(&h.script.counters.stops), 1);
    h.submit(LU0, Behaviour::Inline, 2);
    h.assert_nothing_completes();
    h.adapter.restart(Duration::from_secs(5)).unwrap();
    assert_eq!(h.wait(1)[0].original_request, 2);
    assert_eq!(counter(&h.script.counters.restarts), 1);
}

#[test]
fn stop_is_refused_when_the_miniport_cannot_stop() {
    let h = Harness::new(ScriptConfig {
        adapter_control: false,
        ..ScriptConfig::default()
    });
    assert_eq!(
        h.adapter.stop(Duration::from_secs(1)),
        Err(WaitError::Unsupported)
    );
}

struct Reentrant {
    adapter: Adapter,
    result: Mutex<Option<Result<Srb, WaitError>>>,
    resubmit: Mutex<Option<Submitter>>,
    completed: Mutex<Vec<u64>>,
}

impl CompletionSink for Reentrant {
    fn complete(&self, srb: Srb) {
        let id = srb.original_request;
        self.completed.lock().push(id);
        if id == 1 {
            *self.result.lock() = Some(self.adapter.execute_and_wait(scripted_srb(
                LU0,
                Behaviour::Inline,
                9,
            )));
        }
        if id < 5
            && let Some(s) = self.resubmit.lock().as_ref()
        {
            s.submit(scripted_srb(LU0, Behaviour::Inline, id + 1));
        }
    }
}

#[test]
fn sinks_may_submit_but_not_block_on_the_port() {
    let h = Harness::new(ScriptConfig::default());
    let sink = Arc::new(Reentrant {
        adapter: h.adapter.clone(),
        result: Mutex::new(None),
        resubmit: Mutex::new(None),
        completed: Mutex::new(Vec::new()),
    });
    let submitter = h.adapter.submitter(sink.clone());
    *sink.resubmit.lock() = Some(submitter.clone());
    submitter.submit(scripted_srb(LU0, Behaviour::Inline, 1));
    for _ in 0..200 {
        if sink.completed.lock().len() == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*sink.completed.lock(), vec![1, 2, 3, 4, 5]);
    assert!(matches!(
        *sink.result.lock(),
        Some(Err(WaitError::WouldDeadlock))
    ));
    *sink.resubmit.lock() = None;
}

#[test]
fn srb_extensions_are_preallocated_per_slot_and_kept_between_requests() {
    let h = Harness::new(ScriptConfig {
        number_of_requests: 1,
        ..ScriptConfig::default()
    });
    for i in 0..10 {
        h.submit(LU0, Behaviour::Inline, i);
    }
    h.wait(10);
    h.submit(LU0, Behaviour::Never, 99);
    h.assert_nothing_completes();
    let uses = h
        .adapter
        .synchronize::<ScriptedMiniport, _>(|_, port| {
            let id = port
                .active_requests(port::AddressFilter::all())
                .next()
                .unwrap();
            port.srb_extension(id).unwrap().uses
        })
        .unwrap();
    // The one slot served the scan, the ten requests and this one.
    assert_eq!(
        uses,
        h.starts() + (counter(&h.script.counters.start_io) - h.starts())
    );
    assert!(uses >= 11);
}

#[test]
fn a_caching_adapter_gets_flush_before_stop_and_shutdown_before_shutdown() {
    let h = Harness::new(ScriptConfig {
        caches_data: true,
        luns: vec![LU0, T1],
        record_starts: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Inline, 1);
    h.submit(T1, Behaviour::Inline, 2);
    h.wait(2);
    h.adapter.stop(Duration::from_secs(5)).unwrap();
    let functions: Vec<port::SrbFunction> = h.script.starts().iter().map(|s| s.function).collect();
    let flushes = functions
        .iter()
        .filter(|f| **f == port::SrbFunction::Flush)
        .count();
    assert!(
        flushes >= 2,
        "one FLUSH per LU before StopAdapter: {functions:?}"
    );
    assert_eq!(counter(&h.script.counters.stops), 1);
    // Held while stopped, then resumed.
    h.submit(LU0, Behaviour::Inline, 3);
    h.assert_nothing_completes();
    h.adapter.restart(Duration::from_secs(5)).unwrap();
    assert_eq!(h.wait(1)[0].original_request, 3);
    h.adapter.shutdown().unwrap();
    let functions: Vec<port::SrbFunction> = h.script.starts().iter().map(|s| s.function).collect();
    assert!(
        functions.contains(&port::SrbFunction::Shutdown),
        "{functions:?}"
    );
    assert_eq!(
        functions.last(),
        Some(&port::SrbFunction::Shutdown),
        "SHUTDOWN follows the last I/O"
    );
}
