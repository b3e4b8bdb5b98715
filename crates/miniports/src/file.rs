//! The `file` miniport: virtual disks on regular files or block devices, with the kernel doing
//! the I/O asynchronously and completions arriving as the adapter's interrupt.
//!
//! # Routine table
//!
//! - `start_io` (interrupt lock): an EXECUTE_SCSI request goes to [`LogicalUnit::prepare`].
//!   Commands that complete there (INQUIRY, MODE SENSE, UNMAP — a synchronous hole punch —,
//!   WRITE SAME, errors, ...) are completed at once. READ, WRITE and SYNCHRONIZE CACHE come
//!   back as an [`IoPlan`]: the SRB's data buffer is *moved out of the SRB* into the engine
//!   together with the plan, the I/O is queued on the io_uring (or handed to the thread pool)
//!   and the routine returns after NextLuRequest (tagged) / NextRequest, so more requests can
//!   start while the kernel works.
//! - `start_io_batch_done` (interrupt lock; after the port's dispatch pass, before any other
//!   routine): the I/O queued by the pass goes to the kernel with one `io_uring_enter`, and
//!   whatever already finished is reaped and completed here (the polled configuration submits
//!   in `start_io`).
//! - The engine's completion raises the adapter's [`InterruptLine`](port::InterruptLine): the
//!   io_uring's eventfd thread, or the pool thread that finished. The port then calls
//!   [`FileMiniport::interrupt`] (interrupt lock), which reaps the finished I/O, puts each
//!   buffer back into its SRB, calls [`LogicalUnit::finish`] and completes the request.
//! - [`PolledFileMiniport`] is the same adapter without an interrupt routine: while requests are
//!   in flight it asks for its timer (`request_timer_call`, every [`POLL_INTERVAL_US`] µs) and
//!   the timer routine reaps.
//! - Resets (`reset_bus`, RESET_LOGICAL_UNIT, RESET_DEVICE) and ABORT_COMMAND wait — under
//!   the interrupt lock, up to [`FileAdapterConfig::reset_drain_timeout`] — for the kernel to
//!   finish the affected requests, and complete them with BUS_RESET (ABORTED for the abort
//!   target). A request the kernel has not finished by then stays in flight marked with that
//!   status and completes when its I/O does; a request is completed exactly once either way.
//!
//! # Buffer ownership
//!
//! While the kernel (or a pool thread) reads or writes a request's data, the buffer is owned
//! by the engine, not by the SRB: the port can therefore never hand a buffer the kernel still
//! uses back to a submitter, whatever it does with the SRB meanwhile (it takes outstanding SRBs
//! back on shutdown and in the last step of timeout recovery). If that happens, the SRB the
//! submitter gets has an empty `data`; the buffer is dropped when the I/O finishes and the late
//! completion is counted by the port. With the drains above this does not happen in practice.
//!
//! # Engines
//!
//! [`EngineKind::Auto`] uses io_uring where the kernel allows it and falls back to a pool of
//! `pread` / `pwrite` threads where it is refused (ENOSYS, EPERM from seccomp). FUA writes use
//! `RWF_DSYNC` (or write + `fdatasync`), SYNCHRONIZE CACHE is `fdatasync`, and a request is
//! completed only after the kernel reported its result: a completed FUA write or SYNCHRONIZE
//! CACHE is on stable storage.
//!
//! # Use
//!
//! ```
//! use std::sync::Arc;
//! use device::{LuConfig, backend::FileBackend};
//! use miniports::file::{EngineKind, FileAdapterConfig, FileLu, FileMiniport};
//! use port::{Address, DataDirection, PortOptions, Srb, SrbStatus};
//!
//! let tmp = tempfile::NamedTempFile::new().unwrap();
//! // The same FileBackend serves the LU (synchronous commands) and the miniport (I/O).
//! let file = Arc::new(FileBackend::open(tmp.path(), 4096, Some(16 << 20)).unwrap());
//! let lu = FileLu::new(Address::new(0, 0, 0), LuConfig::default(), file).unwrap();
//! let hw = FileAdapterConfig::single(vec![lu]).with_engine(EngineKind::Auto);
//! // Or PolledFileMiniport, or port::initialize_storport::<FileMiniport>.
//! let adapter = port::initialize::<FileMiniport>(hw, PortOptions::default())
//!     .unwrap()
//!     .remove(0);
//! // WRITE(10) with FUA: when it completes, the data is on stable storage.
//! let w = Srb::execute_scsi(Address::new(0, 0, 0), &[0x2A, 0x08, 0, 0, 0, 0, 0, 0, 1, 0])
//!     .unwrap()
//!     .with_data(vec![0xA5; 4096], 4096, DataDirection::Out);
//! let w = adapter.execute_and_wait(w).unwrap();
//! assert_eq!(w.srb_status.status(), SrbStatus::SUCCESS);
//! adapter.shutdown().unwrap();
//! ```

