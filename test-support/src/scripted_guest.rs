//! [`ScriptedGuest`]: a fake source guest with dense memory, a dirty log and a balloon,
//! changed by a script; for the reference sender (as a [`GuestSource`]) and for the engine
//! itself (as a [`GuestRam`] and a [`DirtyPageSource`]).

use std::cell::Cell;
use std::convert::Infallible;

use ramstream_codec::PageAddr;
use ramstream_migrate::{DirtyPageSource, GuestRam, PageRun, RamBlockLayout};
use ramstream_reference_sender::{GuestError, GuestSource, StateBlobs};
use ramstream_reference_vmm::{DirtyBitmap, MemoryLayout, RegionSpec, VmState};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use crate::script::{pattern_page, ScriptStep};

/// A fake guest for tests: dense memory, a dirty log and a balloon, changed by a script.
///
/// `script[i]` is applied at the `i`-th dirty sync after dirty logging started (sync 0 is the
/// setup sync before the bulk stage); syncs past the script's end apply `steady` (if any),
/// which lets a test model a guest that never stops dirtying memory.
///
/// The reference sender drives it as a [`GuestSource`]; a test of the engine alone passes it
/// to [`Source::poll_transmit`](ramstream_migrate::Source::poll_transmit) as its
/// [`GuestRam`] and, after [`ScriptedGuest::run_until_sync`], to
/// [`Source::sync_dirty`](ramstream_migrate::Source::sync_dirty) as its
/// [`DirtyPageSource`]. The layout's regions are not checked: any sizes that are whole
/// pages will do.
#[derive(Debug, Clone)]
pub struct ScriptedGuest {
    layout: MemoryLayout,
    blocks: Vec<RamBlockLayout>,
    mem: Vec<Vec<u8>>,
    /// Bitmaps, a flag per page of each block.
    dirty: Vec<Vec<bool>>,
    balloon: Vec<Vec<bool>>,
    /// Pages the guest ever wrote (a host would have backed them), a flag per page.
    backed: Vec<Vec<bool>>,
    /// Whether [`GuestRam::known_zero_pages`] answers from `backed` (else: knows nothing).
    knows_unbacked: bool,
    script: Vec<Vec<ScriptStep>>,
    /// Steps applied at every sync past the script's end.
    pub steady: Vec<ScriptStep>,
    syncs: usize,
    running: bool,
    logging: bool,
    reads: Cell<u64>,
    ballooned_reads: Cell<u64>,
    unbacked_reads: Cell<u64>,
    /// Times the guest was resumed.
    pub resumes: u64,
}

impl ScriptedGuest {
    /// A running guest with `layout`, all memory zero, and the given script.
    pub fn new(layout: MemoryLayout, script: Vec<Vec<ScriptStep>>) -> Self {
        let runs: Vec<PageRun> = layout.regions.iter().map(|r| r.run()).collect();
        let flags = || runs.iter().map(|r| vec![false; r.count as usize]).collect();
        ScriptedGuest {
            mem: runs
                .iter()
                .map(|r| vec![0u8; r.byte_range(PAGE_SIZE).end as usize])
                .collect(),
            dirty: flags(),
            balloon: flags(),
            backed: flags(),
            knows_unbacked: false,
            blocks: layout
                .regions
                .iter()
                .map(|r| RamBlockLayout::new(r.name.clone(), r.size))
                .collect(),
            layout,
            script,
            steady: Vec::new(),
            syncs: 0,
            running: true,
            logging: false,
            reads: Cell::new(0),
            ballooned_reads: Cell::new(0),
            unbacked_reads: Cell::new(0),
            resumes: 0,
        }
    }

    /// A running guest whose regions are `blocks` (names and sizes; guest-physical
    /// addresses 4 GiB apart), all memory zero, with the given script: for tests of the
    /// engine, which knows RAM blocks rather than a reference machine's layout.
    pub fn with_blocks(blocks: &[RamBlockLayout], script: Vec<Vec<ScriptStep>>) -> Self {
        let regions = (blocks.iter().enumerate())
            .map(|(i, b)| RegionSpec {
                name: b.idstr().to_string(),
                gpa: (i as u64) << 32,
                size: b.used_length(),
            })
            .collect();
        ScriptedGuest::new(MemoryLayout { regions }, script)
    }

