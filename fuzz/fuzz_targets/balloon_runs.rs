#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ramstream_codec::fuzzing::balloon_runs(data));
