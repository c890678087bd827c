//! The RAM digest section (SPEC.md §13.2): one sha256-sparse digest per RAM block, taken by
//! the source while the guest is stopped and checked by the destination before it resumes.
//!
//! | field | size | value |
//! |---|---|---|
//! | version | u8 | [`DIGEST_V1_VERSION`](ramstream_spec::extension::digest::DIGEST_V1_VERSION) |
//! | algorithm | u8 | [`DIGEST_ALGORITHM_SHA256_SPARSE`](ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_SPARSE) |
//! | block count | be32 | `n`, the MEM_SIZE block count |
//! | blocks | n × | `u8 len, idstr, be64 used_length, 32-byte digest`, MEM_SIZE order |
//!
//! - [`DigestSection`]: the body, with [`decode`](DigestSection::decode),
//!   [`encode`](DigestSection::encode) and [`from_device`](DigestSection::from_device) (the
//!   one call a stream inspector needs), and a `Display` of one line per block.
//! - [`digest_block`] and [`SparseSha256`]: the sha256-sparse digest of a block, over pages
//!   the caller reads, ballooned pages counted as zero without being read.
//! - [`chunked_block`], [`digest_chunk`] and [`ChunkedSha256`]: the two-level sha256-chunked
//!   digest (SPEC.md §13.7) a source keeps up to date during the precopy.
//!
//! ```
//! use ramstream_codec::balloon::PageRun;
//! use ramstream_codec::extension::digest::digest_block;
//!
//! // A 4-page block: page 1 holds data, page 2 is ballooned (never read), the rest are zero.
//! let mut reads = Vec::new();
//! let d = digest_block(4, 4096, &[PageRun::new(2, 1)], |p, buf: &mut [u8]| {
//!     reads.push(p);
//!     buf.fill((p == 1) as u8);
//!     Ok::<_, ()>(())
//! })
//! .unwrap();
//! assert_eq!(reads, [0, 1, 3]);
//! assert_ne!(d, digest_block(4, 4096, &[], |_, buf: &mut [u8]| Ok::<_, ()>(buf.fill(0))).unwrap());
//! ```

mod chunked;
mod section;
mod sparse;

pub use chunked::{
    chunk_count, chunk_pages, chunked_block, digest_chunk, merged_runs, ChunkedSha256,
};
pub use section::{BlockDigest, DigestAlgorithm, DigestSection};
pub use sparse::{digest_block, SparseSha256};
