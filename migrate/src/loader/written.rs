//! Written-page tracking: which pages the loader has written non-zero, so that a ZERO record
//! for a page that was never written (and so is still zero) costs nothing.

use core::ops::Range;

/// A bit per target page of each block, in the stream's block numbering.
#[derive(Clone, Debug, Default)]
pub(crate) struct WrittenPages {
    blocks: Vec<Vec<u64>>,
}

impl WrittenPages {
    /// No page written, for blocks of `pages[i]` pages each.
    pub(crate) fn new(pages: impl IntoIterator<Item = u64>) -> Self {
        WrittenPages {
            blocks: pages
                .into_iter()
                .map(|p| vec![0u64; p.div_ceil(64) as usize])
                .collect(),
        }
    }

    fn word(&self, block: usize, page: u64) -> Option<&u64> {
        self.blocks.get(block)?.get((page / 64) as usize)
    }

    fn word_mut(&mut self, block: usize, page: u64) -> Option<&mut u64> {
        self.blocks.get_mut(block)?.get_mut((page / 64) as usize)
    }

    pub(crate) fn mark(&mut self, block: usize, page: u64) {
        if let Some(w) = self.word_mut(block, page) {
            *w |= 1 << (page % 64);
        }
    }

    pub(crate) fn unmark(&mut self, block: usize, page: u64) {
        if let Some(w) = self.word_mut(block, page) {
            *w &= !(1 << (page % 64));
        }
    }

    pub(crate) fn is_marked(&self, block: usize, page: u64) -> bool {
        self.word(block, page)
            .is_some_and(|w| w >> (page % 64) & 1 == 1)
    }

    /// The marked pages of `block` within `pages`, ascending; skips unmarked words whole.
    pub(crate) fn marked_in(&self, block: usize, pages: Range<u64>) -> Vec<u64> {
        let mut out = Vec::new();
        let Some(words) = self.blocks.get(block) else {
            return out;
        };
        let end = pages.end.min(words.len() as u64 * 64);
        let mut p = pages.start;
        while p < end {
            let w = words[(p / 64) as usize] >> (p % 64);
            if w == 0 {
                p = (p / 64 + 1) * 64;
                continue;
            }
            let next = p + u64::from(w.trailing_zeros());
            if next >= end {
                break;
            }
            out.push(next);
            p = next + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_finds_pages_in_ranges() {
        let mut w = WrittenPages::new([200, 10]);
        for p in [0, 5, 63, 64, 130, 199] {
            w.mark(0, p);
        }
        w.mark(1, 9);
        w.mark(1, 10); // past the block: ignored
        w.mark(2, 0); // no such block: ignored
        assert!(w.is_marked(0, 63) && !w.is_marked(0, 62) && w.is_marked(1, 9));
        assert_eq!(w.marked_in(0, 0..200), [0, 5, 63, 64, 130, 199]);
        assert_eq!(w.marked_in(0, 6..130), [63, 64]);
        assert_eq!(w.marked_in(0, 131..1000), [199]);
        assert!(w.marked_in(3, 0..10).is_empty());
        w.unmark(0, 64);
        assert_eq!(w.marked_in(0, 60..70), [63]);
    }
}
