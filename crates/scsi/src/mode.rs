//! Mode parameters (SPC-4 7.5, SBC-3 6.4): headers, block descriptors and
//! the pages an SBC target serves.
//!
//! MODE SENSE data is `header | block descriptors | pages`; build it with
//! [`ModeData::encode6`] / [`ModeData::encode10`] from the page structs'
//! bytes. MODE SELECT data is parsed with [`ModeParameterList::parse6`] /
//! [`ModeParameterList::parse10`], and its pages walked with [`ModePages`].

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError, need};
use crate::util::read_padded;

/// PC field of MODE SENSE: which values to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageControl {
    /// Current values.
    Current = 0,
    /// Changeable values (a mask: 1 bits may be changed by MODE SELECT).
    Changeable = 1,
    /// Default values.
    Default = 2,
    /// Saved values.
    Saved = 3,
}

impl PageControl {
    /// Decodes the 2-bit PC field.
    pub const fn from_bits(v: u8) -> Self {
        match v & 3 {
            0 => PageControl::Current,
            1 => PageControl::Changeable,
            2 => PageControl::Default,
            _ => PageControl::Saved,
        }
    }
}

/// Mode page codes.
pub mod page_code {
    /// Read-Write Error Recovery.
    pub const READ_WRITE_ERROR_RECOVERY: u8 = 0x01;
    /// Disconnect-Reconnect.
    pub const DISCONNECT_RECONNECT: u8 = 0x02;
    /// Format Device (obsolete).
    pub const FORMAT_DEVICE: u8 = 0x03;
    /// Rigid Disk Geometry (obsolete).
    pub const RIGID_DISK_GEOMETRY: u8 = 0x04;
    /// Caching.
    pub const CACHING: u8 = 0x08;
    /// Control.
    pub const CONTROL: u8 = 0x0A;
    /// Power Condition.
    pub const POWER_CONDITION: u8 = 0x1A;
    /// Informational Exceptions Control.
    pub const INFORMATIONAL_EXCEPTIONS_CONTROL: u8 = 0x1C;
    /// Return all pages.
    pub const ALL_PAGES: u8 = 0x3F;
    /// Subpage code: all subpages.
    pub const ALL_SUBPAGES: u8 = 0xFF;
}

/// DEVICE-SPECIFIC PARAMETER bits for direct-access devices (SBC-3 6.4.1).
pub mod device_specific {
    /// WP: the medium is write-protected.
    pub const WP: u8 = 0x80;
    /// DPOFUA: DPO and FUA are supported.
    pub const DPOFUA: u8 = 0x10;
}

wire_struct! {
    /// Mode parameter header for MODE SENSE(6)/SELECT(6), 4 bytes.
    pub struct ModeParameterHeader6 {
        /// MODE DATA LENGTH (n - 1; reserved in MODE SELECT).
        pub mode_data_length: u8,
        /// MEDIUM TYPE (0 for SBC).
        pub medium_type: u8,
        /// DEVICE-SPECIFIC PARAMETER ([`device_specific`]).
        pub device_specific_parameter: u8,
        /// BLOCK DESCRIPTOR LENGTH.
        pub block_descriptor_length: u8,
    }
}
const _: () = assert!(core::mem::size_of::<ModeParameterHeader6>() == 4);

wire_struct! {
    /// Mode parameter header for MODE SENSE(10)/SELECT(10), 8 bytes.
    pub struct ModeParameterHeader10 {
        /// MODE DATA LENGTH (n - 2; reserved in MODE SELECT).
        pub mode_data_length: U16,
        /// MEDIUM TYPE.
        pub medium_type: u8,
        /// DEVICE-SPECIFIC PARAMETER.
        pub device_specific_parameter: u8,
        /// Bit 0 LONGLBA: block descriptors are 16 bytes.
        pub flags: u8,
        pub reserved: u8,
        /// BLOCK DESCRIPTOR LENGTH.
        pub block_descriptor_length: U16,
    }
}
const _: () = assert!(core::mem::size_of::<ModeParameterHeader10>() == 8);
flags!(ModeParameterHeader10 {
    /// LONGLBA: 16-byte block descriptors follow.
    longlba, set_longlba, with_longlba: flags, 0x01;
});

