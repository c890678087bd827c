//! [`ScriptedGuest`]: a fake source guest for the reference sender, with dense memory, a
//! dirty log and a balloon, changed by a script.

use std::cell::Cell;

use ramstream_migrate::PageRun;
use ramstream_reference_sender::{GuestError, GuestSource, StateBlobs};
use ramstream_reference_vmm::{DirtyBitmap, MemoryLayout, VmState};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use crate::script::{pattern_page, ScriptStep};

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

    fn ballooned_runs(&self) -> Vec<Vec<PageRun>> {
        let mut all = Vec::with_capacity(self.balloon.len());
        for bits in &self.balloon {
            let mut runs = Vec::new();
            let mut p = 0;
            while p < bits.len() {
                if bits[p] {
                    let start = p;
                    while p < bits.len() && bits[p] {
                        p += 1;
                    }
                    runs.push(PageRun::new(start as u64, (p - start) as u64));
                } else {
                    p += 1;
                }
            }
            all.push(runs);
        }
        all
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
            balloon: (self.ballooned_runs().into_iter().enumerate())
                .flat_map(|(b, runs)| runs.into_iter().map(move |r| (b, r)))
                .collect(),
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
