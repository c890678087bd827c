#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ramstream_codec::fuzzing::mapped_ram(data));