mod engine;
#[cfg(test)]
mod tests;
mod uring;

use std::sync::Arc;
use std::time::{Duration, Instant};

use device::backend::FileBackend;
use device::{IoPlan, LogicalUnit, LuConfig, LuConfigError, Prepared, ResetKind, ScsiRequest};
use port::{
    AdapterControl, AdapterControlStatus, AdapterControlType, Address, AddressFilter,
    DataDirection, FindAdapterContext, FindAdapterResult, HwInitializationData, Miniport,
    PortConfiguration, PortContext, SrbFunction, SrbId, SrbRef, SrbStatus, StorportMiniport,
};
use slab::Slab;

pub use engine::EngineKind;
use engine::{Engine, IoDone, IoRequest};

use crate::{DiskLu, complete_srb, device_nexus};

/// Timer period of the polled configuration while requests are in flight, in µs.
pub const POLL_INTERVAL_US: u32 = 100;

/// Default of [`FileAdapterConfig::reset_drain_timeout`].
pub const RESET_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Default number of threads of the `pread` / `pwrite` pool.
pub const DEFAULT_THREADS: usize = 4;

/// One logical unit of a file adapter: the emulated device and the file it lives on (the same
/// [`FileBackend`]: the LU uses it for the commands it completes itself, the miniport's engine
/// for READ, WRITE and SYNCHRONIZE CACHE).
#[derive(Debug, Clone)]
pub struct FileLu {
    disk: DiskLu,
    file: Arc<FileBackend>,
}

impl FileLu {
    /// A LU at `address` over `file`, with the device settings `config`.
    pub fn new(
        address: Address,
        config: LuConfig,
        file: Arc<FileBackend>,
    ) -> Result<Self, LuConfigError> {
        let lu = LogicalUnit::try_new(config, file.clone())?;
        Ok(Self {
            disk: DiskLu {
                address,
                lu: Arc::new(lu),
            },
            file,
        })
    }

    /// Where the LU answers.
    pub fn address(&self) -> Address {
        self.disk.address
    }

    /// The emulated device.
    pub fn lu(&self) -> &Arc<LogicalUnit> {
        &self.disk.lu
    }

    /// The file.
    pub fn file(&self) -> &Arc<FileBackend> {
        &self.file
    }

    /// Address and device, as the other virtual-disk miniports describe a LU.
    pub fn disk(&self) -> &DiskLu {
        &self.disk
    }
}

/// What the file miniports' `find_adapter` is given (the `HwContext`).
#[derive(Debug)]
pub struct FileAdapterConfig {
    /// Adapters still to be found, each a list of its LUs.
    pub adapters: Vec<Vec<FileLu>>,
    /// `MaximumTransferLength` to declare, in bytes.
    pub maximum_transfer_length: u32,
    /// The I/O engine.
    pub engine: EngineKind,
    /// Threads of the `pread` / `pwrite` pool (when it is used).
    pub threads: usize,
    /// How long a reset or abort waits for the kernel to finish the requests it affects
    /// (under the interrupt lock) before leaving them to complete later.
    pub reset_drain_timeout: Duration,
}

impl FileAdapterConfig {
    /// One adapter with the given LUs, engine [`EngineKind::Auto`].
    pub fn single(lus: Vec<FileLu>) -> Self {
        Self {
            adapters: vec![lus],
            maximum_transfer_length: 8 << 20,
            engine: EngineKind::Auto,
            threads: DEFAULT_THREADS,
            reset_drain_timeout: RESET_DRAIN_TIMEOUT,
        }
    }

    /// The same with engine `engine`.
    pub fn with_engine(mut self, engine: EngineKind) -> Self {
        self.engine = engine;
        self
    }
}

/// A request whose I/O is in the engine.
struct InFlight {
    srb: SrbRef,
    address: Address,
    lu: Arc<LogicalUnit>,
    plan: IoPlan,
    /// Set by a reset or abort: complete with this status (no data) when the I/O is done.
    forced: Option<SrbStatus>,
}

