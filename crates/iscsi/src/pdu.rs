//! PDU framing (RFC 7143 §11): the Basic Header Segment, additional header
//! segments, the data segment with its padding, and the optional CRC32C
//! header and data digests.
//!
//! The decoder is sans-I/O: it is fed a byte buffer and yields whole PDUs.
//! Every length is checked against the negotiated limits before anything is
//! allocated, and the header digest is verified before any length in the
//! header is trusted for more than framing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Length of a CRC32C digest on the wire.
pub const DIGEST_LEN: usize = 4;
/// Reserved tag value ("no tag").
pub const RESERVED_TAG: u32 = 0xffff_ffff;
/// Largest AHS the decoder accepts (TotalAHSLength is one byte of 4-byte words).
pub const MAX_AHS_LEN: usize = 255 * 4;

const _: () = assert!(BHS_LEN == 48);

/// iSCSI opcodes (RFC 7143 §11.2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    Snack = 0x10,
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    R2t = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    /// Decodes the 6-bit opcode field; `None` for opcodes RFC 7143 does not define.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match v & 0x3f {
            0x00 => NopOut,
            0x01 => ScsiCommand,
            0x02 => TaskMgmtRequest,
            0x03 => LoginRequest,
            0x04 => TextRequest,
            0x05 => DataOut,
            0x06 => LogoutRequest,
            0x10 => Snack,
            0x20 => NopIn,
            0x21 => ScsiResponse,
            0x22 => TaskMgmtResponse,
            0x23 => LoginResponse,
            0x24 => TextResponse,
            0x25 => DataIn,
            0x26 => LogoutResponse,
            0x31 => R2t,
            0x32 => AsyncMessage,
            0x3f => Reject,
            _ => return None,
        })
    }
}

/// Reject reasons (RFC 7143 §11.17.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    DataDigestError = 0x02,
    SnackReject = 0x03,
    ProtocolError = 0x04,
    CommandNotSupported = 0x05,
    ImmediateCommandReject = 0x06,
    TaskInProgress = 0x07,
    InvalidDataAck = 0x08,
    InvalidPduField = 0x09,
    LongOperationReject = 0x0a,
    WaitingForLogout = 0x0c,
}

/// The 48-byte Basic Header Segment with big-endian field accessors.
///
/// Typed views per opcode (below) read and write their fields through these
/// accessors; offsets are the byte offsets of RFC 7143 §11.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bhs({:02x?})", &self.0[..])
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl Bhs {
    /// A header with the opcode byte set.
    pub fn new(opcode: Opcode) -> Bhs {
        let mut b = Bhs::default();
        b.0[0] = opcode as u8;
        b
    }
    pub fn opcode_raw(&self) -> u8 {
        self.0[0] & 0x3f
    }
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.0[0])
    }
    /// The I (immediate delivery) bit of byte 0.
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    /// The F (final) bit of byte 1.
    pub fn final_bit(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    /// TotalAHSLength in bytes.
    pub fn total_ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }
    pub fn data_segment_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }
    pub fn set_data_segment_len(&mut self, len: u32) {
        debug_assert!(len < 1 << 24);
        let b = len.to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..4]);
    }
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
    pub fn u64_at(&self, off: usize) -> u64 {
        u64::from_be_bytes(self.0[off..off + 8].try_into().expect("8 bytes"))
    }
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_be_bytes());
    }
    /// Bytes 8..16: LUN (or ISID+TSIH in login PDUs).
    pub fn lun(&self) -> u64 {
        self.u64_at(8)
    }
    /// Bytes 16..20: Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
}

/// One received PDU: header, additional header segments and data segment
/// (padding and digests stripped and verified).
#[derive(Debug, Clone)]
pub struct Pdu {
    pub bhs: Bhs,
    pub ahs: Bytes,
    pub data: Bytes,
}

/// Framing errors. `HeaderDigest` and `Framing` mean the byte stream can no
/// longer be trusted and the connection must be dropped; `DataDigest` and
/// `DataSegmentTooLong` leave the stream in sync (the whole PDU was consumed)
/// and are answered with a Reject.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("header digest mismatch")]
    HeaderDigest,
    #[error("data digest mismatch")]
    DataDigest { bhs: Box<Bhs> },
    #[error("data segment length {len} exceeds limit {limit}")]
    DataSegmentTooLong { bhs: Box<Bhs>, len: u32, limit: u32 },
}

