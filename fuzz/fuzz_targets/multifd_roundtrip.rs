#![no_main]
use ramstream_test_support::fuzzing::multifd;
libfuzzer_sys::fuzz_target!(|data: &[u8]| multifd::multifd_roundtrip(data));
