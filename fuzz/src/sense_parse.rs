//! (2) Sense decoding: `scsi::Sense::parse` on arbitrary bytes; what parses
//! re-encodes in both formats and parses back to the same key and ASC/ASCQ.

use scsi::sense::{Sense, SenseFormat};

pub fn run(data: &[u8]) {
    let Ok(s) = Sense::parse(data) else { return };
    let _ = s.to_string();
    for f in [SenseFormat::Fixed, SenseFormat::Descriptor] {
        let enc = s.encode(f);
        let back = Sense::parse(&enc).expect("encoded sense parses");
        assert_eq!((back.key, back.asc), (s.key, s.asc), "{f:?}");
        assert_eq!(back.deferred, s.deferred);
    }
}
