//! A set of pages per RAM block, one bit a page in 64-bit words (the layout of
//! `KVM_GET_DIRTY_LOG` and vm-memory's `AtomicBitmap`): the dirty pages handed in since the
//! last sync, and the pages of a round.

use core::ops::Range;

/// Pages of each block, one bit a page; bits past a block's last page are never set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageSet {
    words: Vec<Vec<u64>>,
    pages: Vec<u64>,
}

/// Calls `f(word index, mask)` for the words that `range` (in pages) touches.
fn for_each_word(range: Range<u64>, mut f: impl FnMut(usize, u64)) {
    let mut p = range.start;
    while p < range.end {
        let w = p / 64;
        let lo = p % 64;
        let hi = (range.end - w * 64).min(64);
        let width = hi - lo;
        let mask = if width == 64 {
            !0
        } else {
            ((1u64 << width) - 1) << lo
        };
        f(w as usize, mask);
        p = w * 64 + hi;
    }
}

impl PageSet {
    /// No page of blocks of `pages` pages each.
    pub(crate) fn empty(pages: &[u64]) -> Self {
        PageSet {
            words: pages
                .iter()
                .map(|&p| vec![0; p.div_ceil(64) as usize])
                .collect(),
            pages: pages.to_vec(),
        }
    }

    /// Every page.
    pub(crate) fn full(pages: &[u64]) -> Self {
        let mut s = PageSet::empty(pages);
        for (b, &p) in pages.iter().enumerate() {
            s.insert(b, 0..p);
        }
        s
    }

    /// Adds `range` of `block` (the caller checked it is inside the block).
    pub(crate) fn insert(&mut self, block: usize, range: Range<u64>) {
        let words = &mut self.words[block];
        for_each_word(range, |w, m| words[w] |= m);
    }

    /// Adds the pages whose bits are set in `bitmap` (bit `i % 64` of word `i / 64` is page
    /// `i`); bits past the block's last page are ignored.
    pub(crate) fn insert_words(&mut self, block: usize, bitmap: &[u64]) {
        let pages = self.pages[block];
        for (w, (dst, &src)) in self.words[block].iter_mut().zip(bitmap).enumerate() {
            let left = pages - w as u64 * 64;
            *dst |= if left >= 64 {
                src
            } else {
                src & ((1 << left) - 1)
            };
        }
    }

    /// Removes `range` of `block` (clipped to the block); returns how many pages were in
    /// the set.
    pub(crate) fn remove(&mut self, block: usize, range: Range<u64>) -> u64 {
        let range = range.start..range.end.min(self.pages[block]);
        let words = &mut self.words[block];
        let mut removed = 0;
        for_each_word(range, |w, m| {
            removed += u64::from((words[w] & m).count_ones());
            words[w] &= !m;
        });
        removed
    }

    /// Adds every page of `other` (of the same blocks).
    pub(crate) fn union(&mut self, other: &PageSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            for (x, y) in a.iter_mut().zip(b) {
                *x |= y;
            }
        }
    }

    /// How many pages.
    pub(crate) fn count(&self) -> u64 {
        self.words
            .iter()
            .flatten()
            .map(|w| u64::from(w.count_ones()))
            .sum()
    }

    /// Removes every page.
    pub(crate) fn clear(&mut self) {
        self.words.iter_mut().flatten().for_each(|w| *w = 0);
    }

    /// The first page at or after `(block, page)`, in block order then page order.
    pub(crate) fn next_from(&self, (mut block, mut page): (usize, u64)) -> Option<(usize, u64)> {
        while let Some(words) = self.words.get(block) {
            let mut w = (page / 64) as usize;
            if let Some(&first) = words.get(w) {
                let mut bits = first & (!0u64 << (page % 64));
                loop {
                    if bits != 0 {
                        return Some((block, w as u64 * 64 + u64::from(bits.trailing_zeros())));
                    }
                    w += 1;
                    match words.get(w) {
                        Some(&next) => bits = next,
                        None => break,
                    }
                }
            }
            block += 1;
            page = 0;
        }
        None
    }
}

impl PageSet {
    /// The first run of consecutive pages at or after `at`, at most `max` long (`max` > 0):
    /// `(block, first page, pages)`. A run never crosses a block.
    pub(crate) fn run_from(&self, at: (usize, u64), max: u64) -> Option<(usize, u64, u64)> {
        let (block, first) = self.next_from(at)?;
        let words = &self.words[block];
        let mut len = 0u64;
        let mut p = first;
        while len < max {
            let Some(&word) = words.get((p / 64) as usize) else {
                break;
            };
            let ones = u64::from((word >> (p % 64)).trailing_ones()).min(64 - p % 64);
            len += ones;
            p += ones;
            if ones == 0 || p % 64 != 0 {
                break;
            }
        }
        Some((block, first, len.min(max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &PageSet) -> Vec<(usize, u64)> {
        let mut v = Vec::new();
        let mut at = (0, 0);
        while let Some(p) = s.next_from(at) {
            v.push(p);
            at = (p.0, p.1 + 1);
        }
        v
    }

    #[test]
    fn ranges_across_words_and_block_ends() {
        let mut s = PageSet::empty(&[130, 3]);
        s.insert(0, 60..70);
        s.insert(0, 128..130);
        s.insert(1, 2..3);
        assert_eq!(s.count(), 13);
        let v = all(&s);
        assert_eq!(v.first(), Some(&(0, 60)));
        assert_eq!(&v[10..], [(0, 128), (0, 129), (1, 2)]);
        assert_eq!(s.remove(0, 65..200), 7);
        assert_eq!(s.count(), 6);
        let full = PageSet::full(&[130, 3]);
        assert_eq!(full.count(), 133);
        assert_eq!(all(&full).last(), Some(&(1, 2)));
        let mut e = PageSet::empty(&[130, 3]);
        e.insert_words(0, &[0, 0, !0]);
        e.insert_words(1, &[!0]);
        assert_eq!(all(&e), [(0, 128), (0, 129), (1, 0), (1, 1), (1, 2)]);
        e.union(&s);
        assert_eq!(e.count(), 10, "(1, 2) is in both");
        e.clear();
        assert_eq!(e.next_from((0, 0)), None);
    }

    #[test]
    fn runs_stop_at_gaps_block_ends_and_the_maximum() {
        let mut s = PageSet::empty(&[300, 70]);
        s.insert(0, 3..5);
        s.insert(0, 60..200);
        s.insert(0, 250..300);
        s.insert(1, 0..70);
        let mut runs = Vec::new();
        let mut at = (0, 0);
        while let Some((b, p, n)) = s.run_from(at, 100) {
            runs.push((b, p, n));
            at = (b, p + n);
        }
        assert_eq!(
            runs,
            [
                (0, 3, 2),
                (0, 60, 100),
                (0, 160, 40),
                (0, 250, 50),
                (1, 0, 70)
            ]
        );
        // Every page once, in order, as `next_from` walks them.
        let pages: Vec<_> = runs
            .iter()
            .flat_map(|&(b, p, n)| (p..p + n).map(move |q| (b, q)))
            .collect();
        assert_eq!(pages, all(&s));
        assert_eq!(s.run_from((0, 64), 1), Some((0, 64, 1)));
        assert_eq!(s.run_from((1, 70), 5), None);
    }
}
