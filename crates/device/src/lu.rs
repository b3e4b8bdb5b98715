//! The logical unit: configuration, identity, state, and the command entry points.
//!
//! Call path of one command: [`LogicalUnit::execute`] (or [`LogicalUnit::prepare`] +
//! [`LogicalUnit::finish`]) -> table lookup and usage-mask validation -> reservation
//! check -> unit attention -> ready / write-protect checks -> the handler
//! (`spc`, `sbc`, `pr` modules) -> backend.
//!
//! Threads and locks: every entry point takes `&self` and may run on any thread, many at
//! once. LU state lives under one mutex (`state`, a leaf lock, never held across a backend
//! call); READ and WRITE look only at atomics unless a unit attention or a reservation
//! is pending. COMPARE AND WRITE and ORWRITE serialize against overlapping writes through
//! the range-lock table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::backend::{BackendError, BackendResult, BlockBackend};
use crate::rangelock::{RangeGuard, RangeLocks};
use crate::request::{Completion, ItNexus, Residual, ScsiRequest, ScsiStatus};
use crate::sense::{Asc, Sense, SenseFormat, SenseKey, backend_error_sense};
use crate::state::LuState;
use crate::table::{self, CommandEntry, CommandKind, DataDirection, Flags};

/// Configuration of one logical unit ("passed in": the LU never changes it).
#[derive(Debug, Clone)]
pub struct LuConfig {
    /// T10 VENDOR IDENTIFICATION (up to 8 ASCII characters).
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (up to 16).
    pub product: String,
    /// PRODUCT REVISION LEVEL (up to 4).
    pub revision: String,
    /// Unit serial number (VPD 80h). Also seeds the NAA identifier.
    pub serial: String,
    /// A name that, with vendor, product and serial, identifies this LU stably across
    /// restarts (for example the target name and LUN). Seeds the NAA identifier and is
    /// the SCSI name string designator.
    pub name: String,
    /// The logical unit number the LU answers to (REPORT LUNS without a directory).
    pub lun: u64,
    /// 24-bit IEEE company identifier for an NAA 6 designator; `None` uses NAA 3
    /// (locally assigned).
    pub ieee_company_id: Option<u32>,
    /// TARGET PORT GROUP reported in VPD 83h.
    pub target_port_group: u16,
    /// PROTOCOL IDENTIFIER for port designators and TransportIDs (5 = iSCSI).
    pub protocol_identifier: u8,
    /// Refuse every write (DATA PROTECT / WRITE PROTECTED), independent of SWP.
    pub read_only: bool,
    /// MAXIMUM TRANSFER LENGTH in blocks (VPD B0h); longer transfers are INVALID FIELD
    /// IN CDB.
    pub max_transfer_blocks: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks. Keep it at or below `max_transfer_blocks`:
    /// initiators (libiscsi's conformance tests among them) take it as a length they may
    /// also WRITE and READ in one command.
    pub max_write_same_blocks: u32,
    /// MAXIMUM UNMAP LBA COUNT.
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
    pub max_unmap_descriptors: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH in blocks (1..=255).
    pub max_compare_and_write_blocks: u8,
}

impl Default for LuConfig {
    fn default() -> Self {
        Self {
            vendor: "SCSIPORT".into(),
            product: "VIRTUAL DISK".into(),
            revision: "0001".into(),
            serial: "0000000000000001".into(),
            name: "scsiport-lu".into(),
            lun: 0,
            ieee_company_id: None,
            target_port_group: 1,
            protocol_identifier: 5,
            read_only: false,
            max_transfer_blocks: 16384,
            max_write_same_blocks: 16384,
            max_unmap_blocks: 1 << 20,
            max_unmap_descriptors: 4096,
            max_compare_and_write_blocks: 255,
        }
    }
}

/// Why [`LogicalUnit::try_new`] refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LuConfigError {
    /// The backend's block size is not 512 or 4096.
    #[error("block size {0} is not supported (use 512 or 4096)")]
    BlockSize(u32),
    /// The backend has no blocks.
    #[error("the backend has no blocks")]
    Empty,
    /// A limit that must be at least 1 is zero.
    #[error("max_transfer_blocks and max_compare_and_write_blocks must be at least 1")]
    Limits,
}

