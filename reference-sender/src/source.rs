//! Where the pages come from: the [`GuestSource`] trait and the real KVM guest
//! ([`KvmSource`]). A scripted fake guest for tests is `ramstream-test-support`'s
//! `ScriptedGuest`.

use std::sync::Arc;

use ramstream_codec::balloon::PageRun;
use ramstream_codec::extension::digest::digest_block;
use ramstream_codec::PageAddr;
use ramstream_reference_vmm::{DirtyBitmap, GuestMemory, MemoryLayout, RunStatus, Vm};
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use crate::error::GuestError;

/// The device state a guest hands over at stop time, as the FULL sections carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBlobs {
    /// The vCPU state blob ([`VcpuState::to_bytes`](ramstream_reference_vmm::VcpuState::to_bytes)).
    pub vcpu: Vec<u8>,
    /// The VM state blob ([`VmState::to_bytes`](ramstream_reference_vmm::VmState::to_bytes): clock, interrupt controllers, balloon).
    pub vm: Vec<u8>,
    /// The memory layout as JSON.
    pub layout: Vec<u8>,
}

/// A running guest that can be migrated: its RAM blocks, pages, dirty log, balloon and
/// device state.
///
/// Blocks are the regions of the guest's [`MemoryLayout`], in layout order; a block's idstr
/// is its region name. Pages are addressed by [`PageAddr`] (block index, byte offset in the
/// block); runs of pages (the balloon's) are [`PageRun`]s.
pub trait GuestSource {
    /// The memory layout (one RAM block per region).
    fn layout(&self) -> &MemoryLayout;

    /// Copies the page at `addr` into `dst` (one x86 target page,
    /// [`TARGET_PAGE_SIZE_X86`](ramstream_spec::ram::TARGET_PAGE_SIZE_X86) bytes, at a
    /// page-aligned offset).
    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError>;

    /// Marks which of the `zero.len()` target pages from `addr` read as zero for certain
    /// without being read (memory the host never backed); `false` where unknown. The
    /// default knows nothing.
    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        let _ = addr;
        zero.fill(false);
        Ok(())
    }

    /// Turns dirty logging on (only while migrating: it slows the guest's writes).
    fn start_dirty_log(&mut self) -> Result<(), GuestError>;

    /// Turns dirty logging off.
    fn stop_dirty_log(&mut self) -> Result<(), GuestError>;

    /// Gets and clears the pages dirtied since the previous call, one bitmap per block.
    fn sync_dirty(&mut self) -> Result<Vec<DirtyBitmap>, GuestError>;

    /// The ballooned pages: one list of runs per block (indexed by block, one per region of
    /// [`GuestSource::layout`]), each sorted by first page, in target pages counted from the
    /// block's start (the unit of a v1 balloon record, SPEC.md §9.5). Their contents are zero
    /// and need not be sent.
    fn ballooned_runs(&self) -> Vec<Vec<PageRun>>;

    /// Stops the vCPU.
    fn pause(&mut self) -> Result<(), GuestError>;

    /// Lets the vCPU run again.
    fn resume(&mut self) -> Result<(), GuestError>;

    /// Whether the vCPU is running.
    fn is_running(&mut self) -> bool;

    /// The device state. The guest must be paused.
    fn state_blobs(&mut self) -> Result<StateBlobs, GuestError>;

    /// A reader of the guest's pages that other threads may use while this guest is driven
    /// here (the multifd channel writers of [`migrate_multifd`](crate::migrate_multifd)):
    /// `None`, the default, for a guest that has none, and multifd is refused for it.
    fn page_reader(&self) -> Option<Arc<dyn PageReader>> {
        None
    }

    /// The sha256-sparse digest of every block ([`digest_block`]), ballooned pages counted
    /// as zero without being read (SPEC.md §13.2). The guest must be paused.
    fn block_digests(&self) -> Result<Vec<[u8; DIGEST_SHA256_LEN]>, GuestError> {
        let runs = self.ballooned_runs();
        let layout = self.layout();
        (0..layout.regions.len())
            .map(|b| {
                let pages = layout.regions[b].pages();
                let ballooned = runs.get(b).map_or(&[][..], Vec::as_slice);
                digest_block(pages, PAGE_SIZE, ballooned, |p, buf| {
                    self.read_page(PageAddr::of_page(b, p, PAGE_SIZE), buf)
                })
            })
            .collect()
    }
}

