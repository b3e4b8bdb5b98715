//! The SCSI request block (SRB) and its field types.
//!
//! An [`Srb`] is owned by exactly one party at a time: the submitter builds it, moves it into the
//! port with [`Submitter::submit`](crate::Submitter::submit), the port moves it into a
//! preallocated slot while the miniport works on it, and the port moves it back out to the
//! submitter's [`CompletionSink`](crate::CompletionSink). Everything a request needs travels
//! inline (CDB up to 32 bytes, sense up to [`SENSE_BUFFER_SIZE`] bytes); the only heap part is
//! the data buffer, a `Vec<u8>` the submitter owns and reuses, so an SRB costs no allocation.
//!
//! Values follow the seed's `srb.h` (see `reference/scsiport-model.md` §2).

use std::fmt;

/// Maximum CDB length carried inline (variable-length CDBs up to 32 bytes).
pub const MAX_CDB_LENGTH: usize = 32;

/// Size of the inline sense buffer. 96 bytes holds fixed-format sense (18 bytes) and descriptor
/// sense with several descriptors; `SenseInfoBufferLength` says how much of it is wanted/valid.
pub const SENSE_BUFFER_SIZE: usize = 96;

/// The QueueTag of an untagged request. The seed uses 0xFF in a `u8`; tags are widened to `u32`
/// here so that an adapter can have more than 254 outstanding requests.
pub const SP_UNTAGGED: u32 = u32::MAX;

/// Bus / target / logical unit address of a request (`PathId`, `TargetId`, `Lun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address {
    /// SCSI bus on the adapter (0-based).
    pub path_id: u8,
    /// Target on that bus.
    pub target_id: u8,
    /// Logical unit of that target.
    pub lun: u8,
}

impl Address {
    /// Builds an address from PathId, TargetId and Lun.
    pub const fn new(path_id: u8, target_id: u8, lun: u8) -> Self {
        Self {
            path_id,
            target_id,
            lun,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path_id, self.target_id, self.lun)
    }
}

/// A filter over addresses, for [`PortContext::complete_requests`](crate::PortContext::complete_requests)
/// (the seed's `SP_UNTAGGED` wildcards in `ScsiPortCompleteRequest`). `None` matches anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressFilter {
    /// Bus to match, or any.
    pub path_id: Option<u8>,
    /// Target to match, or any.
    pub target_id: Option<u8>,
    /// LU to match, or any.
    pub lun: Option<u8>,
}

impl AddressFilter {
    /// Every address on the adapter.
    pub const fn all() -> Self {
        Self {
            path_id: None,
            target_id: None,
            lun: None,
        }
    }
    /// Every address on one bus.
    pub const fn bus(path_id: u8) -> Self {
        Self {
            path_id: Some(path_id),
            target_id: None,
            lun: None,
        }
    }
    /// Every LU of one target.
    pub const fn target(path_id: u8, target_id: u8) -> Self {
        Self {
            path_id: Some(path_id),
            target_id: Some(target_id),
            lun: None,
        }
    }
    /// Exactly one LU.
    pub const fn lu(a: Address) -> Self {
        Self {
            path_id: Some(a.path_id),
            target_id: Some(a.target_id),
            lun: Some(a.lun),
        }
    }
    /// True when `a` is selected by this filter.
    pub fn matches(&self, a: Address) -> bool {
        self.path_id.is_none_or(|p| p == a.path_id)
            && self.target_id.is_none_or(|t| t == a.target_id)
            && self.lun.is_none_or(|l| l == a.lun)
    }
}