/// Digest settings and receive limit for one connection.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment accepted (our MaxRecvDataSegmentLength, or 8192 during login).
    pub max_data_segment: u32,
}

fn pad4(n: usize) -> usize {
    (4 - (n & 3)) & 3
}

/// CRC32C as iSCSI sends it: the 32-bit value in little-endian byte order
/// (RFC 7143 §13.1 / RFC 3720 B.4 test vectors).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// A received PDU borrowed from the receive buffer (see [`decode_ref`]).
#[derive(Debug, Clone, Copy)]
pub struct PduRef<'a> {
    pub bhs: Bhs,
    pub ahs: &'a [u8],
    pub data: &'a [u8],
}

/// Tries to take one PDU off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. A PDU whose data segment
/// exceeds `limits.max_data_segment` is rejected from its header alone,
/// before the data is buffered; the caller then drops the connection.
pub fn decode(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Pdu>, DecodeError> {
    let (pdu, len) = match decode_ref(buf, limits)? {
        None => return Ok(None),
        Some((p, len)) => (
            Pdu {
                bhs: p.bhs,
                ahs: Bytes::copy_from_slice(p.ahs),
                data: Bytes::copy_from_slice(p.data),
            },
            len,
        ),
    };
    buf.advance(len);
    Ok(Some(pdu))
}

/// [`decode`] without taking the PDU out of `buf`: returns it borrowed from
/// `buf`, with the number of bytes it spans there (header, digests, padding
/// included), which the caller removes with `buf.advance` once it has
/// handled the PDU. No copy and no reference count per PDU. A PDU with a
/// data digest error is removed from `buf` before the error is returned (the
/// stream stays in sync).
pub fn decode_ref<'a>(
    buf: &'a mut BytesMut,
    limits: &FrameLimits,
) -> Result<Option<(PduRef<'a>, usize)>, DecodeError> {
    if buf.len() < BHS_LEN {
        return Ok(None);
    }
    let mut bhs = Bhs::default();
    bhs.0.copy_from_slice(&buf[..BHS_LEN]);
    let ahs_len = bhs.total_ahs_len();
    let hd_len = if limits.header_digest { DIGEST_LEN } else { 0 };
    let header_len = BHS_LEN + ahs_len + hd_len;
    if buf.len() < header_len {
        return Ok(None);
    }
    if limits.header_digest {
        let want = crc32c(&buf[..BHS_LEN + ahs_len]);
        let got = u32::from_le_bytes(buf[BHS_LEN + ahs_len..header_len].try_into().expect("4"));
        if want != got {
            return Err(DecodeError::HeaderDigest);
        }
    }
    let dsl = bhs.data_segment_len();
    if dsl > limits.max_data_segment {
        return Err(DecodeError::DataSegmentTooLong {
            bhs: Box::new(bhs),
            len: dsl,
            limit: limits.max_data_segment,
        });
    }
    let dsl = dsl as usize;
    let padded = dsl + pad4(dsl);
    let dd_len = if limits.data_digest && dsl > 0 {
        DIGEST_LEN
    } else {
        0
    };
    let total = header_len + padded + dd_len;
    if buf.len() < total {
        // Make room for the rest of this PDU in one go (bounded by the limit above).
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if dd_len > 0 {
        let want = crc32c(&buf[header_len..header_len + padded]);
        let got = u32::from_le_bytes(buf[header_len + padded..total].try_into().expect("4"));
        if want != got {
            buf.advance(total);
            return Err(DecodeError::DataDigest { bhs: Box::new(bhs) });
        }
    }
    let buf: &'a BytesMut = buf;
    let pdu = PduRef {
        bhs,
        ahs: &buf[BHS_LEN..BHS_LEN + ahs_len],
        data: &buf[header_len..header_len + dsl],
    };
    Ok(Some((pdu, total)))
}

/// Appends one PDU to `out`: header (+digest), then the concatenation of
/// `data` parts, padding and data digest. Sets the DataSegmentLength field.
pub fn encode(
    out: &mut BytesMut,
    bhs: &Bhs,
    data: &[&[u8]],
    header_digest: bool,
    data_digest: bool,
) {
    let dsl: usize = data.iter().map(|d| d.len()).sum();
    let mut bhs = *bhs;
    bhs.set_data_segment_len(dsl as u32);
    let pad = pad4(dsl);
    out.reserve(BHS_LEN + 8 + dsl + pad);
    out.put_slice(&bhs.0);
    if header_digest {
        out.put_u32_le(crc32c(&bhs.0));
    }
    if dsl == 0 {
        return;
    }
    let mut crc = 0u32;
    for part in data {
        out.put_slice(part);
        if data_digest {
            crc = crc32c::crc32c_append(crc, part);
        }
    }
    const ZERO: [u8; 4] = [0; 4];
    out.put_slice(&ZERO[..pad]);
    if data_digest {
        crc = crc32c::crc32c_append(crc, &ZERO[..pad]);
        out.put_u32_le(crc);
    }
}

/// Appends the header (+digest) of a PDU whose `dsl`-byte data segment is queued separately
/// (spliced by [`crate::out::OutQueue::splice`]); [`encode_trailer`] then appends its padding
/// and data digest. Sets the DataSegmentLength field.
pub fn encode_header(out: &mut BytesMut, bhs: &Bhs, dsl: usize, header_digest: bool) {
    let mut bhs = *bhs;
    bhs.set_data_segment_len(dsl as u32);
    out.reserve(BHS_LEN + 4);
    out.put_slice(&bhs.0);
    if header_digest {
        out.put_u32_le(crc32c(&bhs.0));
    }
}

/// The data digest of a data segment (CRC32C over the data and its padding).
pub fn data_digest(data: &[u8]) -> u32 {
    const ZERO: [u8; 4] = [0; 4];
    crc32c::crc32c_append(crc32c(data), &ZERO[..pad4(data.len())])
}

/// Appends the padding of a `dsl`-byte data segment written separately, and its data digest
/// if one is given (see [`encode_header`]).
pub fn encode_trailer(out: &mut BytesMut, dsl: usize, data_digest: Option<u32>) {
    const ZERO: [u8; 4] = [0; 4];
    out.put_slice(&ZERO[..pad4(dsl)]);
    if let Some(crc) = data_digest {
        out.put_u32_le(crc);
    }
}

// ---------------------------------------------------------------------------
// Typed views of the initiator PDUs the target parses.
// ---------------------------------------------------------------------------

/// Task attribute of a SCSI Command (byte 1, bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAttribute {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Clone, Copy, Debug)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_bit: bool,
    pub read: bool,
    pub write: bool,
    pub attribute: TaskAttribute,
    pub lun: u64,
    pub itt: u32,
    pub expected_data_transfer_length: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    pub fn parse(b: &Bhs) -> ScsiCommand {
        let f = b.flags();
        ScsiCommand {
            immediate: b.immediate(),
            final_bit: f & 0x80 != 0,
            read: f & 0x40 != 0,
            write: f & 0x20 != 0,
            attribute: match f & 7 {
                0 => TaskAttribute::Untagged,
                1 => TaskAttribute::Simple,
                2 => TaskAttribute::Ordered,
                3 => TaskAttribute::HeadOfQueue,
                4 => TaskAttribute::Aca,
                _ => TaskAttribute::Simple,
            },
            lun: b.lun(),
            itt: b.itt(),
            expected_data_transfer_length: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
            cdb: b.0[32..48].try_into().expect("16"),
        }
    }
}

