//! The `ram` miniport: virtual disks whose backend answers without waiting (RAM, null).
//!
//! Every request is executed and completed inside [`start_io`](RamMiniport::start_io), under
//! the adapter's interrupt lock, followed by NextRequest (or NextLuRequest when the adapter runs
//! tagged): the seed's "complete during HwStartIo" fast path. There is no interrupt routine.
//!
//! The adapter runs under both I/O models: [`port::initialize`] (SCSI Port) and
//! [`port::initialize_storport`] (Storport). Under Storport it asks for full duplex: its
//! `start_io_full_duplex` executes and completes the request in hand under the StartIo lock
//! only — the LUs are thread-safe devices in [`RamShared`], and there is no interrupt routine
//! to synchronize with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use device::{LogicalUnit, ResetKind};
use port::{
    AdapterControl, AdapterControlStatus, AdapterControlType, AddressFilter, FindAdapterContext,
    FindAdapterResult, HwInitializationData, Miniport, PortConfiguration, PortContext, Srb,
    SrbFunction, SrbRef, SrbStatus, StartIoContext, StorportMiniport, SynchronizationModel,
};

use crate::{DiskAdapterConfig, DiskLu, execute_srb, find_lu};

/// Device extension of a RAM (or null) disk adapter. Everything it has is in its
/// [`RamShared`] part: the LUs are thread-safe devices, so the Storport paths that run without
/// the interrupt lock (`build_io`, full-duplex `start_io`) use the same state.
#[derive(Debug)]
pub struct RamMiniport {
    shared: Arc<RamShared>,
}

/// The part of a RAM adapter shared by every routine (`StorportMiniport::Shared`).
#[derive(Debug)]
pub struct RamShared {
    lus: Vec<DiskLu>,
    /// Set by ScsiStopAdapter, cleared by ScsiRestartAdapter.
    stopped: AtomicBool,
}

impl RamShared {
    fn lu_reset(&self, filter: AddressFilter, kind: ResetKind) {
        for d in &self.lus {
            if filter.matches(d.address) {
                d.lu.reset(kind);
            }
        }
    }

    /// Executes `srb` (any function the adapter handles) and sets its status.
    fn execute(&self, srb: &mut Srb) {
        let address = srb.address;
        match srb.function {
            SrbFunction::ExecuteScsi => match find_lu(&self.lus, address) {
                Some(lu) if !self.stopped.load(Ordering::Acquire) => execute_srb(lu, srb),
                Some(_) => srb.srb_status = SrbStatus::NOT_POWERED,
                None => srb.srb_status = SrbStatus::SELECTION_TIMEOUT,
            },
            // Requests complete inside start_io: there is never one to abort.
            SrbFunction::AbortCommand => srb.srb_status = SrbStatus::ABORT_FAILED,
            SrbFunction::ResetLogicalUnit => {
                srb.srb_status = SrbStatus::SUCCESS;
                self.lu_reset(AddressFilter::lu(address), ResetKind::LogicalUnitReset);
            }
            SrbFunction::ResetDevice => {
                srb.srb_status = SrbStatus::SUCCESS;
                self.lu_reset(
                    AddressFilter::target(address.path_id, address.target_id),
                    ResetKind::TargetReset,
                );
            }
            SrbFunction::Flush | SrbFunction::Shutdown => {
                srb.srb_status = flush_all(&self.lus);
            }
            _ => srb.srb_status = SrbStatus::INVALID_REQUEST,
        }
    }
}

impl RamMiniport {
    /// The LUs of this adapter.
    pub fn logical_units(&self) -> &[DiskLu] {
        &self.shared.lus
    }
}

