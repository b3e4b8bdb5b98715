//! Taking fields off the front of a fuzz input.

/// Takes `n` bytes off the front of `data` (fewer if it is shorter).
pub fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}

pub fn take_u8(data: &mut &[u8]) -> Option<u8> {
    take(data, 1).first().copied()
}

pub fn take_u16(data: &mut &[u8]) -> u16 {
    let b = take(data, 2);
    match b {
        [a, b] => u16::from_be_bytes([*a, *b]),
        [a] => *a as u16,
        _ => 0,
    }
}
