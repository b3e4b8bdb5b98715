//! SPC commands: INQUIRY and VPD pages, REQUEST SENSE, REPORT LUNS, MODE SENSE / MODE
//! SELECT, REPORT SUPPORTED OPERATION CODES, START STOP UNIT, PREVENT ALLOW MEDIUM
//! REMOVAL.

use scsi::lun::Lun;
use scsi::rsoc::{self, CommandTimeoutsDescriptor, SupportedCommand, reporting_options, support};

use crate::lu::{HandlerResult, LogicalUnit, Outcome};
use crate::mode::{self, PageControl};
use crate::request::{Completion, ItNexus, Residual, ScsiRequest, ScsiStatus};
use crate::sense::{Asc, Sense, SenseFormat, SenseKey};
use crate::table::{self, COMMANDS, CommandEntry, CommandKind};

/// The REPORT LUNS well-known logical unit (SPC-4 8.2).
pub const REPORT_LUNS_WLUN: u64 = 0xC101;

/// Encodes a LUN number as an 8-byte LUN (SAM-5 4.7): peripheral addressing below 256,
/// flat addressing below 16384, the well-known form for `C1xxh`, and the number itself
/// (taken as an 8-byte LUN structure) otherwise.
pub fn encode_lun(lun: u64) -> Lun {
    match u16::try_from(lun).ok().and_then(Lun::from_index) {
        Some(l) => l,
        None if lun >> 8 == 0xC1 => Lun([0xC1, lun as u8, 0, 0, 0, 0, 0, 0]),
        None => Lun(lun.to_be_bytes()),
    }
}

/// Answers REPORT LUNS for a target from a LUN list; for the front end to use when the
/// command is addressed to the REPORT LUNS well-known LU or to a LUN that does not
/// exist. `luns` are the ordinary LUNs visible to the initiator; the REPORT LUNS W-LUN
/// is added for SELECT REPORT 01h and 02h. Sense is in fixed format.
pub fn report_luns(req: &mut ScsiRequest<'_>, luns: &[u64]) -> Completion {
    match table::decode(req.cdb) {
        Ok(e) if e.kind == CommandKind::ReportLuns => {}
        Ok(_) | Err(_) => {
            return fail_fixed(
                req,
                Sense::illegal_request(Asc::INVALID_COMMAND_OPERATION_CODE),
            );
        }
    }
    match report_luns_data(req.cdb, luns) {
        Ok((data, alloc)) => {
            let Outcome::Done { wanted, filled, .. } = LogicalUnit::respond(req, &data, alloc)
            else {
                unreachable!("respond never plans I/O")
            };
            Completion {
                status: ScsiStatus::Good,
                sense: None,
                data_in_len: filled,
                residual: Residual::of(wanted, req.data_in.len()),
            }
        }
        Err(s) => fail_fixed(req, s),
    }
}

/// Answers a command addressed to a LUN that has no logical unit behind it, for the
/// front end (SPC-4 4.6.3 and 6.6.2; sense in fixed format):
/// - INQUIRY (standard data): PERIPHERAL QUALIFIER 011b, DEVICE TYPE 1Fh, GOOD;
/// - REPORT LUNS: answered from `luns` as [`report_luns`] does;
/// - REQUEST SENSE: GOOD with LOGICAL UNIT NOT SUPPORTED as the sense data;
/// - anything else: CHECK CONDITION, ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED.
pub fn no_such_lun(req: &mut ScsiRequest<'_>, luns: &[u64]) -> Completion {
    let not_supported = Sense::illegal_request(Asc::LOGICAL_UNIT_NOT_SUPPORTED);
    let entry = match table::decode(req.cdb) {
        Ok(e) => e,
        Err(_) => return fail_fixed(req, not_supported),
    };
    let (data, alloc) = match entry.kind {
        CommandKind::ReportLuns => return report_luns(req, luns),
        CommandKind::Inquiry if req.cdb[1] & 1 == 0 && req.cdb[2] == 0 => {
            let mut d = vec![0u8; 36];
            d[0] = 0x7F;
            d[2] = 0x06;
            d[3] = 0x12;
            d[4] = 31;
            (d, u64::from(u16::from_be_bytes([req.cdb[3], req.cdb[4]])))
        }
        CommandKind::RequestSense => {
            let fmt = if req.cdb[1] & 1 != 0 {
                SenseFormat::Descriptor
            } else {
                SenseFormat::Fixed
            };
            (
                not_supported.encode(fmt).as_bytes().to_vec(),
                u64::from(req.cdb[4]),
            )
        }
        _ => return fail_fixed(req, not_supported),
    };
    let Outcome::Done { wanted, filled, .. } = LogicalUnit::respond(req, &data, alloc) else {
        unreachable!("respond never plans I/O")
    };
    Completion {
        status: ScsiStatus::Good,
        sense: None,
        data_in_len: filled,
        residual: Residual::of(wanted, req.data_in.len()),
    }
}

