//! Building the adapter and the disk a benchmark runs against.

use std::path::Path;
use std::sync::Arc;

use class::Disk;
use device::backend::{FileBackend, NullBackend, RamBackend};
use device::{BlockBackend, LogicalUnit, LuConfig};
use miniports::file::{FileAdapterConfig, FileLu, FileMiniport};
use miniports::ram::RamMiniport;
use port::{Adapter, Address, PortOptions};

use crate::{BenchConfig, BenchError, BenchReport, MiniportKind, Model, Progress};

/// The LU every benchmark adapter has.
const LU: Address = Address::new(0, 0, 0);

/// A benchmark ready to run: the adapter is up and the disk open.
#[derive(Debug)]
pub struct Bench {
    cfg: BenchConfig,
    adapter: Adapter,
    disk: Disk,
}

impl Bench {
    /// Checks `cfg`, creates the disk the miniport kind names and brings up the adapter.
    pub fn build(cfg: &BenchConfig) -> Result<Bench, BenchError> {
        validate(cfg)?;
        let lbs = cfg.logical_block_size;
        let blocks = cfg.size / u64::from(lbs);
        let bad = || BenchError::Backend(format!("cannot create a disk of {blocks} x {lbs} B"));
        match &cfg.miniport {
            MiniportKind::Null => {
                if cfg.verify {
                    return Err(BenchError::Config(
                        "verify needs a disk that keeps data (ram or file), not null".into(),
                    ));
                }
                let b = NullBackend::new(blocks, lbs).ok_or_else(bad)?;
                Self::with_backend(cfg, Arc::new(b))
            }
            MiniportKind::Ram => {
                let b = RamBackend::new(blocks, lbs).ok_or_else(bad)?;
                Self::with_backend(cfg, Arc::new(b))
            }
            MiniportKind::File { path } => Self::file(cfg, path),
        }
    }

    /// The file miniport on `path`: an existing file keeps its size (its data is overwritten
    /// by write patterns); a missing or empty one is created with `size` bytes. Verify mode
    /// starts from a fresh (sparse, zero) file, since it expects unwritten blocks to read as
    /// zeroes.
    fn file(cfg: &BenchConfig, path: &Path) -> Result<Bench, BenchError> {
        let io = |e: std::io::Error| BenchError::Backend(format!("{}: {e}", path.display()));
        if cfg.verify {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(io)?;
        }
        let file = FileBackend::open(path, cfg.logical_block_size, Some(cfg.size))
            .map_err(|e| BenchError::Backend(e.to_string()))?;
        let lu = FileLu::new(LU, LuConfig::default(), Arc::new(file))
            .map_err(|e| BenchError::Backend(e.to_string()))?;
        // Storport: one concurrent channel (one io_uring and one message interrupt) per
        // submitting thread; SCSI Port has no channels.
        let channels = match cfg.model {
            Model::Storport => cfg.threads as usize,
            Model::Scsiport => 1,
        };
        let hw = FileAdapterConfig::single(vec![lu]).with_channels(channels);
        let adapter = match cfg.model {
            Model::Scsiport => port::initialize::<FileMiniport>(hw, port_options(cfg))?,
            Model::Storport => port::initialize_storport::<FileMiniport>(hw, port_options(cfg))?,
        }
        .remove(0);
        Self::open(cfg, adapter)
    }

    /// Brings up a ram-miniport adapter (under `cfg.model`) over `backend` and opens its disk.
    pub fn with_backend(
        cfg: &BenchConfig,
        backend: Arc<dyn BlockBackend>,
    ) -> Result<Bench, BenchError> {
        validate(cfg)?;
        let lu = LogicalUnit::try_new(LuConfig::default(), backend)
            .map_err(|e| BenchError::Backend(e.to_string()))?;
        let hw = miniports::ram::single_adapter(vec![(LU, Arc::new(lu))]);
        let adapter = match cfg.model {
            Model::Scsiport => port::initialize::<RamMiniport>(hw, port_options(cfg))?,
            Model::Storport => port::initialize_storport::<RamMiniport>(hw, port_options(cfg))?,
        }
        .remove(0);
        Self::open(cfg, adapter)
    }

    fn open(cfg: &BenchConfig, adapter: Adapter) -> Result<Bench, BenchError> {
        let disk = Disk::open(&adapter, LU)?;
        if !u64::from(cfg.block_size).is_multiple_of(u64::from(disk.block_size())) {
            let _ = adapter.shutdown();
            return Err(BenchError::Config(format!(
                "block size {} is not a multiple of the disk's {}-byte blocks",
                cfg.block_size,
                disk.block_size()
            )));
        }
        if disk.capacity() / u64::from(cfg.block_size) < u64::from(cfg.threads) {
            let _ = adapter.shutdown();
            return Err(BenchError::Config(
                "the disk holds fewer blocks of block_size than there are threads".into(),
            ));
        }
        Ok(Bench {
            cfg: cfg.clone(),
            adapter,
            disk,
        })
    }

    /// The opened disk.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Runs the I/O phase and shuts the adapter down.
    pub fn run(self, progress: impl FnMut(&Progress)) -> Result<BenchReport, BenchError> {
        let cfg = &self.cfg;
        let disk = &self.disk;
        let report = if cfg.raw {
            crate::drive(cfg, progress, |t, shared| {
                crate::worker::raw_thread(cfg, disk, t, shared)
            })
        } else {
            crate::drive(cfg, progress, |t, shared| {
                crate::worker::class_thread(cfg, disk, t, shared)
            })
        };
        let _ = self.adapter.shutdown();
        Ok(report)
    }
}

fn port_options(cfg: &BenchConfig) -> PortOptions {
    let slots = (cfg.queue_depth.saturating_mul(cfg.threads)).saturating_add(16);
    PortOptions {
        number_of_requests: Some(slots.clamp(256, 65_536)),
        ..PortOptions::default()
    }
}

fn validate(cfg: &BenchConfig) -> Result<(), BenchError> {
    let err = |m: &str| Err(BenchError::Config(m.into()));
    if !matches!(cfg.logical_block_size, 512 | 4096) {
        return err("logical_block_size must be 512 or 4096");
    }
    if cfg.block_size == 0 || !cfg.block_size.is_multiple_of(cfg.logical_block_size) {
        return err("block_size must be a non-zero multiple of logical_block_size");
    }
    if cfg.block_size > 64 << 20 {
        return err("block_size is limited to 64 MiB");
    }
    if !(1..=4096).contains(&cfg.queue_depth) {
        return err("queue_depth must be 1..=4096");
    }
    if !(1..=256).contains(&cfg.threads) {
        return err("threads must be 1..=256");
    }
    if cfg.size < u64::from(cfg.block_size) * u64::from(cfg.threads) {
        return err("size must hold at least one block_size per thread");
    }
    if let crate::Pattern::Mixed { read_percent } = cfg.pattern
        && read_percent > 100
    {
        return err("read_percent must be 0..=100");
    }
    Ok(())
}
