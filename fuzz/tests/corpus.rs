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

/// The pipeline's data check notices a block changed outside every recorded range.
#[test]
#[should_panic(expected = "changed outside every written range")]
fn pipeline_data_check_can_fail() {
    let service = scsiport_fuzz::pipeline::DeviceService::new(1, 16);
    let cdb = [0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0];
    let data = [1u8; 512];
    let mut req = device::ScsiRequest {
        nexus: device::ItNexus::new(1, 1),
        cdb: &cdb,
        data_out: &data,
        data_in: &mut [],
    };
    assert_eq!(
        service.lus[0].execute(&mut req).status,
        device::ScsiStatus::Good
    );
    service.check_unwritten_blocks_are_zero();
}

#[test]
fn write_ranges() {
    use scsiport_fuzz::pipeline::write_range;
    let mut cdb = [0u8; 16];
    cdb[..10].copy_from_slice(&[0x2a, 0, 0, 0, 0, 7, 0, 0, 2, 0]);
    assert_eq!(write_range(&cdb), Some((7, 9)));
    cdb[..6].copy_from_slice(&[0x0a, 0, 0, 3, 0, 0]);
    assert_eq!(write_range(&cdb), Some((3, 259)));
    cdb = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0];
    assert_eq!(write_range(&cdb), Some((4, 5)));
    cdb[0] = 0x28;
    assert_eq!(write_range(&cdb), None);
}