    /// This guest, its memory answering [`GuestRam::known_zero_pages`] (and
    /// [`GuestSource::known_zero_pages`]) as a host that allocates on first touch would: a
    /// page the script never wrote (nor zeroed, nor ballooned) is known zero.
    pub fn knowing_unbacked(mut self) -> Self {
        self.knows_unbacked = true;
        self
    }

    /// Marks which of `zero.len()` pages from `addr` the guest never wrote (all `false`
    /// unless [`ScriptedGuest::knowing_unbacked`]).
    fn unbacked(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        let first = self.check_page(addr, PAGE_SIZE)?;
        let backed = &self.backed[addr.block];
        if first + zero.len() > backed.len() {
            return Err(GuestError::Other(format!(
                "{} pages from block {} offset {:#x} pass the block's end",
                zero.len(),
                addr.block,
                addr.offset
            )));
        }
        for (z, &b) in zero.iter_mut().zip(&backed[first..]) {
            *z = self.knows_unbacked && !b;
        }
        Ok(())
    }

    /// Stops the guest (as [`GuestSource::pause`]): the script no longer runs.
    pub fn stop(&mut self) {
        self.running = false;
    }

    /// The bytes of the page at `addr` (a page of the guest's own: in range).
    fn page_mut(&mut self, addr: PageAddr) -> &mut [u8] {
        let start = addr.offset as usize;
        &mut self.mem[addr.block][start..start + PAGE_SIZE]
    }

    /// Runs `write(addr, bytes)` on each page of `run` in block `b` that is not ballooned (a
    /// guest does not touch pages it gave away) and marks it dirty.
    fn write_unballooned(
        &mut self,
        b: usize,
        run: PageRun,
        mut write: impl FnMut(PageAddr, &mut [u8]),
    ) {
        for addr in run.addrs(b, PAGE_SIZE) {
            let p = addr.page_index(PAGE_SIZE) as usize;
            if self.balloon[b][p] {
                continue;
            }
            write(addr, self.page_mut(addr));
            self.dirty[b][p] = true;
            self.backed[b][p] = true;
        }
    }

    /// Applies one step now (as the guest would while running).
    pub fn apply(&mut self, step: &ScriptStep) {
        let (b, run) = step.pages();
        match *step {
            ScriptStep::Write { seed, .. } => {
                self.write_unballooned(b, run, |addr, page| {
                    page.copy_from_slice(&pattern_page(b, addr.page_index(PAGE_SIZE), seed));
                });
            }
            ScriptStep::Touch { seed, .. } => {
                self.write_unballooned(b, run, |_, page| {
                    page[..8].copy_from_slice(&(seed | 1).to_le_bytes());
                });
            }
            ScriptStep::Zero { .. } | ScriptStep::Inflate { .. } | ScriptStep::Deflate { .. } => {
                let balloon = match step {
                    ScriptStep::Inflate { .. } => Some(true),
                    ScriptStep::Deflate { .. } => Some(false),
                    _ => None,
                };
                for addr in run.addrs(b, PAGE_SIZE) {
                    let p = addr.page_index(PAGE_SIZE) as usize;
                    self.page_mut(addr).fill(0);
                    self.dirty[b][p] = true;
                    self.backed[b][p] = true;
                    if let Some(ballooned) = balloon {
                        self.balloon[b][p] = ballooned;
                    }
                }
            }
        }
    }

