#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ramstream_test_support::fuzzing::receive_records(data));
