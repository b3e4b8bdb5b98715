#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scsiport_fuzz::pdu_stream::run(data);
});
