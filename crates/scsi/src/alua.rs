//! REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36.2): asymmetric
//! logical unit access states of the target port groups.

use crate::error::{Result, need};

/// ASYMMETRIC ACCESS STATE values.
pub mod access_state {
    /// Active/optimized.
    pub const ACTIVE_OPTIMIZED: u8 = 0x0;
    /// Active/non-optimized.
    pub const ACTIVE_NON_OPTIMIZED: u8 = 0x1;
    /// Standby.
    pub const STANDBY: u8 = 0x2;
    /// Unavailable.
    pub const UNAVAILABLE: u8 = 0x3;
    /// Logical block dependent.
    pub const LOGICAL_BLOCK_DEPENDENT: u8 = 0x4;
    /// Offline.
    pub const OFFLINE: u8 = 0xE;
    /// Transitioning between states.
    pub const TRANSITIONING: u8 = 0xF;
}

/// Supported-state bits of a target port group descriptor (byte 1).
pub mod supported {
    /// T_SUP: transitioning.
    pub const T_SUP: u8 = 0x80;
    /// O_SUP: offline.
    pub const O_SUP: u8 = 0x40;
    /// LBD_SUP: logical block dependent.
    pub const LBD_SUP: u8 = 0x10;
    /// U_SUP: unavailable.
    pub const U_SUP: u8 = 0x08;
    /// S_SUP: standby.
    pub const S_SUP: u8 = 0x04;
    /// AN_SUP: active/non-optimized.
    pub const AN_SUP: u8 = 0x02;
    /// AO_SUP: active/optimized.
    pub const AO_SUP: u8 = 0x01;
}

/// One target port group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPortGroup {
    /// PREF: preferred target port group.
    pub pref: bool,
    /// ASYMMETRIC ACCESS STATE ([`access_state`]).
    pub state: u8,
    /// Supported states ([`supported`] bits).
    pub supported: u8,
    /// TARGET PORT GROUP.
    pub id: u16,
    /// STATUS CODE (0 = no status, 1 = changed by SET TARGET PORT GROUPS,
    /// 2 = changed by implicit behaviour).
    pub status_code: u8,
    /// RELATIVE TARGET PORT IDENTIFIERs of the ports in the group.
    pub ports: Vec<u16>,
}

/// REPORT TARGET PORT GROUPS data. With `implicit_transition_time` the
/// extended header (PARAMETER DATA FORMAT 001b) is used. Groups with more
/// than 255 ports list only the first 255.
pub fn report_target_port_groups_data(
    implicit_transition_time: Option<u8>,
    groups: &[TargetPortGroup],
) -> Vec<u8> {
    let mut v = vec![0u8; 4];
    if let Some(t) = implicit_transition_time {
        v.extend_from_slice(&[0x10, t, 0, 0]);
    }
    for g in groups {
        let ports = &g.ports[..g.ports.len().min(255)];
        v.push((g.pref as u8) << 7 | (g.state & 0x0F));
        v.push(g.supported);
        v.extend_from_slice(&g.id.to_be_bytes());
        v.extend_from_slice(&[0, g.status_code, 0, ports.len() as u8]);
        for p in ports {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&p.to_be_bytes());
        }
    }
    let len = u32::try_from(v.len() - 4).unwrap_or(u32::MAX);
    v[..4].copy_from_slice(&len.to_be_bytes());
    v
}

/// Parsed REPORT TARGET PORT GROUPS data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPortGroups {
    /// RETURN DATA LENGTH as reported.
    pub return_data_length: u32,
    /// IMPLICIT TRANSITION TIME when the extended header was used.
    pub implicit_transition_time: Option<u8>,
    /// The complete descriptors present.
    pub groups: Vec<TargetPortGroup>,
}

impl TargetPortGroups {
    /// Parses the data; `extended` says whether the CDB asked for
    /// PARAMETER DATA FORMAT 001b (the header does not say so by itself
    /// when it is truncated). Incomplete trailing descriptors are dropped.
    pub fn parse(buf: &[u8], extended: bool) -> Result<Self> {
        need(buf, 4)?;
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let end = buf.len().min(4usize.saturating_add(len as usize));
        let mut pos = 4;
        let mut implicit_transition_time = None;
        if extended {
            need(buf, 8)?;
            implicit_transition_time = Some(buf[5]);
            pos = 8;
        }
        let mut groups = Vec::new();
        while let Some(d) = buf[..end].get(pos..pos + 8) {
            let n = d[7] as usize;
            let Some(ports) = buf[..end].get(pos + 8..pos + 8 + 4 * n) else {
                break;
            };
            groups.push(TargetPortGroup {
                pref: d[0] & 0x80 != 0,
                state: d[0] & 0x0F,
                supported: d[1],
                id: u16::from_be_bytes([d[2], d[3]]),
                status_code: d[5],
                ports: ports
                    .chunks_exact(4)
                    .map(|p| u16::from_be_bytes([p[2], p[3]]))
                    .collect(),
            });
            pos += 8 + 4 * n;
        }
        Ok(TargetPortGroups {
            return_data_length: len,
            implicit_transition_time,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<TargetPortGroup> {
        vec![
            TargetPortGroup {
                pref: true,
                state: access_state::ACTIVE_OPTIMIZED,
                supported: supported::AO_SUP | supported::AN_SUP | supported::S_SUP,
                id: 1,
                status_code: 0,
                ports: vec![1, 2],
            },
            TargetPortGroup {
                pref: false,
                state: access_state::STANDBY,
                supported: supported::AO_SUP | supported::S_SUP,
                id: 2,
                status_code: 2,
                ports: vec![3],
            },
        ]
    }

    #[test]
    fn rtpg_round_trip_both_formats() {
        let d = report_target_port_groups_data(None, &groups());
        assert_eq!(&d[..4], &[0, 0, 0, 28]);
        assert_eq!(&d[4..12], &[0x80, 0x07, 0, 1, 0, 0, 0, 2]);
        assert_eq!(&d[12..16], &[0, 0, 0, 1]);
        let p = TargetPortGroups::parse(&d, false).unwrap();
        assert_eq!(p.groups, groups());
        let e = report_target_port_groups_data(Some(10), &groups());
        assert_eq!(&e[4..8], &[0x10, 10, 0, 0]);
        let p = TargetPortGroups::parse(&e, true).unwrap();
        assert_eq!((p.implicit_transition_time, p.groups.len()), (Some(10), 2));
    }

    #[test]
    fn rtpg_truncation_keeps_complete_groups() {
        let d = report_target_port_groups_data(None, &groups());
        assert_eq!(
            TargetPortGroups::parse(&d[..d.len() - 1], false)
                .unwrap()
                .groups
                .len(),
            1
        );
        assert!(TargetPortGroups::parse(&d[..3], false).is_err());
        assert!(TargetPortGroups::parse(&d[..6], true).is_err());
    }
}
