//! Operational parameter negotiation (RFC 7143 §6.2, §13).
//!
//! Every key of §13 is known here with its negotiation rule: list
//! (responder picks the first offered value it supports), boolean OR/AND,
//! numerical minimum/maximum, declarative. Unknown keys (including `X-` and
//! `X#` extensions) are answered `NotUnderstood`; keys that do not apply are
//! answered `Irrelevant` (markers are not supported, so `OFMarkInt`/`IFMarkInt`
//! are always irrelevant; the data-transfer keys are irrelevant in a
//! discovery session; `FirstBurstLength` is irrelevant when
//! `InitialR2T=Yes` and `ImmediateData=No`).

/// What the target is willing to accept; the negotiated result never exceeds these.
#[derive(Clone, Debug)]
pub struct TargetLimits {
    /// Largest data segment this target receives (declared as MaxRecvDataSegmentLength).
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    /// The target's preference for InitialR2T (OR rule: `false` lets the initiator choose).
    pub initial_r2t: bool,
    /// The target's preference for ImmediateData (AND rule: `true` lets the initiator choose).
    pub immediate_data: bool,
    pub max_outstanding_r2t: u16,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    /// Digests the target accepts when the initiator offers them.
    pub allow_header_digest: bool,
    pub allow_data_digest: bool,
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 4,
            default_time2wait: 2,
            default_time2retain: 0,
            allow_header_digest: true,
            allow_data_digest: true,
        }
    }
}

/// Session type from the `SessionType` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SessionType {
    Discovery,
    #[default]
    Normal,
}

/// Negotiated values in force for a connection/session (defaults of §13 until negotiated).
#[derive(Clone, Debug)]
pub struct Negotiated {
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_connections: u16,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// The initiator's declared receive limit: the largest data segment we may send.
    pub initiator_mrdsl: u32,
    /// Our declared receive limit.
    pub target_mrdsl: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_outstanding_r2t: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
}

