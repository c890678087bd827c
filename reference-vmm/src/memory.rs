//! Guest RAM: the [`MemoryLayout`] description and the [`GuestMemory`] behind it, a vm-memory
//! `GuestMemoryMmap` accessed through `Bytes` (no raw pointers here).

#![forbid(unsafe_code)]

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ramstream_migrate::vm_memory::{AccessError, GpaRange, GuestMemoryRam, Unmapped};
use ramstream_migrate::{GuestRam, PageAddr, PageRun, RamBlockLayout};
use serde::{Deserialize, Serialize};
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress,
};

use crate::error::{Error, Result};
use crate::guest_abi::{param, MAX_PDS, PAGE_SIZE};
use crate::pagemap::Pagemap;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Regions start and end on 2 MiB boundaries (the guest maps memory with 2 MiB pages).
pub const REGION_ALIGN: u64 = 2 * MIB;
/// Guest-physical range KVM needs for its TSS and identity map; no region may cover it.
const KVM_PRIVATE: std::ops::Range<u64> = 0xFFFB_C000..0x1_0000_0000;

/// One contiguous piece of guest RAM: a memory slot and a RAM block of the migration stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// The RAM block idstr this region carries in the migration stream (1..=255 bytes).
    pub name: String,
    /// Guest-physical address of the first byte.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
}

impl RegionSpec {
    /// Size in 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.run().count
    }

    /// Every page of the region, as a run from its first page.
    pub fn run(&self) -> PageRun {
        PageRun::of_block(self.size, PAGE_SIZE)
    }
}

/// The guest's RAM regions, in RAM page number order.
///
/// RAM page numbers count pages across regions in this order (region 0's pages first), like
/// QEMU's `ram_addr_t`; the guest program and its balloon use them. Region 0 starts at
/// guest-physical 0 and holds the guest program, its page tables and generation table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLayout {
    /// The regions; at least one, at most four.
    pub regions: Vec<RegionSpec>,
}

impl MemoryLayout {
    /// Name of the region below the hole, as QEMU's PC machines name their RAM block.
    pub const LOW_NAME: &'static str = "pc.ram";
    /// Name of the region above 4 GiB.
    pub const HIGH_NAME: &'static str = "ram1";
    /// Guest-physical address of the high region.
    pub const HIGH_GPA: u64 = 4 * GIB;
    /// The default RAM size, 1 GiB.
    pub const DEFAULT_RAM: u64 = GIB;

