//! The reference machine's sections on the wire (SPEC.md §13): the configuration the
//! sender writes, the length-prefixed state sections, and the digest section.
//!
//! | section | idstr | body |
//! |---|---|---|
//! | FULL | `ramstream/vcpu` v1 | be32 length, vCPU blob (`RSVC`…) |
//! | FULL | `ramstream/vm` v1 | be32 length, VM blob (`RSVM`…, balloon runs included) |
//! | FULL | `ramstream/memory-layout` v1 | be32 length, layout JSON |
//! | FULL | `ramstream/ram-digest` v1 | [`DigestSection`] |

use ramstream_spec::extension::digest::{
    DIGEST_ALGORITHM_SHA256_SPARSE, DIGEST_SHA256_LEN, DIGEST_V1_HEADER_LEN, DIGEST_V1_VERSION,
};

/// Wraps a state blob as a reference device section body: be32 length, then the blob.
pub fn length_prefixed(blob: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + blob.len());
    v.extend_from_slice(&(blob.len() as u32).to_be_bytes());
    v.extend_from_slice(blob);
    v
}

/// Unwraps a reference device section body; `None` if the length does not match the body
/// (which also catches a device section split at a false footer).
pub fn unprefix(body: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) as usize;
    (body.len() == 4 + len).then(|| &body[4..])
}

/// One block's entry of the digest section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDigest {
    /// The block's idstr.
    pub idstr: String,
    /// Its used length in bytes.
    pub used_length: u64,
    /// The block digest (SPEC.md §13.2), ballooned pages as zero.
    pub sha256: [u8; DIGEST_SHA256_LEN],
}

/// The digest section's body, version 1 (SPEC.md §13.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSection {
    /// One entry per RAM block, MEM_SIZE order.
    pub blocks: Vec<BlockDigest>,
}

/// Why a digest section body is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestFormatError {
    /// The body ended early.
    #[error("digest section truncated at byte {at}")]
    Truncated {
        /// Offset in the body.
        at: usize,
    },
    /// The version byte is not 1.
    #[error("digest section body version {0}, expected {DIGEST_V1_VERSION}")]
    Version(u8),
    /// The algorithm byte is not sha256.
    #[error("digest algorithm {0}, expected {DIGEST_ALGORITHM_SHA256_SPARSE} (sha256, sparse)")]
    Algorithm(u8),
    /// Bytes after the last entry.
    #[error("{0} trailing bytes after the digest entries")]
    Trailing(usize),
    /// An idstr is not UTF-8.
    #[error("block idstr at byte {at} is not UTF-8")]
    Idstr {
        /// Offset in the body.
        at: usize,
    },
}

impl DigestSection {
    /// The body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(DIGEST_V1_HEADER_LEN + self.blocks.len() * 48);
        v.push(DIGEST_V1_VERSION);
        v.push(DIGEST_ALGORITHM_SHA256_SPARSE);
        v.extend_from_slice(&(self.blocks.len() as u32).to_be_bytes());
        for b in &self.blocks {
            v.push(b.idstr.len() as u8);
            v.extend_from_slice(b.idstr.as_bytes());
            v.extend_from_slice(&b.used_length.to_be_bytes());
            v.extend_from_slice(&b.sha256);
        }
        v
    }

    /// Parses a body.
    pub fn decode(body: &[u8]) -> Result<Self, DigestFormatError> {
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], DigestFormatError> {
            let s = body
                .get(*at..*at + n)
                .ok_or(DigestFormatError::Truncated { at: *at })?;
            *at += n;
            Ok(s)
        };
        let version = take(&mut at, 1)?[0];
        if version != DIGEST_V1_VERSION {
            return Err(DigestFormatError::Version(version));
        }
        let alg = take(&mut at, 1)?[0];
        if alg != DIGEST_ALGORITHM_SHA256_SPARSE {
            return Err(DigestFormatError::Algorithm(alg));
        }
        let n = u32::from_be_bytes(take(&mut at, 4)?.try_into().unwrap_or([0; 4]));
        let mut blocks = Vec::new();
        for _ in 0..n {
            let len = take(&mut at, 1)?[0] as usize;
            let name_at = at;
            let idstr = std::str::from_utf8(take(&mut at, len)?)
                .map_err(|_| DigestFormatError::Idstr { at: name_at })?
                .to_string();
            let used_length = u64::from_be_bytes(take(&mut at, 8)?.try_into().unwrap_or([0; 8]));
            let mut sha256 = [0u8; DIGEST_SHA256_LEN];
            sha256.copy_from_slice(take(&mut at, DIGEST_SHA256_LEN)?);
            blocks.push(BlockDigest {
                idstr,
                used_length,
                sha256,
            });
        }
        if at != body.len() {
            return Err(DigestFormatError::Trailing(body.len() - at));
        }
        Ok(DigestSection { blocks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trip_and_errors() {
        let d = DigestSection {
            blocks: vec![BlockDigest {
                idstr: "pc.ram".into(),
                used_length: 1 << 21,
                sha256: [7; 32],
            }],
        };
        let b = d.encode();
        assert_eq!(b.len(), 6 + 1 + 6 + 8 + 32);
        assert_eq!(DigestSection::decode(&b).unwrap(), d);
        for cut in 0..b.len() {
            assert!(DigestSection::decode(&b[..cut]).is_err());
        }
        let mut bad = b.clone();
        bad[0] = 2;
        assert_eq!(
            DigestSection::decode(&bad),
            Err(DigestFormatError::Version(2))
        );
        let mut long = b;
        long.push(0);
        assert_eq!(
            DigestSection::decode(&long),
            Err(DigestFormatError::Trailing(1))
        );
        assert_eq!(unprefix(&length_prefixed(b"abc")), Some(&b"abc"[..]));
        assert_eq!(unprefix(b"\0\0\0\x04abc"), None);
    }
}
