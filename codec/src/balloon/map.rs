//! The balloon map: which pages of each block are ballooned, kept as runs (SPEC.md §9.8).

use core::fmt;
use core::ops::Range;
use std::collections::{btree_map, BTreeMap};

use ramstream_spec::extension::KOLHE_BALLOON_PAGE_SHIFT;

use crate::balloon::{BalloonMapKind, BalloonRecord, KolheBalloon, PageRun};
use crate::ram::RamBlock;

/// One block's ballooned pages: disjoint, non-adjacent runs `start → end` (end exclusive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct BlockMap {
    idstr: String,
    /// The block's used length in bytes.
    bytes: u64,
    /// The block's size in target pages.
    pages: u64,
    runs: BTreeMap<u64, u64>,
    ballooned: u64,
}

impl BlockMap {
    fn inflate(&mut self, start: u64, end: u64) {
        let (mut s, mut e) = (start, end);
        // Merge every run that overlaps or touches [s, e).
        while let Some((&rs, &re)) = self.runs.range(..=e).next_back() {
            if re < s {
                break;
            }
            s = s.min(rs);
            e = e.max(re);
            self.runs.remove(&rs);
            self.ballooned -= re - rs;
        }
        self.runs.insert(s, e);
        self.ballooned += e - s;
    }

    fn deflate(&mut self, start: u64, end: u64) {
        // Runs starting before `end` and ending after `start`, right to left.
        while let Some((&rs, &re)) = self.runs.range(..end).next_back() {
            if re <= start {
                break;
            }
            self.runs.remove(&rs);
            self.ballooned -= re - rs;
            if rs < start {
                self.runs.insert(rs, start);
                self.ballooned += start - rs;
            }
            if re > end {
                self.runs.insert(end, re);
                self.ballooned += re - end;
            }
        }
    }

    fn contains(&self, page: u64) -> bool {
        self.runs
            .range(..=page)
            .next_back()
            .is_some_and(|(_, &re)| re > page)
    }
}

/// Why a change to a [`BalloonMap`] was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BalloonMapError {
    /// The map has no block with this index.
    NoBlock {
        /// The index.
        block: usize,
    },
    /// Pages past the end of the block.
    OutOfRange {
        /// The block index.
        block: usize,
        /// The pages asked for.
        pages: Range<u64>,
        /// The block's size in pages.
        size: u64,
    },
}

impl fmt::Display for BalloonMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalloonMapError::NoBlock { block } => write!(f, "no RAM block with index {block}"),
            BalloonMapError::OutOfRange { block, pages, size } => write!(
                f,
                "pages {}..{} of block {block} past its {size} pages",
                pages.start, pages.end
            ),
        }
    }
}

impl std::error::Error for BalloonMapError {}

/// Pages a record made ballooned: the receiver releases them (SPEC.md §9.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalloonedRange {
    /// The block index.
    pub block: usize,
    /// Target pages of the block.
    pub pages: Range<u64>,
}

/// Which target pages of each RAM block are ballooned, kept as runs rather than a bit per
/// page: every operation costs O(log runs) per run touched, never O(pages) (SPEC.md §9.8).
///
/// The sender skips ballooned pages with [`BalloonMap::unballooned_ranges`]; the receiver
/// applies decoded records with [`BalloonMap::apply`], never writes or zero-fills a ballooned
/// page, and releases (discards) the ranges `apply` returns.
///
/// ```
/// use ramstream_codec::balloon::{BalloonMap, PageRun};
/// use ramstream_codec::RamBlock;
/// let blocks = [RamBlock { idstr: "pc.ram".into(), used_length: 100 << 12, page_size: None, mr_addr: None }];
/// let mut map = BalloonMap::new(&blocks, 12);
/// map.inflate(0, 10..50).unwrap();
/// map.deflate(0, 20..30).unwrap();
/// assert!(map.contains(0, 10) && !map.contains(0, 25) && map.contains(0, 49));
/// assert_eq!(map.runs(0).collect::<Vec<_>>(), [PageRun::new(10, 10), PageRun::new(30, 20)]);
/// assert_eq!(map.ballooned_pages(0), 30);
/// let todo: Vec<_> = map.unballooned_ranges(0, 0..100).collect();
/// assert_eq!(todo, [0..10, 20..30, 50..100]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalloonMap {
    page_bits: u32,
    blocks: Vec<BlockMap>,
    disabled: bool,
}

