//! Where a page lands: a block of the MEM_SIZE list and a byte offset in it.
//!
//! The one page-address convention of ramstream: an address is a [`PageAddr`], a block and a
//! *byte* offset (as a page record's word carries it, SPEC.md §6.2). Page *indices* appear
//! only inside a [`PageRun`](crate::balloon::PageRun) (whose wire form counts pages,
//! SPEC.md §9.5) and inside bitmaps; the conversions between the two are the methods here
//! and on `PageRun`, never hand arithmetic at the call site.

/// Where a page record lands: block index (into the MEM_SIZE list) and byte offset in the
/// block.
///
/// The offset is in bytes, as a page record's word carries it (SPEC.md §6.2). To go from a
/// page index and back, use [`PageAddr::of_page`] and [`PageAddr::page_index`]; runs of
/// pages are [`PageRun`](crate::balloon::PageRun)s.
///
/// ```
/// use ramstream_codec::PageAddr;
/// let a = PageAddr::of_page(1, 3, 4096);
/// assert_eq!(a, PageAddr { block: 1, offset: 0x3000 });
/// assert_eq!(a.page_index(4096), 3);
/// assert!(a.is_page_aligned(4096) && !PageAddr::new(1, 0x3001).is_page_aligned(4096));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageAddr {
    /// Index of the block in the current MEM_SIZE list.
    pub block: usize,
    /// Byte offset inside the block (page aligned).
    pub offset: u64,
}

impl PageAddr {
    /// The address `offset` bytes into block `block`.
    pub const fn new(block: usize, offset: u64) -> Self {
        PageAddr { block, offset }
    }

    /// The address of page `index` of block `block`, pages being `page_size` bytes: byte
    /// offset `index * page_size` (saturating: a page index that large lies outside every
    /// block, and its address is refused there rather than wrapping onto another page).
    pub const fn of_page(block: usize, index: u64, page_size: usize) -> Self {
        PageAddr {
            block,
            offset: index.saturating_mul(page_size as u64),
        }
    }

    /// The index of the page of `page_size` bytes that holds this address: `offset /
    /// page_size` (the page an unaligned offset falls into).
    ///
    /// # Panics
    ///
    /// If `page_size` is 0 (a page size is a power of two).
    pub const fn page_index(&self, page_size: usize) -> u64 {
        self.offset / page_size as u64
    }

    /// Whether the offset is a multiple of `page_size` (the start of a page).
    pub const fn is_page_aligned(&self, page_size: usize) -> bool {
        self.offset.is_multiple_of(page_size as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::PageAddr;

    #[test]
    fn page_index_and_address_convert_both_ways() {
        for ps in [1024usize, 4096, 65536] {
            for index in [0u64, 1, 7, 1 << 20] {
                let a = PageAddr::of_page(2, index, ps);
                assert_eq!(a.block, 2);
                assert_eq!(a.offset, index * ps as u64);
                assert_eq!(a.page_index(ps), index);
                assert!(a.is_page_aligned(ps));
            }
        }
        // An unaligned offset belongs to the page it falls into.
        let a = PageAddr::new(0, 0x3fff);
        assert_eq!((a.page_index(4096), a.is_page_aligned(4096)), (3, false));
        // A huge index saturates instead of wrapping onto a small offset.
        assert_eq!(PageAddr::of_page(0, u64::MAX / 2, 4096).offset, u64::MAX);
    }
}