wire_struct! {
    /// Short LBA mode parameter block descriptor (SBC-3 6.4.2), 8 bytes.
    pub struct ShortBlockDescriptor {
        /// NUMBER OF LOGICAL BLOCKS (FFFFFFFFh if more).
        pub number_of_logical_blocks: U32,
        pub reserved: u8,
        /// LOGICAL BLOCK LENGTH (24 bits).
        pub logical_block_length: [u8; 3],
    }
}
const _: () = assert!(core::mem::size_of::<ShortBlockDescriptor>() == 8);

impl ShortBlockDescriptor {
    /// Descriptor for `blocks` blocks (saturating at FFFFFFFFh) of `block_len`
    /// bytes (24 bits kept).
    pub fn new(blocks: u64, block_len: u32) -> Self {
        let l = block_len.to_be_bytes();
        ShortBlockDescriptor {
            number_of_logical_blocks: U32::new(u32::try_from(blocks).unwrap_or(u32::MAX)),
            reserved: 0,
            logical_block_length: [l[1], l[2], l[3]],
        }
    }

    /// LOGICAL BLOCK LENGTH.
    pub fn block_length(&self) -> u32 {
        let b = self.logical_block_length;
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }
}

wire_struct! {
    /// Long LBA mode parameter block descriptor (SBC-3 6.4.2.3), 16 bytes.
    pub struct LongBlockDescriptor {
        /// NUMBER OF LOGICAL BLOCKS.
        pub number_of_logical_blocks: U64,
        pub reserved: [u8; 4],
        /// LOGICAL BLOCK LENGTH.
        pub logical_block_length: U32,
    }
}
const _: () = assert!(core::mem::size_of::<LongBlockDescriptor>() == 16);

impl LongBlockDescriptor {
    /// Descriptor for `blocks` blocks of `block_len` bytes.
    pub fn new(blocks: u64, block_len: u32) -> Self {
        LongBlockDescriptor {
            number_of_logical_blocks: U64::new(blocks),
            reserved: [0; 4],
            logical_block_length: U32::new(block_len),
        }
    }
}

/// The header fields of MODE SENSE data other than the lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModeData {
    /// MEDIUM TYPE.
    pub medium_type: u8,
    /// DEVICE-SPECIFIC PARAMETER ([`device_specific`]).
    pub device_specific_parameter: u8,
}

impl ModeData {
    /// MODE SENSE(6) data: header, `block_descriptors` (0 or 8 bytes) and
    /// `pages`. `None` if the total exceeds 256 bytes, the limit of the
    /// 1-byte MODE DATA LENGTH.
    pub fn encode6(&self, block_descriptors: &[u8], pages: &[u8]) -> Option<Vec<u8>> {
        let total = 4 + block_descriptors.len() + pages.len();
        let h = ModeParameterHeader6 {
            mode_data_length: u8::try_from(total - 1).ok()?,
            medium_type: self.medium_type,
            device_specific_parameter: self.device_specific_parameter,
            block_descriptor_length: u8::try_from(block_descriptors.len()).ok()?,
        };
        let mut v = Vec::with_capacity(total);
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(block_descriptors);
        v.extend_from_slice(pages);
        Some(v)
    }

    /// MODE SENSE(10) data; `long_lba` sets LONGLBA (16-byte descriptors).
    /// `None` if the total exceeds 65535 bytes.
    pub fn encode10(
        &self,
        long_lba: bool,
        block_descriptors: &[u8],
        pages: &[u8],
    ) -> Option<Vec<u8>> {
        let total = 8 + block_descriptors.len() + pages.len();
        let h = ModeParameterHeader10 {
            mode_data_length: U16::new(u16::try_from(total - 2).ok()?),
            medium_type: self.medium_type,
            device_specific_parameter: self.device_specific_parameter,
            flags: long_lba as u8,
            reserved: 0,
            block_descriptor_length: U16::new(u16::try_from(block_descriptors.len()).ok()?),
        };
        let mut v = Vec::with_capacity(total);
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(block_descriptors);
        v.extend_from_slice(pages);
        Some(v)
    }
}