fn fail_fixed(req: &ScsiRequest<'_>, s: Sense) -> Completion {
    Completion {
        status: ScsiStatus::CheckCondition,
        sense: Some(s.encode(SenseFormat::Fixed)),
        data_in_len: 0,
        residual: Residual::of(0, req.data_in.len()),
    }
}

/// Builds REPORT LUNS parameter data; returns it with the allocation length.
fn report_luns_data(cdb: &[u8], luns: &[u64]) -> Result<(Vec<u8>, u64), Sense> {
    let select = cdb[2];
    let alloc = u64::from(u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]));
    let (ordinary, wlun) = match select {
        0x00 => (true, false),
        0x01 => (false, true),
        0x02 => (true, true),
        // Administrative LU reports: this target has no administrative LUs.
        0x10..=0x12 => (false, false),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(7))),
    };
    let mut list: Vec<u64> = Vec::new();
    if ordinary {
        list.extend(luns.iter().copied().filter(|l| *l >> 8 != 0xC1));
        list.sort_unstable();
        list.dedup();
    }
    if wlun {
        list.push(REPORT_LUNS_WLUN);
    }
    let encoded: Vec<Lun> = list.into_iter().map(encode_lun).collect();
    let out = scsi::lun::report_luns_data(&encoded);
    Ok((out, alloc))
}

impl LogicalUnit {
    /// INQUIRY (SPC-4 6.6).
    pub(crate) fn inquiry(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let evpd = req.cdb[1] & 1 != 0;
        let page = req.cdb[2];
        let alloc = u64::from(u16::from_be_bytes([req.cdb[3], req.cdb[4]]));
        let data = if evpd {
            self.vpd_page(page, req.nexus)?
        } else {
            if page != 0 {
                return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
            }
            self.standard_inquiry()
        };
        Ok(Self::respond(req, &data, alloc))
    }

    fn standard_inquiry(&self) -> Vec<u8> {
        use scsi::inquiry::{StandardInquiry, device_type, version_descriptor as vd};
        // Direct access block device, SPC-4, HISUP, response data format 2, CMDQUE; no
        // ALUA, 3PC or protection. Version descriptors: SAM-5, SPC-4, SBC-3, iSCSI.
        StandardInquiry::new(device_type::DIRECT_ACCESS)
            .with_vendor(&self.config.vendor)
            .with_product(&self.config.product)
            .with_revision(&self.config.revision)
            .with_version_descriptors(&[vd::SAM_5, vd::SPC_4, vd::SBC_3, vd::ISCSI])
            .as_bytes()
            .to_vec()
    }

