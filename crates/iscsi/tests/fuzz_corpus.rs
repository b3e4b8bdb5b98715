//! Replays the checked-in fuzz seeds (`fuzz/corpus/{pdu_header,login_text,pdu_stream}/`)
//! and the regression inputs below through the fuzz targets' own code
//! (`fuzz/src/*.rs`), on stable and without libFuzzer.

#[allow(dead_code)]
#[path = "../../../fuzz/src/input.rs"]
mod input;

#[allow(dead_code)]
#[path = "../../../fuzz/src/conn_util.rs"]
mod conn_util;

#[path = "../../../fuzz/src/pdu_header.rs"]
mod pdu_header;

#[path = "../../../fuzz/src/login_text.rs"]
mod login_text;

#[path = "../../../fuzz/src/pdu_stream.rs"]
mod pdu_stream;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read seed"))
        .collect();
    out.sort();
    out
}

#[test]
fn pdu_header_seeds() {
    let seeds = seeds("pdu_header");
    assert!(seeds.len() >= 3);
    for s in &seeds {
        pdu_header::run(s);
    }
}

#[test]
fn login_text_seeds() {
    let seeds = seeds("login_text");
    assert!(seeds.len() >= 3);
    for s in &seeds {
        login_text::run(s);
    }
}

#[test]
fn pdu_stream_seeds() {
    let seeds = seeds("pdu_stream");
    assert!(seeds.len() >= 3);
    for s in &seeds {
        pdu_stream::run(s);
    }
    // The full-session seed logs in, and its commands reach the service.
    let (stream, _) = pdu_stream::split(&seeds.iter().find(|s| s[0] == 0).expect("seed")[..]);
    let o = conn_util::feed_in_chunks(&stream, &[]);
    assert!(
        o.actions.iter().filter(|a| a.starts_with("Submit")).count() >= 3,
        "{:?}",
        o.actions
    );
    assert!(!o.after_completions.is_empty());
}

/// login_text, first fuzz finding (a fault of the target's own check, kept as a
/// regression): an invalid `ImmediateData=Yep` is answered Reject and leaves the
/// default (Yes) in place even when the target prefers No.
#[test]
fn login_text_invalid_boolean_keeps_default() {
    let input = b"@InitiatorName=iqn.20\x05\x00\x00\x00\x00\x00\x00\x00\x00InitialR2T=Nm\x00\
ImmediateData=Yep\x00MaandingR3T=1\x00DefaulvTimeCQ==\x00";
    login_text::run(input);
    use iscsi::params::{KeyOutcome, Negotiated, SessionType, TargetLimits, negotiate};
    let limits = TargetLimits {
        immediate_data: false,
        ..TargetLimits::default()
    };
    let mut n = Negotiated::defaults(&limits);
    let r = negotiate("ImmediateData", "Yep", &mut n, &limits, SessionType::Normal);
    assert_eq!(r, KeyOutcome::Reply("Reject".into()));
    assert!(n.immediate_data, "default unchanged");
    let r = negotiate("ImmediateData", "Yes", &mut n, &limits, SessionType::Normal);
    assert_eq!(r, KeyOutcome::Reply("No".into()));
}
