//! The balloon device's host side: which guest pages the guest has given back.
//!
//! Runs are the codec's [`PageRun`]: 4 KiB x86 target pages
//! ([`TARGET_PAGE_SIZE_X86`](ramstream_spec::ram::TARGET_PAGE_SIZE_X86)) counted from the start
//! of one region (RAM block), the unit of SPEC.md §9.5's v1 balloon records. Where runs of
//! several regions travel in one list, each is paired with its region index:
//! `(region, run)`.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use ramstream_migrate::PageRun;

use crate::error::{Error, Result};
use crate::memory::{GuestMemory, MemoryLayout};

/// A page bitmap, one bit per 4 KiB page, set from any thread.
#[derive(Debug)]
struct AtomicBitmap {
    words: Vec<AtomicU64>,
}

impl AtomicBitmap {
    fn new(pages: u64) -> Self {
        Self {
            words: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn set_range(&self, run: PageRun) {
        for page in run.range() {
            if let Some(w) = self.words.get((page / 64) as usize) {
                w.fetch_or(1 << (page % 64), Ordering::Relaxed);
            }
        }
    }

    fn clear_range(&self, run: PageRun) {
        for page in run.range() {
            if let Some(w) = self.words.get((page / 64) as usize) {
                w.fetch_and(!(1 << (page % 64)), Ordering::Relaxed);
            }
        }
    }

    /// Clears the bitmap.
    fn clear(&self) {
        for w in &self.words {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Returns a copy of the bitmap.
    fn snapshot(&self) -> Vec<u64> {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }
}

/// The host's record of ballooned pages: one bitmap per region.
#[derive(Debug)]
pub(crate) struct Balloon {
    layout: MemoryLayout,
    bitmaps: Vec<AtomicBitmap>,
}

impl Balloon {
    pub(crate) fn new(layout: &MemoryLayout) -> Self {
        Self {
            layout: layout.clone(),
            bitmaps: layout
                .regions
                .iter()
                .map(|r| AtomicBitmap::new(r.pages()))
                .collect(),
        }
    }

    /// Splits the RAM pages of `ram` (a run of RAM page numbers) into per-region runs;
    /// refuses an empty run or one past the end of RAM.
    pub(crate) fn split(layout: &MemoryLayout, ram: PageRun) -> Result<Vec<(usize, PageRun)>> {
        let total = layout.total_pages();
        if ram.count == 0 || ram.start.checked_add(ram.count).is_none_or(|e| e > total) {
            return Err(Error::InvalidConfig(format!(
                "balloon range {}+{} is not inside RAM pages 0..{total}",
                ram.start, ram.count
            )));
        }
        Ok(layout.split(ram))
    }

    /// The guest gave the RAM pages of `ram` back: discard the memory and record it.
    pub(crate) fn inflate(&self, mem: &GuestMemory, ram: PageRun) -> Result<()> {
        for (region, run) in Self::split(&self.layout, ram)? {
            mem.discard_pages(region, run)?;
            self.bitmaps[region].set_range(run);
        }
        Ok(())
    }

    /// The guest takes the RAM pages of `ram` back. The pages were discarded on inflate, so
    /// they read as zero; they are discarded again in case someone wrote them meanwhile.
    pub(crate) fn deflate(&self, mem: &GuestMemory, ram: PageRun) -> Result<()> {
        for (region, run) in Self::split(&self.layout, ram)? {
            mem.discard_pages(region, run)?;
            self.bitmaps[region].clear_range(run);
        }
        Ok(())
    }

    /// Records runs restored from a saved state (discarding the memory under them).
    pub(crate) fn restore(&self, mem: &GuestMemory, runs: &[(usize, PageRun)]) -> Result<()> {
        for b in &self.bitmaps {
            b.clear();
        }
        for &(region, run) in runs {
            self.inflate(mem, self.layout.ram_run(region, run)?)?;
        }
        Ok(())
    }

    /// The ballooned pages as runs, one list per region (indexed by region), each in
    /// ascending order.
    pub(crate) fn runs(&self) -> Vec<Vec<PageRun>> {
        let mut all = Vec::with_capacity(self.bitmaps.len());
        for (region, bitmap) in self.bitmaps.iter().enumerate() {
            let mut runs = Vec::new();
            let pages = self.layout.regions[region].pages();
            let mut start: Option<u64> = None;
            for (w, word) in bitmap.snapshot().into_iter().enumerate() {
                if word == 0 && start.is_none() || word == u64::MAX && start.is_some() {
                    continue;
                }
                for bit in 0..64 {
                    let page = w as u64 * 64 + bit;
                    let set = word & (1 << bit) != 0 && page < pages;
                    match (set, start) {
                        (true, None) => start = Some(page),
                        (false, Some(s)) => {
                            runs.push(PageRun::new(s, page - s));
                            start = None;
                        }
                        _ => {}
                    }
                }
            }
            if let Some(s) = start {
                runs.push(PageRun::new(s, pages - s));
            }
            all.push(runs);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_across_regions_and_runs_merge() {
        let layout = MemoryLayout::with_ram_size(16 << 20).unwrap();
        let mem = GuestMemory::new(&layout).unwrap();
        let b = Balloon::new(&layout);
        let low = layout.regions[0].pages();
        b.inflate(&mem, PageRun::new(low - 10, 20)).unwrap();
        b.inflate(&mem, PageRun::new(low + 10, 100)).unwrap();
        assert_eq!(
            b.runs(),
            vec![vec![PageRun::new(low - 10, 10)], vec![PageRun::new(0, 110)]]
        );
        b.deflate(&mem, PageRun::new(low + 50, 10)).unwrap();
        assert_eq!(b.runs().iter().map(Vec::len).sum::<usize>(), 3);
        let total = layout.total_pages();
        assert!(Balloon::split(&layout, PageRun::new(total - 1, 2)).is_err());
        assert!(Balloon::split(&layout, PageRun::new(0, 0)).is_err());
    }
}
