//! Limits a decoder enforces on untrusted input (SPEC.md §10).
//!
//! Each limit is a default; the codec's `Limits` lets a caller lower or raise it.

/// Most RAM blocks one MEM_SIZE record may list (SPEC.md §10).
pub const MAX_RAM_BLOCKS: usize = 4096;

/// Longest machine type name in the configuration section (SPEC.md §10).
pub const MAX_MACHINE_TYPE_LEN: u32 = 256;

/// Most capabilities in the capabilities subsection (SPEC.md §10).
pub const MAX_CAPABILITIES: u32 = 256;

/// Largest VMDESCRIPTION JSON trailer accepted: 64 MiB (SPEC.md §10).
pub const MAX_VMDESC_LEN: u32 = 64 * 1024 * 1024;

/// Largest FULL device section body accepted: 64 MiB (SPEC.md §10).
pub const MAX_DEVICE_SECTION_LEN: usize = 64 * 1024 * 1024;

/// Largest total RAM a MEM_SIZE record may announce by default: 16 TiB (SPEC.md §10).
pub const MAX_RAM_TOTAL: u64 = 16 << 40;

/// Most balloon runs one balloon record may carry (SPEC.md §9, §10).
pub const MAX_BALLOON_RUNS: u64 = 1 << 24;

/// Deepest nesting of vmsds (structs, subsections) the VMDESCRIPTION walker follows. QEMU
/// 7.2's pc and q35 machines nest at most 4 deep (SPEC.md §5.3, §10).
pub const MAX_VMDESC_DEPTH: usize = 32;

/// Most values one device section may decode into through the VMDESCRIPTION walker; array
/// elements count one each (SPEC.md §5.3, §10).
pub const MAX_VMDESC_VALUES: usize = 1 << 21;
