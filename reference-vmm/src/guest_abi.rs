//! The contract between the VMM and the guest program: where things live in guest memory, the
//! parameter block's fields, the I/O ports, the command codes and the page pattern.
//!
//! All values are little-endian u64 words. See the crate docs for the tables.

#![forbid(unsafe_code)]

/// Bytes per guest page: the x86 target page size of the migration stream (SPEC.md §6.1),
/// written once in the spec crate.
pub use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

/// Guest-physical address of the PML4 (the page tables follow: PDPT, then one PD per GiB).
pub const PML4_GPA: u64 = 0x1000;
/// Guest-physical address of the PDPT.
pub const PDPT_GPA: u64 = 0x2000;
/// Guest-physical address of the first page directory (one 4 KiB PD per GiB mapped).
pub const PD_GPA: u64 = 0x3000;
/// Most page directories the layout allows: guest-physical space is mapped up to 16 GiB.
pub const MAX_PDS: u64 = 16;
/// Guest-physical address of the GDT (null, code, data, TSS descriptors).
pub const GDT_GPA: u64 = 0x2_0000;
/// Guest-physical address of the parameter block (one page).
pub const PARAM_GPA: u64 = 0x3_0000;
/// Guest-physical address where the guest program is loaded and starts.
pub const CODE_GPA: u64 = 0x4_0000;
/// Largest guest program the map leaves room for.
pub const CODE_MAX: usize = 0x2_0000;
/// Initial stack pointer (the stack grows down from here to `CODE_GPA + CODE_MAX`).
pub const STACK_TOP: u64 = 0x8_0000;
/// Guest-physical address of the generation table: one u64 per RAM page of all regions.
pub const GEN_TABLE_GPA: u64 = 0x10_0000;

/// Parameter block magic, "RSGUEST1" as a little-endian word.
pub const PARAM_MAGIC: u64 = u64::from_le_bytes(*b"RSGUEST1");
/// Version of the parameter block layout.
pub const PARAM_VERSION: u64 = 1;

/// Offsets of the parameter block's u64 fields, relative to [`PARAM_GPA`].
pub mod param {
    /// `PARAM_MAGIC` (VMM).
    pub const MAGIC: u64 = 0x000;
    /// `PARAM_VERSION` (VMM).
    pub const VERSION: u64 = 0x008;
    /// Incremented once per main-loop iteration (guest).
    pub const HEARTBEAT: u64 = 0x010;
    /// Current sweep generation, starts at 1 (guest).
    pub const GENERATION: u64 = 0x018;
    /// Next working-set index to write (guest).
    pub const CURSOR: u64 = 0x020;
    /// Pages written since start (guest).
    pub const PAGES_WRITTEN: u64 = 0x028;
    /// First RAM page number of the working set (VMM).
    pub const WS_FIRST: u64 = 0x030;
    /// Working-set size in pages; 0 = write nothing (VMM).
    pub const WS_COUNT: u64 = 0x038;
    /// Pages written per main-loop iteration (VMM, may change while running).
    pub const PAGES_PER_LOOP: u64 = 0x040;
    /// Spin iterations after each main-loop iteration (VMM, may change while running).
    pub const DELAY_LOOPS: u64 = 0x048;
    /// 1 = fill whole pages with the tag, 0 = header and last word only (VMM).
    pub const FILL: u64 = 0x050;
    /// Guest-physical address of the generation table (VMM).
    pub const GEN_TABLE: u64 = 0x058;
    /// Number of RAM pages over all regions (VMM).
    pub const TOTAL_PAGES: u64 = 0x060;
    /// Number of regions in `REGIONS` (VMM).
    pub const REGION_COUNT: u64 = 0x068;
    /// Up to 4 `(gpa, pages)` pairs, in RAM page number order (VMM).
    pub const REGIONS: u64 = 0x070;
    /// RAM page numbers below this belong to the guest program itself (VMM).
    pub const RESERVED_PAGES: u64 = 0x0B0;
    /// Command code (VMM).
    pub const CMD: u64 = 0x100;
    /// Command argument 0: first RAM page (VMM).
    pub const CMD_ARG0: u64 = 0x108;
    /// Command argument 1: page count (VMM).
    pub const CMD_ARG1: u64 = 0x110;
    /// Incremented by the VMM after writing `CMD` and its arguments.
    pub const CMD_SEQ: u64 = 0x118;
    /// Set to `CMD_SEQ` by the guest when the command is done.
    pub const CMD_ACK: u64 = 0x120;
    /// Command status, 0 = ok (guest).
    pub const CMD_STATUS: u64 = 0x128;
    /// Self-check: written pages that matched their pattern (guest).
    pub const CHECK_OK: u64 = 0x130;
    /// Self-check: never-written pages that read all zero (guest).
    pub const CHECK_ZERO: u64 = 0x138;
    /// Self-check: pages that did not match (guest).
    pub const CHECK_BAD: u64 = 0x140;
    /// Self-check: first bad RAM page number, or `u64::MAX` (guest).
    pub const CHECK_FIRST_BAD: u64 = 0x148;
    /// Self-check: pages skipped because they are in the balloon (guest).
    pub const CHECK_BALLOONED: u64 = 0x150;
    /// Pages currently in the guest's balloon (guest).
    pub const BALLOON_PAGES: u64 = 0x158;
    /// Balloon report: first RAM page of the range being inflated/deflated (guest).
    pub const REPORT_FIRST: u64 = 0x160;
    /// Balloon report: page count (guest).
    pub const REPORT_COUNT: u64 = 0x168;
    /// Idle time per main-loop iteration in microseconds (VMM): when non-zero the guest
    /// does not spin `DELAY_LOOPS` but writes [`port::IDLE`](super::port::IDLE), and the VMM
    /// parks the vCPU thread that long (ending early for a command, a pause or a stop), so
    /// an idle guest costs no CPU.
    pub const IDLE_US: u64 = 0x170;
    /// Number of region slots in `REGIONS`.
    pub const MAX_REGIONS: usize = 4;
}

