//! Balloon records under flag 0x200 (SPEC.md §9): the 2016 dialect and ramstream's v1.
//!
//! Flag 0x200 means different things to different writers (SPEC.md §9.1): an error to QEMU
//! 7.2, `MULTIFD_FLUSH` to QEMU 8.1+, `RAM_SAVE_FLAG_BALLOON` to the never-merged 2016 patch
//! ([`Dialect::Kolhe2016`](ramstream_spec::Dialect::Kolhe2016)) and ramstream's negotiated
//! balloon record ([`Dialect::RamstreamBalloonV1`](ramstream_spec::Dialect::RamstreamBalloonV1)).
//! The decoder is told which; it never guesses.
//!
//! ## ramstream balloon extension v1 (SPEC.md §9.4)
//!
//! | field | size | value |
//! |---|---|---|
//! | record word | be64 | `0x200`, or `0x220` with CONTINUE; offset bits 0 |
//! | idstr | u8 + n | the RAM block, only without CONTINUE (as page records) |
//! | version | u8 | 1 |
//! | kind | u8 | 0 full map, 1 incremental |
//! | inflate count | be32 | runs that become ballooned |
//! | deflate count | be32 | runs returned to the guest (0 in a full map) |
//! | runs | 16 each | `be64 start_page, be64 page_count`, inflate runs then deflate runs |
//!
//! Runs count target pages relative to the block, are sorted, non-empty, non-overlapping and
//! non-adjacent, lie inside the block, and no page is in both lists (SPEC.md §9.5).
//!
//! ## kolhe-2016 (SPEC.md §9.6)
//!
//! | field | size | value |
//! |---|---|---|
//! | record word | be64 | exactly `0x200` |
//! | bitmap size | be64 | 4 KiB pages of `ram_addr` space (at least the MEM_SIZE total), or `0xffff_ffff_ffff_ffff` = DISABLE (then nothing) |
//! | start | be64 | first page index covered by this transfer |
//! | limit | be64 | loop bound |
//! | runs | 16 each | `be64 run_start, be64 run_len` while the running position < limit |
//! | terminator | 16 | `be64 bitmap_size, be64 0`, only when no set bit remained |
//!
//! `start ≤ limit ≤ bitmap size`, except the header of a transfer with no balloon change
//! since the previous one: `limit = 0` and `start` = the bitmap size at that previous
//! transfer, with no pair ([`KolheBitmap::is_unchanged`]). Page indices are global: blocks
//! laid end to end in MEM_SIZE order.
//!
//! ## Decoding and applying
//!
//! ```
//! use ramstream_codec::balloon::{BalloonMap, BalloonRecord, PageRun};
//! use ramstream_codec::{decode_all, DecoderOptions, Event};
//! use ramstream_spec::Dialect;
//!
//! // conformance-vectors/vectors/balloon-v1, shipped with the crate.
//! let stream = include_bytes!("../testdata/balloon-v1.bin");
//! let opts = DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1);
//! let events = decode_all(stream, opts).unwrap();
//! let mut map = BalloonMap::default();
//! for (_, ev) in &events {
//!     match ev {
//!         Event::MemSize(ms) => map = BalloonMap::new(&ms.blocks, 12),
//!         Event::Balloon(rec) => {
//!             map.apply(rec).unwrap();
//!         }
//!         _ => {}
//!     }
//! }
//! // The sender skips ballooned pages by runs, never page by page.
//! let sent: u64 = map.unballooned_ranges(0, 0..map.block_pages(0)).map(|r| r.end - r.start).sum();
//! assert_eq!(sent + map.ballooned_pages(0), map.block_pages(0));
//! # assert!(events.iter().any(|(_, e)| matches!(e, Event::Balloon(BalloonRecord::V1(_)))));
//! ```

mod map;
pub(crate) mod wire;

use core::fmt;
use core::ops::Range;

use ramstream_spec::extension::{
    BALLOON_RUN_LEN, BALLOON_V1_KIND_FULL_MAP, BALLOON_V1_KIND_INCREMENTAL,
};

use crate::addr::PageAddr;

pub use map::{BalloonMap, BalloonMapError, BalloonedRange, UnballoonedRanges};

