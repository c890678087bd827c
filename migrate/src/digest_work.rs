//! Chunk digests hashed away from the engine (SPEC.md §13.7): a [`DigestWork`] is a few
//! stale chunks of one block that a driver takes out of a [`Source`](crate::Source) or a
//! [`Loader`](crate::Loader), hashes on a thread of its own ([`DigestWork::run`]), and hands
//! back as a [`DigestDone`]. The engine spawns no thread and reads no clock for this.
//!
//! Each chunk of a work carries the generation it had when taken; every dirty page and
//! balloon change handed to the engine since bumps it, and a result whose generation no
//! longer matches is dropped, the chunk staying stale. A chunk stays stale until a result is
//! accepted, so work lost, late or out of order never leaves a wrong digest: at stop time
//! the engine hashes every chunk still stale itself.

use ramstream_codec::balloon::PageRun;
use ramstream_codec::RecordKind;
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;

use crate::chunk_hash::{hash_chunk, ChunkPlace, ZeroWindow};
use crate::error::{Error, ErrorKind};
use crate::GuestRam;

/// Stale chunks of one block of a running sha256-chunked digest, to be hashed off the
/// engine's thread: taken with [`Source::take_digest_work`](crate::Source::take_digest_work)
/// (or [`Loader::take_digest_work`](crate::Loader::take_digest_work)), hashed with
/// [`DigestWork::run`], handed back with `handle_digest_done`. Self-contained and `Send`:
/// the block, its chunks with their generations, and the balloon runs in force for them.
#[derive(Debug, Clone)]
pub struct DigestWork {
    pub(crate) place: ChunkPlace,
    /// (chunk index, generation when taken), ascending.
    pub(crate) chunks: Vec<(u64, u64)>,
    /// The ballooned runs (sorted, merged) that meet the chunks: their pages are not read.
    pub(crate) ballooned: Vec<PageRun>,
    /// The block's idstr, for an error.
    pub(crate) idstr: String,
    /// The stream offset the engine stood at when the work was taken, for an error.
    pub(crate) offset: u64,
}

/// The chunk digests of a [`DigestWork`], to hand back to the engine it came from.
#[derive(Debug, Clone)]
pub struct DigestDone {
    pub(crate) block: usize,
    /// (chunk index, generation when taken, digest; `None` for an all-zero chunk).
    pub(crate) chunks: Vec<(u64, u64, Option<[u8; DIGEST_SHA256_LEN]>)>,
    pub(crate) pages_read: u64,
}

impl DigestWork {
    /// The block (the engine's block index: for a loader, the stream's).
    pub fn block(&self) -> usize {
        self.place.block
    }

    /// The chunks to hash, ascending.
    pub fn chunks(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().map(|&(c, _)| c)
    }

    /// Hashes the chunks from `ram` (the memory the engine reads, shared with this thread):
    /// ballooned pages and those `ram` knows to be zero are not read, as the engine's own
    /// hashing does.
    ///
    /// Errors: [`ErrorKind::Guest`] for a failed read, naming the page and the block.
    pub fn run<R: GuestRam + ?Sized>(&self, ram: &R) -> Result<DigestDone, Error> {
        let mut zero = ZeroWindow::default();
        let mut buf = vec![0; self.place.page_size];
        let mut pages_read = 0;
        let mut chunks = Vec::with_capacity(self.chunks.len());
        for &(chunk, generation) in &self.chunks {
            let (digest, read) =
                hash_chunk(ram, self.place, chunk, &self.ballooned, &mut zero, &mut buf).map_err(
                    |(addr, e)| {
                        Error::new(
                            self.offset,
                            ErrorKind::Guest {
                                addr,
                                source: Box::new(e),
                            },
                        )
                        .in_record(RecordKind::Device)
                        .in_block(self.idstr.clone())
                    },
                )?;
            pages_read += read;
            chunks.push((chunk, generation, digest));
        }
        Ok(DigestDone {
            block: self.place.block,
            chunks,
            pages_read,
        })
    }
}

impl DigestDone {
    /// The block the chunks are of.
    pub fn block(&self) -> usize {
        self.block
    }

    /// The chunks hashed, ascending.
    pub fn chunks(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().map(|&(c, ..)| c)
    }

    /// How many pages were read (not the ballooned ones, nor those known to be zero).
    pub fn pages_read(&self) -> u64 {
        self.pages_read
    }
}
