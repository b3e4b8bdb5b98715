//! The port's queue rules: per-LU queues, one untagged request per LU, DISABLE_DISCONNECT,
//! freeze on error with autosense or the port's REQUEST SENSE, release / flush / lock / unlock,
//! bypass flags, BUSY retries.

mod common;

use common::{Harness, LU0, LU1, T1, counter};
use port::testing::{Behaviour, FireOrder, ScriptConfig, scripted_srb};
use port::{
    Address, DataDirection, QueueAction, Srb, SrbFlags, SrbFunction, SrbStatus, queue_request,
    scsi_status,
};

const ILLEGAL_REQUEST: Behaviour = Behaviour::CheckCondition {
    key: 5,
    asc: 0x24,
    ascq: 0,
};

#[test]
fn submission_is_not_bounded_by_the_miniport_and_each_lu_runs_one_untagged_request() {
    let h = Harness::new(ScriptConfig {
        number_of_requests: 4,
        ..ScriptConfig::default()
    });
    for i in 0..100 {
        h.submit(LU0, Behaviour::Interrupt, i);
    }
    h.assert_nothing_completes();
    assert_eq!(counter(&h.script.counters.max_outstanding_per_lu), 1);
    for _ in 0..100 {
        h.script.fire(FireOrder::All);
    }
    let done = h.wait(100);
    let ids: Vec<u64> = done.iter().map(|s| s.original_request).collect();
    assert_eq!(ids, (0..100).collect::<Vec<_>>(), "per-LU queue is FIFO");
}

#[test]
fn requests_of_different_lus_run_concurrently() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, LU1, T1],
        ..ScriptConfig::default()
    });
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(LU1, Behaviour::Interrupt, 2);
    h.submit(T1, Behaviour::Interrupt, 3);
    h.assert_nothing_completes();
    assert_eq!(counter(&h.script.counters.max_outstanding), 3);
    h.script.fire(FireOrder::All);
    h.wait(3);
}

#[test]
fn disable_disconnect_monopolizes_the_adapter_until_it_completes() {
    let h = Harness::new(ScriptConfig {
        luns: vec![LU0, T1],
        ..ScriptConfig::default()
    });
    let mut srb = scripted_srb(LU0, Behaviour::Interrupt, 1);
    srb.flags.insert(SrbFlags::DISABLE_DISCONNECT);
    h.submit_srb(srb);
    h.submit(T1, Behaviour::Inline, 2);
    h.assert_nothing_completes();
    assert_eq!(
        h.starts(),
        1,
        "nothing else starts while a no-disconnect request runs"
    );
    h.script.fire(FireOrder::All);
    let done = h.wait(2);
    assert_eq!(done[0].original_request, 1);
    assert_eq!(done[1].original_request, 2);
    assert_eq!(counter(&h.script.counters.started_during_no_disconnect), 0);
}

#[test]
fn check_condition_freezes_the_queue_and_returns_autosense() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, ILLEGAL_REQUEST, 1);
    h.submit(LU0, Behaviour::Inline, 2);
    let done = h.wait(1);
    let s = &done[0];
    assert_eq!(s.srb_status.status(), SrbStatus::ERROR);
    assert!(s.srb_status.queue_frozen());
    assert!(s.srb_status.autosense_valid());
    assert_eq!(s.scsi_status, scsi_status::CHECK_CONDITION);
    assert_eq!(s.sense()[2] & 0x0F, 5);
    assert_eq!(s.sense()[12], 0x24);
    h.assert_nothing_completes();
    h.submit_srb(queue_request(SrbFunction::ReleaseQueue, LU0));
    let done = h.wait(2);
    assert_eq!(done[0].function, SrbFunction::ReleaseQueue);
    assert_eq!(done[1].original_request, 2);
    assert_eq!(done[1].srb_status, SrbStatus::SUCCESS);
}

#[test]
fn the_port_sends_request_sense_when_the_adapter_has_no_autosense() {
    let h = Harness::new(ScriptConfig {
        auto_request_sense: false,
        record_starts: true,
        ..ScriptConfig::default()
    });
    h.submit(LU0, ILLEGAL_REQUEST, 1);
    let done = h.wait(1);
    let s = &done[0];
    assert!(s.srb_status.autosense_valid() && s.srb_status.queue_frozen());
    assert_eq!(s.sense().len(), 18);
    assert_eq!(s.sense()[12], 0x24);
    let opcodes: Vec<u8> = h.script.starts().iter().map(|r| r.opcode).collect();
    assert!(
        opcodes.ends_with(&[0xC1, 0x03]),
        "REQUEST SENSE follows: {opcodes:x?}"
    );
}

