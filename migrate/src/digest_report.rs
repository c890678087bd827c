//! The outcome of a RAM digest check (SPEC.md §13): each block's expected and actual
//! digest, the report over all blocks, and why a check refused the stream.
//!
//! Plain data, below both `digest.rs` (which computes the checks) and `error.rs` (whose
//! `ErrorKind::Digest` carries a [`DigestError`]), so neither imports the other's way up.

use core::fmt;

use ramstream_codec::extension::ExtensionError;
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;

/// One block's digest: what the section says and what guest memory gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDigestCheck {
    /// The block's idstr (the same in the section and in MEM_SIZE).
    pub idstr: String,
    /// Its used length in bytes.
    pub used_length: u64,
    /// The digest the source sent.
    pub expected: [u8; DIGEST_SHA256_LEN],
    /// The digest of the guest memory the loader wrote.
    pub actual: [u8; DIGEST_SHA256_LEN],
}

impl BlockDigestCheck {
    /// Whether guest memory holds what the source had.
    pub fn matches(&self) -> bool {
        self.expected == self.actual
    }
}

/// One line: idstr, then both digests in hex when they differ.
impl fmt::Display for BlockDigestCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {:?}: ", self.idstr)?;
        if self.matches() {
            return write!(f, "digest {} matches", Hex(&self.expected));
        }
        write!(
            f,
            "stream says {}, memory has {}",
            Hex(&self.expected),
            Hex(&self.actual)
        )
    }
}

/// Every block's check, in MEM_SIZE order: the outcome of a digest verification.
///
/// ```
/// use ramstream_migrate::{BlockDigestCheck, DigestReport};
/// let ok = BlockDigestCheck { idstr: "pc.ram".into(), used_length: 4096, expected: [1; 32], actual: [1; 32] };
/// let bad = BlockDigestCheck { idstr: "ram1".into(), actual: [2; 32], ..ok.clone() };
/// let report = DigestReport::new(vec![ok, bad]);
/// assert!(!report.is_match());
/// assert_eq!(report.first_mismatch().unwrap().idstr, "ram1");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DigestReport {
    /// One check per block, MEM_SIZE order.
    pub blocks: Vec<BlockDigestCheck>,
}

impl DigestReport {
    /// The report of `blocks`' checks (in MEM_SIZE order).
    pub fn new(blocks: Vec<BlockDigestCheck>) -> Self {
        DigestReport { blocks }
    }

    /// Whether every block matches: the guest may be resumed (SPEC.md §13.4).
    pub fn is_match(&self) -> bool {
        self.blocks.iter().all(BlockDigestCheck::matches)
    }

    /// The first block whose memory differs from the source's.
    pub fn first_mismatch(&self) -> Option<&BlockDigestCheck> {
        self.blocks.iter().find(|b| !b.matches())
    }
}

/// Why a digest check refused the stream ([`ErrorKind::Digest`](crate::ErrorKind::Digest)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestError {
    /// The section is newer than implemented or its body is malformed (SPEC.md §13.3);
    /// offsets in it count from the body's first byte.
    Section(ExtensionError),
    /// The section lists another number of blocks than MEM_SIZE.
    BlockCount {
        /// Entries in the section.
        section: usize,
        /// Blocks in MEM_SIZE.
        stream: usize,
    },
    /// Entry `index` names another block, or another length, than MEM_SIZE's block `index`.
    BlockEntry {
        /// The entry's index (MEM_SIZE order).
        index: usize,
        /// The entry's idstr.
        idstr: String,
        /// The entry's used length.
        used_length: u64,
    },
    /// Guest memory differs from the source's: the guest must not be resumed.
    Mismatch(Box<BlockDigestCheck>),
    /// EOF arrived without a digest section, and
    /// [`DigestPolicy::Require`](crate::DigestPolicy::Require) asked for one.
    Missing,
    /// A digest check was asked for before the MEM_SIZE record said what the blocks are.
    NoBlocks,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::Section(e) => write!(f, "digest section: {e}"),
            DigestError::BlockCount { section, stream } => write!(
                f,
                "the digest section lists {section} blocks, MEM_SIZE {stream}"
            ),
            DigestError::BlockEntry {
                index,
                idstr,
                used_length,
            } => write!(
                f,
                "digest entry {index} ({idstr:?}, {used_length:#x} bytes) is not MEM_SIZE's \
                 block {index}"
            ),
            DigestError::Mismatch(check) => write!(
                f,
                "RAM digest mismatch in {check}; refusing to resume the guest (SPEC.md §13.4)"
            ),
            DigestError::Missing => f.write_str("no RAM digest section before EOF (SPEC.md §13.4)"),
            DigestError::NoBlocks => f.write_str("no MEM_SIZE record: nothing to check"),
        }
    }
}

/// Lower-case hex of a digest.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}
