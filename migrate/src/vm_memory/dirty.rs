//! vm-memory's dirty bitmap as the source's dirty log: a `GuestMemoryMmap<AtomicBitmap>`
//! (feature `backend-bitmap`) marks the pages written through `Bytes` (`write_slice`,
//! `write_obj`, ...), and [`DirtyLog`] hands them to a [`Source`](crate::Source) by RAM
//! block.

use ::vm_memory::bitmap::AtomicBitmap;
use ::vm_memory::{
    Address, GuestAddress, GuestAddressSpace, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap,
};

use super::{AccessError, Backing, GuestMemoryRam};
use crate::source::DirtyPageSource;
use crate::PageRun;

/// The dirty log of a [`GuestMemoryRam`] over a `GuestMemoryMmap<AtomicBitmap>`, in target
/// pages of `page_size` bytes ([`GuestMemoryRam::dirty_log`]).
///
/// A page is reported, and its bits cleared, when a bit of the bitmap under it is set. The
/// source reads a page only after the log was taken, and vm-memory marks a page after
/// writing it, so a write racing with the sync is either in the page read (its mark was
/// cleared) or still marked for the next sync. Side-buffer blocks (ROMs) are never
/// reported: nothing writes them but the loader.
///
/// Only writes through vm-memory mark the bitmap; a VMM whose vCPUs write guest memory
/// directly merges KVM's dirty log (`KVM_GET_DIRTY_LOG`) into the same bitmap, or hands it
/// to the source with [`Source::handle_dirty_bitmap`](crate::Source::handle_dirty_bitmap).
///
/// ```
/// use std::sync::Arc;
/// use ramstream_migrate::vm_memory::{GpaRange, GuestMemoryRam};
/// use ramstream_migrate::{DirtyPageSource, PageRun, RamBlockLayout};
/// use vm_memory::bitmap::AtomicBitmap;
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
///
/// let mem = Arc::new(GuestMemoryMmap::<AtomicBitmap>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
/// let ram = GuestMemoryRam::builder(mem.clone())
///     .map("pc.ram", [GpaRange::new(GuestAddress(0), 1 << 20)])
///     .build(&[RamBlockLayout::new("pc.ram", 1 << 20)])
///     .unwrap();
/// mem.write_obj(7u64, GuestAddress(0x5008)).unwrap(); // page 5
/// mem.write_slice(&[1; 8192], GuestAddress(0x9000)).unwrap(); // pages 9 and 10
/// let mut runs = Vec::new();
/// ram.dirty_log(4096).take_dirty(0, &mut |r| runs.push(r)).unwrap();
/// assert_eq!(runs, [PageRun::new(5, 1), PageRun::new(9, 2)]);
/// runs.clear();
/// ram.dirty_log(4096).take_dirty(0, &mut |r| runs.push(r)).unwrap();
/// assert!(runs.is_empty(), "taken and forgotten");
/// ```
#[derive(Debug)]
pub struct DirtyLog<'r, AS> {
    ram: &'r GuestMemoryRam<AS>,
    page_size: u64,
}

impl<AS> GuestMemoryRam<AS>
where
    AS: GuestAddressSpace<M = GuestMemoryMmap<AtomicBitmap>>,
{
    /// The dirty log of this memory, in target pages of `page_size` bytes (a power of two,
    /// [`SourceOptions::page_size`](crate::SourceOptions::page_size)).
    pub fn dirty_log(&self, page_size: usize) -> DirtyLog<'_, AS> {
        DirtyLog {
            ram: self,
            page_size: page_size as u64,
        }
    }
}

/// The bitmap granularity checked under a target page: vm-memory tracks host pages.
const BITMAP_STEP: u64 = 4096;

impl<AS> DirtyPageSource for DirtyLog<'_, AS>
where
    AS: GuestAddressSpace<M = GuestMemoryMmap<AtomicBitmap>>,
{
    type Error = AccessError;

    fn take_dirty(
        &mut self,
        block: usize,
        visit: &mut dyn FnMut(PageRun),
    ) -> Result<(), AccessError> {
        let Some(Backing::Mapped(ranges)) = self.ram.backing.get(block) else {
            return Ok(());
        };
        let mem = self.ram.mem.memory();
        let ps = self.page_size;
        let mut run: Option<PageRun> = None;
        let mut page = 0u64;
        for r in ranges {
            for at in (0..r.len).step_by(ps as usize) {
                let gpa = GuestAddress(r.start.0 + at);
                let (region, offset) = mem.to_region_addr(gpa).ok_or(AccessError::Memory(
                    GuestMemoryError::InvalidGuestAddress(gpa),
                ))?;
                let bitmap: &AtomicBitmap = (**region).bitmap();
                let start = offset.raw_value() as usize;
                let dirty = (0..ps.min(r.len - at))
                    .step_by(BITMAP_STEP.min(ps) as usize)
                    .any(|k| bitmap.is_addr_set(start + k as usize));
                if dirty {
                    bitmap.reset_addr_range(start, ps as usize);
                    match &mut run {
                        Some(x) if x.end() == page => x.count += 1,
                        _ => run
                            .replace(PageRun::new(page, 1))
                            .into_iter()
                            .for_each(&mut *visit),
                    }
                }
                page += 1;
            }
        }
        run.into_iter().for_each(visit);
        Ok(())
    }
}
