//! Written-page tracking: which pages the loader has written non-zero, so that a ZERO record
//! for a page that was never written (and so is still zero) costs nothing.
//!
//! Pages are named by address ([`PageAddr`]) on the way in and out; the bit index of a page
//! ([`PageAddr::page_index`]) stays inside the bitmap.
//!
//! The bits are atomic so that one bitmap serves the main stream and every multifd channel
//! of a migration at once (SPEC.md §14.5): each channel thread marks the pages it writes,
//! and a ZERO record on the main stream (or a zero page in a channel) after a sync point sees
//! them. Within one epoch the main stream and the channels write disjoint pages; across
//! epochs the caller's barrier orders them, so relaxed operations suffice.
//!
//! Beside the written bits, a "touched" bit per digest chunk ([`DIGEST_CHUNK_PAGES`] pages)
//! is set after every write to the chunk (page, fill, XBZRLE, zeroing), by whichever thread
//! wrote; the loader takes them to mark its running chunk digests stale (SPEC.md §13.7).
//! Set with release after the write, taken with acquire before the re-hash: a write either
//! is seen by that re-hash or sets the bit again for the next one.

use std::sync::atomic::{AtomicU64, Ordering};

use ramstream_codec::balloon::PageRun;
use ramstream_codec::PageAddr;
use ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES;

/// A bit per target page of each block, in the stream's block numbering.
#[derive(Debug)]
pub(crate) struct WrittenPages {
    page_size: usize,
    blocks: Vec<Vec<AtomicU64>>,
    /// A bit per digest chunk of each block: written since the bits were last taken.
    touched: Vec<Vec<AtomicU64>>,
}

impl Default for WrittenPages {
    /// No block at all (before the MEM_SIZE record).
    fn default() -> Self {
        WrittenPages {
            page_size: ramstream_spec::ram::TARGET_PAGE_SIZE_X86,
            blocks: Vec::new(),
            touched: Vec::new(),
        }
    }
}

