//! A test miniport: the ram miniport's behaviour (execute on the emulated LU inside
//! `start_io`) plus scripted faults on chosen commands and a log of the I/O CDBs it saw.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use device::backend::{BackendResult, BlockBackend, RamBackend};
use device::{LogicalUnit, LuConfig};
use miniports::{DiskLu, execute_srb, find_lu};
use parking_lot::Mutex;
use port::{
    Adapter, Address, FindAdapterContext, FindAdapterResult, HwInitializationData, Miniport,
    PortConfiguration, PortContext, PortOptions, SrbFunction, SrbRef, SrbStatus, scsi_status,
};

/// What a scripted fault does to the request it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SrbStatus BUSY.
    SrbBusy,
    /// SrbStatus ERROR with this SCSI status (BUSY, TASK SET FULL, RESERVATION CONFLICT).
    ScsiStatus(u8),
    /// CHECK CONDITION with fixed-format sense key / ASC / ASCQ.
    Check(u8, u8, u8),
}

/// The test's handle on the adapter's "hardware".
#[derive(Debug, Default)]
pub struct Faults {
    /// Faults still to fire, each for the next command with this opcode (or any I/O command).
    queue: Mutex<VecDeque<(Option<u8>, Fault)>>,
    /// Every READ / WRITE / WRITE SAME / UNMAP / SYNCHRONIZE CACHE CDB started.
    log: Mutex<Vec<Vec<u8>>>,
    /// Faults fired.
    pub fired: AtomicU64,
}

impl Faults {
    /// Arms `fault` for the next I/O command (READ, WRITE, WRITE SAME, UNMAP, SYNC CACHE).
    pub fn push(&self, fault: Fault) {
        self.queue.lock().push_back((None, fault));
    }
    /// Arms `fault` for the next command with `opcode` (any command, e.g. READ CAPACITY).
    pub fn push_for(&self, opcode: u8, fault: Fault) {
        self.queue.lock().push_back((Some(opcode), fault));
    }
    /// Disarms everything.
    pub fn clear(&self) {
        self.queue.lock().clear();
    }
    /// Takes the CDB log.
    pub fn take_log(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.log.lock())
    }
    fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }
}

const IO_OPCODES: [u8; 10] = [0x28, 0x2A, 0x88, 0x8A, 0x41, 0x93, 0x42, 0x35, 0x91, 0xA8];

/// `HwContext` of the fault miniport.
#[derive(Debug)]
pub struct FaultHw {
    pub lus: Vec<DiskLu>,
    pub maximum_transfer_length: u32,
    pub number_of_physical_breaks: u32,
    pub faults: Arc<Faults>,
}

/// The miniport.
#[derive(Debug)]
pub struct FaultMiniport {
    lus: Vec<DiskLu>,
    faults: Arc<Faults>,
}

impl Miniport for FaultMiniport {
    type HwContext = Option<FaultHw>;
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
        hw: &mut Option<FaultHw>,
        _ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        let Some(hw) = hw.take() else {
            return FindAdapterResult::NotFound;
        };
        config.number_of_buses = 1;
        config.maximum_number_of_targets = 1;
        config.maximum_number_of_logical_units = 1;
        config.initiator_bus_id = [0xFF; 8];
        config.maximum_transfer_length = hw.maximum_transfer_length;
        config.number_of_physical_breaks = hw.number_of_physical_breaks;
        config.scatter_gather = true;
        FindAdapterResult::Found(FaultMiniport {
            lus: hw.lus,
            faults: hw.faults,
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
        match srb.function {
            SrbFunction::ExecuteScsi => {
                let op = srb.cdb.opcode();
                let io = IO_OPCODES.contains(&op);
                if io {
                    self.faults.log.lock().push(srb.cdb.as_slice().to_vec());
                }
                let fault = {
                    let mut q = self.faults.queue.lock();
                    let hit = q
                        .front()
                        .is_some_and(|(want, _)| want.map_or(io, |w| w == op));
                    if hit {
                        q.pop_front().map(|(_, f)| f)
                    } else {
                        None
                    }
                };
                match (fault, find_lu(&self.lus, address)) {
                    (_, None) => srb.srb_status = SrbStatus::SELECTION_TIMEOUT,
                    (Some(f), Some(_)) => {
                        self.faults.fired.fetch_add(1, Ordering::Relaxed);
                        match f {
                            Fault::SrbBusy => srb.srb_status = SrbStatus::BUSY,
                            Fault::ScsiStatus(s) => {
                                srb.srb_status = SrbStatus::ERROR;
                                srb.scsi_status = s;
                            }
                            Fault::Check(key, asc, ascq) => {
                                let mut sense = [0u8; 18];
                                sense[0] = 0x70;
                                sense[2] = key;
                                sense[7] = 10;
                                sense[12] = asc;
                                sense[13] = ascq;
                                srb.set_check_condition(&sense);
                            }
                        }
                        srb.data_transfer_length = 0;
                    }
                    (None, Some(lu)) => execute_srb(lu, srb),
                }
            }
            _ => srb.srb_status = SrbStatus::SUCCESS,
        }
        let _ = scsi_status::GOOD;
        port.request_complete(r);
        port.next_lu_request(address);
        true
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, _path_id: u8) -> bool {
        port.next_request();
        true
    }
}

/// The fault miniport also runs under the Storport model (nothing to build before start_io).
impl port::StorportMiniport for FaultMiniport {
    type Shared = ();

