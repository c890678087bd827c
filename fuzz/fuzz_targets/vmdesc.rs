#![no_main]
// A real VMDESCRIPTION (QEMU 7.2, q35-noos vector) to decode fuzzed device bodies against.
const VMDESC: &[u8] = include_bytes!("../data/vmdesc.json");
libfuzzer_sys::fuzz_target!(|data: &[u8]| ramstream_codec::fuzzing::vmdesc(VMDESC, data));