/// The device extension shared by [`FileMiniport`] and [`PolledFileMiniport`]; every method
/// runs in a miniport routine, under the adapter's interrupt lock.
struct FileHba {
    lus: Vec<DiskLu>,
    /// `files[i]` is the file of `lus[i]`.
    files: Vec<Arc<FileBackend>>,
    engine: Engine,
    in_flight: Slab<InFlight>,
    /// Reaped completions (reused).
    done: Vec<IoDone>,
    stopped: bool,
    drain_timeout: Duration,
    /// Interrupt configuration: `start_io` only queues the I/O; `start_io_batch_done` submits
    /// the batch and reaps (the polled configuration submits in `start_io`).
    batched: bool,
}

impl FileHba {
    /// `find_adapter` of both configurations.
    fn find(
        hw: &mut FileAdapterConfig,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
        polled: bool,
    ) -> FindAdapterResult<FileHba> {
        if hw.adapters.is_empty() {
            return FindAdapterResult::NotFound;
        }
        let lus = hw.adapters.remove(0);
        ctx.set_again(!hw.adapters.is_empty());
        if lus.is_empty() {
            return FindAdapterResult::BadConfig;
        }
        let (lus, files): (Vec<DiskLu>, Vec<Arc<FileBackend>>) =
            lus.into_iter().map(|l| (l.disk, l.file)).unzip();
        crate::ram::configure(config, &lus, hw.maximum_transfer_length);
        let slots = config.number_of_requests as usize;
        let line = (!polled).then(|| ctx.interrupt_line());
        let fds: Vec<_> = files
            .iter()
            .map(|f| std::os::fd::AsRawFd::as_raw_fd(&f.fd()))
            .collect();
        let engine = match Engine::new(hw.engine, slots, hw.threads, line, &fds) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, engine = ?hw.engine, "file miniport: no I/O engine");
                return FindAdapterResult::Error;
            }
        };
        tracing::debug!(engine = ?engine.kind(), polled, "file adapter found");
        FindAdapterResult::Found(FileHba {
            lus,
            files,
            engine,
            in_flight: Slab::with_capacity(slots),
            done: Vec::with_capacity(slots),
            stopped: false,
            drain_timeout: hw.reset_drain_timeout,
            batched: !polled,
        })
    }

    fn start_io<M: Miniport>(&mut self, port: &mut PortContext<'_, M>, r: SrbRef) -> bool {
        let Some(srb) = port.srb_mut(&r) else {
            return false;
        };
        let address = srb.address;
        let tagged = srb.queue_tag != port::SP_UNTAGGED;
        let function = srb.function;
        let next_srb = srb.next_srb;
        let index = self.lus.iter().position(|d| d.address == address);
        let status = match function {
            SrbFunction::ExecuteScsi => match index {
                Some(i) if !self.stopped => {
                    self.execute(port, r, i);
                    Self::next(port, tagged, address);
                    return true;
                }
                Some(_) => SrbStatus::NOT_POWERED,
                None => SrbStatus::SELECTION_TIMEOUT,
            },
            SrbFunction::AbortCommand => self.abort(port, next_srb),
            SrbFunction::ResetLogicalUnit => {
                let filter = AddressFilter::lu(address);
                self.drain(port, filter, SrbStatus::BUS_RESET);
                self.lu_reset(filter, ResetKind::LogicalUnitReset);
                SrbStatus::SUCCESS
            }
            SrbFunction::ResetDevice => {
                let filter = AddressFilter::target(address.path_id, address.target_id);
                self.drain(port, filter, SrbStatus::BUS_RESET);
                self.lu_reset(filter, ResetKind::TargetReset);
                SrbStatus::SUCCESS
            }
            SrbFunction::Flush | SrbFunction::Shutdown => self.flush_all(),
            _ => SrbStatus::INVALID_REQUEST,
        };
        if let Some(srb) = port.srb_mut(&r) {
            srb.srb_status = status;
        }
        port.request_complete(r);
        Self::next(port, tagged, address);
        true
    }

    fn next<M: Miniport>(port: &mut PortContext<'_, M>, tagged: bool, address: Address) {
        if tagged {
            port.next_lu_request(address);
        } else {
            port.next_request();
        }
    }

    /// EXECUTE_SCSI on LU `index`: complete now, or submit the plan's I/O.
    fn execute<M: Miniport>(&mut self, port: &mut PortContext<'_, M>, r: SrbRef, index: usize) {
        let lu = &self.lus[index].lu;
        let Some(srb) = port.srb_mut(&r) else {
            return;
        };
        let nexus = device_nexus(srb);
        let cdb = srb.cdb;
        let direction = srb.direction();
        let mut data = std::mem::take(&mut srb.data);
        let len = (srb.data_transfer_length as usize).min(data.len());
        let prepared = {
            let (data_out, data_in): (&[u8], &mut [u8]) = match direction {
                DataDirection::In => (&[], &mut data[..len]),
                DataDirection::Out => (&data[..len], &mut []),
                _ => (&[], &mut []),
            };
            let mut req = ScsiRequest {
                nexus,
                cdb: cdb.as_slice(),
                data_out,
                data_in,
            };
            lu.prepare(&mut req)
        };
        let completion = match prepared {
            Prepared::Done(c) => {
                srb.data = data;
                c
            }
            Prepared::Io(plan) => {
                let slot = self.in_flight.vacant_entry();
                let req = IoRequest {
                    tag: slot.key(),
                    file: self.files[index].clone(),
                    op: plan.op,
                    offset: plan.offset,
                    len: plan.len,
                    buf: data,
                };
                let started = if self.batched {
                    self.engine.queue(req)
                } else {
                    self.engine.submit(req)
                };
                match started {
                    None => {
                        slot.insert(InFlight {
                            srb: r,
                            address: srb.address,
                            lu: lu.clone(),
                            plan,
                            forced: None,
                        });
                        return;
                    }
                    Some(done) => {
                        srb.data = done.buf;
                        lu.finish(plan, done.result)
                    }
                }
            }
        };
        complete_srb(srb, &completion);
        port.request_complete(r);
    }

    /// Start of a routine of the interrupt configuration: the engine's interrupt is masked
    /// (see [`end`](Self::end)).
    fn begin(&mut self) {
        self.engine.mask_irq();
    }

    /// End of a routine: reaps what the engine finished meanwhile (without a trip through the
    /// interrupt thread), then unmasks the interrupt and reaps again whatever arrived before
    /// the unmask took effect. Returns how many requests completed.
    fn end<M: Miniport>(&mut self, port: &mut PortContext<'_, M>) -> usize {
        let mut n = 0;
        loop {
            n += self.service(port);
            if !self.engine.unmask_irq() {
                return n;
            }
            self.engine.mask_irq();
        }
    }

    /// Reaps what the engine finished and completes those requests. Returns how many.
    fn service<M: Miniport>(&mut self, port: &mut PortContext<'_, M>) -> usize {
        let mut done = std::mem::take(&mut self.done);
        let n = self.engine.reap(&mut done);
        for d in done.drain(..) {
            self.complete(port, d);
        }
        self.done = done;
        debug_assert_eq!(self.engine.in_flight(), self.in_flight.len());
        n
    }

    /// Completes the request of a finished I/O (exactly once: the entry leaves the table; a
    /// request the port already took back is dropped by the port as a late completion).
    fn complete<M: Miniport>(&mut self, port: &mut PortContext<'_, M>, d: IoDone) {
        let Some(f) = self.in_flight.try_remove(d.tag) else {
            tracing::error!(tag = d.tag, "file miniport: completion of no request");
            return;
        };
        let completion = f.lu.finish(f.plan, d.result);
        if let Some(srb) = port.srb_mut(&f.srb) {
            srb.data = d.buf;
            match f.forced {
                Some(status) => {
                    srb.srb_status = status;
                    srb.data_transfer_length = 0;
                }
                None => complete_srb(srb, &completion),
            }
        }
        port.request_complete(f.srb);
    }

    /// Marks the in-flight requests matching `filter` to complete with `status` and waits (up
    /// to [`FileAdapterConfig::reset_drain_timeout`]) until the kernel has finished them.
    /// Other requests that finish meanwhile complete normally. True when none of the matching
    /// ones is left in flight.
    fn drain<M: Miniport>(
        &mut self,
        port: &mut PortContext<'_, M>,
        filter: AddressFilter,
        status: SrbStatus,
    ) -> bool {
        self.drain_where(port, |f| filter.matches(f.address), status)
    }

    fn drain_where<M: Miniport>(
        &mut self,
        port: &mut PortContext<'_, M>,
        matches: impl Fn(&InFlight) -> bool,
        status: SrbStatus,
    ) -> bool {
        for (_, f) in self.in_flight.iter_mut() {
            if matches(f) {
                f.forced = Some(status);
            }
        }
        let deadline = Instant::now() + self.drain_timeout;
        let mut done = std::mem::take(&mut self.done);
        let drained = loop {
            self.engine.reap(&mut done);
            for d in done.drain(..) {
                self.complete(port, d);
            }
            if !self.in_flight.iter().any(|(_, f)| matches(f)) {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.engine.wait(&mut done, left);
        };
        self.done = done;
        if !drained {
            tracing::warn!(
                status = status.name(),
                "file miniport: I/O still in the kernel after a reset; it completes later"
            );
        }
        drained
    }

    /// ABORT_COMMAND for `target`: ABORTED once its I/O is out of the kernel.
    fn abort<M: Miniport>(
        &mut self,
        port: &mut PortContext<'_, M>,
        target: Option<SrbId>,
    ) -> SrbStatus {
        let Some(target) = target else {
            return SrbStatus::ABORT_FAILED;
        };
        let is_target = |f: &InFlight| f.srb.id() == target;
        if !self.in_flight.iter().any(|(_, f)| is_target(f)) {
            // Not here: it already completed (or never started).
            return SrbStatus::ABORT_FAILED;
        }
        if self.drain_where(port, is_target, SrbStatus::ABORTED) {
            SrbStatus::SUCCESS
        } else {
            SrbStatus::ABORT_FAILED
        }
    }

    fn reset_bus<M: Miniport>(&mut self, port: &mut PortContext<'_, M>, path_id: u8) {
        let filter = AddressFilter::bus(path_id);
        self.drain(port, filter, SrbStatus::BUS_RESET);
        self.lu_reset(filter, ResetKind::TargetReset);
        port.next_request();
    }

    fn lu_reset(&self, filter: AddressFilter, kind: ResetKind) {
        for d in &self.lus {
            if filter.matches(d.address) {
                d.lu.reset(kind);
            }
        }
    }

    /// SRB FLUSH / SHUTDOWN: `fdatasync` every file (synchronously; rare).
    fn flush_all(&self) -> SrbStatus {
        let mut status = SrbStatus::SUCCESS;
        for f in &self.files {
            if device::BlockBackend::flush(&**f).is_err() {
                status = SrbStatus::ERROR;
            }
        }
        status
    }

    fn adapter_control(&mut self, control: AdapterControl<'_>) -> AdapterControlStatus {
        match control {
            AdapterControl::QuerySupportedControlTypes(list) => {
                list.set(AdapterControlType::QuerySupportedControlTypes);
                list.set(AdapterControlType::StopAdapter);
                list.set(AdapterControlType::RestartAdapter);
            }
            AdapterControl::StopAdapter => self.stopped = true,
            AdapterControl::RestartAdapter => self.stopped = false,
            AdapterControl::SetBootConfig | AdapterControl::SetRunningConfig => {}
        }
        AdapterControlStatus::Success
    }
}

