//! SBC commands: READ / WRITE (6/10/12/16), READ CAPACITY, SYNCHRONIZE CACHE, VERIFY,
//! WRITE AND VERIFY, PRE-FETCH, WRITE SAME, UNMAP, GET LBA STATUS, COMPARE AND WRITE,
//! ORWRITE.
//!
//! Transfer rules (SBC-4 4.x, RFC 7143 11.4.5.1):
//! - a TRANSFER LENGTH of zero moves nothing and is not an error; the LBA must still be
//!   at most the capacity;
//! - `LBA + blocks > capacity` is LOGICAL BLOCK ADDRESS OUT OF RANGE;
//! - more blocks than MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB (pointer to the
//!   length field);
//! - an expected transfer length shorter than the command's moves only the expected
//!   bytes (whole blocks for writes) and reports an overflow residual; a longer one
//!   reports an underflow residual.

use crate::backend::LbaStatus;
use crate::lu::{Fail, HandlerResult, IoOp, LogicalUnit, Outcome};
use crate::request::{ScsiRequest, ScsiStatus};
use crate::sense::{Asc, Sense, SenseKey};
use scsi::RwCommand;
use scsi::unmap::{LbaStatusDescriptor, UnmapParameterList, lba_status_data, provisioning_status};

use crate::table::{CommandEntry, CommandKind};
use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{Immutable, IntoBytes, KnownLayout, Unaligned};

/// LOGICAL BLOCK ADDRESS, TRANSFER LENGTH and the CDB offset of the length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LbaRange {
    pub lba: u64,
    pub blocks: u64,
    pub len_at: u16,
}

