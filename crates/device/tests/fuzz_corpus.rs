//! Replays the checked-in fuzz seeds (`fuzz/corpus/cdb_ram/`) and the regression
//! inputs below through the fuzz target's own code (`fuzz/src/cdb_ram.rs`: CDBs and
//! data-out against a RAM logical unit from a few I_T nexuses), on stable and without
//! libFuzzer.

#[allow(dead_code)]
#[path = "../../../fuzz/src/input.rs"]
mod input;

#[path = "../../../fuzz/src/cdb_ram.rs"]
mod cdb_ram;

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
fn cdb_ram_seeds() {
    let seeds = seeds("cdb_ram");
    assert!(seeds.len() >= 5, "seed corpus present");
    for s in &seeds {
        cdb_ram::run(s);
    }
}