/// A parsed mode parameter list (MODE SELECT data or MODE SENSE data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeParameterList<'a> {
    /// MODE DATA LENGTH as received (reserved in MODE SELECT).
    pub mode_data_length: u16,
    /// MEDIUM TYPE.
    pub medium_type: u8,
    /// DEVICE-SPECIFIC PARAMETER.
    pub device_specific_parameter: u8,
    /// LONGLBA (10-byte header only).
    pub long_lba: bool,
    /// The block descriptor bytes.
    pub block_descriptors: &'a [u8],
    /// The mode page bytes; walk them with [`ModePages`].
    pub pages: &'a [u8],
}

impl<'a> ModeParameterList<'a> {
    /// Parses a list with the 4-byte header. Fails if the header is short
    /// or BLOCK DESCRIPTOR LENGTH runs past the data (byte 3 is the field
    /// to point at).
    pub fn parse6(buf: &'a [u8]) -> Result<Self> {
        need(buf, 4)?;
        let bdl = buf[3] as usize;
        let rest = &buf[4..];
        let (bd, pages) = split(rest, bdl)?;
        Ok(ModeParameterList {
            mode_data_length: buf[0] as u16,
            medium_type: buf[1],
            device_specific_parameter: buf[2],
            long_lba: false,
            block_descriptors: bd,
            pages,
        })
    }

    /// Parses a list with the 8-byte header (BLOCK DESCRIPTOR LENGTH is
    /// bytes 6-7).
    pub fn parse10(buf: &'a [u8]) -> Result<Self> {
        need(buf, 8)?;
        let bdl = u16::from_be_bytes([buf[6], buf[7]]) as usize;
        let (bd, pages) = split(&buf[8..], bdl)?;
        Ok(ModeParameterList {
            mode_data_length: u16::from_be_bytes([buf[0], buf[1]]),
            medium_type: buf[2],
            device_specific_parameter: buf[3],
            long_lba: buf[4] & 1 != 0,
            block_descriptors: bd,
            pages,
        })
    }
}

fn split(rest: &[u8], bdl: usize) -> Result<(&[u8], &[u8])> {
    if bdl > rest.len() {
        return Err(WireError::BadValue {
            field: "BLOCK DESCRIPTOR LENGTH",
            value: bdl as u64,
        });
    }
    Ok(rest.split_at(bdl))
}

/// One mode page inside a parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModePage<'a> {
    /// Offset of the page within the slice given to [`ModePages::new`]
    /// (add the header and block descriptor lengths for a field pointer).
    pub offset: usize,
    /// PS: parameters saveable (reserved in MODE SELECT).
    pub ps: bool,
    /// SPF: sub-page format (4-byte page header).
    pub spf: bool,
    /// PAGE CODE.
    pub page_code: u8,
    /// SUBPAGE CODE (0 in page_0 format).
    pub subpage_code: u8,
    /// The whole page, header included.
    pub bytes: &'a [u8],
}

/// Iterator over mode pages; yields `Err` once and stops when a page runs
/// past the end of the data.
#[derive(Debug, Clone)]
pub struct ModePages<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ModePages<'a> {
    /// Walks the pages in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        ModePages { data, pos: 0 }
    }
}

impl<'a> Iterator for ModePages<'a> {
    type Item = Result<ModePage<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..).filter(|r| !r.is_empty())?;
        let spf = rest[0] & 0x40 != 0;
        let (hdr, len): (usize, usize) = if spf {
            match rest.get(..4) {
                Some(h) => (4, u16::from_be_bytes([h[2], h[3]]) as usize),
                None => (4, usize::MAX),
            }
        } else {
            match rest.get(1) {
                Some(&l) => (2, l as usize),
                None => (2, usize::MAX),
            }
        };
        let Some(bytes) = hdr.checked_add(len).and_then(|n| rest.get(..n)) else {
            let offset = self.pos;
            self.pos = self.data.len();
            return Some(Err(WireError::Truncated {
                needed: offset.saturating_add(hdr).saturating_add(len),
                available: self.data.len(),
            }));
        };
        let page = ModePage {
            offset: self.pos,
            ps: rest[0] & 0x80 != 0,
            spf,
            page_code: rest[0] & 0x3F,
            subpage_code: if spf { rest[1] } else { 0 },
            bytes,
        };
        self.pos += bytes.len();
        Some(Ok(page))
    }
}

