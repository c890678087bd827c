//! Errors of the extension-section layer (SPEC.md §12.4, §13).

use core::fmt;

/// Why an extension section body (SPEC.md §13) is rejected, or cannot be written.
///
/// Offsets (`at`) count from the first byte of the section body, as the decoder's
/// [`DeviceSection::body_offset`](crate::DeviceSection::body_offset) does; a receiver adds
/// that offset to name the stream byte.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The section's version id is higher than the one implemented: refused as QEMU refuses a
    /// device section newer than it knows (SPEC.md §13.3, §13.6).
    SectionVersion {
        /// The section's idstr.
        idstr: &'static str,
        /// The version id in the section header.
        found: u32,
        /// The highest version id implemented.
        supported: u32,
    },
    /// The body ends inside a field.
    Truncated {
        /// The field, e.g. `block count` or `digest of block 1`.
        field: &'static str,
        /// Offset of the field's first byte.
        at: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes the body has left at `at`.
        available: usize,
    },
    /// A reference state body's be32 length prefix does not match the bytes after it
    /// (SPEC.md §13.6): the body is damaged, or the section was split at a false footer.
    StateLength {
        /// The length the prefix announces.
        prefix: u32,
        /// The bytes after the prefix.
        available: usize,
    },
    /// The digest body's version byte (offset 0) is not
    /// [`DIGEST_V1_VERSION`](ramstream_spec::extension::digest::DIGEST_V1_VERSION)
    /// (SPEC.md §13.3).
    DigestVersion {
        /// The byte found.
        found: u8,
    },
    /// The digest body's algorithm byte (offset 1) is not
    /// [`DIGEST_ALGORITHM_SHA256_SPARSE`](ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_SPARSE)
    /// (SPEC.md §13.3).
    DigestAlgorithm {
        /// The byte found.
        found: u8,
    },
    /// The digest body's block count (offset 2) is above
    /// [`MAX_RAM_BLOCKS`](ramstream_spec::limits::MAX_RAM_BLOCKS), the most a MEM_SIZE
    /// record may list (SPEC.md §10).
    TooManyBlocks {
        /// The count in the body.
        count: u32,
        /// The limit.
        limit: usize,
    },
    /// A block entry's idstr is not UTF-8.
    BlockIdstr {
        /// The entry's index.
        block: u32,
        /// Offset of the idstr's first byte.
        at: usize,
    },
    /// Bytes follow the last block entry.
    TrailingBytes {
        /// Offset of the first byte after the last entry.
        at: usize,
        /// How many bytes follow.
        count: usize,
    },
    /// Encoding: an idstr longer than the 255 bytes its length byte can count (nothing was
    /// written).
    IdstrTooLong {
        /// The entry's index.
        block: usize,
        /// The idstr's length.
        len: usize,
    },
    /// Encoding: a state blob longer than its be32 length prefix can count (nothing was
    /// written).
    StateTooLong {
        /// The blob's length.
        len: usize,
    },
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionError::SectionVersion {
                idstr,
                found,
                supported,
            } => write!(
                f,
                "section {idstr:?} version {found} is newer than {supported}, the newest known"
            ),
            ExtensionError::Truncated {
                field,
                at,
                needed,
                available,
            } => write!(
                f,
                "body truncated in the {field} at byte {at}: {needed} bytes needed, {available} left"
            ),
            ExtensionError::StateLength { prefix, available } => write!(
                f,
                "body length prefix says {prefix} bytes, {available} follow"
            ),
            ExtensionError::DigestVersion { found } => write!(
                f,
                "digest body version {found} at byte 0, expected {}",
                ramstream_spec::extension::digest::DIGEST_V1_VERSION
            ),
            ExtensionError::DigestAlgorithm { found } => write!(
                f,
                "digest algorithm {found} at byte 1, expected {} (sha256-sparse) or {} \
                 (sha256-chunked)",
                ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_SPARSE,
                ramstream_spec::extension::digest::DIGEST_ALGORITHM_SHA256_CHUNKED
            ),
            ExtensionError::TooManyBlocks { count, limit } => write!(
                f,
                "digest body lists {count} blocks at byte 2, more than the limit of {limit}"
            ),
            ExtensionError::BlockIdstr { block, at } => {
                write!(f, "idstr of digest entry {block} at byte {at} is not UTF-8")
            }
            ExtensionError::TrailingBytes { at, count } => {
                write!(f, "{count} trailing bytes at byte {at}, after the last entry")
            }
            ExtensionError::IdstrTooLong { block, len } => write!(
                f,
                "idstr of digest entry {block} is {len} bytes; a counted name holds at most 255"
            ),
            ExtensionError::StateTooLong { len } => {
                write!(f, "state blob of {len} bytes does not fit a be32 length")
            }
        }
    }
}

impl std::error::Error for ExtensionError {}