/// `SRB_FUNCTION_*`: what the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SrbFunction {
    /// Run the CDB on the addressed LU (goes to the miniport).
    #[default]
    ExecuteScsi = 0x00,
    /// Private request with an `SRB_IO_CONTROL` header in the data buffer (goes to the miniport).
    IoControl = 0x02,
    /// Unfreeze the LU queue (handled by the port).
    ReleaseQueue = 0x04,
    /// Flush the adapter's cache; the last one follows the last I/O (miniport only if it caches).
    Shutdown = 0x07,
    /// Flush cached data for the LU (miniport only if it caches data, else the port completes it).
    Flush = 0x08,
    /// Abort the request named by `abort_target` (port if still queued, else the miniport).
    AbortCommand = 0x10,
    /// Reset the bus: the port calls `reset_bus` itself.
    ResetBus = 0x12,
    /// Target reset (goes to the miniport).
    ResetDevice = 0x13,
    /// Complete every queued request of the LU with REQUEST_FLUSHED and unfreeze (port).
    FlushQueue = 0x15,
    /// A WMI request (`SCSI_WMI_REQUEST_BLOCK`): to the miniport if it is a WMI data provider.
    Wmi = 0x17,
    /// Hold the LU queue: only BYPASS_LOCKED_QUEUE requests run (port).
    LockQueue = 0x18,
    /// Undo LOCK_QUEUE; must carry BYPASS_LOCKED_QUEUE (port).
    UnlockQueue = 0x19,
    /// Logical unit reset (goes to the miniport).
    ResetLogicalUnit = 0x20,
}

impl SrbFunction {
    /// The `srb.h` value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// `SrbStatus`: the low six bits are an `SRB_STATUS_*` code, bit 0x40 is QUEUE_FROZEN (set only by
/// the port) and bit 0x80 is AUTOSENSE_VALID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SrbStatus(pub u8);

#[allow(missing_docs)]
impl SrbStatus {
    pub const PENDING: Self = Self(0x00);
    pub const SUCCESS: Self = Self(0x01);
    pub const ABORTED: Self = Self(0x02);
    pub const ABORT_FAILED: Self = Self(0x03);
    pub const ERROR: Self = Self(0x04);
    pub const BUSY: Self = Self(0x05);
    pub const INVALID_REQUEST: Self = Self(0x06);
    pub const INVALID_PATH_ID: Self = Self(0x07);
    pub const NO_DEVICE: Self = Self(0x08);
    pub const TIMEOUT: Self = Self(0x09);
    pub const SELECTION_TIMEOUT: Self = Self(0x0A);
    pub const COMMAND_TIMEOUT: Self = Self(0x0B);
    pub const MESSAGE_REJECTED: Self = Self(0x0D);
    pub const BUS_RESET: Self = Self(0x0E);
    pub const PARITY_ERROR: Self = Self(0x0F);
    pub const REQUEST_SENSE_FAILED: Self = Self(0x10);
    pub const NO_HBA: Self = Self(0x11);
    pub const DATA_OVERRUN: Self = Self(0x12);
    pub const UNEXPECTED_BUS_FREE: Self = Self(0x13);
    pub const PHASE_SEQUENCE_FAILURE: Self = Self(0x14);
    pub const BAD_SRB_BLOCK_LENGTH: Self = Self(0x15);
    pub const REQUEST_FLUSHED: Self = Self(0x16);
    pub const INVALID_LUN: Self = Self(0x20);
    pub const INVALID_TARGET_ID: Self = Self(0x21);
    pub const BAD_FUNCTION: Self = Self(0x22);
    pub const ERROR_RECOVERY: Self = Self(0x23);
    pub const NOT_POWERED: Self = Self(0x24);
    pub const LINK_DOWN: Self = Self(0x25);
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x26);
    pub const THROTTLED_REQUEST: Self = Self(0x27);
    pub const INTERNAL_ERROR: Self = Self(0x30);
    /// Flag bit: the port froze the LU queue because of this request.
    pub const QUEUE_FROZEN: u8 = 0x40;
    /// Flag bit: the sense buffer holds valid sense data.
    pub const AUTOSENSE_VALID: u8 = 0x80;
}

