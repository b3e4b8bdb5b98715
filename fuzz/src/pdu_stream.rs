//! (5) A PDU byte stream fed in arbitrary chunks: the same as one read.
//!
//! Input: byte 0 = flags (bit 0: prepend a valid login, [`login_pdu`] with CmdSN 1);
//! byte 1 = n (mod 16), then n chunk sizes (one byte each, 0 read as 1); the rest is
//! the stream.

use crate::conn_util::{feed_in_chunks, login_pdu};
use crate::input::{take, take_u8};

pub fn split(data: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut d = data;
    let flags = take_u8(&mut d).unwrap_or(0);
    let n = (take_u8(&mut d).unwrap_or(0) % 16) as usize;
    let sizes: Vec<usize> = take(&mut d, n).iter().map(|&s| s as usize).collect();
    let mut stream = if flags & 1 != 0 {
        login_pdu(1)
    } else {
        Vec::new()
    };
    stream.extend_from_slice(d);
    (stream, sizes)
}

pub fn run(data: &[u8]) {
    let (stream, sizes) = split(data);
    if stream.len() > 64 * 1024 {
        return;
    }
    let whole = feed_in_chunks(&stream, &[]);
    let chunked = feed_in_chunks(&stream, &sizes);
    assert_eq!(whole, chunked, "chunk sizes {sizes:?}");
    if sizes.is_empty() {
        let bytewise = feed_in_chunks(&stream, &[1]);
        assert_eq!(whole, bytewise, "one byte at a time");
    }
}
