//! # ramstream-spec
//!
//! The constants and wire types of QEMU's live-migration stream and its `ram` section, as
//! specified in [`SPEC.md`](https://github.com/ramstream/ramstream/blob/main/spec/SPEC.md).
//! This crate is the single place where a wire value is written down: every other ramstream
//! crate takes its magic numbers, flags, section types, command ids, names and limits from here.
//!
//! Wire values are *open* newtypes ([`stream::SectionType`], [`stream::Command`],
//! [`ram::RamFlags`]): a value this version does not name still round-trips and prints as hex.
//!
//! ```
//! use ramstream_spec::ram::RamFlags;
//! use ramstream_spec::stream::SectionType;
//!
//! // A `ram` record word: page offset in the high bits, flags in the low bits.
//! let word: u64 = 0x1000 | RamFlags::ZERO.bits() | RamFlags::CONTINUE.bits();
//! let (offset, flags) = ramstream_spec::ram::split_record_word(word, 12);
//! assert_eq!(offset, 0x1000);
//! assert_eq!(flags, RamFlags::ZERO | RamFlags::CONTINUE);
//! assert_eq!(format!("{flags:?}"), "ZERO|CONTINUE");
//! assert_eq!(format!("{:?}", SectionType(0x42)), "SectionType(0x42)");
//! ```

mod flags;
#[macro_use]
mod macros;

pub mod config;
pub mod dialect;
pub mod extension;
pub mod limits;
pub mod mapped_ram;
pub mod multifd;
pub mod ram;
pub mod stream;
pub mod xbzrle;

pub use dialect::Dialect;