impl SrbStatus {
    /// The status code without the flag bits (`SRB_STATUS(s)`).
    pub const fn status(self) -> SrbStatus {
        SrbStatus(self.0 & !(Self::QUEUE_FROZEN | Self::AUTOSENSE_VALID))
    }
    /// True when the code (flags ignored) is SUCCESS.
    pub const fn is_success(self) -> bool {
        self.status().0 == Self::SUCCESS.0
    }
    /// True when QUEUE_FROZEN is set.
    pub const fn queue_frozen(self) -> bool {
        self.0 & Self::QUEUE_FROZEN != 0
    }
    /// True when AUTOSENSE_VALID is set.
    pub const fn autosense_valid(self) -> bool {
        self.0 & Self::AUTOSENSE_VALID != 0
    }
    /// This status with `flag` (QUEUE_FROZEN or AUTOSENSE_VALID) added.
    pub const fn with(self, flag: u8) -> SrbStatus {
        SrbStatus(self.0 | flag)
    }
    /// A short name of the code, for logs.
    pub fn name(self) -> &'static str {
        match self.status() {
            Self::PENDING => "PENDING",
            Self::SUCCESS => "SUCCESS",
            Self::ABORTED => "ABORTED",
            Self::ABORT_FAILED => "ABORT_FAILED",
            Self::ERROR => "ERROR",
            Self::BUSY => "BUSY",
            Self::INVALID_REQUEST => "INVALID_REQUEST",
            Self::INVALID_PATH_ID => "INVALID_PATH_ID",
            Self::NO_DEVICE => "NO_DEVICE",
            Self::TIMEOUT => "TIMEOUT",
            Self::SELECTION_TIMEOUT => "SELECTION_TIMEOUT",
            Self::COMMAND_TIMEOUT => "COMMAND_TIMEOUT",
            Self::MESSAGE_REJECTED => "MESSAGE_REJECTED",
            Self::BUS_RESET => "BUS_RESET",
            Self::PARITY_ERROR => "PARITY_ERROR",
            Self::REQUEST_SENSE_FAILED => "REQUEST_SENSE_FAILED",
            Self::NO_HBA => "NO_HBA",
            Self::DATA_OVERRUN => "DATA_OVERRUN",
            Self::UNEXPECTED_BUS_FREE => "UNEXPECTED_BUS_FREE",
            Self::PHASE_SEQUENCE_FAILURE => "PHASE_SEQUENCE_FAILURE",
            Self::BAD_SRB_BLOCK_LENGTH => "BAD_SRB_BLOCK_LENGTH",
            Self::REQUEST_FLUSHED => "REQUEST_FLUSHED",
            Self::INVALID_LUN => "INVALID_LUN",
            Self::INVALID_TARGET_ID => "INVALID_TARGET_ID",
            Self::BAD_FUNCTION => "BAD_FUNCTION",
            Self::ERROR_RECOVERY => "ERROR_RECOVERY",
            Self::NOT_POWERED => "NOT_POWERED",
            Self::LINK_DOWN => "LINK_DOWN",
            Self::INSUFFICIENT_RESOURCES => "INSUFFICIENT_RESOURCES",
            Self::THROTTLED_REQUEST => "THROTTLED_REQUEST",
            Self::INTERNAL_ERROR => "INTERNAL_ERROR",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Debug for SrbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if self.queue_frozen() {
            write!(f, "|QUEUE_FROZEN")?;
        }
        if self.autosense_valid() {
            write!(f, "|AUTOSENSE_VALID")?;
        }
        Ok(())
    }
}

/// SCSI status byte values the port itself interprets (`SCSISTAT_*`).
pub mod scsi_status {
    /// GOOD.
    pub const GOOD: u8 = 0x00;
    /// CHECK CONDITION: sense data describes the error.
    pub const CHECK_CONDITION: u8 = 0x02;
    /// CONDITION MET.
    pub const CONDITION_MET: u8 = 0x04;
    /// BUSY: retried by the port.
    pub const BUSY: u8 = 0x08;
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    /// COMMAND TERMINATED (obsolete).
    pub const COMMAND_TERMINATED: u8 = 0x22;
    /// QUEUE FULL / TASK SET FULL: retried by the port like BUSY.
    pub const QUEUE_FULL: u8 = 0x28;
}

/// `SrbFlags` (`SRB_FLAGS_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SrbFlags(pub u32);

