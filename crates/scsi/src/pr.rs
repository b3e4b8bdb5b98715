//! Persistent reservations (SPC-4 5.9, 6.15, 6.16): reservation types,
//! PERSISTENT RESERVE IN parameter data, PERSISTENT RESERVE OUT parameter
//! lists and TransportIDs.

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError, need};

/// SCOPE value for a logical-unit reservation (the only non-obsolete one).
pub const LU_SCOPE: u8 = 0;

/// Persistent reservation TYPE (SPC-4 table 169).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReservationType {
    /// Write Exclusive: only the holder may write.
    WriteExclusive = 0x1,
    /// Exclusive Access: only the holder may read or write.
    ExclusiveAccess = 0x3,
    /// Write Exclusive - Registrants Only.
    WriteExclusiveRegistrantsOnly = 0x5,
    /// Exclusive Access - Registrants Only.
    ExclusiveAccessRegistrantsOnly = 0x6,
    /// Write Exclusive - All Registrants.
    WriteExclusiveAllRegistrants = 0x7,
    /// Exclusive Access - All Registrants.
    ExclusiveAccessAllRegistrants = 0x8,
}

impl ReservationType {
    /// Every type, for tables and tests.
    pub const ALL: [ReservationType; 6] = [
        ReservationType::WriteExclusive,
        ReservationType::ExclusiveAccess,
        ReservationType::WriteExclusiveRegistrantsOnly,
        ReservationType::ExclusiveAccessRegistrantsOnly,
        ReservationType::WriteExclusiveAllRegistrants,
        ReservationType::ExclusiveAccessAllRegistrants,
    ];

    /// Decodes the 4-bit TYPE; obsolete and reserved values yield `None`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v & 0x0F {
            0x1 => ReservationType::WriteExclusive,
            0x3 => ReservationType::ExclusiveAccess,
            0x5 => ReservationType::WriteExclusiveRegistrantsOnly,
            0x6 => ReservationType::ExclusiveAccessRegistrantsOnly,
            0x7 => ReservationType::WriteExclusiveAllRegistrants,
            0x8 => ReservationType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// True for the Write Exclusive family: reads stay open to everyone.
    pub const fn is_write_exclusive(self) -> bool {
        matches!(
            self,
            ReservationType::WriteExclusive
                | ReservationType::WriteExclusiveRegistrantsOnly
                | ReservationType::WriteExclusiveAllRegistrants
        )
    }

    /// True when every registrant (not just the holder) has access.
    pub const fn registrants_have_access(self) -> bool {
        !matches!(
            self,
            ReservationType::WriteExclusive | ReservationType::ExclusiveAccess
        )
    }

    /// True for the All Registrants types: every registrant is a holder.
    pub const fn is_all_registrants(self) -> bool {
        matches!(
            self,
            ReservationType::WriteExclusiveAllRegistrants
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    }

    /// This type's bit in REPORT CAPABILITIES' PERSISTENT RESERVATION TYPE MASK.
    pub const fn type_mask_bit(self) -> u16 {
        match self {
            ReservationType::WriteExclusiveAllRegistrants => 0x8000,
            ReservationType::ExclusiveAccessRegistrantsOnly => 0x4000,
            ReservationType::WriteExclusiveRegistrantsOnly => 0x2000,
            ReservationType::ExclusiveAccess => 0x0800,
            ReservationType::WriteExclusive => 0x0200,
            ReservationType::ExclusiveAccessAllRegistrants => 0x0001,
        }
    }
}

wire_struct! {
    /// The 8-byte header of READ KEYS, READ RESERVATION and READ FULL STATUS data.
    pub struct PrInHeader {
        /// PRGENERATION.
        pub pr_generation: U32,
        /// ADDITIONAL LENGTH (bytes after this header).
        pub additional_length: U32,
    }
}
const _: () = assert!(core::mem::size_of::<PrInHeader>() == 8);

fn header(buf: &[u8]) -> Result<(PrInHeader, &[u8])> {
    let (h, rest) = PrInHeader::read_from_prefix(buf).map_err(|_| WireError::Truncated {
        needed: 8,
        available: buf.len(),
    })?;
    let n = (h.additional_length.get() as usize).min(rest.len());
    Ok((h, &rest[..n]))
}

/// READ KEYS parameter data.
pub fn read_keys_data(pr_generation: u32, keys: &[u64]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + keys.len() * 8);
    v.extend_from_slice(&pr_generation.to_be_bytes());
    v.extend_from_slice(
        &u32::try_from(keys.len() * 8)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for k in keys {
        v.extend_from_slice(&k.to_be_bytes());
    }
    v
}

/// Parsed READ KEYS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadKeys<'a> {
    /// The header as received (ADDITIONAL LENGTH may exceed what is present).
    pub header: PrInHeader,
    /// The complete keys present.
    pub keys: &'a [U64],
}

