//! The `null` miniport: the [`ram`](crate::ram) miniport over [`NullBackend`] LUs.
//!
//! A null disk stores nothing (reads return zeroes, writes are discarded), so an adapter of
//! null LUs measures the overhead of everything above the backend: the port, the device
//! emulation, the transport. The routine table is the RAM miniport's: every request completes
//! in `start_io`.

use std::sync::Arc;

use device::backend::NullBackend;
use device::{LogicalUnit, LuConfig, LuConfigError};
use port::Address;

use crate::{DiskAdapterConfig, DiskLu};

/// The null miniport is the RAM miniport; the backend makes the difference.
pub type NullMiniport = crate::ram::RamMiniport;

/// A null LU at `address` of `num_blocks` blocks of `block_size` bytes (512 or 4096).
pub fn null_lu(
    address: Address,
    config: LuConfig,
    num_blocks: u64,
    block_size: u32,
) -> Result<DiskLu, LuConfigError> {
    let backend = NullBackend::new(num_blocks, block_size).ok_or(if num_blocks == 0 {
        LuConfigError::Empty
    } else {
        LuConfigError::BlockSize(block_size)
    })?;
    let lu = LogicalUnit::try_new(config, Arc::new(backend))?;
    Ok(DiskLu {
        address,
        lu: Arc::new(lu),
    })
}

/// The `HwContext` for one null adapter with `lus`.
pub fn single_adapter(lus: Vec<DiskLu>) -> DiskAdapterConfig {
    DiskAdapterConfig::single(lus)
}

#[cfg(test)]
mod tests {
    use port::{DataDirection, PortOptions, Srb, SrbStatus};

    use super::*;

    #[test]
    fn null_adapter_serves_reads_and_writes() {
        for bs in [512u32, 4096] {
            let addr = Address::new(0, 0, 0);
            let lu = null_lu(addr, LuConfig::default(), 1 << 20, bs).unwrap();
            let options = PortOptions {
                tick: None,
                ..PortOptions::default()
            };
            let a = port::initialize::<NullMiniport>(single_adapter(vec![lu.clone()]), options)
                .unwrap()
                .remove(0);
            assert_eq!(a.logical_units().len(), 1);
            // READ CAPACITY(10): the null disk's geometry.
            let rc = Srb::execute_scsi(addr, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap()
                .with_data(vec![0; 8], 8, DataDirection::In);
            let rc = a.execute_and_wait(rc).unwrap();
            assert_eq!(rc.srb_status.status(), SrbStatus::SUCCESS);
            assert_eq!(rc.data[..4], ((1u32 << 20) - 1).to_be_bytes());
            assert_eq!(rc.data[4..8], bs.to_be_bytes());
            // A write is accepted and discarded; a read returns zeroes over a dirty buffer.
            let w = Srb::execute_scsi(addr, &[0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0])
                .unwrap()
                .with_data(vec![0xEE; bs as usize], bs, DataDirection::Out);
            assert_eq!(
                a.execute_and_wait(w).unwrap().srb_status.status(),
                SrbStatus::SUCCESS
            );
            let r = Srb::execute_scsi(addr, &[0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0])
                .unwrap()
                .with_data(vec![0xEE; bs as usize], bs, DataDirection::In);
            let r = a.execute_and_wait(r).unwrap();
            assert_eq!(r.srb_status.status(), SrbStatus::SUCCESS);
            assert!(r.data.iter().all(|&b| b == 0));
            a.shutdown().unwrap();
        }
    }

    #[test]
    fn null_lu_refuses_bad_geometry() {
        let addr = Address::new(0, 0, 0);
        assert!(matches!(
            null_lu(addr, LuConfig::default(), 0, 512),
            Err(LuConfigError::Empty)
        ));
        assert!(matches!(
            null_lu(addr, LuConfig::default(), 8, 1000),
            Err(LuConfigError::BlockSize(1000))
        ));
    }
}
