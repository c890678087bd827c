//! mapped-ram files (QEMU 9.0+, `migrate file:PATH` with capability `mapped-ram`; the format
//! of libvirt's parallel save images) (SPEC.md §7.9).
//!
//! A mapped-ram file is the ordinary stream with a hole cut after each MEM_SIZE block
//! entry: a 28-byte [`MappedRamHeader`] follows the entry, then the writer seeks past the
//! block's bitmap and pages, and the stream goes on there (the next entry, …, EOS, footer,
//! PART sections with EOS only, END, device sections, EOF, VMDESCRIPTION). No PAGE, ZERO,
//! XBZRLE or 0x200 record appears; every offset is an absolute file offset.
//!
//! | file offset | bytes |
//! |---|---|
//! | `N` | `QEVM 3`, configuration listing `mapped-ram`, `ram` START, MEM_SIZE word |
//! | | block 1: `u8 len idstr`, `be64 used_length`, [`be64 mr_addr`], header (28) |
//! | `bitmap_offset` | `ceil(pages / 64) * 8` bytes of bitmap, little-endian `unsigned long`s |
//! | | (never written: padding up to `pages_offset`, 1 MiB aligned) |
//! | `pages_offset` | `used_length` bytes: page `i` at `pages_offset + i * page_size` |
//! | `pages_offset + used_length` | block 2's entry and header, … |
//! | | EOS, footer, PART/END sections, device sections, EOF, VMDESCRIPTION |
//!
//! The [`Decoder`](crate::Decoder) reads such a file when told so
//! ([`DecoderOptions::mapped_ram`](crate::DecoderOptions::mapped_ram) =
//! [`MappedRam::Read`](crate::MappedRam::Read)): its MEM_SIZE parser reads each header
//! into [`MemSize::mapped_ram`](crate::MemSize::mapped_ram), checks it, and consumes the
//! block's regions as part of the record, so one MEM_SIZE event spans them and every
//! offset stays a file offset. The pages are then read straight from the input:
//! [`MappedRamFile`] decodes a whole file and gives each block's [`MappedBlock`], whose
//! [`present_pages`](MappedBlock::present_pages) borrow the input.
//!
//! Files: `block.rs` (bitmap and pages views), `file.rs` (the whole file), `summary.rs`
//! (what `inspect` shows). The header is part of the MEM_SIZE record, and is read with it
//! by the `ram` record family (`ram/mapped_ram_header.rs`: the header, its checks, the
//! seek); the region an error names is with the record kinds (`kind.rs`). Both are
//! re-exported here.

mod block;
mod file;
mod summary;

pub use self::block::{MappedBlock, PresentPages};
pub use self::file::{block_views, MappedRamFile};
pub use self::summary::{MappedBlockSummary, MappedRamSummary};
pub use crate::kind::MappedRamRegion;
pub use crate::ram::MappedRamHeader;