/// A run of pages: `count` pages from `start` (SPEC.md §9.5). Units are the record's: target
/// pages of the block for v1, global 4 KiB pages for kolhe-2016.
///
/// The one place, with bitmaps, where ramstream counts pages rather than bytes: an address
/// is a [`PageAddr`] (a byte offset), and the conversions between the two are the methods
/// below ([`PageRun::first_addr`], [`PageRun::addrs`], [`PageRun::byte_range`],
/// [`PageRun::contains`], and the constructors from bytes [`PageRun::of_bytes`],
/// [`PageRun::covering`], [`PageRun::of_block`]).
///
/// ```
/// use ramstream_codec::balloon::PageRun;
/// use ramstream_codec::PageAddr;
/// let run = PageRun::new(2, 3); // pages 2, 3 and 4 of a block
/// assert_eq!(run.byte_range(4096), 0x2000..0x5000);
/// assert_eq!(run.first_addr(1, 4096), PageAddr { block: 1, offset: 0x2000 });
/// assert!(run.contains(PageAddr::new(1, 0x4000), 4096) && !run.contains(PageAddr::new(1, 0x5000), 4096));
/// assert_eq!(PageRun::of_bytes(0x2000..0x5000, 4096), Some(run));
/// assert_eq!(PageRun::of_bytes(0x2000..0x4fff, 4096), None);
/// assert_eq!(PageRun::covering(0x2fff..0x4001, 4096), run);
/// assert_eq!(PageRun::of_block(64 << 10, 4096), PageRun::new(0, 16));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageRun {
    /// The first page.
    pub start: u64,
    /// How many pages (never 0 in a valid record).
    pub count: u64,
}

impl PageRun {
    /// A run of `count` pages from `start`.
    pub const fn new(start: u64, count: u64) -> Self {
        PageRun { start, count }
    }

    /// The run of the pages `pages.start..pages.end` (empty when the range is).
    pub const fn from_range(pages: Range<u64>) -> Self {
        PageRun {
            start: pages.start,
            count: pages.end.saturating_sub(pages.start),
        }
    }

    /// The pages of `page_size` bytes that the byte range `bytes` is made of exactly, or
    /// `None` unless both ends are page aligned and `bytes.start <= bytes.end`.
    ///
    /// # Panics
    ///
    /// If `page_size` is 0 (a page size is a power of two).
    pub const fn of_bytes(bytes: Range<u64>, page_size: usize) -> Option<Self> {
        let ps = page_size as u64;
        if bytes.start > bytes.end
            || !bytes.start.is_multiple_of(ps)
            || !bytes.end.is_multiple_of(ps)
        {
            return None;
        }
        Some(PageRun {
            start: bytes.start / ps,
            count: (bytes.end - bytes.start) / ps,
        })
    }

    /// Every page of `page_size` bytes that the byte range `bytes` touches: from the page
    /// holding its first byte to the one holding its last (empty for an empty range).
    ///
    /// # Panics
    ///
    /// If `page_size` is 0 (a page size is a power of two).
    pub const fn covering(bytes: Range<u64>, page_size: usize) -> Self {
        let ps = page_size as u64;
        if bytes.start >= bytes.end {
            return PageRun {
                start: bytes.start / ps,
                count: 0,
            };
        }
        let start = bytes.start / ps;
        PageRun {
            start,
            count: bytes.end.div_ceil(ps) - start,
        }
    }

    /// The whole pages of a block of `used_length` bytes: from page 0, `used_length /
    /// page_size` of them (a partial last page is not one; MEM_SIZE lengths are page
    /// multiples, SPEC.md §7.1).
    ///
    /// # Panics
    ///
    /// If `page_size` is 0 (a page size is a power of two).
    pub const fn of_block(used_length: u64, page_size: usize) -> Self {
        PageRun {
            start: 0,
            count: used_length / page_size as u64,
        }
    }