#[test]
fn disable_autosense_returns_no_sense_and_sends_no_request_sense() {
    let h = Harness::new(ScriptConfig {
        auto_request_sense: false,
        ..ScriptConfig::default()
    });
    let mut srb = scripted_srb(LU0, ILLEGAL_REQUEST, 1);
    srb.flags
        .insert(SrbFlags::DISABLE_AUTOSENSE | SrbFlags::NO_QUEUE_FREEZE);
    h.submit_srb(srb);
    let done = h.wait(1);
    assert!(!done[0].srb_status.autosense_valid());
    assert!(!done[0].srb_status.queue_frozen());
    assert_eq!(h.starts(), 1);
}

#[test]
fn no_queue_freeze_keeps_the_queue_running_after_an_error() {
    let h = Harness::new(ScriptConfig::default());
    let mut srb = scripted_srb(LU0, ILLEGAL_REQUEST, 1);
    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    h.submit_srb(srb);
    h.submit(LU0, Behaviour::Inline, 2);
    let done = h.wait(2);
    assert!(!done[0].srb_status.queue_frozen());
    assert!(done[0].srb_status.autosense_valid());
    assert_eq!(done[1].srb_status, SrbStatus::SUCCESS);
}

#[test]
fn a_data_underrun_reports_the_residual_without_freezing() {
    let h = Harness::new(ScriptConfig::default());
    let srb =
        scripted_srb(LU0, Behaviour::Underrun, 1).with_data(vec![0; 512], 512, DataDirection::In);
    h.submit_srb(srb);
    h.submit(LU0, Behaviour::Inline, 2);
    let done = h.wait(2);
    assert_eq!(done[0].srb_status, SrbStatus::DATA_OVERRUN);
    assert_eq!(done[0].data_transfer_length, 256);
    assert_eq!(done[0].residual(), 256);
    assert_eq!(done[1].srb_status, SrbStatus::SUCCESS);
}

#[test]
fn release_queue_on_an_unfrozen_queue_is_a_harmless_success() {
    let h = Harness::new(ScriptConfig::default());
    h.submit_srb(queue_request(SrbFunction::ReleaseQueue, LU0));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(h.starts(), 0, "RELEASE_QUEUE never reaches the miniport");
}

#[test]
fn flush_queue_completes_queued_requests_as_flushed_and_unfreezes() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, ILLEGAL_REQUEST, 1);
    for i in 2..5 {
        h.submit(LU0, Behaviour::Inline, i);
    }
    let done = h.wait(1);
    assert!(done[0].srb_status.queue_frozen());
    h.submit_srb(queue_request(SrbFunction::FlushQueue, LU0));
    let done = h.wait(4);
    for i in 2..5 {
        assert_eq!(
            Harness::by_id(&done, i).srb_status,
            SrbStatus::REQUEST_FLUSHED
        );
    }
    assert_eq!(done[3].function, SrbFunction::FlushQueue);
    assert_eq!(done[3].srb_status, SrbStatus::SUCCESS);
    // Unfrozen: new requests run.
    h.submit(LU0, Behaviour::Inline, 9);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(h.adapter.statistics().flushed, 3);
}

#[test]
fn flush_queue_on_an_unfrozen_queue_is_rejected() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(LU0, Behaviour::Inline, 2);
    h.submit_srb(queue_request(SrbFunction::FlushQueue, LU0));
    let done = h.wait(1);
    assert_eq!(done[0].srb_status, SrbStatus::INVALID_REQUEST);
    h.script.fire(FireOrder::All);
    assert_eq!(h.wait(2).len(), 2);
}

#[test]
fn a_locked_queue_holds_requests_until_unlock_but_runs_bypass_locked_requests() {
    let h = Harness::new(ScriptConfig::default());
    h.submit_srb(queue_request(SrbFunction::LockQueue, LU0));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    h.submit(LU0, Behaviour::Inline, 1);
    h.assert_nothing_completes();
    let mut power = scripted_srb(LU0, Behaviour::Inline, 2);
    power.flags.insert(SrbFlags::BYPASS_LOCKED_QUEUE);
    h.submit_srb(power);
    assert_eq!(h.wait(1)[0].original_request, 2);
    // UNLOCK_QUEUE without BYPASS_LOCKED_QUEUE is refused.
    h.submit_srb(Srb::function(SrbFunction::UnlockQueue, LU0));
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::INVALID_REQUEST);
    h.submit_srb(queue_request(SrbFunction::UnlockQueue, LU0));
    let done = h.wait(2);
    assert_eq!(done[0].function, SrbFunction::UnlockQueue);
    assert_eq!(done[1].original_request, 1);
}

#[test]
fn bypass_frozen_queue_requests_run_while_the_queue_is_frozen() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, ILLEGAL_REQUEST, 1);
    h.submit(LU0, Behaviour::Inline, 2);
    assert!(h.wait(1)[0].srb_status.queue_frozen());
    let mut bypass = scripted_srb(LU0, Behaviour::Inline, 3);
    bypass.flags.insert(SrbFlags::BYPASS_FROZEN_QUEUE);
    h.submit_srb(bypass);
    assert_eq!(h.wait(1)[0].original_request, 3);
    h.assert_nothing_completes();
    h.submit_srb(queue_request(SrbFunction::ReleaseQueue, LU0));
    assert_eq!(h.wait(2).len(), 2);
}

