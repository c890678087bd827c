//! A tiny KVM virtual machine monitor for ramstream's reference live migration.
//!
//! One [`Vm`] is one KVM virtual machine with one vCPU and guest RAM split into named
//! regions. On a *source* VM ([`Vm::new`]) the vCPU runs a guest program written in this
//! crate ([`guest_program`]) that keeps a heartbeat, rewrites a working set of pages with a
//! checkable pattern, verifies its memory on request and runs a simple balloon. On a
//! *destination* VM ([`Vm::new_destination`]) memory starts zeroed; the receiver writes pages
//! into it, restores the state blobs and resumes, then [`Vm::verify_guest`] proves the guest
//! runs and its memory is intact.
//!
//! ```no_run
//! use std::time::Duration;
//! use ramstream_reference_vmm::guest_abi::PAGE_SIZE;
//! use ramstream_reference_vmm::{GuestConfig, MemoryLayout, Vm, VcpuState, VmState};
//!
//! # fn main() -> ramstream_reference_vmm::Result<()> {
//! let layout = MemoryLayout::with_ram_size(64 << 20)?;
//! let mut src = Vm::new(&layout, &GuestConfig::default())?;
//! src.resume()?;
//! src.start_dirty_log()?;
//! let mut dst = Vm::new_destination(src.layout())?;
//! let mut page = [0u8; PAGE_SIZE];
//! // ... full copy and dirty rounds, then the final round with the source paused:
//! src.pause()?;
//! for log in src.dirty_logs()? {
//!     for addr in log.addrs() {
//!         src.memory().read_page(addr, &mut page)?;
//!         dst.memory().write_page(addr, &page)?;
//!     }
//! }
//! let vcpu = src.save_vcpu_state()?.to_bytes();
//! let vm = src.save_vm_state()?.to_bytes();
//! dst.restore_vm_state(&VmState::from_bytes(&vm)?)?;
//! dst.restore_vcpu_state(&VcpuState::from_bytes(&vcpu)?)?;
//! dst.resume()?;
//! assert!(dst.verify_guest(Duration::from_secs(10))?.check.passed());
//! # Ok(()) }
//! ```
//!
//! # Memory layout
//!
//! A [`MemoryLayout`] is a list of 1 to 4 regions (name, guest-physical base, size; all
//! 2 MiB aligned). Each region is one KVM memory slot (slot number = region index) and one
//! RAM block of the migration stream, whose idstr is the region's name. The default split,
//! [`MemoryLayout::with_ram_size`], is QEMU-like: `pc.ram` holds the lower half of RAM at
//! guest-physical 0, `ram1` the rest at 4 GiB, with a hole in between (so a block offset is
//! not a guest-physical address in `ram1`). The layout is `serde`-serializable so that the
//! receiver can build the same one.
//!
//! Memory is a vm-memory `GuestMemoryMmap` ([`memory::GuestMemoryMmap`]) with one anonymous
//! `MAP_NORESERVE` region per layout region: sparse until touched. [`GuestMemory`] reads and
//! writes whole pages by [`PageAddr`](ramstream_migrate::PageAddr) (region index as the block,
//! byte offset in the region) through vm-memory's `Bytes` API
//! (via `ramstream-migrate`'s `GuestMemoryRam`, which is also its
//! [`GuestRam`](ramstream_migrate::GuestRam), [`GuestMemory::ram`]) and discards ranges with
//! `MADV_DONTNEED`; vm-memory's dirty bitmap records the pages the VMM changed. *RAM page numbers* count pages over the regions in
//! layout order (region 0's pages first); the guest program and the balloon commands use them.
//!
//! # Guest memory map (all in region 0)
//!
//! | guest-physical | content |
//! |---|---|
//! | `0x0000_0000` | unused page |
//! | `0x0000_1000` | PML4 ([`guest_abi::PML4_GPA`]) |
//! | `0x0000_2000` | PDPT |
//! | `0x0000_3000` | page directories, one per GiB mapped (2 MiB pages, identity map, up to 16 GiB) |
//! | `0x0002_0000` | GDT: null, 64-bit code `0x08`, data `0x10`, TSS `0x18` |
//! | `0x0003_0000` | parameter block (one page) |
//! | `0x0004_0000` | guest program (entry point) |
//! | `0x0006_0000..0x0008_0000` | stack (grows down from `0x8_0000`) |
//! | `0x0010_0000` | generation table: one u64 per RAM page of all regions |
//! | [`MemoryLayout::reserved_pages`] onwards | free for the working set and the balloon |
//!
//! The vCPU starts in 64-bit mode with CR0=`0x80050033`, CR4=`0x620`, EFER=`0x501`,
//! interrupts off and no IDT; it uses only integer instructions, `rep stos`/`repe scas` and
//! port I/O (this project's nested KVM fails on SSE arithmetic, `xsave`, `rdtscp` …).
//!
//! # Parameter block
//!
//! Little-endian u64 words at `0x3_0000` + offset ([`guest_abi::param`]). "VMM" fields are
//! written by the VMM, "guest" fields by the guest program.
//!
//! | offset | field | by | meaning |
//! |---|---|---|---|
//! | `0x000` | MAGIC | VMM | `"RSGUEST1"` |
//! | `0x008` | VERSION | VMM | 1 |
//! | `0x010` | HEARTBEAT | guest | main-loop iterations |
//! | `0x018` | GENERATION | guest | current sweep, starts at 1 |
//! | `0x020` | CURSOR | guest | next working-set index |
//! | `0x028` | PAGES_WRITTEN | guest | pages written since start |
//! | `0x030` | WS_FIRST | VMM | first RAM page of the working set |
//! | `0x038` | WS_COUNT | VMM | working-set pages |
//! | `0x040` | PAGES_PER_LOOP | VMM | write rate (may change while running) |
//! | `0x048` | DELAY_LOOPS | VMM | spin per loop (may change while running) |
//! | `0x050` | FILL | VMM | 1: fill pages with the tag; 0: header and last word |
//! | `0x058` | GEN_TABLE | VMM | address of the generation table |
//! | `0x060` | TOTAL_PAGES | VMM | RAM pages over all regions |
//! | `0x068` | REGION_COUNT | VMM | regions in the table below |
//! | `0x070` | REGIONS | VMM | 4 × (gpa, pages) |
//! | `0x0B0` | RESERVED_PAGES | VMM | RAM pages owned by the program |
//! | `0x100` | CMD | VMM | command code: 1 inflate, 2 deflate, 3 self-check, 4 stop |
//! | `0x108`, `0x110` | CMD_ARG0, CMD_ARG1 | VMM | first RAM page, page count |
//! | `0x118` | CMD_SEQ | VMM | bumped after CMD and arguments are written |
//! | `0x120` | CMD_ACK | guest | set to CMD_SEQ when the command is done |
//! | `0x128` | CMD_STATUS | guest | 0 ok, 1 unknown command, 2 bad range |
//! | `0x130..0x150` | CHECK_OK, CHECK_ZERO, CHECK_BAD, CHECK_FIRST_BAD, CHECK_BALLOONED | guest | self-check result |
//! | `0x158` | BALLOON_PAGES | guest | pages in the balloon |
//! | `0x160`, `0x168` | REPORT_FIRST, REPORT_COUNT | guest | range of a balloon report |
//! | `0x170` | IDLE_US | VMM | idle this long per iteration (`out 0x514`) instead of spinning; 0: spin |
//!
//! # The guest program and its page pattern
//!
//! Each main-loop iteration: increment HEARTBEAT; if CMD_SEQ ≠ CMD_ACK, run the command;
//! write PAGES_PER_LOOP pages of the working set at CURSOR (wrapping, GENERATION + 1 per
//! wrap); spin DELAY_LOOPS times, or, when IDLE_US ≠ 0, `out 0x514` instead: the VMM parks
//! the vCPU thread for IDLE_US µs (less if a command, pause or stop comes), so an idle guest
//! costs no CPU. Writing RAM page `n` in generation `g` first records `g` in
//! the generation table, then gives the page exactly [`guest_abi::expected_page`]`(n, g)`:
//! word 0 = `n`, word 1 = `g`, word 2 = tag = [`guest_abi::page_tag`]`(n, g)`, and words
//! 3..511 = tag (FILL=1) or zero with word 511 = tag (FILL=0).
//!
//! **Self-check** (command 3) walks the working set: a page whose table entry is `g ≥ 1` must
//! equal `expected_page(n, g)`; an entry of 0 (never written, or given back by the balloon)
//! requires an all-zero page; ballooned pages (entry `u64::MAX`) are skipped, not read. It
//! reports counts in the CHECK_* fields and does `out 0x513`.
//!
//! Ports (`out dx, eax`): `0x510` stopped (after command 4, then `hlt` for good), `0x511`
//! balloon inflate report, `0x512` balloon deflate report, `0x513` self-check done, `0x514` idle,
//! `0x51F` guest error.
//!
//! # Balloon protocol
//!
//! Simplified virtio-balloon with `VIRTIO_BALLOON_F_MUST_TELL_HOST` semantics, over the
//! mailbox and ports above:
//!
//! 1. **Inflate** ([`Vm::balloon_inflate`], [`Vm::balloon_inflate_percent`]): the VMM posts
//!    command 1 with a RAM page range. The guest refuses ranges that touch its own pages or
//!    leave RAM (status 2); otherwise it marks every page `u64::MAX` in its generation table
//!    (so it never writes or reads them again), copies the range to REPORT_FIRST/COUNT and
//!    does `out 0x511`. On that exit the VMM `madvise(MADV_DONTNEED)`s the range (it reads as
//!    zero from then on), records it in its per-region balloon bitmap, and resumes the guest,
//!    which then acknowledges the command.
//! 2. **Deflate** ([`Vm::balloon_deflate`], [`Vm::balloon_deflate_all`]): command 2. The guest
//!    tells the host first (`out 0x512`; the VMM removes the range from its bitmap and
//!    discards it again), then sets the table entries back to 0: the pages are usable and
//!    read as zero until the guest writes them.
//!
//! [`Vm::balloon_runs`] lists the ballooned pages per region as the codec's one run type,
//! [`PageRun`](ramstream_migrate::PageRun) (first page and count, in 4 KiB pages from the
//! region's start, the unit of a v1 balloon record); they travel in the VM state blob as
//! `(region, run)` pairs ([`VmState::balloon`]). Discards are VMM changes to memory and appear
//! once in the merged dirty log, so a sender that copies dirty pages also zeroes them on the
//! destination; a sender that understands the balloon can skip them instead.
//!
//! # Run control
//!
//! [`Vm::resume`] starts a vCPU thread; [`Vm::pause`] sets a flag and sends the thread the
//! real-time signal [`vcpu::kick_signal`] (repeated until it returns) so that `KVM_RUN` ends
//! with `EINTR`; the thread hands the vCPU back. Fatal exits become typed errors:
//! [`Error::GuestInternalError`] (`KVM_EXIT_INTERNAL_ERROR`, with suberror and RIP),
//! [`Error::GuestShutdown`] (triple fault), [`Error::FailEntry`], [`Error::UnexpectedExit`].
//!
//! # Dirty tracking
//!
//! [`Vm::start_dirty_log`] sets `KVM_MEM_LOG_DIRTY_PAGES` on every slot (only while
//! migrating: it slows the guest's writes down); [`Vm::dirty_log`] does `KVM_GET_DIRTY_LOG`
//! (get and clear) for one region and merges the pages the VMM wrote or discarded itself since
//! the previous call (KVM does not log those; vm-memory's dirty bitmap does), as a
//! [`DirtyBitmap`].
//!
//! # State blobs
//!
//! [`VcpuState::to_bytes`] and [`VmState::to_bytes`] produce versioned blobs for the FULL
//! device sections of the migration stream. Layout: 4 magic bytes (`RSVC` vCPU, `RSVM` VM),
//! version byte `1`, three zero bytes, then records `tag: u32 LE, len: u32 LE, payload`.
//! Each tag appears at most once, written in ascending order; readers reject unknown or
//! repeated tags, wrong lengths, missing required records and truncation
//! ([`Error::StateFormat`] with the byte offset). Kernel-struct payloads are byte images of
//! the x86-64 KVM UAPI structs (`<linux/kvm.h>`), a stable kernel ABI.
//!
//! | vCPU tag | payload | bytes |
//! |---|---|---|
//! | 1 | `kvm_sregs` | 312 |
//! | 2 | `kvm_regs` | 144 |
//! | 3 | `kvm_fpu` | 416 |
//! | 4 | `kvm_xsave` (optional, without `KVM_CAP_XSAVE`) | 4096 |
//! | 5 | `kvm_xcrs` (optional, without `KVM_CAP_XCRS`) | 392 |
//! | 6 | `kvm_lapic_state` | 1024 |
//! | 7 | MSRs: n × `kvm_msr_entry` (index u32, 0 u32, value u64) | 16·n |
//! | 8 | `kvm_vcpu_events` | 64 |
//! | 9 | `kvm_mp_state` | 4 |
//! | 10 | `kvm_debugregs` | 128 |
//!
//! The tags follow the restore order: sregs, regs, fpu, xsave, xcrs, lapic, msrs,
//! vcpu_events, mp_state, debug_regs. The MSRs are [`state::CAPTURED_MSRS`] (TSC, EFER, STAR,
//! LSTAR, CSTAR, FMASK, FS/GS_BASE, KERNEL_GS_BASE, TSC_AUX, SYSENTER_CS/ESP/EIP, PAT,
//! MISC_ENABLE, TSC_DEADLINE) as far as the host's KVM can read them.
//!
//! | VM tag | payload | bytes |
//! |---|---|---|
//! | 1 | `kvm_clock_data` (only `clock` is restored) | 48 |
//! | 2, 3, 4 | `kvm_irqchip` of PIC master, PIC slave, IOAPIC | 520 each |
//! | 5 | balloon: u64 n, then n × (u64 region, u64 first page, u64 page count) | 8 + 24·n |
//!
//! # Unsafe code
//!
//! All of it is in the private `sys` module (`madvise` for the balloon, memory slots,
//! `set_xsave`, `kvm_run` union access), each block with a `// SAFETY:` comment; every other
//! module is `#![forbid(unsafe_code)]`. Mapping guest memory and copying in and out of it is
//! vm-memory's business.

pub mod balloon;
pub mod boot;
pub mod dirty;
pub mod error;
pub mod guest_abi;
pub mod guest_program;
pub mod memory;
mod pagemap;
pub mod state;
mod sys;
pub mod vcpu;
pub mod vm;

pub use boot::GuestConfig;
pub use dirty::DirtyBitmap;
pub use error::{Error, Result};
pub use memory::{GuestMemory, MemoryLayout, RegionSpec};
pub use state::{MsrValue, VcpuState, VmState};
pub use vm::{GuestCounters, GuestVerification, RunStatus, SelfCheck, Vm};
