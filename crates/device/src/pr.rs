//! Persistent reservations (SPC-4 5.13, 6.15, 6.16) and SCSI-2 RESERVE / RELEASE.
//!
//! Registrations are kept per I_T nexus. Supported: every reservation type with
//! LU_SCOPE; REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR,
//! PREEMPT, PREEMPT AND ABORT. Not supported (and reported so in REPORT CAPABILITIES):
//! APTPL (persistence across power loss), SPEC_I_PT, ALL_TG_PT, REGISTER AND MOVE.
//! PREEMPT AND ABORT cannot abort commands queued in the port: the logical unit has no
//! task set; the port's own abort handling covers tasks of preempted nexuses.
//!
//! RESERVE / RELEASE follow the compatible-reservation-handling rules (CRH = 1,
//! SPC-4 5.13.3): RESERVE conflicts whenever a persistent registration exists.

use scsi::pr::{
    FullStatusEntry, PrOutParameterList, ReportCapabilities, iscsi_transport_id,
    read_full_status_data, read_keys_data, read_reservation_data,
};
use scsi::zerocopy::FromBytes;

use crate::lu::{Fail, HandlerResult, LogicalUnit, Outcome};
use crate::request::{ItNexus, ScsiRequest, ScsiStatus};
use crate::sense::{Asc, Sense};
use crate::state::LuState;
use crate::table::Flags;

/// Persistent reservation type (SPC-4 table 212): the `scsi` crate's type.
pub use scsi::pr::ReservationType as PrType;

/// The persistent reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub holder: ItNexus,
    pub ty: PrType,
}

/// Registrations and the reservation.
#[derive(Debug, Default, Clone)]
pub(crate) struct PrState {
    /// PRGENERATION.
    pub generation: u32,
    /// (nexus, reservation key), in registration order.
    pub registrations: Vec<(ItNexus, u64)>,
    pub reservation: Option<Reservation>,
}

impl PrState {
    pub(crate) fn key_of(&self, nexus: ItNexus) -> Option<u64> {
        self.registrations
            .iter()
            .find(|(n, _)| *n == nexus)
            .map(|(_, k)| *k)
    }

    fn is_holder(&self, nexus: ItNexus) -> bool {
        match self.reservation {
            Some(r) if r.ty.is_all_registrants() => self.key_of(nexus).is_some(),
            Some(r) => r.holder == nexus,
            None => false,
        }
    }

    /// Whether a command with `flags` from `nexus` conflicts with the reservation
    /// (SPC-4 5.13.1 table: reads conflict under Exclusive Access types, writes under
    /// all types; registrants are exempt under registrants-only and all-registrants
    /// types).
    pub(crate) fn conflicts(&self, nexus: ItNexus, flags: Flags) -> bool {
        let Some(r) = self.reservation else {
            return false;
        };
        if self.is_holder(nexus) {
            return false;
        }
        let is_write = flags.has(Flags::PR_WRITE);
        let is_read = flags.has(Flags::PR_READ);
        if !is_write && !is_read {
            return false;
        }
        let registered = self.key_of(nexus).is_some();
        if r.ty.registrants_have_access() && registered {
            return false;
        }
        is_write || !r.ty.is_write_exclusive()
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    fn unregister(&mut self, nexus: ItNexus) {
        self.registrations.retain(|(n, _)| *n != nexus);
        if let Some(r) = self.reservation {
            let release = if r.ty.is_all_registrants() {
                self.registrations.is_empty()
            } else {
                r.holder == nexus
            };
            if release {
                self.reservation = None;
            }
        }
    }
}

/// PR OUT parameter list (24 bytes, SPC-4 6.16.3).
struct ProutParams {
    key: u64,
    sa_key: u64,
    spec_i_pt: bool,
    all_tg_pt: bool,
    aptpl: bool,
}

impl LogicalUnit {
    /// RESERVE(6)/(10).
    pub(crate) fn reserve(&self, nexus: ItNexus) -> HandlerResult {
        let mut st = self.state.lock();
        if !st.pr.registrations.is_empty() {
            // CRH: a PR holder of WE/EA may RESERVE (no effect); anyone else conflicts.
            let ok = matches!(st.pr.reservation, Some(r) if r.holder == nexus
                && matches!(r.ty, PrType::WriteExclusive | PrType::ExclusiveAccess));
            return if ok {
                Ok(Outcome::GOOD)
            } else {
                Err(Fail::Status(ScsiStatus::ReservationConflict))
            };
        }
        match st.scsi2 {
            Some(h) if h != nexus => Err(Fail::Status(ScsiStatus::ReservationConflict)),
            _ => {
                st.scsi2 = Some(nexus);
                self.sync_fast(&st);
                Ok(Outcome::GOOD)
            }
        }
    }

