//! # ramstream test support
//!
//! Test doubles, record builders and fuzz entry points for ramstream's reference crates, kept
//! out of the product crates (as h2's `h2-support` and rustls' test crate are). Tests and the
//! `fuzz/` crate depend on it; no product crate does, except as a dev-dependency.
//!
//! | module | what it holds |
//! |---|---|
//! | [`ScriptedGuest`], [`ScriptStep`] | a fake source guest for the reference sender and the engine: dense memory, dirty log and balloon, changed by a script at each dirty sync |
//! | [`FakeDestination`], [`DenseRam`] | an in-memory destination for the reference receiver, over dense memory or the test's own |
//! | [`CheckedDestination`] | a [`FakeDestination`] that panics when the receiver reaches outside guest memory |
//! | [`records`] | hand-made `ram` records (PAGE, ZERO, XBZRLE, MEM_SIZE, balloon) |
//! | [`real_stream`] | the reference sender's stream of a small scripted guest, and where its pieces are |
//! | [`mapped_ram_file`] | hand-built mapped-ram files (SPEC.md §7.9) with chosen present and stale pages |
//! | [`fuzzing`] | every fuzz target's entry point (the codec's and the reference receiver's), replayed by `cargo test` |
//!
//! `tests/pair.rs` is the in-memory pair: the reference sender and receiver joined by an
//! in-memory pipe, a [`ScriptedGuest`] on one side and a [`FakeDestination`] on the other.
//! `tests/fuzz_corpus.rs` replays the codec targets' committed corpus and regressions.

mod checked_destination;
mod fake_destination;
pub mod fuzzing;
pub mod mapped_ram_file;
pub mod real_stream;
pub mod records;
mod script;
mod scripted_guest;

pub use checked_destination::CheckedDestination;
pub use fake_destination::{DenseRam, FakeDestination};
pub use script::{pattern_page, ScriptStep};
pub use scripted_guest::{fake_vcpu_blob, ScriptedGuest};
