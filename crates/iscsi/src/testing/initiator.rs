//! A small blocking iSCSI initiator for protocol tests: login (with
//! optional CHAP, mutual CHAP and digests), SCSI reads and writes (immediate
//! data, unsolicited Data-Out, R2T), text, NOP, task management, logout, and
//! raw PDU/byte injection for malformed-input tests.
//!
//! Not a general-purpose initiator: one command at a time unless the raw
//! interface is used.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;

use crate::chap::{self, ChapAlgorithm};
use crate::pdu::{self, Bhs, FrameLimits, Opcode, Pdu, RESERVED_TAG};
use crate::text;

/// Login parameters.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator_name: String,
    /// `None`: discovery session.
    pub target_name: Option<String>,
    pub isid: [u8; 6],
    pub header_digest: bool,
    pub data_digest: bool,
    /// One-way CHAP credentials (user, secret).
    pub chap: Option<(String, String)>,
    /// CHAP algorithms offered, in order (5 = MD5, 7 = SHA-256).
    pub chap_algorithms: String,
    /// Mutual CHAP: the target's expected (user, secret).
    pub mutual: Option<(String, String)>,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u16,
    /// Extra keys sent in the operational stage.
    pub extra_keys: Vec<(String, String)>,
}

impl LoginOptions {
    pub fn normal(initiator: &str, target: &str) -> LoginOptions {
        LoginOptions {
            initiator_name: initiator.into(),
            target_name: Some(target.into()),
            isid: [0x80, 0, 0, 0x12, 0x34, 0x56],
            header_digest: false,
            data_digest: false,
            chap: None,
            chap_algorithms: "5".into(),
            mutual: None,
            initial_r2t: false,
            immediate_data: true,
            max_recv_data_segment_length: 65536,
            max_burst_length: 262_144,
            first_burst_length: 65536,
            max_outstanding_r2t: 1,
            extra_keys: Vec::new(),
        }
    }
    pub fn discovery(initiator: &str) -> LoginOptions {
        LoginOptions {
            target_name: None,
            ..LoginOptions::normal(initiator, "")
        }
    }
}

/// Login failure: the target's status class/detail, or a transport/protocol problem.
#[derive(Debug)]
pub enum LoginError {
    Status(u16),
    MutualAuthFailed,
    Protocol(String),
    Io(io::Error),
}

impl From<io::Error> for LoginError {
    fn from(e: io::Error) -> Self {
        LoginError::Io(e)
    }
}

/// Result of one SCSI command.
#[derive(Debug, Clone, Default)]
pub struct ScsiResult {
    pub status: u8,
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
    /// Residual flags and count: (underflow, overflow, count).
    pub underflow: bool,
    pub overflow: bool,
    pub residual: u32,
    /// Number of R2T PDUs seen.
    pub r2ts: u32,
    /// Number of Data-In PDUs seen.
    pub data_ins: u32,
}

