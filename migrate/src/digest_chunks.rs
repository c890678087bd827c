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
use ramstream_codec::extension::digest::{chunk_count, chunk_pages, merged_runs, ChunkedSha256};
use ramstream_spec::extension::digest::{DIGEST_CHUNK_PAGES, DIGEST_SHA256_LEN};

pub(crate) use crate::chunk_hash::ReadFailure;
use crate::chunk_hash::{hash_chunk, ChunkPlace, ZeroWindow};
use crate::digest_work::{DigestDone, DigestWork};
use crate::GuestRam;

/// One block's chunk digests.
#[derive(Debug, Default)]
struct BlockChunks {
    pages: u64,
    /// `None` inside: the chunk is all zero or ballooned.
    digests: Vec<Option<[u8; DIGEST_SHA256_LEN]>>,
    stale: Vec<bool>,
    stale_count: u64,
    /// Each chunk's generation: bumped by every mark, so that a result of a
    /// [`DigestWork`] taken before it is dropped.
    generation: Vec<u64>,
    /// Taken out in a [`DigestWork`] whose result has not come back, since the last mark.
    out: Vec<bool>,
    /// Chunks stale and not out.
    due_count: u64,
    /// The balloon runs (merged) the digests were computed with.
    runs: Vec<PageRun>,
}

impl BlockChunks {
    fn mark(&mut self, chunk: u64) {
        let c = chunk as usize;
        if let Some(s) = self.stale.get_mut(c) {
            if !std::mem::replace(s, true) {
                self.stale_count += 1;
                self.due_count += 1;
            } else if std::mem::replace(&mut self.out[c], false) {
                self.due_count += 1;
            }
            self.generation[c] += 1;
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

    /// Chunk `c`'s digest is `d`, read since its last mark.
    fn set(&mut self, c: usize, d: Option<[u8; DIGEST_SHA256_LEN]>) {
        self.digests[c] = d;
        let out = std::mem::replace(&mut self.out[c], false);
        if std::mem::replace(&mut self.stale[c], false) {
            self.stale_count -= 1;
            if !out {
                self.due_count -= 1;
            }
        }
    }

    /// Chunk `c` (due) goes out in a work.
    fn take(&mut self, c: usize) {
        self.out[c] = true;
        self.due_count -= 1;
    }

    /// Whether chunk `c` is stale and not out in a work.
    fn due(&self, c: usize) -> bool {
        self.stale[c] && !self.out[c]
    }
}

/// What [`ChunkDigests::accept`] did with a result's chunks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Chunks whose digest was taken.
    pub(crate) kept: u64,
    /// Chunks marked since the work was taken (or not of these digests): dropped, still
    /// stale.
    pub(crate) dropped: u64,
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
                    generation: vec![0; n],
                    out: vec![false; n],
                    due_count: n as u64,
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
        self.zero.clear();
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

    /// The next stale chunk not out in a work, from the cursor on (wrapping once); the
    /// cursor is left on it.
    fn next_due(&mut self) -> Option<(usize, u64)> {
        let total = self.blocks.len();
        let mut wrapped = false;
        if self.blocks.iter().all(|b| b.due_count == 0) {
            return None;
        }
        loop {
            let (block, chunk) = self.cursor;
            if block >= total {
                if wrapped {
                    return None;
                }
                wrapped = true;
                self.cursor = (0, 0);
                continue;
            }
            let b = &self.blocks[block];
            if b.due_count == 0 {
                self.cursor = (block + 1, 0);
                continue;
            }
            match (chunk as usize..b.stale.len()).find(|&c| b.due(c)) {
                Some(c) => {
                    self.cursor = (block, c as u64);
                    return Some((block, c as u64));
                }
                None => self.cursor = (block + 1, 0),
            }
        }
    }

    /// Hashes stale chunks, starting where the last call stopped, until about `budget` pages
    /// were read (a chunk counts one more; pages known to be zero are not read); returns how
    /// many chunks it hashed. Chunks out in a [`DigestWork`] are left to it. Only after the
    /// setup sync.
    pub(crate) fn hash_ahead<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        budget: u64,
    ) -> Result<u64, ReadFailure<R::Error>> {
        self.zero.clear();
        let mut hashed = 0;
        let mut looked = 0;
        while looked < budget {
            let Some((block, c)) = self.next_due() else {
                break;
            };
            looked += 1 + self.refresh(ram, block, c)?;
            hashed += 1;
            self.cursor = (block, c + 1);
        }
        Ok(hashed)
    }