/// The runs of block `block`'s `pages` pages that the host never backed (they read as zero),
/// from [`GuestMemory::known_zero_pages`], asked 4096 pages at a time.
fn unbacked_runs(
    mem: &GuestMemory,
    block: usize,
    pages: u64,
) -> Result<Vec<PageRun>, ramstream_reference_vmm::Error> {
    const CHUNK: u64 = 4096;
    let mut runs: Vec<PageRun> = Vec::new();
    let mut zero = vec![false; CHUNK as usize];
    let mut first = 0;
    while first < pages {
        let n = (pages - first).min(CHUNK);
        let zero = &mut zero[..n as usize];
        mem.known_zero_pages(PageAddr::of_page(block, first, PAGE_SIZE), zero)?;
        for (i, _) in zero.iter().enumerate().filter(|(_, &z)| z) {
            let p = first + i as u64;
            match runs.last_mut() {
                Some(r) if r.end() == p => r.count += 1,
                _ => runs.push(PageRun::new(p, 1)),
            }
        }
        first += n;
    }
    Ok(runs)
}

/// Pages of a guest's memory, readable from any thread while the guest runs (a copy of a
/// page being written may be torn, which the dirty log repairs: the page is sent again).
pub trait PageReader: Send + Sync {
    /// Copies the page at `addr` into `dst` (one target page at a page-aligned offset).
    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError>;

    /// [`GuestSource::known_zero_pages`], from any thread. The default knows nothing.
    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        let _ = addr;
        zero.fill(false);
        Ok(())
    }
}

/// The reference VMM's guest memory, shared with its vCPU.
impl PageReader for GuestMemory {
    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError> {
        Ok(GuestMemory::read_page(self, addr, dst)?)
    }

    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        Ok(GuestMemory::known_zero_pages(self, addr, zero)?)
    }
}

/// The real guest: a source [`Vm`] of the reference VMM.
#[derive(Debug)]
pub struct KvmSource {
    vm: Vm,
    layout: MemoryLayout,
}

impl KvmSource {
    /// Wraps a source VM (running or paused).
    pub fn new(vm: Vm) -> Self {
        let layout = vm.layout().clone();
        KvmSource { vm, layout }
    }

    /// The VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The VM, mutably (balloon commands, verification).
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }

    /// Gives the VM back.
    pub fn into_vm(self) -> Vm {
        self.vm
    }

    fn memory(&self) -> Arc<GuestMemory> {
        Arc::clone(self.vm.memory())
    }
}

impl GuestSource for KvmSource {
    fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError> {
        Ok(self.vm.memory().read_page(addr, dst)?)
    }

    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        Ok(self.vm.memory().known_zero_pages(addr, zero)?)
    }

    fn start_dirty_log(&mut self) -> Result<(), GuestError> {
        Ok(self.vm.start_dirty_log()?)
    }

    fn stop_dirty_log(&mut self) -> Result<(), GuestError> {
        Ok(self.vm.stop_dirty_log()?)
    }

    fn sync_dirty(&mut self) -> Result<Vec<DirtyBitmap>, GuestError> {
        Ok(self.vm.dirty_logs()?)
    }

    fn ballooned_runs(&self) -> Vec<Vec<PageRun>> {
        self.vm.balloon_runs()
    }

    fn page_reader(&self) -> Option<Arc<dyn PageReader>> {
        Some(self.memory())
    }

    fn pause(&mut self) -> Result<(), GuestError> {
        Ok(self.vm.pause()?)
    }

    fn resume(&mut self) -> Result<(), GuestError> {
        Ok(self.vm.resume()?)
    }

    fn is_running(&mut self) -> bool {
        self.vm.status() == RunStatus::Running
    }

    fn state_blobs(&mut self) -> Result<StateBlobs, GuestError> {
        Ok(StateBlobs {
            vcpu: self.vm.save_vcpu_state()?.to_bytes(),
            vm: self.vm.save_vm_state()?.to_bytes(),
            layout: serde_json::to_vec(&self.layout)
                .map_err(|e| GuestError::Other(format!("layout JSON: {e}")))?,
        })
    }

    /// Hashes the blocks in parallel, one thread per block.
    fn block_digests(&self) -> Result<Vec<[u8; DIGEST_SHA256_LEN]>, GuestError> {
        let runs = self.ballooned_runs();
        let mem = self.memory();
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .layout
                .regions
                .iter()
                .enumerate()
                .map(|(b, r)| {
                    let mem = &mem;
                    let runs = runs.get(b).map_or(&[][..], Vec::as_slice);
                    let pages = r.pages();
                    s.spawn(move || {
                        // Pages never backed are zero: skipped like ballooned ones, without
                        // the page fault a read of them would take.
                        let mut skip = unbacked_runs(mem, b, pages)?;
                        skip.extend_from_slice(runs);
                        digest_block(pages, PAGE_SIZE, &skip, |p, buf| {
                            mem.read_page(PageAddr::of_page(b, p, PAGE_SIZE), buf)
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| GuestError::Other("digest thread panicked".into()))?
                        .map_err(GuestError::from)
                })
                .collect()
        })
    }
}
