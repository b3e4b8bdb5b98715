//! SRB functions: which the port answers itself and which reach the miniport.

mod common;

use common::{Harness, LU0, LU1, T1, counter};
use port::testing::{Behaviour, FireOrder, SCRIPT_WMI_GUID, ScriptConfig, scripted_srb};
use port::wmi::{REGINFO_ENTRY_SIZE, sub_function};
use port::{DataDirection, PortEvent, Srb, SrbFunction, SrbStatus, WmiRequest};

fn abort(target: u64) -> Srb {
    let mut a = Srb::function(SrbFunction::AbortCommand, LU0);
    a.abort_target = target;
    a
}

#[test]
fn abort_of_a_queued_request_is_completed_by_the_port() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(LU0, Behaviour::Inline, 2);
    h.submit_srb(abort(2));
    let done = h.wait(2);
    assert_eq!(Harness::by_id(&done, 2).srb_status, SrbStatus::ABORTED);
    assert_eq!(done[1].function, SrbFunction::AbortCommand);
    assert_eq!(done[1].srb_status, SrbStatus::SUCCESS);
    assert_eq!(
        counter(&h.script.counters.aborts),
        0,
        "the miniport never saw it"
    );
    h.script.fire(FireOrder::All);
    assert_eq!(h.wait(1)[0].original_request, 1);
}

#[test]
fn abort_of_an_active_request_goes_to_the_miniport_with_next_srb() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Never, 1);
    h.assert_nothing_completes();
    h.submit_srb(abort(1));
    let done = h.wait(2);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status.status(),
        SrbStatus::ABORTED
    );
    let a = done
        .iter()
        .find(|s| s.function == SrbFunction::AbortCommand)
        .unwrap();
    assert_eq!(a.srb_status, SrbStatus::SUCCESS);
    assert!(a.next_srb.is_some());
    assert_eq!(counter(&h.script.counters.aborts), 1);
    assert_eq!(h.adapter.statistics().aborted, 1);
}

#[test]
fn abort_of_an_unknown_request_fails() {
    let h = Harness::new(ScriptConfig::default());
    h.submit_srb(abort(77));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::ABORT_FAILED);
}

#[test]
fn reset_bus_request_calls_reset_bus_and_completes_outstanding_with_bus_reset() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, T1],
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Never, 1);
    h.submit(T1, Behaviour::Interrupt, 2);
    h.assert_nothing_completes();
    h.submit_srb(Srb::function(SrbFunction::ResetBus, LU0));
    let done = h.wait(3);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    assert_eq!(
        Harness::by_id(&done, 2).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    let r = done
        .iter()
        .find(|s| s.function == SrbFunction::ResetBus)
        .unwrap();
    assert_eq!(r.srb_status, SrbStatus::SUCCESS);
    assert_eq!(counter(&h.script.counters.bus_resets), 1);
    assert!(
        h.events
            .wait_for(|e| *e == PortEvent::BusReset { path_id: 0 })
    );
    // The reset froze the LU queues that had requests; released, requests flow again after
    // the reset hold-off.
    assert!(Harness::by_id(&done, 1).srb_status.queue_frozen());
    h.submit_srb(port::queue_request(SrbFunction::ReleaseQueue, LU0));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    h.submit(LU0, Behaviour::Inline, 3);
    h.assert_nothing_completes();
    h.tick(1);
    assert_eq!(h.wait(1)[0].original_request, 3);
}

#[test]
fn reset_logical_unit_reaches_the_miniport_and_is_reported() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, LU1],
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Never, 1);
    h.submit(LU1, Behaviour::Never, 2);
    h.assert_nothing_completes();
    h.submit_srb(Srb::function(SrbFunction::ResetLogicalUnit, LU0));
    let done = h.wait(2);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status.status(),
        SrbStatus::BUS_RESET
    );
    assert_eq!(done[1].function, SrbFunction::ResetLogicalUnit);
    assert_eq!(done[1].srb_status, SrbStatus::SUCCESS);
    assert!(
        h.events
            .wait_for(|e| *e == PortEvent::LogicalUnitReset { address: LU0 })
    );
    assert_eq!(h.adapter.lu_statistics(LU0).unwrap().resets, 1);
    // LU1 untouched.
    h.submit_srb(Srb::function(SrbFunction::ResetDevice, LU1));
    let done = h.wait(2);
    assert_eq!(
        Harness::by_id(&done, 2).srb_status.status(),
        SrbStatus::BUS_RESET
    );
}

#[test]
fn flush_and_shutdown_are_answered_by_the_port_when_the_adapter_does_not_cache() {
    let h = Harness::new(ScriptConfig::default());
    h.submit_srb(Srb::function(SrbFunction::Flush, LU0));
    h.submit_srb(Srb::function(SrbFunction::Shutdown, LU0));
    let done = h.wait(2);
    assert!(done.iter().all(|s| s.srb_status == SrbStatus::SUCCESS));
    assert_eq!(counter(&h.script.counters.flushes), 0);
}

