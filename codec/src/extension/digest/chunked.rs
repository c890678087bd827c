//! The two-level sha256-chunked block digest (SPEC.md §13.7, algorithm
//! [`DIGEST_ALGORITHM_SHA256_CHUNKED`](ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_CHUNKED)):
//! a block is cut into chunks of
//! [`DIGEST_CHUNK_PAGES`](ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES) pages,
//! each chunk has the sha256-sparse digest of its pages (block page indices), and the block's
//! digest is sha256 over `be64 chunk index ‖ chunk digest` of the chunks holding a non-zero
//! page. A source keeps the chunk digests and re-hashes only dirtied chunks.

use core::ops::Range;

use ramstream_spec::extension::digest::{DIGEST_CHUNK_PAGES, DIGEST_SHA256_LEN};
use sha2::{Digest, Sha256};

use super::sparse::SparseSha256;
use crate::balloon::PageRun;

/// The number of chunks of a block of `pages` pages.
pub fn chunk_count(pages: u64) -> u64 {
    pages.div_ceil(DIGEST_CHUNK_PAGES)
}

/// The block pages of chunk `chunk` of a block of `pages` pages (the last may be shorter;
/// empty past the end).
pub fn chunk_pages(chunk: u64, pages: u64) -> Range<u64> {
    let start = chunk.saturating_mul(DIGEST_CHUNK_PAGES).min(pages);
    start..start.saturating_add(DIGEST_CHUNK_PAGES).min(pages)
}

/// Ballooned runs sorted by start and merged, the form [`digest_chunk`] takes.
pub fn merged_runs(runs: &[PageRun]) -> Vec<PageRun> {
    let mut v: Vec<PageRun> = runs.iter().copied().filter(|r| r.count > 0).collect();
    v.sort_unstable();
    let mut out: Vec<PageRun> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end() => {
                let end = last.end().max(r.end());
                last.count = end - last.start;
            }
            _ => out.push(r),
        }
    }
    out
}

/// The sha256-sparse digest of chunk `chunk` of a block of `pages` pages of `buf.len()`
/// bytes, read through `read(block page index, buf)`; `None` when every page of it is zero or
/// ballooned. `ballooned` must be sorted and merged ([`merged_runs`]); its pages are not read.
pub fn digest_chunk<E>(
    chunk: u64,
    pages: u64,
    ballooned: &[PageRun],
    buf: &mut [u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<Option<[u8; DIGEST_SHA256_LEN]>, E> {
    let range = chunk_pages(chunk, pages);
    let mut runs = ballooned[ballooned.partition_point(|r| r.end() <= range.start)..].iter();
    let mut run = runs.next();
    let mut digest = SparseSha256::new();
    let mut any = false;
    let mut p = range.start;
    while p < range.end {
        if let Some(r) = run {
            if r.end() <= p {
                run = runs.next();
                continue;
            }
            if r.start <= p {
                p = r.end();
                continue;
            }
        }
        read(p, buf)?;
        any |= digest.page(p, buf);
        p += 1;
    }
    Ok(any.then(|| digest.finish()))
}

/// The running top level of a sha256-chunked block digest: sha256 over `be64 chunk index ‖
/// chunk digest` for every chunk holding a non-zero page, ascending.
#[derive(Debug, Clone, Default)]
pub struct ChunkedSha256 {
    hash: Sha256,
    next: u64,
}

impl ChunkedSha256 {
    /// The digest of an all-zero block so far.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds chunk `index` with digest `digest` (`None`: all zero, adds nothing). Indices must
    /// ascend; one at or below an earlier one is ignored and [`debug_assert!`]ed against.
    pub fn chunk(&mut self, index: u64, digest: Option<&[u8; DIGEST_SHA256_LEN]>) {
        debug_assert!(index >= self.next, "chunks out of order");
        if index < self.next {
            return;
        }
        self.next = index.saturating_add(1);
        if let Some(d) = digest {
            self.hash.update(index.to_be_bytes());
            self.hash.update(d);
        }
    }

    /// The block's digest.
    pub fn finish(self) -> [u8; DIGEST_SHA256_LEN] {
        self.hash.finalize().into()
    }
}

/// The sha256-chunked digest of a block of `pages` pages of `page_size` bytes read through
/// `read(page index, buffer)`; pages inside `ballooned` (any order, overlaps allowed) count
/// as zero and are not read. The first read error is returned.
pub fn chunked_block<E>(
    pages: u64,
    page_size: usize,
    ballooned: &[PageRun],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<[u8; DIGEST_SHA256_LEN], E> {
    let runs = merged_runs(ballooned);
    let mut buf = vec![0u8; page_size];
    let mut top = ChunkedSha256::new();
    for c in 0..chunk_count(pages) {
        let d = digest_chunk(c, pages, &runs, &mut buf, &mut read)?;
        top.chunk(c, d.as_ref());
    }
    Ok(top.finish())
}
