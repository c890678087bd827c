//! # ramstream-codec
//!
//! A sans-IO, zero-copy codec for QEMU's live-migration stream and its `ram` section, as
//! specified in `spec/SPEC.md`. It never touches a socket, file, clock or `/dev/kvm`: it
//! takes bytes and hands back typed [`Event`]s, or takes records and writes bytes.
//!
//! - [`Decoder`]: incremental. Feed any split of the input; short input is
//!   [`Status::NeedMore`], never an error. Page payloads borrow the input.
//! - [`Encoder`]: writes records into a [`Sink`] (any `BufMut`, or [`Vectored`] which
//!   references page payloads instead of copying them). Canonical: re-encoding a decoded
//!   QEMU stream reproduces it byte for byte.
//! - [`RamImage`] / [`PageStore`]: applies PAGE, ZERO and XBZRLE records onto per-block
//!   memory, shared by the receiver and the tools.
//! - [`mapped_ram`]: mapped-ram files (QEMU 9.0+ `migrate file:` with capability
//!   `mapped-ram`), whose pages sit at file offsets instead of in records; read when
//!   [`DecoderOptions::mapped_ram`] is [`MappedRam::Read`], refused otherwise.
//!
//! ## Stream layout (SPEC.md §2)
//!
//! | bytes | item |
//! |---|---|
//! | `51 45 56 4d 00 00 00 03` | header: `QEVM`, version 3 |
//! | `07 be32 len name [05 subsections…]` | configuration |
//! | `01 be32 id u8 len "ram" be32 0 be32 4` | `ram` START, then records, EOS, footer `7e be32 id` |
//! | `02/03 be32 id` | PART / END, then records, EOS, footer |
//! | `04 be32 id u8 len idstr be32 inst be32 ver` body | device (FULL) sections, footer |
//! | `00` | EOF |
//! | `06 be32 len json` | VMDESCRIPTION trailer |
//!
//! ## Decoding a whole buffer
//!
//! [`Events`] iterates over the events of a complete stream in memory; [`decode_all`]
//! collects them.
//!
//! ```
//! use ramstream_codec::{decode_all, DecoderOptions, Event};
//! let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
//! let events = decode_all(stream, DecoderOptions::default()).unwrap();
//! assert!(matches!(events[1].1, Event::Configuration(ref c) if c.machine_type == "pc-i440fx-7.2"));
//! ```
//!
//! ## Decoding a stream as it arrives
//!
//! A receiver reads into a [`StreamBuffer`] (the unread window, compacted and grown up to a
//! cap, with the counters of bytes read and the most buffered) and feeds its window to a
//! [`Decoder`]. With the `io` feature, `io::StreamReader` is that loop over any
//! `std::io::Read`.
//!
//! ## Cargo features
//!
//! - `io` (off by default): `io::StreamReader`, which fills a [`StreamBuffer`] from a
//!   `std::io::Read` and hands the unread bytes to a decoder or any consumer. Without it
//!   the codec does no IO at all.
//! - `serde` (off by default): `serde::Serialize` for the report types, for callers that
//!   print JSON: [`summary::StreamSummary`] and its parts, [`mapped_ram::MappedRamSummary`],
//!   [`cache::XbzrleCacheStats`] (QMP's kebab-case names),
//!   [`extension::digest::DigestSection`] (digests as hex), [`vmdesc::SplitCheck`], and decoded
//!   device state ([`vmdesc::DecodedDevice`], [`vmdesc::Value`]) in analyze-migration.py's
//!   JSON style. Parsing needs no feature: the VMDESCRIPTION trailer is JSON on the wire, so
//!   [`vmdesc::VmDescription::parse`] always uses `serde`'s `Deserialize` and `serde_json`.

// The modules in layers; each uses only the layers listed before it:
// - ground: `addr`, `kind`, `options`, `sink`, `xbzrle`, `zero`; then `error`, then `cursor`;
// - the record families, each reading its own bytes into its own types: `ram` (MEM_SIZE
//   with its mapped-ram headers, page records, EOS), then `balloon` (flag 0x200's dialects);
// - `event`: one `Event` over the families' types and the top-level stream's items;
// - over events: `frame` (where each section and record ends; it hands a `ram` record to
//   its family), `encoder` (leaving balloon records' checks and bodies to `balloon`),
//   `image`, `summary`, `vmdesc`, `extension`; apart, over `xbzrle` and `zero`: `cache`;
// - `decoder` over `frame`; then `events` (a whole input's events) over the decoder, and
//   `mapped_ram` and `transcode` over `events`; `buffer` (the streaming input buffer) beside
//   them over `options`, and `io` (the `io` feature) over `buffer` and the decoder.

mod addr;
pub mod balloon;
mod buffer;
pub mod cache;
mod cursor;
mod decoder;
mod encoder;
mod error;
mod event;
mod events;
pub mod extension;
mod frame;
mod image;
#[cfg(feature = "io")]
pub mod io;
mod kind;
pub mod mapped_ram;
pub mod multifd;
mod options;
mod ram;
mod sink;
pub mod summary;
pub mod transcode;
pub mod vmdesc;
pub mod xbzrle;
pub mod zero;

pub use addr::PageAddr;
pub use buffer::{ItemTooLarge, StreamBuffer};
pub use decoder::{Decoder, Status, StreamConfig, ZeroRun};
pub use encoder::Encoder;
pub use error::{Error, ErrorKind};
pub use event::{CommandRecord, Configuration, DeviceSection, Event, SectionHeader};
pub use events::Events;
pub use image::{apply_event, PageStore, RamImage};
pub use kind::RecordKind;
pub use options::{DecoderOptions, FieldPresence, Limits, MappedRam, ZeroFill};
pub use ram::{BareRecord, MemSize, PageRecord, RamBlock, XbzrleDelta, ZeroPage};
pub use sink::{BufSink, Sink, Vectored, VectoredBuffers, IO_SLICES};

/// Decodes a complete stream held in memory into `(offset, event)` pairs: [`Events`],
/// collected.
///
/// A convenience for tools; a receiver should feed a [`Decoder`] as bytes arrive instead.
pub fn decode_all(input: &[u8], opts: DecoderOptions) -> Result<Vec<(u64, Event<'_>)>, Error> {
    Events::new(input, opts).collect()
}