    /// Takes stale chunks (not out already) of one block, from where the last call stopped,
    /// up to about `max_pages` pages (at least one chunk), out of line: they are marked out
    /// until [`accept`](Self::accept) has their result or a mark makes them due again. The
    /// work's `idstr` and `offset` are the caller's to fill. `None`: nothing is due.
    pub(crate) fn take_work(&mut self, max_pages: u64) -> Option<DigestWork> {
        let (block, first) = self.next_due()?;
        let ps = self.page_size;
        let b = &mut self.blocks[block];
        let mut chunks = Vec::new();
        let mut pages = 0;
        let mut c = first as usize;
        while c < b.stale.len() && (chunks.is_empty() || pages < max_pages) {
            if b.due(c) {
                b.take(c);
                chunks.push((c as u64, b.generation[c]));
                pages += chunk_pages(c as u64, b.pages).count() as u64;
            }
            c += 1;
        }
        self.cursor = (block, c as u64);
        let span = chunk_pages(first, b.pages).start..chunk_pages(c as u64 - 1, b.pages).end;
        let ballooned = b
            .runs
            .iter()
            .filter(|r| r.start < span.end && span.start < r.end())
            .copied()
            .collect();
        Some(DigestWork {
            place: ChunkPlace {
                block,
                guest: self.read_block[block],
                pages: b.pages,
                page_size: ps,
            },
            chunks,
            ballooned,
            idstr: String::new(),
            offset: 0,
        })
    }

    /// Takes the digests of `done` whose chunk was not marked since its work was taken; the
    /// others stay stale (and due again).
    pub(crate) fn accept(&mut self, done: &DigestDone) -> Accepted {
        let mut a = Accepted::default();
        let Some(b) = self.blocks.get_mut(done.block) else {
            a.dropped = done.chunks.len() as u64;
            return a;
        };
        for &(chunk, generation, digest) in &done.chunks {
            let c = chunk as usize;
            if b.generation.get(c) == Some(&generation) {
                b.set(c, digest);
                a.kept += 1;
            } else {
                a.dropped += 1;
            }
        }
        a
    }