impl WrittenPages {
    /// No page written, for blocks of `used_lengths[i]` bytes each, in pages of `page_size`
    /// bytes.
    pub(crate) fn new(used_lengths: impl IntoIterator<Item = u64>, page_size: usize) -> Self {
        let pages: Vec<u64> = used_lengths
            .into_iter()
            .map(|len| PageRun::of_block(len, page_size).count)
            .collect();
        let zeroed = |bits: u64| (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        WrittenPages {
            page_size,
            blocks: pages.iter().map(|&p| zeroed(p)).collect(),
            touched: pages
                .iter()
                .map(|&p| zeroed(p.div_ceil(DIGEST_CHUNK_PAGES)))
                .collect(),
        }
    }

    /// Records that `addr`'s page was written (after the write): its chunk's touched bit.
    pub(crate) fn touch(&self, addr: PageAddr) {
        let chunk = addr.page_index(self.page_size) / DIGEST_CHUNK_PAGES;
        let word = usize::try_from(chunk / 64).ok();
        if let Some(w) = word.and_then(|w| self.touched.get(addr.block)?.get(w)) {
            w.fetch_or(1u64 << (chunk % 64), Ordering::Release);
        }
    }

    /// Takes (and clears) the touched bits of `block`'s chunks: bit `i % 64` of word `i / 64`
    /// is chunk `i`.
    pub(crate) fn take_touched(&self, block: usize) -> Vec<u64> {
        self.touched.get(block).map_or_else(Vec::new, |words| {
            words.iter().map(|w| w.swap(0, Ordering::Acquire)).collect()
        })
    }

    /// The word holding `addr`'s bit, and the bit's mask in it.
    fn bit(&self, addr: PageAddr) -> Option<(&AtomicU64, u64)> {
        let page = addr.page_index(self.page_size);
        let word = usize::try_from(page / 64).ok()?;
        self.blocks
            .get(addr.block)?
            .get(word)
            .map(|w| (w, 1u64 << (page % 64)))
    }

    /// `addr`'s page was written non-zero (after the write): marks it, and touches it.
    pub(crate) fn mark(&self, addr: PageAddr) {
        if let Some((w, bit)) = self.bit(addr) {
            w.fetch_or(bit, Ordering::Relaxed);
        }
        self.touch(addr);
    }

    pub(crate) fn unmark(&self, addr: PageAddr) {
        if let Some((w, bit)) = self.bit(addr) {
            w.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_marked(&self, addr: PageAddr) -> bool {
        self.bit(addr)
            .is_some_and(|(w, bit)| w.load(Ordering::Relaxed) & bit != 0)
    }

    /// The addresses of the marked pages of `block` within `run`, ascending; skips unmarked
    /// words whole.
    pub(crate) fn marked_in(&self, block: usize, run: PageRun) -> Vec<PageAddr> {
        let mut out = Vec::new();
        let Some(words) = self.blocks.get(block) else {
            return out;
        };
        let end = run.end().min(words.len() as u64 * 64);
        let mut p = run.start;
        while p < end {
            let w = words[(p / 64) as usize].load(Ordering::Relaxed) >> (p % 64);
            if w == 0 {
                p = (p / 64 + 1) * 64;
                continue;
            }
            let next = p + u64::from(w.trailing_zeros());
            if next >= end {
                break;
            }
            out.push(PageAddr::of_page(block, next, self.page_size));
            p = next + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 4096;

    fn at(block: usize, page: u64) -> PageAddr {
        PageAddr::of_page(block, page, PS)
    }

    fn pages(addrs: Vec<PageAddr>) -> Vec<u64> {
        addrs.iter().map(|a| a.page_index(PS)).collect()
    }

    #[test]
    fn marks_and_finds_pages_in_runs() {
        let w = WrittenPages::new([200 * PS as u64, 10 * PS as u64], PS);
        for p in [0, 5, 63, 64, 130, 199] {
            w.mark(at(0, p));
        }
        w.mark(at(1, 9));
        w.mark(at(1, 64)); // past the block's bits: ignored
        w.mark(at(2, 0)); // no such block: ignored
        w.mark(PageAddr::new(0, u64::MAX)); // far past the block: ignored
        assert!(w.is_marked(at(0, 63)) && !w.is_marked(at(0, 62)) && w.is_marked(at(1, 9)));
        assert!(!w.is_marked(at(1, 64)) && !w.is_marked(at(2, 0)));
        assert_eq!(
            pages(w.marked_in(0, PageRun::new(0, 200))),
            [0, 5, 63, 64, 130, 199]
        );
        assert_eq!(pages(w.marked_in(0, PageRun::from_range(6..130))), [63, 64]);
        assert_eq!(pages(w.marked_in(0, PageRun::from_range(131..1000))), [199]);
        assert_eq!(w.marked_in(1, PageRun::new(0, 10)), [at(1, 9)]);
        assert!(w.marked_in(3, PageRun::new(0, 10)).is_empty());
        w.unmark(at(0, 64));
        assert_eq!(pages(w.marked_in(0, PageRun::from_range(60..70))), [63]);
    }

    #[test]
    fn writes_touch_their_chunk_until_the_bits_are_taken() {
        let w = WrittenPages::new([2000 * PS as u64], PS);
        w.mark(at(0, 17)); // chunk 1
        w.touch(at(0, 16 * 70)); // chunk 70: word 1, bit 6
        w.touch(at(0, 5000)); // past the block: ignored
        w.unmark(at(0, 3)); // no write: no touch
        assert_eq!(w.take_touched(0)[..2], [1 << 1, 1 << 6]);
        assert!(w.take_touched(0).iter().all(|&b| b == 0), "taken");
        assert!(w.take_touched(1).is_empty());
    }

    #[test]
    fn threads_marking_neighbouring_pages_of_one_word_lose_no_bit() {
        let w = WrittenPages::new([64 * PS as u64], PS);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let w = &w;
                s.spawn(move || {
                    for p in (t..64).step_by(4) {
                        w.mark(at(0, p));
                    }
                });
            }
        });
        assert_eq!(w.marked_in(0, PageRun::new(0, 64)).len(), 64);
    }
}