fn be16(b: &[u8]) -> u64 {
    u64::from(u16::from_be_bytes([b[0], b[1]]))
}
fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parses the LBA and length of PRE-FETCH, SYNCHRONIZE CACHE and WRITE SAME (10 and 16
/// byte forms, which share the READ(10)/(16) field positions). The command table already
/// guaranteed the CDB length.
pub(crate) fn lba_range(cdb: &[u8], len: usize) -> LbaRange {
    if len == 10 {
        LbaRange {
            lba: be32(&cdb[2..6]),
            blocks: be16(&cdb[7..9]),
            len_at: 7,
        }
    } else {
        LbaRange {
            lba: be64(&cdb[2..10]),
            blocks: be32(&cdb[10..14]),
            len_at: 10,
        }
    }
}

/// Parses a READ / WRITE / VERIFY / WRITE AND VERIFY / ORWRITE CDB (already validated
/// against the command table) into the `scsi` crate's typed form.
fn parse_rw(cdb: &[u8]) -> Result<(RwCommand, LbaRange), Fail> {
    let rw =
        RwCommand::parse(cdb).map_err(|_| Sense::illegal_request(Asc::INVALID_FIELD_IN_CDB))?;
    let r = LbaRange {
        lba: rw.lba,
        blocks: u64::from(rw.blocks),
        len_at: rw.length_field_offset(),
    };
    Ok((rw, r))
}

const LBA_OUT_OF_RANGE: Sense = Sense::illegal_request(Asc::LBA_OUT_OF_RANGE);
/// INVALID FIELD IN CDB without a pointer: the data-out length does not fit the command.
const BAD_DATA_OUT_LENGTH: Sense = Sense::illegal_request(Asc::INVALID_FIELD_IN_CDB);
/// Bytes per chunk when a command loops over a range.
const CHUNK: u64 = 1 << 20;

fn miscompare(offset: u64) -> Fail {
    let mut s = Sense::new(
        SenseKey::Miscompare,
        Asc::MISCOMPARE_DURING_VERIFY_OPERATION,
    );
    s.information = Some(offset);
    Fail::Check(s)
}

impl LogicalUnit {
    fn check_range(&self, lba: u64, blocks: u64) -> Result<(), Fail> {
        let n = self.num_blocks();
        if lba > n || blocks > n - lba {
            return Err(LBA_OUT_OF_RANGE.into());
        }
        Ok(())
    }

    fn check_transfer(&self, r: &LbaRange) -> Result<(), Fail> {
        if r.blocks > u64::from(self.config.max_transfer_blocks) {
            return Err(Sense::invalid_field_in_cdb(r.len_at, Some(7)).into());
        }
        self.check_range(r.lba, r.blocks)
    }

    fn bs(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// READ(6/10/12/16): plans one backend read into the caller's buffer.
    pub(crate) fn read(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let (_, r) = parse_rw(req.cdb)?;
        self.check_transfer(&r)?;
        let wanted = r.blocks * self.bs();
        let expected = req.data_in.len();
        let len = wanted.min(expected as u64) as usize;
        if len == 0 {
            return Ok(Outcome::Done {
                status: ScsiStatus::Good,
                wanted,
                filled: 0,
            });
        }
        Ok(self.plan(IoOp::Read, r.lba * self.bs(), len, wanted, expected, None))
    }

    /// WRITE(6/10/12/16): plans one backend write of the whole blocks the initiator sent.
    pub(crate) fn write(&self, req: &mut ScsiRequest<'_>, long: bool) -> HandlerResult {
        let (rw, r) = parse_rw(req.cdb)?;
        self.check_transfer(&r)?;
        let bs = self.bs();
        let wanted = r.blocks * bs;
        let expected = req.data_out.len();
        let blocks = wanted.min(expected as u64) / bs;
        if blocks == 0 {
            return Ok(Outcome::Done {
                status: ScsiStatus::Good,
                wanted,
                filled: 0,
            });
        }
        let fua = rw.fua || !self.wce();
        let guard = self.ranges.shared(r.lba, r.lba + blocks, long);
        Ok(self.plan(
            IoOp::Write { fua },
            r.lba * bs,
            (blocks * bs) as usize,
            wanted,
            expected,
            Some(guard),
        ))
    }

    /// SYNCHRONIZE CACHE(10/16): the whole cache is flushed; the range is only checked.
    pub(crate) fn synchronize_cache(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
    ) -> HandlerResult {
        let r = lba_range(req.cdb, entry.cdb_len());
        self.check_range(r.lba, r.blocks)?;
        Ok(self.plan(IoOp::Flush, 0, 0, 0, req.expected_len(), None))
    }

    /// READ CAPACITY(10) (SBC-4 5.20).
    pub(crate) fn read_capacity10(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let pmi = req.cdb[8] & 1 != 0;
        if !pmi && req.cdb[2..6] != [0, 0, 0, 0] {
            return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
        }
        let d = scsi::capacity::ReadCapacity10Data::new(self.num_blocks(), self.block_size);
        Ok(Self::respond(req, d.as_bytes(), 8))
    }

    /// READ CAPACITY(16) (SBC-4 5.21): LBPME and LBPRZ for thin backends.
    pub(crate) fn read_capacity16(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let alloc = be32(&req.cdb[10..14]);
        let pmi = req.cdb[14] & 1 != 0;
        if !pmi && req.cdb[2..10] != [0; 8] {
            return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
        }
        let d = scsi::capacity::ReadCapacity16Data::new(self.num_blocks(), self.block_size)
            .with_lbpme(self.thin)
            .with_lbprz(self.thin);
        Ok(Self::respond(req, d.as_bytes(), alloc))
    }

    /// READ DEFECT DATA(10) and (12) (SBC-4 5.19, 5.20). The medium has no defects, so
    /// the data is the header alone: PLISTV and GLISTV echo REQ_PLIST and REQ_GLIST (each
    /// requested list is valid and empty), the format echoes the requested one (with no
    /// descriptors every format is the requested one), DEFECT LIST LENGTH = 0.
    pub(crate) fn read_defect_data(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
    ) -> HandlerResult {
        if entry.kind == CommandKind::ReadDefectData10 {
            let flags = req.cdb[2] & 0x1f;
            let alloc = u64::from(u16::from_be_bytes([req.cdb[7], req.cdb[8]]));
            let h = DefectDataHeader10 {
                reserved: 0,
                flags,
                defect_list_length: U16::new(0),
            };
            Ok(Self::respond(req, h.as_bytes(), alloc))
        } else {
            let flags = req.cdb[1] & 0x1f;
            let alloc = be32(&req.cdb[6..10]);
            let h = DefectDataHeader12 {
                reserved: 0,
                flags,
                generation_code: U16::new(0),
                defect_list_length: U32::new(0),
            };
            Ok(Self::respond(req, h.as_bytes(), alloc))
        }
    }

    /// Reads `blocks` blocks from `lba` into a fresh buffer (bounded by the caller).
    fn read_blocks(&self, lba: u64, blocks: u64) -> Result<Vec<u8>, Fail> {
        let mut buf = vec![0u8; (blocks * self.bs()) as usize];
        self.backend.read_at(lba * self.bs(), &mut buf)?;
        Ok(buf)
    }

    /// Compares the medium from byte `offset` with `data`, 1 MiB at a time; the offset
    /// into `data` of the first difference, if any.
    fn compare_medium(&self, offset: u64, data: &[u8]) -> Result<Option<u64>, Fail> {
        let mut buf = vec![0u8; data.len().min(CHUNK as usize)];
        for (k, want) in data.chunks(CHUNK as usize).enumerate() {
            let at = k as u64 * CHUNK;
            let got = &mut buf[..want.len()];
            self.backend.read_at(offset + at, got)?;
            if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
                return Ok(Some(at + i as u64));
            }
        }
        Ok(None)
    }

    /// VERIFY(10/12/16) (SBC-4 5.33): BYTCHK 00b reads the range to check it is
    /// readable; 01b compares the data-out buffer with the medium (MISCOMPARE with the
    /// byte offset in INFORMATION). 10b (reserved) and 11b are refused.
    pub(crate) fn verify(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let (rw, r) = parse_rw(req.cdb)?;
        let bytchk = rw.bytchk;
        if bytchk > 1 {
            return Err(Sense::invalid_field_in_cdb(1, Some(2)).into());
        }
        self.check_transfer(&r)?;
        let bs = self.bs();
        if bytchk == 0 {
            let mut done = 0;
            let mut buf = vec![0u8; (r.blocks * bs).min(CHUNK) as usize];
            while done < r.blocks * bs {
                let n = (r.blocks * bs - done).min(CHUNK) as usize;
                self.backend.read_at(r.lba * bs + done, &mut buf[..n])?;
                done += n as u64;
            }
            return Ok(Outcome::GOOD);
        }
        let wanted = r.blocks * bs;
        let blocks = wanted.min(req.data_out.len() as u64) / bs;
        let data = &req.data_out[..(blocks * bs) as usize];
        if let Some(i) = self.compare_medium(r.lba * bs, data)? {
            return Err(miscompare(i));
        }
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted,
            filled: 0,
        })
    }

    /// WRITE AND VERIFY(10/12/16) (SBC-4 5.39): writes to stable storage, then with
    /// BYTCHK = 1 reads the blocks back and compares.
    pub(crate) fn write_and_verify(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let (rw, r) = parse_rw(req.cdb)?;
        let bytchk = rw.bytchk != 0;
        self.check_transfer(&r)?;
        let bs = self.bs();
        let wanted = r.blocks * bs;
        let blocks = wanted.min(req.data_out.len() as u64) / bs;
        if blocks > 0 {
            let data = &req.data_out[..(blocks * bs) as usize];
            let _g = self.ranges.shared(r.lba, r.lba + blocks, false);
            self.backend.write_at(r.lba * bs, data, true)?;
            if bytchk && let Some(i) = self.compare_medium(r.lba * bs, data)? {
                return Err(miscompare(i));
            }
        }
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted,
            filled: 0,
        })
    }

    /// PRE-FETCH(10/16) (SBC-4 5.11): nothing to prefetch into; GOOD after the range
    /// check (a device without a cache returns GOOD, not CONDITION MET).
    pub(crate) fn prefetch(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
    ) -> HandlerResult {
        let r = lba_range(req.cdb, entry.cdb_len());
        self.check_range(r.lba, r.blocks)?;
        Ok(Outcome::GOOD)
    }

    /// Writes `pattern` (one block) to `blocks` blocks from `lba`.
    fn fill_pattern(&self, lba: u64, blocks: u64, pattern: &[u8]) -> Result<(), Fail> {
        let bs = self.bs();
        let per = (CHUNK / bs).min(blocks).max(1);
        let mut buf = Vec::with_capacity((per * bs) as usize);
        for _ in 0..per {
            buf.extend_from_slice(pattern);
        }
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            self.backend
                .write_at((lba + done) * bs, &buf[..(n * bs) as usize], !self.wce())?;
            done += n;
        }
        Ok(())
    }

    /// WRITE SAME(10/16) (SBC-4 5.42, 5.43). UNMAP with an all-zero block deallocates on
    /// thin backends (LBPRZ = 1); NDOB (16 only) means an all-zero block without data-out.
    /// ANCHOR is refused (ANC_SUP = 0); zero blocks is refused (WSNZ = 1).
    pub(crate) fn write_same(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
    ) -> HandlerResult {
        let b1 = req.cdb[1];
        let ws16 = entry.kind == CommandKind::WriteSame16;
        let anchor = b1 & 0x10 != 0;
        let unmap = b1 & 0x08 != 0;
        let ndob = ws16 && b1 & 0x01 != 0;
        if anchor {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)).into());
        }
        let r = lba_range(req.cdb, entry.cdb_len());
        // The range first: zero blocks past the end is LBA OUT OF RANGE, not WSNZ.
        self.check_range(r.lba, r.blocks)?;
        if r.blocks == 0 || r.blocks > u64::from(self.config.max_write_same_blocks) {
            return Err(Sense::invalid_field_in_cdb(r.len_at, Some(7)).into());
        }
        let bs = self.bs() as usize;
        let zeroes;
        let (pattern, wanted) = if ndob {
            zeroes = vec![0u8; bs];
            (&zeroes[..], 0)
        } else {
            if req.data_out.len() != bs {
                return Err(BAD_DATA_OUT_LENGTH.into());
            }
            (req.data_out, bs as u64)
        };
        let all_zero = pattern.iter().all(|b| *b == 0);
        let _g = self.ranges.shared(r.lba, r.lba + r.blocks, false);
        if unmap && all_zero && self.thin {
            self.backend.unmap(r.lba, r.blocks)?;
        } else {
            self.fill_pattern(r.lba, r.blocks, pattern)?;
        }
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted,
            filled: 0,
        })
    }

    /// UNMAP (SBC-4 5.32): every descriptor is checked before any block is unmapped.
    pub(crate) fn unmap(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        if req.cdb[1] & 0x01 != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(0)).into());
        }
        let plen = be16(&req.cdb[7..9]) as usize;
        if plen == 0 {
            return Ok(Outcome::GOOD);
        }
        let list = &req.data_out[..plen.min(req.data_out.len())];
        if plen < 8 || list.len() < 8 {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let parsed = UnmapParameterList::parse(list)
            .map_err(|_| Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR))?;
        let count = parsed.descriptors.len();
        if count > self.config.max_unmap_descriptors as usize {
            return Err(Sense::invalid_field_in_parameter_list(2, Some(7)).into());
        }
        let descriptor = |i: usize| {
            let d = &parsed.descriptors[i];
            (
                d.logical_block_address.get(),
                u64::from(d.number_of_logical_blocks.get()),
            )
        };
        // MAXIMUM UNMAP LBA COUNT bounds the whole parameter list (SBC-4 5.32.1).
        let mut total = 0u64;
        for i in 0..count {
            let (lba, blocks) = descriptor(i);
            total += blocks;
            if total > u64::from(self.config.max_unmap_blocks) {
                return Err(Sense::invalid_field_in_parameter_list(
                    (8 + 16 * i + 8) as u16,
                    Some(7),
                )
                .into());
            }
            self.check_range(lba, blocks)?;
        }
        for i in 0..count {
            let (lba, blocks) = descriptor(i);
            if blocks > 0 {
                let _g = self.ranges.shared(lba, lba + blocks, false);
                self.backend.unmap(lba, blocks)?;
            }
        }
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted: plen as u64,
            filled: 0,
        })
    }

    /// GET LBA STATUS (SBC-4 5.8): descriptors from the starting LBA as far as the
    /// allocation length allows (at most 64).
    pub(crate) fn get_lba_status(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let lba = be64(&req.cdb[2..10]);
        let alloc = be32(&req.cdb[10..14]);
        let n = self.num_blocks();
        if lba >= n {
            return Err(LBA_OUT_OF_RANGE.into());
        }
        let max_desc = (alloc.saturating_sub(8) / 16).clamp(1, 64);
        let mut descs = Vec::with_capacity(max_desc as usize);
        let mut cur = lba;
        while cur < n && (descs.len() as u64) < max_desc {
            let (status, run) = self
                .backend
                .lba_status(cur, (n - cur).min(u64::from(u32::MAX)))?;
            let run = run.clamp(1, (n - cur).min(u64::from(u32::MAX)));
            let status = match status {
                LbaStatus::Mapped => provisioning_status::MAPPED,
                LbaStatus::Deallocated => provisioning_status::DEALLOCATED,
            };
            descs.push(LbaStatusDescriptor::new(cur, run as u32, status));
            cur += run;
        }
        let out = lba_status_data(&descs);
        Ok(Self::respond(req, &out, alloc))
    }

    /// COMPARE AND WRITE (SBC-4 5.3): under an exclusive range lock, compares the first
    /// half of the data-out buffer with the medium and, if equal, writes the second half.
    /// A mismatch is MISCOMPARE with INFORMATION = offset of the first differing byte.
    pub(crate) fn compare_and_write(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let lba = be64(&req.cdb[2..10]);
        let blocks = u64::from(req.cdb[13]);
        let fua = req.cdb[1] & 0x08 != 0;
        if blocks == 0 {
            // Zero blocks transfer nothing (SBC-4 5.3). An initiator that still sends
            // data-out most likely truncated a larger count into this one-byte field (256
            // blocks reads as 0): refuse it as the field's error, as for a count above the
            // limit, instead of succeeding without comparing anything.
            if !req.data_out.is_empty() {
                return Err(Sense::invalid_field_in_cdb(13, Some(7)).into());
            }
            self.check_range(lba, 0)?;
            return Ok(Outcome::GOOD);
        }
        if blocks > u64::from(self.config.max_compare_and_write_blocks) {
            return Err(Sense::invalid_field_in_cdb(13, Some(7)).into());
        }
        self.check_range(lba, blocks)?;
        let half = (blocks * self.bs()) as usize;
        if req.data_out.len() != 2 * half {
            return Err(BAD_DATA_OUT_LENGTH.into());
        }
        let Ok(_g) = self.ranges.exclusive(lba, lba + blocks) else {
            return Err(Fail::Status(ScsiStatus::Busy));
        };
        let medium = self.read_blocks(lba, blocks)?;
        let (verify, write) = req.data_out.split_at(half);
        if let Some(i) = medium.iter().zip(verify).position(|(a, b)| a != b) {
            return Err(miscompare(i as u64));
        }
        self.backend
            .write_at(lba * self.bs(), write, fua || !self.wce())?;
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted: 2 * half as u64,
            filled: 0,
        })
    }

    /// ORWRITE(16) (SBC-4 5.10): medium = medium OR data-out, atomically against other
    /// writes.
    pub(crate) fn orwrite(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let (rw, r) = parse_rw(req.cdb)?;
        self.check_transfer(&r)?;
        let fua = rw.fua;
        let bs = self.bs();
        let wanted = r.blocks * bs;
        let blocks = wanted.min(req.data_out.len() as u64) / bs;
        if blocks > 0 {
            let Ok(_g) = self.ranges.exclusive(r.lba, r.lba + blocks) else {
                return Err(Fail::Status(ScsiStatus::Busy));
            };
            // Under the exclusive range lock, 1 MiB at a time.
            let data = &req.data_out[..(blocks * bs) as usize];
            let mut medium = vec![0u8; data.len().min(CHUNK as usize)];
            for (k, d) in data.chunks(CHUNK as usize).enumerate() {
                let at = r.lba * bs + k as u64 * CHUNK;
                let m = &mut medium[..d.len()];
                self.backend.read_at(at, m)?;
                for (m, d) in m.iter_mut().zip(d) {
                    *m |= *d;
                }
                self.backend.write_at(at, m, fua || !self.wce())?;
            }
        }
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted,
            filled: 0,
        })
    }
}

/// READ DEFECT DATA(10) parameter data header (SBC-4 table 122), 4 bytes.
#[derive(Debug, Clone, Copy, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct DefectDataHeader10 {
    reserved: u8,
    /// PLISTV (bit 4), GLISTV (bit 3), DEFECT LIST FORMAT (bits 2..0).
    flags: u8,
    /// DEFECT LIST LENGTH in bytes.
    defect_list_length: U16,
}
const _: () = assert!(size_of::<DefectDataHeader10>() == 4);

/// READ DEFECT DATA(12) parameter data header (SBC-4 table 125), 8 bytes.
#[derive(Debug, Clone, Copy, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct DefectDataHeader12 {
    reserved: u8,
    /// PLISTV (bit 4), GLISTV (bit 3), DEFECT LIST FORMAT (bits 2..0).
    flags: u8,
    /// GENERATION CODE (0: not supported).
    generation_code: U16,
    /// DEFECT LIST LENGTH in bytes.
    defect_list_length: U32,
}
const _: () = assert!(size_of::<DefectDataHeader12>() == 8);
