//! Mode pages (SPC-4 7.5, SBC-4 6.5): Caching (08h), Control (0Ah) and Informational
//! Exceptions Control (1Ch), with current, changeable, default and saved values, and
//! the MODE SENSE / MODE SELECT parameter list formats.
//!
//! Changeable bits: WCE in the caching page; D_SENSE and SWP in the control page.
//! Saved values live in memory for the life of the logical unit (the process); a power-on
//! reset restores current values from them.

use crate::sense::{Asc, Sense};

/// Page control field of MODE SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    /// 00b current values.
    Current,
    /// 01b changeable values (a mask).
    Changeable,
    /// 10b default values.
    Default,
    /// 11b saved values.
    Saved,
}

impl PageControl {
    /// From the two-bit field.
    pub fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => PageControl::Current,
            1 => PageControl::Changeable,
            2 => PageControl::Default,
            _ => PageControl::Saved,
        }
    }
}

/// Caching mode page code.
pub const CACHING: u8 = 0x08;
/// Control mode page code.
pub const CONTROL: u8 = 0x0A;
/// Informational exceptions control mode page code.
pub const INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
/// "Return all pages" page code.
pub const ALL_PAGES: u8 = 0x3F;

/// The pages in the order MODE SENSE returns them for 3Fh.
pub const PAGES: [u8; 3] = [CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS];

/// One set of page values (current, default or saved). Each page is stored with its
/// two-byte header (page code, page length); the PS bit is set in page byte 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModePages {
    /// Caching page, 20 bytes.
    pub caching: [u8; 20],
    /// Control page, 12 bytes.
    pub control: [u8; 12],
    /// Informational exceptions control page, 12 bytes.
    pub ie: [u8; 12],
}

const PS: u8 = 0x80;

impl ModePages {
    /// Default values.
    pub fn defaults() -> Self {
        let mut caching = [0u8; 20];
        caching[0] = PS | CACHING;
        caching[1] = 0x12;
        caching[2] = 0x04; // WCE = 1: writes are cached until SYNCHRONIZE CACHE / FUA
        let mut control = [0u8; 12];
        control[0] = PS | CONTROL;
        control[1] = 0x0A;
        control[2] = 0x02; // GLTSD = 1 (no log parameters are saved)
        control[3] = 0x10; // QUEUE ALGORITHM MODIFIER = 1: unrestricted reordering
        control[5] = 0x40; // TAS = 1
        control[8] = 0xFF; // BUSY TIMEOUT PERIOD: unlimited
        control[9] = 0xFF;
        let mut ie = [0u8; 12];
        ie[0] = PS | INFORMATIONAL_EXCEPTIONS;
        ie[1] = 0x0A;
        ie[2] = 0x08; // DEXCPT = 1: informational exceptions disabled
        Self {
            caching,
            control,
            ie,
        }
    }

    /// The changeable-values mask.
    pub fn changeable() -> Self {
        let mut m = Self {
            caching: [0; 20],
            control: [0; 12],
            ie: [0; 12],
        };
        m.caching[0] = PS | CACHING;
        m.caching[1] = 0x12;
        m.caching[2] = 0x04; // WCE
        m.control[0] = PS | CONTROL;
        m.control[1] = 0x0A;
        m.control[2] = 0x04; // D_SENSE
        m.control[4] = 0x08; // SWP
        m.ie[0] = PS | INFORMATIONAL_EXCEPTIONS;
        m.ie[1] = 0x0A;
        m
    }

    /// The bytes of page `code`.
    pub fn page(&self, code: u8) -> Option<&[u8]> {
        match code {
            CACHING => Some(&self.caching),
            CONTROL => Some(&self.control),
            INFORMATIONAL_EXCEPTIONS => Some(&self.ie),
            _ => None,
        }
    }

    fn page_mut(&mut self, code: u8) -> Option<&mut [u8]> {
        match code {
            CACHING => Some(&mut self.caching),
            CONTROL => Some(&mut self.control),
            INFORMATIONAL_EXCEPTIONS => Some(&mut self.ie),
            _ => None,
        }
    }

    /// WCE: the write cache is enabled.
    pub fn wce(&self) -> bool {
        self.caching[2] & 0x04 != 0
    }

    /// D_SENSE: report sense in descriptor format.
    pub fn d_sense(&self) -> bool {
        self.control[2] & 0x04 != 0
    }

    /// SWP: software write protect.
    pub fn swp(&self) -> bool {
        self.control[4] & 0x08 != 0
    }
}

/// Appends the requested pages to `out`. `page` is the page code (3Fh = all);
/// `subpage` 00h or FFh (all subpages; we have none beyond 00h).
/// Errors: unknown page or subpage -> INVALID FIELD IN CDB (byte 2 / byte 3).
pub fn sense_pages(
    values: &ModePages,
    page: u8,
    subpage: u8,
    out: &mut Vec<u8>,
) -> Result<(), Sense> {
    if page == ALL_PAGES {
        if subpage != 0x00 && subpage != 0xFF {
            return Err(Sense::invalid_field_in_cdb(3, Some(7)));
        }
        for p in PAGES {
            out.extend_from_slice(values.page(p).unwrap_or(&[]));
        }
        return Ok(());
    }
    let Some(bytes) = values.page(page) else {
        return Err(Sense::invalid_field_in_cdb(2, Some(5)));
    };
    if subpage != 0x00 {
        return Err(Sense::invalid_field_in_cdb(3, Some(7)));
    }
    out.extend_from_slice(bytes);
    Ok(())
}

