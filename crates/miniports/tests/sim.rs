//! The `sim` miniport through the port: I/O under both models, every fault kind, the
//! optional routines (DMA, deferred interrupt work, adapter state, stop/restart, WMI).

use std::sync::Arc;
use std::time::{Duration, Instant};

use device::backend::RamBackend;
use device::{LogicalUnit, LuConfig};
use miniports::DiskLu;
use miniports::sim::{SimAdapterConfig, SimControl, SimHwContext, SimMiniport};
use port::{Adapter, Address, DataDirection, PortOptions, Srb, SrbFlags, SrbStatus};

const LU0: Address = Address {
    path_id: 0,
    target_id: 0,
    lun: 0,
};

fn ram_lu(address: Address, blocks: u64) -> DiskLu {
    DiskLu {
        address,
        lu: Arc::new(LogicalUnit::new(
            LuConfig::default(),
            Arc::new(RamBackend::new(blocks, 512).unwrap()),
        )),
    }
}

fn options() -> PortOptions {
    PortOptions {
        tick: Some(Duration::from_millis(20)),
        reset_hold_off_ticks: 1,
        recovery_ticks: 1,
        ..PortOptions::default()
    }
}

fn start(storport: bool, f: impl FnOnce(&mut SimAdapterConfig)) -> (Adapter, SimControl) {
    let mut cfg = SimAdapterConfig::new(vec![ram_lu(LU0, 4096)]);
    f(&mut cfg);
    let control = cfg.control();
    let hw = SimHwContext::single(cfg);
    let mut adapters = if storport {
        port::initialize_storport::<SimMiniport>(hw, options()).unwrap()
    } else {
        port::initialize::<SimMiniport>(hw, options()).unwrap()
    };
    (adapters.remove(0), control)
}

fn write10(lba: u32, blocks: u16, fill: u8) -> Srb {
    let len = blocks as usize * 512;
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    let mut s = Srb::execute_scsi(LU0, &[0x2A, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0])
        .unwrap()
        .with_data(vec![fill; len], len as u32, DataDirection::Out);
    s.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s.time_out_value = 2;
    s
}

fn read10(lba: u32, blocks: u16) -> Srb {
    let len = blocks as usize * 512;
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    let mut s = Srb::execute_scsi(LU0, &[0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0])
        .unwrap()
        .with_data(vec![0; len], len as u32, DataDirection::In);
    s.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s.time_out_value = 2;
    s
}

/// Clears the power-on unit attention.
fn settle(a: &Adapter) {
    for _ in 0..3 {
        let mut tur = Srb::execute_scsi(LU0, &[0, 0, 0, 0, 0, 0]).unwrap();
        tur.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        let _ = a.execute_and_wait(tur).unwrap();
    }
}

#[test]
fn write_then_read_under_both_models() {
    for storport in [false, true] {
        let (a, c) = start(storport, |_| {});
        settle(&a);
        let before = c.counters();
        let w = a.execute_and_wait(write10(8, 4, 0xA5)).unwrap();
        assert_eq!(
            w.srb_status.status(),
            SrbStatus::SUCCESS,
            "storport={storport}"
        );
        let r = a.execute_and_wait(read10(8, 4)).unwrap();
        assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
        assert!(r.data.iter().all(|&b| b == 0xA5));
        let k = c.counters();
        assert!(k.interrupts >= before.interrupts + 2, "{k:?}");
        assert_eq!(k.dma_transfers, before.dma_transfers + 2, "{k:?}");
        assert!(k.dma_started > before.dma_started, "{k:?}");
        a.shutdown().unwrap();
    }
}
