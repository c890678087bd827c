//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpus.rs`.
//!
//! Every function takes the raw fuzz input, never panics on hostile input, and panics (with
//! a message naming the broken property) only when the codec breaks one of its contracts:
//! a panic inside the codec, a split of the input that decodes differently from the whole,
//! a round trip that does not come back, an XBZRLE decode that disagrees with QEMU's.
//! They are plain functions (not behind `cfg(fuzzing)`) so that the committed corpus is
//! replayed by `cargo test` on a stable toolchain.
//!
//! Input layouts (the first bytes are control bytes, see each function):
//!
//! | entry point | input |
//! |---|---|
//! | [`stream_split`] | `opts, split_seed, stream…` |
//! | [`differential_split`] | `opts, split_seed, stream…` |
//! | [`ram_records`] | `ctl, records…` (after a fixed valid prefix) |
//! | [`balloon_runs`] | `ctl, balloon record payload…` (after the same prefix) |
//! | [`configuration`] | configuration section payload (after `QEVM 3` and `0x07`) |
//! | [`xbzrle_decode`] | `page_sel, page_seed, delta…` |
//! | [`roundtrip_xbzrle`] | `arbitrary` bytes |
//! | [`roundtrip_records`] | `arbitrary` bytes |
//! | [`vmdesc`](fn@vmdesc) | `mode, …` and a real VMDESCRIPTION JSON given by the caller |
//! | [`mapped_ram`](fn@mapped_ram) | `split_seed, mapped-ram file…` |
//!
//! Files: `options.rs` (limits and decoder options from control bytes), `run.rs` (chunked
//! decoding and comparing runs), `checks.rs` (what every decoded stream goes through),
//! `reference_xbzrle.rs` (QEMU's XBZRLE decoder as an oracle), the targets in `stream.rs`,
//! `xbzrle.rs`, `records/`, `vmdesc.rs` and `mapped_ram.rs` (which also builds small
//! mapped-ram files for the tests), and `pages.rs` (page contents for them).

mod checks;
mod mapped_ram;
mod options;
mod pages;
mod records;
mod reference_xbzrle;
mod run;
mod stream;
mod vmdesc;
mod xbzrle;

pub use self::checks::exercise_stream;
pub use self::mapped_ram::{
    mapped_ram, mapped_ram_seeds, page_byte, BuiltMappedRam, MappedRamBlockSpec, MappedRamFileSpec,
};
pub use self::options::{fuzz_limits, options_from_byte, FUZZ_DIALECTS, MAX_RESIDENT_PAGES};
pub use self::records::roundtrip_records;
pub use self::reference_xbzrle::reference_xbzrle_decode;
pub use self::run::{assert_same_run, decode_in_chunks, decode_whole, split_sizes, Run};
pub use self::stream::{
    balloon_runs, configuration, differential_split, ram_records, ram_records_prefix, stream_split,
    vector_blocks,
};
pub use self::vmdesc::vmdesc;
pub use self::xbzrle::{roundtrip_xbzrle, xbzrle_decode};
