//! Small helpers shared by the parameter-data modules.

use zerocopy::{FromBytes, IntoBytes};

use crate::error::{Result, need};

/// Copies up to `size_of::<T>()` bytes of `buf` into a zeroed `T`.
///
/// For data an initiator receives: a device may return a page shorter than
/// the current standard's layout (older revision, or allocation length),
/// and the missing fields then read as zero. Requires at least `min` bytes.
pub(crate) fn read_padded<T: FromBytes + IntoBytes>(buf: &[u8], min: usize) -> Result<T> {
    need(buf, min)?;
    let mut t = T::new_zeroed();
    let dst = t.as_mut_bytes();
    let n = dst.len().min(buf.len());
    dst[..n].copy_from_slice(&buf[..n]);
    Ok(t)
}

/// Fills `dst` with `s` as ASCII, space padded and truncated; non-printable
/// characters become spaces (SPC-4 4.4.1: ASCII data fields are 20h-7Eh).
pub(crate) fn put_ascii(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    for (d, c) in dst.iter_mut().zip(s.bytes()) {
        *d = if (0x20..=0x7E).contains(&c) { c } else { b' ' };
    }
}

/// Reads a space-padded ASCII field, trailing spaces and NULs removed;
/// bytes outside 20h-7Eh become `?`.
pub(crate) fn get_ascii(src: &[u8]) -> String {
    let end = src
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(0, |p| p + 1);
    src[..end]
        .iter()
        .map(|&c| {
            if (0x20..=0x7E).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}