fn driver_entry() -> HwInitializationData {
    HwInitializationData {
        tagged_queuing: true,
        auto_request_sense: true,
        multiple_request_per_lu: true,
        ..HwInitializationData::default()
    }
}

/// Device extension of a file adapter whose I/O completes through its interrupt routine.
pub struct FileMiniport {
    hba: FileHba,
}

impl std::fmt::Debug for FileMiniport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMiniport")
            .field("engine", &self.engine())
            .field("in_flight", &self.hba.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl FileMiniport {
    /// The engine in use ([`EngineKind::IoUring`] or [`EngineKind::Threads`]).
    pub fn engine(&self) -> EngineKind {
        self.hba.engine.kind()
    }

    /// Requests whose I/O is in the kernel.
    pub fn in_flight(&self) -> usize {
        self.hba.in_flight.len()
    }

    /// The LUs of this adapter.
    pub fn logical_units(&self) -> &[DiskLu] {
        &self.hba.lus
    }
}

impl Miniport for FileMiniport {
    type HwContext = FileAdapterConfig;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        driver_entry()
    }

    fn find_adapter(
        hw: &mut FileAdapterConfig,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        match FileHba::find(hw, ctx, config, false) {
            FindAdapterResult::Found(hba) => FindAdapterResult::Found(FileMiniport { hba }),
            FindAdapterResult::NotFound => FindAdapterResult::NotFound,
            FindAdapterResult::Error => FindAdapterResult::Error,
            FindAdapterResult::BadConfig => FindAdapterResult::BadConfig,
        }
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        true
    }

    /// Starts the request; its I/O is only queued in the engine until
    /// [`start_io_batch_done`](Miniport::start_io_batch_done).
    fn start_io(&mut self, port: &mut PortContext<'_, Self>, srb: SrbRef) -> bool {
        self.hba.start_io(port, srb)
    }

    /// The doorbell: submits the I/O of every request started since the last call with one
    /// `io_uring_enter`, then reaps what the engine finished meanwhile (`FileHba::end`).
    fn start_io_batch_done(&mut self, port: &mut PortContext<'_, Self>) {
        self.hba.begin();
        self.hba.engine.flush();
        self.hba.end(port);
    }

    /// Reaps the engine's completions (the io_uring CQ, or the pool's list).
    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        self.hba.begin();
        self.hba.end(port) > 0
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, path_id: u8) -> bool {
        self.hba.reset_bus(port, path_id);
        true
    }

    fn adapter_control(
        &mut self,
        _port: &mut PortContext<'_, Self>,
        control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        self.hba.adapter_control(control)
    }
}

