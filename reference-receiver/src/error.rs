//! The receiver's error type.

use std::io;

/// What went wrong; in every case the destination guest was not resumed (except
/// [`RecvErrorKind::Verify`], which happens after resuming).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvErrorKind {
    /// Reading failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The stream is malformed.
    #[error("stream: {0}")]
    Decode(ramstream_codec::Error),
    /// The stream ended before EOF or before the digest section.
    #[error("stream ended early ({0}); refusing to resume the guest")]
    EndedEarly(String),
    /// An extension section of SPEC.md §13 (the digest, or a reference state section) whose
    /// body starts at stream offset `offset` is malformed or newer than known.
    #[error("section {idstr:?} with its body at offset {offset}: {source}")]
    Extension {
        /// Stream offset of the section body's first byte.
        offset: u64,
        /// The section's idstr.
        idstr: String,
        /// What is wrong, with the offset inside the body.
        #[source]
        source: ramstream_codec::extension::ExtensionError,
    },
    /// Something the reference machine does not accept (machine type, sections).
    #[error("{0}")]
    Protocol(String),
    /// The MEM_SIZE record at `offset` announces blocks that are not the destination's
    /// layout (unknown or missing block, other length, extra block, or a second MEM_SIZE
    /// that changes the first). Nothing was mapped or written for it.
    #[error("MEM_SIZE at offset {offset}: blocks {announced:?} {reason}")]
    LayoutMismatch {
        /// Stream offset of the MEM_SIZE record.
        offset: u64,
        /// The `(idstr, used_length)` list the record announced.
        announced: Vec<(String, u64)>,
        /// What does not match.
        reason: String,
    },
    /// The configuration at `offset` sets a target page size other than the destination's
    /// (whose page records are whole 4 KiB pages).
    #[error("configuration at offset {offset}: target page size {page_size} is not the destination's {expected}")]
    PageSizeMismatch {
        /// Stream offset of the configuration section.
        offset: u64,
        /// The stream's target page size.
        page_size: u64,
        /// The destination's.
        expected: u64,
    },
    /// A PAGE, ZERO or XBZRLE record at `offset` for a page that the stream's own balloon
    /// records say is ballooned at that point (SPEC.md §9.7: a sender MUST deflate first).
    /// Nothing was written for it.
    #[error("{record} record at offset {offset} writes page {page} of block {block:?}, which the stream ballooned; a sender must deflate a page before sending it (SPEC.md §9.7)")]
    PageOfBallooned {
        /// Stream offset of the record.
        offset: u64,
        /// `PAGE`, `ZERO` or `XBZRLE`.
        record: &'static str,
        /// The block's idstr.
        block: String,
        /// The page index in the block.
        page: u64,
    },
    /// The RAM digest does not match the memory received.
    #[error("RAM digest mismatch in block {block:?}: stream says {expected}, memory has {actual}; refusing to resume the guest")]
    DigestMismatch {
        /// The block.
        block: String,
        /// Hex digest from the stream.
        expected: String,
        /// Hex digest of the destination's memory.
        actual: String,
    },
    /// The destination guest failed.
    #[error("destination guest: {0}")]
    Guest(String),
    /// The resumed guest did not prove that it runs intact.
    #[error("verification after resume: {0}")]
    Verify(String),
}

/// A failed receive.
#[derive(Debug, thiserror::Error)]
#[error("receive failed after {bytes_received} bytes: {kind}")]
pub struct RecvError {
    /// Bytes read before the failure.
    pub bytes_received: u64,
    /// Whether the destination guest was resumed (false for every error before resuming).
    pub resumed: bool,
    /// The cause.
    #[source]
    pub kind: RecvErrorKind,
}
