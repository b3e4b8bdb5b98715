//! [`Disk`]: opening a logical unit as a disk, its geometry and limits, and the blocking and
//! async conveniences on top of [`DiskQueue`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use port::{Adapter, Address, DataDirection, ItNexus, SENSE_BUFFER_SIZE, Srb, SrbFlags};
use scsi::capacity::{ReadCapacity10Data, ReadCapacity16Data};
use scsi::cdb::{Inquiry, ReadCapacity10, ReadCapacity16};
use scsi::vpd::BlockLimits;

use crate::cdb;
use crate::error::{DiskError, Disposition, classify};
use crate::queue::{DiskQueue, IoCompletion, IoRequest, RetryPolicy};

/// How a disk is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// `TimeOutValue` of every request, in port ticks (seconds).
    pub timeout_secs: u32,
    /// The I_T nexus the disk's requests carry.
    pub nexus: ItNexus,
}

impl Default for DiskOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            timeout_secs: 10,
            nexus: ItNexus::default(),
        }
    }
}

/// What limits how the disk's requests are split, learned at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest READ / WRITE one SRB carries, in bytes: the adapter's MaximumTransferLength
    /// and NumberOfPhysicalBreaks, and the device's MAXIMUM TRANSFER LENGTH (VPD B0h).
    pub max_transfer_bytes: u64,
    /// Largest UNMAP descriptor, in blocks (MAXIMUM UNMAP LBA COUNT).
    pub max_unmap_blocks: u64,
    /// Largest WRITE SAME, in blocks (MAXIMUM WRITE SAME LENGTH, else 65535).
    pub max_write_same_blocks: u64,
    /// Thin provisioned (READ CAPACITY(16) LBPME): UNMAP is available.
    pub thin: bool,
}

/// The state a disk's queues share. Geometry is atomics: a capacity change seen by one queue
/// is seen by all.
#[derive(Debug)]
pub(crate) struct DiskShared {
    pub(crate) adapter: Adapter,
    pub(crate) address: Address,
    pub(crate) options: DiskOptions,
    pub(crate) tagged: bool,
    block_size: AtomicU32,
    num_blocks: AtomicU64,
    limits: Limits,
    /// Serializes capacity re-reads.
    refresh: Mutex<()>,
}

impl DiskShared {
    pub(crate) fn block_size(&self) -> u32 {
        self.block_size.load(Ordering::Acquire)
    }
    pub(crate) fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }
    pub(crate) fn capacity(&self) -> u64 {
        self.num_blocks() * u64::from(self.block_size())
    }
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Reads the capacity again (after CAPACITY DATA HAS CHANGED). Blocks the calling thread
    /// on the port; not from a completion sink.
    pub(crate) fn refresh_capacity(&self) -> Result<(), DiskError> {
        let _one = self.refresh.lock();
        let c = read_capacity(&self.adapter, self.address, &self.options)?;
        self.block_size.store(c.block_size, Ordering::Release);
        self.num_blocks.store(c.blocks, Ordering::Release);
        tracing::info!(address = %self.address, blocks = c.blocks, block_size = c.block_size, "capacity read");
        Ok(())
    }
}

struct Capacity {
    blocks: u64,
    block_size: u32,
    thin: bool,
}

/// Runs one management command (READ CAPACITY, INQUIRY) synchronously with the retry policy.
/// NO_QUEUE_FREEZE: a failure here must not stall the LU's I/O.
fn control(
    adapter: &Adapter,
    address: Address,
    options: &DiskOptions,
    cdb: &[u8],
    len: u32,
) -> Result<Vec<u8>, DiskError> {
    let mut attempt = 0;
    loop {
        let mut srb = Srb::execute_scsi(address, cdb)
            .ok_or(DiskError::NoDisk("CDB too long"))?
            .with_data(vec![0; len as usize], len, DataDirection::In);
        srb.sense_info_buffer_length = SENSE_BUFFER_SIZE as u8;
        srb.time_out_value = options.timeout_secs;
        srb.nexus = options.nexus;
        srb.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
        let done = adapter.execute_and_wait(srb)?;
        let disposition = match classify(&done) {
            // A short answer is fine for data-in management commands.
            Disposition::Fail(DiskError::ShortTransfer { .. }) => Disposition::Done,
            d => d,
        };
        match disposition {
            Disposition::Done => {
                let n = (done.data_transfer_length as usize).min(done.data.len());
                let mut data = done.data;
                data.truncate(n);
                return Ok(data);
            }
            Disposition::Retry {
                error, immediate, ..
            } => {
                if attempt >= options.retry.max_retries {
                    return Err(error);
                }
                if !immediate {
                    std::thread::sleep(options.retry.backoff(attempt));
                }
                attempt += 1;
            }
            Disposition::Fail(e) => return Err(e),
        }
    }
}

