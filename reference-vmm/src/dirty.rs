//! Dirty page bitmaps: KVM's log merged with the pages the VMM changed itself.

#![forbid(unsafe_code)]

use ramstream_migrate::PageAddr;

use crate::guest_abi::PAGE_SIZE;

/// Which pages of one region changed since the previous fetch.
///
/// Bit `i` of word `i / 64` (bit `i % 64`) stands for page `i` of the region, the layout of
/// `KVM_GET_DIRTY_LOG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    region: usize,
    pages: u64,
    words: Vec<u64>,
}

impl DirtyBitmap {
    /// A bitmap for `pages` pages of region `region` with the bits of `words` (bits past
    /// `pages` are ignored; missing words count as clean).
    pub fn new(region: usize, pages: u64, mut words: Vec<u64>) -> Self {
        let n = pages.div_ceil(64) as usize;
        words.resize(n, 0);
        if !pages.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last &= (1u64 << (pages % 64)) - 1;
            }
        }
        Self {
            region,
            pages,
            words,
        }
    }

    /// The region index in the [`MemoryLayout`](crate::MemoryLayout).
    pub fn region(&self) -> usize {
        self.region
    }

    /// Pages the bitmap covers (the region's size in pages).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The raw words.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Number of dirty pages.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// True if no page is dirty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// True if page `page` is dirty (false beyond the region).
    pub fn is_dirty(&self, page: u64) -> bool {
        self.words
            .get((page / 64) as usize)
            .is_some_and(|w| w & (1 << (page % 64)) != 0)
    }

    /// Marks `page` dirty (ignored beyond the region).
    pub fn set(&mut self, page: u64) {
        if page < self.pages {
            self.words[(page / 64) as usize] |= 1 << (page % 64);
        }
    }

    /// Adds the dirty pages of `other` words (same layout) to this bitmap.
    pub fn merge_words(&mut self, other: &[u64]) {
        for (w, o) in self.words.iter_mut().zip(other) {
            *w |= o;
        }
        // Re-apply the tail mask.
        *self = Self::new(self.region, self.pages, std::mem::take(&mut self.words));
    }

    /// The addresses of the dirty pages (block = the region), ascending.
    pub fn addrs(&self) -> impl Iterator<Item = PageAddr> + '_ {
        self.iter()
            .map(|p| PageAddr::of_page(self.region, p, PAGE_SIZE))
    }

    /// The dirty page indices, ascending; skips clean words without looking at their bits.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut bits = w;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                Some(i as u64 * 64 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DirtyBitmap;

    #[test]
    fn iterates_and_masks_tail() {
        let mut d = DirtyBitmap::new(1, 70, vec![0b101, u64::MAX]);
        assert_eq!(d.count(), 2 + 6);
        assert_eq!(d.iter().take(3).collect::<Vec<_>>(), vec![0, 2, 64]);
        d.set(3);
        d.set(1000);
        assert!(d.is_dirty(3) && !d.is_dirty(1) && !d.is_dirty(1000));
        d.merge_words(&[1 << 10]);
        assert!(d.is_dirty(10));
        assert_eq!(DirtyBitmap::new(0, 5, vec![]).count(), 0);
    }
}
