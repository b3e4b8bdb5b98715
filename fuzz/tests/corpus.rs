//! Replays every checked-in seed through its target's code (stable, no libFuzzer):
//! `cargo test` in `fuzz/`.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for e in fs::read_dir(&dir).expect("corpus dir") {
        let bytes = fs::read(e.expect("entry").path()).expect("read seed");
        run(&bytes);
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn cdb_ram() {
    replay("cdb_ram", scsiport_fuzz::cdb_ram::run);
}
#[test]
fn sense_parse() {
    replay("sense_parse", scsiport_fuzz::sense_parse::run);
}
#[test]
fn pdu_header() {
    replay("pdu_header", scsiport_fuzz::pdu_header::run);
}
#[test]
fn login_text() {
    replay("login_text", scsiport_fuzz::login_text::run);
}
#[test]
fn pdu_stream() {
    replay("pdu_stream", scsiport_fuzz::pdu_stream::run);
}
#[test]
fn pipeline() {
    replay("pipeline", scsiport_fuzz::pipeline::run);
    // The seeds reach the device LUs and come back.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/pipeline");
    for e in fs::read_dir(dir).expect("corpus dir") {
        let path = e.expect("entry").path();
        let (submitted, finals) = scsiport_fuzz::pipeline::run_counted(&fs::read(&path).unwrap());
        assert!(
            submitted >= 1 && finals >= submitted,
            "{}: {submitted} {finals}",
            path.display()
        );
    }
}
