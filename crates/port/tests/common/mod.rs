//! Helpers shared by the port's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use port::testing::{
    Behaviour, CollectingSink, Script, ScriptConfig, ScriptedMiniport, scripted_srb, test_options,
};
use port::{Adapter, Address, PortEvent, PortEventSink, PortOptions, Srb, Submitter};

pub const LU0: Address = Address::new(0, 0, 0);
pub const LU1: Address = Address::new(0, 0, 1);
pub const T1: Address = Address::new(0, 1, 0);

#[derive(Default)]
pub struct EventLog(Mutex<Vec<PortEvent>>);

impl PortEventSink for EventLog {
    fn port_event(&self, event: &PortEvent) {
        self.0.lock().push(*event);
    }
}

impl EventLog {
    pub fn events(&self) -> Vec<PortEvent> {
        self.0.lock().clone()
    }
    pub fn wait_for(&self, pred: impl Fn(&PortEvent) -> bool) -> bool {
        for _ in 0..500 {
            if self.0.lock().iter().any(&pred) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

pub struct Harness {
    pub script: Arc<Script>,
    pub adapter: Adapter,
    pub sink: Arc<CollectingSink>,
    pub submitter: Submitter,
    pub events: Arc<EventLog>,
    base_starts: u64,
}

pub fn counter(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Harness {
    pub fn new(config: ScriptConfig) -> Harness {
        Harness::with_options(config, test_options())
    }

    pub fn with_options(config: ScriptConfig, options: PortOptions) -> Harness {
        Harness::build(config, options, false)
    }

    /// The scripted miniport under the Storport model.
    pub fn storport(config: ScriptConfig) -> Harness {
        Harness::build(config, test_options(), true)
    }

    pub fn build(config: ScriptConfig, options: PortOptions, storport: bool) -> Harness {
        let script = Script::new(config);
        let mut adapters = if storport {
            port::initialize_storport::<ScriptedMiniport>(script.clone(), options)
        } else {
            port::initialize::<ScriptedMiniport>(script.clone(), options)
        }
        .expect("adapter found");
        let adapter = adapters.remove(0);
        let sink = CollectingSink::new();
        let submitter = adapter.submitter(sink.clone());
        let events = Arc::new(EventLog::default());
        adapter.subscribe(events.clone());
        let base_starts = counter(&script.counters.start_io);
        Harness {
            script,
            adapter,
            sink,
            submitter,
            events,
            base_starts,
        }
    }

    /// start_io calls since the harness was built (after the scan).
    pub fn starts(&self) -> u64 {
        counter(&self.script.counters.start_io) - self.base_starts
    }

    pub fn submit(&self, address: Address, b: Behaviour, id: u64) {
        self.submitter.submit(scripted_srb(address, b, id));
    }

    pub fn submit_srb(&self, srb: Srb) {
        self.submitter.submit(srb);
    }

    /// Waits for exactly `n` completions (fails if fewer arrive in 5 s or more are waiting).
    pub fn wait(&self, n: usize) -> Vec<Srb> {
        let got = self.sink.wait_for(n, Duration::from_secs(5));
        assert!(got >= n, "expected {n} completions, got {got}");
        let done = self.sink.take();
        assert_eq!(done.len(), n, "unexpected extra completions: {done:?}");
        done
    }

    /// Asserts nothing completes within a short while.
    pub fn assert_nothing_completes(&self) {
        std::thread::sleep(Duration::from_millis(30));
        let done = self.sink.take();
        assert!(done.is_empty(), "unexpected completions: {done:?}");
    }

    /// Requests the miniport holds right now for `address`.
    pub fn active(&self, address: Address) -> usize {
        self.adapter
            .synchronize::<ScriptedMiniport, _>(|_, port| {
                port.active_requests(port::AddressFilter::lu(address))
                    .count()
            })
            .unwrap()
    }

    /// Runs `f` with the port services under the interrupt lock.
    pub fn with_port<R>(
        &self,
        f: impl FnOnce(&mut port::PortContext<'_, ScriptedMiniport>) -> R,
    ) -> R {
        self.adapter
            .synchronize::<ScriptedMiniport, _>(|_, port| f(port))
            .unwrap()
    }

    pub fn tick(&self, n: u32) {
        for _ in 0..n {
            self.adapter.tick();
        }
    }

    pub fn by_id(done: &[Srb], id: u64) -> &Srb {
        done.iter()
            .find(|s| s.original_request == id)
            .unwrap_or_else(|| panic!("request {id} not completed: {done:?}"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.adapter.shutdown();
    }
}