#[allow(missing_docs)]
impl SrbFlags {
    pub const NONE: Self = Self(0);
    pub const QUEUE_ACTION_ENABLE: Self = Self(0x0000_0002);
    pub const DISABLE_DISCONNECT: Self = Self(0x0000_0004);
    pub const DISABLE_SYNCH_TRANSFER: Self = Self(0x0000_0008);
    pub const BYPASS_FROZEN_QUEUE: Self = Self(0x0000_0010);
    pub const DISABLE_AUTOSENSE: Self = Self(0x0000_0020);
    pub const DATA_IN: Self = Self(0x0000_0040);
    pub const DATA_OUT: Self = Self(0x0000_0080);
    pub const NO_DATA_TRANSFER: Self = Self(0);
    pub const UNSPECIFIED_DIRECTION: Self = Self(0x0000_00C0);
    pub const NO_QUEUE_FREEZE: Self = Self(0x0000_0100);
    pub const ADAPTER_CACHE_ENABLE: Self = Self(0x0000_0200);
    pub const SEQUENTIAL_REQUIRED: Self = Self(0x0000_1000);
    pub const BYPASS_LOCKED_QUEUE: Self = Self(0x0008_0000);
    pub const NO_KEEP_AWAKE: Self = Self(0x0010_0000);
    pub const DONT_START_NEXT_PACKET: Self = Self(0x0080_0000);
    pub const CLASS_DRIVER_RESERVED: Self = Self(0xF000_0000);
}

impl SrbFlags {
    /// True when every bit of `other` is set.
    pub const fn contains(self, other: SrbFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// True when any bit of `other` is set.
    pub const fn intersects(self, other: SrbFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// Adds bits.
    pub fn insert(&mut self, other: SrbFlags) {
        self.0 |= other.0;
    }
    /// Removes bits.
    pub fn remove(&mut self, other: SrbFlags) {
        self.0 &= !other.0;
    }
    /// The data direction the DATA_IN / DATA_OUT bits describe.
    pub const fn direction(self) -> DataDirection {
        match (self.0 & 0x40 != 0, self.0 & 0x80 != 0) {
            (false, false) => DataDirection::None,
            (true, false) => DataDirection::In,
            (false, true) => DataDirection::Out,
            (true, true) => DataDirection::Unspecified,
        }
    }
}

impl std::ops::BitOr for SrbFlags {
    type Output = SrbFlags;
    fn bitor(self, rhs: SrbFlags) -> SrbFlags {
        SrbFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for SrbFlags {
    fn bitor_assign(&mut self, rhs: SrbFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for SrbFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrbFlags({:#x})", self.0)
    }
}

/// Direction of the data phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DataDirection {
    /// No data phase.
    #[default]
    None,
    /// Device to host (DATA_IN): the miniport fills the buffer.
    In,
    /// Host to device (DATA_OUT): the miniport reads the buffer.
    Out,
    /// Both bits set (ASPI/CAM compatibility).
    Unspecified,
}

impl DataDirection {
    /// The SRB flag bits for this direction.
    pub const fn flags(self) -> SrbFlags {
        match self {
            DataDirection::None => SrbFlags::NO_DATA_TRANSFER,
            DataDirection::In => SrbFlags::DATA_IN,
            DataDirection::Out => SrbFlags::DATA_OUT,
            DataDirection::Unspecified => SrbFlags::UNSPECIFIED_DIRECTION,
        }
    }
}

/// `QueueAction`: the tag message used when QUEUE_ACTION_ENABLE is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum QueueAction {
    /// SRB_SIMPLE_TAG_REQUEST.
    #[default]
    Simple = 0x20,
    /// SRB_HEAD_OF_QUEUE_TAG_REQUEST.
    HeadOfQueue = 0x21,
    /// SRB_ORDERED_QUEUE_TAG_REQUEST.
    Ordered = 0x22,
}

/// A CDB of up to [`MAX_CDB_LENGTH`] bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cdb {
    bytes: [u8; MAX_CDB_LENGTH],
    len: u8,
}

impl Default for Cdb {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_CDB_LENGTH],
            len: 0,
        }
    }
}

