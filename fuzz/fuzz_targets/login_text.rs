#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scsiport_fuzz::login_text::run(data);
});