impl BalloonMap {
    /// An empty map over the MEM_SIZE `blocks` of a target with `page_bits` page bits.
    pub fn new(blocks: &[RamBlock], page_bits: u32) -> Self {
        BalloonMap {
            page_bits,
            blocks: blocks
                .iter()
                .map(|b| BlockMap {
                    idstr: b.idstr.clone(),
                    bytes: b.used_length,
                    pages: b.used_length >> page_bits,
                    ..Default::default()
                })
                .collect(),
            disabled: false,
        }
    }

    /// How many blocks the map covers.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// A block's idstr.
    pub fn idstr(&self, block: usize) -> Option<&str> {
        self.blocks.get(block).map(|b| b.idstr.as_str())
    }

    /// A block's size in target pages (0 for an unknown block).
    pub fn block_pages(&self, block: usize) -> u64 {
        self.blocks.get(block).map_or(0, |b| b.pages)
    }

    /// Whether a kolhe-2016 DISABLE record switched the optimisation off (SPEC.md §9.6).
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    fn block_mut(
        &mut self,
        block: usize,
        pages: &Range<u64>,
    ) -> Result<&mut BlockMap, BalloonMapError> {
        let b = self
            .blocks
            .get_mut(block)
            .ok_or(BalloonMapError::NoBlock { block })?;
        if pages.start > pages.end || pages.end > b.pages {
            return Err(BalloonMapError::OutOfRange {
                block,
                pages: pages.clone(),
                size: b.pages,
            });
        }
        Ok(b)
    }

    /// Marks `pages` of `block` ballooned (the guest gave them to the host).
    pub fn inflate(&mut self, block: usize, pages: Range<u64>) -> Result<(), BalloonMapError> {
        let b = self.block_mut(block, &pages)?;
        if pages.start < pages.end {
            b.inflate(pages.start, pages.end);
        }
        Ok(())
    }

    /// Marks `pages` of `block` not ballooned (the host returned them to the guest).
    pub fn deflate(&mut self, block: usize, pages: Range<u64>) -> Result<(), BalloonMapError> {
        let b = self.block_mut(block, &pages)?;
        if pages.start < pages.end {
            b.deflate(pages.start, pages.end);
        }
        Ok(())
    }

    /// Forgets every ballooned page of `block`.
    pub fn clear_block(&mut self, block: usize) {
        if let Some(b) = self.blocks.get_mut(block) {
            b.runs.clear();
            b.ballooned = 0;
        }
    }

    /// Forgets every ballooned page.
    pub fn clear(&mut self) {
        for i in 0..self.blocks.len() {
            self.clear_block(i);
        }
    }

    /// Whether `page` of `block` is ballooned. O(log runs).
    pub fn contains(&self, block: usize, page: u64) -> bool {
        self.blocks.get(block).is_some_and(|b| b.contains(page))
    }