impl Negotiated {
    pub fn defaults(limits: &TargetLimits) -> Negotiated {
        Negotiated {
            header_digest: false,
            data_digest: false,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            initiator_mrdsl: 8192,
            target_mrdsl: limits.max_recv_data_segment_length,
            max_burst_length: 262_144.min(limits.max_burst_length),
            first_burst_length: 65_536.min(limits.first_burst_length),
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// The answer to one offered key.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Send `key=value` back.
    Reply(String),
    /// Declarative key, or a key handled elsewhere: nothing to send.
    NoReply,
}

fn yes_no(v: bool) -> String {
    if v { "Yes".into() } else { "No".into() }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn parse_num(v: &str, lo: u32, hi: u32) -> Option<u32> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else {
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse::<u64>().ok().and_then(|n| u32::try_from(n).ok())?
    };
    (lo..=hi).contains(&n).then_some(n)
}

const IRRELEVANT_IN_DISCOVERY: &[&str] = &[
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
];

/// Keys this module negotiates (operational keys of §13 minus the ones the
/// login state machine handles: names, SessionType, AuthMethod, CHAP_*).
pub fn is_operational_key(key: &str) -> bool {
    matches!(
        key,
        "HeaderDigest"
            | "DataDigest"
            | "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxRecvDataSegmentLength"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "ErrorRecoveryLevel"
            | "OFMarker"
            | "IFMarker"
            | "OFMarkInt"
            | "IFMarkInt"
            | "TaskReporting"
            | "iSCSIProtocolLevel"
            | "InitiatorAlias"
            | "TargetAlias"
            | "TargetAddress"
            | "TargetPortalGroupTag"
            | "SendTargets"
    )
}

/// Negotiates one operational key offered by the initiator, updating `n`.
pub fn negotiate(
    key: &str,
    value: &str,
    n: &mut Negotiated,
    limits: &TargetLimits,
    session: SessionType,
) -> KeyOutcome {
    use KeyOutcome::*;
    if session == SessionType::Discovery && IRRELEVANT_IN_DISCOVERY.contains(&key) {
        return Reply("Irrelevant".into());
    }
    let reject = || Reply("Reject".into());
    match key {
        "HeaderDigest" | "DataDigest" => {
            let allow = if key == "HeaderDigest" {
                limits.allow_header_digest
            } else {
                limits.allow_data_digest
            };
            let pick = value
                .split(',')
                .find(|v| *v == "None" || (*v == "CRC32C" && allow));
            match pick {
                Some(p) => {
                    let on = p == "CRC32C";
                    if key == "HeaderDigest" {
                        n.header_digest = on;
                    } else {
                        n.data_digest = on;
                    }
                    Reply(p.into())
                }
                None => reject(),
            }
        }
        "MaxConnections" => match parse_num(value, 1, 65535) {
            // One connection per session (ERL 0, no MC/S).
            Some(_) => {
                n.max_connections = 1;
                Reply("1".into())
            }
            None => reject(),
        },
        "InitialR2T" => match parse_bool(value) {
            Some(v) => {
                n.initial_r2t = v || limits.initial_r2t;
                Reply(yes_no(n.initial_r2t))
            }
            None => reject(),
        },
        "ImmediateData" => match parse_bool(value) {
            Some(v) => {
                n.immediate_data = v && limits.immediate_data;
                Reply(yes_no(n.immediate_data))
            }
            None => reject(),
        },
        "DataPDUInOrder" | "DataSequenceInOrder" => match parse_bool(value) {
            // OR rule; this target only handles in-order data, so the result is Yes.
            Some(_) => Reply("Yes".into()),
            None => reject(),
        },
        "IFMarker" | "OFMarker" => match parse_bool(value) {
            // AND rule; markers are not supported.
            Some(_) => Reply("No".into()),
            None => reject(),
        },
        "OFMarkInt" | "IFMarkInt" => Reply("Irrelevant".into()),
        "MaxRecvDataSegmentLength" => match parse_num(value, 512, 16_777_215) {
            Some(v) => {
                n.initiator_mrdsl = v;
                NoReply
            }
            None => reject(),
        },
        "MaxBurstLength" => match parse_num(value, 512, 16_777_215) {
            Some(v) => {
                n.max_burst_length = v.min(limits.max_burst_length);
                n.first_burst_length = n.first_burst_length.min(n.max_burst_length);
                Reply(n.max_burst_length.to_string())
            }
            None => reject(),
        },
        "FirstBurstLength" => match parse_num(value, 512, 16_777_215) {
            Some(v) => {
                n.first_burst_length = v.min(limits.first_burst_length).min(n.max_burst_length);
                Reply(n.first_burst_length.to_string())
            }
            None => reject(),
        },
        "DefaultTime2Wait" => match parse_num(value, 0, 3600) {
            Some(v) => {
                n.default_time2wait = (v as u16).max(limits.default_time2wait);
                Reply(n.default_time2wait.to_string())
            }
            None => reject(),
        },
        "DefaultTime2Retain" => match parse_num(value, 0, 3600) {
            Some(v) => {
                n.default_time2retain = (v as u16).min(limits.default_time2retain);
                Reply(n.default_time2retain.to_string())
            }
            None => reject(),
        },
        "MaxOutstandingR2T" => match parse_num(value, 1, 65535) {
            Some(v) => {
                n.max_outstanding_r2t = (v as u16).min(limits.max_outstanding_r2t);
                Reply(n.max_outstanding_r2t.to_string())
            }
            None => reject(),
        },
        "ErrorRecoveryLevel" => match parse_num(value, 0, 2) {
            Some(_) => {
                n.error_recovery_level = 0;
                Reply("0".into())
            }
            None => reject(),
        },
        "TaskReporting" => {
            if value.split(',').any(|v| v == "RFC3720") {
                Reply("RFC3720".into())
            } else {
                reject()
            }
        }
        "iSCSIProtocolLevel" => match parse_num(value, 0, 31) {
            // RFC 7144: this target implements level 1 (RFC 7143).
            Some(v) => Reply(v.min(1).to_string()),
            None => reject(),
        },
        // Declarative, initiator side: nothing to answer.
        "InitiatorAlias" => NoReply,
        // Target-only keys must not be sent by an initiator.
        "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => reject(),
        // SendTargets is only valid in a Text request of a full-feature session.
        "SendTargets" => Reply("Irrelevant".into()),
        _ => Reply("NotUnderstood".into()),
    }
}

/// Final fix-ups once the initiator's offers of a login are known:
/// `FirstBurstLength` becomes irrelevant when no unsolicited data is allowed.
pub fn first_burst_irrelevant(n: &Negotiated) -> bool {
    n.initial_r2t && !n.immediate_data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(key: &str, v: &str, n: &mut Negotiated) -> KeyOutcome {
        negotiate(key, v, n, &TargetLimits::default(), SessionType::Normal)
    }

    #[test]
    fn rules() {
        let l = TargetLimits::default();
        let mut n = Negotiated::defaults(&l);
        assert_eq!(
            neg("HeaderDigest", "CRC32C,None", &mut n),
            KeyOutcome::Reply("CRC32C".into())
        );
        assert!(n.header_digest);
        assert_eq!(
            neg("DataDigest", "None,CRC32C", &mut n),
            KeyOutcome::Reply("None".into())
        );
        assert_eq!(
            neg("DataDigest", "MD5", &mut n),
            KeyOutcome::Reply("Reject".into())
        );
        assert_eq!(
            neg("InitialR2T", "No", &mut n),
            KeyOutcome::Reply("No".into())
        );
        assert_eq!(
            neg("ImmediateData", "Yes", &mut n),
            KeyOutcome::Reply("Yes".into())
        );
        assert_eq!(
            neg("MaxBurstLength", "16776192", &mut n),
            KeyOutcome::Reply("1048576".into())
        );
        assert_eq!(
            neg("FirstBurstLength", "262144", &mut n),
            KeyOutcome::Reply("262144".into())
        );
        assert_eq!(
            neg("MaxBurstLength", "4096", &mut n),
            KeyOutcome::Reply("4096".into())
        );
        assert_eq!(
            n.first_burst_length, 4096,
            "FirstBurstLength never exceeds MaxBurstLength"
        );
        assert_eq!(
            neg("DefaultTime2Wait", "0", &mut n),
            KeyOutcome::Reply("2".into())
        );
        assert_eq!(
            neg("DefaultTime2Retain", "20", &mut n),
            KeyOutcome::Reply("0".into())
        );
        assert_eq!(
            neg("MaxOutstandingR2T", "8", &mut n),
            KeyOutcome::Reply("4".into())
        );
        assert_eq!(
            neg("ErrorRecoveryLevel", "2", &mut n),
            KeyOutcome::Reply("0".into())
        );
        assert_eq!(
            neg("MaxRecvDataSegmentLength", "65536", &mut n),
            KeyOutcome::NoReply
        );
        assert_eq!(n.initiator_mrdsl, 65536);
        assert_eq!(
            neg("MaxRecvDataSegmentLength", "100", &mut n),
            KeyOutcome::Reply("Reject".into())
        );
        assert_eq!(
            neg("MaxBurstLength", "abc", &mut n),
            KeyOutcome::Reply("Reject".into())
        );
        assert_eq!(
            neg("IFMarker", "Yes", &mut n),
            KeyOutcome::Reply("No".into())
        );
        assert_eq!(
            neg("OFMarkInt", "1~65535", &mut n),
            KeyOutcome::Reply("Irrelevant".into())
        );
        assert_eq!(
            neg("X-com.example.Foo", "1", &mut n),
            KeyOutcome::Reply("NotUnderstood".into())
        );
        assert_eq!(
            neg("Bogus", "1", &mut n),
            KeyOutcome::Reply("NotUnderstood".into())
        );
        assert_eq!(
            neg("TaskReporting", "ResponseFence,RFC3720", &mut n),
            KeyOutcome::Reply("RFC3720".into())
        );
        let mut d = Negotiated::defaults(&l);
        assert_eq!(
            negotiate("MaxBurstLength", "1024", &mut d, &l, SessionType::Discovery),
            KeyOutcome::Reply("Irrelevant".into())
        );
    }

    #[test]
    fn initial_r2t_or_immediate_and() {
        let l = TargetLimits {
            initial_r2t: true,
            immediate_data: false,
            ..Default::default()
        };
        let mut n = Negotiated::defaults(&l);
        assert_eq!(
            negotiate("InitialR2T", "No", &mut n, &l, SessionType::Normal),
            KeyOutcome::Reply("Yes".into())
        );
        assert_eq!(
            negotiate("ImmediateData", "Yes", &mut n, &l, SessionType::Normal),
            KeyOutcome::Reply("No".into())
        );
        assert!(first_burst_irrelevant(&n));
    }
}
