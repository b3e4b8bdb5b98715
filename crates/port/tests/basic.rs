//! Basic submission and completion against the scripted miniport.

use std::sync::Arc;
use std::time::Duration;

use port::testing::{
    Behaviour, CollectingSink, Script, ScriptConfig, ScriptedMiniport, scripted_srb, test_options,
};
use port::{Address, SrbStatus};

const LU0: Address = Address::new(0, 0, 0);

fn adapter(config: ScriptConfig) -> (Arc<Script>, port::Adapter) {
    let script = Script::new(config);
    let mut adapters =
        port::initialize::<ScriptedMiniport>(script.clone(), test_options()).expect("adapter");
    (script, adapters.remove(0))
}

#[test]
fn inline_completion_reaches_the_submitters_sink_exactly_once() {
    let (script, adapter) = adapter(ScriptConfig::default());
    let sink = CollectingSink::new();
    let submitter = adapter.submitter(sink.clone());
    let before = adapter.statistics().commands;
    for i in 0..10 {
        submitter.submit(scripted_srb(LU0, Behaviour::Inline, i));
    }
    assert_eq!(sink.wait_for(10, Duration::from_secs(5)), 10);
    let done = sink.take();
    let mut ids: Vec<u64> = done.iter().map(|s| s.original_request).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    assert!(done.iter().all(|s| s.srb_status == SrbStatus::SUCCESS));
    assert!(
        script
            .counters
            .start_io
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 10
    );
    assert_eq!(adapter.statistics().commands, before + 10);
    assert_eq!(sink.take().len(), 0, "nothing completes twice");
    adapter.shutdown().unwrap();
}

#[test]
fn scan_finds_the_scripted_logical_units_with_inquiry_data() {
    let (_script, adapter) = adapter(ScriptConfig {
        luns: vec![Address::new(0, 0, 0), Address::new(0, 1, 1)],
        ..ScriptConfig::default()
    });
    let lus = adapter.logical_units();
    let addrs: Vec<Address> = lus.iter().map(|l| l.address).collect();
    assert_eq!(addrs, vec![Address::new(0, 0, 0), Address::new(0, 1, 1)]);
    assert_eq!(&lus[0].inquiry[8..16], b"SCSIPORT");
    assert_eq!(lus[0].device_type(), 0);
    adapter.shutdown().unwrap();
}
