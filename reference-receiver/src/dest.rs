//! Where the pages go: the [`Destination`] trait (guest RAM as [`GuestRam`] plus the
//! reference machine's restore, resume and verify) and the real KVM guest
//! ([`KvmDestination`]). An in-memory fake for tests is `ramstream-test-support`'s
//! `FakeDestination`.

use std::sync::Arc;
use std::time::Duration;

use ramstream_codec::balloon::BalloonMap;
use ramstream_codec::extension::digest::DigestSection;
use ramstream_codec::PageAddr;
use ramstream_migrate::{DigestReport, GuestRam, Loader, PageRun, RamBlockLayout};
use ramstream_reference_vmm::{MemoryLayout, VcpuState, Vm, VmState};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;
use serde::{Deserialize, Serialize};

pub use crate::digest_memory::DigestMemory;

/// Proof that the destination guest runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Heartbeat when verification started.
    pub heartbeat_before: u64,
    /// Heartbeat after it advanced.
    pub heartbeat_after: u64,
    /// Whether the guest's self-check passed.
    pub self_check_passed: bool,
    /// Pages the self-check found intact.
    pub ok_pages: u64,
    /// Pages the self-check found corrupted.
    pub bad_pages: u64,
    /// Pages the self-check skipped as ballooned.
    pub ballooned_pages: u64,
}

impl Verification {
    /// Whether the guest proved that it runs intact: its heartbeat advanced and its
    /// self-check passed.
    pub fn passed(&self) -> bool {
        self.self_check_passed && self.heartbeat_after > self.heartbeat_before
    }
}

/// What a destination refused or failed to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestError {
    /// The reference VMM failed: mapping memory, a KVM call, a malformed state blob, a page
    /// outside a region, the guest itself.
    #[error(transparent)]
    Vmm(#[from] ramstream_reference_vmm::Error),
    /// A memory access that is not whole pages at a page-aligned offset (the reference VMM
    /// reads and writes 4 KiB pages).
    #[error(
        "guest memory access of {len} bytes at block {block} offset {offset:#x} is not whole pages"
    )]
    NotWholePages {
        /// The block (region) index.
        block: usize,
        /// The byte offset in the block.
        offset: u64,
        /// The access's length.
        len: usize,
    },
}

/// A destination guest that a stream is loaded into: its RAM, read and written by page
/// address through [`GuestRam`] (no `&mut [u8]` into guest memory), and the reference
/// machine's device state, resume and proof of life.
///
/// The RAM blocks ([`GuestRam::layout`]) are the regions of [`Destination::memory_layout`],
/// in order ([`ram_blocks`]).
pub trait Destination: GuestRam<Error = DestError> {
    /// The layout the destination was built with.
    fn memory_layout(&self) -> &MemoryLayout;
    /// Restores the vCPU and VM state blobs (the VM blob's balloon runs are discarded: they
    /// read as zero); returns the balloon runs as [`VmState::balloon`] lists them:
    /// `(region, run)` pairs, the run in 4 KiB target pages counted from the region's start.
    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<(usize, PageRun)>, DestError>;
    /// Starts the guest.
    fn resume(&mut self) -> Result<(), DestError>;
    /// Reports whether the resumed guest runs: its heartbeat and its self-check.
    fn verify(&mut self, timeout: Duration) -> Result<Verification, DestError>;
    /// Whether the guest was resumed.
    fn resumed(&self) -> bool;
    /// The guest memory for a thread that hashes the running digest while the loader
    /// writes (SPEC.md §13.7, the receive loop's digest worker); `None`, the default: the
    /// loader hashes ahead on the loading thread.
    fn digest_memory(&self) -> Option<DigestMemory> {
        None
    }
    /// Checks the digest section against this memory (SPEC.md §13.4), `ballooned` counted
    /// as zero. The default hashes on the calling thread; a destination whose memory may be
    /// read from several threads hashes the chunks of a sha256-chunked digest on all cores
    /// (SPEC.md §13.7), to keep the check short inside the downtime.
    fn verify_digest(
        loader: &Loader<Self>,
        section: &DigestSection,
        ballooned: &BalloonMap,
    ) -> Result<DigestReport, ramstream_migrate::Error>
    where
        Self: Sized,
    {
        loader.verify_digest_with(section, ballooned)
    }
}

/// The RAM blocks of `layout`: each region's name and size, in region order.
pub fn ram_blocks(layout: &MemoryLayout) -> Vec<RamBlockLayout> {
    layout
        .regions
        .iter()
        .map(|r| RamBlockLayout::new(r.name.clone(), r.size))
        .collect()
}

