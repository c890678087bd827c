//! ramstream's own, negotiated extensions (SPEC.md §9, §13), and the out-of-tree 2016
//! balloon layout ramstream decodes as a dialect (SPEC.md §9.6).
//!
//! ## ramstream balloon extension v1 (SPEC.md §9.4)
//!
//! | field | size | value |
//! |---|---|---|
//! | record word | be64 | `0x200`, or `0x220` with CONTINUE; offset bits 0 |
//! | idstr | u8 + n | the RAM block, only without CONTINUE (as page records) |
//! | version | u8 | [`BALLOON_V1_VERSION`] |
//! | kind | u8 | [`BALLOON_V1_KIND_FULL_MAP`] or [`BALLOON_V1_KIND_INCREMENTAL`] |
//! | inflate count | be32 | runs that become ballooned |
//! | deflate count | be32 | runs that are returned to the guest (0 in a full map) |
//! | runs | 16 × (inflate + deflate) | `be64 start_page, be64 page_count`, inflate runs first |

/// The balloon extension's wire version carried in every balloon record (SPEC.md §9.3, §9.4).
pub const BALLOON_V1_VERSION: u8 = 1;

/// Kind byte of a v1 record that replaces the block's whole balloon map (SPEC.md §9.4).
pub const BALLOON_V1_KIND_FULL_MAP: u8 = 0;

/// Kind byte of a v1 record that changes the block's balloon map (SPEC.md §9.4).
pub const BALLOON_V1_KIND_INCREMENTAL: u8 = 1;

/// Bytes of a v1 record between the idstr and the runs: version, kind and the two be32
/// counts (SPEC.md §9.4).
pub const BALLOON_V1_HEADER_LEN: usize = 1 + 1 + 4 + 4;

/// Bytes of one run on the wire, v1 and 2016 alike: `be64 start, be64 count` (SPEC.md §9.4,
/// §9.6).
pub const BALLOON_RUN_LEN: usize = 16;

/// The 2016 patch's DISABLE marker: all-ones instead of a bitmap size (SPEC.md §9.6).
pub const KOLHE_BALLOON_DISABLE: u64 = u64::MAX;

/// The 2016 patch counts one bit per 4 KiB page (`VIRTIO_BALLOON_PFN_SHIFT` = 12)
/// (SPEC.md §9.6).
pub const KOLHE_BALLOON_PAGE_SHIFT: u32 = 12;

/// Bytes of the 2016 payload before the runs: bitmap size, start and limit (SPEC.md §9.6).
pub const KOLHE_BALLOON_HEADER_LEN: usize = 3 * 8;
