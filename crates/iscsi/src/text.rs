//! Text key=value encoding (RFC 7143 §6.1): UTF-8 `key=value` pairs, each
//! terminated by a NUL byte, carried in Login and Text PDU data segments.

/// Longest key name accepted (RFC 7143 §6.1: at most 63 bytes).
pub const MAX_KEY_LEN: usize = 63;
/// Longest value accepted. CHAP challenges/responses are the longest values
/// initiators send; 8 KiB is far above any of them.
pub const MAX_VALUE_LEN: usize = 8192;
/// Upper bound for a complete (possibly continued) text request.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error("text data is not NUL-terminated")]
    Unterminated,
    #[error("pair without '='")]
    MissingEquals,
    #[error("key or value too long or not valid UTF-8")]
    Invalid,
}

/// Parses NUL-terminated `key=value` pairs. Trailing NUL padding is allowed.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    let mut out = Vec::new();
    if data.is_empty() {
        return Ok(out);
    }
    if *data.last().expect("non-empty") != 0 {
        return Err(TextError::Unterminated);
    }
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let eq = item
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TextError::MissingEquals)?;
        let (k, v) = (&item[..eq], &item[eq + 1..]);
        if k.is_empty() || k.len() > MAX_KEY_LEN || v.len() > MAX_VALUE_LEN {
            return Err(TextError::Invalid);
        }
        let k = std::str::from_utf8(k).map_err(|_| TextError::Invalid)?;
        let v = std::str::from_utf8(v).map_err(|_| TextError::Invalid)?;
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Appends `key=value\0` to `out`.
pub fn push(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

/// Decodes an iSCSI binary value (RFC 7143 §6.1: `0x` hex or `0b` base64).
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_owned()
        };
        return hex::decode(h).ok();
    }
    if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        return base64_decode(b);
    }
    None
}

/// Encodes bytes as an iSCSI hex binary value (`0x...`).
pub fn encode_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_pairs() {
        let kv = parse(b"A=1\0B=x=y\0\0\0").unwrap();
        assert_eq!(
            kv,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(parse(b"A=1"), Err(TextError::Unterminated));
        assert_eq!(parse(b"A\0"), Err(TextError::MissingEquals));
        let long = format!("{}=1\0", "k".repeat(64));
        assert_eq!(parse(long.as_bytes()), Err(TextError::Invalid));
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0aFF").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(decode_binary("0xabc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(decode_binary("0bAQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(decode_binary("0bAQI=").unwrap(), vec![1, 2]);
        assert!(decode_binary("123").is_none());
        assert_eq!(encode_hex(&[1, 0xab]), "0x01ab");
    }
}
