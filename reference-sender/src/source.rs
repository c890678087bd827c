//! Where the pages come from: the [`GuestSource`] trait, the real KVM guest
//! ([`KvmSource`]) and a scripted fake guest for tests ([`ScriptedGuest`]).

use std::cell::Cell;
use std::sync::Arc;

use ramstream_codec::zero::is_zero_page;
use ramstream_reference_vmm::{
    BalloonRun, DirtyBitmap, GuestMemory, MemoryLayout, RunStatus, Vm, VmState,
};
use sha2::{Digest, Sha256};

use crate::error::GuestError;

/// The page size of every guest ramstream migrates (x86 target pages).
pub const PAGE_SIZE: usize = ramstream_spec::ram::TARGET_PAGE_SIZE_X86;

/// The device state a guest hands over at stop time, as the FULL sections carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBlobs {
    /// The vCPU state blob ([`VcpuState::to_bytes`](ramstream_reference_vmm::VcpuState::to_bytes)).
    pub vcpu: Vec<u8>,
    /// The VM state blob ([`VmState::to_bytes`]: clock, interrupt controllers, balloon).
    pub vm: Vec<u8>,
    /// The memory layout as JSON.
    pub layout: Vec<u8>,
}

/// A running guest that can be migrated: its RAM blocks, pages, dirty log, balloon and
/// device state.
///
/// Blocks are the regions of the guest's [`MemoryLayout`], in layout order; a block's idstr
/// is its region name. Pages are addressed `(block index, page index in the block)`.
pub trait GuestSource {
    /// The memory layout (one RAM block per region).
    fn layout(&self) -> &MemoryLayout;

    /// Copies page `page` of block `block` into `dst` ([`PAGE_SIZE`] bytes).
    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), GuestError>;

    /// Turns dirty logging on (only while migrating: it slows the guest's writes).
    fn start_dirty_log(&mut self) -> Result<(), GuestError>;

    /// Turns dirty logging off.
    fn stop_dirty_log(&mut self) -> Result<(), GuestError>;

    /// Gets and clears the pages dirtied since the previous call, one bitmap per block.
    fn sync_dirty(&mut self) -> Result<Vec<DirtyBitmap>, GuestError>;

    /// The ballooned pages as runs; their contents are zero and need not be sent.
    fn ballooned_runs(&self) -> Vec<BalloonRun>;

    /// Stops the vCPU.
    fn pause(&mut self) -> Result<(), GuestError>;

    /// Lets the vCPU run again.
    fn resume(&mut self) -> Result<(), GuestError>;

    /// Whether the vCPU is running.
    fn is_running(&mut self) -> bool;

    /// The device state. The guest must be paused.
    fn state_blobs(&mut self) -> Result<StateBlobs, GuestError>;

    /// The digest of every block ([`digest_block`]), ballooned pages counted as zero without
    /// being read (SPEC.md §13). The guest must be paused.
    fn block_digests(&self) -> Result<Vec<[u8; 32]>, GuestError> {
        let runs = self.ballooned_runs();
        (0..self.layout().regions.len())
            .map(|b| {
                let pages = self.layout().regions[b].pages();
                digest_block(pages, &runs_of(&runs, b), |p, buf| {
                    self.read_page(b, p, buf)
                })
            })
            .collect()
    }
}

/// The runs of block `block`, sorted by first page.
pub fn runs_of(runs: &[BalloonRun], block: usize) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = runs
        .iter()
        .filter(|r| r.region == block)
        .map(|r| (r.first_page, r.page_count))
        .collect();
    v.sort_unstable();
    v
}