macro_rules! page_header_accessors {
    ($ty:ty, $code:expr, $len:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $len);
        flags!($ty {
            /// PS: parameters saveable.
            ps, set_ps, with_ps: code, 0x80;
            /// SPF: sub-page format.
            spf, set_spf, with_spf: code, 0x40;
        });
        impl $ty {
            /// PAGE CODE of this page.
            pub const PAGE_CODE: u8 = $code;
            /// Total length in bytes, header included.
            pub const LEN: usize = $len;

            /// PAGE CODE (bits 5:0 of byte 0).
            pub const fn page_code(&self) -> u8 {
                self.code & 0x3F
            }

            /// A page with every parameter zero and the header filled in.
            pub fn zeroed() -> Self {
                let mut s = Self::new_zeroed();
                s.code = $code;
                s.page_length = ($len - 2) as u8;
                s
            }

            /// Parses the page from `buf` (header included); fails on a short
            /// buffer or a different page code.
            pub fn parse(buf: &[u8]) -> Result<Self> {
                let s: Self = read_padded(buf, $len)?;
                if s.page_code() != $code {
                    return Err(WireError::BadValue {
                        field: "PAGE CODE",
                        value: s.page_code() as u64,
                    });
                }
                Ok(s)
            }
        }
    };
}

wire_struct! {
    /// Read-Write Error Recovery mode page (01h, SBC-3 6.4.7), 12 bytes.
    pub struct ReadWriteErrorRecoveryPage {
        /// Bit 7 PS, 6 SPF, 5:0 PAGE CODE.
        pub code: u8,
        /// PAGE LENGTH (0Ah).
        pub page_length: u8,
        /// Bit 7 AWRE, 6 ARRE, 5 TB, 4 RC, 3 EER, 2 PER, 1 DTE, 0 DCR.
        pub flags: u8,
        /// READ RETRY COUNT.
        pub read_retry_count: u8,
        pub obsolete: [u8; 3],
        /// Bit 7 LBPERE.
        pub flags7: u8,
        /// WRITE RETRY COUNT.
        pub write_retry_count: u8,
        pub reserved: u8,
        /// RECOVERY TIME LIMIT (ms).
        pub recovery_time_limit: U16,
    }
}
page_header_accessors!(
    ReadWriteErrorRecoveryPage,
    page_code::READ_WRITE_ERROR_RECOVERY,
    12
);
flags!(ReadWriteErrorRecoveryPage {
    /// AWRE: automatic write reallocation enabled.
    awre, set_awre, with_awre: flags, 0x80;
    /// ARRE: automatic read reallocation enabled.
    arre, set_arre, with_arre: flags, 0x40;
});

wire_struct! {
    /// Caching mode page (08h, SBC-3 6.4.5), 20 bytes.
    pub struct CachingPage {
        /// Bit 7 PS, 6 SPF, 5:0 PAGE CODE.
        pub code: u8,
        /// PAGE LENGTH (12h).
        pub page_length: u8,
        /// Bit 7 IC, 6 ABPF, 5 CAP, 4 DISC, 3 SIZE, 2 WCE, 1 MF, 0 RCD.
        pub flags: u8,
        /// Bits 7:4 DEMAND READ RETENTION PRIORITY, 3:0 WRITE RETENTION PRIORITY.
        pub retention: u8,
        /// DISABLE PRE-FETCH TRANSFER LENGTH.
        pub disable_prefetch_transfer_length: U16,
        /// MINIMUM PRE-FETCH.
        pub minimum_prefetch: U16,
        /// MAXIMUM PRE-FETCH.
        pub maximum_prefetch: U16,
        /// MAXIMUM PRE-FETCH CEILING.
        pub maximum_prefetch_ceiling: U16,
        /// Bit 7 FSW, 6 LBCSS, 5 DRA, 0 NV_DIS.
        pub flags12: u8,
        /// NUMBER OF CACHE SEGMENTS.
        pub number_of_cache_segments: u8,
        /// CACHE SEGMENT SIZE.
        pub cache_segment_size: U16,
        pub reserved: u8,
        pub obsolete: [u8; 3],
    }
}
page_header_accessors!(CachingPage, page_code::CACHING, 20);
flags!(CachingPage {
    /// IC: initiator control of cache segmentation.
    ic, set_ic, with_ic: flags, 0x80;
    /// ABPF: abort pre-fetch.
    abpf, set_abpf, with_abpf: flags, 0x40;
    /// CAP: caching analysis permitted.
    cap, set_cap, with_cap: flags, 0x20;
    /// DISC: discontinuity.
    disc, set_disc, with_disc: flags, 0x10;
    /// SIZE: cache segment size field is used.
    size, set_size, with_size: flags, 0x08;
    /// WCE: write cache enabled (writes may complete before reaching the medium).
    wce, set_wce, with_wce: flags, 0x04;
    /// MF: multiplication factor.
    mf, set_mf, with_mf: flags, 0x02;
    /// RCD: read cache disabled.
    rcd, set_rcd, with_rcd: flags, 0x01;
    /// FSW: force sequential write.
    fsw, set_fsw, with_fsw: flags12, 0x80;
    /// LBCSS: logical block cache segment size.
    lbcss, set_lbcss, with_lbcss: flags12, 0x40;
    /// DRA: disable read-ahead.
    dra, set_dra, with_dra: flags12, 0x20;
    /// NV_DIS: non-volatile cache disabled.
    nv_dis, set_nv_dis, with_nv_dis: flags12, 0x01;
});