/// Supplies the LUN inventory for REPORT LUNS. The logical unit cannot know its
/// siblings; the front end (which maps LUNs for each initiator) implements this.
pub trait LunDirectory: Send + Sync {
    /// Appends the LUNs visible to `nexus` (without well-known LUNs) to `out`.
    fn luns(&self, nexus: ItNexus, out: &mut Vec<u64>);
}

/// The kinds of reset a logical unit reacts to (SAM-5 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// Power on: everything back to saved/initial values; persistent reservations are
    /// lost (APTPL is not supported). UA 29/01.
    PowerOn,
    /// Hard reset / target reset (iSCSI TARGET WARM/COLD RESET, SRB RESET_BUS). UA 29/02.
    TargetReset,
    /// LOGICAL UNIT RESET. UA 29/03.
    LogicalUnitReset,
}

/// I/O a miniport may carry out itself (io_uring) between [`LogicalUnit::prepare`] and
/// [`LogicalUnit::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Read `len` bytes at `offset` into `data_in[..len]`.
    Read,
    /// Write `data_out[..len]` at `offset`; with `fua` the data must be stable on
    /// completion (RWF_DSYNC, or write then fdatasync).
    Write {
        /// Force unit access.
        fua: bool,
    },
    /// Make all written data stable (fdatasync); `offset` and `len` are zero.
    Flush,
}

/// The backend I/O a command needs. Holding it keeps the command's LBA range locked
/// against COMPARE AND WRITE; pass it back to [`LogicalUnit::finish`].
#[derive(Debug)]
pub struct IoPlan {
    /// What to do.
    pub op: IoOp,
    /// Byte offset into the backend.
    pub offset: u64,
    /// Bytes to move (a prefix of the request's data buffer).
    pub len: usize,
    wanted: u64,
    expected: usize,
    _range: Option<RangeGuard>,
}

/// What [`LogicalUnit::prepare`] decided.
#[derive(Debug)]
pub enum Prepared {
    /// The command is complete.
    Done(Completion),
    /// Do this I/O with the request's buffers, then call [`LogicalUnit::finish`].
    Io(IoPlan),
}

/// Why a handler stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// A status without sense (RESERVATION CONFLICT, BUSY).
    Status(ScsiStatus),
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Self {
        Fail::Check(s)
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        Fail::Check(backend_error_sense(&e))
    }
}

/// What a handler produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Finished: the command wanted `wanted` bytes and filled `data_in[..filled]`.
    Done {
        status: ScsiStatus,
        wanted: u64,
        filled: usize,
    },
    /// Needs backend I/O.
    Io(IoPlan),
}

impl Outcome {
    /// GOOD, no data.
    pub(crate) const GOOD: Outcome = Outcome::Done {
        status: ScsiStatus::Good,
        wanted: 0,
        filled: 0,
    };
}

pub(crate) type HandlerResult = Result<Outcome, Fail>;

/// Atomics mirroring LU state for the READ/WRITE fast path.
#[derive(Debug)]
struct Fast {
    ua_pending: AtomicUsize,
    reserved: AtomicBool,
    started: AtomicBool,
    write_protect: AtomicBool,
    wce: AtomicBool,
    d_sense: AtomicBool,
}

/// An emulated SCSI block device (peripheral device type 0) over a [`BlockBackend`].
///
/// `Send + Sync`: share it with `Arc` between the threads of a miniport.
pub struct LogicalUnit {
    pub(crate) config: LuConfig,
    pub(crate) backend: Arc<dyn BlockBackend>,
    pub(crate) block_size: u32,
    pub(crate) thin: bool,
    /// NAA designator bytes (8 for NAA 3, 16 for NAA 6).
    pub(crate) naa: Vec<u8>,
    pub(crate) state: Mutex<LuState>,
    fast: Fast,
    pub(crate) ranges: Arc<RangeLocks>,
    pub(crate) directory: Option<Arc<dyn LunDirectory>>,
}

impl std::fmt::Debug for LogicalUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalUnit")
            .field("name", &self.config.name)
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks())
            .finish()
    }
}