/// The run of target pages ([`TARGET_PAGE_SIZE_X86`](ramstream_spec::ram::TARGET_PAGE_SIZE_X86)
/// bytes each, counted from the block's start) that an access of `len` bytes at `addr` (a byte
/// offset, as the codec addresses pages) covers, if it covers whole pages from a page-aligned
/// offset.
pub fn whole_pages(addr: PageAddr, len: usize) -> Result<PageRun, DestError> {
    addr.offset
        .checked_add(len as u64)
        .and_then(|end| PageRun::of_bytes(addr.offset..end, PAGE_SIZE))
        .filter(|run| run.count > 0)
        .ok_or(DestError::NotWholePages {
            block: addr.block,
            offset: addr.offset,
            len,
        })
}

/// The real destination: a reference-VMM VM built with [`Vm::new_destination`].
#[derive(Debug)]
pub struct KvmDestination {
    vm: Vm,
    blocks: Vec<RamBlockLayout>,
    resumed: bool,
}

impl KvmDestination {
    /// Builds the destination VM for `layout`.
    pub fn new(layout: &MemoryLayout) -> Result<Self, DestError> {
        Ok(KvmDestination {
            vm: Vm::new_destination(layout)?,
            blocks: ram_blocks(layout),
            resumed: false,
        })
    }

    /// The VM.
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

/// Pages by address over the VM's memory, one page per call to the VMM.
impl GuestRam for KvmDestination {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), DestError> {
        let run = whole_pages(addr, buf.len())?;
        let mem = self.vm.memory();
        for (at, page) in run
            .addrs(addr.block, PAGE_SIZE)
            .zip(buf.chunks_exact_mut(PAGE_SIZE))
        {
            mem.read_page(at, page)?;
        }
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        let run = whole_pages(addr, data.len())?;
        let mem = self.vm.memory();
        for (at, page) in run
            .addrs(addr.block, PAGE_SIZE)
            .zip(data.chunks_exact(PAGE_SIZE))
        {
            mem.write_page(at, page)?;
        }
        Ok(())
    }

    /// Pages the host never backed (`/proc/self/pagemap`: neither present nor swapped out):
    /// a fresh destination's pages a stream never wrote, or discarded ones. The digest check
    /// then does not read (and fault in) them.
    fn known_zero_pages(
        &self,
        addr: PageAddr,
        page_size: usize,
        zero: &mut [bool],
    ) -> Result<(), DestError> {
        if page_size == PAGE_SIZE {
            self.vm.memory().known_zero_pages(addr, zero)?;
        } else {
            zero.fill(false);
        }
        Ok(())
    }

    /// Discards the pages (`MADV_DONTNEED`): they read as zero and give memory back.
    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), DestError> {
        let run = whole_pages(addr, len)?;
        Ok(self.vm.memory().discard_pages(addr.block, run)?)
    }
}

impl Destination for KvmDestination {
    fn memory_layout(&self) -> &MemoryLayout {
        self.vm.layout()
    }

    fn digest_memory(&self) -> Option<DigestMemory> {
        Some(DigestMemory::new(
            Arc::clone(self.vm.memory()),
            self.blocks.clone(),
        ))
    }

    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<(usize, PageRun)>, DestError> {
        // The state goes into a VM whose memory slots are registered, as it was captured.
        self.vm.slots_ready()?;
        let vm_state = VmState::from_bytes(vm)?;
        let vcpu_state = VcpuState::from_bytes(vcpu)?;
        self.vm.restore_vm_state(&vm_state)?;
        self.vm.restore_vcpu_state(&vcpu_state)?;
        Ok(vm_state.balloon)
    }

    fn resume(&mut self) -> Result<(), DestError> {
        self.vm.resume()?;
        self.resumed = true;
        Ok(())
    }

    fn verify(&mut self, timeout: Duration) -> Result<Verification, DestError> {
        let v = self.vm.verify_guest(timeout)?;
        Ok(Verification {
            heartbeat_before: v.heartbeat_before,
            heartbeat_after: v.heartbeat_after,
            self_check_passed: v.check.passed(),
            ok_pages: v.check.ok_pages,
            bad_pages: v.check.bad_pages,
            ballooned_pages: v.check.ballooned_pages,
        })
    }

    fn resumed(&self) -> bool {
        self.resumed
    }

    fn verify_digest(
        loader: &Loader<Self>,
        section: &DigestSection,
        ballooned: &BalloonMap,
    ) -> Result<DigestReport, ramstream_migrate::Error> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        loader.verify_digest_parallel(section, ballooned, threads)
    }
}
