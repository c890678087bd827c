//! Hashing one chunk of the sha256-chunked digest (SPEC.md §13.7) from guest memory: the
//! one routine both the engines' in-line hashing
//! ([`ChunkDigests`](crate::digest_chunks::ChunkDigests)) and a driver's worker thread
//! ([`DigestWork::run`](crate::DigestWork::run)) call.

use ramstream_codec::balloon::PageRun;
use ramstream_codec::extension::digest::{chunk_pages, digest_chunk, merged_runs};
use ramstream_codec::PageAddr;
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;

use crate::GuestRam;

/// Pages asked of [`GuestRam::known_zero_pages`] at once when a chunk is hashed.
const ZERO_WINDOW_PAGES: u64 = 1024;

/// A failed read: the page and the guest's error.
pub(crate) type ReadFailure<E> = (PageAddr, E);

/// A chunk's digest (`None`: every page of it zero or ballooned) and the pages read for it.
pub(crate) type ChunkHashed = (Option<[u8; DIGEST_SHA256_LEN]>, u64);

/// Which pages of a span of one block the guest memory knows to be zero, asked once for
/// the chunks hashed in one call (a page written after the answer is in a later dirty
/// sync, which marks its chunk stale again, as for a page read).
#[derive(Debug, Default)]
pub(crate) struct ZeroWindow {
    /// (block, first page) of the answer in `zero`; `None`: no answer held.
    at: Option<(usize, u64)>,
    zero: Vec<bool>,
}

impl ZeroWindow {
    /// Forgets the answer held (a new call begins: the memory may have changed).
    pub(crate) fn clear(&mut self) {
        self.at = None;
    }

    /// Whether it holds an answer for pages `start..end` of `block`.
    fn covers(&self, block: usize, start: u64, end: u64) -> bool {
        self.at.is_some_and(|(b, first)| {
            b == block && first <= start && end <= first + self.zero.len() as u64
        })
    }

    /// Whether page `p` of the block it holds is known zero.
    fn is_zero(&self, p: u64) -> bool {
        let first = self.at.map_or(0, |(_, f)| f);
        self.zero
            .get((p - first) as usize)
            .copied()
            .unwrap_or(false)
    }
}

/// Where one chunk's pages are: the block (its index for the zero window), the guest block
/// they are read from, the block's pages and the page size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkPlace {
    /// The block's index in the digest (the stream's numbering).
    pub(crate) block: usize,
    /// The guest block its pages are read from.
    pub(crate) guest: usize,
    /// Pages in the block.
    pub(crate) pages: u64,
    /// The page size.
    pub(crate) page_size: usize,
}

/// Hashes chunk `chunk` of the block at `place`, `ballooned` (sorted, merged) not read,
/// nor the pages the guest memory knows to be zero (a zero page adds nothing to a sparse
/// digest); returns the chunk's digest and how many pages it read. `buf` is one page.
pub(crate) fn hash_chunk<R: GuestRam + ?Sized>(
    ram: &R,
    place: ChunkPlace,
    chunk: u64,
    ballooned: &[PageRun],
    zero: &mut ZeroWindow,
    buf: &mut [u8],
) -> Result<ChunkHashed, ReadFailure<R::Error>> {
    let ChunkPlace {
        block,
        guest,
        pages,
        page_size: ps,
    } = place;
    let range = chunk_pages(chunk, pages);
    if range.is_empty() {
        return Ok((None, 0));
    }
    if !zero.covers(block, range.start, range.end) {
        let n = (pages - range.start).min(ZERO_WINDOW_PAGES) as usize;
        zero.zero.resize(n, false);
        let addr = PageAddr::of_page(guest, range.start, ps);
        zero.at = None;
        ram.known_zero_pages(addr, ps, &mut zero.zero)
            .map_err(|e| (addr, e))?;
        zero.at = Some((block, range.start));
    }
    let mut known: Vec<PageRun> = Vec::new();
    for p in range.clone().filter(|&p| zero.is_zero(p)) {
        match known.last_mut() {
            Some(r) if r.end() == p => r.count += 1,
            _ => known.push(PageRun::new(p, 1)),
        }
    }
    let mut in_chunk = ballooned
        .iter()
        .filter(|r| r.start < range.end && range.start < r.end())
        .peekable();
    let skip = match (known.is_empty(), in_chunk.peek().is_none()) {
        (true, _) => std::borrow::Cow::Borrowed(ballooned),
        (false, true) => std::borrow::Cow::Owned(known),
        (false, false) => {
            known.extend(in_chunk.copied());
            std::borrow::Cow::Owned(merged_runs(&known))
        }
    };
    let mut read = 0;
    let d = digest_chunk(chunk, pages, &skip, buf, |p, buf| {
        read += 1;
        let addr = PageAddr::of_page(guest, p, ps);
        ram.read_page(addr, buf).map_err(|e| (addr, e))
    })?;
    Ok((d, read))
}