impl<'a> ReadKeys<'a> {
    /// Parses READ KEYS data.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let (header, body) = header(buf)?;
        let n = body.len() / 8;
        let keys = <[U64]>::ref_from_bytes(&body[..n * 8]).map_err(|_| WireError::Truncated {
            needed: n * 8,
            available: body.len(),
        })?;
        Ok(ReadKeys { header, keys })
    }
}

wire_struct! {
    /// The reservation descriptor of READ RESERVATION data, 16 bytes.
    pub struct ReservationDescriptor {
        /// RESERVATION KEY of the holder (0 for All Registrants types).
        pub reservation_key: U64,
        pub obsolete: [u8; 4],
        pub reserved: u8,
        /// Bits 7:4 SCOPE, 3:0 TYPE.
        pub scope_type: u8,
        pub obsolete2: [u8; 2],
    }
}
const _: () = assert!(core::mem::size_of::<ReservationDescriptor>() == 16);
bits!(ReservationDescriptor {
    /// SCOPE.
    scope, set_scope, with_scope: scope_type, 4, 4;
    /// TYPE (raw).
    pr_type, set_pr_type, with_pr_type: scope_type, 0, 4;
});

/// READ RESERVATION parameter data: header only when there is no
/// reservation, header plus descriptor when there is.
pub fn read_reservation_data(
    pr_generation: u32,
    reservation: Option<(u64, ReservationType)>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&pr_generation.to_be_bytes());
    match reservation {
        None => v.extend_from_slice(&0u32.to_be_bytes()),
        Some((key, t)) => {
            v.extend_from_slice(&16u32.to_be_bytes());
            let mut d = ReservationDescriptor::new_zeroed().with_pr_type(t as u8);
            d.reservation_key.set(key);
            v.extend_from_slice(d.as_bytes());
        }
    }
    v
}

/// Parsed READ RESERVATION data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadReservation {
    /// The header as received.
    pub header: PrInHeader,
    /// The reservation, if one is held and the descriptor was transferred.
    pub reservation: Option<ReservationDescriptor>,
}

impl ReadReservation {
    /// Parses READ RESERVATION data.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let (header, body) = header(buf)?;
        let reservation = ReservationDescriptor::read_from_prefix(body)
            .ok()
            .map(|(d, _)| d);
        Ok(ReadReservation {
            header,
            reservation,
        })
    }
}

wire_struct! {
    /// REPORT CAPABILITIES parameter data, 8 bytes.
    pub struct ReportCapabilities {
        /// LENGTH (8).
        pub length: U16,
        /// Bit 7 RLR_C, 4 CRH, 3 SIP_C, 2 ATP_C, 0 PTPL_C.
        pub flags2: u8,
        /// Bit 7 TMV, 6:4 ALLOW COMMANDS, 0 PTPL_A.
        pub flags3: u8,
        /// PERSISTENT RESERVATION TYPE MASK ([`ReservationType::type_mask_bit`]).
        pub type_mask: U16,
        pub reserved: [u8; 2],
    }
}
const _: () = assert!(core::mem::size_of::<ReportCapabilities>() == 8);
flags!(ReportCapabilities {
    /// RLR_C: replace lost reservation capable.
    rlr_c, set_rlr_c, with_rlr_c: flags2, 0x80;
    /// CRH: compatible reservation handling (RESERVE/RELEASE vs PR).
    crh, set_crh, with_crh: flags2, 0x10;
    /// SIP_C: specify initiator ports capable.
    sip_c, set_sip_c, with_sip_c: flags2, 0x08;
    /// ATP_C: all target ports capable.
    atp_c, set_atp_c, with_atp_c: flags2, 0x04;
    /// PTPL_C: persist through power loss capable.
    ptpl_c, set_ptpl_c, with_ptpl_c: flags2, 0x01;
    /// TMV: the type mask is valid.
    tmv, set_tmv, with_tmv: flags3, 0x80;
    /// PTPL_A: persist through power loss activated.
    ptpl_a, set_ptpl_a, with_ptpl_a: flags3, 0x01;
});
bits!(ReportCapabilities {
    /// ALLOW COMMANDS.
    allow_commands, set_allow_commands, with_allow_commands: flags3, 4, 3;
});

