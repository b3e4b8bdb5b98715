//! A connection's output: what it has to write to the socket, in order.
//!
//! Encoded PDU bytes (headers, digests, responses, text) are appended to one `BytesMut`.
//! The payload of a Data-In PDU that carries a whole read is not copied there: the task's data
//! buffer — the buffer the miniport filled — is *spliced* in at that point, and
//! [`OutQueue::io_slices`] hands the socket write the bytes and the spliced buffers as one
//! `writev`. A spliced buffer that has been written completely is kept in
//! [`OutQueue::take_written`] for the connection's buffer pool.
//!
//! Runs on the connection's network thread (the queue belongs to the `Connection`); no locks.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BytesMut};

/// Most slices one [`OutQueue::io_slices`] call returns (well under `IOV_MAX`).
pub const MAX_IO_SLICES: usize = 64;

/// A data buffer spliced into the byte stream.
#[derive(Debug)]
struct Splice {
    /// Stream position (counted in encoded bytes appended since the queue was made) before
    /// which the buffer goes.
    at: u64,
    data: Vec<u8>,
    /// `data[..len]` is written.
    len: usize,
}

/// The bytes a connection has to write: encoded bytes with data buffers spliced in.
#[derive(Debug, Default)]
pub struct OutQueue {
    bytes: BytesMut,
    /// Encoded bytes already consumed from the front of `bytes` (the stream position of
    /// `bytes[0]`).
    consumed: u64,
    splices: VecDeque<Splice>,
    /// Bytes of the front splice already written.
    front_written: usize,
    /// Bytes of the splices not yet written.
    spliced: usize,
    /// Spliced buffers written completely, for the buffer pool.
    written: Vec<Vec<u8>>,
}

impl OutQueue {
    /// Whether nothing is left to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes left to write.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.spliced
    }

    /// The encoded bytes, to append to (after everything queued so far).
    pub fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.bytes
    }

    /// Queues `data[..len]` after everything queued so far, without copying it.
    pub fn splice(&mut self, data: Vec<u8>, len: usize) {
        let len = len.min(data.len());
        if len == 0 {
            self.written.push(data);
            return;
        }
        self.splices.push_back(Splice {
            at: self.consumed + self.bytes.len() as u64,
            data,
            len,
        });
        self.spliced += len;
    }

    /// The next bytes to write, in order, as slices into `out` (as many as fit); returns how
    /// many it filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut pos = 0usize;
        for (i, s) in self.splices.iter().enumerate() {
            if n + 2 > out.len() {
                return n;
            }
            let at = (s.at - self.consumed) as usize;
            if at > pos {
                out[n] = IoSlice::new(&self.bytes[pos..at]);
                n += 1;
            }
            let from = if i == 0 { self.front_written } else { 0 };
            out[n] = IoSlice::new(&s.data[from..s.len]);
            n += 1;
            pos = at;
        }
        if pos < self.bytes.len() && n < out.len() {
            out[n] = IoSlice::new(&self.bytes[pos..]);
            n += 1;
        }
        n
    }

    /// Marks the first `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.splices.front() else {
                let k = n.min(self.bytes.len());
                self.bytes.advance(k);
                self.consumed += k as u64;
                return;
            };
            let before = (front.at - self.consumed) as usize;
            if before > 0 {
                let k = n.min(before);
                self.bytes.advance(k);
                self.consumed += k as u64;
                n -= k;
                continue;
            }
            let k = n.min(front.len - self.front_written);
            self.front_written += k;
            self.spliced -= k;
            n -= k;
            if self.front_written == front.len {
                let done = self.splices.pop_front().expect("front exists");
                self.front_written = 0;
                self.written.push(done.data);
            }
        }
    }

    /// Spliced buffers written completely since the last call.
    pub fn take_written(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.written.drain(..)
    }

    /// Everything left to write, as one contiguous buffer (copied; for tests and tools that
    /// decode the output). The queue is empty afterwards.
    pub fn take_all(&mut self) -> BytesMut {
        let mut all = BytesMut::with_capacity(self.len());
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let k = self.io_slices(&mut slices);
            let n: usize = slices[..k].iter().map(|s| s.len()).sum();
            for s in &slices[..k] {
                all.extend_from_slice(s);
            }
            self.advance(n);
        }
        self.written.clear();
        all
    }

    /// [`OutQueue::take_all`] as a `Vec`.
    pub fn take_vec(&mut self) -> Vec<u8> {
        self.take_all().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_through(q: &mut OutQueue, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            let mut slices = [IoSlice::new(&[]); 5];
            let k = q.io_slices(&mut slices);
            let mut budget = chunk;
            let mut n = 0;
            for s in &slices[..k] {
                let k = s.len().min(budget);
                out.extend_from_slice(&s[..k]);
                budget -= k;
                n += k;
                if budget == 0 {
                    break;
                }
            }
            q.advance(n);
        }
        out
    }

    #[test]
    fn splices_come_out_in_order_through_partial_writes() {
        for chunk in [1, 3, 7, 48, 4096, 100_000] {
            let mut q = OutQueue::default();
            let mut want = Vec::new();
            for i in 0..20u8 {
                let head = vec![i; 5 + usize::from(i % 3)];
                q.bytes_mut().extend_from_slice(&head);
                want.extend_from_slice(&head);
                if i % 4 != 3 {
                    let data: Vec<u8> = (0..100 + u32::from(i)).map(|b| b as u8 ^ i).collect();
                    // Only part of a buffer may be meant (a truncated read).
                    let len = data.len() - usize::from(i % 2);
                    want.extend_from_slice(&data[..len]);
                    q.splice(data, len);
                }
                if i % 5 == 0 {
                    // Two splices back to back, no bytes between.
                    q.splice(vec![0xEE; 9], 9);
                    want.extend_from_slice(&[0xEE; 9]);
                }
            }
            assert_eq!(q.len(), want.len());
            let got = written_through(&mut q, chunk);
            assert_eq!(got, want, "chunk {chunk}");
            assert!(q.is_empty());
            assert_eq!(
                q.take_written().count(),
                15 + 4,
                "every spliced buffer comes back"
            );
        }
    }

    #[test]
    fn many_splices_are_cut_at_the_slice_limit_and_take_all_flattens() {
        let mut q = OutQueue::default();
        let mut want = Vec::new();
        for i in 0..200u32 {
            q.bytes_mut().extend_from_slice(&i.to_be_bytes());
            want.extend_from_slice(&i.to_be_bytes());
            q.splice(vec![i as u8; 3], 3);
            want.extend_from_slice(&[i as u8; 3]);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
        assert_eq!(q.io_slices(&mut slices), MAX_IO_SLICES);
        assert_eq!(q.take_all().to_vec(), want);
        assert!(q.is_empty());
        // Empty splices are not queued; their buffer goes straight back.
        q.splice(vec![1, 2, 3], 0);
        assert!(q.is_empty());
        assert_eq!(q.take_written().count(), 1);
    }
}
