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

/// The digest extension, version 1 (SPEC.md §13): a FULL device section after the
/// device state whose body carries a sha256 of every RAM block taken when the source stopped.
///
/// | field | size | value |
/// |---|---|---|
/// | section header | FULL | idstr [`DIGEST_SECTION_IDSTR`](digest::DIGEST_SECTION_IDSTR), instance [`DIGEST_SECTION_INSTANCE_ID`](digest::DIGEST_SECTION_INSTANCE_ID), version [`DIGEST_SECTION_VERSION`](digest::DIGEST_SECTION_VERSION) |
/// | version | u8 | [`DIGEST_V1_VERSION`](digest::DIGEST_V1_VERSION) |
/// | algorithm | u8 | [`DIGEST_ALGORITHM_SHA256_SPARSE`](digest::DIGEST_ALGORITHM_SHA256_SPARSE) or [`DIGEST_ALGORITHM_SHA256_CHUNKED`](digest::DIGEST_ALGORITHM_SHA256_CHUNKED) |
/// | block count | be32 | `n`, equal to the MEM_SIZE block count |
/// | blocks | n × | `u8 len, idstr, be64 used_length, 32-byte digest`, MEM_SIZE order |
pub mod digest {
    /// The idstr of the digest section (SPEC.md §13.2).
    pub const DIGEST_SECTION_IDSTR: &str = "ramstream/ram-digest";

    /// The instance id of the digest section (SPEC.md §13.2).
    pub const DIGEST_SECTION_INSTANCE_ID: u32 = 0;

    /// The section version id of the digest section; a receiver refuses a higher one, as QEMU
    /// refuses a device section newer than it knows (SPEC.md §13.3).
    pub const DIGEST_SECTION_VERSION: u32 = 1;

    /// The first byte of the digest section body: the body layout version (SPEC.md §13.2).
    pub const DIGEST_V1_VERSION: u8 = 1;

    /// Algorithm byte: sha256 over `be64 page index ‖ page` for every page of the block that is
    /// not all zero, ascending; ballooned pages count as zero (SPEC.md §13.2).
    pub const DIGEST_ALGORITHM_SHA256_SPARSE: u8 = 1;

    /// Algorithm byte: the two-level sha256-chunked digest (SPEC.md §13.7): sha256 over
    /// `be64 chunk index ‖ chunk digest` for every chunk of
    /// [`DIGEST_CHUNK_PAGES`] pages whose sha256-sparse digest is not that of an all-zero
    /// chunk, ascending; a source keeps chunk digests across the precopy and re-hashes only
    /// the chunks dirtied since, so the stop-time cost follows the dirty pages, not RAM size.
    pub const DIGEST_ALGORITHM_SHA256_CHUNKED: u8 = 2;

    /// Target pages per chunk of the sha256-chunked digest (SPEC.md §13.7); the last chunk
    /// of a block may be shorter.
    pub const DIGEST_CHUNK_PAGES: u64 = 16;

    /// Length of a sha256 digest (SPEC.md §13.2).
    pub const DIGEST_SHA256_LEN: usize = 32;

    /// Bytes of the body before the per-block entries: version, algorithm, be32 count
    /// (SPEC.md §13.2).
    pub const DIGEST_V1_HEADER_LEN: usize = 1 + 1 + 4;
}

/// The reference machine's device sections (SPEC.md §13.6): the state of ramstream's
/// reference VMM as the reference sender writes it after the `ram` section's END.
pub mod reference {
    /// Machine type the reference sender writes in the configuration section (SPEC.md §13.6).
    pub const MACHINE_TYPE: &str = "ramstream-ref-v1";

    /// FULL section holding the vCPU state blob (`RSVC`…), be32-length-prefixed (SPEC.md §13.6).
    pub const VCPU_SECTION_IDSTR: &str = "ramstream/vcpu";

    /// FULL section holding the VM state blob (`RSVM`…: clock, irqchips, balloon),
    /// be32-length-prefixed (SPEC.md §13.6).
    pub const VM_SECTION_IDSTR: &str = "ramstream/vm";

    /// FULL section holding the memory layout as JSON, be32-length-prefixed (SPEC.md §13.6).
    pub const LAYOUT_SECTION_IDSTR: &str = "ramstream/memory-layout";

    /// Version id of the three reference device sections (SPEC.md §13.6).
    pub const SECTION_VERSION: u32 = 1;
}