    /// Splits `ram_bytes` into `pc.ram` (the lower half, at 0, at most 3 GiB) and `ram1` (the
    /// rest, at 4 GiB, leaving a hole between them). `ram_bytes` must be a multiple of 4 MiB
    /// and at least 8 MiB.
    pub fn with_ram_size(ram_bytes: u64) -> Result<Self> {
        if ram_bytes < 8 * MIB || !ram_bytes.is_multiple_of(2 * REGION_ALIGN) {
            return Err(Error::InvalidLayout(format!(
                "RAM size {ram_bytes:#x} must be a multiple of 4 MiB and at least 8 MiB"
            )));
        }
        let low = (ram_bytes / 2).min(3 * GIB);
        let layout = Self {
            regions: vec![
                RegionSpec {
                    name: Self::LOW_NAME.into(),
                    gpa: 0,
                    size: low,
                },
                RegionSpec {
                    name: Self::HIGH_NAME.into(),
                    gpa: Self::HIGH_GPA,
                    size: ram_bytes - low,
                },
            ],
        };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks the rules: 1 to 4 regions with unique names of 1..=255 bytes, 2 MiB aligned,
    /// non-empty, not overlapping, below 16 GiB, clear of KVM's private pages below 4 GiB, and
    /// region 0 at guest-physical 0 large enough for the guest program and its tables.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidLayout(m));
        if self.regions.is_empty() || self.regions.len() > param::MAX_REGIONS {
            return bad(format!(
                "{} regions; 1 to {} allowed",
                self.regions.len(),
                param::MAX_REGIONS
            ));
        }
        for (i, r) in self.regions.iter().enumerate() {
            if r.name.is_empty() || r.name.len() > 255 {
                return bad(format!("region {i} name must be 1..=255 bytes"));
            }
            if self.regions[..i].iter().any(|o| o.name == r.name) {
                return bad(format!("duplicate region name {:?}", r.name));
            }
            if r.size == 0
                || !r.gpa.is_multiple_of(REGION_ALIGN)
                || !r.size.is_multiple_of(REGION_ALIGN)
            {
                return bad(format!(
                    "region {:?} must be non-empty and 2 MiB aligned",
                    r.name
                ));
            }
            let end = match r.gpa.checked_add(r.size) {
                Some(end) if end <= MAX_PDS * GIB => end,
                _ => return bad(format!("region {:?} ends beyond {MAX_PDS} GiB", r.name)),
            };
            if r.gpa < KVM_PRIVATE.end && KVM_PRIVATE.start < end {
                return bad(format!(
                    "region {:?} covers KVM's TSS/identity-map pages",
                    r.name
                ));
            }
            if self.regions[..i]
                .iter()
                .any(|o| o.gpa < end && r.gpa < o.gpa + o.size)
            {
                return bad(format!("region {:?} overlaps another region", r.name));
            }
        }
        let r0 = &self.regions[0];
        let needed = reserved(self.total_pages()).byte_range(PAGE_SIZE).end + REGION_ALIGN;
        if r0.gpa != 0 || r0.size < needed {
            return bad(format!(
                "region 0 must start at 0 and hold the guest program, its tables and 2 MiB more ({needed:#x} bytes)"
            ));
        }
        Ok(())
    }

    /// RAM pages over all regions.
    pub fn total_pages(&self) -> u64 {
        self.regions.iter().map(RegionSpec::pages).sum()
    }

    /// RAM bytes over all regions.
    pub fn total_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// The region index of a region name.
    pub fn region_index(&self, name: &str) -> Result<usize> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| Error::UnknownRegion(name.into()))
    }

    /// The run of RAM page numbers that `run` of region `region` is: RAM page numbers count
    /// pages over the regions in layout order (region 0's first), as the guest program and
    /// its balloon commands do.
    pub fn ram_run(&self, region: usize, run: PageRun) -> Result<PageRun> {
        let r = self
            .regions
            .get(region)
            .ok_or_else(|| Error::UnknownRegion(region.to_string()))?;
        if run
            .start
            .checked_add(run.count)
            .is_none_or(|end| end > r.pages())
        {
            return Err(Error::PageOutOfRange {
                region: r.name.clone(),
                first: run.start,
                count: run.count,
                pages: r.pages(),
            });
        }
        let base: u64 = self.regions[..region].iter().map(RegionSpec::pages).sum();
        Ok(PageRun::new(base + run.start, run.count))
    }

    /// The RAM page number of the page at `addr` (a page-aligned byte offset in region
    /// `addr.block`).
    pub fn ram_page(&self, addr: PageAddr) -> Result<u64> {
        let r = self
            .regions
            .get(addr.block)
            .ok_or_else(|| Error::UnknownRegion(addr.block.to_string()))?;
        if !addr.is_page_aligned(PAGE_SIZE) {
            return Err(Error::Unaligned {
                region: r.name.clone(),
                offset: addr.offset,
            });
        }
        let run = PageRun::new(addr.page_index(PAGE_SIZE), 1);
        Ok(self.ram_run(addr.block, run)?.start)
    }

    /// The address of RAM page number `ram_page`: its region and byte offset there.
    pub fn locate(&self, ram_page: u64) -> Option<PageAddr> {
        self.split(PageRun::new(ram_page, 1))
            .first()
            .map(|&(region, run)| run.first_addr(region, PAGE_SIZE))
    }

    /// The pieces of a run of RAM page numbers in each region it crosses, in layout order:
    /// `(region, run)` with the run counted from the region's first page. Pages past the
    /// last region are in none.
    pub fn split(&self, ram: PageRun) -> Vec<(usize, PageRun)> {
        let mut out = Vec::new();
        let mut base = 0u64;
        for (i, r) in self.regions.iter().enumerate() {
            let end = base + r.pages();
            let (lo, hi) = (ram.start.max(base), ram.end().min(end));
            if lo < hi {
                out.push((i, PageRun::from_range(lo - base..hi - base)));
            }
            base = end;
        }
        out
    }

    /// The first RAM page number the guest program does not use itself: pages below it hold
    /// page tables, GDT, parameter block, code, stack and generation table.
    pub fn reserved_pages(&self) -> u64 {
        reserved(self.total_pages()).count
    }
}

