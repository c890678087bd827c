//! Checking the RAM digest section (SPEC.md §13) against guest memory: each block's
//! sha256-sparse digest computed through [`GuestRam::read_page`], ballooned pages counted as
//! zero without being read (SPEC.md §13.2), and compared with the section's entry.
//!
//! [`Loader::verify_digest`](crate::Loader::verify_digest) does it on request;
//! [`DigestPolicy::Verify`](crate::DigestPolicy::Verify) makes the loader do it at EOF.

use ramstream_codec::balloon::{BalloonMap, PageRun};
use ramstream_codec::extension::digest::{
    chunk_count, chunked_block, digest_block, digest_chunk, merged_runs, ChunkedSha256,
    DigestAlgorithm, DigestSection,
};
use ramstream_codec::PageAddr;
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;

use crate::digest_report::{BlockDigestCheck, DigestError, DigestReport};
use crate::error::{Error, ErrorKind};
use crate::guest::{GuestRam, RamBlockLayout};

/// The sha256-sparse digest (SPEC.md §13.2) of `used_length` bytes of block `block` (the
/// guest's numbering) read through [`GuestRam::read_page`] one `page_size` page at a time;
/// pages in `ballooned` (runs in block pages) count as zero and are not read.
///
/// The building block of [`Loader::verify_digest`](crate::Loader::verify_digest), public for
/// callers that hash blocks in parallel.
pub fn block_digest<R: GuestRam + ?Sized>(
    ram: &R,
    block: usize,
    used_length: u64,
    page_size: usize,
    ballooned: &[PageRun],
) -> Result<[u8; DIGEST_SHA256_LEN], (PageAddr, R::Error)> {
    let pages = PageRun::of_block(used_length, page_size).count;
    digest_block(pages, page_size, ballooned, |p, buf| {
        let addr = PageAddr::of_page(block, p, page_size);
        ram.read_page(addr, buf).map_err(|e| (addr, e))
    })
}

/// The digest of block `block` with `algorithm` (SPEC.md §13.2, §13.7): [`block_digest`]
/// for sha256-sparse, the two-level chunked digest for sha256-chunked.
pub fn block_digest_with<R: GuestRam + ?Sized>(
    algorithm: DigestAlgorithm,
    ram: &R,
    block: usize,
    used_length: u64,
    page_size: usize,
    ballooned: &[PageRun],
) -> Result<[u8; DIGEST_SHA256_LEN], (PageAddr, R::Error)> {
    if algorithm == DigestAlgorithm::Sha256Sparse {
        return block_digest(ram, block, used_length, page_size, ballooned);
    }
    let pages = PageRun::of_block(used_length, page_size).count;
    chunked_block(pages, page_size, ballooned, |p, buf| {
        let addr = PageAddr::of_page(block, p, page_size);
        ram.read_page(addr, buf).map_err(|e| (addr, e))
    })
}

/// [`block_digest_with`] on up to `threads` threads: a sha256-chunked block is cut into
/// `threads` runs of chunks hashed at once, then combined (SPEC.md §13.7); sha256-sparse is
/// sequential by definition and hashed on the calling thread.
pub fn block_digest_parallel<R: GuestRam + Sync + ?Sized>(
    algorithm: DigestAlgorithm,
    ram: &R,
    block: usize,
    used_length: u64,
    page_size: usize,
    ballooned: &[PageRun],
    threads: usize,
) -> Result<[u8; DIGEST_SHA256_LEN], (PageAddr, R::Error)> {
    let pages = PageRun::of_block(used_length, page_size).count;
    let chunks = chunk_count(pages);
    let threads = (threads.max(1) as u64).min(chunks.max(1));
    if algorithm == DigestAlgorithm::Sha256Sparse || threads == 1 {
        return block_digest_with(algorithm, ram, block, used_length, page_size, ballooned);
    }
    let runs = merged_runs(ballooned);
    let per = chunks.div_ceil(threads);
    type Part<E> = Result<Vec<Option<[u8; DIGEST_SHA256_LEN]>>, (PageAddr, E)>;
    let parts: Vec<Part<R::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let runs = &runs;
                s.spawn(move || {
                    let mut buf = vec![0u8; page_size];
                    (t * per..((t + 1) * per).min(chunks))
                        .map(|c| {
                            digest_chunk(c, pages, runs, &mut buf, |p, buf| {
                                let addr = PageAddr::of_page(block, p, page_size);
                                ram.read_page(addr, buf).map_err(|e| (addr, e))
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut top = ChunkedSha256::new();
    let mut c = 0;
    for part in parts {
        for d in part? {
            top.chunk(c, d.as_ref());
            c += 1;
        }
    }
    Ok(top.finish())
}

/// Checks `section` against `ram`: its entries against the stream's `blocks` (MEM_SIZE
/// order), then each block's digest; `to_guest[i]` is stream block `i`'s guest block and
/// `ballooned` the stream-numbered balloon map. Errors carry `at` as their offset.
pub(crate) fn verify<R: GuestRam + ?Sized>(
    ram: &R,
    section: &DigestSection,
    blocks: &[RamBlockLayout],
    to_guest: &[usize],
    ballooned: &BalloonMap,
    at: u64,
    hash: impl Fn(&R, usize, u64, &[PageRun]) -> Result<[u8; DIGEST_SHA256_LEN], (PageAddr, R::Error)>,
) -> Result<DigestReport, Error> {
    let err = |kind| Error::new(at, ErrorKind::Digest(kind));
    if section.blocks.len() != blocks.len() {
        return Err(err(DigestError::BlockCount {
            section: section.blocks.len(),
            stream: blocks.len(),
        }));
    }
    let mut report = DigestReport::default();
    for (index, (entry, block)) in section.blocks.iter().zip(blocks).enumerate() {
        if entry.idstr != block.idstr() || entry.used_length != block.used_length() {
            return Err(err(DigestError::BlockEntry {
                index,
                idstr: entry.idstr.clone(),
                used_length: entry.used_length,
            })
            .in_block(block.idstr()));
        }
        let guest = *to_guest
            .get(index)
            .ok_or_else(|| err(DigestError::NoBlocks))?;
        let runs: Vec<PageRun> = ballooned.runs(index).collect();
        let actual = hash(ram, guest, block.used_length(), &runs).map_err(|(addr, source)| {
            Error::new(
                at,
                ErrorKind::Guest {
                    addr,
                    source: Box::new(source),
                },
            )
            .in_block(block.idstr())
        })?;
        report.blocks.push(BlockDigestCheck {
            idstr: entry.idstr.clone(),
            used_length: entry.used_length,
            expected: entry.sha256,
            actual,
        });
    }
    Ok(report)
}