/// SCSI Data-Out (RFC 7143 §11.7).
#[derive(Clone, Copy, Debug)]
pub struct DataOut {
    pub final_bit: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
}

impl DataOut {
    pub fn parse(b: &Bhs) -> DataOut {
        DataOut {
            final_bit: b.final_bit(),
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            exp_stat_sn: b.u32_at(28),
            data_sn: b.u32_at(36),
            buffer_offset: b.u32_at(40),
        }
    }
}

/// Login Request (RFC 7143 §11.12).
#[derive(Clone, Copy, Debug)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl LoginRequest {
    pub fn parse(b: &Bhs) -> LoginRequest {
        let f = b.flags();
        LoginRequest {
            transit: f & 0x80 != 0,
            cont: f & 0x40 != 0,
            csg: (f >> 2) & 3,
            nsg: f & 3,
            version_max: b.0[2],
            version_min: b.0[3],
            isid: b.0[8..14].try_into().expect("6"),
            tsih: b.u16_at(14),
            itt: b.itt(),
            cid: b.u16_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
        }
    }
}

/// Text Request (RFC 7143 §11.10).
#[derive(Clone, Copy, Debug)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_bit: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl TextRequest {
    pub fn parse(b: &Bhs) -> TextRequest {
        TextRequest {
            immediate: b.immediate(),
            final_bit: b.final_bit(),
            cont: b.flags() & 0x40 != 0,
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
        }
    }
}

