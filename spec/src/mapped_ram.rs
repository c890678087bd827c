//! mapped-ram files (QEMU 9.0+, `migrate file:PATH` with capability `mapped-ram`): the
//! per-block header in MEM_SIZE and the file layout it describes (SPEC.md §7.9).
//!
//! Each MEM_SIZE block entry is followed by a packed big-endian header
//! (`MappedRamHeader`, QEMU `migration/ram.c`, `mapped_ram_setup_ramblock()`):
//!
//! | bytes | field |
//! |---|---|
//! | `be32` | `version` ([`HEADER_VERSION`]) |
//! | `be64` | `page_size` (the target page size) |
//! | `be64` | `bitmap_offset`: absolute file offset of the block's dirty bitmap |
//! | `be64` | `pages_offset`: absolute file offset of page 0 of the block |
//!
//! after which the writer seeks to `pages_offset + used_length` and the stream goes on there.

use crate::ram::RamFlags;

/// Length of the mapped-ram header after each MEM_SIZE block entry: `be32 version`,
/// `be64 page_size`, `be64 bitmap_offset`, `be64 pages_offset`, packed (SPEC.md §7.9).
pub const HEADER_LEN: usize = 28;

/// The header version QEMU 9.0 to 11.1 write (`MAPPED_RAM_HDR_VERSION`). A loader rejects a
/// greater one ("Migration mapped-ram capability version not supported") (SPEC.md §7.9).
pub const HEADER_VERSION: u32 = 1;

/// The alignment QEMU gives `pages_offset`: the end of the bitmap rounded up to 1 MiB
/// (`MAPPED_RAM_FILE_OFFSET_ALIGNMENT`). Loaders require only target-page alignment
/// (SPEC.md §7.9).
pub const FILE_OFFSET_ALIGNMENT: u64 = 1 << 20;

/// The `ram` record flags a mapped-ram loader refuses ("Unexpected RAM flags", QEMU
/// `ram_load_precopy()` `invalid_flags`): ZERO, PAGE, XBZRLE, HOOK and 0x200. The pages of a
/// mapped-ram file are at file offsets, never in records (SPEC.md §7.9).
pub const INVALID_FLAGS: RamFlags = RamFlags(
    RamFlags::ZERO.0 | RamFlags::PAGE.0 | RamFlags::XBZRLE.0 | RamFlags::HOOK.0 | RamFlags::X200.0,
);

/// Bytes per word of the bitmap: QEMU writes it from host memory as an array of
/// `unsigned long`, 8 bytes on the 64-bit hosts QEMU supports for this, so its length is
/// `ceil(pages / 64) * 8` (SPEC.md §7.9).
pub const BITMAP_WORD_LEN: u64 = 8;

/// The bitmap length in bytes for a block of `pages` target pages: `BITS_TO_LONGS(pages) *
/// sizeof(unsigned long)` (SPEC.md §7.9).
///
/// ```
/// use ramstream_spec::mapped_ram::bitmap_len;
/// assert_eq!(bitmap_len(16384), 2048); // 64 MiB of 4 KiB pages
/// assert_eq!(bitmap_len(1), 8);
/// assert_eq!(bitmap_len(65), 16);
/// ```
pub const fn bitmap_len(pages: u64) -> u64 {
    pages.div_ceil(64) * BITMAP_WORD_LEN
}

/// Whether the page with index `page` is marked present in `bitmap`, as an x86-64 (little
/// endian) host writes it: bit `page % 8` (least significant first) of byte `page / 8`
/// (SPEC.md §7.9). Pages beyond the bitmap are absent.
///
/// ```
/// use ramstream_spec::mapped_ram::page_present;
/// let bitmap = [0b0000_0101u8, 0x80];
/// assert!(page_present(&bitmap, 0) && !page_present(&bitmap, 1) && page_present(&bitmap, 2));
/// assert!(page_present(&bitmap, 15));
/// assert!(!page_present(&bitmap, 16));
/// ```
pub fn page_present(bitmap: &[u8], page: u64) -> bool {
    usize::try_from(page / 8)
        .ok()
        .and_then(|i| bitmap.get(i))
        .is_some_and(|b| b & (1 << (page % 8)) != 0)
}
