//! A pipelined iSCSI session for load tests: several SCSI commands outstanding on one
//! connection of the test [`Initiator`](iscsi::testing::initiator::Initiator), completions
//! matched to commands by Initiator Task Tag.
//!
//! It keeps the books the soak test needs at the iSCSI level: every command sent gets exactly
//! one completion. A completion (SCSI Response, or Data-In with status) for a tag that is not
//! outstanding is counted as [`SessionCounters::unexpected`] — a double completion, or one for
//! a command never sent. Commands still outstanding when the session ends are the missing
//! completions.
//!
//! Blocking: one thread owns a session. Writes go as immediate data plus unsolicited Data-Out
//! when the login allows, and answer R2Ts from the data the session keeps until the command
//! completes. Only this module and the `iscsi` crate are used, so tests can include the file.
#![allow(dead_code)] // Tests include this file and use a subset.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use iscsi::pdu::{Bhs, Opcode, RESERVED_TAG};
use iscsi::testing::initiator::{Initiator, LoginOptions};

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// GOOD; for reads, the data.
    Good(Vec<u8>),
    /// CHECK CONDITION with (sense key, ASC, ASCQ) from fixed or descriptor sense.
    Check(u8, u8, u8),
    /// Another SCSI status (BUSY, TASK SET FULL, TASK ABORTED, ...).
    Status(u8),
    /// The iSCSI response code was not "command completed at target".
    Failed(u8),
}

/// A finished command.
#[derive(Debug)]
pub struct Completion {
    /// The caller's token given at submission.
    pub token: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Time from submission to completion.
    pub latency: Duration,
}

/// Commands and completions of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// SCSI commands sent.
    pub issued: u64,
    /// Completions that matched an outstanding command.
    pub completed: u64,
    /// Completions for a tag that was not outstanding (double, or never sent).
    pub unexpected: u64,
    /// R2Ts answered.
    pub r2ts: u64,
    /// Async messages, rejects and other PDUs the session did not ask for.
    pub other_pdus: u64,
}

struct Pending {
    token: u64,
    lun: u64,
    data_out: Vec<u8>,
    data_in: Vec<u8>,
    started: Instant,
}

/// One logged-in session with pipelined SCSI commands.
pub struct Session {
    ini: Initiator,
    pending: HashMap<u32, Pending>,
    counters: SessionCounters,
    /// Most commands the session keeps outstanding (also bounded by MaxCmdSN).
    pub depth: usize,
}

/// The 8-byte LUN field for LUN `lun` (SAM: peripheral addressing below 256, flat space up
/// to 16383).
pub fn lun_field(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | (lun & 0x3fff)) << 48
    }
}

/// True when serial number `a` <= `b` (RFC 1982, 32 bits).
fn sn_le(a: u32, b: u32) -> bool {
    a == b || (b.wrapping_sub(a) as i32) > 0
}

/// (sense key, ASC, ASCQ) of fixed (70h/71h) or descriptor (72h/73h) sense data.
pub fn sense_triple(sense: &[u8]) -> (u8, u8, u8) {
    let at = |i: usize| sense.get(i).copied().unwrap_or(0);
    match at(0) & 0x7f {
        0x72 | 0x73 => (at(1) & 0x0f, at(2), at(3)),
        _ => (at(2) & 0x0f, at(12), at(13)),
    }
}

impl Session {
    /// Connects to `addr` and logs in to `target` as `initiator` with ISID `isid`. Every
    /// receive is bounded by `timeout`.
    pub fn login(
        addr: SocketAddr,
        initiator: &str,
        target: &str,
        isid: [u8; 6],
        timeout: Duration,
    ) -> io::Result<Session> {
        let mut ini = Initiator::connect(addr, timeout)?;
        let mut o = LoginOptions::normal(initiator, target);
        o.isid = isid;
        ini.login(&o)
            .map_err(|e| io::Error::other(format!("login to {target}: {e:?}")))?;
        Ok(Session {
            ini,
            pending: HashMap::new(),
            counters: SessionCounters::default(),
            depth: 8,
        })
    }

    /// The session's TSIH (the same value for as long as the session lives).
    pub fn tsih(&self) -> u16 {
        self.ini.tsih
    }