    /// One past the last page (saturating; a valid run never overflows).
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.count)
    }

    /// The pages as a range.
    pub const fn range(&self) -> Range<u64> {
        self.start..self.end()
    }

    /// The run's bytes in its block, pages being `page_size` bytes (saturating, as
    /// [`PageAddr::of_page`]).
    pub const fn byte_range(&self, page_size: usize) -> Range<u64> {
        let ps = page_size as u64;
        self.start.saturating_mul(ps)..self.end().saturating_mul(ps)
    }

    /// The address of the run's first page, the run lying in block `block`.
    pub const fn first_addr(&self, block: usize, page_size: usize) -> PageAddr {
        PageAddr::of_page(block, self.start, page_size)
    }

    /// The address of each page of the run, ascending, the run lying in block `block`.
    pub fn addrs(&self, block: usize, page_size: usize) -> impl Iterator<Item = PageAddr> {
        self.range()
            .map(move |p| PageAddr::of_page(block, p, page_size))
    }

    /// Whether the page holding `addr` is in the run. A run carries no block: the caller
    /// pairs it with the block it belongs to, and `addr.block` is not looked at.
    ///
    /// # Panics
    ///
    /// If `page_size` is 0 (a page size is a power of two).
    pub const fn contains(&self, addr: PageAddr, page_size: usize) -> bool {
        let page = addr.page_index(page_size);
        self.start <= page && page < self.end()
    }
}

/// A list of runs as it lies on the wire (`be64 start, be64 count` pairs), borrowed from the
/// input: decoding a balloon record allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct RunList<'a> {
    raw: &'a [u8],
}

impl<'a> RunList<'a> {
    /// The empty list.
    pub const EMPTY: RunList<'static> = RunList { raw: &[] };

    /// A list over wire bytes; `None` unless the length is a multiple of 16. The runs are not
    /// checked (the decoder checks them; see [`RunList::check`]).
    pub fn from_wire(raw: &'a [u8]) -> Option<Self> {
        raw.len()
            .is_multiple_of(BALLOON_RUN_LEN)
            .then_some(RunList { raw })
    }

    /// The wire bytes of `runs`, for [`RunList::from_wire`].
    pub fn to_wire(runs: &[PageRun]) -> Vec<u8> {
        let mut v = Vec::with_capacity(runs.len() * BALLOON_RUN_LEN);
        for r in runs {
            v.extend_from_slice(&r.start.to_be_bytes());
            v.extend_from_slice(&r.count.to_be_bytes());
        }
        v
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// How many runs.
    pub fn len(&self) -> usize {
        self.raw.len() / BALLOON_RUN_LEN
    }

    /// Whether there is no run.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The runs, in wire order.
    pub fn iter(&self) -> RunIter<'a> {
        RunIter {
            chunks: self.raw.chunks_exact(BALLOON_RUN_LEN),
        }
    }

    /// The total page count (saturating), O(runs).
    pub fn pages(&self) -> u64 {
        self.iter().fold(0u64, |a, r| a.saturating_add(r.count))
    }

    /// Checks the v1 rules of SPEC.md §9.5 for one list over a block of `block_pages`
    /// pages: every run non-empty and inside the block, sorted, non-overlapping and
    /// non-adjacent. On failure returns the index of the faulty run and why.
    pub fn check(&self, block_pages: u64) -> Result<(), (usize, RunError)> {
        check_runs(self.iter(), block_pages)
    }
}

/// Why a run list breaks the rules of SPEC.md §9.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// A run of zero pages.
    Empty {
        /// Its start.
        start: u64,
    },
    /// A run that ends past the end of its space (the block, or the 2016 bitmap).
    OutOfRange {
        /// The run.
        run: PageRun,
        /// Pages in the space.
        pages: u64,
    },
    /// A run that starts before the previous one ended (unsorted or overlapping).
    Order {
        /// Its start.
        start: u64,
        /// Where the previous run ended.
        previous_end: u64,
    },
    /// A run that starts exactly where the previous one ended (should have been merged).
    Adjacent {
        /// Its start.
        start: u64,
    },
}

pub(crate) fn check_runs(
    runs: impl Iterator<Item = PageRun>,
    space: u64,
) -> Result<(), (usize, RunError)> {
    let mut prev_end: Option<u64> = None;
    for (i, r) in runs.enumerate() {
        if r.count == 0 {
            return Err((i, RunError::Empty { start: r.start }));
        }
        match r.start.checked_add(r.count) {
            Some(end) if end <= space => {}
            _ => {
                return Err((
                    i,
                    RunError::OutOfRange {
                        run: r,
                        pages: space,
                    },
                ))
            }
        }
        if let Some(p) = prev_end {
            if r.start < p {
                return Err((
                    i,
                    RunError::Order {
                        start: r.start,
                        previous_end: p,
                    },
                ));
            }
            if r.start == p {
                return Err((i, RunError::Adjacent { start: r.start }));
            }
        }
        prev_end = Some(r.start + r.count);
    }
    Ok(())
}

