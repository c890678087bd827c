//! Entry points for the fuzz targets in `fuzz/`, replayed over the committed corpus by
//! `tests/fuzz_corpus.rs` (the codec's targets) and `reference-receiver/tests/fuzz_corpus.rs`
//! (the `receiver` target).
//!
//! Every function takes the raw fuzz input, never panics on hostile input, and panics (with
//! a message naming the broken property) only when the code under test breaks one of its
//! contracts: a panic inside the codec, a split of the input that decodes differently from
//! the whole, a round trip that does not come back, an XBZRLE decode that disagrees with
//! QEMU's, a receiver that writes outside guest memory. They are plain functions (not behind
//! `cfg(fuzzing)`) so that the committed corpus is replayed by `cargo test` on a stable
//! toolchain. The codec targets use only `ramstream-codec`'s public API.
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
//! | [`receive_records`] | `ctl, bytes…` spliced into a real stream (see [`receiver`]) |
//!
//! Files: `options.rs` (limits and decoder options from control bytes), `run.rs` (chunked
//! decoding and comparing runs), `checks.rs` (what every decoded stream goes through),
//! `reference_xbzrle.rs` (QEMU's XBZRLE decoder as an oracle), `pages.rs` (page contents
//! for the generators), and the targets: `stream.rs`, `xbzrle.rs`, `roundtrip_records/`,
//! `vmdesc.rs`, `mapped_ram.rs` (files built by [`crate::mapped_ram_file`]) and
//! `receiver.rs`.

mod checks;
mod mapped_ram;
pub mod multifd;
mod options;
mod pages;
pub mod receiver;
mod reference_xbzrle;
mod roundtrip_records;
mod run;
mod stream;
mod vmdesc;
mod xbzrle;

pub use self::checks::exercise_stream;
pub use self::mapped_ram::{mapped_ram, mapped_ram_seeds};
pub use self::options::{fuzz_limits, options_from_byte, FUZZ_DIALECTS, MAX_RESIDENT_PAGES};
pub use self::receiver::receive_records;
pub use self::reference_xbzrle::reference_xbzrle_decode;
pub use self::roundtrip_records::roundtrip_records;
pub use self::run::{
    assert_same_run, decode_in_chunks, decode_whole, decode_with_zero_runs, split_sizes, Run,
};
pub use self::stream::{
    balloon_runs, configuration, differential_split, ram_records, ram_records_prefix, stream_split,
    vector_blocks,
};
pub use self::vmdesc::vmdesc;
pub use self::xbzrle::{roundtrip_xbzrle, xbzrle_decode};