impl Cdb {
    /// Copies `bytes` into a CDB; `None` if longer than [`MAX_CDB_LENGTH`].
    pub fn new(bytes: &[u8]) -> Option<Cdb> {
        if bytes.len() > MAX_CDB_LENGTH {
            return None;
        }
        let mut cdb = Cdb::default();
        cdb.bytes[..bytes.len()].copy_from_slice(bytes);
        cdb.len = bytes.len() as u8;
        Some(cdb)
    }
    /// The CDB bytes (`CdbLength` of them).
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    /// Mutable access to the CDB bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len as usize]
    }
    /// `CdbLength`.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// True for an empty CDB.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The operation code (byte 0), 0 for an empty CDB.
    pub fn opcode(&self) -> u8 {
        self.bytes[0]
    }
}

impl fmt::Debug for Cdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cdb(")?;
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The I_T nexus a request arrives on: who the initiator is and through which target port.
/// The port carries it untouched; the device layer keys reservations and unit attentions on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ItNexus {
    /// Opaque initiator identity chosen by the upper layer (e.g. an interned iSCSI
    /// initiator name + ISID). 0 is the in-process initiator.
    pub initiator: u64,
    /// Relative target port identifier the request came through.
    pub relative_target_port: u16,
}

/// The WMI part of an `SRB_FUNCTION_WMI` request (`SCSI_WMI_REQUEST_BLOCK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WmiRequest {
    /// WMI minor code (see [`crate::wmi::sub_function`]).
    pub sub_function: u8,
    /// SRB_WMI_FLAGS_ADAPTER_REQUEST: the request is for the adapter, not the addressed LU.
    pub adapter_request: bool,
    /// The data block GUID (`DataPath`).
    pub guid: [u8; 16],
    /// Instance index for single-instance requests.
    pub instance_index: u32,
    /// Data item id or method id for SET_ITEM / EXECUTE_METHOD.
    pub item_id: u32,
    /// EXECUTE_METHOD: bytes of method input at the start of the data buffer (`InBufferSize`;
    /// the buffer's length is the output size allowed). 0 for the other requests.
    pub in_size: u32,
}

/// The identity of an SRB slot generation: which slot and which use of it. Copy; used to read an
/// active request ([`PortContext::srb`](crate::PortContext::srb)) and to name the target of an
/// abort ([`Srb::next_srb`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrbId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// A SCSI request block.
///
/// Fields the submitter sets: `function`, `address`, `cdb`, `flags`, `data` +
/// `data_transfer_length`, `sense_info_buffer_length`, `time_out_value`, `queue_action`,
/// `nexus`, `original_request`, `abort_target`, `wmi`. Fields the port sets: `queue_tag`,
/// `next_srb`, QUEUE_FROZEN in `srb_status`. Fields the miniport sets: `srb_status`,
/// `scsi_status`, `data_transfer_length` (underrun), the sense buffer and its length, the data.
#[derive(Debug, Clone)]
pub struct Srb {
    /// `Function`.
    pub function: SrbFunction,
    /// `SrbStatus`; PENDING until completed.
    pub srb_status: SrbStatus,
    /// `ScsiStatus` (`SCSISTAT_*`, see [`scsi_status`]).
    pub scsi_status: u8,
    /// `PathId`/`TargetId`/`Lun`.
    pub address: Address,
    /// `QueueTag`, assigned by the port when the request starts ([`SP_UNTAGGED`] if untagged).
    pub queue_tag: u32,
    /// `QueueAction`, used when QUEUE_ACTION_ENABLE is set.
    pub queue_action: QueueAction,
    /// `Cdb` + `CdbLength`.
    pub cdb: Cdb,
    /// `SrbFlags`.
    pub flags: SrbFlags,
    /// `DataTransferLength`: bytes to move; on an underrun the miniport lowers it to the bytes
    /// actually moved (see [`Srb::residual`]).
    pub data_transfer_length: u32,
    /// `TimeOutValue` in seconds (port ticks). 0 means the port default.
    pub time_out_value: u32,
    /// `DataBuffer`: owned by the request while it is in the port, handed back on completion.
    /// Must hold at least `data_transfer_length` bytes.
    pub data: Vec<u8>,
    /// `SenseInfoBuffer`.
    pub sense_info_buffer: [u8; SENSE_BUFFER_SIZE],
    /// `SenseInfoBufferLength`: how many sense bytes are wanted (0 = none); lowered by the
    /// miniport or port to the bytes returned.
    pub sense_info_buffer_length: u8,
    /// The I_T nexus the request belongs to.
    pub nexus: ItNexus,
    /// `OriginalRequest`: an opaque cookie of the submitter (e.g. an iSCSI ITT). The port never
    /// interprets it except to find the target of an ABORT_COMMAND.
    pub original_request: u64,
    /// ABORT_COMMAND only: the `original_request` of the request to abort (same submitter and
    /// address).
    pub abort_target: u64,
    /// ABORT_COMMAND only, set by the port for the miniport: the active request to abort
    /// (`NextSrb`).
    pub next_srb: Option<SrbId>,
    /// WMI parameters for `SrbFunction::Wmi`.
    pub wmi: WmiRequest,
    /// Residual overflow: bytes the command wanted to move beyond `DataTransferLength` (set
    /// by the miniport; 0 normally). Transports report it (iSCSI residual overflow).
    pub overflow: u32,
    /// DataTransferLength as submitted (set by the port), for the residual.
    pub(crate) requested_length: u32,
}