/// The first page in both of two sorted, non-overlapping run lists, if any. O(a + b).
pub(crate) fn first_common_page(
    a: impl Iterator<Item = PageRun>,
    b: impl Iterator<Item = PageRun>,
) -> Option<u64> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    while let (Some(x), Some(y)) = (a.peek().copied(), b.peek().copied()) {
        let lo = x.start.max(y.start);
        if lo < x.end().min(y.end()) {
            return Some(lo);
        }
        if x.end() <= y.end() {
            a.next();
        } else {
            b.next();
        }
    }
    None
}

impl fmt::Debug for RunList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|r| format!("{}+{}", r.start, r.count)))
            .finish()
    }
}

impl<'a> IntoIterator for RunList<'a> {
    type Item = PageRun;
    type IntoIter = RunIter<'a>;
    fn into_iter(self) -> RunIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`RunList`].
#[derive(Clone, Debug)]
pub struct RunIter<'a> {
    chunks: core::slice::ChunksExact<'a, u8>,
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Iterator for RunIter<'_> {
    type Item = PageRun;
    fn next(&mut self) -> Option<PageRun> {
        let c = self.chunks.next()?;
        Some(PageRun {
            start: be64(&c[..8]),
            count: be64(&c[8..]),
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for RunIter<'_> {}

/// Whether a v1 record replaces the block's map or changes it (SPEC.md §9.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BalloonMapKind {
    /// Kind 0: the runs are the block's whole balloon map; no deflate runs.
    FullMap,
    /// Kind 1: inflate runs become ballooned, deflate runs are returned to the guest.
    Incremental,
}

impl BalloonMapKind {
    /// The wire byte.
    pub const fn wire(self) -> u8 {
        match self {
            BalloonMapKind::FullMap => BALLOON_V1_KIND_FULL_MAP,
            BalloonMapKind::Incremental => BALLOON_V1_KIND_INCREMENTAL,
        }
    }

    /// The kind of a wire byte, `None` for a byte v1 does not define.
    pub const fn from_wire(b: u8) -> Option<Self> {
        match b {
            BALLOON_V1_KIND_FULL_MAP => Some(BalloonMapKind::FullMap),
            BALLOON_V1_KIND_INCREMENTAL => Some(BalloonMapKind::Incremental),
            _ => None,
        }
    }

    /// `full-map` or `incremental`.
    pub const fn name(self) -> &'static str {
        match self {
            BalloonMapKind::FullMap => "full-map",
            BalloonMapKind::Incremental => "incremental",
        }
    }
}

/// A ramstream balloon v1 record: one block's ballooned runs (SPEC.md §9.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalloonRunsV1<'a> {
    /// Index of the block in the current MEM_SIZE list.
    pub block: usize,
    /// Whether the record used CONTINUE (no idstr on the wire).
    pub continued: bool,
    /// Full map or incremental.
    pub kind: BalloonMapKind,
    /// Runs that are (or become) ballooned, in target pages of the block.
    pub inflate: RunList<'a>,
    /// Runs returned to the guest (always empty in a full map).
    pub deflate: RunList<'a>,
}

/// The 2016 patch's payload when the optimisation is not permanently off (SPEC.md §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KolheBitmap<'a> {
    /// Pages (4 KiB) the bitmap covers: the writer's `ram_addr` space, at least the MEM_SIZE
    /// blocks end to end.
    pub bitmap_pages: u64,
    /// First page index this transfer covers (for an unchanged transfer: the bitmap size at
    /// the previous transfer).
    pub start: u64,
    /// The loop bound: pairs follow while the running position is below it (0 for an
    /// unchanged transfer).
    pub limit: u64,
    /// Ballooned runs in global 4 KiB page indices (the terminator is not included).
    pub runs: RunList<'a>,
    /// Whether a `(bitmap_pages, 0)` terminator pair ended the runs.
    pub terminated: bool,
}

impl KolheBitmap<'_> {
    /// Whether this is the patch's header for a transfer with no balloon change since the
    /// previous one: `qemu_balloon_bitmap_save` then writes `start` = the bitmap size at that
    /// previous transfer and `limit` = 0, and no pair; applying it changes nothing
    /// (SPEC.md §9.6). The only form with `start > limit` the decoder accepts.
    pub fn is_unchanged(&self) -> bool {
        kolhe_is_unchanged(self.bitmap_pages, self.start, self.limit)
    }
}

