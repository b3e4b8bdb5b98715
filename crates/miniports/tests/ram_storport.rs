//! The ram miniport under the Storport model (`port::initialize_storport`): reads and writes
//! through the port, and many requests in flight from several submitting threads.

use std::sync::Arc;
use std::time::Duration;

use device::backend::RamBackend;
use device::{LogicalUnit, LuConfig};
use miniports::ram::{RamMiniport, single_adapter};
use port::testing::CollectingSink;
use port::{Adapter, Address, DataDirection, PortOptions, Srb, SrbFlags, SrbStatus};

const BLOCKS: u64 = 4096;
const LU0: Address = Address::new(0, 0, 0);
const LU1: Address = Address::new(0, 1, 0);

fn ram_lu() -> Arc<LogicalUnit> {
    Arc::new(LogicalUnit::new(
        LuConfig::default(),
        Arc::new(RamBackend::new(BLOCKS, 512).unwrap()),
    ))
}

fn storport_adapter() -> Adapter {
    let hw = single_adapter(vec![(LU0, ram_lu()), (LU1, ram_lu())]);
    let options = PortOptions {
        tick: None,
        ..PortOptions::default()
    };
    port::initialize_storport::<RamMiniport>(hw, options)
        .expect("ram adapter under Storport")
        .remove(0)
}

fn write10(address: Address, lba: u32, blocks: u16, fill: u8, id: u64) -> Srb {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    let len = blocks as usize * 512;
    let mut srb = Srb::execute_scsi(
        address,
        &[0x2A, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0],
    )
    .unwrap()
    .with_data(vec![fill; len], len as u32, DataDirection::Out);
    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    srb.original_request = id;
    srb
}

fn read10(address: Address, lba: u32, blocks: u16, id: u64) -> Srb {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    let len = blocks as usize * 512;
    let mut srb = Srb::execute_scsi(
        address,
        &[0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0],
    )
    .unwrap()
    .with_data(vec![0; len], len as u32, DataDirection::In);
    srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    srb.original_request = id;
    srb
}

/// Clears the power-on unit attention of `address`.
fn clear_unit_attention(a: &Adapter, address: Address) {
    let mut tur = Srb::execute_scsi(address, &[0, 0, 0, 0, 0, 0]).unwrap();
    tur.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    for _ in 0..3 {
        let r = a.execute_and_wait(tur.clone()).unwrap();
        if r.srb_status.status() == SrbStatus::SUCCESS {
            return;
        }
    }
    panic!("unit attention did not clear");
}

#[test]
fn the_scan_finds_both_lus_under_storport() {
    let a = storport_adapter();
    assert!(a.is_storport());
    assert!(a.is_full_duplex(), "the ram miniport asks for full duplex");
    let found: Vec<Address> = a.logical_units().iter().map(|l| l.address).collect();
    assert_eq!(found, vec![LU0, LU1]);
    a.shutdown().unwrap();
}