impl Default for Srb {
    fn default() -> Self {
        Self {
            function: SrbFunction::ExecuteScsi,
            srb_status: SrbStatus::PENDING,
            scsi_status: scsi_status::GOOD,
            address: Address::default(),
            queue_tag: SP_UNTAGGED,
            queue_action: QueueAction::Simple,
            cdb: Cdb::default(),
            flags: SrbFlags::NONE,
            data_transfer_length: 0,
            time_out_value: 0,
            data: Vec::new(),
            sense_info_buffer: [0; SENSE_BUFFER_SIZE],
            sense_info_buffer_length: 0,
            nexus: ItNexus::default(),
            original_request: 0,
            abort_target: 0,
            next_srb: None,
            wmi: WmiRequest::default(),
            overflow: 0,
            requested_length: 0,
        }
    }
}

impl Srb {
    /// An EXECUTE_SCSI request for `address` with `cdb` and no data, fixed-format sense
    /// (18 bytes) wanted and a 10 s timeout. `None` if the CDB is longer than 32 bytes.
    pub fn execute_scsi(address: Address, cdb: &[u8]) -> Option<Srb> {
        Some(Srb {
            address,
            cdb: Cdb::new(cdb)?,
            sense_info_buffer_length: 18,
            time_out_value: 10,
            ..Srb::default()
        })
    }

    /// A request of `function` for `address` (task management and queue functions).
    pub fn function(function: SrbFunction, address: Address) -> Srb {
        Srb {
            function,
            address,
            time_out_value: 10,
            ..Srb::default()
        }
    }

    /// Sets the data buffer, transfer length and direction. The buffer must hold at least
    /// `length` bytes.
    pub fn with_data(mut self, data: Vec<u8>, length: u32, direction: DataDirection) -> Srb {
        self.data = data;
        self.data_transfer_length = length;
        self.flags.remove(SrbFlags::UNSPECIFIED_DIRECTION);
        self.flags.insert(direction.flags());
        self
    }

    /// Prepares a completed SRB for another use: keeps the data buffer's allocation, resets
    /// status, sense and the port-set fields.
    pub fn recycle(&mut self) {
        self.srb_status = SrbStatus::PENDING;
        self.scsi_status = scsi_status::GOOD;
        self.queue_tag = SP_UNTAGGED;
        self.next_srb = None;
        self.sense_info_buffer_length = 0;
        self.overflow = 0;
        self.requested_length = 0;
    }

    /// The data direction from the flags.
    pub fn direction(&self) -> DataDirection {
        self.flags.direction()
    }

    /// The valid part of the data buffer: `data[..data_transfer_length]`, clamped to the buffer.
    pub fn data_slice(&self) -> &[u8] {
        let n = (self.data_transfer_length as usize).min(self.data.len());
        &self.data[..n]
    }