    /// The counters so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Commands sent and not completed.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Tokens of the commands sent and not completed, with their age.
    pub fn outstanding_ages(&self) -> Vec<(u64, Duration)> {
        self.pending
            .values()
            .map(|p| (p.token, p.started.elapsed()))
            .collect()
    }

    /// Whether another command may be sent now (depth and the target's command window).
    pub fn can_submit(&self) -> bool {
        self.pending.len() < self.depth && sn_le(self.ini.cmd_sn, self.ini.max_cmd_sn)
    }

    /// Sends READ(16) of `blocks` 512-byte blocks at `lba` of `lun`.
    pub fn read(&mut self, token: u64, lun: u64, lba: u64, blocks: u32) -> io::Result<()> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.send(token, lun, &cdb, blocks * 512, Vec::new())
    }

    /// Sends WRITE(16) of `data` (a multiple of 512 bytes) at `lba` of `lun`.
    pub fn write(&mut self, token: u64, lun: u64, lba: u64, data: Vec<u8>) -> io::Result<()> {
        let blocks = (data.len() / 512) as u32;
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8a;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.send(token, lun, &cdb, 0, data)
    }

    /// Sends TEST UNIT READY to `lun`.
    pub fn test_unit_ready(&mut self, token: u64, lun: u64) -> io::Result<()> {
        self.send(token, lun, &[0u8; 6], 0, Vec::new())
    }

    /// Sends one SCSI command: a write when `data_out` is not empty, a read of `read_len`
    /// bytes otherwise (0: no data).
    pub fn send(
        &mut self,
        token: u64,
        lun: u64,
        cdb: &[u8],
        read_len: u32,
        data_out: Vec<u8>,
    ) -> io::Result<()> {
        let lun = lun_field(lun);
        let write = !data_out.is_empty();
        let edtl = if write {
            data_out.len() as u32
        } else {
            read_len
        };
        let mut b = self
            .ini
            .command_bhs(lun, cdb, !write && read_len > 0, write, edtl);
        let itt = b.itt();
        let imm = if write && self.ini.immediate_data {
            data_out
                .len()
                .min(self.ini.first_burst as usize)
                .min(self.ini.target_mrdsl as usize)
        } else {
            0
        };
        let unsolicited_end = if !write || self.ini.initial_r2t {
            imm
        } else {
            data_out.len().min(self.ini.first_burst as usize)
        };
        if unsolicited_end == imm {
            b.0[1] |= 0x80;
        } else {
            b.0[1] &= !0x80;
        }
        self.ini.send_pdu(&b, &data_out[..imm])?;
        self.ini.cmd_sn = self.ini.cmd_sn.wrapping_add(1);
        self.counters.issued += 1;
        let mut sent = imm;
        let mut data_sn = 0;
        while sent < unsolicited_end {
            let n = (unsolicited_end - sent).min(self.ini.target_mrdsl as usize);
            self.ini.data_out(
                lun,
                itt,
                RESERVED_TAG,
                data_sn,
                sent as u32,
                &data_out[sent..sent + n],
                sent + n == unsolicited_end,
            )?;
            data_sn += 1;
            sent += n;
        }
        self.pending.insert(
            itt,
            Pending {
                token,
                lun,
                data_out,
                data_in: Vec::new(),
                started: Instant::now(),
            },
        );
        Ok(())
    }

    /// Receives until one command completes or `timeout` passes (`Ok(None)`). An error is a
    /// broken connection (EOF is `UnexpectedEof`).
    pub fn poll(&mut self, timeout: Duration) -> io::Result<Option<Completion>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.ini
                .set_read_timeout(left.max(Duration::from_millis(1)))?;
            let p = match self.ini.recv_non_ping() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the target closed the connection",
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if let Some(c) = self.absorb(&p.bhs, &p.data)? {
                return Ok(Some(c));
            }
        }
    }

    /// Handles one PDU from the target; returns a completion if it finished a command.
    fn absorb(&mut self, bhs: &Bhs, data: &[u8]) -> io::Result<Option<Completion>> {
        let itt = bhs.itt();
        match bhs.opcode() {
            Some(Opcode::DataIn) => {
                let Some(p) = self.pending.get_mut(&itt) else {
                    self.counters.unexpected += 1;
                    return Ok(None);
                };
                let off = bhs.u32_at(40) as usize;
                // Bounded: the target never sends past the expected length we asked for.
                let end = off.saturating_add(data.len()).min(16 << 20);
                if p.data_in.len() < end {
                    p.data_in.resize(end, 0);
                }
                let n = end.saturating_sub(off);
                p.data_in[off.min(end)..end].copy_from_slice(&data[..n]);
                if bhs.flags() & 0x01 != 0 {
                    let status = bhs.0[3];
                    return Ok(self.finish(itt, 0, status, &[]));
                }
                Ok(None)
            }
            Some(Opcode::ScsiResponse) => {
                let sense = if data.len() >= 2 {
                    let n = u16::from_be_bytes([data[0], data[1]]) as usize;
                    &data[2..(2 + n).min(data.len())]
                } else {
                    &[][..]
                };
                Ok(self.finish(itt, bhs.0[2], bhs.0[3], sense))
            }
            Some(Opcode::R2t) => {
                let Some(p) = self.pending.get(&itt) else {
                    self.counters.unexpected += 1;
                    return Ok(None);
                };
                self.counters.r2ts += 1;
                let ttt = bhs.u32_at(20);
                let off = bhs.u32_at(40) as usize;
                let len = bhs.u32_at(44) as usize;
                let end = off.saturating_add(len).min(p.data_out.len());
                let (lun, out) = (p.lun, p.data_out[off.min(end)..end].to_vec());
                let mut pos = 0;
                let mut sn = 0;
                while pos < out.len() {
                    let n = (out.len() - pos).min(self.ini.target_mrdsl as usize);
                    self.ini.data_out(
                        lun,
                        itt,
                        ttt,
                        sn,
                        (off + pos) as u32,
                        &out[pos..pos + n],
                        pos + n == out.len(),
                    )?;
                    sn += 1;
                    pos += n;
                }
                Ok(None)
            }
            _ => {
                self.counters.other_pdus += 1;
                Ok(None)
            }
        }
    }

    fn finish(&mut self, itt: u32, response: u8, status: u8, sense: &[u8]) -> Option<Completion> {
        let Some(p) = self.pending.remove(&itt) else {
            self.counters.unexpected += 1;
            return None;
        };
        self.counters.completed += 1;
        let outcome = match (response, status) {
            (0, 0) => Outcome::Good(p.data_in),
            (0, 2) => {
                let (k, a, q) = sense_triple(sense);
                Outcome::Check(k, a, q)
            }
            (0, s) => Outcome::Status(s),
            (r, _) => Outcome::Failed(r),
        };
        Some(Completion {
            token: p.token,
            outcome,
            latency: p.started.elapsed(),
        })
    }

    /// TARGET WARM RESET (task management function 6) on this session's connection. The
    /// response comes back among the command completions, so this drains completions into
    /// `done` while it waits. Returns the TMF response code.
    pub fn target_warm_reset(
        &mut self,
        timeout: Duration,
        done: &mut Vec<Completion>,
    ) -> io::Result<u8> {
        self.task_management(6, 0, timeout, done)
    }

    /// Sends task management `function` for `lun` and waits (bounded) for its response,
    /// collecting command completions that arrive meanwhile into `done`.
    pub fn task_management(
        &mut self,
        function: u8,
        lun: u64,
        timeout: Duration,
        done: &mut Vec<Completion>,
    ) -> io::Result<u8> {
        let mut b = Bhs::new(Opcode::TaskMgmtRequest);
        b.0[0] |= 0x40;
        b.0[1] = 0x80 | function;
        b.set_u64(8, lun_field(lun));
        let itt = self.ini.next_itt();
        b.set_u32(16, itt);
        b.set_u32(20, RESERVED_TAG);
        b.set_u32(24, self.ini.cmd_sn);
        b.set_u32(28, self.ini.exp_stat_sn);
        self.ini.send_pdu(&b, &[])?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no task management response",
                ));
            }
            self.ini.set_read_timeout(left)?;
            let p = self.ini.recv_non_ping()?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the target closed the connection",
                )
            })?;
            if p.bhs.opcode() == Some(Opcode::TaskMgmtResponse) && p.bhs.itt() == itt {
                return Ok(p.bhs.0[2]);
            }
            if let Some(c) = self.absorb(&p.bhs, &p.data)? {
                done.push(c);
            }
        }
    }

    /// Logs out (close the session); the response code, or an error.
    pub fn logout(mut self) -> io::Result<u8> {
        self.ini.logout(0)
    }
}