#[test]
fn write_then_read_back_under_storport() {
    let a = storport_adapter();
    clear_unit_attention(&a, LU0);
    let w = a.execute_and_wait(write10(LU0, 100, 8, 0x3C, 1)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
    let r = a.execute_and_wait(read10(LU0, 100, 8, 2)).unwrap();
    assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
    assert_eq!(r.data_transfer_length, 4096);
    assert!(r.data.iter().all(|&b| b == 0x3C));
    // Out of range: CHECK CONDITION with autosense (Storport forces AutoRequestSense).
    let bad = a
        .execute_and_wait(read10(LU0, BLOCKS as u32, 1, 3))
        .unwrap();
    assert_eq!(bad.srb_status.status(), SrbStatus::ERROR);
    assert!(bad.srb_status.autosense_valid());
    assert_eq!(bad.sense()[12], 0x21, "LBA OUT OF RANGE");
    a.shutdown().unwrap();
}

#[test]
fn many_concurrent_requests_from_several_threads_complete_exactly_once() {
    let a = storport_adapter();
    clear_unit_attention(&a, LU0);
    clear_unit_attention(&a, LU1);
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 500;
    let sink = CollectingSink::new();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let submitter = a.submitter(sink.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let id = t * 10_000 + i;
                    let address = if t % 2 == 0 { LU0 } else { LU1 };
                    // Each thread writes its own block range, then reads it back.
                    let lba = (t * 64 + (i % 64)) as u32;
                    let srb = if i % 2 == 0 {
                        write10(address, lba, 1, t as u8 + 1, id)
                    } else {
                        read10(address, lba, 1, id)
                    };
                    submitter.submit(srb);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = (THREADS * PER_THREAD) as usize;
    assert_eq!(sink.wait_for(total, Duration::from_secs(20)), total);
    let done = sink.take();
    assert_eq!(done.len(), total, "no extra completions");
    let mut ids: Vec<u64> = done.iter().map(|s| s.original_request).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "every request exactly once");
    assert!(
        done.iter()
            .all(|s| s.srb_status.status() == SrbStatus::SUCCESS)
    );
    // Every block a thread wrote (the even ones of its range) reads back as its pattern.
    for t in 0..THREADS {
        let address = if t % 2 == 0 { LU0 } else { LU1 };
        let r = a
            .execute_and_wait(read10(address, (t * 64) as u32, 64, 1))
            .unwrap();
        assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
        for (block, data) in r.data.chunks(512).enumerate().step_by(2) {
            assert!(
                data.iter().all(|&b| b == t as u8 + 1),
                "thread {t} block {block}"
            );
        }
    }
    assert_eq!(a.port_counters().late_completions, 0);
    a.shutdown().unwrap();
}

#[test]
fn a_lower_queue_depth_still_completes_everything() {
    let hw = single_adapter(vec![(LU0, ram_lu())]);
    let options = PortOptions {
        tick: None,
        number_of_requests: Some(4),
        ..PortOptions::default()
    };
    let a = port::initialize_storport::<RamMiniport>(hw, options)
        .unwrap()
        .remove(0);
    clear_unit_attention(&a, LU0);
    let sink = CollectingSink::new();
    let s = a.submitter(sink.clone());
    for i in 0..200 {
        s.submit(read10(LU0, i, 1, i as u64));
    }
    assert_eq!(sink.wait_for(200, Duration::from_secs(10)), 200);
    assert!(
        sink.take()
            .iter()
            .all(|s| s.srb_status.status() == SrbStatus::SUCCESS)
    );
    a.shutdown().unwrap();
}

#[test]
fn bus_reset_and_stop_restart_under_storport() {
    let a = storport_adapter();
    clear_unit_attention(&a, LU0);
    let reset = a
        .execute_and_wait(Srb::function(port::SrbFunction::ResetBus, LU0))
        .unwrap();
    assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
    // The hold-off after the reset, then the LU reports the reset as a unit attention.
    for _ in 0..=a.options().reset_hold_off_ticks {
        a.tick();
    }
    let mut tur = Srb::execute_scsi(LU0, &[0, 0, 0, 0, 0, 0]).unwrap();
    tur.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    let ua = a.execute_and_wait(tur).unwrap();
    assert_eq!(ua.scsi_status, 2);
    assert_eq!(ua.sense()[2] & 0x0F, 6, "UNIT ATTENTION");
    // Stop holds requests; restart runs them.
    a.stop(Duration::from_secs(5)).unwrap();
    let sink = CollectingSink::new();
    a.submitter(sink.clone()).submit(read10(LU0, 0, 1, 9));
    assert_eq!(
        sink.wait_for(1, Duration::from_millis(50)),
        0,
        "held while stopped"
    );
    a.restart(Duration::from_secs(5)).unwrap();
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)), 1);
    assert_eq!(sink.take()[0].srb_status.status(), SrbStatus::SUCCESS);
    a.shutdown().unwrap();
}

#[test]
fn the_port_options_can_override_the_synchronization_model() {
    let hw = single_adapter(vec![(LU0, ram_lu())]);
    let options = PortOptions {
        tick: None,
        synchronization_model: Some(port::SynchronizationModel::HalfDuplex),
        ..PortOptions::default()
    };
    let a = port::initialize_storport::<RamMiniport>(hw, options)
        .unwrap()
        .remove(0);
    assert!(a.is_storport());
    assert!(!a.is_full_duplex());
    clear_unit_attention(&a, LU0);
    let w = a.execute_and_wait(write10(LU0, 7, 2, 0x77, 1)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
    let r = a.execute_and_wait(read10(LU0, 7, 2, 2)).unwrap();
    assert!(r.data.iter().all(|&b| b == 0x77));
    a.shutdown().unwrap();
}

#[test]
fn the_null_miniport_runs_under_storport_too() {
    use miniports::null::{NullMiniport, null_lu, single_adapter as null_adapter};
    let hw = null_adapter(vec![
        null_lu(LU0, LuConfig::default(), BLOCKS, 512).unwrap(),
    ]);
    let options = PortOptions {
        tick: None,
        ..PortOptions::default()
    };
    let a = port::initialize_storport::<NullMiniport>(hw, options)
        .unwrap()
        .remove(0);
    assert!(a.is_storport() && a.is_full_duplex());
    clear_unit_attention(&a, LU0);
    let w = a.execute_and_wait(write10(LU0, 1, 1, 0xEE, 1)).unwrap();
    assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
    let mut r = read10(LU0, 1, 1, 2);
    r.data.fill(0x11);
    let r = a.execute_and_wait(r).unwrap();
    assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
    assert!(r.data.iter().all(|&b| b == 0), "null reads return zeroes");
    a.shutdown().unwrap();
}