/// The digest of a block of `pages` pages read through `read` (SPEC.md §13.2, algorithm
/// [`DIGEST_ALGORITHM_SHA256_SPARSE`](ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_SPARSE)):
/// sha256 over `be64 page index ‖ page bytes` for every page, in ascending order, that is not
/// all zero. Pages of `ballooned` (sorted `(first, count)` runs) count as zero and are not
/// read. Because the block's length is known, the encoding is injective: equal digests mean
/// equal blocks, while the cost follows the resident, non-zero data rather than the RAM size.
pub fn digest_block<E>(
    pages: u64,
    ballooned: &[(u64, u64)],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<[u8; 32], E> {
    let mut buf = [0u8; PAGE_SIZE];
    let mut h = Sha256::new();
    let mut runs = ballooned.iter().peekable();
    let mut p = 0;
    while p < pages {
        while runs.peek().is_some_and(|&&(f, c)| f + c <= p) {
            runs.next();
        }
        if let Some(&&(f, c)) = runs.peek() {
            if f <= p {
                p = (f + c).min(pages);
                continue;
            }
        }
        read(p, &mut buf)?;
        if !is_zero_page(&buf) {
            h.update(p.to_be_bytes());
            h.update(buf);
        }
        p += 1;
    }
    Ok(h.finalize().into())
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

    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), GuestError> {
        Ok(self.vm.memory().read_page(block, page, dst)?)
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

    fn ballooned_runs(&self) -> Vec<BalloonRun> {
        self.vm.balloon_runs()
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
    fn block_digests(&self) -> Result<Vec<[u8; 32]>, GuestError> {
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
                    let runs = runs_of(&runs, b);
                    let pages = r.pages();
                    s.spawn(move || digest_block(pages, &runs, |p, buf| mem.read_page(b, p, buf)))
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

/// One step of a [`ScriptedGuest`]'s script, applied at a dirty sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptStep {
    /// The guest writes `count` pages from `first` of `block` with a pattern derived from
    /// `seed` (each page differs from every other page and every other seed).
    Write {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
        /// Pattern seed.
        seed: u64,
    },
    /// The guest changes only the first 8 bytes of each page (an XBZRLE-friendly write).
    Touch {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
        /// Value written.
        seed: u64,
    },
    /// The guest zeroes pages (they stay in use).
    Zero {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
    },
    /// Balloon inflate: the pages are discarded (zero) and ballooned.
    Inflate {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
    },
    /// Balloon deflate: the pages leave the balloon, reading as zero.
    Deflate {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
    },
}

/// A fake guest for tests: dense memory, a dirty log and a balloon, changed by a script.
///
/// `script[i]` is applied at the `i`-th dirty sync after dirty logging started (sync 0 is the
/// setup sync before the bulk stage); syncs past the script's end apply `steady` (if any),
/// which lets a test model a guest that never stops dirtying memory.
#[derive(Debug, Clone)]
pub struct ScriptedGuest {
    layout: MemoryLayout,
    mem: Vec<Vec<u8>>,
    dirty: Vec<Vec<bool>>,
    balloon: Vec<Vec<bool>>,
    script: Vec<Vec<ScriptStep>>,
    /// Steps applied at every sync past the script's end.
    pub steady: Vec<ScriptStep>,
    syncs: usize,
    running: bool,
    logging: bool,
    reads: Cell<u64>,
    ballooned_reads: Cell<u64>,
    /// Times the guest was resumed.
    pub resumes: u64,
}

/// The deterministic content of a page written by [`ScriptStep::Write`].
pub fn pattern_page(block: usize, page: u64, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; PAGE_SIZE];
    let mut x = (block as u64) << 48 ^ page << 16 ^ seed ^ 0x9E37_79B9_7F4A_7C15;
    for w in v.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    v
}

impl ScriptedGuest {
    /// A running guest with `layout`, all memory zero, and the given script.
    pub fn new(layout: MemoryLayout, script: Vec<Vec<ScriptStep>>) -> Self {
        let pages: Vec<usize> = layout.regions.iter().map(|r| r.pages() as usize).collect();
        ScriptedGuest {
            mem: pages.iter().map(|&p| vec![0u8; p * PAGE_SIZE]).collect(),
            dirty: pages.iter().map(|&p| vec![false; p]).collect(),
            balloon: pages.iter().map(|&p| vec![false; p]).collect(),
            layout,
            script,
            steady: Vec::new(),
            syncs: 0,
            running: true,
            logging: false,
            reads: Cell::new(0),
            ballooned_reads: Cell::new(0),
            resumes: 0,
        }
    }

    /// Runs `write(block, page, bytes)` on each page of `first..first + count` that is not
    /// ballooned (a guest does not touch pages it gave away) and marks it dirty.
    fn write_unballooned(
        &mut self,
        b: usize,
        first: u64,
        count: u64,
        mut write: impl FnMut(usize, usize, &mut [u8]),
    ) {
        for p in first as usize..(first + count) as usize {
            if self.balloon[b][p] {
                continue;
            }
            write(b, p, &mut self.mem[b][p * PAGE_SIZE..(p + 1) * PAGE_SIZE]);
            self.dirty[b][p] = true;
        }
    }

    /// Applies one step now (as the guest would while running).
    pub fn apply(&mut self, step: &ScriptStep) {
        let range = |b: usize, f: u64, c: u64| (b, f as usize..(f + c) as usize);
        match *step {
            ScriptStep::Write {
                block,
                first,
                count,
                seed,
            } => {
                self.write_unballooned(block, first, count, |b, p, page| {
                    page.copy_from_slice(&pattern_page(b, p as u64, seed));
                });
            }
            ScriptStep::Touch {
                block,
                first,
                count,
                seed,
            } => {
                self.write_unballooned(block, first, count, |_, _, page| {
                    page[..8].copy_from_slice(&(seed | 1).to_le_bytes());
                });
            }
            ScriptStep::Zero {
                block,
                first,
                count,
            } => {
                let (b, r) = range(block, first, count);
                for p in r {
                    self.mem[b][p * PAGE_SIZE..(p + 1) * PAGE_SIZE].fill(0);
                    self.dirty[b][p] = true;
                }
            }
            ScriptStep::Inflate {
                block,
                first,
                count,
            }
            | ScriptStep::Deflate {
                block,
                first,
                count,
            } => {
                let inflate = matches!(step, ScriptStep::Inflate { .. });
                let (b, r) = range(block, first, count);
                for p in r {
                    self.mem[b][p * PAGE_SIZE..(p + 1) * PAGE_SIZE].fill(0);
                    self.dirty[b][p] = true;
                    self.balloon[b][p] = inflate;
                }
            }
        }
    }

    /// Block `block`'s memory.
    pub fn block(&self, block: usize) -> &[u8] {
        &self.mem[block]
    }

    /// Pages read so far.
    pub fn pages_read(&self) -> u64 {
        self.reads.get()
    }

    /// Reads of pages that were ballooned at the time (a sender that honours the balloon
    /// keeps this at 0).
    pub fn ballooned_pages_read(&self) -> u64 {
        self.ballooned_reads.get()
    }

    /// Dirty syncs done so far.
    pub fn syncs(&self) -> usize {
        self.syncs
    }
}

impl GuestSource for ScriptedGuest {
    fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), GuestError> {
        let m = self
            .mem
            .get(block)
            .ok_or_else(|| GuestError::Other(format!("no block {block}")))?;
        let p = page as usize;
        let src = m
            .get(p * PAGE_SIZE..(p + 1) * PAGE_SIZE)
            .ok_or_else(|| GuestError::Other(format!("page {page} out of block {block}")))?;
        dst.copy_from_slice(src);
        self.reads.set(self.reads.get() + 1);
        if self.balloon[block][p] {
            self.ballooned_reads.set(self.ballooned_reads.get() + 1);
        }
        Ok(())
    }

    fn start_dirty_log(&mut self) -> Result<(), GuestError> {
        self.logging = true;
        for d in &mut self.dirty {
            d.fill(false);
        }
        Ok(())
    }

    fn stop_dirty_log(&mut self) -> Result<(), GuestError> {
        self.logging = false;
        Ok(())
    }

    fn sync_dirty(&mut self) -> Result<Vec<DirtyBitmap>, GuestError> {
        if self.running {
            let steps = self
                .script
                .get(self.syncs)
                .cloned()
                .unwrap_or_else(|| self.steady.clone());
            for s in &steps {
                self.apply(s);
            }
        }
        self.syncs += 1;
        let maps = self
            .dirty
            .iter_mut()
            .enumerate()
            .map(|(b, d)| {
                let mut words = vec![0u64; d.len().div_ceil(64)];
                for (p, bit) in d.iter_mut().enumerate() {
                    if std::mem::take(bit) {
                        words[p / 64] |= 1 << (p % 64);
                    }
                }
                DirtyBitmap::new(b, d.len() as u64, words)
            })
            .collect();
        Ok(maps)
    }

    fn ballooned_runs(&self) -> Vec<BalloonRun> {
        let mut runs = Vec::new();
        for (b, bits) in self.balloon.iter().enumerate() {
            let mut p = 0;
            while p < bits.len() {
                if bits[p] {
                    let start = p;
                    while p < bits.len() && bits[p] {
                        p += 1;
                    }
                    runs.push(BalloonRun {
                        region: b,
                        first_page: start as u64,
                        page_count: (p - start) as u64,
                    });
                } else {
                    p += 1;
                }
            }
        }
        runs
    }

    fn pause(&mut self) -> Result<(), GuestError> {
        self.running = false;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), GuestError> {
        self.running = true;
        self.resumes += 1;
        Ok(())
    }

    fn is_running(&mut self) -> bool {
        self.running
    }

    fn state_blobs(&mut self) -> Result<StateBlobs, GuestError> {
        let mut vm = VmState {
            clock: Default::default(),
            irqchips: Default::default(),
            balloon: self.ballooned_runs(),
        };
        for (i, chip) in vm.irqchips.iter_mut().enumerate() {
            chip.chip_id = i as u32;
        }
        Ok(StateBlobs {
            vcpu: fake_vcpu_blob(self.syncs as u64),
            vm: vm.to_bytes(),
            layout: serde_json::to_vec(&self.layout)
                .map_err(|e| GuestError::Other(format!("layout JSON: {e}")))?,
        })
    }
}

/// The vCPU blob of a [`ScriptedGuest`]: `FAKEVCPU` and a be64 counter.
pub fn fake_vcpu_blob(n: u64) -> Vec<u8> {
    let mut v = b"FAKEVCPU".to_vec();
    v.extend_from_slice(&n.to_be_bytes());
    v
}