impl ReportCapabilities {
    /// Capabilities with TMV set and `types` in the type mask.
    pub fn new(types: &[ReservationType]) -> Self {
        let mut s = Self::new_zeroed().with_tmv(true);
        s.length.set(8);
        s.type_mask
            .set(types.iter().fold(0, |m, t| m | t.type_mask_bit()));
        s
    }

    /// True when `t` is in the type mask.
    pub fn supports(&self, t: ReservationType) -> bool {
        self.type_mask.get() & t.type_mask_bit() != 0
    }

    /// Parses 8 bytes.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        crate::util::read_padded(buf, 8)
    }
}

wire_struct! {
    /// Fixed part of a READ FULL STATUS descriptor, 24 bytes; a TransportID
    /// of ADDITIONAL DESCRIPTOR LENGTH bytes follows.
    pub struct FullStatusDescriptorHeader {
        /// RESERVATION KEY.
        pub reservation_key: U64,
        pub reserved: [u8; 4],
        /// Bit 1 ALL_TG_PT, bit 0 R_HOLDER.
        pub flags: u8,
        /// Bits 7:4 SCOPE, 3:0 TYPE (valid when R_HOLDER is set).
        pub scope_type: u8,
        pub reserved14: [u8; 4],
        /// RELATIVE TARGET PORT IDENTIFIER.
        pub relative_target_port_identifier: U16,
        /// ADDITIONAL DESCRIPTOR LENGTH (the TransportID's length).
        pub additional_descriptor_length: U32,
    }
}
const _: () = assert!(core::mem::size_of::<FullStatusDescriptorHeader>() == 24);
flags!(FullStatusDescriptorHeader {
    /// ALL_TG_PT: the registration applies to all target ports.
    all_tg_pt, set_all_tg_pt, with_all_tg_pt: flags, 0x02;
    /// R_HOLDER: this I_T nexus holds the reservation.
    r_holder, set_r_holder, with_r_holder: flags, 0x01;
});
bits!(FullStatusDescriptorHeader {
    /// SCOPE.
    scope, set_scope, with_scope: scope_type, 4, 4;
    /// TYPE (raw).
    pr_type, set_pr_type, with_pr_type: scope_type, 0, 4;
});

/// One registration for [`read_full_status_data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullStatusEntry<'a> {
    /// RESERVATION KEY.
    pub reservation_key: u64,
    /// ALL_TG_PT.
    pub all_tg_pt: bool,
    /// The reservation type when this nexus holds the reservation.
    pub holder_of: Option<ReservationType>,
    /// RELATIVE TARGET PORT IDENTIFIER.
    pub relative_target_port_identifier: u16,
    /// The initiator's TransportID bytes.
    pub transport_id: &'a [u8],
}

/// READ FULL STATUS parameter data.
pub fn read_full_status_data(pr_generation: u32, entries: &[FullStatusEntry<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let mut h = FullStatusDescriptorHeader::new_zeroed().with_all_tg_pt(e.all_tg_pt);
        h.reservation_key.set(e.reservation_key);
        if let Some(t) = e.holder_of {
            h = h.with_r_holder(true).with_pr_type(t as u8);
        }
        h.relative_target_port_identifier
            .set(e.relative_target_port_identifier);
        h.additional_descriptor_length
            .set(e.transport_id.len() as u32);
        body.extend_from_slice(h.as_bytes());
        body.extend_from_slice(e.transport_id);
    }
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&pr_generation.to_be_bytes());
    v.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(&body);
    v
}