/// Whether `start`/`limit` are the patch's "nothing changed since the previous transfer"
/// header: `qemu_balloon_bitmap_save` resets `balloon_min_bitmap_offset` to the bitmap size
/// and `balloon_max_bitmap_offset` to 0 after every transfer, and `qemu_balloon_bitmap_update`
/// is the only thing that moves them; without an update in between, the next transfer
/// writes `start` = the bitmap size of the previous transfer (at most today's: the bitmap
/// only grows) and `limit` = 0, and no pair (SPEC.md §9.6).
pub(crate) fn kolhe_is_unchanged(bitmap_pages: u64, start: u64, limit: u64) -> bool {
    limit == 0 && start > 0 && start <= bitmap_pages
}

/// A `RAM_SAVE_FLAG_BALLOON` record of the 2016 patch (SPEC.md §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KolheBalloon<'a> {
    /// The DISABLE marker: the optimisation is permanently off (the patch sends it after a
    /// postcopy migration).
    Disabled,
    /// Bitmap runs.
    Bitmap(KolheBitmap<'a>),
}

/// A balloon record, as the dialect in force reads flag 0x200 (SPEC.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BalloonRecord<'a> {
    /// Dialect kolhe-2016.
    Kolhe(KolheBalloon<'a>),
    /// Dialect ramstream-balloon-v1.
    V1(BalloonRunsV1<'a>),
}

impl BalloonRecord<'_> {
    /// The record's name for tools: `kolhe-2016`, `kolhe-2016 disabled`, `full-map` or
    /// `incremental`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            BalloonRecord::Kolhe(KolheBalloon::Disabled) => "kolhe-2016 disabled",
            BalloonRecord::Kolhe(KolheBalloon::Bitmap(_)) => "kolhe-2016",
            BalloonRecord::V1(v) => v.kind.name(),
        }
    }
}

#[cfg(test)]
mod page_run_tests {
    use core::ops::Range;

    use super::PageRun;
    use crate::addr::PageAddr;

    #[test]
    fn runs_convert_to_bytes_and_addresses_and_back() {
        for ps in [1024usize, 4096, 65536] {
            let p = ps as u64;
            let run = PageRun::new(5, 3);
            assert_eq!(run.byte_range(ps), 5 * p..8 * p);
            assert_eq!(run.first_addr(2, ps), PageAddr::of_page(2, 5, ps));
            let addrs: Vec<_> = run.addrs(2, ps).collect();
            assert_eq!(
                addrs,
                [5, 6, 7].map(|i| PageAddr::new(2, i * p)).to_vec(),
                "page size {ps}"
            );
            assert_eq!(PageRun::of_bytes(run.byte_range(ps), ps), Some(run));
            assert_eq!(PageRun::covering(5 * p + 1..8 * p - 1, ps), run);
            assert_eq!(PageRun::covering(5 * p..7 * p + 1, ps), run);
            for (off, inside) in [
                (5 * p - 1, false),
                (5 * p, true),
                (8 * p - 1, true),
                (8 * p, false),
            ] {
                assert_eq!(run.contains(PageAddr::new(9, off), ps), inside, "{off:#x}");
            }
        }
    }

    #[test]
    fn edge_cases_neither_wrap_nor_invent_pages() {
        assert_eq!(
            PageRun::of_bytes(0x1000..0x1000, 4096),
            Some(PageRun::new(1, 0))
        );
        let reversed = |start, end| Range { start, end };
        assert_eq!(PageRun::of_bytes(reversed(0x2000, 0x1000), 4096), None);
        assert_eq!(PageRun::of_bytes(0x1001..0x2000, 4096), None);
        assert_eq!(PageRun::covering(0x1800..0x1800, 4096).count, 0);
        assert_eq!(PageRun::of_block(0x3fff, 4096), PageRun::new(0, 3));
        assert_eq!(PageRun::from_range(4..9), PageRun::new(4, 5));
        assert_eq!(PageRun::from_range(reversed(9, 4)).count, 0);
        let huge = PageRun::new(u64::MAX - 1, 5);
        assert_eq!(huge.byte_range(4096), u64::MAX..u64::MAX);
        assert!(PageRun::new(0, 0).addrs(0, 4096).next().is_none());
    }
}