#[test]
fn flush_and_shutdown_reach_a_caching_adapter_in_queue_order() {
    let h = Harness::new(ScriptConfig {
        caches_data: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit_srb(Srb::function(SrbFunction::Flush, LU0));
    h.assert_nothing_completes();
    assert_eq!(
        counter(&h.script.counters.flushes),
        0,
        "FLUSH waits behind the write"
    );
    h.script.fire(FireOrder::All);
    let done = h.wait(2);
    assert_eq!(done[1].function, SrbFunction::Flush);
    assert_eq!(counter(&h.script.counters.flushes), 1);
}

#[test]
fn io_control_reaches_the_miniport() {
    let h = Harness::new(ScriptConfig::default());
    h.submit_srb(Srb::function(SrbFunction::IoControl, LU0));
    // The scripted miniport does not know any IO_CONTROL signature.
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::INVALID_REQUEST);
    assert_eq!(h.starts(), 1);
}

fn wmi(sub: u8, len: u32, item: u32) -> Srb {
    let mut s = Srb::function(SrbFunction::Wmi, LU0).with_data(vec![0; 64], len, DataDirection::In);
    s.wmi = WmiRequest {
        sub_function: sub,
        adapter_request: true,
        guid: SCRIPT_WMI_GUID,
        instance_index: 0,
        item_id: item,
        in_size: 0,
    };
    s
}

#[test]
fn wmi_requests_are_rejected_without_a_provider() {
    let h = Harness::new(ScriptConfig::default());
    h.submit_srb(wmi(sub_function::REGINFO, 64, 0));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::INVALID_REQUEST);
    assert_eq!(counter(&h.script.counters.wmi_requests), 0);
}

#[test]
fn wmi_requests_are_dispatched_to_the_provider() {
    let h = Harness::new(ScriptConfig {
        wmi: true,
        ..ScriptConfig::default()
    });
    h.submit_srb(wmi(sub_function::REGINFO, 64, 0));
    let r = h.wait(1).remove(0);
    assert_eq!(r.srb_status, SrbStatus::SUCCESS);
    assert_eq!(r.data_transfer_length as usize, REGINFO_ENTRY_SIZE);
    assert_eq!(&r.data[..16], &SCRIPT_WMI_GUID);
    // Buffer too small: DATA_OVERRUN with the size needed.
    h.submit_srb(wmi(sub_function::QUERY_ALL_DATA, 4, 0));
    let r = h.wait(1).remove(0);
    assert_eq!(r.srb_status.status(), SrbStatus::DATA_OVERRUN);
    assert_eq!(r.data_transfer_length, 8);
    h.submit_srb(wmi(sub_function::QUERY_SINGLE_INSTANCE, 64, 0));
    let r = h.wait(1).remove(0);
    assert_eq!(r.srb_status, SrbStatus::SUCCESS);
    let starts = u64::from_le_bytes(r.data[..8].try_into().unwrap());
    assert!(starts >= 3);
    // Set the block, then execute method 1 (reverse the input).
    let mut set = wmi(sub_function::CHANGE_SINGLE_INSTANCE, 8, 0);
    set.data[..8].copy_from_slice(&1000u64.to_le_bytes());
    h.submit_srb(set);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    let mut exec = wmi(sub_function::EXECUTE_METHOD, 3, 1);
    exec.data[..3].copy_from_slice(b"abc");
    exec.wmi.in_size = 3;
    h.submit_srb(exec);
    let r = h.wait(1).remove(0);
    assert_eq!(&r.data[..3], b"cba");
    h.submit_srb(wmi(sub_function::CHANGE_SINGLE_ITEM, 8, 0));
    assert_eq!(
        h.wait(1)[0].srb_status,
        SrbStatus::ERROR,
        "set item is not provided"
    );
    h.submit_srb(wmi(sub_function::ENABLE_EVENTS, 0, 0));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    let mut unknown = wmi(sub_function::QUERY_ALL_DATA, 64, 0);
    unknown.wmi.guid = [0; 16];
    h.submit_srb(unknown);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::ERROR);
    assert_eq!(counter(&h.script.counters.wmi_requests), 8);
}

#[test]
fn a_read_and_a_write_are_counted_per_lu_with_their_bytes() {
    let h = Harness::new(ScriptConfig {
        default_behaviour: Behaviour::Inline,
        ..ScriptConfig::default()
    });
    let read = Srb::execute_scsi(LU0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
        .unwrap()
        .with_data(vec![0; 4096], 4096, DataDirection::In);
    let write = Srb::execute_scsi(LU0, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        .unwrap()
        .with_data(vec![0; 512], 512, DataDirection::Out);
    let before = h.adapter.lu_statistics(LU0).unwrap();
    h.submit_srb(read);
    h.submit_srb(write);
    h.wait(2);
    let after = h.adapter.lu_statistics(LU0).unwrap();
    assert_eq!(after.reads - before.reads, 1);
    assert_eq!(after.writes - before.writes, 1);
    assert_eq!(after.bytes_read - before.bytes_read, 4096);
    assert_eq!(after.bytes_written - before.bytes_written, 512);
    h.submit_srb(scripted_srb(LU0, Behaviour::Status(SrbStatus::ERROR.0), 3));
    h.wait(1);
    assert_eq!(
        h.adapter.lu_statistics(LU0).unwrap().errors,
        before.errors + 1
    );
}
