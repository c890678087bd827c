//! The digest section's body (SPEC.md §13.2): parse, encode, display.

use core::fmt;

use bytes::BufMut;
use ramstream_spec::extension::digest::{
    DIGEST_ALGORITHM_SHA256_CHUNKED, DIGEST_ALGORITHM_SHA256_SPARSE, DIGEST_SECTION_IDSTR,
    DIGEST_SHA256_LEN, DIGEST_V1_HEADER_LEN, DIGEST_V1_VERSION,
};
use ramstream_spec::limits::MAX_RAM_BLOCKS;

use crate::extension::{ExtensionError, ExtensionSection};
use crate::DeviceSection;

/// One block's entry of the digest section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BlockDigest {
    /// The block's idstr, as in MEM_SIZE.
    pub idstr: String,
    /// Its used length in bytes.
    pub used_length: u64,
    /// The block's sha256-sparse digest ([`digest_block`](super::digest_block)); serialised
    /// as hex.
    #[cfg_attr(feature = "serde", serde(serialize_with = "hex"))]
    pub sha256: [u8; DIGEST_SHA256_LEN],
}

/// How a block's digest is computed: the body's algorithm byte (SPEC.md §13.2, §13.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// sha256 over the block's non-zero pages, each tagged with its index
    /// ([`digest_block`](super::digest_block), SPEC.md §13.2).
    #[default]
    Sha256Sparse,
    /// sha256 over the sha256-sparse digests of the block's non-zero chunks, each tagged with
    /// its index ([`chunked_block`](super::chunked_block), SPEC.md §13.7): what a source can
    /// keep up to date during the precopy.
    Sha256Chunked,
}

impl DigestAlgorithm {
    /// The algorithm byte.
    pub fn byte(self) -> u8 {
        match self {
            DigestAlgorithm::Sha256Sparse => DIGEST_ALGORITHM_SHA256_SPARSE,
            DigestAlgorithm::Sha256Chunked => DIGEST_ALGORITHM_SHA256_CHUNKED,
        }
    }

    /// The algorithm of a byte, `None` if unknown.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            DIGEST_ALGORITHM_SHA256_SPARSE => Some(DigestAlgorithm::Sha256Sparse),
            DIGEST_ALGORITHM_SHA256_CHUNKED => Some(DigestAlgorithm::Sha256Chunked),
            _ => None,
        }
    }

    /// The algorithm's name in SPEC.md.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256Sparse => "sha256-sparse",
            DigestAlgorithm::Sha256Chunked => "sha256-chunked",
        }
    }
}

/// The digest section's body, version 1 (SPEC.md §13.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DigestSection {
    /// How every block's digest was computed.
    pub algorithm: DigestAlgorithm,
    /// One entry per RAM block, MEM_SIZE order.
    pub blocks: Vec<BlockDigest>,
}

impl DigestSection {
    /// The digest section carried by `section`: `Ok(None)` if it is another section, an
    /// error if its version id is newer than implemented or its body is malformed.
    ///
    /// A stream inspector's one call per decoded
    /// [`Event::Device`](crate::Event::Device); `Display` prints the result.
    pub fn from_device(section: &DeviceSection<'_>) -> Result<Option<Self>, ExtensionError> {
        if section.header.idstr != DIGEST_SECTION_IDSTR {
            return Ok(None);
        }
        match ExtensionSection::from_device(section)? {
            Some(ExtensionSection::Digest(d)) => Ok(Some(d)),
            _ => Ok(None),
        }
    }

    /// The body's length in bytes: `6 + Σ(1 + len(idstr) + 8 + 32)`.
    pub fn encoded_len(&self) -> usize {
        DIGEST_V1_HEADER_LEN
            + self
                .blocks
                .iter()
                .map(|b| 1 + b.idstr.len() + 8 + DIGEST_SHA256_LEN)
                .sum::<usize>()
    }