impl Default for MemoryLayout {
    /// [`MemoryLayout::DEFAULT_RAM`] (1 GiB) split as by [`MemoryLayout::with_ram_size`]:
    /// `pc.ram` 512 MiB at 0, `ram1` 512 MiB at 4 GiB.
    fn default() -> Self {
        let half = Self::DEFAULT_RAM / 2;
        Self {
            regions: vec![
                RegionSpec {
                    name: Self::LOW_NAME.into(),
                    gpa: 0,
                    size: half,
                },
                RegionSpec {
                    name: Self::HIGH_NAME.into(),
                    gpa: Self::HIGH_GPA,
                    size: half,
                },
            ],
        }
    }
}

/// The pages at the start of region 0 owned by the guest program: up to the end of the
/// generation table (8 bytes per RAM page), the last one partly.
fn reserved(total_pages: u64) -> PageRun {
    let end = crate::guest_abi::GEN_TABLE_GPA + total_pages * 8;
    PageRun::covering(0..end, PAGE_SIZE)
}

/// The vm-memory guest memory behind a [`GuestMemory`]: one anonymous `MAP_NORESERVE` region
/// per layout region, with a dirty bitmap that marks every write made through `Bytes`.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<AtomicBitmap>;

/// A [`GuestRam`] over the regions of a [`GuestMemory`]: block `i` is region `i` (idstr = its
/// name), laid over the region's guest-physical range.
pub type RegionRam = GuestMemoryRam<Arc<GuestMemoryMmap>>;

/// Guest RAM: a vm-memory [`GuestMemoryMmap`] with one region per region of a
/// [`MemoryLayout`], read and written through vm-memory's `Bytes` API.
///
/// Pages are addressed by [`PageAddr`]: the region index as the block and a page-aligned byte
/// offset in the region (runs of pages, to discard, are [`PageRun`]s). Every method takes
/// `&self` and is safe to call while the guest runs; copies of pages the guest is writing may
/// be torn, which dirty tracking repairs (such a page is logged dirty again). Writes and
/// discards made here are recorded in the regions' vm-memory dirty bitmaps, because KVM
/// does not log them.
#[derive(Debug)]
pub struct GuestMemory {
    layout: MemoryLayout,
    ram: RegionRam,
    /// `/proc/self/pagemap`, for [`GuestMemory::known_zero_pages`] (`None`: unknown).
    pagemap: Option<Pagemap>,
}