/// NOP-Out (RFC 7143 §11.18).
#[derive(Clone, Copy, Debug)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl NopOut {
    pub fn parse(b: &Bhs) -> NopOut {
        NopOut {
            immediate: b.immediate(),
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
        }
    }
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Clone, Copy, Debug)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl LogoutRequest {
    pub fn parse(b: &Bhs) -> LogoutRequest {
        LogoutRequest {
            immediate: b.immediate(),
            reason: b.flags() & 0x7f,
            itt: b.itt(),
            cid: b.u16_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
        }
    }
}

/// Task Management Function Request (RFC 7143 §11.5).
#[derive(Clone, Copy, Debug)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    pub referenced_task_tag: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
}

impl TaskMgmtRequest {
    pub fn parse(b: &Bhs) -> TaskMgmtRequest {
        TaskMgmtRequest {
            immediate: b.immediate(),
            function: b.flags() & 0x7f,
            lun: b.lun(),
            itt: b.itt(),
            referenced_task_tag: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
            ref_cmd_sn: b.u32_at(32),
        }
    }
}

// ---------------------------------------------------------------------------
// Builders for target PDUs. Sequence numbers are filled by the connection.
// ---------------------------------------------------------------------------

/// Sequence numbers stamped on every target PDU that carries them.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqNums {
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

impl SeqNums {
    fn stamp(&self, b: &mut Bhs) {
        b.set_u32(24, self.stat_sn);
        b.set_u32(28, self.exp_cmd_sn);
        b.set_u32(32, self.max_cmd_sn);
    }
}

/// Residual under/overflow reported in SCSI Response and final Data-In.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Residual {
    #[default]
    None,
    Underflow(u32),
    Overflow(u32),
}

impl Residual {
    /// Residual of a transfer the command wanted (`wanted` bytes) against the
    /// initiator's Expected Data Transfer Length.
    pub fn of(expected: u32, wanted: u32) -> Residual {
        use std::cmp::Ordering::*;
        match wanted.cmp(&expected) {
            Equal => Residual::None,
            Less => Residual::Underflow(expected - wanted),
            Greater => Residual::Overflow(wanted - expected),
        }
    }
    fn flags(&self) -> u8 {
        match self {
            Residual::None => 0,
            Residual::Underflow(_) => 0x02,
            Residual::Overflow(_) => 0x04,
        }
    }
    fn count(&self) -> u32 {
        match *self {
            Residual::None => 0,
            Residual::Underflow(n) | Residual::Overflow(n) => n,
        }
    }
}

/// SCSI Response header (RFC 7143 §11.4). Data segment: SenseLength + sense.
pub fn scsi_response(
    itt: u32,
    status: u8,
    residual: Residual,
    exp_data_sn: u32,
    sn: &SeqNums,
) -> Bhs {
    let mut b = Bhs::new(Opcode::ScsiResponse);
    b.0[1] = 0x80 | residual.flags();
    b.0[2] = 0; // Response: command completed at target
    b.0[3] = status;
    b.set_u32(16, itt);
    sn.stamp(&mut b);
    b.set_u32(36, exp_data_sn);
    b.set_u32(44, residual.count());
    b
}

