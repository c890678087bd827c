#![no_main]
use ramstream_test_support::fuzzing;
// A real VMDESCRIPTION (QEMU 7.2, q35-noos vector) to decode fuzzed device bodies against.
const VMDESC: &[u8] = include_bytes!("../data/vmdesc.json");
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::vmdesc(VMDESC, data));