impl GuestMemory {
    /// Maps zeroed memory for every region of `layout` (nothing is committed until touched).
    pub fn new(layout: &MemoryLayout) -> Result<Self> {
        layout.validate()?;
        let mut regions = layout
            .regions
            .iter()
            .map(|spec| {
                let len = usize::try_from(spec.size).map_err(|_| {
                    Error::InvalidLayout(format!("region {:?} too large", spec.name))
                })?;
                GuestRegionMmap::from_range(GuestAddress(spec.gpa), len, None).map_err(|e| {
                    Error::Memory {
                        op: "mmap",
                        region: spec.name.clone(),
                        source: io::Error::other(e),
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        regions.sort_by_key(|r| r.start_addr());
        let mmap = GuestMemoryMmap::from_regions(regions)
            .map_err(|e| Error::InvalidLayout(e.to_string()))?;
        let blocks: Vec<RamBlockLayout> = layout
            .regions
            .iter()
            .map(|r| RamBlockLayout::new(r.name.clone(), r.size))
            .collect();
        let ram = layout
            .regions
            .iter()
            .fold(
                GuestMemoryRam::builder(Arc::new(mmap)).unmapped(Unmapped::Refuse),
                |b, r| b.map(r.name.clone(), [GpaRange::new(GuestAddress(r.gpa), r.size)]),
            )
            .build(&blocks)
            .map_err(|e| Error::InvalidLayout(e.to_string()))?;
        Ok(Self {
            layout: layout.clone(),
            ram,
            pagemap: Pagemap::open(),
        })
    }

    /// The layout this memory was built from.
    pub fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// The regions as RAM blocks of a [`GuestRam`] (vm-memory accesses through
    /// `ramstream-migrate`'s adapter, which the page methods use too).
    pub fn ram(&self) -> &RegionRam {
        &self.ram
    }

    /// The vm-memory guest memory (for `Bytes` accesses by guest-physical address).
    pub fn mmap(&self) -> &Arc<GuestMemoryMmap> {
        self.ram.memory()
    }

    fn spec(&self, region: usize) -> Result<&RegionSpec> {
        self.layout
            .regions
            .get(region)
            .ok_or_else(|| Error::UnknownRegion(region.to_string()))
    }

    /// The vm-memory region of layout region `region` (it starts at the region's GPA).
    pub(crate) fn mmap_region(&self, region: usize) -> Result<&GuestRegionMmap<AtomicBitmap>> {
        let spec = self.spec(region)?;
        self.mmap()
            .find_region(GuestAddress(spec.gpa))
            .ok_or_else(|| Error::UnknownRegion(spec.name.clone()))
    }

    /// Checks that `run` lies in `region`.
    fn check_run(&self, region: usize, run: PageRun) -> Result<()> {
        let spec = self.spec(region)?;
        let pages = spec.pages();
        if run
            .start
            .checked_add(run.count)
            .is_none_or(|end| end > pages)
        {
            return Err(Error::PageOutOfRange {
                region: spec.name.clone(),
                first: run.start,
                count: run.count,
                pages,
            });
        }
        Ok(())
    }

    /// Checks that `addr` is the start of a page in its region.
    fn check_page(&self, addr: PageAddr) -> Result<()> {
        if !addr.is_page_aligned(PAGE_SIZE) {
            return Err(Error::Unaligned {
                region: self.spec(addr.block)?.name.clone(),
                offset: addr.offset,
            });
        }
        self.check_run(addr.block, PageRun::new(addr.page_index(PAGE_SIZE), 1))
    }

    fn access_error(&self, op: &'static str, region: usize) -> impl FnOnce(AccessError) -> Error {
        let region = self.layout.regions[region].name.clone();
        move |source| Error::Access { op, region, source }
    }

    /// Copies the page at `addr` into `dst` (exactly [`PAGE_SIZE`] bytes).
    pub fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<()> {
        check_len(dst.len())?;
        self.check_page(addr)?;
        self.ram
            .read_page(addr, dst)
            .map_err(self.access_error("read", addr.block))
    }

    /// Writes `src` (exactly [`PAGE_SIZE`] bytes) into the page at `addr`; vm-memory's
    /// bitmap records the page as dirtied by the VMM.
    pub fn write_page(&self, addr: PageAddr, src: &[u8]) -> Result<()> {
        check_len(src.len())?;
        self.check_page(addr)?;
        self.ram
            .write_page(addr, src)
            .map_err(self.access_error("write", addr.block))
    }

    /// Writes zeroes over the pages of `run` in `region`: `MADV_DONTNEED` gives the memory
    /// back to the host and the pages read as zero afterwards. Recorded as dirtied by the
    /// VMM.
    pub fn discard_pages(&self, region: usize, run: PageRun) -> Result<()> {
        self.check_run(region, run)?;
        let r = self.mmap_region(region)?;
        let bytes = run.byte_range(PAGE_SIZE);
        let memory_error = |source| Error::Memory {
            op: "madvise",
            region: self.layout.regions[region].name.clone(),
            source,
        };
        let too_large = || memory_error(io::Error::from(io::ErrorKind::InvalidInput));
        let offset = usize::try_from(bytes.start).map_err(|_| too_large())?;
        let len = usize::try_from(bytes.end - bytes.start).map_err(|_| too_large())?;
        let slice = r
            .get_slice(MemoryRegionAddress(bytes.start), len)
            .map_err(|e| memory_error(io::Error::other(e)))?;
        crate::sys::discard(&slice).map_err(memory_error)?;
        (**r).bitmap().set_addr_range(offset, len);
        Ok(())
    }

    /// Marks the pages from `addr` (page aligned; `zero.len()` pages, all in its region)
    /// that read as zero without being read: pages the host never backed (neither present
    /// nor swapped out in `/proc/self/pagemap`: never written, or discarded). `false` where
    /// unknown (no pagemap). Nothing is read or faulted in.
    pub fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<()> {
        self.check_page(addr)?;
        let run = PageRun::new(addr.page_index(PAGE_SIZE), zero.len() as u64);
        self.check_run(addr.block, run)?;
        let Some(pagemap) = &self.pagemap else {
            zero.fill(false);
            return Ok(());
        };
        // The regions are anonymous private mappings (`GuestRegionMmap::from_range` with
        // no file): an unbacked page of them reads as zero.
        let hva = self
            .mmap_region(addr.block)?
            .get_host_address(MemoryRegionAddress(addr.offset))
            .map_err(|_| Error::PageOutOfRange {
                region: self.layout.regions[addr.block].name.clone(),
                first: run.start,
                count: run.count,
                pages: self.layout.regions[addr.block].pages(),
            })? as u64;
        pagemap.unbacked(hva, zero);
        Ok(())
    }

    /// True if the page at `addr` is all zero bytes.
    pub fn is_zero_page(&self, addr: PageAddr) -> Result<bool> {
        let mut buf = [0u8; PAGE_SIZE];
        self.read_page(addr, &mut buf)?;
        Ok(buf.iter().all(|&b| b == 0))
    }

    /// Reads the u64 word at guest-physical `gpa` (8-byte aligned) atomically.
    pub(crate) fn load_u64(&self, gpa: u64) -> Result<u64> {
        self.mmap()
            .load(GuestAddress(gpa), Ordering::Acquire)
            .map_err(|_| gpa_error(gpa))
    }

    /// Writes the u64 word at guest-physical `gpa` (8-byte aligned) atomically; vm-memory's
    /// bitmap records the page as dirtied by the VMM.
    pub(crate) fn store_u64(&self, gpa: u64, value: u64) -> Result<()> {
        self.mmap()
            .store(value, GuestAddress(gpa), Ordering::Release)
            .map_err(|_| gpa_error(gpa))
    }

    /// Copies bytes to guest-physical `gpa` (used for loading the program and page tables).
    pub(crate) fn write_gpa(&self, gpa: u64, src: &[u8]) -> Result<()> {
        self.mmap()
            .write_slice(src, GuestAddress(gpa))
            .map_err(|_| gpa_error(gpa))
    }

    /// Takes (and clears) the pages of `region` the VMM dirtied itself: its vm-memory bitmap,
    /// in the layout of `KVM_GET_DIRTY_LOG`.
    pub(crate) fn take_vmm_dirty(&self, region: usize) -> Result<Vec<u64>> {
        Ok((**self.mmap_region(region)?).bitmap().get_and_reset())
    }
}

fn check_len(len: usize) -> Result<()> {
    if len != PAGE_SIZE {
        return Err(Error::BufferSize {
            expected: PAGE_SIZE,
            actual: len,
        });
    }
    Ok(())
}

fn gpa_error(gpa: u64) -> Error {
    Error::InvalidConfig(format!("guest-physical address {gpa:#x} is not in RAM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_split_has_two_regions_and_a_hole() {
        let l = MemoryLayout::with_ram_size(MemoryLayout::DEFAULT_RAM).unwrap();
        assert_eq!(l.regions.len(), 2);
        assert_eq!(l.regions[0].name, "pc.ram");
        assert_eq!(l.regions[1].gpa, 4 * GIB);
        assert_eq!(l.total_bytes(), GIB);
        let low = l.regions[0].pages();
        assert_eq!(l.locate(low), Some(PageAddr::new(1, 0)));
        assert_eq!(l.locate(low + 3), Some(PageAddr::of_page(1, 3, PAGE_SIZE)));
        assert_eq!(l.locate(l.total_pages()), None);
        let addr = PageAddr::of_page(1, 3, PAGE_SIZE);
        assert_eq!(l.ram_page(addr).unwrap(), low + 3);
        assert!(l.ram_page(PageAddr::new(1, 0x3001)).is_err());
        assert_eq!(
            l.ram_run(1, PageRun::new(3, 5)).unwrap(),
            PageRun::new(low + 3, 5)
        );
        assert!(l.ram_run(1, PageRun::new(low - 1, 2)).is_err());
        assert_eq!(
            l.split(PageRun::new(low - 2, 5)),
            [(0, PageRun::new(low - 2, 2)), (1, PageRun::new(0, 3))]
        );
        assert!(l.split(PageRun::new(l.total_pages(), 4)).is_empty());
        assert_eq!(MemoryLayout::default(), l);
    }

    #[test]
    fn bad_layouts_are_rejected() {
        assert!(MemoryLayout::with_ram_size(3 * MIB).is_err());
        let mut l = MemoryLayout::with_ram_size(64 * MIB).unwrap();
        l.regions[1].gpa = 0;
        assert!(l.validate().is_err());
        let mut l = MemoryLayout::with_ram_size(64 * MIB).unwrap();
        l.regions[1].name = "pc.ram".into();
        assert!(l.validate().is_err());
    }

    #[test]
    fn pages_round_trip_and_discard_to_zero() {
        let mem = GuestMemory::new(&MemoryLayout::with_ram_size(16 * MIB).unwrap()).unwrap();
        let page = [0xA5u8; PAGE_SIZE];
        let addr = PageAddr::of_page(1, 5, PAGE_SIZE);
        mem.write_page(addr, &page).unwrap();
        let mut back = [0u8; PAGE_SIZE];
        mem.read_page(addr, &mut back).unwrap();
        assert_eq!(back, page);
        let gpa = GuestAddress(MemoryLayout::HIGH_GPA + addr.offset);
        assert_eq!(
            mem.mmap().read_obj::<u8>(gpa).unwrap(),
            0xA5,
            "ram1 lies at 4 GiB"
        );
        mem.ram().read_page(addr, &mut back).unwrap();
        assert_eq!(back, page);
        mem.discard_pages(1, PageRun::new(4, 2)).unwrap();
        assert!(mem.is_zero_page(addr).unwrap());
        assert!(mem.discard_pages(1, PageRun::new(u64::MAX, 2)).is_err());
        let far = PageAddr::of_page(1, 1 << 20, PAGE_SIZE);
        assert!(mem.read_page(far, &mut back).is_err());
        assert!(mem.read_page(PageAddr::new(2, 0), &mut back).is_err());
        assert!(mem.read_page(PageAddr::new(0, 0), &mut back[..10]).is_err());
        assert!(matches!(
            mem.read_page(PageAddr::new(1, 0x5001), &mut back),
            Err(Error::Unaligned { offset: 0x5001, .. })
        ));
        let dirty = mem.take_vmm_dirty(1).unwrap();
        assert_eq!(dirty[0], 0b11_0000);
    }
}