/// Data-In header (RFC 7143 §11.7). With `status = Some(..)` the S bit is set
/// (status in the last Data-In) and StatSN is meaningful.
#[allow(clippy::too_many_arguments)]
pub fn data_in(
    itt: u32,
    final_bit: bool,
    status: Option<(u8, Residual)>,
    data_sn: u32,
    buffer_offset: u32,
    sn: &SeqNums,
) -> Bhs {
    let mut b = Bhs::new(Opcode::DataIn);
    let mut f = if final_bit { 0x80 } else { 0 };
    let mut residual = Residual::None;
    if let Some((st, r)) = status {
        f |= 0x81 | r.flags();
        b.0[3] = st;
        residual = r;
    }
    b.0[1] = f;
    b.set_u32(16, itt);
    b.set_u32(20, RESERVED_TAG);
    sn.stamp(&mut b);
    if status.is_none() {
        b.set_u32(24, 0);
    }
    b.set_u32(36, data_sn);
    b.set_u32(40, buffer_offset);
    b.set_u32(44, residual.count());
    b
}

/// Ready To Transfer (RFC 7143 §11.8). StatSN is not advanced by an R2T.
pub fn r2t(lun: u64, itt: u32, ttt: u32, r2t_sn: u32, offset: u32, len: u32, sn: &SeqNums) -> Bhs {
    let mut b = Bhs::new(Opcode::R2t);
    b.0[1] = 0x80;
    b.set_u64(8, lun);
    b.set_u32(16, itt);
    b.set_u32(20, ttt);
    sn.stamp(&mut b);
    b.set_u32(36, r2t_sn);
    b.set_u32(40, offset);
    b.set_u32(44, len);
    b
}

/// NOP-In (RFC 7143 §11.19).
pub fn nop_in(lun: u64, itt: u32, ttt: u32, sn: &SeqNums) -> Bhs {
    let mut b = Bhs::new(Opcode::NopIn);
    b.0[1] = 0x80;
    b.set_u64(8, lun);
    b.set_u32(16, itt);
    b.set_u32(20, ttt);
    sn.stamp(&mut b);
    b
}

/// Task Management Function Response (RFC 7143 §11.6).
pub fn task_mgmt_response(itt: u32, response: u8, sn: &SeqNums) -> Bhs {
    let mut b = Bhs::new(Opcode::TaskMgmtResponse);
    b.0[1] = 0x80;
    b.0[2] = response;
    b.set_u32(16, itt);
    sn.stamp(&mut b);
    b
}

/// Text Response (RFC 7143 §11.11).
pub fn text_response(
    final_bit: bool,
    cont: bool,
    lun: u64,
    itt: u32,
    ttt: u32,
    sn: &SeqNums,
) -> Bhs {
    let mut b = Bhs::new(Opcode::TextResponse);
    b.0[1] = if final_bit { 0x80 } else { 0 } | if cont { 0x40 } else { 0 };
    b.set_u64(8, lun);
    b.set_u32(16, itt);
    b.set_u32(20, ttt);
    sn.stamp(&mut b);
    b
}

/// Logout Response (RFC 7143 §11.15).
pub fn logout_response(itt: u32, response: u8, sn: &SeqNums) -> Bhs {
    let mut b = Bhs::new(Opcode::LogoutResponse);
    b.0[1] = 0x80;
    b.0[2] = response;
    b.set_u32(16, itt);
    sn.stamp(&mut b);
    b.set_u16(40, 2); // Time2Wait
    b.set_u16(42, 0); // Time2Retain (ERL 0: nothing is retained)
    b
}

/// Reject (RFC 7143 §11.17). Data segment: the rejected header.
pub fn reject(reason: RejectReason, sn: &SeqNums) -> Bhs {
    let mut b = Bhs::new(Opcode::Reject);
    b.0[1] = 0x80;
    b.0[2] = reason as u8;
    b.set_u32(16, RESERVED_TAG);
    sn.stamp(&mut b);
    b
}

/// Asynchronous Message (RFC 7143 §11.9).
pub fn async_message(event: u8, param1: u16, param2: u16, param3: u16, sn: &SeqNums) -> Bhs {
    let mut b = Bhs::new(Opcode::AsyncMessage);
    b.0[1] = 0x80;
    b.set_u32(16, RESERVED_TAG);
    sn.stamp(&mut b);
    b.0[36] = event;
    b.set_u16(38, param1);
    b.set_u16(40, param2);
    b.set_u16(42, param3);
    b
}