    /// RELEASE(6)/(10). Releasing a reservation one does not hold is not an error.
    pub(crate) fn release(&self, nexus: ItNexus) -> HandlerResult {
        let mut st = self.state.lock();
        if !st.pr.registrations.is_empty() {
            return if st.pr.key_of(nexus).is_some() {
                Ok(Outcome::GOOD)
            } else {
                Err(Fail::Status(ScsiStatus::ReservationConflict))
            };
        }
        if st.scsi2 == Some(nexus) {
            st.scsi2 = None;
            self.sync_fast(&st);
        }
        Ok(Outcome::GOOD)
    }

    /// PERSISTENT RESERVE IN.
    pub(crate) fn persistent_reserve_in(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let sa = req.cdb[1] & 0x1f;
        let alloc = u64::from(u16::from_be_bytes([req.cdb[7], req.cdb[8]]));
        let st = self.state.lock();
        let pr = &st.pr;
        let out = match sa {
            0x00 => {
                let keys: Vec<u64> = pr.registrations.iter().map(|(_, k)| *k).collect();
                read_keys_data(pr.generation, &keys)
            }
            0x01 => {
                let r = pr.reservation.map(|r| {
                    // All-registrants reservations report key 0 (SPC-4 6.15.3.3).
                    let key = if r.ty.is_all_registrants() {
                        0
                    } else {
                        pr.key_of(r.holder).unwrap_or(0)
                    };
                    (key, r.ty)
                });
                read_reservation_data(pr.generation, r)
            }
            0x02 => {
                // CRH = 1; no SIP_C, ATP_C, PTPL_C; every type in the type mask.
                ReportCapabilities::new(&PrType::ALL)
                    .with_crh(true)
                    .as_bytes()
                    .to_vec()
            }
            0x03 => {
                let tids: Vec<Vec<u8>> = pr
                    .registrations
                    .iter()
                    .map(|(n, _)| self.transport_id(&st, n.initiator))
                    .collect();
                let entries: Vec<FullStatusEntry<'_>> = pr
                    .registrations
                    .iter()
                    .zip(&tids)
                    .map(|((n, k), tid)| FullStatusEntry {
                        reservation_key: *k,
                        all_tg_pt: false,
                        holder_of: pr.reservation.filter(|_| pr.is_holder(*n)).map(|r| r.ty),
                        relative_target_port_identifier: n.target_port,
                        transport_id: tid,
                    })
                    .collect();
                read_full_status_data(pr.generation, &entries)
            }
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4)).into()),
        };
        drop(st);
        Ok(Self::respond(req, &out, alloc))
    }

    /// An iSCSI TransportID (format 00b) for `initiator` (SPC-4 7.6.4.6): the name the
    /// front end registered, or a stable placeholder derived from the identity.
    fn transport_id(&self, st: &LuState, initiator: u64) -> Vec<u8> {
        match st.initiator_names.get(&initiator) {
            Some(name) => iscsi_transport_id(name, None),
            None => iscsi_transport_id(&format!("initiator-{initiator:016x}"), None),
        }
    }

    /// PERSISTENT RESERVE OUT.
    pub(crate) fn persistent_reserve_out(&self, req: &mut ScsiRequest<'_>) -> HandlerResult {
        let cdb = req.cdb;
        let sa = cdb[1] & 0x1f;
        let scope = cdb[2] >> 4;
        let ty_raw = cdb[2] & 0x0f;
        let list_len = u32::from_be_bytes([cdb[5], cdb[6], cdb[7], cdb[8]]);
        if list_len != 24 {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let Some(list) = req.data_out.get(..24) else {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
        };
        let Ok((l, _)) = PrOutParameterList::read_from_prefix(list) else {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
        };
        let p = ProutParams {
            key: l.reservation_key.get(),
            sa_key: l.service_action_reservation_key.get(),
            spec_i_pt: l.spec_i_pt(),
            all_tg_pt: l.all_tg_pt(),
            aptpl: l.aptpl(),
        };
        if p.spec_i_pt {
            return Err(Sense::invalid_field_in_parameter_list(20, Some(3)).into());
        }
        if p.all_tg_pt {
            return Err(Sense::invalid_field_in_parameter_list(20, Some(2)).into());
        }
        if p.aptpl {
            return Err(Sense::invalid_field_in_parameter_list(20, Some(0)).into());
        }
        let nexus = req.nexus;
        let mut st = self.state.lock();
        if matches!(st.scsi2, Some(h) if h != nexus) {
            return Err(Fail::Status(ScsiStatus::ReservationConflict));
        }
        let needs_type = matches!(sa, 0x01 | 0x02 | 0x04 | 0x05);
        let ty = if needs_type {
            if scope != 0 {
                return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
            }
            match PrType::from_u8(ty_raw) {
                Some(t) => Some(t),
                None => return Err(Sense::invalid_field_in_cdb(2, Some(3)).into()),
            }
        } else {
            None
        };
        let result = match (sa, ty) {
            (0x00, _) => Self::pr_register(&mut st, nexus, &p, false),
            (0x06, _) => Self::pr_register(&mut st, nexus, &p, true),
            (0x01, Some(ty)) => Self::pr_reserve(&mut st, nexus, &p, ty),
            (0x02, Some(ty)) => Self::pr_release(&mut st, nexus, &p, ty),
            (0x03, _) => Self::pr_clear(&mut st, nexus, &p),
            (0x04 | 0x05, Some(ty)) => Self::pr_preempt(&mut st, nexus, &p, ty),
            _ => Err(Sense::invalid_field_in_cdb(1, Some(4)).into()),
        };
        self.sync_fast(&st);
        result.map(|()| Outcome::Done {
            status: ScsiStatus::Good,
            wanted: 24,
            filled: 0,
        })
    }

    fn check_key(st: &LuState, nexus: ItNexus, key: u64) -> Result<(), Fail> {
        match st.pr.key_of(nexus) {
            Some(k) if k == key => Ok(()),
            _ => Err(Fail::Status(ScsiStatus::ReservationConflict)),
        }
    }

    fn pr_register(
        st: &mut LuState,
        nexus: ItNexus,
        p: &ProutParams,
        ignore_existing: bool,
    ) -> Result<(), Fail> {
        match st.pr.key_of(nexus) {
            None => {
                if !ignore_existing && p.key != 0 {
                    return Err(Fail::Status(ScsiStatus::ReservationConflict));
                }
                if p.sa_key != 0 {
                    st.pr.registrations.push((nexus, p.sa_key));
                    st.pr.bump();
                }
            }
            Some(k) => {
                if !ignore_existing && p.key != k {
                    return Err(Fail::Status(ScsiStatus::ReservationConflict));
                }
                if p.sa_key == 0 {
                    let before = st.pr.reservation;
                    st.pr.unregister(nexus);
                    if let (Some(r), None) = (before, st.pr.reservation) {
                        Self::released_ua(st, nexus, r.ty);
                    }
                } else if let Some(e) = st.pr.registrations.iter_mut().find(|(n, _)| *n == nexus) {
                    e.1 = p.sa_key;
                }
                st.pr.bump();
            }
        }
        Ok(())
    }

    /// RESERVATIONS RELEASED for the other registrants when a registrants-only or
    /// all-registrants reservation goes away (SPC-4 5.13.11.2).
    fn released_ua(st: &mut LuState, by: ItNexus, ty: PrType) {
        if !ty.registrants_have_access() {
            return;
        }
        let others: Vec<ItNexus> = st
            .pr
            .registrations
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != by)
            .collect();
        for n in others {
            st.ua_one(n, Asc::RESERVATIONS_RELEASED);
        }
    }

    fn pr_reserve(
        st: &mut LuState,
        nexus: ItNexus,
        p: &ProutParams,
        ty: PrType,
    ) -> Result<(), Fail> {
        Self::check_key(st, nexus, p.key)?;
        match st.pr.reservation {
            None => {
                st.pr.reservation = Some(Reservation { holder: nexus, ty });
                Ok(())
            }
            Some(r) if st.pr.is_holder(nexus) && r.ty == ty => Ok(()),
            Some(_) => Err(Fail::Status(ScsiStatus::ReservationConflict)),
        }
    }

    fn pr_release(
        st: &mut LuState,
        nexus: ItNexus,
        p: &ProutParams,
        ty: PrType,
    ) -> Result<(), Fail> {
        Self::check_key(st, nexus, p.key)?;
        let Some(r) = st.pr.reservation else {
            return Ok(());
        };
        if !st.pr.is_holder(nexus) {
            return Ok(());
        }
        if r.ty != ty {
            return Err(
                Sense::illegal_request(Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION).into(),
            );
        }
        st.pr.reservation = None;
        Self::released_ua(st, nexus, r.ty);
        Ok(())
    }

    fn pr_clear(st: &mut LuState, nexus: ItNexus, p: &ProutParams) -> Result<(), Fail> {
        Self::check_key(st, nexus, p.key)?;
        let others: Vec<ItNexus> = st
            .pr
            .registrations
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != nexus)
            .collect();
        st.pr.registrations.clear();
        st.pr.reservation = None;
        st.pr.bump();
        for n in others {
            st.ua_one(n, Asc::RESERVATIONS_PREEMPTED);
        }
        Ok(())
    }

    fn pr_preempt(
        st: &mut LuState,
        nexus: ItNexus,
        p: &ProutParams,
        ty: PrType,
    ) -> Result<(), Fail> {
        Self::check_key(st, nexus, p.key)?;
        let remove_key = |st: &mut LuState, key: u64| -> Vec<ItNexus> {
            let gone: Vec<ItNexus> = st
                .pr
                .registrations
                .iter()
                .filter(|(n, k)| *k == key && *n != nexus)
                .map(|(n, _)| *n)
                .collect();
            st.pr.registrations.retain(|(n, _)| !gone.contains(n));
            gone
        };
        let preempted: Vec<ItNexus> = match st.pr.reservation {
            None => {
                if p.sa_key == 0 {
                    return Err(Sense::invalid_field_in_parameter_list(8, None).into());
                }
                let gone = remove_key(st, p.sa_key);
                if gone.is_empty() && st.pr.key_of(nexus) != Some(p.sa_key) {
                    return Err(Fail::Status(ScsiStatus::ReservationConflict));
                }
                gone
            }
            Some(r) if r.ty.is_all_registrants() => {
                if p.sa_key == 0 {
                    let gone: Vec<ItNexus> = st
                        .pr
                        .registrations
                        .iter()
                        .map(|(n, _)| *n)
                        .filter(|n| *n != nexus)
                        .collect();
                    st.pr.registrations.retain(|(n, _)| *n == nexus);
                    st.pr.reservation = Some(Reservation { holder: nexus, ty });
                    gone
                } else {
                    let gone = remove_key(st, p.sa_key);
                    if gone.is_empty() && st.pr.key_of(nexus) != Some(p.sa_key) {
                        return Err(Fail::Status(ScsiStatus::ReservationConflict));
                    }
                    gone
                }
            }
            Some(r) => {
                let holder_key = st.pr.key_of(r.holder);
                if Some(p.sa_key) == holder_key {
                    let gone = remove_key(st, p.sa_key);
                    st.pr.reservation = Some(Reservation { holder: nexus, ty });
                    gone
                } else {
                    if p.sa_key == 0 {
                        return Err(Sense::invalid_field_in_parameter_list(8, None).into());
                    }
                    let gone = remove_key(st, p.sa_key);
                    if gone.is_empty() && st.pr.key_of(nexus) != Some(p.sa_key) {
                        return Err(Fail::Status(ScsiStatus::ReservationConflict));
                    }
                    gone
                }
            }
        };
        st.pr.bump();
        for n in preempted {
            st.ua_one(n, Asc::REGISTRATIONS_PREEMPTED);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u64) -> ItNexus {
        ItNexus::new(i, 1)
    }

    #[test]
    fn access_rules_per_type_match_spc_table() {
        // (type, registered non-holder read, write, unregistered read, write)
        let cases = [
            (PrType::ExclusiveAccess, false, false, false, false),
            (PrType::WriteExclusive, true, false, true, false),
            (
                PrType::ExclusiveAccessRegistrantsOnly,
                true,
                true,
                false,
                false,
            ),
            (
                PrType::WriteExclusiveRegistrantsOnly,
                true,
                true,
                true,
                false,
            ),
            (
                PrType::ExclusiveAccessAllRegistrants,
                true,
                true,
                false,
                false,
            ),
            (
                PrType::WriteExclusiveAllRegistrants,
                true,
                true,
                true,
                false,
            ),
        ];
        for (ty, rr, rw, ur, uw) in cases {
            let pr = PrState {
                generation: 0,
                registrations: vec![(n(1), 1), (n(2), 2)],
                reservation: Some(Reservation { holder: n(1), ty }),
            };
            assert!(!pr.conflicts(n(1), Flags::PR_WRITE), "{ty:?} holder writes");
            assert_eq!(!pr.conflicts(n(2), Flags::PR_READ), rr, "{ty:?} reg read");
            assert_eq!(!pr.conflicts(n(2), Flags::PR_WRITE), rw, "{ty:?} reg write");
            assert_eq!(!pr.conflicts(n(3), Flags::PR_READ), ur, "{ty:?} unreg read");
            assert_eq!(
                !pr.conflicts(n(3), Flags::PR_WRITE),
                uw,
                "{ty:?} unreg write"
            );
            assert!(
                !pr.conflicts(n(3), Flags::NONE),
                "{ty:?} INQUIRY-like always allowed"
            );
        }
    }
}