/// READ CAPACITY(16), falling back to READ CAPACITY(10) when the device refuses it.
fn read_capacity(
    adapter: &Adapter,
    address: Address,
    options: &DiskOptions,
) -> Result<Capacity, DiskError> {
    let rc16 = ReadCapacity16::new(32);
    match control(adapter, address, options, rc16.as_bytes(), 32) {
        Ok(data) => {
            let d = ReadCapacity16Data::parse(&data)
                .map_err(|_| DiskError::NoDisk("short READ CAPACITY(16) data"))?;
            return checked(d.blocks(), d.logical_block_length.get(), d.lbpme());
        }
        Err(DiskError::IllegalRequest { .. }) => {}
        Err(e) => return Err(e),
    }
    let data = control(
        adapter,
        address,
        options,
        ReadCapacity10::new().as_bytes(),
        8,
    )?;
    let d = ReadCapacity10Data::parse(&data)
        .map_err(|_| DiskError::NoDisk("short READ CAPACITY(10) data"))?;
    let last = d.returned_logical_block_address.get();
    if last == u32::MAX {
        return Err(DiskError::NoDisk(
            "capacity beyond READ CAPACITY(10) and READ CAPACITY(16) refused",
        ));
    }
    checked(u64::from(last) + 1, d.logical_block_length.get(), false)
}

fn checked(blocks: u64, block_size: u32, thin: bool) -> Result<Capacity, DiskError> {
    if !(512..=65_536).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(DiskError::NoDisk("unsupported logical block length"));
    }
    if blocks.checked_mul(u64::from(block_size)).is_none() {
        return Err(DiskError::NoDisk("capacity overflows 64 bits"));
    }
    Ok(Capacity {
        blocks,
        block_size,
        thin,
    })
}

/// A logical unit opened as a disk: byte-addressed read / write / flush / unmap / write zeroes,
/// checked against its capacity and block size.
///
/// Cheap to clone (shares the geometry and the pool of blocking queues). The blocking methods
/// may be called from many threads at once: each borrows a depth-1 [`DiskQueue`] from a pool.
/// For throughput, open a [`DiskQueue`] per submitting thread with [`Disk::queue`].
#[derive(Debug, Clone)]
pub struct Disk {
    shared: Arc<DiskShared>,
    pool: Arc<Mutex<Vec<Pooled>>>,
}

#[derive(Debug)]
struct Pooled {
    queue: DiskQueue,
    scratch: Vec<u8>,
}

impl Disk {
    /// Opens the LU at `address` with the default options.
    pub fn open(adapter: &Adapter, address: Address) -> Result<Disk, DiskError> {
        Self::open_with(adapter, address, DiskOptions::default())
    }

    /// Opens the LU at `address`: checks it is a direct-access device (when the scan found it),
    /// reads its capacity and block size (READ CAPACITY(16), else (10); unit attentions such
    /// as power-on are retried) and its Block Limits (VPD B0h, if it has them). Blocks; not from
    /// a completion sink.
    pub fn open_with(
        adapter: &Adapter,
        address: Address,
        options: DiskOptions,
    ) -> Result<Disk, DiskError> {
        if let Some(lu) = adapter
            .logical_units()
            .into_iter()
            .find(|l| l.address == address)
            && lu.device_type() != 0
        {
            return Err(DiskError::NoDisk("not a direct-access block device"));
        }
        let cap = read_capacity(adapter, address, &options)?;
        let config = adapter.configuration();
        let mut limits = Limits {
            max_transfer_bytes: cdb::adapter_max_transfer(config),
            max_unmap_blocks: u64::from(u32::MAX),
            max_write_same_blocks: u64::from(u16::MAX),
            thin: cap.thin,
        };
        let bs = u64::from(cap.block_size);
        let vpd = Inquiry::vpd(scsi::vpd::page::BLOCK_LIMITS, 64);
        if let Ok(page) = control(adapter, address, &options, vpd.as_bytes(), 64)
            && let Ok(b) = BlockLimits::parse(&page)
        {
            let max_blocks = u64::from(b.maximum_transfer_length.get());
            if max_blocks != 0 {
                limits.max_transfer_bytes = limits.max_transfer_bytes.min(max_blocks * bs);
            }
            let unmap = u64::from(b.maximum_unmap_lba_count.get());
            if unmap != 0 && unmap != u64::from(u32::MAX) {
                limits.max_unmap_blocks = unmap;
            }
            let ws = b.maximum_write_same_length.get();
            if ws != 0 {
                limits.max_write_same_blocks = ws.min(u64::from(u32::MAX));
            }
        }
        limits.max_transfer_bytes = (limits.max_transfer_bytes / bs).max(1) * bs;
        let shared = Arc::new(DiskShared {
            adapter: adapter.clone(),
            address,
            tagged: config.tagged_queuing,
            options,
            block_size: AtomicU32::new(cap.block_size),
            num_blocks: AtomicU64::new(cap.blocks),
            limits,
            refresh: Mutex::new(()),
        });
        Ok(Disk {
            shared,
            pool: Arc::default(),
        })
    }

    /// A new submission queue of `depth` slots with its own completion sink. Register one per
    /// submitting thread or task (each registers a sink with the adapter for good).
    pub fn queue(&self, depth: u32) -> DiskQueue {
        DiskQueue::new(self.shared.clone(), depth)
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.shared.block_size()
    }