    /// Mutable `data[..data_transfer_length]`, clamped to the buffer.
    pub fn data_slice_mut(&mut self) -> &mut [u8] {
        let n = (self.data_transfer_length as usize).min(self.data.len());
        &mut self.data[..n]
    }

    /// The DataTransferLength the submitter asked for (valid once the port accepted the SRB).
    pub fn requested_length(&self) -> u32 {
        self.requested_length
    }

    /// Bytes not transferred: requested length minus the final DataTransferLength.
    pub fn residual(&self) -> u32 {
        self.requested_length
            .saturating_sub(self.data_transfer_length)
    }

    /// The valid sense bytes (empty unless AUTOSENSE_VALID).
    pub fn sense(&self) -> &[u8] {
        if self.srb_status.autosense_valid() {
            &self.sense_info_buffer
                [..(self.sense_info_buffer_length as usize).min(SENSE_BUFFER_SIZE)]
        } else {
            &[]
        }
    }

    /// Autosense helper for miniports: copies as much of `sense` as the buffer length allows,
    /// lowers `SenseInfoBufferLength` to what was copied and sets AUTOSENSE_VALID. Does nothing
    /// if the request wants no sense (length 0 or DISABLE_AUTOSENSE).
    pub fn set_sense(&mut self, sense: &[u8]) {
        if self.sense_info_buffer_length == 0 || self.flags.contains(SrbFlags::DISABLE_AUTOSENSE) {
            return;
        }
        let n = sense
            .len()
            .min(self.sense_info_buffer_length as usize)
            .min(SENSE_BUFFER_SIZE);
        self.sense_info_buffer[..n].copy_from_slice(&sense[..n]);
        self.sense_info_buffer_length = n as u8;
        self.srb_status = self.srb_status.with(SrbStatus::AUTOSENSE_VALID);
    }

    /// Completes with CHECK CONDITION: SrbStatus ERROR, ScsiStatus CHECK CONDITION, and the
    /// sense data copied (autosense) when the request wants it.
    pub fn set_check_condition(&mut self, sense: &[u8]) {
        self.srb_status = SrbStatus::ERROR;
        self.scsi_status = scsi_status::CHECK_CONDITION;
        self.set_sense(sense);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srb_status_strips_flag_bits() {
        let s = SrbStatus::ERROR
            .with(SrbStatus::QUEUE_FROZEN)
            .with(SrbStatus::AUTOSENSE_VALID);
        assert_eq!(s.status(), SrbStatus::ERROR);
        assert!(s.queue_frozen() && s.autosense_valid());
        assert_eq!(format!("{s:?}"), "ERROR|QUEUE_FROZEN|AUTOSENSE_VALID");
    }

    #[test]
    fn cdb_longer_than_32_bytes_is_refused() {
        assert!(Cdb::new(&[0u8; 33]).is_none());
        let c = Cdb::new(&[0x28, 0, 0, 0, 0, 1, 0, 0, 8, 0]).unwrap();
        assert_eq!(c.len(), 10);
        assert_eq!(c.opcode(), 0x28);
    }

    #[test]
    fn set_sense_honours_buffer_length_and_disable_autosense() {
        let mut srb = Srb::execute_scsi(Address::default(), &[0]).unwrap();
        srb.sense_info_buffer_length = 8;
        srb.set_check_condition(&[0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24]);
        assert_eq!(srb.sense().len(), 8);
        assert!(srb.srb_status.autosense_valid());
        let mut srb = Srb::execute_scsi(Address::default(), &[0]).unwrap();
        srb.flags.insert(SrbFlags::DISABLE_AUTOSENSE);
        srb.set_check_condition(&[0x70; 18]);
        assert!(!srb.srb_status.autosense_valid());
        assert!(srb.sense().is_empty());
    }

    #[test]
    fn address_filter_wildcards() {
        let a = Address::new(0, 3, 1);
        assert!(AddressFilter::all().matches(a));
        assert!(AddressFilter::bus(0).matches(a));
        assert!(!AddressFilter::bus(1).matches(a));
        assert!(AddressFilter::target(0, 3).matches(a));
        assert!(!AddressFilter::lu(Address::new(0, 3, 2)).matches(a));
    }
}