    /// Every block's digest: the stale chunks hashed again, then the top level (SPEC.md
    /// §13.7). The guest must be paused, its final dirty pages and balloon handed in.
    pub(crate) fn finish<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
    ) -> Result<Vec<[u8; DIGEST_SHA256_LEN]>, ReadFailure<R::Error>> {
        self.zero.clear();
        (0..self.blocks.len())
            .map(|block| self.block_top(ram, block))
            .collect()
    }

    /// How many chunks are stale.
    pub(crate) fn stale(&self) -> u64 {
        self.blocks.iter().map(|b| b.stale_count).sum()
    }

    /// How many chunks are stale and not out in a [`DigestWork`].
    pub(crate) fn due(&self) -> u64 {
        self.blocks.iter().map(|b| b.due_count).sum()
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
        let b = &mut self.blocks[block];
        let place = ChunkPlace {
            block,
            guest: self.read_block[block],
            pages: b.pages,
            page_size: self.page_size,
        };
        let (d, read) = hash_chunk(ram, place, chunk, &b.runs, &mut self.zero, &mut self.buf)?;
        b.set(chunk as usize, d);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use ramstream_codec::extension::digest::chunked_block;
    use ramstream_codec::PageAddr;

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

    /// Every work due, taken `max_pages` at a time.
    fn take_all(c: &mut ChunkDigests, max_pages: u64) -> Vec<DigestWork> {
        std::iter::from_fn(|| c.take_work(max_pages)).collect()
    }

    #[test]
    fn a_result_taken_before_its_chunk_was_dirtied_is_dropped_and_the_digest_is_the_memorys() {
        let ram = Ram::new(100);
        for p in 0..100 {
            ram.poke(p, p as u8 + 1);
        }
        let mut c = ChunkDigests::new(&[100], PAGE);
        let works = take_all(&mut c, 32);
        assert_eq!(works.len(), 4, "2 chunks a work, the last one short");
        assert!(c.take_work(32).is_none(), "every chunk is out");
        let done: Vec<DigestDone> = works.iter().map(|w| w.run(&ram).unwrap()).collect();
        // Page 20 (chunk 1, in the first work) is written after the work read it.
        ram.poke(20, 0xee);
        c.mark_runs(0, &[PageRun::new(20, 1)]);
        let kept: u64 = done.iter().map(|d| c.accept(d).kept).sum();
        assert_eq!(kept, 7 - 1, "chunk 1's result is dropped");
        assert_eq!(c.stale(), 1);
        // Chunk 1 is due again, alone.
        let again = take_all(&mut c, 32);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].chunks().collect::<Vec<_>>(), [1]);
        *ram.reads.borrow_mut() = 0;
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&[])]);
        assert_eq!(
            *ram.reads.borrow(),
            16,
            "the one stale chunk read at the end"
        );
    }

    #[test]
    fn results_out_of_order_late_or_never_handed_back_give_the_memorys_digest() {
        let ram = Ram::new(200).allocating_on_first_touch();
        for p in (0..200).step_by(3) {
            ram.poke(p, p as u8 ^ 0x5a);
        }
        let runs = [PageRun::new(40, 30)];
        let mut c = ChunkDigests::new(&[200], PAGE);
        c.set_balloon(0, &runs);
        let works = take_all(&mut c, 16);
        assert_eq!(works.len(), 13);
        let mut done: Vec<DigestDone> = works.iter().map(|w| w.run(&ram).unwrap()).collect();
        // Every third result is lost; the others come back backwards.
        done.reverse();
        for d in done.iter().step_by(3) {
            c.accept(d);
        }
        // The balloon changes after the rest was hashed: its chunks' results are dropped.
        c.set_balloon(0, &[]);
        for d in done.iter().skip(1).step_by(3) {
            c.accept(d);
        }
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&[])]);
        // A result handed back after the end changes nothing it should not.
        for d in &done {
            c.accept(d);
        }
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&[])]);
    }

    #[test]
    fn the_worker_path_and_the_in_line_path_give_the_same_digests_and_reads() {
        let ram = Ram::new(2100).allocating_on_first_touch();
        for p in [0u64, 15, 16, 999, 1023, 1024, 1500, 2099] {
            ram.poke(p, p as u8 | 1);
        }
        let runs = [PageRun::new(1498, 4)];
        let mut inline = ChunkDigests::new(&[2100], PAGE);
        inline.set_balloon(0, &runs);
        while inline.stale() > 0 {
            inline.hash_ahead(&ram, 64).unwrap();
        }
        let inline_reads = std::mem::take(&mut *ram.reads.borrow_mut());
        let mut worked = ChunkDigests::new(&[2100], PAGE);
        worked.set_balloon(0, &runs);
        let mut read = 0;
        for w in take_all(&mut worked, 256) {
            let d = w.run(&ram).unwrap();
            read += d.pages_read();
            assert_eq!(worked.accept(&d).dropped, 0);
        }
        assert_eq!(worked.stale(), 0);
        assert_eq!(
            read, inline_reads,
            "known-zero and ballooned pages skipped alike"
        );
        assert_eq!(*ram.reads.borrow(), inline_reads);
        *ram.reads.borrow_mut() = 0;
        assert_eq!(worked.finish(&ram).unwrap(), inline.finish(&ram).unwrap());
        assert_eq!(worked.finish(&ram).unwrap(), [ram.want(&runs)]);
        assert_eq!(*ram.reads.borrow(), 0, "nothing left stale");
    }

    #[test]
    fn a_chunk_out_in_a_work_is_left_to_it_by_the_in_line_hashing_but_not_by_finish() {
        let ram = Ram::new(64);
        ram.poke(5, 1);
        let mut c = ChunkDigests::new(&[64], PAGE);
        let w = c.take_work(1).unwrap();
        assert_eq!(w.chunks().collect::<Vec<_>>(), [0]);
        while c.hash_ahead(&ram, 64).unwrap() > 0 {}
        assert_eq!(c.stale(), 1, "chunk 0 is out");
        // Written again while out: due again, and the old result is dropped.
        ram.poke(6, 2);
        c.mark_runs(0, &[PageRun::new(6, 1)]);
        let stale_result = w.run(&ram).unwrap();
        ram.poke(7, 3);
        c.mark_runs(0, &[PageRun::new(7, 1)]);
        assert_eq!(c.accept(&stale_result).dropped, 1);
        assert_eq!(c.finish(&ram).unwrap(), [ram.want(&[])]);
    }

    #[test]
    fn a_work_is_send() {
        fn send<T: Send + 'static>() {}
        send::<DigestWork>();
        send::<DigestDone>();
    }
}