#[test]
fn busy_is_retried_on_the_next_ticks_until_it_succeeds() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Busy(2), 1);
    h.assert_nothing_completes();
    assert_eq!(h.starts(), 1);
    h.tick(1);
    assert_eq!(h.starts(), 2);
    h.assert_nothing_completes();
    h.tick(1);
    let done = h.wait(1);
    assert_eq!(done[0].srb_status, SrbStatus::SUCCESS);
    assert_eq!(h.starts(), 3);
    assert_eq!(h.adapter.statistics().busy, 2);
}

#[test]
fn busy_beyond_the_retry_limit_freezes_the_queue() {
    // test_options: busy_retry_limit = 3.
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Busy(10), 1);
    h.submit(LU0, Behaviour::Inline, 2);
    h.tick(3);
    let done = h.wait(1);
    assert_eq!(done[0].original_request, 1);
    assert_eq!(
        done[0].srb_status,
        SrbStatus::BUSY.with(SrbStatus::QUEUE_FROZEN)
    );
    assert_eq!(h.starts(), 4);
    h.assert_nothing_completes();
    h.submit_srb(queue_request(SrbFunction::ReleaseQueue, LU0));
    assert_eq!(h.wait(2).len(), 2);
}

#[test]
fn scsi_busy_and_queue_full_status_are_retried_like_srb_busy() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::ScsiStatus(scsi_status::BUSY), 1);
    h.submit(LU0, Behaviour::ScsiStatus(scsi_status::QUEUE_FULL), 2);
    h.assert_nothing_completes();
    assert_eq!(
        h.starts(),
        1,
        "the BUSY request is parked, the LU waits for it"
    );
    h.tick(3);
    let done = h.wait(1);
    assert_eq!(done[0].original_request, 1);
    assert!(done[0].srb_status.queue_frozen());
    assert_eq!(h.adapter.statistics().busy, 4);
}

#[test]
fn reservation_conflict_is_an_error_not_a_retry() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(
        LU0,
        Behaviour::ScsiStatus(scsi_status::RESERVATION_CONFLICT),
        1,
    );
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::ERROR);
    assert_eq!(done[0].scsi_status, scsi_status::RESERVATION_CONFLICT);
    assert!(done[0].srb_status.queue_frozen());
    assert_eq!(h.starts(), 1);
}

#[test]
fn invalid_addresses_and_short_buffers_are_rejected_by_the_port() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(Address::new(1, 0, 0), Behaviour::Inline, 1);
    h.submit(Address::new(0, 9, 0), Behaviour::Inline, 2);
    h.submit(Address::new(0, 0, 9), Behaviour::Inline, 3);
    h.submit_srb(scripted_srb(LU0, Behaviour::Inline, 4).with_data(
        vec![0; 4],
        8,
        DataDirection::In,
    ));
    let done = h.wait(4);
    assert_eq!(
        Harness::by_id(&done, 1).srb_status,
        SrbStatus::INVALID_PATH_ID
    );
    assert_eq!(
        Harness::by_id(&done, 2).srb_status,
        SrbStatus::INVALID_TARGET_ID
    );
    assert_eq!(Harness::by_id(&done, 3).srb_status, SrbStatus::INVALID_LUN);
    assert_eq!(
        Harness::by_id(&done, 4).srb_status,
        SrbStatus::BAD_SRB_BLOCK_LENGTH
    );
    assert_eq!(h.starts(), 0);
}

#[test]
fn the_data_buffer_travels_with_the_request_and_comes_back() {
    let h = Harness::new(ScriptConfig::default());
    let buf = Vec::with_capacity(4096);
    let ptr = buf.as_ptr() as usize;
    let mut buf = buf;
    buf.resize(4096, 0);
    let srb = scripted_srb(LU0, Behaviour::Inline, 1).with_data(buf, 4096, DataDirection::In);
    h.submit_srb(srb);
    let done = h.wait(1);
    assert_eq!(
        done[0].data.as_ptr() as usize,
        ptr,
        "same allocation handed back"
    );
    assert!(done[0].data.iter().all(|&b| b == 0xA5));
    let stats = h.adapter.lu_statistics(LU0).unwrap();
    assert!(stats.commands >= 1);
}

#[test]
fn a_head_of_queue_request_overtakes_the_queued_ones() {
    let h = Harness::new(ScriptConfig::default());
    h.submit(LU0, Behaviour::Interrupt, 1);
    h.submit(LU0, Behaviour::Inline, 2);
    let mut head = scripted_srb(LU0, Behaviour::Inline, 3);
    head.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
    head.queue_action = QueueAction::HeadOfQueue;
    h.submit_srb(head);
    h.assert_nothing_completes();
    h.script.fire(FireOrder::All);
    let ids: Vec<u64> = h.wait(3).iter().map(|s| s.original_request).collect();
    assert_eq!(ids, vec![1, 3, 2]);
}
