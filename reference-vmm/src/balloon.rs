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

    fn set_range(&self, first: u64, count: u64) {
        for page in first..first + count {
            if let Some(w) = self.words.get((page / 64) as usize) {
                w.fetch_or(1 << (page % 64), Ordering::Relaxed);
            }
        }
    }

    fn clear_range(&self, first: u64, count: u64) {
        for page in first..first + count {
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

    /// Splits RAM pages `ram_first..ram_first + count` into per-region runs.
    pub(crate) fn split(
        layout: &MemoryLayout,
        ram_first: u64,
        count: u64,
    ) -> Result<Vec<(usize, PageRun)>> {
        let total = layout.total_pages();
        if count == 0 || ram_first.checked_add(count).is_none_or(|e| e > total) {
            return Err(Error::InvalidConfig(format!(
                "balloon range {ram_first}+{count} is not inside RAM pages 0..{total}"
            )));
        }
        let mut runs = Vec::new();
        let (mut next, mut left) = (ram_first, count);
        while left > 0 {
            let (region, page) = layout
                .locate(next)
                .ok_or_else(|| Error::InvalidConfig(format!("RAM page {next} outside RAM")))?;
            let n = left.min(layout.regions[region].pages() - page);
            runs.push((region, PageRun::new(page, n)));
            next += n;
            left -= n;
        }
        Ok(runs)
    }

    /// The guest gave `ram_first..+count` back: discard the memory and record it.
    pub(crate) fn inflate(&self, mem: &GuestMemory, ram_first: u64, count: u64) -> Result<()> {
        for (region, run) in Self::split(&self.layout, ram_first, count)? {
            mem.discard_pages(region, run.start, run.count)?;
            self.bitmaps[region].set_range(run.start, run.count);
        }
        Ok(())
    }

    /// The guest takes `ram_first..+count` back. The pages were discarded on inflate, so they
    /// read as zero; they are discarded again in case someone wrote them meanwhile.
    pub(crate) fn deflate(&self, mem: &GuestMemory, ram_first: u64, count: u64) -> Result<()> {
        for (region, run) in Self::split(&self.layout, ram_first, count)? {
            mem.discard_pages(region, run.start, run.count)?;
            self.bitmaps[region].clear_range(run.start, run.count);
        }
        Ok(())
    }

    /// Records runs restored from a saved state (discarding the memory under them).
    pub(crate) fn restore(&self, mem: &GuestMemory, runs: &[(usize, PageRun)]) -> Result<()> {
        for b in &self.bitmaps {
            b.clear();
        }
        for &(region, run) in runs {
            let ram_first = self.layout.ram_page(region, run.start)?;
            self.inflate(mem, ram_first, run.count)?;
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
        b.inflate(&mem, low - 10, 20).unwrap();
        b.inflate(&mem, low + 10, 100).unwrap();
        assert_eq!(
            b.runs(),
            vec![vec![PageRun::new(low - 10, 10)], vec![PageRun::new(0, 110)]]
        );
        b.deflate(&mem, low + 50, 10).unwrap();
        assert_eq!(b.runs().iter().map(Vec::len).sum::<usize>(), 3);
        assert!(Balloon::split(&layout, layout.total_pages() - 1, 2).is_err());
        assert!(Balloon::split(&layout, 0, 0).is_err());
    }
}