/// The outcome of a valid MODE SELECT parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The new current values.
    pub values: ModePages,
    /// Whether anything differs from the old current values.
    pub changed: bool,
}

/// Validates a MODE SELECT parameter list against `current` and returns the new values.
///
/// `list` is the parameter list (already cut to PARAMETER LIST LENGTH); `ten` selects
/// the MODE SELECT(10) header; `block_size` is the only block length a block descriptor
/// may carry. Field pointers are offsets into the parameter list.
pub fn select_pages(
    current: &ModePages,
    list: &[u8],
    ten: bool,
    block_size: u32,
) -> Result<Selected, Sense> {
    let hdr = if ten { 8 } else { 4 };
    if list.len() < hdr {
        return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    let (bd_len, long_lba) = if ten {
        (
            usize::from(u16::from_be_bytes([list[6], list[7]])),
            list[4] & 1 != 0,
        )
    } else {
        (usize::from(list[3]), false)
    };
    let bd_size = if long_lba { 16 } else { 8 };
    if bd_len % bd_size != 0 || bd_len > bd_size {
        let at = if ten { 6 } else { 3 };
        return Err(Sense::invalid_field_in_parameter_list(at, Some(7)));
    }
    if list.len() < hdr + bd_len {
        return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    if bd_len > 0 {
        let bd = &list[hdr..hdr + bd_len];
        let (len_at, len) = if long_lba {
            (12, u32::from_be_bytes([bd[12], bd[13], bd[14], bd[15]]))
        } else {
            (5, u32::from_be_bytes([0, bd[5], bd[6], bd[7]]))
        };
        if len != 0 && len != block_size {
            return Err(Sense::invalid_field_in_parameter_list(
                (hdr + len_at) as u16,
                Some(7),
            ));
        }
    }
    let mask = ModePages::changeable();
    let mut values = current.clone();
    let mut at = hdr + bd_len;
    while at < list.len() {
        let code = list[at] & 0x3F;
        if list[at] & 0x40 != 0 {
            // SPF: sub-page format; we have no subpages.
            return Err(Sense::invalid_field_in_parameter_list(at as u16, Some(6)));
        }
        let Some(len_at) = list.get(at + 1) else {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR));
        };
        let plen = usize::from(*len_at) + 2;
        let (Some(cur), Some(m)) = (values.page(code).map(<[u8]>::to_vec), mask.page(code)) else {
            return Err(Sense::invalid_field_in_parameter_list(at as u16, Some(5)));
        };
        if plen != cur.len() {
            return Err(Sense::invalid_field_in_parameter_list(
                (at + 1) as u16,
                Some(7),
            ));
        }
        let Some(new) = list.get(at..at + plen) else {
            return Err(Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR));
        };
        // Byte 0 holds PS (reserved in MODE SELECT) and SPF; byte 1 the length.
        for i in 2..plen {
            let bad = (new[i] ^ cur[i]) & !m[i];
            if bad != 0 {
                let bit = 7 - bad.leading_zeros() as u8;
                return Err(Sense::invalid_field_in_parameter_list(
                    (at + i) as u16,
                    Some(bit),
                ));
            }
        }
        if let Some(dst) = values.page_mut(code) {
            dst[2..].copy_from_slice(&new[2..]);
        }
        at += plen;
    }
    let changed = values != *current;
    Ok(Selected { values, changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control_list(byte2: u8, byte4: u8) -> Vec<u8> {
        let mut l = vec![0u8, 0, 0, 0];
        let mut p = ModePages::defaults().control;
        p[0] = CONTROL;
        p[2] = byte2;
        p[4] = byte4;
        l.extend_from_slice(&p);
        l
    }

    #[test]
    fn select_changes_d_sense_and_swp() {
        let cur = ModePages::defaults();
        let s = select_pages(&cur, &control_list(0x06, 0x08), false, 512).unwrap();
        assert!(s.changed);
        assert!(s.values.d_sense());
        assert!(s.values.swp());
    }

    #[test]
    fn select_rejects_unchangeable_bit_with_parameter_pointer() {
        let cur = ModePages::defaults();
        // GLTSD (byte 2 bit 1) is not changeable.
        let err = select_pages(&cur, &control_list(0x00, 0x00), false, 512).unwrap_err();
        assert_eq!(err, Sense::invalid_field_in_parameter_list(4 + 2, Some(1)));
        // Wrong page length.
        let mut l = control_list(0x02, 0);
        l[5] = 0x0B;
        l.push(0);
        assert_eq!(
            select_pages(&cur, &l, false, 512).unwrap_err(),
            Sense::invalid_field_in_parameter_list(5, Some(7))
        );
        // Truncated page.
        let l = &control_list(0x02, 0)[..10];
        assert_eq!(
            select_pages(&cur, l, false, 512).unwrap_err(),
            Sense::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR)
        );
    }

    #[test]
    fn sense_rejects_unknown_page_and_subpage() {
        let mut out = Vec::new();
        assert_eq!(
            sense_pages(&ModePages::defaults(), 0x19, 0, &mut out).unwrap_err(),
            Sense::invalid_field_in_cdb(2, Some(5))
        );
        assert_eq!(
            sense_pages(&ModePages::defaults(), CONTROL, 1, &mut out).unwrap_err(),
            Sense::invalid_field_in_cdb(3, Some(7))
        );
        sense_pages(&ModePages::defaults(), ALL_PAGES, 0, &mut out).unwrap();
        assert_eq!(out.len(), 20 + 12 + 12);
    }
}
