//! XBZRLE delta encoding constants (SPEC.md §7.6).

/// The encoding byte of an XBZRLE record: `ENCODING_FLAG_XBZRLE` (SPEC.md §7.6).
pub const ENCODING_FLAG_XBZRLE: u8 = 0x01;

/// Length of an XBZRLE record's header after the record word and idstr: the encoding byte
/// and the be16 length (SPEC.md §7.6).
pub const RECORD_HEADER_LEN: usize = 3;

/// The largest run length QEMU's "small" ULEB128 carries: two bytes, 14 bits.
pub const ULEB128_MAX: u32 = 0x3FFF;

/// The default XBZRLE cache size QEMU uses: 64 MiB (SPEC.md §7.7).
pub const DEFAULT_CACHE_SIZE: u64 = 64 * 1024 * 1024;

/// A cache slot holding a page of another address is not taken over until this many dirty
/// syncs have passed since it was last used (`CACHED_PAGE_LIFETIME`, SPEC.md §7.7).
pub const CACHED_PAGE_LIFETIME: u64 = 2;
