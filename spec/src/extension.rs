//! ramstream's own, negotiated extensions (SPEC.md §9, §13).

/// The balloon extension's wire version carried in every balloon record (SPEC.md §9).
pub const BALLOON_V1_VERSION: u8 = 1;

/// The 2016 patch's DISABLE marker: all-ones instead of a bitmap size (SPEC.md §9.6).
pub const KOLHE_BALLOON_DISABLE: u64 = u64::MAX;

/// The 2016 patch counts one bit per 4 KiB page (`VIRTIO_BALLOON_PFN_SHIFT` = 12).
pub const KOLHE_BALLOON_PAGE_SHIFT: u32 = 12;