    /// The ballooned runs of `block`, ascending.
    pub fn runs(&self, block: usize) -> impl Iterator<Item = PageRun> + '_ {
        self.blocks
            .get(block)
            .into_iter()
            .flat_map(|b| b.runs.iter().map(|(&s, &e)| PageRun::new(s, e - s)))
    }

    /// How many ballooned runs `block` has.
    pub fn run_count(&self, block: usize) -> usize {
        self.blocks.get(block).map_or(0, |b| b.runs.len())
    }

    /// How many pages of `block` are ballooned. O(1).
    pub fn ballooned_pages(&self, block: usize) -> u64 {
        self.blocks.get(block).map_or(0, |b| b.ballooned)
    }

    /// How many pages of all blocks are ballooned.
    pub fn total_ballooned_pages(&self) -> u64 {
        self.blocks
            .iter()
            .fold(0u64, |a, b| a.saturating_add(b.ballooned))
    }

    /// The pages of `within` (clipped to the block) that are *not* ballooned, as ranges,
    /// ascending. Ballooned pages are skipped a run at a time, never visited one by one: the
    /// sender's scan (SPEC.md §9.8). O((runs in `within` + 1) · log runs).
    pub fn unballooned_ranges(&self, block: usize, within: Range<u64>) -> UnballoonedRanges<'_> {
        let Some(b) = self.blocks.get(block) else {
            return UnballoonedRanges {
                runs: None,
                pos: 0,
                end: 0,
            };
        };
        let end = within.end.min(b.pages);
        let mut pos = within.start;
        if let Some((_, &re)) = b.runs.range(..=pos).next_back() {
            pos = pos.max(re);
        }
        UnballoonedRanges {
            runs: Some(b.runs.range(pos..)),
            pos,
            end,
        }
    }

    /// Applies a decoded balloon record and returns the ranges it made ballooned, which a
    /// receiver releases (SPEC.md §9.8).
    ///
    /// - v1 full map: the block's map becomes exactly the inflate runs.
    /// - v1 incremental: deflate runs are cleared, inflate runs set (they are disjoint).
    /// - kolhe-2016: runs are set, never cleared (the 2016 loader only calls `bitmap_set`);
    ///   global 4 KiB indices map to blocks laid end to end in MEM_SIZE order, and only target
    ///   pages the run covers entirely are set. Pages past the last block (the bitmap counts
    ///   `ram_addr` space, which is larger than the blocks' used lengths) are ignored. An
    ///   unchanged record (`KolheBitmap::is_unchanged`) has no run and changes nothing.
    ///   DISABLE clears the map and marks it disabled.
    pub fn apply(
        &mut self,
        rec: &BalloonRecord<'_>,
    ) -> Result<Vec<BalloonedRange>, BalloonMapError> {
        let mut released = Vec::new();
        match rec {
            BalloonRecord::V1(v) => {
                let b = self
                    .blocks
                    .get(v.block)
                    .ok_or(BalloonMapError::NoBlock { block: v.block })?;
                let size = b.pages;
                for r in v.inflate.iter().chain(v.deflate.iter()) {
                    if r.start.checked_add(r.count).is_none_or(|e| e > size) {
                        return Err(BalloonMapError::OutOfRange {
                            block: v.block,
                            pages: r.start..r.end(),
                            size,
                        });
                    }
                }
                if v.kind == BalloonMapKind::FullMap {
                    self.clear_block(v.block);
                }
                for r in v.deflate.iter() {
                    self.deflate(v.block, r.range())?;
                }
                for r in v.inflate.iter() {
                    self.inflate(v.block, r.range())?;
                    released.push(BalloonedRange {
                        block: v.block,
                        pages: r.range(),
                    });
                }
            }
            BalloonRecord::Kolhe(KolheBalloon::Disabled) => {
                self.clear();
                self.disabled = true;
            }
            BalloonRecord::Kolhe(KolheBalloon::Bitmap(k)) => {
                let total = self
                    .blocks
                    .iter()
                    .fold(0u64, |a, b| a.saturating_add(b.bytes));
                let page = 1u64 << self.page_bits;
                for r in k.runs.iter() {
                    // The bitmap may be larger than the blocks (SPEC.md §9.6): a page past
                    // the last block is in no block and is ignored.
                    let shift = KOLHE_BALLOON_PAGE_SHIFT;
                    let bytes = (
                        r.start.saturating_mul(1 << shift),
                        r.end().saturating_mul(1 << shift).min(total),
                    );
                    if bytes.0 >= bytes.1 {
                        continue;
                    }
                    let mut base = 0u64;
                    for (i, b) in self.blocks.iter_mut().enumerate() {
                        let block_end = base.saturating_add(b.bytes);
                        let (lo, hi) = (bytes.0.max(base), bytes.1.min(block_end));
                        if lo < hi {
                            let first = (lo - base).div_ceil(page);
                            let last = (hi - base) / page;
                            if first < last {
                                b.inflate(first, last);
                                released.push(BalloonedRange {
                                    block: i,
                                    pages: first..last,
                                });
                            }
                        }
                        base = block_end;
                        if base >= bytes.1 {
                            break;
                        }
                    }
                }
            }
        }
        Ok(released)
    }
}

/// Iterator of [`BalloonMap::unballooned_ranges`].
#[derive(Clone, Debug)]
pub struct UnballoonedRanges<'m> {
    runs: Option<btree_map::Range<'m, u64, u64>>,
    pos: u64,
    end: u64,
}

impl Iterator for UnballoonedRanges<'_> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            match self.runs.as_mut().and_then(|r| r.next()) {
                Some((&rs, &re)) if rs > self.pos => {
                    let out = self.pos..rs.min(self.end);
                    self.pos = re;
                    return Some(out);
                }
                Some((_, &re)) => self.pos = self.pos.max(re),
                None => {
                    let out = self.pos..self.end;
                    self.pos = self.end;
                    return Some(out);
                }
            }
        }
    }
}