/// Iterator over READ FULL STATUS descriptors; stops at the first one that
/// is incomplete.
#[derive(Debug, Clone)]
pub struct FullStatus<'a> {
    /// The header as received.
    pub header: PrInHeader,
    rest: &'a [u8],
}

impl<'a> FullStatus<'a> {
    /// Parses READ FULL STATUS data.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let (header, rest) = header(buf)?;
        Ok(FullStatus { header, rest })
    }
}

impl<'a> Iterator for FullStatus<'a> {
    type Item = (FullStatusDescriptorHeader, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let Ok((h, rest)) = FullStatusDescriptorHeader::read_from_prefix(self.rest) else {
            self.rest = &[];
            return None;
        };
        let n = h.additional_descriptor_length.get() as usize;
        let Some(tid) = rest.get(..n) else {
            self.rest = &[];
            return None;
        };
        self.rest = &rest[n..];
        Some((h, tid))
    }
}

wire_struct! {
    /// Basic PERSISTENT RESERVE OUT parameter list, 24 bytes.
    pub struct PrOutParameterList {
        /// RESERVATION KEY: the key the I_T nexus is registered with.
        pub reservation_key: U64,
        /// SERVICE ACTION RESERVATION KEY: the new key (REGISTER) or the
        /// key to preempt (PREEMPT).
        pub service_action_reservation_key: U64,
        pub obsolete: [u8; 4],
        /// Bit 3 SPEC_I_PT, 2 ALL_TG_PT, 0 APTPL.
        pub flags: u8,
        pub reserved: u8,
        pub obsolete2: [u8; 2],
    }
}
const _: () = assert!(core::mem::size_of::<PrOutParameterList>() == 24);
flags!(PrOutParameterList {
    /// SPEC_I_PT: TransportIDs of additional initiator ports follow.
    spec_i_pt, set_spec_i_pt, with_spec_i_pt: flags, 0x08;
    /// ALL_TG_PT: register through all target ports.
    all_tg_pt, set_all_tg_pt, with_all_tg_pt: flags, 0x04;
    /// APTPL: activate persist through power loss.
    aptpl, set_aptpl, with_aptpl: flags, 0x01;
});

impl PrOutParameterList {
    /// Length of the basic list.
    pub const LEN: usize = 24;

    /// A list with the two keys and no flags.
    pub fn new(reservation_key: u64, service_action_reservation_key: u64) -> Self {
        let mut s = Self::new_zeroed();
        s.reservation_key.set(reservation_key);
        s.service_action_reservation_key
            .set(service_action_reservation_key);
        s
    }
}

/// A parsed PR OUT parameter list with its optional SPEC_I_PT TransportIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrOutParameters<'a> {
    /// The basic 24 bytes.
    pub list: PrOutParameterList,
    /// With SPEC_I_PT: the TRANSPORTID PARAMETER DATA (walk it with
    /// [`TransportIds`]).
    pub transport_ids: Option<&'a [u8]>,
}

impl<'a> PrOutParameters<'a> {
    /// Parses the list. Fails if shorter than 24 bytes, or if SPEC_I_PT is
    /// set and TRANSPORTID PARAMETER DATA LENGTH (bytes 24-27) is missing or
    /// runs past the data (SPC-4: PARAMETER LIST LENGTH ERROR).
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let (list, rest) =
            PrOutParameterList::read_from_prefix(buf).map_err(|_| WireError::Truncated {
                needed: 24,
                available: buf.len(),
            })?;
        let transport_ids = if list.spec_i_pt() {
            need(rest, 4)?;
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let body = &rest[4..];
            Some(body.get(..n).ok_or(WireError::Truncated {
                needed: 28usize.saturating_add(n),
                available: buf.len(),
            })?)
        } else {
            None
        };
        Ok(PrOutParameters {
            list,
            transport_ids,
        })
    }
}