    /// What the guest does until a dirty sync: the steps the script has for this sync (or
    /// `steady` past its end), if the guest runs. [`GuestSource::sync_dirty`] does it before
    /// it hands out the dirty log; a test driving the engine calls it before
    /// [`Source::sync_dirty`](ramstream_migrate::Source::sync_dirty).
    pub fn run_until_sync(&mut self) {
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

    /// Reads of pages never written at the time (all zero, and known to be by a guest
    /// [`ScriptedGuest::knowing_unbacked`]: a sender that uses `known_zero_pages` keeps
    /// this at 0).
    pub fn unbacked_pages_read(&self) -> u64 {
        self.unbacked_reads.get()
    }

    /// Dirty syncs done so far.
    pub fn syncs(&self) -> usize {
        self.syncs
    }

    /// Checks that `len` bytes at `addr` are one whole page of a block; returns the page's
    /// index (into the per-page flags).
    fn check_page(&self, addr: PageAddr, len: usize) -> Result<usize, GuestError> {
        let pages = self.dirty.get(addr.block).map(Vec::len);
        let page = addr.page_index(PAGE_SIZE);
        match pages {
            Some(n) if addr.is_page_aligned(PAGE_SIZE) && len == PAGE_SIZE && page < n as u64 => {
                Ok(page as usize)
            }
            _ => Err(GuestError::Other(format!(
                "{len} bytes at block {} offset {:#x} are not a page of the guest",
                addr.block, addr.offset
            ))),
        }
    }
}

impl GuestSource for ScriptedGuest {
    fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError> {
        GuestRam::read_page(self, addr, dst)
    }

    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        self.unbacked(addr, zero)
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
        self.run_until_sync();
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
        self.balloon.iter().map(|bits| runs_of(bits)).collect()
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

/// The guest's memory as the engine reads it: whole pages by address, each read counted. It
/// changes only by its script ([`ScriptedGuest::apply`]): a write is refused.
impl GuestRam for ScriptedGuest {
    type Error = GuestError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError> {
        let p = self.check_page(addr, buf.len())?;
        let start = addr.offset as usize;
        buf.copy_from_slice(&self.mem[addr.block][start..start + PAGE_SIZE]);
        self.reads.set(self.reads.get() + 1);
        if self.balloon[addr.block][p] {
            self.ballooned_reads.set(self.ballooned_reads.get() + 1);
        }
        if !self.backed[addr.block][p] {
            self.unbacked_reads.set(self.unbacked_reads.get() + 1);
        }
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, _data: &[u8]) -> Result<(), GuestError> {
        Err(GuestError::Other(format!(
            "a scripted guest changes only by its script (write at block {} offset {:#x})",
            addr.block, addr.offset
        )))
    }

    fn known_zero_pages(
        &self,
        addr: PageAddr,
        page_size: usize,
        zero: &mut [bool],
    ) -> Result<(), GuestError> {
        if page_size != PAGE_SIZE {
            zero.fill(false);
            return Ok(());
        }
        self.unbacked(addr, zero)
    }
}

/// The dirty log as runs, handed out and forgotten by [`DirtyPageSource::take_dirty`].
impl DirtyPageSource for ScriptedGuest {
    type Error = Infallible;

    fn take_dirty(
        &mut self,
        block: usize,
        visit: &mut dyn FnMut(PageRun),
    ) -> Result<(), Infallible> {
        if let Some(bits) = self.dirty.get_mut(block) {
            runs_of(bits).into_iter().for_each(visit);
            bits.fill(false);
        }
        Ok(())
    }
}

/// The runs of set flags, ascending.
fn runs_of(bits: &[bool]) -> Vec<PageRun> {
    let mut runs = Vec::new();
    let mut p = 0;
    while p < bits.len() {
        if bits[p] {
            let start = p;
            while p < bits.len() && bits[p] {
                p += 1;
            }
            runs.push(PageRun::from_range(start as u64..p as u64));
        } else {
            p += 1;
        }
    }
    runs
}

/// The vCPU blob of a [`ScriptedGuest`]: `FAKEVCPU` and a be64 counter.
pub fn fake_vcpu_blob(n: u64) -> Vec<u8> {
    let mut v = b"FAKEVCPU".to_vec();
    v.extend_from_slice(&n.to_be_bytes());
    v
}