/// I/O ports the guest writes (`out dx, eax`).
pub mod port {
    /// The guest acknowledged `CMD_STOP` and halts.
    pub const STOPPED: u16 = 0x510;
    /// Balloon inflate: the range in `REPORT_FIRST`/`REPORT_COUNT` is no longer used.
    pub const BALLOON_INFLATE: u16 = 0x511;
    /// Balloon deflate: the guest takes the reported range back.
    pub const BALLOON_DEFLATE: u16 = 0x512;
    /// Self-check finished; `eax` = number of bad pages (low 32 bits).
    pub const CHECK_DONE: u16 = 0x513;
    /// The guest is idle until its next main-loop iteration (`param::IDLE_US`).
    pub const IDLE: u16 = 0x514;
    /// The guest hit an internal error; `eax` = error code.
    pub const ERROR: u16 = 0x51F;
}

/// Command codes for the `CMD` field.
pub mod cmd {
    /// Inflate the balloon by `ARG1` pages from RAM page `ARG0`.
    pub const INFLATE: u64 = 1;
    /// Deflate the balloon for `ARG1` pages from RAM page `ARG0`.
    pub const DEFLATE: u64 = 2;
    /// Walk the working set and verify every page.
    pub const SELF_CHECK: u64 = 3;
    /// Stop: acknowledge, `out` to `port::STOPPED`, halt.
    pub const STOP: u64 = 4;
}

/// Command status codes for the `CMD_STATUS` field.
pub mod status {
    /// Done.
    pub const OK: u64 = 0;
    /// Unknown command code.
    pub const UNKNOWN_COMMAND: u64 = 1;
    /// The page range is empty, reserved, or beyond RAM.
    pub const BAD_RANGE: u64 = 2;
}

/// Generation-table value marking a page that is in the balloon.
pub const GEN_BALLOONED: u64 = u64::MAX;

const TAG_K1: u64 = 0x9E37_79B9_7F4A_7C15;
const TAG_K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const TAG_K3: u64 = 0x5241_4D53_5452_4D21;

/// The tag word of RAM page `page` written in generation `generation`.
pub fn page_tag(page: u64, generation: u64) -> u64 {
    page.wrapping_mul(TAG_K1) ^ generation.wrapping_mul(TAG_K2) ^ TAG_K3
}

/// The exact content the guest gives RAM page `page` in `generation` (`fill` as configured).
pub fn expected_page(page: u64, generation: u64, fill: bool) -> [u8; PAGE_SIZE] {
    let tag = page_tag(page, generation);
    let mut out = [0u8; PAGE_SIZE];
    out[0..8].copy_from_slice(&page.to_le_bytes());
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    if fill {
        for word in out[16..].chunks_exact_mut(8) {
            word.copy_from_slice(&tag.to_le_bytes());
        }
    } else {
        out[16..24].copy_from_slice(&tag.to_le_bytes());
        out[PAGE_SIZE - 8..].copy_from_slice(&tag.to_le_bytes());
    }
    out
}

pub(crate) const TAG_CONSTANTS: (u64, u64, u64) = (TAG_K1, TAG_K2, TAG_K3);
