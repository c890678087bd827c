#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ramstream_reference_receiver::fuzzing::receive_records(data));