/// A 10-byte READ/WRITE-style CDB: `opcode`, LBA in bytes 2-5, transfer length in 7-8.
pub fn cdb10(opcode: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = opcode;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// A blocking test initiator on one TCP connection.
pub struct Initiator {
    stream: TcpStream,
    inbuf: BytesMut,
    pub limits: FrameLimits,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub max_cmd_sn: u32,
    itt: u32,
    /// Keys the target answered during login.
    pub negotiated: HashMap<String, String>,
    pub tsih: u16,
    /// The target's declared MaxRecvDataSegmentLength.
    pub target_mrdsl: u32,
    pub first_burst: u32,
    pub max_burst: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// NOP-In pings from the target answered automatically.
    pub pings_answered: u32,
}

impl Initiator {
    /// Connects with a read timeout (every receive is bounded by it).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Initiator> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Initiator {
            stream,
            inbuf: BytesMut::with_capacity(64 * 1024),
            limits: FrameLimits {
                header_digest: false,
                data_digest: false,
                max_data_segment: 1 << 24,
            },
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_cmd_sn: 1,
            itt: 0x1000,
            negotiated: HashMap::new(),
            tsih: 0,
            target_mrdsl: 8192,
            first_burst: 65536,
            max_burst: 262_144,
            immediate_data: true,
            initial_r2t: true,
            pings_answered: 0,
        })
    }

    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(t))
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        self.itt
    }

    /// Writes raw bytes (malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Encodes and sends one PDU with the connection's digest settings.
    pub fn send_pdu(&mut self, bhs: &Bhs, data: &[u8]) -> io::Result<()> {
        let mut out = BytesMut::new();
        pdu::encode(
            &mut out,
            bhs,
            &[data],
            self.limits.header_digest,
            self.limits.data_digest,
        );
        self.stream.write_all(&out)
    }

    /// Receives one PDU. `Ok(None)` when the target closed the connection.
    pub fn recv_pdu(&mut self) -> io::Result<Option<Pdu>> {
        loop {
            match pdu::decode(&mut self.inbuf, &self.limits) {
                Ok(Some(p)) => {
                    if matches!(p.bhs.opcode(), Some(o) if o != Opcode::LoginResponse && o != Opcode::R2t)
                    {
                        let sn = p.bhs.u32_at(24);
                        let data_in_without_status =
                            p.bhs.opcode() == Some(Opcode::DataIn) && p.bhs.flags() & 1 == 0;
                        let unsolicited_nop =
                            p.bhs.opcode() == Some(Opcode::NopIn) && p.bhs.itt() == RESERVED_TAG;
                        let status_bearing = !(data_in_without_status || unsolicited_nop);
                        if status_bearing {
                            self.exp_stat_sn = sn.wrapping_add(1);
                        }
                    }
                    if p.bhs.opcode() != Some(Opcode::LoginResponse) {
                        self.max_cmd_sn = p.bhs.u32_at(32);
                    }
                    return Ok(Some(p));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut buf = [0u8; 65536];
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            };
            self.inbuf.extend_from_slice(&buf[..n]);
        }
    }

    /// Receives the next PDU that is not a target ping (pings are answered).
    pub fn recv_non_ping(&mut self) -> io::Result<Option<Pdu>> {
        loop {
            let Some(p) = self.recv_pdu()? else {
                return Ok(None);
            };
            if p.bhs.opcode() == Some(Opcode::NopIn) && p.bhs.itt() == RESERVED_TAG {
                let ttt = p.bhs.u32_at(20);
                if ttt != RESERVED_TAG {
                    let mut b = Bhs::new(Opcode::NopOut);
                    b.0[0] |= 0x40;
                    b.0[1] = 0x80;
                    b.set_u32(16, RESERVED_TAG);
                    b.set_u32(20, ttt);
                    b.set_u32(24, self.cmd_sn);
                    b.set_u32(28, self.exp_stat_sn);
                    self.send_pdu(&b, &[])?;
                    self.pings_answered += 1;
                }
                continue;
            }
            return Ok(Some(p));
        }
    }

    fn login_pdu(
        &mut self,
        o: &LoginOptions,
        transit: bool,
        csg: u8,
        nsg: u8,
        data: &[u8],
    ) -> io::Result<Option<Pdu>> {
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.0[0] |= 0x40;
        b.0[1] = if transit { 0x80 } else { 0 } | (csg << 2) | nsg;
        b.0[8..14].copy_from_slice(&o.isid);
        b.set_u16(14, self.tsih);
        b.set_u32(16, 0x77);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        self.send_pdu(&b, data)?;
        self.recv_pdu()
    }

    /// Logs in (security stage when CHAP is configured, then operational).
    pub fn login(&mut self, o: &LoginOptions) -> Result<(), LoginError> {
        let mut names = Vec::new();
        text::push(&mut names, "InitiatorName", &o.initiator_name);
        match &o.target_name {
            Some(t) => {
                text::push(&mut names, "TargetName", t);
                text::push(&mut names, "SessionType", "Normal");
            }
            None => text::push(&mut names, "SessionType", "Discovery"),
        }
        let check = |p: &Option<Pdu>| -> Result<(Bhs, Vec<(String, String)>), LoginError> {
            let p = p
                .as_ref()
                .ok_or_else(|| LoginError::Protocol("connection closed".into()))?;
            if p.bhs.opcode() != Some(Opcode::LoginResponse) {
                return Err(LoginError::Protocol(format!(
                    "unexpected opcode {:#x}",
                    p.bhs.opcode_raw()
                )));
            }
            let status = p.bhs.u16_at(36);
            if status != 0 {
                return Err(LoginError::Status(status));
            }
            let kv = text::parse(&p.data).map_err(|e| LoginError::Protocol(e.to_string()))?;
            Ok((p.bhs, kv))
        };
        let mut first_data = names.clone();
        if let Some((user, secret)) = &o.chap {
            text::push(&mut first_data, "AuthMethod", "CHAP,None");
            let r = self.login_pdu(o, false, 0, 1, &first_data)?;
            let (_, kv) = check(&r)?;
            self.absorb(&kv);
            let mut d = Vec::new();
            text::push(&mut d, "CHAP_A", &o.chap_algorithms);
            let r = self.login_pdu(o, false, 0, 1, &d)?;
            let (_, kv) = check(&r)?;
            let get = |k: &str| kv.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
            let alg = get("CHAP_A")
                .and_then(|a| ChapAlgorithm::from_code(&a))
                .ok_or_else(|| LoginError::Protocol("no CHAP_A".into()))?;
            let id = get("CHAP_I")
                .and_then(|i| chap::parse_identifier(&i))
                .ok_or_else(|| LoginError::Protocol("no CHAP_I".into()))?;
            let c = get("CHAP_C")
                .and_then(|c| text::decode_binary(&c))
                .ok_or_else(|| LoginError::Protocol("no CHAP_C".into()))?;
            let resp = chap::response(alg, id, secret.as_bytes(), &c);
            let mut d = Vec::new();
            text::push(&mut d, "CHAP_N", user);
            text::push(&mut d, "CHAP_R", &text::encode_hex(&resp));
            let my_challenge = [0x5au8; 16];
            let my_id = 9u8;
            if o.mutual.is_some() {
                text::push(&mut d, "CHAP_I", &my_id.to_string());
                text::push(&mut d, "CHAP_C", &text::encode_hex(&my_challenge));
            }
            let r = self.login_pdu(o, true, 0, 1, &d)?;
            let (bhs, kv) = check(&r)?;
            if bhs.flags() & 0x80 == 0 {
                return Err(LoginError::Protocol(
                    "target did not leave the security stage".into(),
                ));
            }
            if let Some((tuser, tsecret)) = &o.mutual {
                let get = |k: &str| kv.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                let want = chap::response(alg, my_id, tsecret.as_bytes(), &my_challenge);
                let ok = get("CHAP_N").as_deref() == Some(tuser.as_str())
                    && get("CHAP_R").and_then(|r| text::decode_binary(&r)) == Some(want);
                if !ok {
                    return Err(LoginError::MutualAuthFailed);
                }
            }
            first_data = Vec::new();
        }
        let mut d = first_data;
        let digest = |on: bool| if on { "CRC32C,None" } else { "None" };
        text::push(&mut d, "HeaderDigest", digest(o.header_digest));
        text::push(&mut d, "DataDigest", digest(o.data_digest));
        text::push(
            &mut d,
            "MaxRecvDataSegmentLength",
            &o.max_recv_data_segment_length.to_string(),
        );
        if o.target_name.is_some() {
            text::push(
                &mut d,
                "InitialR2T",
                if o.initial_r2t { "Yes" } else { "No" },
            );
            text::push(
                &mut d,
                "ImmediateData",
                if o.immediate_data { "Yes" } else { "No" },
            );
            text::push(&mut d, "MaxBurstLength", &o.max_burst_length.to_string());
            text::push(
                &mut d,
                "FirstBurstLength",
                &o.first_burst_length.to_string(),
            );
            text::push(
                &mut d,
                "MaxOutstandingR2T",
                &o.max_outstanding_r2t.to_string(),
            );
        }
        text::push(&mut d, "ErrorRecoveryLevel", "0");
        for (k, v) in &o.extra_keys {
            text::push(&mut d, k, v);
        }
        let r = self.login_pdu(o, true, 1, 3, &d)?;
        let (bhs, kv) = check(&r)?;
        self.absorb(&kv);
        if bhs.flags() & 0x83 != 0x83 {
            return Err(LoginError::Protocol(
                "target did not enter full feature phase".into(),
            ));
        }
        self.tsih = bhs.u16_at(14);
        self.max_cmd_sn = bhs.u32_at(32);
        self.exp_stat_sn = bhs.u32_at(24).wrapping_add(1);
        let on = |k: &str| {
            self.negotiated
                .get(k)
                .map(|v| v == "CRC32C")
                .unwrap_or(false)
        };
        self.limits = FrameLimits {
            header_digest: on("HeaderDigest"),
            data_digest: on("DataDigest"),
            max_data_segment: o.max_recv_data_segment_length,
        };
        self.target_mrdsl = self
            .negotiated
            .get("MaxRecvDataSegmentLength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(8192);
        self.first_burst = self
            .negotiated
            .get("FirstBurstLength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(65536);
        self.max_burst = self
            .negotiated
            .get("MaxBurstLength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(262_144);
        self.immediate_data = self
            .negotiated
            .get("ImmediateData")
            .map(|v| v == "Yes")
            .unwrap_or(true);
        self.initial_r2t = self
            .negotiated
            .get("InitialR2T")
            .map(|v| v == "Yes")
            .unwrap_or(true);
        Ok(())
    }

    fn absorb(&mut self, kv: &[(String, String)]) {
        for (k, v) in kv {
            self.negotiated.insert(k.clone(), v.clone());
        }
    }

    /// Builds a SCSI Command header (CmdSN/ExpStatSN filled, CmdSN not advanced).
    pub fn command_bhs(&mut self, lun: u64, cdb: &[u8], read: bool, write: bool, edtl: u32) -> Bhs {
        let mut b = Bhs::new(Opcode::ScsiCommand);
        b.0[1] = 0x80 | if read { 0x40 } else { 0 } | if write { 0x20 } else { 0 } | 1;
        b.set_u64(8, lun);
        let itt = self.next_itt();
        b.set_u32(16, itt);
        b.set_u32(20, edtl);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b.0[32..32 + cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        b
    }

    /// Runs one SCSI command to completion: sends immediate and unsolicited
    /// data as negotiated, answers R2Ts, collects Data-In and the status.
    pub fn scsi(
        &mut self,
        lun: u64,
        cdb: &[u8],
        read_len: u32,
        write: Option<&[u8]>,
    ) -> io::Result<ScsiResult> {
        let wdata = write.unwrap_or(&[]);
        let edtl = if write.is_some() {
            wdata.len() as u32
        } else {
            read_len
        };
        let mut b = self.command_bhs(
            lun,
            cdb,
            write.is_none() && read_len > 0,
            write.is_some(),
            edtl,
        );
        let itt = b.itt();
        let mut sent = 0usize;
        let imm = if self.immediate_data {
            wdata
                .len()
                .min(self.first_burst as usize)
                .min(self.target_mrdsl as usize)
        } else {
            0
        };
        let unsolicited_end = if self.initial_r2t {
            imm
        } else {
            wdata.len().min(self.first_burst as usize)
        };
        if unsolicited_end == imm {
            b.0[1] |= 0x80;
        } else {
            b.0[1] &= !0x80;
        }
        self.send_pdu(&b, &wdata[..imm])?;
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        sent += imm;
        // Unsolicited Data-Out.
        let mut data_sn = 0;
        while sent < unsolicited_end {
            let n = (unsolicited_end - sent).min(self.target_mrdsl as usize);
            let fin = sent + n == unsolicited_end;
            self.data_out(
                lun,
                itt,
                RESERVED_TAG,
                data_sn,
                sent as u32,
                &wdata[sent..sent + n],
                fin,
            )?;
            data_sn += 1;
            sent += n;
        }
        let mut res = ScsiResult::default();
        loop {
            let p = self
                .recv_non_ping()?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
            match p.bhs.opcode() {
                Some(Opcode::R2t) => {
                    res.r2ts += 1;
                    let ttt = p.bhs.u32_at(20);
                    let off = p.bhs.u32_at(40) as usize;
                    let len = p.bhs.u32_at(44) as usize;
                    let mut pos = off;
                    let mut sn = 0;
                    while pos < off + len {
                        let n = (off + len - pos).min(self.target_mrdsl as usize);
                        self.data_out(
                            lun,
                            itt,
                            ttt,
                            sn,
                            pos as u32,
                            &wdata[pos..pos + n],
                            pos + n == off + len,
                        )?;
                        sn += 1;
                        pos += n;
                    }
                }
                Some(Opcode::DataIn) => {
                    res.data_ins += 1;
                    let off = p.bhs.u32_at(40) as usize;
                    if res.data.len() < off + p.data.len() {
                        res.data.resize(off + p.data.len(), 0);
                    }
                    res.data[off..off + p.data.len()].copy_from_slice(&p.data);
                    if p.bhs.flags() & 1 != 0 {
                        res.status = p.bhs.0[3];
                        self.residual(&p.bhs, &mut res);
                        return Ok(res);
                    }
                }
                Some(Opcode::ScsiResponse) => {
                    res.status = p.bhs.0[3];
                    self.residual(&p.bhs, &mut res);
                    if p.data.len() >= 2 {
                        let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                        res.sense = p.data[2..(2 + n).min(p.data.len())].to_vec();
                    }
                    return Ok(res);
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected PDU {other:?} during command"),
                    ));
                }
            }
        }
    }

    fn residual(&self, b: &Bhs, res: &mut ScsiResult) {
        res.underflow = b.flags() & 0x02 != 0;
        res.overflow = b.flags() & 0x04 != 0;
        res.residual = b.u32_at(44);
    }

    /// Sends one Data-Out PDU.
    #[allow(clippy::too_many_arguments)]
    pub fn data_out(
        &mut self,
        lun: u64,
        itt: u32,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        data: &[u8],
        fin: bool,
    ) -> io::Result<()> {
        let mut b = Bhs::new(Opcode::DataOut);
        b.0[1] = if fin { 0x80 } else { 0 };
        b.set_u64(8, lun);
        b.set_u32(16, itt);
        b.set_u32(20, ttt);
        b.set_u32(28, self.exp_stat_sn);
        b.set_u32(36, data_sn);
        b.set_u32(40, offset);
        self.send_pdu(&b, data)
    }

    /// READ(10) of `blocks` 512-byte blocks.
    pub fn read10(&mut self, lun: u64, lba: u32, blocks: u16) -> io::Result<ScsiResult> {
        self.scsi(lun, &cdb10(0x28, lba, blocks), blocks as u32 * 512, None)
    }

    /// WRITE(10) of `data` (a multiple of 512 bytes).
    pub fn write10(&mut self, lun: u64, lba: u32, data: &[u8]) -> io::Result<ScsiResult> {
        let cdb = cdb10(0x2a, lba, (data.len() / 512) as u16);
        self.scsi(lun, &cdb, 0, Some(data))
    }

    /// Text request with `data` (already key=value encoded); returns the
    /// concatenated response, following target continuations.
    pub fn text(&mut self, data: &[u8]) -> io::Result<Vec<(String, String)>> {
        let itt = self.next_itt();
        let mut ttt = RESERVED_TAG;
        let mut payload = data.to_vec();
        let mut all = Vec::new();
        loop {
            let mut b = Bhs::new(Opcode::TextRequest);
            b.0[1] = 0x80;
            b.set_u32(16, itt);
            b.set_u32(20, ttt);
            b.set_u32(24, self.cmd_sn);
            b.set_u32(28, self.exp_stat_sn);
            self.send_pdu(&b, &payload)?;
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
            payload.clear();
            let p = self
                .recv_non_ping()?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
            if p.bhs.opcode() != Some(Opcode::TextResponse) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected Text Response, got {:#x}", p.bhs.opcode_raw()),
                ));
            }
            all.extend_from_slice(&p.data);
            if p.bhs.final_bit() {
                break;
            }
            ttt = p.bhs.u32_at(20);
        }
        text::parse(&all).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// SendTargets=<which>.
    pub fn send_targets(&mut self, which: &str) -> io::Result<Vec<(String, String)>> {
        let mut d = Vec::new();
        text::push(&mut d, "SendTargets", which);
        self.text(&d)
    }

    /// NOP-Out ping with data; returns the echoed data.
    pub fn nop(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut b = Bhs::new(Opcode::NopOut);
        b.0[0] |= 0x40;
        b.0[1] = 0x80;
        let itt = self.next_itt();
        b.set_u32(16, itt);
        b.set_u32(20, RESERVED_TAG);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        self.send_pdu(&b, data)?;
        let p = self
            .recv_non_ping()?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
        if p.bhs.opcode() != Some(Opcode::NopIn) || p.bhs.itt() != itt {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected NOP-In, got {:#x}", p.bhs.opcode_raw()),
            ));
        }
        Ok(p.data.to_vec())
    }

    /// Task management request; returns the TMF response code.
    pub fn task_mgmt(&mut self, function: u8, lun: u64, referenced_itt: u32) -> io::Result<u8> {
        let mut b = Bhs::new(Opcode::TaskMgmtRequest);
        b.0[0] |= 0x40;
        b.0[1] = 0x80 | function;
        b.set_u64(8, lun);
        let itt = self.next_itt();
        b.set_u32(16, itt);
        b.set_u32(20, referenced_itt);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        self.send_pdu(&b, &[])?;
        loop {
            let p = self
                .recv_non_ping()?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
            if p.bhs.opcode() == Some(Opcode::TaskMgmtResponse) && p.bhs.itt() == itt {
                return Ok(p.bhs.0[2]);
            }
        }
    }

    /// Logout (reason 0: close session, 1: close connection); returns the response code.
    pub fn logout(&mut self, reason: u8) -> io::Result<u8> {
        let mut b = Bhs::new(Opcode::LogoutRequest);
        b.0[0] |= 0x40;
        b.0[1] = 0x80 | reason;
        let itt = self.next_itt();
        b.set_u32(16, itt);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        self.send_pdu(&b, &[])?;
        let p = self
            .recv_non_ping()?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
        if p.bhs.opcode() != Some(Opcode::LogoutResponse) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "expected Logout Response",
            ));
        }
        Ok(p.bhs.0[2])
    }

    /// Waits until the target closes the connection (or the read timeout expires).
    pub fn expect_closed(&mut self) -> io::Result<bool> {
        loop {
            match self.recv_pdu() {
                Ok(None) => return Ok(true),
                Ok(Some(_)) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(true),
                Err(_) => return Ok(true),
            }
        }
    }
}