/// TST values of the control mode page.
pub mod tst {
    /// One task set for all I_T nexuses.
    pub const SHARED: u8 = 0;
    /// One task set per I_T nexus.
    pub const PER_I_T_NEXUS: u8 = 1;
}

/// QUEUE ALGORITHM MODIFIER values.
pub mod queue_algorithm {
    /// Restricted reordering.
    pub const RESTRICTED: u8 = 0;
    /// Unrestricted reordering allowed.
    pub const UNRESTRICTED: u8 = 1;
}

wire_struct! {
    /// Control mode page (0Ah, SPC-4 7.5.8), 12 bytes.
    pub struct ControlPage {
        /// Bit 7 PS, 6 SPF, 5:0 PAGE CODE.
        pub code: u8,
        /// PAGE LENGTH (0Ah).
        pub page_length: u8,
        /// Bits 7:5 TST, 4 TMF_ONLY, 3 DPICZ, 2 D_SENSE, 1 GLTSD, 0 RLEC.
        pub flags2: u8,
        /// Bits 7:4 QUEUE ALGORITHM MODIFIER, 3 NUAR, 2:1 QERR.
        pub flags3: u8,
        /// Bit 7 VS, 6 RAC, 5:4 UA_INTLCK_CTRL, 3 SWP.
        pub flags4: u8,
        /// Bit 7 ATO, 6 TAS, 5 ATMPE, 4 RWWP, 2:0 AUTOLOAD MODE.
        pub flags5: u8,
        pub obsolete: [u8; 2],
        /// BUSY TIMEOUT PERIOD (100 ms units).
        pub busy_timeout_period: U16,
        /// EXTENDED SELF-TEST COMPLETION TIME (s).
        pub extended_self_test_completion_time: U16,
    }
}
page_header_accessors!(ControlPage, page_code::CONTROL, 12);
flags!(ControlPage {
    /// TMF_ONLY: only task management allowed during ACA.
    tmf_only, set_tmf_only, with_tmf_only: flags2, 0x10;
    /// DPICZ: disable protection information check if protect field zero.
    dpicz, set_dpicz, with_dpicz: flags2, 0x08;
    /// D_SENSE: return descriptor format sense data.
    d_sense, set_d_sense, with_d_sense: flags2, 0x04;
    /// GLTSD: global logging target save disable.
    gltsd, set_gltsd, with_gltsd: flags2, 0x02;
    /// RLEC: report log exception condition.
    rlec, set_rlec, with_rlec: flags2, 0x01;
    /// NUAR: no unit attention on release.
    nuar, set_nuar, with_nuar: flags3, 0x08;
    /// RAC: report a check (not BUSY) for long busy.
    rac, set_rac, with_rac: flags4, 0x40;
    /// SWP: software write protect.
    swp, set_swp, with_swp: flags4, 0x08;
    /// ATO: application tag owner.
    ato, set_ato, with_ato: flags5, 0x80;
    /// TAS: task aborted status for commands aborted by another I_T nexus.
    tas, set_tas, with_tas: flags5, 0x40;
    /// ATMPE: application tag mode page enabled.
    atmpe, set_atmpe, with_atmpe: flags5, 0x20;
    /// RWWP: reject write without protection.
    rwwp, set_rwwp, with_rwwp: flags5, 0x10;
});
bits!(ControlPage {
    /// TST ([`tst`]).
    tst, set_tst, with_tst: flags2, 5, 3;
    /// QUEUE ALGORITHM MODIFIER ([`queue_algorithm`]).
    queue_algorithm_modifier, set_queue_algorithm_modifier, with_queue_algorithm_modifier: flags3, 4, 4;
    /// QERR.
    qerr, set_qerr, with_qerr: flags3, 1, 2;
    /// UA_INTLCK_CTRL.
    ua_intlck_ctrl, set_ua_intlck_ctrl, with_ua_intlck_ctrl: flags4, 4, 2;
    /// AUTOLOAD MODE.
    autoload_mode, set_autoload_mode, with_autoload_mode: flags5, 0, 3;
});