/// The file adapter also runs under the Storport model ([`port::initialize_storport`]): it
/// needs nothing before `start_io`, so `build_io` is the default (accept every request).
impl StorportMiniport for FileMiniport {
    type Shared = ();

    fn shared(&self) -> Arc<()> {
        Arc::new(())
    }
}

/// Device extension of a file adapter without an interrupt routine: completions are polled by
/// the timer routine while requests are in flight.
pub struct PolledFileMiniport {
    hba: FileHba,
    /// When the poll timer was last requested (`None`: not pending).
    timer_requested: Option<Instant>,
}

impl std::fmt::Debug for PolledFileMiniport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledFileMiniport")
            .field("engine", &self.engine())
            .field("in_flight", &self.hba.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl PolledFileMiniport {
    /// The engine in use.
    pub fn engine(&self) -> EngineKind {
        self.hba.engine.kind()
    }

    /// Requests whose I/O is in the kernel.
    pub fn in_flight(&self) -> usize {
        self.hba.in_flight.len()
    }

    /// The LUs of this adapter.
    pub fn logical_units(&self) -> &[DiskLu] {
        &self.hba.lus
    }

    /// Requests the poll timer while requests are in flight. A pending request is left alone
    /// (re-requesting would push it out under a steady stream of `start_io` calls) unless it
    /// is overdue, i.e. was lost (a restart cancels timers).
    fn arm(&mut self, port: &mut PortContext<'_, Self>) {
        if self.hba.in_flight.is_empty() {
            return;
        }
        let overdue = Duration::from_micros(u64::from(POLL_INTERVAL_US) * 1000);
        if self.timer_requested.is_none_or(|t| t.elapsed() > overdue) {
            port.request_timer_call(Self::poll, POLL_INTERVAL_US);
            self.timer_requested = Some(Instant::now());
        }
    }

    /// The timer routine (`HwScsiTimer`, interrupt lock): reap, and poll again while requests
    /// remain in flight.
    fn poll(&mut self, port: &mut PortContext<'_, Self>) {
        self.timer_requested = None;
        self.hba.service(port);
        self.arm(port);
    }
}

impl Miniport for PolledFileMiniport {
    type HwContext = FileAdapterConfig;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        driver_entry()
    }

    fn find_adapter(
        hw: &mut FileAdapterConfig,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        match FileHba::find(hw, ctx, config, true) {
            FindAdapterResult::Found(hba) => FindAdapterResult::Found(PolledFileMiniport {
                hba,
                timer_requested: None,
            }),
            FindAdapterResult::NotFound => FindAdapterResult::NotFound,
            FindAdapterResult::Error => FindAdapterResult::Error,
            FindAdapterResult::BadConfig => FindAdapterResult::BadConfig,
        }
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        self.timer_requested = None;
        true
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, srb: SrbRef) -> bool {
        let started = self.hba.start_io(port, srb);
        self.arm(port);
        started
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, path_id: u8) -> bool {
        self.hba.reset_bus(port, path_id);
        self.arm(port);
        true
    }

    fn adapter_control(
        &mut self,
        port: &mut PortContext<'_, Self>,
        control: AdapterControl<'_>,
    ) -> AdapterControlStatus {
        let restart = matches!(control, AdapterControl::RestartAdapter);
        let status = self.hba.adapter_control(control);
        if restart {
            self.timer_requested = None;
            self.arm(port);
        }
        status
    }
}