    fn shared(&self) -> Arc<()> {
        Arc::new(())
    }
}

/// A backend whose size can grow at run time (up to the RAM backend under it).
#[derive(Debug)]
pub struct GrowingBackend {
    pub inner: RamBackend,
    pub blocks: AtomicU64,
}

impl BlockBackend for GrowingBackend {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.blocks.load(Ordering::Acquire)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BackendResult<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BackendResult<()> {
        self.inner.write_at(offset, buf, fua)
    }
    fn flush(&self) -> BackendResult<()> {
        self.inner.flush()
    }
    fn is_thin(&self) -> bool {
        self.inner.is_thin()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        self.inner.unmap(lba, blocks)
    }
}

/// The LU's address in every test.
pub const LU: Address = Address::new(0, 0, 0);

/// An adapter with one LU over `backend`, the given transfer limits, manual ticks and BUSY
/// handed back at once (busy_retry_limit 0), so the class driver's own retries are visible.
pub fn adapter(
    backend: Arc<dyn BlockBackend>,
    maximum_transfer_length: u32,
    number_of_physical_breaks: u32,
) -> (Adapter, Arc<LogicalUnit>, Arc<Faults>) {
    adapter_model(
        backend,
        maximum_transfer_length,
        number_of_physical_breaks,
        false,
    )
}

/// [`adapter`] under the SCSI Port model or (`storport`) the Storport model. Under Storport the
/// port retries BUSY itself without limit, on ticks; tests of the class driver's BUSY handling
/// use the SCSI Port model.
pub fn adapter_model(
    backend: Arc<dyn BlockBackend>,
    maximum_transfer_length: u32,
    number_of_physical_breaks: u32,
    storport: bool,
) -> (Adapter, Arc<LogicalUnit>, Arc<Faults>) {
    let lu = Arc::new(LogicalUnit::new(LuConfig::default(), backend));
    let faults = Arc::new(Faults::default());
    let hw = FaultHw {
        lus: vec![DiskLu {
            address: LU,
            lu: lu.clone(),
        }],
        maximum_transfer_length,
        number_of_physical_breaks,
        faults: faults.clone(),
    };
    let options = PortOptions {
        tick: None,
        busy_retry_limit: 0,
        ..PortOptions::default()
    };
    let mut adapters = if storport {
        port::initialize_storport::<FaultMiniport>(Some(hw), options)
    } else {
        port::initialize::<FaultMiniport>(Some(hw), options)
    }
    .expect("adapter");
    assert_eq!(adapters[0].is_storport(), storport);
    (adapters.remove(0), lu, faults)
}

/// A RAM-backed adapter of `blocks` blocks of 512 bytes with 1 MiB transfers and no break limit.
pub fn ram_adapter(blocks: u64) -> (Adapter, Arc<LogicalUnit>, Arc<Faults>) {
    adapter(
        Arc::new(RamBackend::new(blocks, 512).expect("ram backend")),
        1 << 20,
        port::SP_UNINITIALIZED_VALUE,
    )
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Number of faults fired so far.
pub fn fired(f: &Faults) -> u64 {
    f.fired()
}