impl Miniport for RamMiniport {
    type HwContext = DiskAdapterConfig;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        HwInitializationData {
            tagged_queuing: true,
            auto_request_sense: true,
            multiple_request_per_lu: true,
            ..HwInitializationData::default()
        }
    }

    fn find_adapter(
        hw: &mut DiskAdapterConfig,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        let Some(lus) = crate::next_adapter(&mut hw.adapters, ctx) else {
            return FindAdapterResult::NotFound;
        };
        if lus.is_empty() {
            return FindAdapterResult::BadConfig;
        }
        configure(config, &lus, hw.maximum_transfer_length);
        // Storport: start_io needs nothing the interrupt lock guards (ignored by SCSI Port).
        config.synchronization_model = SynchronizationModel::FullDuplex;
        FindAdapterResult::Found(RamMiniport {
            shared: Arc::new(RamShared {
                lus,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        true
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) -> bool {
        let Some(srb) = port.srb_mut(&r) else {
            return false;
        };
        let address = srb.address;
        let tagged = srb.queue_tag != port::SP_UNTAGGED;
        self.shared.execute(srb);
        port.request_complete(r);
        if tagged {
            port.next_lu_request(address);
        } else {
            port.next_request();
        }
        true
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, path_id: u8) -> bool {
        // Nothing is ever outstanding here; the LUs see the reset as a unit attention.
        self.shared
            .lu_reset(AddressFilter::bus(path_id), ResetKind::TargetReset);
        port.next_request();
        true
    }

    fn adapter_control(
        &mut self,
        _port: &mut PortContext<'_, Self>,
        control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        match control {
            AdapterControl::QuerySupportedControlTypes(list) => {
                list.set(AdapterControlType::QuerySupportedControlTypes);
                list.set(AdapterControlType::StopAdapter);
                list.set(AdapterControlType::RestartAdapter);
            }
            AdapterControl::StopAdapter => self.shared.stopped.store(true, Ordering::Release),
            AdapterControl::RestartAdapter => self.shared.stopped.store(false, Ordering::Release),
            AdapterControl::SetBootConfig | AdapterControl::SetRunningConfig => {}
        }
        AdapterControlStatus::Success
    }
}

/// The RAM adapter under the Storport model. `build_io` has nothing to prepare (the default);
/// `start_io` executes and completes the request in hand, under the StartIo lock only.
impl StorportMiniport for RamMiniport {
    type Shared = RamShared;

    fn shared(&self) -> Arc<RamShared> {
        self.shared.clone()
    }

    fn start_io_full_duplex(
        shared: &RamShared,
        port: &mut StartIoContext<'_, Self>,
        r: SrbRef,
    ) -> bool {
        let Some(srb) = port.srb_mut(&r) else {
            return false;
        };
        shared.execute(srb);
        port.request_complete(r);
        true
    }
}

/// Fills in the port configuration for an adapter with `lus`.
pub(crate) fn configure(config: &mut PortConfiguration, lus: &[DiskLu], max_transfer: u32) {
    let max = |f: fn(&DiskLu) -> u8| lus.iter().map(f).max().unwrap_or(0);
    config.number_of_buses = max(|d| d.address.path_id) + 1;
    config.maximum_number_of_targets = max(|d| d.address.target_id).saturating_add(1).max(1);
    config.maximum_number_of_logical_units = max(|d| d.address.lun).saturating_add(1).max(1);
    // The adapter is not a device on its own bus.
    config.initiator_bus_id = [0xFF; 8];
    if max_transfer != 0 {
        config.maximum_transfer_length = max_transfer;
    }
    // The "DMA" is a memcpy into one contiguous buffer: any transfer up to the maximum length
    // is one piece, so declare enough breaks for it in 4 KiB pages (the class driver splits on
    // `(breaks + 1) * 4 KiB` otherwise).
    config.number_of_physical_breaks = config.maximum_transfer_length.div_ceil(4096).max(17);
    config.caches_data = true;
    config.scatter_gather = true;
}

fn flush_all(lus: &[DiskLu]) -> SrbStatus {
    let mut status = SrbStatus::SUCCESS;
    for d in lus {
        if d.lu.backend().flush().is_err() {
            status = SrbStatus::ERROR;
        }
    }
    status
}

/// Builds the `HwContext` for one RAM adapter from `(address, lu)` pairs.
pub fn single_adapter(lus: Vec<(port::Address, Arc<LogicalUnit>)>) -> DiskAdapterConfig {
    DiskAdapterConfig::single(
        lus.into_iter()
            .map(|(address, lu)| DiskLu { address, lu })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use device::backend::RamBackend;
    use device::{LogicalUnit, LuConfig};
    use port::{Address, DataDirection, PortOptions, Srb, SrbStatus};

    use super::*;

    fn adapter(blocks: u64) -> (port::Adapter, Arc<LogicalUnit>) {
        let lu = Arc::new(LogicalUnit::new(
            LuConfig::default(),
            Arc::new(RamBackend::new(blocks, 512).unwrap()),
        ));
        let hw = single_adapter(vec![(Address::new(0, 0, 0), lu.clone())]);
        let options = PortOptions {
            tick: None,
            ..PortOptions::default()
        };
        let mut adapters = port::initialize::<RamMiniport>(hw, options).unwrap();
        (adapters.remove(0), lu)
    }

    #[test]
    fn scan_finds_the_lu_through_inquiry() {
        let (a, _lu) = adapter(2048);
        let lus = a.logical_units();
        assert_eq!(lus.len(), 1);
        assert_eq!(lus[0].address, Address::new(0, 0, 0));
        assert_eq!(lus[0].device_type(), 0);
        assert_eq!(&lus[0].inquiry[8..16], b"SCSIPORT");
    }

    #[test]
    fn write_then_read_through_the_port() {
        let (a, _lu) = adapter(2048);
        let addr = Address::new(0, 0, 0);
        let data = vec![0x5A; 4096];
        let w = Srb::execute_scsi(addr, &[0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0])
            .unwrap()
            .with_data(data.clone(), 4096, DataDirection::Out);
        let w = a.execute_and_wait(w).unwrap();
        assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
        let r = Srb::execute_scsi(addr, &[0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])
            .unwrap()
            .with_data(vec![0; 4096], 4096, DataDirection::In);
        let r = a.execute_and_wait(r).unwrap();
        assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
        assert_eq!(r.data, data);
    }

    #[test]
    fn check_condition_comes_back_with_autosense() {
        let (a, _lu) = adapter(16);
        // READ(10) beyond capacity: LBA OUT OF RANGE.
        let mut r = Srb::execute_scsi(Address::new(0, 0, 0), &[0x28, 0, 0, 0, 1, 0, 0, 0, 1, 0])
            .unwrap()
            .with_data(vec![0; 512], 512, DataDirection::In);
        r.flags.insert(port::SrbFlags::NO_QUEUE_FREEZE);
        let r = a.execute_and_wait(r).unwrap();
        assert_eq!(r.srb_status.status(), SrbStatus::ERROR);
        assert!(r.srb_status.autosense_valid());
        assert_eq!(r.scsi_status, 2);
        let sense = r.sense();
        assert_eq!(sense[2] & 0x0F, 5, "ILLEGAL REQUEST");
        assert_eq!((sense[12], sense[13]), (0x21, 0x00));
    }

    #[test]
    fn bus_reset_raises_unit_attention() {
        let (a, _lu) = adapter(16);
        let addr = Address::new(0, 0, 0);
        // Consume the power-on unit attention first.
        let mut tur = Srb::execute_scsi(addr, &[0, 0, 0, 0, 0, 0]).unwrap();
        tur.flags.insert(port::SrbFlags::NO_QUEUE_FREEZE);
        let _ = a.execute_and_wait(tur.clone()).unwrap();
        let ok = a.execute_and_wait(tur.clone()).unwrap();
        assert_eq!(ok.srb_status.status(), SrbStatus::SUCCESS);
        let reset = a
            .execute_and_wait(Srb::function(port::SrbFunction::ResetBus, addr))
            .unwrap();
        assert_eq!(reset.srb_status.status(), SrbStatus::SUCCESS);
        // The port holds the bus off for a few ticks after a reset.
        for _ in 0..=a.options().reset_hold_off_ticks {
            a.tick();
        }
        let ua = a.execute_and_wait(tur).unwrap();
        assert_eq!(ua.scsi_status, 2);
        assert_eq!(ua.sense()[2] & 0x0F, 6, "UNIT ATTENTION");
        assert_eq!(ua.sense()[12], 0x29);
    }
}
