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
//! - The engine's completion raises the adapter's [`InterruptLine`]: the
//!   io_uring's eventfd thread, or the pool thread that finished. The port then calls
//!   [`FileMiniport::interrupt`] (interrupt lock), which reaps the finished I/O, puts each
//!   buffer back into its SRB, calls [`LogicalUnit::finish`] and completes the request.
//! - Storport with [`FileAdapterConfig::channels`] `> 1` (concurrent channels, full duplex):
//!   `start_io_full_duplex` runs on the request's channel under that channel's StartIo lock
//!   only, prepares the command and *stages* its I/O on the channel; the channel's doorbell
//!   (`start_io_channel_done`, after the port has put the started requests in its table) hands
//!   the staged I/O to the channel's own io_uring with one enter, and raises the channel's
//!   message on the same thread when completions already wait; each ring's eventfd thread
//!   raises that channel's message-signaled interrupt, and `message_interrupt` reaps that ring
//!   only. Resets and aborts drain every channel.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use device::backend::FileBackend;
use device::{IoPlan, LogicalUnit, LuConfig, LuConfigError, Prepared, ResetKind, ScsiRequest};
use parking_lot::Mutex;
use port::{
    AdapterControl, AdapterControlStatus, AdapterControlType, Address, AddressFilter,
    DataDirection, FindAdapterContext, FindAdapterResult, HwInitializationData, InterruptLine,
    Miniport, PortConfiguration, PortContext, Srb, SrbFunction, SrbId, SrbRef, SrbStatus,
    StartIoContext, StorportMiniport, SynchronizationModel,
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
    /// Engines (io_uring rings) per adapter. 1 (the default): one engine, `start_io` under the
    /// interrupt lock. `n > 1` under the Storport model: `n` concurrent channels (full
    /// duplex, `StorPortInitializePerfOpts(STOR_PERF_CONCURRENT_CHANNELS)`), one engine and
    /// one message-signaled interrupt per channel; a submitting thread's requests go to the
    /// channel of its [`port::current_processor`]. Meant for the Storport model: under SCSI
    /// Port only the first engine gets I/O (and a thread whose processor maps to another
    /// channel cannot poll it), so keep 1 there. The polled configuration always has one.
    pub channels: usize,
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
            channels: 1,
        }
    }

    /// The same with `channels` engines / concurrent channels (see
    /// [`channels`](Self::channels)).
    pub fn with_channels(mut self, channels: usize) -> Self {
        self.channels = channels.max(1);
        self
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
    /// The LU's index in the adapter's list (no reference count touched per request).
    lu: usize,
    plan: IoPlan,
    /// Set by a reset or abort: complete with this status (no data) when the I/O is done.
    forced: Option<SrbStatus>,
}

/// Concurrent channels: a request started on a channel, waiting for the channel's doorbell
/// (`start_io_channel_done`) to go to the engine.
struct Staged {
    req: IoRequest,
    f: InFlight,
}

/// One channel of a file adapter: an engine (one io_uring, or the pool) with its in-flight
/// table. An adapter has one, or one per concurrent channel.
struct Channel {
    engine: Engine,
    in_flight: Slab<InFlight>,
    /// Reaped completions (reused).
    done: Vec<IoDone>,
    /// Requests `start_io` staged on this channel, for the doorbell.
    staged: Vec<Staged>,
    /// Requests the engine finished at once in the doorbell (no port context there): completed
    /// by the next routine that services the channel (its message interrupt is raised).
    early: Vec<IoDone>,
    /// The channel's interrupt line (its message line with concurrent channels).
    line: Option<InterruptLine>,
    /// Requests the doorbell handed to the engine (for tests and statistics).
    rung: u64,
}

/// A channel padded to its own cache lines (channels are driven by different threads).
#[repr(align(128))]
struct Padded(Mutex<Channel>);

/// How a request is handed to the engine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hand {
    /// Queued in the ring, submitted by `start_io_batch_done` (interrupt configuration).
    Queue,
    /// Submitted at once (polled configuration).
    Submit,
    /// Staged for the channel's doorbell (concurrent channels).
    Stage,
}

/// Where a routine reads and completes requests: the port's services under the interrupt lock
/// ([`PortContext`]) or, in a full-duplex `start_io`, the request in hand ([`StartIoContext`]).
trait Requests {
    fn srb_mut(&mut self, r: &SrbRef) -> Option<&mut Srb>;
    fn complete(&mut self, r: SrbRef);
}