wire_struct! {
    /// REGISTER AND MOVE parameter list header, 24 bytes; a TransportID
    /// of TRANSPORTID PARAMETER DATA LENGTH bytes follows.
    pub struct RegisterAndMoveParameterList {
        /// RESERVATION KEY.
        pub reservation_key: U64,
        /// SERVICE ACTION RESERVATION KEY.
        pub service_action_reservation_key: U64,
        pub reserved: u8,
        /// Bit 1 UNREG, bit 0 APTPL.
        pub flags: u8,
        /// RELATIVE TARGET PORT IDENTIFIER.
        pub relative_target_port_identifier: U16,
        /// TRANSPORTID PARAMETER DATA LENGTH.
        pub transport_id_parameter_data_length: U32,
    }
}
const _: () = assert!(core::mem::size_of::<RegisterAndMoveParameterList>() == 24);
flags!(RegisterAndMoveParameterList {
    /// UNREG: unregister the sending I_T nexus after the move.
    unreg, set_unreg, with_unreg: flags, 0x02;
    /// APTPL.
    aptpl, set_aptpl, with_aptpl: flags, 0x01;
});

// --------------------------------------------------------- TransportID ----

/// TransportID FORMAT CODE for iSCSI: 00b = name only, 01b = initiator port
/// (name + ",i,0x" + ISID).
pub mod transport_id_format {
    /// iSCSI name.
    pub const ISCSI_NAME: u8 = 0;
    /// iSCSI initiator port identifier.
    pub const ISCSI_PORT: u8 = 1;
}

/// Builds an iSCSI TransportID (SPC-4 7.6.4.6): `name`, optionally
/// followed by ",i,0x" and the 6-byte ISID in hex (format 01b), NUL
/// terminated and padded to a multiple of 4, with at least 20 bytes of
/// name field. Names are truncated to 223 bytes.
pub fn iscsi_transport_id(name: &str, isid: Option<[u8; 6]>) -> Vec<u8> {
    let mut end = name.len().min(223);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut field = name.as_bytes()[..end].to_vec();
    let format = if let Some(isid) = isid {
        field.extend_from_slice(b",i,0x");
        for b in isid {
            field.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        transport_id_format::ISCSI_PORT
    } else {
        transport_id_format::ISCSI_NAME
    };
    field.push(0);
    while field.len() < 20 || !field.len().is_multiple_of(4) {
        field.push(0);
    }
    let mut v = Vec::with_capacity(4 + field.len());
    v.push(format << 6 | crate::vpd::protocol_id::ISCSI);
    v.push(0);
    v.extend_from_slice(&(field.len() as u16).to_be_bytes());
    v.extend_from_slice(&field);
    v
}

/// Length of the TransportID at the start of `buf`, from its protocol
/// identifier: 24 bytes for FC, SRP, SAS and SBP, 4 + ADDITIONAL LENGTH
/// for iSCSI. `BadValue` for protocols without a known format.
pub fn transport_id_len(buf: &[u8]) -> Result<usize> {
    need(buf, 1)?;
    match buf[0] & 0x0F {
        0x0 | 0x3 | 0x4 | 0x6 => Ok(24),
        0x5 => {
            need(buf, 4)?;
            Ok(4 + u16::from_be_bytes([buf[2], buf[3]]) as usize)
        }
        p => Err(WireError::BadValue {
            field: "PROTOCOL IDENTIFIER",
            value: p as u64,
        }),
    }
}

/// A TransportID borrowed from parameter data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportId<'a> {
    /// FORMAT CODE (bits 7:6 of byte 0).
    pub format: u8,
    /// PROTOCOL IDENTIFIER (bits 3:0 of byte 0).
    pub protocol_identifier: u8,
    /// All bytes of the TransportID.
    pub bytes: &'a [u8],
}