/// FNV-1a, 64 bit: a fixed hash so identifiers never change between builds.
pub(crate) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl LogicalUnit {
    /// A logical unit over `backend`, checking the backend and the limits first.
    pub fn try_new(
        config: LuConfig,
        backend: Arc<dyn BlockBackend>,
    ) -> Result<Self, LuConfigError> {
        let bs = backend.block_size();
        if bs != 512 && bs != 4096 {
            return Err(LuConfigError::BlockSize(bs));
        }
        if backend.num_blocks() == 0 {
            return Err(LuConfigError::Empty);
        }
        if config.max_transfer_blocks == 0 || config.max_compare_and_write_blocks == 0 {
            return Err(LuConfigError::Limits);
        }
        Ok(Self::new(config, backend))
    }

    /// A logical unit over `backend`. The backends of this crate only construct with
    /// valid sizes; for another backend use [`LogicalUnit::try_new`].
    ///
    /// # Panics
    /// If the backend's block size is not 512 or 4096.
    pub fn new(config: LuConfig, backend: Arc<dyn BlockBackend>) -> Self {
        assert!(
            matches!(backend.block_size(), 512 | 4096),
            "block size {} is not supported",
            backend.block_size()
        );
        let block_size = backend.block_size();
        let thin = backend.is_thin();
        let seed: [&[u8]; 4] = [
            config.vendor.as_bytes(),
            config.product.as_bytes(),
            config.serial.as_bytes(),
            config.name.as_bytes(),
        ];
        let h1 = fnv1a64(&seed);
        let naa = match config.ieee_company_id {
            Some(oui) => {
                let h2 = fnv1a64(&[&h1.to_be_bytes(), b"ext"]);
                // NAA 6: 4-bit NAA, 24-bit company id, 36-bit vendor id, 64-bit extension.
                let hi: u64 = (6u64 << 60) | (u64::from(oui & 0xFF_FFFF) << 36) | (h1 >> 28);
                let mut v = hi.to_be_bytes().to_vec();
                v.extend_from_slice(&h2.to_be_bytes());
                v
            }
            None => ((3u64 << 60) | (h1 >> 4)).to_be_bytes().to_vec(),
        };
        let state = LuState::new();
        let fast = Fast {
            ua_pending: AtomicUsize::new(0),
            reserved: AtomicBool::new(false),
            started: AtomicBool::new(true),
            write_protect: AtomicBool::new(config.read_only || state.mode.swp()),
            wce: AtomicBool::new(state.mode.wce()),
            d_sense: AtomicBool::new(state.mode.d_sense()),
        };
        Self {
            config,
            backend,
            block_size,
            thin,
            naa,
            state: Mutex::new(state),
            fast,
            ranges: Arc::new(RangeLocks::default()),
            directory: None,
        }
    }

    /// Sets the LUN directory REPORT LUNS uses.
    pub fn with_lun_directory(mut self, dir: Arc<dyn LunDirectory>) -> Self {
        self.directory = Some(dir);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &LuConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn BlockBackend> {
        &self.backend
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Capacity in logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.backend.num_blocks()
    }

    /// The NAA designator (VPD 83h), stable for the same configuration.
    pub fn naa_designator(&self) -> &[u8] {
        &self.naa
    }

    /// Sense format selected by D_SENSE.
    pub fn sense_format(&self) -> SenseFormat {
        if self.fast.d_sense.load(Ordering::Relaxed) {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        }
    }

    /// Tells the LU that an I_T nexus exists (the front end calls this at login), with
    /// the initiator port name used in TransportIDs (PR READ FULL STATUS). Unit attentions
    /// for resets are queued only for nexuses the LU knows.
    pub fn register_nexus(&self, nexus: ItNexus, initiator_name: Option<&str>) {
        let mut st = self.state.lock();
        st.touch(nexus);
        if let Some(name) = initiator_name {
            st.initiator_names.insert(nexus.initiator, name.to_owned());
        }
    }

    /// I_T nexus loss (logout, connection drop): releases the nexus's SCSI-2
    /// reservation and PREVENT state and queues I_T NEXUS LOSS OCCURRED (29/07) for it.
    /// Persistent reservations are kept (SPC-4 5.13.1).
    pub fn nexus_loss(&self, nexus: ItNexus) {
        let mut st = self.state.lock();
        if st.scsi2 == Some(nexus) {
            st.scsi2 = None;
        }
        st.prevent.remove(&nexus);
        st.ua_one(nexus, Asc::I_T_NEXUS_LOSS_OCCURRED);
        self.sync_fast(&st);
    }

    /// Applies a reset: queues its unit attention for every known I_T nexus, clears the
    /// SCSI-2 reservation and PREVENT state, and restores mode pages from saved values.
    /// Power on also drops persistent reservations and registrations and restarts the
    /// unit.
    pub fn reset(&self, kind: ResetKind) {
        let mut st = self.state.lock();
        st.scsi2 = None;
        st.prevent.clear();
        st.mode = st.saved.clone();
        let asc = match kind {
            ResetKind::PowerOn => {
                st.pr = Default::default();
                st.started = true;
                Asc::POWER_ON_OCCURRED
            }
            ResetKind::TargetReset => Asc::SCSI_BUS_RESET_OCCURRED,
            ResetKind::LogicalUnitReset => Asc::BUS_DEVICE_RESET,
        };
        st.ua_all(asc, None);
        self.sync_fast(&st);
        tracing::debug!(lu = %self.config.name, ?kind, "reset");
    }

    /// Queues CAPACITY DATA HAS CHANGED (2A/09) for every known I_T nexus; a miniport
    /// calls it after resizing the backend.
    pub fn notify_capacity_changed(&self) {
        let mut st = self.state.lock();
        st.ua_all(Asc::CAPACITY_DATA_HAS_CHANGED, None);
        self.sync_fast(&st);
    }

    /// Queues REPORTED LUNS DATA HAS CHANGED (3F/0E) for every known I_T nexus; the front
    /// end calls it when the LUN map an initiator sees changes.
    pub fn notify_reported_luns_changed(&self) {
        let mut st = self.state.lock();
        st.ua_all(Asc::REPORTED_LUNS_DATA_HAS_CHANGED, None);
        self.sync_fast(&st);
    }

    /// Refreshes the fast-path atomics from the state. Called with the state locked.
    pub(crate) fn sync_fast(&self, st: &LuState) {
        let f = &self.fast;
        f.ua_pending.store(st.ua_count(), Ordering::Release);
        f.reserved.store(st.any_reservation(), Ordering::Release);
        f.started.store(st.started, Ordering::Release);
        f.write_protect
            .store(self.config.read_only || st.mode.swp(), Ordering::Release);
        f.wce.store(st.mode.wce(), Ordering::Release);
        f.d_sense.store(st.mode.d_sense(), Ordering::Release);
    }

    /// Whether writes are refused (read-only LU or SWP).
    pub(crate) fn write_protected(&self) -> bool {
        self.fast.write_protect.load(Ordering::Acquire)
    }

    /// Whether the write cache is enabled (WCE); with it off every write is FUA.
    pub(crate) fn wce(&self) -> bool {
        self.fast.wce.load(Ordering::Acquire)
    }

    /// Executes one command synchronously: the request's buffers are filled in place.
    ///
    /// Runs on the caller's thread; may block on backend I/O and briefly on range locks.
    pub fn execute(&self, req: &mut ScsiRequest<'_>) -> Completion {
        match self.prepare_inner(req, false) {
            Prepared::Done(c) => c,
            Prepared::Io(plan) => {
                let res = self.do_io(&plan, req);
                self.finish(plan, res)
            }
        }
    }

    /// Carries out an [`IoPlan`] synchronously on the backend, with the buffers of the
    /// request the plan was prepared from (a shorter buffer is an OutOfRange error).
    pub fn do_io(&self, plan: &IoPlan, req: &mut ScsiRequest<'_>) -> BackendResult<()> {
        let short = |op| BackendError::new(crate::backend::BackendErrorKind::OutOfRange, op);
        match plan.op {
            IoOp::Read => {
                let buf = req
                    .data_in
                    .get_mut(..plan.len)
                    .ok_or(short(crate::backend::BackendOp::Read))?;
                self.backend.read_at(plan.offset, buf)
            }
            IoOp::Write { fua } => {
                let buf = req
                    .data_out
                    .get(..plan.len)
                    .ok_or(short(crate::backend::BackendOp::Write))?;
                self.backend.write_at(plan.offset, buf, fua)
            }
            IoOp::Flush => self.backend.flush(),
        }
    }

    /// First half of the asynchronous path. READ, WRITE (6/10/12/16) and SYNCHRONIZE
    /// CACHE return [`Prepared::Io`] for the caller to carry out (for example with
    /// io_uring) before calling [`LogicalUnit::finish`]; every other command runs here,
    /// synchronously, and returns [`Prepared::Done`].
    pub fn prepare(&self, req: &mut ScsiRequest<'_>) -> Prepared {
        self.prepare_inner(req, true)
    }

    /// Second half of the asynchronous path: turns the I/O result into the completion
    /// and releases the plan's range lock.
    pub fn finish(&self, plan: IoPlan, result: BackendResult<()>) -> Completion {
        match result {
            Ok(()) => Completion {
                status: ScsiStatus::Good,
                sense: None,
                data_in_len: if plan.op == IoOp::Read { plan.len } else { 0 },
                residual: Residual::of(plan.wanted, plan.expected),
            },
            Err(e) => Completion {
                status: ScsiStatus::CheckCondition,
                sense: Some(backend_error_sense(&e).encode(self.sense_format())),
                data_in_len: 0,
                residual: if plan.op == IoOp::Read {
                    Residual::of(0, plan.expected)
                } else {
                    Residual::None
                },
            },
        }
    }

    fn fail(&self, req: &ScsiRequest<'_>, f: Fail) -> Completion {
        let residual = if req.data_in.is_empty() {
            Residual::None
        } else {
            Residual::of(0, req.data_in.len())
        };
        tracing::trace!(lu = %self.config.name, cdb = ?req.cdb, outcome = ?f, "command failed");
        match f {
            Fail::Check(s) => Completion {
                status: ScsiStatus::CheckCondition,
                sense: Some(s.encode(self.sense_format())),
                data_in_len: 0,
                residual,
            },
            Fail::Status(st) => Completion::status(st, residual),
        }
    }

    fn prepare_inner(&self, req: &mut ScsiRequest<'_>, long: bool) -> Prepared {
        match self.check_and_dispatch(req, long) {
            Ok(Outcome::Io(plan)) => Prepared::Io(plan),
            Ok(Outcome::Done {
                status,
                wanted,
                filled,
            }) => Prepared::Done(Completion {
                status,
                sense: None,
                data_in_len: filled,
                residual: Residual::of(wanted, req.expected_len()),
            }),
            Err(f) => Prepared::Done(self.fail(req, f)),
        }
    }

    fn check_and_dispatch(&self, req: &mut ScsiRequest<'_>, long: bool) -> HandlerResult {
        let entry = table::decode(req.cdb).map_err(|e| Fail::Check(e.sense()))?;
        if entry.flags.has(Flags::THIN_ONLY) && !self.thin {
            return Err(Sense::illegal_request(Asc::INVALID_COMMAND_OPERATION_CODE).into());
        }
        let hot = is_hot(entry.kind);
        let slow = !hot
            || self.fast.ua_pending.load(Ordering::Acquire) != 0
            || self.fast.reserved.load(Ordering::Acquire);
        if slow {
            self.admit(req, entry)?;
        }
        if !entry.flags.has(Flags::OK_STOPPED) && !self.fast.started.load(Ordering::Acquire) {
            return Err(Sense::new(
                SenseKey::NotReady,
                Asc::LU_NOT_READY_INITIALIZING_COMMAND_REQUIRED,
            )
            .into());
        }
        if entry.flags.has(Flags::WRITES_MEDIUM) && self.write_protected() {
            return Err(Sense::new(SenseKey::DataProtect, Asc::WRITE_PROTECTED).into());
        }
        self.dispatch(entry, req, long)
    }

    /// Slow-path admission: records the nexus, applies reservations, reports a pending
    /// unit attention. Takes the state lock.
    fn admit(&self, req: &ScsiRequest<'_>, entry: &CommandEntry) -> Result<(), Fail> {
        let nexus = req.nexus;
        let mut st = self.state.lock();
        st.touch(nexus);
        if st.scsi2.is_some_and(|h| h != nexus) && !entry.flags.has(Flags::SCSI2_OK) {
            return Err(Fail::Status(ScsiStatus::ReservationConflict));
        }
        if st.pr.conflicts(nexus, entry.flags) {
            return Err(Fail::Status(ScsiStatus::ReservationConflict));
        }
        if !entry.flags.has(Flags::NO_UA) {
            let ua = st.nexus.get_mut(&nexus).and_then(|q| q.pop());
            if let Some(asc) = ua {
                self.sync_fast(&st);
                return Err(Sense::new(SenseKey::UnitAttention, asc).into());
            }
        }
        Ok(())
    }

    fn dispatch(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
        long: bool,
    ) -> HandlerResult {
        use CommandKind as K;
        match entry.kind {
            K::Read6 | K::Read10 | K::Read12 | K::Read16 => self.read(req),
            K::Write6 | K::Write10 | K::Write12 | K::Write16 => self.write(req, long),
            K::SynchronizeCache10 | K::SynchronizeCache16 => self.synchronize_cache(entry, req),
            K::TestUnitReady => Ok(Outcome::GOOD),
            K::RequestSense => self.request_sense(req),
            K::Inquiry => self.inquiry(req),
            K::ModeSense6 | K::ModeSense10 => self.mode_sense(entry, req),
            K::ModeSelect6 | K::ModeSelect10 => self.mode_select(entry, req),
            K::Reserve6 | K::Reserve10 => self.reserve(req.nexus),
            K::Release6 | K::Release10 => self.release(req.nexus),
            K::StartStopUnit => self.start_stop_unit(req),
            K::PreventAllowMediumRemoval => self.prevent_allow(req),
            K::ReadCapacity10 => self.read_capacity10(req),
            K::ReadCapacity16 => self.read_capacity16(req),
            K::ReadDefectData10 | K::ReadDefectData12 => self.read_defect_data(entry, req),
            K::ReportLuns => self.report_luns(req),
            K::ReportSupportedOperationCodes => self.report_supported_opcodes(req),
            K::WriteAndVerify10 | K::WriteAndVerify12 | K::WriteAndVerify16 => {
                self.write_and_verify(req)
            }
            K::Verify10 | K::Verify12 | K::Verify16 => self.verify(req),
            K::PreFetch10 | K::PreFetch16 => self.prefetch(entry, req),
            K::WriteSame10 | K::WriteSame16 => self.write_same(entry, req),
            K::Unmap => self.unmap(req),
            K::GetLbaStatus => self.get_lba_status(req),
            K::CompareAndWrite => self.compare_and_write(req),
            K::OrWrite16 => self.orwrite(req),
            K::PersistentReserveIn => self.persistent_reserve_in(req),
            K::PersistentReserveOut => self.persistent_reserve_out(req),
        }
    }

    /// Builds an [`IoPlan`].
    pub(crate) fn plan(
        &self,
        op: IoOp,
        offset: u64,
        len: usize,
        wanted: u64,
        expected: usize,
        range: Option<RangeGuard>,
    ) -> Outcome {
        Outcome::Io(IoPlan {
            op,
            offset,
            len,
            wanted,
            expected,
            _range: range,
        })
    }

    /// Copies a built response into `data_in`, limited by the allocation length.
    pub(crate) fn respond(req: &mut ScsiRequest<'_>, data: &[u8], alloc_len: u64) -> Outcome {
        let wanted = (data.len() as u64).min(alloc_len);
        let n = (wanted.min(req.data_in.len() as u64)) as usize;
        req.data_in[..n].copy_from_slice(&data[..n]);
        Outcome::Done {
            status: ScsiStatus::Good,
            wanted,
            filled: n,
        }
    }

    /// The direction of `entry`'s data phase (for tests and front ends).
    pub fn direction_of(cdb: &[u8]) -> Option<DataDirection> {
        table::lookup(cdb).ok().map(|e| e.direction)
    }
}

/// Commands that take the lock-free fast path when nothing is pending.
fn is_hot(kind: CommandKind) -> bool {
    use CommandKind as K;
    matches!(
        kind,
        K::Read6
            | K::Read10
            | K::Read12
            | K::Read16
            | K::Write6
            | K::Write10
            | K::Write12
            | K::Write16
    )
}
