//! The sha256-sparse block digest (SPEC.md §13.2, algorithm
//! [`DIGEST_ALGORITHM_SHA256_SPARSE`](ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_SPARSE)).

use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;
use sha2::{Digest, Sha256};

use crate::balloon::PageRun;
use crate::zero::is_zero_page;

/// The running sha256-sparse digest of one block: sha256 over `be64 page index ‖ page bytes`
/// for every page that is not all zero, in ascending page order.
///
/// Feed it every page that is not ballooned, in ascending order ([`page`](Self::page) skips
/// the zero ones itself), or use [`digest_block`], which walks a block for you. Because the
/// block's length is known and every hashed page carries its index, equal digests of blocks
/// of equal length mean equal blocks, while the cost follows the resident, non-zero data
/// rather than the RAM size.
#[derive(Debug, Clone, Default)]
pub struct SparseSha256 {
    hash: Sha256,
    next: u64,
}

impl SparseSha256 {
    /// The digest of an empty (all-zero) block so far.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds page `index` with contents `page` (any page size). Indices must ascend: a page
    /// at or below one already added is ignored (the encoding would no longer be injective),
    /// and [`debug_assert!`]ed against.
    /// Returns whether the page was hashed (it is not all zero).
    pub fn page(&mut self, index: u64, page: &[u8]) -> bool {
        debug_assert!(
            index >= self.next,
            "pages out of order: {index} after {}",
            self.next
        );
        if index < self.next {
            return false;
        }
        self.next = index.saturating_add(1);
        if is_zero_page(page) {
            return false;
        }
        self.hash.update(index.to_be_bytes());
        self.hash.update(page);
        true
    }

    /// The digest.
    pub fn finish(self) -> [u8; DIGEST_SHA256_LEN] {
        self.hash.finalize().into()
    }
}

/// The sha256-sparse digest of a block of `pages` pages of `page_size` bytes, read through
/// `read(page index, buffer)`. Pages inside `ballooned` (runs in block pages, in any order,
/// possibly overlapping) count as zero and are not read. The first read error is returned.
pub fn digest_block<E>(
    pages: u64,
    page_size: usize,
    ballooned: &[PageRun],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<[u8; DIGEST_SHA256_LEN], E> {
    let mut runs = ballooned.to_vec();
    runs.sort_unstable();
    let mut runs = runs.into_iter().peekable();
    let mut buf = vec![0u8; page_size];
    let mut digest = SparseSha256::new();
    let mut p = 0;
    while p < pages {
        while runs.next_if(|r| r.end() <= p).is_some() {}
        if let Some(r) = runs.peek() {
            if r.start <= p {
                p = r.end().min(pages);
                continue;
            }
        }
        read(p, &mut buf)?;
        digest.page(p, &buf);
        p += 1;
    }
    Ok(digest.finish())
}