impl<M: Miniport> Requests for PortContext<'_, M> {
    fn srb_mut(&mut self, r: &SrbRef) -> Option<&mut Srb> {
        PortContext::srb_mut(self, r)
    }
    fn complete(&mut self, r: SrbRef) {
        self.request_complete(r);
    }
}

impl<M: Miniport> Requests for StartIoContext<'_, M> {
    fn srb_mut(&mut self, r: &SrbRef) -> Option<&mut Srb> {
        StartIoContext::srb_mut(self, r)
    }
    fn complete(&mut self, r: SrbRef) {
        self.request_complete(r);
    }
}

/// What a file adapter's routines share: the LUs, their files and the channels. It is the
/// Storport `Shared` part too: with concurrent channels, `start_io` runs on it without the
/// interrupt lock. Each channel has its own mutex, taken by the routine driving that channel
/// (uncontended: the port runs one routine per channel at a time; resets take them all).
pub struct FileShared {
    lus: Vec<DiskLu>,
    /// `files[i]` is the file of `lus[i]`.
    files: Vec<Arc<FileBackend>>,
    channels: Box<[Padded]>,
    /// Between StopAdapter and RestartAdapter (changed under every lock of the adapter).
    stopped: AtomicBool,
    drain_timeout: Duration,
    /// Interrupt configuration: `start_io` only queues the I/O; `start_io_batch_done` submits
    /// the batch and reaps (the polled configuration submits in `start_io`).
    batched: bool,
}

impl std::fmt::Debug for FileShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileShared")
            .field("lus", &self.lus.len())
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl FileShared {
    /// Channel `i` (the port names only channels it was told of: `i < channels.len()`).
    #[inline]
    fn channel(&self, i: usize) -> parking_lot::MutexGuard<'_, Channel> {
        self.channels[i].0.lock()
    }

    /// EXECUTE_SCSI on LU `index`: complete now, or hand the plan's I/O to channel `ch`.
    fn execute(
        &self,
        ch: &mut Channel,
        port: &mut impl Requests,
        r: SrbRef,
        index: usize,
        hand: Hand,
    ) {
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
                let req = IoRequest {
                    tag: 0,
                    file: index,
                    op: plan.op,
                    offset: plan.offset,
                    len: plan.len,
                    buf: data,
                };
                let f = InFlight {
                    srb: r,
                    address: srb.address,
                    lu: index,
                    plan,
                    forced: None,
                };
                if hand == Hand::Stage {
                    ch.staged.push(Staged { req, f });
                    return;
                }
                let slot = ch.in_flight.vacant_entry();
                let req = IoRequest {
                    tag: slot.key(),
                    ..req
                };
                let started = if hand == Hand::Queue {
                    ch.engine.queue(req)
                } else {
                    ch.engine.submit(req)
                };
                match started {
                    None => {
                        slot.insert(f);
                        return;
                    }
                    Some(done) => {
                        srb.data = done.buf;
                        complete_srb(srb, &lu.finish(f.plan, done.result));
                        port.complete(f.srb);
                        return;
                    }
                }
            }
        };
        complete_srb(srb, &completion);
        port.complete(r);
    }

    /// The doorbell of a channel: its staged requests go to the engine, one submission. The
    /// channel's interrupt is masked meanwhile; if completions are already waiting (the kernel
    /// posts those of earlier requests when this thread enters it), the channel's message is
    /// raised on this thread — its routine reaps them here, as fio reaps its own ring — else
    /// the interrupt is unmasked again.
    fn ring_doorbell(&self, channel: u32) {
        let mut g = self.channel(channel as usize);
        let ch = &mut *g;
        if ch.staged.is_empty() {
            return;
        }
        ch.engine.mask_irq();
        let mut early = false;
        let mut staged = std::mem::take(&mut ch.staged);
        ch.rung += staged.len() as u64;
        for Staged { req, f } in staged.drain(..) {
            let slot = ch.in_flight.vacant_entry();
            let tag = slot.key();
            slot.insert(f);
            if let Some(done) = ch.engine.queue(IoRequest { tag, ..req }) {
                ch.early.push(done);
                early = true;
            }
        }
        ch.staged = staged;
        ch.engine.flush();
        // Left masked when there is work: the message routine unmasks when it is done.
        let work = early || ch.engine.completions_waiting() || ch.engine.unmask_irq();
        let line = if work { ch.line.clone() } else { None };
        drop(g);
        if let Some(line) = line {
            line.raise();
        }
    }

    /// Reaps what channel `ch`'s engine finished and completes those requests. Returns how
    /// many. Under the interrupt lock.
    fn service<M: Miniport>(&self, ch: &mut Channel, port: &mut PortContext<'_, M>) -> usize {
        let mut done = std::mem::take(&mut ch.done);
        let mut n = ch.engine.reap(&mut done);
        n += ch.early.len();
        done.append(&mut ch.early);
        for d in done.drain(..) {
            self.complete(ch, port, d);
        }
        ch.done = done;
        debug_assert_eq!(ch.engine.in_flight(), ch.in_flight.len());
        n
    }

    /// Services channel `ch` with its interrupt masked, then unmasks it and reaps again
    /// whatever arrived before the unmask took effect (see the module documentation).
    fn service_masked<M: Miniport>(
        &self,
        ch: &mut Channel,
        port: &mut PortContext<'_, M>,
    ) -> usize {
        ch.engine.mask_irq();
        let mut n = 0;
        loop {
            n += self.service(ch, port);
            if !ch.engine.unmask_irq() {
                return n;
            }
            ch.engine.mask_irq();
        }
    }

    /// Completes the request of a finished I/O (exactly once: the entry leaves the table; a
    /// request the port already took back is dropped by the port as a late completion).
    fn complete<M: Miniport>(&self, ch: &mut Channel, port: &mut PortContext<'_, M>, d: IoDone) {
        let Some(f) = ch.in_flight.try_remove(d.tag) else {
            tracing::error!(tag = d.tag, "file miniport: completion of no request");
            return;
        };
        let completion = self.lus[f.lu].lu.finish(f.plan, d.result);
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

    /// Per channel: how many requests its doorbell handed to its engine.
    fn rung(&self) -> Vec<u64> {
        self.channels.iter().map(|c| c.0.lock().rung).collect()
    }

    fn in_flight(&self) -> usize {
        self.channels
            .iter()
            .map(|c| {
                let c = c.0.lock();
                c.in_flight.len() + c.staged.len()
            })
            .sum()
    }
}