    /// Capacity in logical blocks (as last read).
    pub fn num_blocks(&self) -> u64 {
        self.shared.num_blocks()
    }

    /// Capacity in bytes (as last read).
    pub fn capacity(&self) -> u64 {
        self.shared.capacity()
    }

    /// The splitting limits learned at open.
    pub fn limits(&self) -> Limits {
        self.shared.limits()
    }

    /// The LU's address.
    pub fn address(&self) -> Address {
        self.shared.address
    }

    /// The adapter.
    pub fn adapter(&self) -> &Adapter {
        &self.shared.adapter
    }

    /// Reads the capacity again now. Blocks.
    pub fn refresh_capacity(&self) -> Result<(), DiskError> {
        self.shared.refresh_capacity()
    }

    /// Reads `buf.len()` bytes at `offset`. Blocks.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let mut p = self.take();
        let mut scratch = std::mem::take(&mut p.scratch);
        scratch.resize(buf.len(), 0);
        let c = Self::run(
            &mut p.queue,
            IoRequest::read(offset, buf.len() as u64, scratch),
        );
        if c.result.is_ok() {
            buf.copy_from_slice(&c.buffer[..buf.len()]);
        }
        p.scratch = c.buffer;
        self.give(p);
        c.result
    }

    /// Writes `buf` at `offset`. Blocks.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.write_inner(offset, buf, false)
    }

    /// Writes `buf` at `offset` with FUA. Blocks.
    pub fn write_fua(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.write_inner(offset, buf, true)
    }

    fn write_inner(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), DiskError> {
        let mut p = self.take();
        let mut scratch = std::mem::take(&mut p.scratch);
        scratch.clear();
        scratch.extend_from_slice(buf);
        let c = Self::run(
            &mut p.queue,
            IoRequest::write(offset, scratch).with_fua(fua),
        );
        p.scratch = c.buffer;
        self.give(p);
        c.result
    }

    /// SYNCHRONIZE CACHE. Blocks.
    pub fn flush(&self) -> Result<(), DiskError> {
        self.execute(IoRequest::flush()).result
    }

    /// Deallocates `len` bytes at `offset` (thin-provisioned disks). Blocks.
    pub fn unmap(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.execute(IoRequest::unmap(offset, len)).result
    }

    /// Writes zeroes over `len` bytes at `offset`. Blocks.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.execute(IoRequest::write_zeroes(offset, len)).result
    }

    /// Runs one request with its own buffer (no copy) and blocks until it completes.
    pub fn execute(&self, req: IoRequest) -> IoCompletion {
        let mut p = self.take();
        let c = Self::run(&mut p.queue, req);
        self.give(p);
        c
    }

    /// Runs one request from async code: resolves when it completes. The calling task is
    /// woken by the port's completion; nothing blocks the executor except a capacity re-read
    /// after CAPACITY DATA HAS CHANGED.
    pub async fn execute_async(&self, req: IoRequest) -> IoCompletion {
        let mut p = self.take();
        let c = match p.queue.submit(req, 0) {
            Ok(()) => p.queue.next_completion().await,
            Err(r) => Some(rejected(r)),
        };
        // A future dropped before completion drops its queue (and whatever it held) with it.
        self.give(p);
        c.unwrap_or_else(|| IoCompletion {
            token: 0,
            result: Err(DiskError::Transport(port::SrbStatus::INTERNAL_ERROR)),
            buffer: Vec::new(),
        })
    }

    /// Reads `len` bytes at `offset` into `buffer` from async code; returns the buffer.
    pub async fn read_async(
        &self,
        offset: u64,
        len: u64,
        buffer: Vec<u8>,
    ) -> (Result<(), DiskError>, Vec<u8>) {
        let c = self
            .execute_async(IoRequest::read(offset, len, buffer))
            .await;
        (c.result, c.buffer)
    }

    /// Writes `buffer` at `offset` from async code; returns the buffer.
    pub async fn write_async(
        &self,
        offset: u64,
        buffer: Vec<u8>,
    ) -> (Result<(), DiskError>, Vec<u8>) {
        let c = self.execute_async(IoRequest::write(offset, buffer)).await;
        (c.result, c.buffer)
    }

    fn run(queue: &mut DiskQueue, req: IoRequest) -> IoCompletion {
        if let Err(r) = queue.submit(req, 0) {
            return rejected(r);
        }
        loop {
            if let Some(c) = queue.wait_next(Duration::from_secs(1)) {
                return c;
            }
        }
    }

    fn take(&self) -> Pooled {
        self.pool.lock().pop().unwrap_or_else(|| Pooled {
            queue: self.queue(1),
            scratch: Vec::new(),
        })
    }

    fn give(&self, p: Pooled) {
        if p.queue.in_flight() == 0 {
            self.pool.lock().push(p);
        }
    }
}

fn rejected(r: crate::queue::Rejected) -> IoCompletion {
    IoCompletion {
        token: 0,
        result: Err(r.error),
        buffer: r.request.buffer,
    }
}
