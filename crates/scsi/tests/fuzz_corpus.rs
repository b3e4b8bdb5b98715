//! Replays the checked-in fuzz seeds (`fuzz/corpus/sense_parse/`) and the regression
//! inputs below through the fuzz target's own code (`fuzz/src/sense_parse.rs`), on
//! stable and without libFuzzer.

#[path = "../../../fuzz/src/sense_parse.rs"]
mod sense_parse;

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
fn sense_parse_seeds() {
    let seeds = seeds("sense_parse");
    assert!(seeds.len() >= 3, "seed corpus present");
    for s in &seeds {
        sense_parse::run(s);
    }
    // The seeds are real sense data: each one parses.
    assert!(seeds.iter().all(|s| scsi::Sense::parse(s).is_ok()));
}
