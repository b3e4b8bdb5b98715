#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scsiport_fuzz::cdb_ram::run(data);
});
