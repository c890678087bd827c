//! The configuration section and migration capability names (SPEC.md §3).

/// The vmstate name of the configuration section (SPEC.md §3).
pub const VMSD_NAME: &str = "configuration";

/// Every configuration subsection name starts with this (SPEC.md §3.2).
pub const SUBSECTION_PREFIX: &str = "configuration/";

/// Subsection carrying `be32 target_page_bits`; absent on x86 (SPEC.md §3.2).
pub const SUBSECTION_TARGET_PAGE_BITS: &str = "configuration/target-page-bits";

/// Subsection carrying the validated capabilities that are on (SPEC.md §3.2).
pub const SUBSECTION_CAPABILITIES: &str = "configuration/capabilities";

/// Subsection carrying the 16-byte VM UUID (SPEC.md §3.2).
pub const SUBSECTION_UUID: &str = "configuration/uuid";

/// The version id every configuration subsection carries (SPEC.md §3.2).
pub const SUBSECTION_VERSION: u32 = 1;

/// Length of the UUID subsection payload.
pub const UUID_LEN: usize = 16;

/// Migration capability names as they appear in the capabilities subsection and in QMP.
pub mod capability {
    /// `x-ignore-shared`: shared RAM blocks are not sent; MEM_SIZE carries `mr_addr`.
    pub const X_IGNORE_SHARED: &str = "x-ignore-shared";
    /// `mapped-ram` (QEMU 9.0+, `file:` migration): each MEM_SIZE block entry carries a
    /// header and the block's pages sit at fixed file offsets (SPEC.md §7.9). Read from files
    /// only (`ramstream_codec::MappedRam`).
    pub const MAPPED_RAM: &str = "mapped-ram";
    /// `postcopy-ram`: not listed in the configuration; changes MEM_SIZE (page_size field).
    pub const POSTCOPY_RAM: &str = "postcopy-ram";
    /// `xbzrle`: sender-side only; the destination needs nothing.
    pub const XBZRLE: &str = "xbzrle";
    /// `multifd`: page payloads travel on other channels. Recognised, not supported.
    pub const MULTIFD: &str = "multifd";
    /// `compress` (QEMU ≤ 9.0): zlib pages under flag 0x100. Recognised, not supported.
    pub const COMPRESS: &str = "compress";
    /// Every migration capability name QEMU 7.2 knows (`qapi/migration.json`,
    /// `MigrationCapability`). A 7.2 destination accepts these in the capabilities
    /// subsection (only `x-ignore-shared` is validated; the others are ignored) and rejects
    /// any other name with "Received unknown capability" (SPEC.md §3.3).
    pub const QEMU_7_2_ALL: &[&str] = &[
        "xbzrle",
        "rdma-pin-all",
        "auto-converge",
        "zero-blocks",
        "compress",
        "events",
        "postcopy-ram",
        "x-colo",
        "release-ram",
        "block",
        "return-path",
        "pause-before-switchover",
        "multifd",
        "dirty-bitmaps",
        "postcopy-blocktime",
        "late-block-activate",
        "x-ignore-shared",
        "validate-uuid",
        "background-snapshot",
        "zero-copy-send",
        "postcopy-preempt",
    ];
    /// ramstream's balloon extension, version 1 (SPEC.md §9). A real QEMU refuses a stream
    /// that lists it ("Received unknown capability"), which is the point: it never misparses.
    pub const RAMSTREAM_BALLOON_V1: &str = "x-ramstream-balloon-v1";
}
