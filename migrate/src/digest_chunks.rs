//! The source's running sha256-chunked digest (SPEC.md §13.7): one chunk digest per
//! [`DIGEST_CHUNK_PAGES`] pages of every block, hashed from guest memory during the precopy
//! and marked stale by every dirty page and balloon change handed in, so that at stop time
//! only the stale chunks are read again and the block digests cost O(dirty pages).
//!
//! Why this still describes memory at stop time: a chunk is hashed only after the setup
//! sync (the dirty log is on), and any write to it after it was read is in a later dirty
//! bitmap, at the latest the final one taken with the guest paused, which marks it stale.
//!
//! The loader keeps the same structure for the destination (stream block numbering, read
//! through its guest block map): every page it writes marks the page's chunk stale (through
//! the touched bits of its written-page tracker), the driver hashes stale chunks between
//! reads ([`Loader::hash_ahead`](crate::Loader::hash_ahead)), so that the check at EOF reads
//! only the chunks written since.

use ramstream_codec::balloon::PageRun;
use ramstream_codec::extension::digest::{
    chunk_count, chunk_pages, digest_chunk, merged_runs, ChunkedSha256,
};
use ramstream_codec::PageAddr;
use ramstream_spec::extension::digest::{DIGEST_CHUNK_PAGES, DIGEST_SHA256_LEN};

use crate::GuestRam;

/// One block's chunk digests.
#[derive(Debug, Default)]
struct BlockChunks {
    pages: u64,
    /// `None` inside: the chunk is all zero or ballooned.
    digests: Vec<Option<[u8; DIGEST_SHA256_LEN]>>,
    stale: Vec<bool>,
    stale_count: u64,
    /// The balloon runs (merged) the digests were computed with.
    runs: Vec<PageRun>,
}

impl BlockChunks {
    fn mark(&mut self, chunk: u64) {
        if let Some(s) = self.stale.get_mut(chunk as usize) {
            if !*s {
                *s = true;
                self.stale_count += 1;
            }
        }
    }

    fn mark_pages(&mut self, start: u64, end: u64) {
        let end = end.min(self.pages);
        if start >= end {
            return;
        }
        for c in start / DIGEST_CHUNK_PAGES..=(end - 1) / DIGEST_CHUNK_PAGES {
            self.mark(c);
        }
    }
}

/// Pages asked of [`GuestRam::known_zero_pages`] at once when a chunk is hashed.
const ZERO_WINDOW_PAGES: u64 = 1024;

/// Which pages of a span of one block the guest memory knows to be zero, asked once for
/// the chunks hashed in one call (a page written after the answer is in a later dirty
/// sync, which marks its chunk stale again, as for a page read).
#[derive(Debug, Default)]
struct ZeroWindow {
    /// (block, first page) of the answer in `zero`; `None`: no answer held.
    at: Option<(usize, u64)>,
    zero: Vec<bool>,
}

impl ZeroWindow {
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

/// The chunk digests of every block, and which of them are stale.
#[derive(Debug)]
pub(crate) struct ChunkDigests {
    blocks: Vec<BlockChunks>,
    page_size: usize,
    /// Where [`hash_ahead`](Self::hash_ahead) looks for the next stale chunk.
    cursor: (usize, u64),
    buf: Vec<u8>,
    /// The guest block each block's pages are read from.
    read_block: Vec<usize>,
    /// Known-zero pages, valid within one call only.
    zero: ZeroWindow,
}

/// A failed read: the page and the guest's error.
pub(crate) type ReadFailure<E> = (PageAddr, E);

impl ChunkDigests {
    /// Every chunk stale: nothing hashed yet.
    pub(crate) fn new(block_pages: &[u64], page_size: usize) -> Self {
        let blocks = block_pages
            .iter()
            .map(|&pages| {
                let n = chunk_count(pages) as usize;
                BlockChunks {
                    pages,
                    digests: vec![None; n],
                    stale: vec![true; n],
                    stale_count: n as u64,
                    runs: Vec::new(),
                }
            })
            .collect();
        ChunkDigests {
            read_block: (0..block_pages.len()).collect(),
            blocks,
            page_size,
            cursor: (0, 0),
            buf: vec![0; page_size],
            zero: ZeroWindow::default(),
        }
    }

    /// Reads block `i`'s pages from guest block `map[i]` (the loader's stream-to-guest map).
    pub(crate) fn reading_blocks(mut self, map: &[usize]) -> Self {
        for (r, &g) in self.read_block.iter_mut().zip(map) {
            *r = g;
        }
        self
    }

