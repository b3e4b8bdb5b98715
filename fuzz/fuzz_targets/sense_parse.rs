#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scsiport_fuzz::sense_parse::run(data);
});