    /// The VPD pages this LU reports, ascending.
    const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2];

    fn vpd_page(&self, page: u8, nexus: ItNexus) -> Result<Vec<u8>, Sense> {
        use scsi::vpd::{self, BlockDeviceCharacteristics, LogicalBlockProvisioning};
        Ok(match page {
            0x00 => vpd::supported_pages(0, &Self::VPD_PAGES),
            0x80 => vpd::unit_serial_number(0, &self.config.serial),
            0x83 => self.device_identification(nexus),
            0xB0 => self.block_limits(),
            0xB1 => BlockDeviceCharacteristics::new(0, vpd::NON_ROTATING_MEDIUM)
                .as_bytes()
                .to_vec(),
            0xB2 => {
                let mut p = LogicalBlockProvisioning::new(0);
                if self.thin {
                    p = p
                        .with_lbpu(true)
                        .with_lbpws(true)
                        .with_lbpws10(true)
                        .with_lbprz(1)
                        .with_provisioning_type(vpd::provisioning_type::THIN);
                }
                p.as_bytes()[..8].to_vec()
            }
            _ => return Err(Sense::invalid_field_in_cdb(2, Some(7))),
        })
    }

    /// VPD 83h designators: NAA, T10 vendor ID, SCSI name string (LU), relative target
    /// port, target port group (SPC-4 7.8.6).
    fn device_identification(&self, nexus: ItNexus) -> Vec<u8> {
        use scsi::vpd::{self, Association, Designation};
        let serial: String = self
            .config
            .serial
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(200)
            .collect();
        let t10 = vpd::t10_vendor_id(&self.config.vendor, &{
            let mut id = String::with_capacity(16 + serial.len());
            id.push_str(&format!("{:<16.16}", self.config.product));
            id.push_str(&serial);
            id
        });
        let mut name = String::from("naa.");
        for b in &self.naa {
            name.push_str(&format!("{b:02X}"));
        }
        let name = vpd::scsi_name_string(&name);
        let proto = self.config.protocol_identifier & 0x0F;
        let port = vpd::id16_designator(nexus.target_port);
        let tpg = vpd::id16_designator(self.config.target_port_group);
        let ds = [
            Designation::naa(&self.naa),
            Designation::t10_vendor_id(&t10),
            Designation::scsi_name_string(Association::LogicalUnit, &name),
            vpd::relative_target_port(&port).with_protocol(proto),
            vpd::target_port_group(&tpg).with_protocol(proto),
        ];
        // Every designator is at most 255 bytes by construction.
        vpd::device_identification(0, &ds).unwrap_or_default()
    }

    /// VPD B0h block limits (SBC-4 6.6.4).
    fn block_limits(&self) -> Vec<u8> {
        let c = &self.config;
        let mut p = scsi::vpd::BlockLimits::new(0).with_wsnz(true);
        p.maximum_compare_and_write_length = c.max_compare_and_write_blocks;
        p.optimal_transfer_length_granularity.set(1);
        p.maximum_transfer_length.set(c.max_transfer_blocks);
        p.maximum_prefetch_length.set(c.max_transfer_blocks);
        if self.thin {
            p.maximum_unmap_lba_count.set(c.max_unmap_blocks);
            p.maximum_unmap_block_descriptor_count
                .set(c.max_unmap_descriptors);
            p.optimal_unmap_granularity.set(1);
        }
        p.maximum_write_same_length
            .set(u64::from(c.max_write_same_blocks));
        p.as_bytes().to_vec()
    }

    /// REQUEST SENSE (SPC-4 6.39): reports and clears a pending unit attention, else the
    /// NOT READY condition of a stopped unit, else NO SENSE.
    pub(crate) fn request_sense(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let desc = req.cdb[1] & 1 != 0;
        let alloc = u64::from(req.cdb[4]);
        let info = {
            let mut st = self.state.lock();
            let ua = st.touch(req.nexus).pop();
            let started = st.started;
            self.sync_fast(&st);
            match ua {
                Some(asc) => Sense::new(SenseKey::UnitAttention, asc),
                None if !started => Sense::new(
                    SenseKey::NotReady,
                    Asc::LU_NOT_READY_INITIALIZING_COMMAND_REQUIRED,
                ),
                None => Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE),
            }
        };
        let fmt = if desc {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        };
        let sense = info.encode(fmt);
        Ok(Self::respond(req, sense.as_bytes(), alloc))
    }

    /// REPORT LUNS addressed to this LU.
    pub(crate) fn report_luns(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let mut luns = Vec::new();
        match &self.directory {
            Some(dir) => dir.luns(req.nexus, &mut luns),
            None => luns.push(self.config.lun),
        }
        let (data, alloc) = report_luns_data(req.cdb, &luns)?;
        Ok(Self::respond(req, &data, alloc))
    }

    /// MODE SENSE(6)/(10) (SPC-4 6.11, 6.12).
    pub(crate) fn mode_sense(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
    ) -> HandlerResult {
        let ten = entry.kind == CommandKind::ModeSense10;
        let cdb = req.cdb;
        let dbd = cdb[1] & 0x08 != 0;
        let llbaa = ten && cdb[1] & 0x10 != 0;
        let pc = PageControl::from_bits(cdb[2] >> 6);
        let page = cdb[2] & 0x3F;
        let subpage = cdb[3];
        let alloc = if ten {
            u64::from(u16::from_be_bytes([cdb[7], cdb[8]]))
        } else {
            u64::from(cdb[4])
        };
        let (values, wp) = {
            let st = self.state.lock();
            let v = match pc {
                PageControl::Current => st.mode.clone(),
                PageControl::Changeable => mode::ModePages::changeable(),
                PageControl::Default => mode::ModePages::defaults(),
                PageControl::Saved => st.saved.clone(),
            };
            (v, self.config.read_only || st.mode.swp())
        };
        let mut pages = Vec::with_capacity(64);
        mode::sense_pages(&values, page, subpage, &mut pages)?;
        // Block descriptor (SPC-4 7.5.5): capacity and block length.
        let mut bd = Vec::new();
        if !dbd {
            let blocks = self.num_blocks();
            let (nb, bl) = if pc == PageControl::Changeable {
                (0, 0)
            } else {
                (blocks, self.block_size)
            };
            if llbaa {
                bd.extend_from_slice(&nb.to_be_bytes());
                bd.extend_from_slice(&[0; 4]);
                bd.extend_from_slice(&bl.to_be_bytes());
            } else {
                let short = u32::try_from(nb).unwrap_or(u32::MAX);
                bd.extend_from_slice(&short.to_be_bytes());
                bd.push(0);
                bd.extend_from_slice(&bl.to_be_bytes()[1..]);
            }
        }
        // DEVICE-SPECIFIC PARAMETER: WP, DPOFUA.
        let dsp = if wp { 0x90 } else { 0x10 };
        let mut out = Vec::with_capacity(8 + bd.len() + pages.len());
        if ten {
            let len = (6 + bd.len() + pages.len()) as u16;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[0, dsp, u8::from(llbaa), 0]);
            out.extend_from_slice(&(bd.len() as u16).to_be_bytes());
        } else {
            let len = (3 + bd.len() + pages.len()).min(255) as u8;
            out.extend_from_slice(&[len, 0, dsp, bd.len() as u8]);
        }
        out.extend_from_slice(&bd);
        out.extend_from_slice(&pages);
        Ok(Self::respond(req, &out, alloc))
    }

    /// MODE SELECT(6)/(10) (SPC-4 6.9, 6.10): changes WCE, D_SENSE and SWP. SP = 1 also
    /// stores the new values as saved values. Other I_T nexuses get MODE PARAMETERS
    /// CHANGED.
    pub(crate) fn mode_select(
        &self,
        entry: &CommandEntry,
        req: &mut ScsiRequest<'_>,
    ) -> HandlerResult {
        let ten = entry.kind == CommandKind::ModeSelect10;
        let cdb = req.cdb;
        let sp = cdb[1] & 0x01 != 0;
        let len = if ten {
            usize::from(u16::from_be_bytes([cdb[7], cdb[8]]))
        } else {
            usize::from(cdb[4])
        };
        if len == 0 {
            return Ok(Outcome::GOOD);
        }
        let Some(list) = req.data_out.get(..len) else {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
        };
        let mut st = self.state.lock();
        let sel = mode::select_pages(&st.mode, list, ten, self.block_size)?;
        if sel.changed {
            st.ua_all(Asc::MODE_PARAMETERS_CHANGED, Some(req.nexus));
        }
        if sp {
            st.saved = sel.values.clone();
        }
        st.mode = sel.values;
        self.sync_fast(&st);
        Ok(Outcome::Done {
            status: ScsiStatus::Good,
            wanted: len as u64,
            filled: 0,
        })
    }

    /// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
    pub(crate) fn report_supported_opcodes(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let cdb = req.cdb;
        // RCTD is byte 2 bit 7, beside REPORTING OPTIONS (SPC-4 table 361).
        let rctd = cdb[2] & 0x80 != 0;
        let options = cdb[2] & 0x07;
        let req_op = cdb[3];
        let req_sa = u16::from_be_bytes([cdb[4], cdb[5]]);
        let alloc = u64::from(u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]));
        let visible = |e: &&CommandEntry| self.thin || !e.flags.has(table::Flags::THIN_ONLY);
        let supported = |e: &CommandEntry| SupportedCommand {
            opcode: e.opcode,
            service_action: e.service_action,
            cdb_usage: e.usage,
            timeouts: CommandTimeoutsDescriptor::new(e.nominal_timeout, e.recommended_timeout),
        };
        let out = match options {
            reporting_options::ALL => {
                let all: Vec<SupportedCommand<'_>> =
                    COMMANDS.iter().filter(visible).map(supported).collect();
                rsoc::all_commands_data(&all, rctd)
            }
            1..=3 => {
                let has_sa = table::has_service_action(req_op);
                if options == 1 && has_sa {
                    return Err(Sense::invalid_field_in_cdb(2, Some(2)).into());
                }
                if options == 2 && !has_sa {
                    return Err(Sense::invalid_field_in_cdb(2, Some(2)).into());
                }
                let found = COMMANDS
                    .iter()
                    .filter(visible)
                    .find(|e| e.opcode == req_op && (!has_sa || e.service_action == Some(req_sa)));
                match found {
                    Some(e) => rsoc::one_command_data(support::STANDARD, Some(&supported(e)), rctd),
                    None => rsoc::one_command_data(support::NOT_SUPPORTED, None, rctd),
                }
            }
            _ => return Err(Sense::invalid_field_in_cdb(2, Some(2)).into()),
        };
        Ok(Self::respond(req, &out, alloc))
    }

    /// START STOP UNIT (SBC-4 5.25). The medium is not removable, so LOEJ is refused;
    /// power condition changes are accepted and have no effect.
    pub(crate) fn start_stop_unit(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let b4 = req.cdb[4];
        let power_condition = b4 >> 4;
        let loej = b4 & 0x02 != 0;
        let start = b4 & 0x01 != 0;
        match power_condition {
            0x0 => {}
            0x1 | 0x2 | 0x3 | 0x7 | 0xA | 0xB => return Ok(Outcome::GOOD),
            _ => return Err(Sense::invalid_field_in_cdb(4, Some(7)).into()),
        }
        if loej {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)).into());
        }
        let mut st = self.state.lock();
        st.started = start;
        self.sync_fast(&st);
        Ok(Outcome::GOOD)
    }

    /// PREVENT ALLOW MEDIUM REMOVAL (SBC-4 5.12): recorded per I_T nexus.
    pub(crate) fn prevent_allow(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let prevent = req.cdb[4] & 0x03;
        let mut st = self.state.lock();
        match prevent {
            0 => {
                st.prevent.remove(&req.nexus);
            }
            1 => {
                st.prevent.insert(req.nexus);
            }
            // 10b and 11b are obsolete.
            _ => return Err(Sense::invalid_field_in_cdb(4, Some(1)).into()),
        }
        Ok(Outcome::GOOD)
    }

    /// Whether some I_T nexus prevents medium removal.
    pub fn removal_prevented(&self) -> bool {
        !self.state.lock().prevent.is_empty()
    }

    /// Tells whether the unit is started.
    pub fn is_started(&self) -> bool {
        self.state.lock().started
    }
}
