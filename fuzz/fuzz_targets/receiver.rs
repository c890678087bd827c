#![no_main]
use ramstream_test_support::fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::receive_records(data));