    /// Writes the body into `out`. Fails, writing nothing, if an idstr is longer than
    /// 255 bytes or there are more blocks than
    /// [`MAX_RAM_BLOCKS`](ramstream_spec::limits::MAX_RAM_BLOCKS) (which a decoder refuses).
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), ExtensionError> {
        if let Some((block, b)) = self
            .blocks
            .iter()
            .enumerate()
            .find(|(_, b)| b.idstr.len() > usize::from(u8::MAX))
        {
            return Err(ExtensionError::IdstrTooLong {
                block,
                len: b.idstr.len(),
            });
        }
        if self.blocks.len() > MAX_RAM_BLOCKS {
            return Err(ExtensionError::TooManyBlocks {
                count: u32::try_from(self.blocks.len()).unwrap_or(u32::MAX),
                limit: MAX_RAM_BLOCKS,
            });
        }
        out.put_u8(DIGEST_V1_VERSION);
        out.put_u8(self.algorithm.byte());
        out.put_u32(self.blocks.len() as u32);
        for b in &self.blocks {
            out.put_u8(b.idstr.len() as u8);
            out.put_slice(b.idstr.as_bytes());
            out.put_u64(b.used_length);
            out.put_slice(&b.sha256);
        }
        Ok(())
    }

    /// Parses a whole body. Allocates one entry per block present in the body, never by
    /// the announced count alone; at most
    /// [`MAX_RAM_BLOCKS`](ramstream_spec::limits::MAX_RAM_BLOCKS) entries.
    pub fn decode(body: &[u8]) -> Result<Self, ExtensionError> {
        let mut r = Body { body, at: 0 };
        let [version] = r.take::<1>("version byte")?;
        if version != DIGEST_V1_VERSION {
            return Err(ExtensionError::DigestVersion { found: version });
        }
        let [algorithm] = r.take::<1>("algorithm byte")?;
        let algorithm = DigestAlgorithm::from_byte(algorithm)
            .ok_or(ExtensionError::DigestAlgorithm { found: algorithm })?;
        let count = u32::from_be_bytes(r.take("block count")?);
        if usize::try_from(count).map_or(true, |n| n > MAX_RAM_BLOCKS) {
            return Err(ExtensionError::TooManyBlocks {
                count,
                limit: MAX_RAM_BLOCKS,
            });
        }
        let mut blocks = Vec::new();
        for block in 0..count {
            let [len] = r.take::<1>("idstr length")?;
            let at = r.at;
            let name = r.slice("idstr", usize::from(len))?;
            let idstr = core::str::from_utf8(name)
                .map_err(|_| ExtensionError::BlockIdstr { block, at })?
                .to_string();
            let used_length = u64::from_be_bytes(r.take("used length")?);
            let sha256 = r.take("digest")?;
            blocks.push(BlockDigest {
                idstr,
                used_length,
                sha256,
            });
        }
        if r.at != body.len() {
            return Err(ExtensionError::TrailingBytes {
                at: r.at,
                count: body.len() - r.at,
            });
        }
        Ok(DigestSection { algorithm, blocks })
    }
}

/// One line per block: idstr, used length, digest in hex.
impl fmt::Display for DigestSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{DIGEST_SECTION_IDSTR}: {}, {} blocks",
            self.algorithm.name(),
            self.blocks.len()
        )?;
        for b in &self.blocks {
            write!(f, "\n  {:<28} {:>#14x} ", b.idstr, b.used_length)?;
            for byte in b.sha256 {
                write!(f, "{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// A read position in a whole body.
struct Body<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn slice(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], ExtensionError> {
        let rest = &self.body[self.at..];
        let s = rest.get(..n).ok_or(ExtensionError::Truncated {
            field,
            at: self.at,
            needed: n,
            available: rest.len(),
        })?;
        self.at += n;
        Ok(s)
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ExtensionError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.slice(field, N)?);
        Ok(a)
    }
}

#[cfg(feature = "serde")]
fn hex<S: serde::Serializer>(digest: &[u8; DIGEST_SHA256_LEN], s: S) -> Result<S::Ok, S::Error> {
    let mut text = String::with_capacity(2 * DIGEST_SHA256_LEN);
    for byte in digest {
        text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        text.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    s.serialize_str(&text)
}
