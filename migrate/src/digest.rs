//! Checking the RAM digest section (SPEC.md §13) against guest memory: each block's
//! sha256-sparse digest computed through [`GuestRam::read_page`], ballooned pages counted as
//! zero without being read (SPEC.md §13.2), and compared with the section's entry.
//!
//! [`Loader::verify_digest`](crate::Loader::verify_digest) does it on request;
//! [`DigestPolicy::Verify`](crate::DigestPolicy::Verify) makes the loader do it at EOF.

use ramstream_codec::balloon::{BalloonMap, PageRun};
use ramstream_codec::extension::digest::{digest_block, DigestSection};
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

/// Checks `section` against `ram`: its entries against the stream's `blocks` (MEM_SIZE
/// order), then each block's digest; `to_guest[i]` is stream block `i`'s guest block and
/// `ballooned` the stream-numbered balloon map. Errors carry `at` as their offset.
pub(crate) fn verify<R: GuestRam>(
    ram: &R,
    section: &DigestSection,
    blocks: &[RamBlockLayout],
    to_guest: &[usize],
    ballooned: &BalloonMap,
    page_size: usize,
    at: u64,
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
        let actual = block_digest(ram, guest, block.used_length(), page_size, &runs).map_err(
            |(addr, source)| {
                Error::new(
                    at,
                    ErrorKind::Guest {
                        addr,
                        source: Box::new(source),
                    },
                )
                .in_block(block.idstr())
            },
        )?;
        report.blocks.push(BlockDigestCheck {
            idstr: entry.idstr.clone(),
            used_length: entry.used_length,
            expected: entry.sha256,
            actual,
        });
    }
    Ok(report)
}
