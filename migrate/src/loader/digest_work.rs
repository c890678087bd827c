//! The loader's running sha256-chunked digest hashed out of line (SPEC.md §13.7): a driver
//! takes [`DigestWork`] out of the loader between reads, hashes it on a thread of its own
//! that reads the same guest memory, and hands the result back.

use std::sync::{Mutex, PoisonError};

use ramstream_codec::balloon::{BalloonMap, PageRun};

use super::written::WrittenPages;
use super::Loader;
use crate::digest_chunks::ChunkDigests;
use crate::guest::{GuestRam, RamBlockLayout};
use crate::{DigestDone, DigestWork};

impl<R: GuestRam> Loader<R> {
    /// The running chunk digests (started, every chunk stale, on the first call), the
    /// chunks the loader and the multifd channels wrote since the last call marked stale,
    /// and the balloon runs in force put into force.
    pub(super) fn running_chunks<'c>(
        slot: &'c mut Mutex<Option<ChunkDigests>>,
        blocks: &[RamBlockLayout],
        to_guest: &[usize],
        written: &WrittenPages,
        balloon: &BalloonMap,
        page_size: usize,
    ) -> &'c mut ChunkDigests {
        let slot = slot.get_mut().unwrap_or_else(PoisonError::into_inner);
        let chunks = slot.get_or_insert_with(|| {
            let pages: Vec<u64> = blocks
                .iter()
                .map(|b| PageRun::of_block(b.used_length(), page_size).count)
                .collect();
            ChunkDigests::new(&pages, page_size).reading_blocks(to_guest)
        });
        for block in 0..to_guest.len() {
            chunks.mark_chunk_words(block, &written.take_touched(block));
            let runs: Vec<PageRun> = balloon.runs(block).collect();
            chunks.set_balloon(block, &runs);
        }
        chunks
    }

    /// Takes stale chunks of one block of the running sha256-chunked digest, about
    /// `max_pages` pages (at least one chunk), for the driver to hash on a thread of its own
    /// ([`DigestWork::run`] on the memory this loader writes, shared with that thread) while
    /// it waits for input, and hand back with
    /// [`handle_digest_done`](Loader::handle_digest_done): the out-of-line form of
    /// [`Loader::hash_ahead`], with the same conditions (the first call starts the running
    /// digest; only while the guest does not run). `None` when nothing is due, before the
    /// MEM_SIZE record and guest RAM, and after EOF.
    ///
    /// A chunk taken stays stale until its result is accepted; a write of the loader (or a
    /// channel) to it, or a balloon change, after it was taken makes that result be dropped.
    /// Results lost, late or out of order never make the check wrong: at EOF the chunks
    /// still stale are read again.
    pub fn take_digest_work(&mut self, max_pages: u64) -> Option<DigestWork> {
        let blocks = self.stream_blocks.as_ref()?;
        if self.ram.is_none() || self.awaiting_ram || self.poisoned || self.eof {
            return None;
        }
        let chunks = Self::running_chunks(
            &mut self.chunks,
            blocks,
            &self.to_guest,
            &self.written,
            &self.balloon,
            self.opts.page_size,
        );
        let mut work = chunks.take_work(max_pages)?;
        work.idstr = blocks
            .get(work.block())
            .map_or_else(String::new, |b| b.idstr().to_string());
        work.offset = self.decoder.offset();
        Some(work)
    }

    /// Hands back the result of a [`DigestWork`] taken with
    /// [`take_digest_work`](Loader::take_digest_work): the writes since are taken first, so
    /// the digests of chunks written (or whose balloon changed) after the work was taken
    /// are dropped, the others kept. Returns how many were kept.
    pub fn handle_digest_done(&mut self, done: DigestDone) -> u64 {
        let Some(blocks) = self.stream_blocks.as_ref() else {
            return 0;
        };
        if self
            .chunks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return 0;
        }
        let chunks = Self::running_chunks(
            &mut self.chunks,
            blocks,
            &self.to_guest,
            &self.written,
            &self.balloon,
            self.opts.page_size,
        );
        chunks.accept(&done).kept
    }
}