/// Login Response (RFC 7143 §11.13).
#[derive(Clone, Copy, Debug)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub status_class: u8,
    pub status_detail: u8,
}

impl LoginResponse {
    pub fn to_bhs(&self, sn: &SeqNums) -> Bhs {
        let mut b = Bhs::new(Opcode::LoginResponse);
        b.0[1] = if self.transit { 0x80 } else { 0 }
            | if self.cont { 0x40 } else { 0 }
            | (self.csg & 3) << 2
            | (self.nsg & 3);
        b.0[2] = 0; // Version-max
        b.0[3] = 0; // Version-active
        b.0[8..14].copy_from_slice(&self.isid);
        b.set_u16(14, self.tsih);
        b.set_u32(16, self.itt);
        sn.stamp(&mut b);
        b.0[36] = self.status_class;
        b.0[37] = self.status_detail;
        b
    }
}

/// Serial number arithmetic (RFC 1982, 32 bits) as RFC 7143 §4.2.2.1 requires.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// `a <= b` in serial arithmetic.
pub fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_rfc3720_vectors() {
        // RFC 3720 B.4: 32 bytes of zeros -> aa 36 91 8a on the wire.
        assert_eq!(crc32c(&[0u8; 32]).to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(
            crc32c(&[0xffu8; 32]).to_le_bytes(),
            [0x43, 0xab, 0xa8, 0x62]
        );
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc).to_le_bytes(), [0x4e, 0x79, 0xdd, 0x46]);
    }

    #[test]
    fn round_trip_with_digests_and_padding() {
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut b = Bhs::new(Opcode::NopIn);
            b.set_u32(16, 0x1234);
            let mut out = BytesMut::new();
            encode(&mut out, &b, &[b"abc", b"de"], hd, dd);
            assert_eq!(out.len() % 4, 0);
            let limits = FrameLimits {
                header_digest: hd,
                data_digest: dd,
                max_data_segment: 8192,
            };
            // Feed one byte at a time: the decoder waits for the whole PDU.
            let mut inbuf = BytesMut::new();
            let mut got = None;
            for byte in out.iter() {
                assert!(got.is_none());
                inbuf.put_u8(*byte);
                got = decode(&mut inbuf, &limits).unwrap();
            }
            let pdu = got.unwrap();
            assert_eq!(pdu.bhs.itt(), 0x1234);
            assert_eq!(&pdu.data[..], b"abcde");
            assert!(inbuf.is_empty());
        }
    }

    #[test]
    fn digest_errors_and_limits() {
        let b = Bhs::new(Opcode::NopOut);
        let mut out = BytesMut::new();
        encode(&mut out, &b, &[b"hello"], true, true);
        let limits = FrameLimits {
            header_digest: true,
            data_digest: true,
            max_data_segment: 8192,
        };
        let mut bad = out.clone();
        bad[50] ^= 1;
        assert_eq!(
            decode(&mut bad, &limits).unwrap_err(),
            DecodeError::HeaderDigest
        );
        let mut bad = out.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            decode(&mut bad, &limits),
            Err(DecodeError::DataDigest { .. })
        ));
        let small = FrameLimits {
            max_data_segment: 4,
            ..limits
        };
        let mut b2 = out.clone();
        assert!(matches!(
            decode(&mut b2, &small),
            Err(DecodeError::DataSegmentTooLong { len: 5, .. })
        ));
    }

    #[test]
    fn serial_arithmetic() {
        assert!(sn_lt(1, 2));
        assert!(sn_lt(0xffff_fff0, 5));
        assert!(!sn_lt(5, 0xffff_fff0));
        assert!(sn_le(7, 7));
    }

    #[test]
    fn residual_of() {
        assert_eq!(Residual::of(512, 512), Residual::None);
        assert_eq!(Residual::of(10000, 512), Residual::Underflow(9488));
        assert_eq!(Residual::of(0, 512), Residual::Overflow(512));
    }
}
