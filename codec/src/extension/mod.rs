//! ramstream's extension sections (SPEC.md §13): the RAM digest section and the reference
//! machine's state sections, read from a decoded [`DeviceSection`](crate::DeviceSection) and
//! written into a caller's buffer. Like the rest of the codec this is sans-IO: the digest of a
//! block is computed over pages the caller reads for it.
//!
//! | section (FULL) | version | body | here |
//! |---|---|---|---|
//! | `ramstream/ram-digest` | 1 | version, algorithm, be32 count, per block `u8 len, idstr, be64 used_length, 32-byte digest` (SPEC.md §13.2) | [`digest`] |
//! | `ramstream/vcpu` | 1 | be32 length, vCPU blob (SPEC.md §13.6) | [`state`] |
//! | `ramstream/vm` | 1 | be32 length, VM blob | [`state`] |
//! | `ramstream/memory-layout` | 1 | be32 length, layout JSON | [`state`] |
//!
//! [`ExtensionSection::from_device`] tells them apart and checks the section version
//! (SPEC.md §13.3); errors are [`ExtensionError`]s with the body offset.
//!
//! ```
//! use ramstream_codec::extension::digest::{BlockDigest, DigestAlgorithm, DigestSection};
//! use ramstream_codec::extension::ExtensionSection;
//! use ramstream_codec::{DeviceSection, SectionHeader};
//! use ramstream_spec::extension::digest::{DIGEST_SECTION_IDSTR, DIGEST_SECTION_VERSION};
//! use ramstream_spec::stream::SectionType;
//!
//! let digest = DigestSection {
//!     algorithm: DigestAlgorithm::Sha256Sparse,
//!     blocks: vec![BlockDigest { idstr: "pc.ram".into(), used_length: 1 << 21, sha256: [7; 32] }],
//! };
//! let mut body = Vec::new();
//! digest.encode(&mut body).unwrap();
//! let header = SectionHeader {
//!     section_type: SectionType::FULL,
//!     section_id: 4,
//!     idstr: DIGEST_SECTION_IDSTR,
//!     instance_id: 0,
//!     version_id: DIGEST_SECTION_VERSION,
//! };
//! let section = DeviceSection { header, body_offset: 0, body: &body };
//! assert_eq!(ExtensionSection::from_device(&section), Ok(Some(ExtensionSection::Digest(digest))));
//! ```

pub mod digest;
mod error;
mod section;
pub mod state;
#[cfg(test)]
mod tests;

pub use error::ExtensionError;
pub use section::ExtensionSection;