/// MRIE values of the informational exceptions control page.
pub mod mrie {
    /// No reporting.
    pub const NO_REPORTING: u8 = 0;
    /// Generate unit attention.
    pub const UNIT_ATTENTION: u8 = 2;
    /// Conditionally generate recovered error.
    pub const CONDITIONAL_RECOVERED_ERROR: u8 = 3;
    /// Unconditionally generate recovered error.
    pub const UNCONDITIONAL_RECOVERED_ERROR: u8 = 4;
    /// Generate no sense.
    pub const NO_SENSE: u8 = 5;
    /// Only report on request (REQUEST SENSE).
    pub const ON_REQUEST: u8 = 6;
}

wire_struct! {
    /// Informational Exceptions Control mode page (1Ch, SPC-4 7.5.10), 12 bytes.
    pub struct InformationalExceptionsControlPage {
        /// Bit 7 PS, 6 SPF, 5:0 PAGE CODE.
        pub code: u8,
        /// PAGE LENGTH (0Ah).
        pub page_length: u8,
        /// Bit 7 PERF, 5 EBF, 4 EWASC, 3 DEXCPT, 2 TEST, 1 EBACKERR, 0 LOGERR.
        pub flags: u8,
        /// Bits 3:0 MRIE.
        pub mrie: u8,
        /// INTERVAL TIMER (100 ms units).
        pub interval_timer: U32,
        /// REPORT COUNT.
        pub report_count: U32,
    }
}
page_header_accessors!(
    InformationalExceptionsControlPage,
    page_code::INFORMATIONAL_EXCEPTIONS_CONTROL,
    12
);
flags!(InformationalExceptionsControlPage {
    /// PERF: performance-sensitive; do not delay for exceptions.
    perf, set_perf, with_perf: flags, 0x80;
    /// EBF: enable background function.
    ebf, set_ebf, with_ebf: flags, 0x20;
    /// EWASC: enable warning.
    ewasc, set_ewasc, with_ewasc: flags, 0x10;
    /// DEXCPT: disable exception control.
    dexcpt, set_dexcpt, with_dexcpt: flags, 0x08;
    /// TEST: generate false device failures.
    test, set_test, with_test: flags, 0x04;
    /// EBACKERR: enable background error reporting.
    ebackerr, set_ebackerr, with_ebackerr: flags, 0x02;
    /// LOGERR: log errors.
    logerr, set_logerr, with_logerr: flags, 0x01;
});
bits!(InformationalExceptionsControlPage {
    /// MRIE ([`mrie`]).
    mrie_field, set_mrie_field, with_mrie_field: mrie, 0, 4;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_the_standard_headers_and_bits() {
        let c = CachingPage::zeroed().with_wce(true).with_ps(true);
        assert_eq!(&c.as_bytes()[..3], &[0x88, 0x12, 0x04]);
        assert_eq!(CachingPage::parse(c.as_bytes()).unwrap(), c);
        let ctl = ControlPage::zeroed()
            .with_d_sense(true)
            .with_swp(true)
            .with_tas(true)
            .with_queue_algorithm_modifier(queue_algorithm::UNRESTRICTED)
            .with_qerr(0);
        assert_eq!(
            ctl.as_bytes(),
            &[0x0A, 0x0A, 0x04, 0x10, 0x08, 0x40, 0, 0, 0, 0, 0, 0]
        );
        let back = ControlPage::parse(ctl.as_bytes()).unwrap();
        assert!(back.d_sense() && back.swp() && back.tas() && !back.tmf_only());
        let ie = InformationalExceptionsControlPage::zeroed()
            .with_dexcpt(true)
            .with_mrie_field(mrie::ON_REQUEST);
        assert_eq!(&ie.as_bytes()[..4], &[0x1C, 0x0A, 0x08, 0x06]);
        assert!(
            ControlPage::parse(ie.as_bytes()).is_err(),
            "wrong page code"
        );
        assert!(ControlPage::parse(&ctl.as_bytes()[..11]).is_err(), "short");
        let rw = ReadWriteErrorRecoveryPage::zeroed().with_awre(true);
        assert_eq!(&rw.as_bytes()[..3], &[0x01, 0x0A, 0x80]);
    }

    #[test]
    fn mode_sense_data_lengths() {
        let bd = ShortBlockDescriptor::new(1000, 512);
        assert_eq!(bd.as_bytes(), &[0, 0, 0x03, 0xE8, 0, 0, 2, 0]);
        assert_eq!(bd.block_length(), 512);
        let pages = [
            CachingPage::zeroed().as_bytes(),
            ControlPage::zeroed().as_bytes(),
        ]
        .concat();
        let md = ModeData {
            medium_type: 0,
            device_specific_parameter: device_specific::DPOFUA,
        };
        let d6 = md.encode6(bd.as_bytes(), &pages).unwrap();
        assert_eq!(d6.len(), 4 + 8 + 32);
        assert_eq!(&d6[..4], &[43, 0, 0x10, 8]);
        let lbd = LongBlockDescriptor::new(1 << 40, 4096);
        let d10 = md.encode10(true, lbd.as_bytes(), &pages).unwrap();
        assert_eq!(&d10[..8], &[0, 54, 0, 0x10, 1, 0, 0, 16]);
        let l = ModeParameterList::parse10(&d10).unwrap();
        assert!(l.long_lba);
        assert_eq!(l.block_descriptors, lbd.as_bytes());
        let ps: Vec<_> = ModePages::new(l.pages).map(|p| p.unwrap()).collect();
        assert_eq!(ps.len(), 2);
        assert_eq!(
            (ps[0].page_code, ps[0].offset, ps[0].bytes.len()),
            (0x08, 0, 20)
        );
        assert_eq!((ps[1].page_code, ps[1].offset), (0x0A, 20));
        assert!(md.encode6(&[], &[0u8; 253]).is_none());
        assert_eq!(md.encode6(&[], &[0u8; 252]).unwrap()[0], 255);
    }

    #[test]
    fn mode_select_list_errors() {
        // BLOCK DESCRIPTOR LENGTH past the end.
        assert!(ModeParameterList::parse6(&[0, 0, 0, 8, 0, 0]).is_err());
        assert!(ModeParameterList::parse6(&[0, 0, 0]).is_err());
        assert!(ModeParameterList::parse10(&[0; 7]).is_err());
        let l = ModeParameterList::parse6(&[0, 0, 0, 0, 0x0A, 0x0A, 0, 0]).unwrap();
        let mut it = ModePages::new(l.pages);
        assert!(it.next().unwrap().is_err(), "page cut short");
        assert!(it.next().is_none());
        // Sub-page format header.
        let sub = [0x4A, 0x01, 0x00, 0x02, 0xAA, 0xBB];
        let p = ModePages::new(&sub).next().unwrap().unwrap();
        assert!(p.spf);
        assert_eq!((p.page_code, p.subpage_code, p.bytes.len()), (0x0A, 1, 6));
        assert!(ModePages::new(&sub[..3]).next().unwrap().is_err());
        assert_eq!(PageControl::from_bits(3), PageControl::Saved);
    }
}