    /// The chunks whose bits are set in `words` (bit `i % 64` of word `i / 64` is chunk
    /// `i`) were written.
    pub(crate) fn mark_chunk_words(&mut self, block: usize, words: &[u64]) {
        let Some(b) = self.blocks.get_mut(block) else {
            return;
        };
        for (w, &word) in words.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                b.mark(w as u64 * 64 + u64::from(bits.trailing_zeros()));
                bits &= bits - 1;
            }
        }
    }

    /// Block `block`'s digest with `ballooned` in force ([`set_balloon`](Self::set_balloon)):
    /// its stale chunks hashed again, then the top level (SPEC.md §13.7).
    pub(crate) fn block_digest<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        block: usize,
        ballooned: &[PageRun],
    ) -> Result<[u8; DIGEST_SHA256_LEN], ReadFailure<R::Error>> {
        self.set_balloon(block, ballooned);
        self.zero.at = None;
        self.block_top(ram, block)
    }

    fn block_top<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        block: usize,
    ) -> Result<[u8; DIGEST_SHA256_LEN], ReadFailure<R::Error>> {
        let mut top = ChunkedSha256::new();
        let Some(count) = self.blocks.get(block).map(|b| b.stale.len()) else {
            return Ok(top.finish());
        };
        for c in 0..count {
            if self.blocks[block].stale[c] {
                self.refresh(ram, block, c as u64)?;
            }
        }
        for (c, d) in self.blocks[block].digests.iter().enumerate() {
            top.chunk(c as u64, d.as_ref());
        }
        Ok(top.finish())
    }

    /// Pages `runs` of `block` were written.
    pub(crate) fn mark_runs(&mut self, block: usize, runs: &[PageRun]) {
        if let Some(b) = self.blocks.get_mut(block) {
            for r in runs {
                b.mark_pages(r.start, r.end());
            }
        }
    }

    /// The pages whose bits are set in `words` (bit `i % 64` of word `i / 64` is page `i`)
    /// were written.
    pub(crate) fn mark_words(&mut self, block: usize, words: &[u64]) {
        let Some(b) = self.blocks.get_mut(block) else {
            return;
        };
        let per_word = 64 / DIGEST_CHUNK_PAGES;
        let mask = (1u64 << DIGEST_CHUNK_PAGES) - 1;
        for (w, &word) in words.iter().enumerate() {
            if word == 0 {
                continue;
            }
            for k in 0..per_word {
                if word >> (k * DIGEST_CHUNK_PAGES) & mask != 0 {
                    b.mark(w as u64 * per_word + k);
                }
            }
        }
    }

    /// Puts `runs` (the balloon in force for `block`) into force for the digests: the chunks
    /// covering a run that was added or removed become stale.
    pub(crate) fn set_balloon(&mut self, block: usize, runs: &[PageRun]) {
        let Some(b) = self.blocks.get_mut(block) else {
            return;
        };
        let runs = merged_runs(runs);
        if runs == b.runs {
            return;
        }
        let old = std::mem::replace(&mut b.runs, runs);
        let changed: Vec<PageRun> = old
            .iter()
            .filter(|r| !b.runs.contains(r))
            .chain(b.runs.iter().filter(|r| !old.contains(r)))
            .copied()
            .collect();
        for r in changed {
            b.mark_pages(r.start, r.end());
        }
    }

    /// Hashes stale chunks, starting where the last call stopped, until about `budget` pages
    /// were read (a chunk counts one more; pages known to be zero are not read); returns how
    /// many chunks it hashed. Only after the setup sync.
    pub(crate) fn hash_ahead<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        budget: u64,
    ) -> Result<u64, ReadFailure<R::Error>> {
        self.zero.at = None;
        let mut hashed = 0;
        let mut looked = 0;
        let total = self.blocks.len();
        let mut wrapped = false;
        while looked < budget && self.blocks.iter().any(|b| b.stale_count > 0) {
            let (block, chunk) = self.cursor;
            if block >= total {
                if wrapped {
                    break;
                }
                wrapped = true;
                self.cursor = (0, 0);
                continue;
            }
            let b = &self.blocks[block];
            let next = (chunk as usize..b.stale.len()).find(|&c| b.stale[c]);
            match next {
                Some(c) => {
                    looked += 1 + self.refresh(ram, block, c as u64)?;
                    hashed += 1;
                    self.cursor = (block, c as u64 + 1);
                }
                None => self.cursor = (block + 1, 0),
            }
        }
        Ok(hashed)
    }

    /// Every block's digest: the stale chunks hashed again, then the top level (SPEC.md
    /// §13.7). The guest must be paused, its final dirty pages and balloon handed in.
    pub(crate) fn finish<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
    ) -> Result<Vec<[u8; DIGEST_SHA256_LEN]>, ReadFailure<R::Error>> {
        self.zero.at = None;
        (0..self.blocks.len())
            .map(|block| self.block_top(ram, block))
            .collect()
    }

    /// How many chunks are stale.
    pub(crate) fn stale(&self) -> u64 {
        self.blocks.iter().map(|b| b.stale_count).sum()
    }

    /// Hashes chunk `chunk` of `block` again; returns how many pages it read (not the
    /// ballooned ones, nor those the guest memory knows to be zero: a zero page adds
    /// nothing to a sparse digest).
    fn refresh<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        block: usize,
        chunk: u64,
    ) -> Result<u64, ReadFailure<R::Error>> {
        let ps = self.page_size;
        let guest = self.read_block[block];
        let pages = self.blocks[block].pages;
        let range = chunk_pages(chunk, pages);
        debug_assert!(!range.is_empty());
        if !self.zero.covers(block, range.start, range.end) {
            let n = (pages - range.start).min(ZERO_WINDOW_PAGES) as usize;
            self.zero.zero.resize(n, false);
            let addr = PageAddr::of_page(guest, range.start, ps);
            self.zero.at = None;
            ram.known_zero_pages(addr, ps, &mut self.zero.zero)
                .map_err(|e| (addr, e))?;
            self.zero.at = Some((block, range.start));
        }
        let b = &mut self.blocks[block];
        let mut known: Vec<PageRun> = Vec::new();
        for p in range.clone().filter(|&p| self.zero.is_zero(p)) {
            match known.last_mut() {
                Some(r) if r.end() == p => r.count += 1,
                _ => known.push(PageRun::new(p, 1)),
            }
        }
        let mut ballooned = b
            .runs
            .iter()
            .filter(|r| r.start < range.end && range.start < r.end())
            .peekable();
        let skip = match (known.is_empty(), ballooned.peek().is_none()) {
            (true, _) => std::borrow::Cow::Borrowed(&b.runs[..]),
            (false, true) => std::borrow::Cow::Owned(known),
            (false, false) => {
                known.extend(ballooned.copied());
                std::borrow::Cow::Owned(merged_runs(&known))
            }
        };
        let mut read = 0;
        let d = digest_chunk(chunk, pages, &skip, &mut self.buf, |p, buf| {
            read += 1;
            let addr = PageAddr::of_page(guest, p, ps);
            ram.read_page(addr, buf).map_err(|e| (addr, e))
        })?;
        b.digests[chunk as usize] = d;
        if std::mem::replace(&mut b.stale[chunk as usize], false) {
            b.stale_count -= 1;
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use ramstream_codec::extension::digest::chunked_block;

    use super::*;
    use crate::RamBlockLayout;

    const PAGE: usize = 4096;

    /// One block of `pages` pages in a `RefCell`, counting reads.
    struct Ram {
        layout: Vec<RamBlockLayout>,
        mem: RefCell<Vec<u8>>,
        reads: RefCell<u64>,
        /// Pages ever written, when it answers `known_zero_pages` (as a host allocating on
        /// first touch would: a page never written is known zero).
        backed: Option<RefCell<Vec<bool>>>,
    }

    impl Ram {
        fn new(pages: u64) -> Self {
            Ram {
                layout: vec![RamBlockLayout::new("pc.ram", pages * PAGE as u64)],
                mem: RefCell::new(vec![0; pages as usize * PAGE]),
                reads: RefCell::new(0),
                backed: None,
            }
        }
        fn allocating_on_first_touch(mut self) -> Self {
            let pages = self.mem.borrow().len() / PAGE;
            self.backed = Some(RefCell::new(vec![false; pages]));
            self
        }
        fn poke(&self, page: u64, byte: u8) {
            self.mem.borrow_mut()[page as usize * PAGE + 7] = byte;
            if let Some(b) = &self.backed {
                b.borrow_mut()[page as usize] = true;
            }
        }
        fn want(&self, ballooned: &[PageRun]) -> [u8; 32] {
            let mem = self.mem.borrow();
            chunked_block((mem.len() / PAGE) as u64, PAGE, ballooned, |p, buf| {
                buf.copy_from_slice(&mem[p as usize * PAGE..(p as usize + 1) * PAGE]);
                Ok::<_, ()>(())
            })
            .unwrap()
        }
    }

    impl GuestRam for Ram {
        type Error = std::io::Error;
        fn layout(&self) -> &[RamBlockLayout] {
            &self.layout
        }
        fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), Self::Error> {
            *self.reads.borrow_mut() += 1;
            let at = addr.offset as usize;
            buf.copy_from_slice(&self.mem.borrow()[at..at + buf.len()]);
            Ok(())
        }
        fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), Self::Error> {
            let at = addr.offset as usize;
            self.mem.borrow_mut()[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn known_zero_pages(
            &self,
            addr: PageAddr,
            page_size: usize,
            zero: &mut [bool],
        ) -> Result<(), Self::Error> {
            let first = addr.page_index(page_size) as usize;
            match &self.backed {
                Some(b) => {
                    for (i, z) in zero.iter_mut().enumerate() {
                        *z = !b.borrow()[first + i];
                    }
                }
                None => zero.fill(false),
            }
            Ok(())
        }
    }

    #[test]
    fn pages_the_memory_knows_to_be_zero_are_not_read_and_the_digest_is_the_same() {
        // 2,100 pages: more than two known-zero windows, a short last chunk.
        let ram = Ram::new(2100).allocating_on_first_touch();
        let written = [0u64, 15, 16, 1023, 1024, 1500, 2099];
        for (i, &p) in written.iter().enumerate() {
            ram.poke(p, i as u8 + 1);
        }
        // A page written with zeros is backed, so read (and adds nothing).
        ram.write_page(PageAddr::of_page(0, 700, PAGE), &[0; PAGE])
            .unwrap();
        if let Some(b) = &ram.backed {
            b.borrow_mut()[700] = true;
        }
        // The balloon covers a written page and untouched ones around it.
        let runs = [PageRun::new(1498, 4)];
        let mut c = ChunkDigests::new(&[2100], PAGE);
        c.set_balloon(0, &runs);
        while c.stale() > 0 {
            c.hash_ahead(&ram, 64).unwrap();
        }
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&runs)]);
        assert_eq!(
            *ram.reads.borrow(),
            written.len() as u64 - 1 + 1,
            "the written pages but the ballooned one, and the page written with zeros"
        );
        // A page written later marks its chunk stale: it is read then, its digest taken.
        ram.poke(40, 9);
        c.mark_runs(0, &[PageRun::new(40, 1)]);
        *ram.reads.borrow_mut() = 0;
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&runs)]);
        assert_eq!(*ram.reads.borrow(), 1, "only page 40 of its chunk");
        // The same memory without the known-zero answers: the same digest, every page read.
        let plain = Ram::new(2100);
        *plain.mem.borrow_mut() = ram.mem.borrow().clone();
        let mut d = ChunkDigests::new(&[2100], PAGE);
        d.set_balloon(0, &runs);
        assert_eq!(d.finish(&plain).unwrap(), c.finish(&ram).unwrap());
        assert_eq!(*plain.reads.borrow(), 2100 - 4);
    }

    #[test]
    fn only_dirtied_chunks_are_read_again_and_the_digest_is_the_memorys() {
        let ram = Ram::new(100);
        ram.poke(3, 1);
        ram.poke(70, 2);
        let mut c = ChunkDigests::new(&[100], PAGE);
        while c.stale() > 0 {
            c.hash_ahead(&ram, 64).unwrap();
        }
        assert_eq!(*ram.reads.borrow(), 100, "every page read once ahead");
        // Writes reported as runs and as a bitmap: pages 20 (chunk 1) and 99 (chunk 6).
        ram.poke(20, 3);
        ram.poke(99, 4);
        c.mark_runs(0, &[PageRun::new(20, 1)]);
        c.mark_words(0, &[0, 1 << (99 - 64)]);
        assert_eq!(c.stale(), 2);
        *ram.reads.borrow_mut() = 0;
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&[])]);
        assert_eq!(
            *ram.reads.borrow(),
            16 + 4,
            "chunk 1 and the short last chunk"
        );
    }

    #[test]
    fn a_balloon_change_makes_its_chunks_stale() {
        let ram = Ram::new(64);
        for p in 0..64 {
            ram.poke(p, p as u8 + 1);
        }
        let mut c = ChunkDigests::new(&[64], PAGE);
        c.finish(&ram).unwrap();
        // Pages 33..35 go into the balloon: chunk 2 is hashed again, without them.
        let runs = [PageRun::new(33, 2)];
        c.set_balloon(0, &runs);
        assert_eq!(c.stale(), 1);
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&runs)]);
        // ... and out of it again (deflated, not written): back to the memory's digest.
        c.set_balloon(0, &[]);
        assert_eq!(c.stale(), 1);
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&[])]);
        assert_ne!(ram.want(&runs), ram.want(&[]));
    }
}