impl<'a> TransportId<'a> {
    /// Parses the TransportID at the start of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let n = transport_id_len(buf)?;
        need(buf, n)?;
        Ok(TransportId {
            format: buf[0] >> 6,
            protocol_identifier: buf[0] & 0x0F,
            bytes: &buf[..n],
        })
    }

    /// For iSCSI: the iSCSI name (up to the NUL, or ",i,0x" in format 01b).
    pub fn iscsi_name(&self) -> Option<&'a str> {
        if self.protocol_identifier != crate::vpd::protocol_id::ISCSI {
            return None;
        }
        let field = self.bytes.get(4..)?;
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let s = core::str::from_utf8(&field[..end]).ok()?;
        Some(match s.find(",i,0x") {
            Some(p) if self.format == transport_id_format::ISCSI_PORT => &s[..p],
            _ => s,
        })
    }

    /// For iSCSI format 01b: the ISID as 6 bytes.
    pub fn iscsi_isid(&self) -> Option<[u8; 6]> {
        if self.format != transport_id_format::ISCSI_PORT {
            return None;
        }
        let field = self.bytes.get(4..)?;
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let s = core::str::from_utf8(&field[..end]).ok()?;
        let hex = &s[s.find(",i,0x")? + 5..];
        if hex.len() != 12 {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

/// Iterator over consecutive TransportIDs (SPEC_I_PT data); yields `Err`
/// once and stops if one is malformed or truncated.
#[derive(Debug, Clone)]
pub struct TransportIds<'a> {
    rest: &'a [u8],
}

impl<'a> TransportIds<'a> {
    /// Walks `data`.
    pub fn new(data: &'a [u8]) -> Self {
        TransportIds { rest: data }
    }
}

impl<'a> Iterator for TransportIds<'a> {
    type Item = Result<TransportId<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TransportId::parse(self.rest) {
            Ok(t) => {
                self.rest = &self.rest[t.bytes.len()..];
                Some(Ok(t))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_type_properties() {
        for t in ReservationType::ALL {
            assert_eq!(ReservationType::from_u8(t as u8), Some(t));
        }
        assert_eq!(ReservationType::from_u8(2), None);
        assert!(ReservationType::WriteExclusive.is_write_exclusive());
        assert!(!ReservationType::ExclusiveAccessRegistrantsOnly.is_write_exclusive());
        assert!(!ReservationType::ExclusiveAccess.registrants_have_access());
        assert!(ReservationType::WriteExclusiveRegistrantsOnly.registrants_have_access());
        assert!(ReservationType::ExclusiveAccessAllRegistrants.is_all_registrants());
        let mask = ReservationType::ALL
            .iter()
            .fold(0u16, |m, t| m | t.type_mask_bit());
        assert_eq!(mask, 0xEA01);
    }

    #[test]
    fn read_keys_and_reservation_round_trip() {
        let d = read_keys_data(7, &[0x1122, 0xABCD]);
        assert_eq!(&d[..8], &[0, 0, 0, 7, 0, 0, 0, 16]);
        let k = ReadKeys::parse(&d).unwrap();
        assert_eq!(k.header.pr_generation.get(), 7);
        assert_eq!(
            k.keys.iter().map(|k| k.get()).collect::<Vec<_>>(),
            vec![0x1122, 0xABCD]
        );
        assert_eq!(ReadKeys::parse(&d[..12]).unwrap().keys.len(), 0);
        assert!(ReadKeys::parse(&d[..7]).is_err());

        let r = read_reservation_data(
            3,
            Some((0x55, ReservationType::ExclusiveAccessRegistrantsOnly)),
        );
        assert_eq!(r.len(), 24);
        assert_eq!(&r[4..8], &[0, 0, 0, 16]);
        assert_eq!(r[8 + 13], 0x06);
        let p = ReadReservation::parse(&r).unwrap();
        let d = p.reservation.unwrap();
        assert_eq!(
            (d.reservation_key.get(), d.pr_type(), d.scope()),
            (0x55, 6, LU_SCOPE)
        );
        let none = read_reservation_data(3, None);
        assert_eq!(none, vec![0, 0, 0, 3, 0, 0, 0, 0]);
        assert_eq!(ReadReservation::parse(&none).unwrap().reservation, None);
    }

    #[test]
    fn report_capabilities_bytes() {
        let c = ReportCapabilities::new(&ReservationType::ALL)
            .with_crh(true)
            .with_atp_c(true)
            .with_sip_c(true)
            .with_ptpl_c(true);
        assert_eq!(c.as_bytes(), &[0, 8, 0x1D, 0x80, 0xEA, 0x01, 0, 0]);
        let p = ReportCapabilities::parse(c.as_bytes()).unwrap();
        assert!(p.supports(ReservationType::WriteExclusiveAllRegistrants));
        assert!(p.tmv() && p.crh());
        let only = ReportCapabilities::new(&[ReservationType::WriteExclusive]);
        assert!(!only.supports(ReservationType::ExclusiveAccess));
    }

    #[test]
    fn full_status_round_trip() {
        let t1 = iscsi_transport_id("iqn.1993-08.org.debian:01:a", None);
        let t2 = iscsi_transport_id("iqn.b", Some([0x80, 0, 0x02, 0x3D, 0, 1]));
        let entries = [
            FullStatusEntry {
                reservation_key: 1,
                all_tg_pt: false,
                holder_of: Some(ReservationType::WriteExclusive),
                relative_target_port_identifier: 1,
                transport_id: &t1,
            },
            FullStatusEntry {
                reservation_key: 2,
                all_tg_pt: true,
                holder_of: None,
                relative_target_port_identifier: 2,
                transport_id: &t2,
            },
        ];
        let d = read_full_status_data(9, &entries);
        let fs = FullStatus::parse(&d).unwrap();
        assert_eq!(fs.header.pr_generation.get(), 9);
        let got: Vec<_> = fs.collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].0.r_holder() && !got[0].0.all_tg_pt());
        assert_eq!(got[0].0.pr_type(), 1);
        assert_eq!(got[0].1, &t1[..]);
        assert!(got[1].0.all_tg_pt() && !got[1].0.r_holder());
        assert_eq!(got[1].0.relative_target_port_identifier.get(), 2);
        let tid = TransportId::parse(got[1].1).unwrap();
        assert_eq!(tid.iscsi_name(), Some("iqn.b"));
        assert_eq!(tid.iscsi_isid(), Some([0x80, 0, 0x02, 0x3D, 0, 1]));
        // Truncated: only the complete first descriptor.
        let cut = &d[..8 + 24 + t1.len() + 10];
        assert_eq!(FullStatus::parse(cut).unwrap().count(), 1);
    }

    #[test]
    fn iscsi_transport_id_layout() {
        let t = iscsi_transport_id("iqn.x", None);
        assert_eq!(t.len(), 24, "name field padded to at least 20");
        assert_eq!(&t[..4], &[0x05, 0, 0, 20]);
        assert_eq!(&t[4..10], b"iqn.x\0");
        let p = iscsi_transport_id("iqn.x", Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(p[0], 0x45);
        assert_eq!(p.len() % 4, 0);
        let tp = TransportId::parse(&p).unwrap();
        assert_eq!(tp.iscsi_name(), Some("iqn.x"));
        assert_eq!(TransportId::parse(&t).unwrap().iscsi_isid(), None);
        assert_eq!(transport_id_len(&[0x06]).unwrap(), 24);
        assert!(transport_id_len(&[0x0F]).is_err());
        assert!(TransportId::parse(&t[..10]).is_err());
    }

    #[test]
    fn pr_out_parameter_list_with_spec_i_pt() {
        let basic = PrOutParameterList::new(0, 0xABCD)
            .with_spec_i_pt(true)
            .with_aptpl(true);
        assert_eq!(basic.as_bytes()[20], 0x09);
        let t = iscsi_transport_id("iqn.other", None);
        let mut buf = basic.as_bytes().to_vec();
        buf.extend_from_slice(&(t.len() as u32 * 2).to_be_bytes());
        buf.extend_from_slice(&t);
        buf.extend_from_slice(&t);
        let p = PrOutParameters::parse(&buf).unwrap();
        assert_eq!(p.list.service_action_reservation_key.get(), 0xABCD);
        let ids: Vec<_> = TransportIds::new(p.transport_ids.unwrap()).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].as_ref().unwrap().iscsi_name(), Some("iqn.other"));
        // TransportID data length past the end.
        assert!(PrOutParameters::parse(&buf[..buf.len() - 1]).is_err());
        // SPEC_I_PT without the length field.
        assert!(PrOutParameters::parse(&buf[..26]).is_err());
        // Plain list.
        let plain = PrOutParameterList::new(5, 6).with_all_tg_pt(true);
        let p = PrOutParameters::parse(plain.as_bytes()).unwrap();
        assert!(p.list.all_tg_pt() && p.transport_ids.is_none());
        assert!(PrOutParameters::parse(&plain.as_bytes()[..23]).is_err());
        // Malformed TransportID in the list.
        let bad: Vec<_> = TransportIds::new(&[0x0F, 0, 0, 0]).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].is_err());
        let rm = RegisterAndMoveParameterList::new_zeroed().with_unreg(true);
        assert_eq!(rm.as_bytes()[17], 0x02);
    }
}