/// The device extension shared by [`FileMiniport`] and [`PolledFileMiniport`]; every method
/// runs in a miniport routine, under the adapter's interrupt lock.
struct FileHba {
    shared: Arc<FileShared>,
}

impl FileHba {
    /// `find_adapter` of both configurations.
    fn find(
        hw: &mut FileAdapterConfig,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
        polled: bool,
    ) -> FindAdapterResult<FileHba> {
        let Some(lus) = crate::next_adapter(&mut hw.adapters, ctx) else {
            return FindAdapterResult::NotFound;
        };
        if lus.is_empty() {
            return FindAdapterResult::BadConfig;
        }
        let (lus, files): (Vec<DiskLu>, Vec<Arc<FileBackend>>) =
            lus.into_iter().map(|l| (l.disk, l.file)).unzip();
        crate::ram::configure(config, &lus, hw.maximum_transfer_length);
        let slots = config.number_of_requests as usize;
        let count = if polled {
            1
        } else {
            hw.channels.clamp(1, port::MAX_MESSAGES as usize)
        };
        let lines: Vec<Option<InterruptLine>> = match (polled, count) {
            (true, _) => vec![None],
            (false, 1) => vec![Some(ctx.interrupt_line())],
            (false, n) => {
                // Storport concurrent channels (StorPortInitializePerfOpts): start_io runs on
                // each channel concurrently, and each channel's completions come as its own
                // message-signaled interrupt.
                config.synchronization_model = SynchronizationModel::FullDuplex;
                config.concurrent_channels = n as u32;
                ctx.message_interrupt_lines(n as u32)
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        };
        let mut channels = Vec::with_capacity(count);
        for line in lines {
            let engine = match Engine::new(hw.engine, slots, hw.threads, line.clone(), &files) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, engine = ?hw.engine, "file miniport: no I/O engine");
                    return FindAdapterResult::Error;
                }
            };
            channels.push(Padded(Mutex::new(Channel {
                engine,
                in_flight: Slab::with_capacity(slots),
                done: Vec::with_capacity(slots),
                staged: Vec::with_capacity(if count > 1 { slots } else { 0 }),
                early: Vec::new(),
                line,
                rung: 0,
            })));
        }
        tracing::debug!(
            engine = ?channels[0].0.lock().engine.kind(),
            polled,
            channels = count,
            "file adapter found"
        );
        FindAdapterResult::Found(FileHba {
            shared: Arc::new(FileShared {
                lus,
                files,
                channels: channels.into_boxed_slice(),
                stopped: AtomicBool::new(false),
                drain_timeout: hw.reset_drain_timeout,
                batched: !polled,
            }),
        })
    }

    fn kind(&self) -> EngineKind {
        self.shared.channel(0).engine.kind()
    }

    fn start_io<M: Miniport>(&mut self, port: &mut PortContext<'_, M>, r: SrbRef) -> bool {
        let Some(srb) = port.srb_mut(&r) else {
            return false;
        };
        let address = srb.address;
        let tagged = srb.queue_tag != port::SP_UNTAGGED;
        let function = srb.function;
        let next_srb = srb.next_srb;
        let sh = &*self.shared;
        let index = sh.lus.iter().position(|d| d.address == address);
        let status = match function {
            SrbFunction::ExecuteScsi => match index {
                Some(i) if !sh.stopped.load(Ordering::Relaxed) => {
                    let hand = if sh.batched {
                        Hand::Queue
                    } else {
                        Hand::Submit
                    };
                    sh.execute(&mut sh.channel(0), port, r, i, hand);
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

    /// Submits what `start_io` queued on channel 0 (the interrupt configuration's doorbell),
    /// then services every channel.
    fn batch_done<M: Miniport>(&mut self, port: &mut PortContext<'_, M>) {
        {
            let mut ch = self.shared.channel(0);
            ch.engine.mask_irq();
            ch.engine.flush();
        }
        self.interrupt(port);
    }

    /// The interrupt routine: services every channel. Returns how many requests completed.
    fn interrupt<M: Miniport>(&mut self, port: &mut PortContext<'_, M>) -> usize {
        self.shared
            .channels
            .iter()
            .map(|c| self.shared.service_masked(&mut c.0.lock(), port))
            .sum()
    }

    /// Reaps every channel without touching the interrupt masks (the polled configuration).
    fn service<M: Miniport>(&mut self, port: &mut PortContext<'_, M>) -> usize {
        self.shared
            .channels
            .iter()
            .map(|c| self.shared.service(&mut c.0.lock(), port))
            .sum()
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

    /// [`drain`](Self::drain) for the requests `matches` selects, over every channel.
    fn drain_where<M: Miniport>(
        &mut self,
        port: &mut PortContext<'_, M>,
        matches: impl Fn(&InFlight) -> bool,
        status: SrbStatus,
    ) -> bool {
        let sh = &*self.shared;
        for c in sh.channels.iter() {
            for (_, f) in c.0.lock().in_flight.iter_mut() {
                if matches(f) {
                    f.forced = Some(status);
                }
            }
        }
        let deadline = Instant::now() + sh.drain_timeout;
        let drained = loop {
            let mut waiting = None;
            for (i, c) in sh.channels.iter().enumerate() {
                let mut ch = c.0.lock();
                sh.service(&mut ch, port);
                if waiting.is_none() && ch.in_flight.iter().any(|(_, f)| matches(f)) {
                    waiting = Some(i);
                }
            }
            let Some(i) = waiting else {
                break true;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            // Wait on one channel that still has some; the others are looked at again after.
            let slice = if sh.channels.len() > 1 {
                left.min(Duration::from_millis(1))
            } else {
                left
            };
            let mut ch = sh.channel(i);
            let mut done = std::mem::take(&mut ch.done);
            ch.engine.wait(&mut done, slice);
            for d in done.drain(..) {
                sh.complete(&mut ch, port, d);
            }
            ch.done = done;
        };
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
        let here = self
            .shared
            .channels
            .iter()
            .any(|c| c.0.lock().in_flight.iter().any(|(_, f)| is_target(f)));
        if !here {
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
        for d in &self.shared.lus {
            if filter.matches(d.address) {
                d.lu.reset(kind);
            }
        }
    }

    /// SRB FLUSH / SHUTDOWN: `fdatasync` every file (synchronously; rare).
    fn flush_all(&self) -> SrbStatus {
        let mut status = SrbStatus::SUCCESS;
        for f in &self.shared.files {
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
            AdapterControl::StopAdapter => self.shared.stopped.store(true, Ordering::Relaxed),
            AdapterControl::RestartAdapter => self.shared.stopped.store(false, Ordering::Relaxed),
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
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl FileMiniport {
    /// The engine in use ([`EngineKind::IoUring`] or [`EngineKind::Threads`]).
    pub fn engine(&self) -> EngineKind {
        self.hba.kind()
    }

    /// Requests whose I/O is in the kernel (or staged for it), over every channel.
    pub fn in_flight(&self) -> usize {
        self.hba.shared.in_flight()
    }

    /// The LUs of this adapter.
    pub fn logical_units(&self) -> &[DiskLu] {
        &self.hba.shared.lus
    }

    /// Its channels (engines).
    pub fn channels(&self) -> usize {
        self.hba.shared.channels.len()
    }

    /// Per concurrent channel: how many requests went to its engine (0 for every channel
    /// without concurrent channels, where `start_io` hands them over itself).
    pub fn channel_requests(&self) -> Vec<u64> {
        self.hba.shared.rung()
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
    /// `io_uring_enter`, then reaps what the engine finished meanwhile.
    fn start_io_batch_done(&mut self, port: &mut PortContext<'_, Self>) {
        self.hba.batch_done(port);
    }

    /// Reaps the engines' completions (the io_uring CQ, or the pool's list) of every channel.
    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        self.hba.interrupt(port) > 0
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
///
/// With [`FileAdapterConfig::channels`] `> 1` it declares concurrent channels (full duplex,
/// one channel per ring): `start_io_full_duplex` runs on the request's channel without the
/// interrupt lock and stages the I/O; the channel's doorbell (`start_io_channel_done`) hands
/// the staged I/O to the channel's ring with one `io_uring_enter`; the ring's completions
/// raise the channel's message-signaled interrupt and `message_interrupt` reaps that ring only.
impl StorportMiniport for FileMiniport {
    type Shared = FileShared;

    fn shared(&self) -> Arc<FileShared> {
        self.hba.shared.clone()
    }

    /// Concurrent channels (StartIo lock of channel `port.channel()` only): READ, WRITE and
    /// SYNCHRONIZE CACHE are prepared here and staged on the channel; everything else (commands
    /// the LU completes at once, resets, aborts, flushes) runs as in half duplex, under the
    /// interrupt lock.
    fn start_io_full_duplex(
        shared: &FileShared,
        port: &mut StartIoContext<'_, Self>,
        srb: SrbRef,
    ) -> bool {
        let Some(s) = port.srb(&srb) else {
            return false;
        };
        let address = s.address;
        let index = (s.function == SrbFunction::ExecuteScsi
            && !shared.stopped.load(Ordering::Relaxed))
        .then(|| shared.lus.iter().position(|d| d.address == address))
        .flatten();
        match index {
            Some(i) => {
                let channel = port.channel() as usize;
                shared.execute(&mut shared.channel(channel), port, srb, i, Hand::Stage);
                true
            }
            None => port.synchronize_access(move |m, ctx| m.hba.start_io(ctx, srb)),
        }
    }

    /// The channel's doorbell: its staged I/O goes to its ring (one `io_uring_enter`).
    fn start_io_channel_done(shared: &FileShared, channel: u32) {
        shared.ring_doorbell(channel);
    }

    /// `HwMSInterruptRoutine`: reaps channel `message_id`'s ring only.
    fn message_interrupt(&mut self, port: &mut PortContext<'_, Self>, message_id: u32) -> bool {
        let sh = &self.hba.shared;
        let Some(c) = sh.channels.get(message_id as usize) else {
            return false;
        };
        sh.service_masked(&mut c.0.lock(), port) > 0
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
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl PolledFileMiniport {
    /// The engine in use.
    pub fn engine(&self) -> EngineKind {
        self.hba.kind()
    }

    /// Requests whose I/O is in the kernel (or staged for it), over every channel.
    pub fn in_flight(&self) -> usize {
        self.hba.shared.in_flight()
    }

    /// The LUs of this adapter.
    pub fn logical_units(&self) -> &[DiskLu] {
        &self.hba.shared.lus
    }

    /// Requests the poll timer while requests are in flight. A pending request is left alone
    /// (re-requesting would push it out under a steady stream of `start_io` calls) unless it
    /// is overdue, i.e. was lost (a restart cancels timers).
    fn arm(&mut self, port: &mut PortContext<'_, Self>) {
        if self.hba.shared.in_flight() == 0 {
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
