//! XBZRLE: QEMU's delta encoding of a page against the copy the destination already holds.
//!
//! # Wire format (QEMU 1.2 … 10.0)
//!
//! An XBZRLE record's payload (after the record word and optional idstr) is
//!
//! | bytes | field |
//! |---|---|
//! | 1 | encoding, always [`ENCODING_FLAG_XBZRLE`] (`0x01`) |
//! | 2 | be16 `len`, at most the target page size |
//! | `len` | the delta |
//!
//! The delta is a sequence of pairs `zrun nzrun`: `zrun` is a "small" ULEB128 count of bytes
//! that stay as they are; `nzrun` is a small ULEB128 count `N` (never 0) followed by the `N`
//! **new** bytes (literal data, not XOR values). A small ULEB128 is 1 byte for `0..=127` and
//! 2 bytes (`lo7 | 0x80`, `hi`) up to
//! [`ULEB128_MAX`](ramstream_spec::xbzrle::ULEB128_MAX). The trailing run of unchanged bytes is
//! not sent; a page with no change at all is not sent at all.
//!
//! # Canonical output and overflow
//!
//! [`encode`] produces QEMU 7.2's bytes exactly: maximal runs, a first `zrun` of 0 when byte
//! 0 changed, and [`Encoded::Overflow`] in exactly the cases where QEMU's scalar encoder gives
//! up, given an output buffer of the same size (QEMU uses one target page). QEMU checks, in
//! this order: at least 2 bytes of room before each pair (before even looking at the next
//! zero run, so a delta that has filled all but one byte of the buffer overflows even when
//! the rest of the page is unchanged); at least 2 bytes of room after the zero-run length;
//! room for the literal bytes after the literal-run length. (QEMU 8.0's optional AVX-512
//! encoder checks room per 64-byte step and can differ at the margin; this crate follows the
//! scalar encoder.)
//!
//! All [`Kernel`]s give identical output; [`encode`] picks the fastest one this CPU has.
//!
//! # Decoding
//!
//! [`decode`] applies a delta in place with QEMU's acceptance rules (see [`XbzrleError`] for
//! each rejection). Like QEMU it writes as it goes, so a delta rejected part-way has already
//! changed the page; call [`validate`] first to check without writing.
//! [`check_record_header`] checks the encoding byte and length of a record.
//!
//! ```
//! use ramstream_codec::xbzrle::{decode, encode, Encoded};
//!
//! let old = [0u8; 4096];
//! let mut new = old;
//! new[4095] = 1;
//! let mut out = [0u8; 4096];
//! assert_eq!(encode(&old, &new, &mut out), Ok(Encoded::Delta(4)));
//! assert_eq!(out[..4], [0xff, 0x1f, 0x01, 0x01]);
//!
//! let mut page = old;
//! decode(&out[..4], &mut page).unwrap();
//! assert_eq!(page, new);
//! ```

mod decode;
mod encode;
pub(crate) mod simd;
mod uleb;

#[cfg(test)]
mod tests;

use core::fmt;
use ramstream_spec::xbzrle::ENCODING_FLAG_XBZRLE;

/// The result of encoding a page against its previous contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoded {
    /// Old and new are identical: QEMU sends nothing for the page.
    Unchanged,
    /// The delta is the first `len` bytes of the output buffer (`2 <= len <= out.len()`).
    Delta(usize),
    /// The delta does not fit the output buffer (QEMU's `-1`); the page is sent whole. The
    /// output buffer holds garbage.
    Overflow,
}

/// A misuse of [`encode`]: not a property of the page contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// The old and new page differ in length.
    LengthMismatch {
        /// Length of the old page.
        old: usize,
        /// Length of the new page.
        new: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::LengthMismatch { old, new } => write!(
                f,
                "XBZRLE encode: old page is {old} bytes but new page is {new} bytes"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why an XBZRLE record or delta is rejected. Every variant is a case where QEMU 7.2 fails
/// the load ("Failed to load XBZRLE page - …"); `at` is the byte offset inside the delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum XbzrleError {
    /// The record's encoding byte is not [`ENCODING_FLAG_XBZRLE`] (QEMU: "wrong
    /// compression!").
    WrongEncoding {
        /// The encoding byte found.
        found: u8,
    },
    /// The record's delta length exceeds the page size (QEMU: "len overflow!").
    LengthOverflow {
        /// The be16 length found.
        len: usize,
        /// The page size.
        page_len: usize,
    },
    /// Fewer than 2 bytes are left where a zero run starts (QEMU needs 2 before reading one).
    TruncatedZeroRun {
        /// Offset of the zero run.
        at: usize,
        /// Bytes left in the delta (0 is impossible: an exhausted delta ends the loop).
        remaining: usize,
    },
    /// A zero run of length 0 that is not the first run of the delta.
    EmptyZeroRun {
        /// Offset of the zero run.
        at: usize,
    },
    /// A zero run goes past the end of the page.
    ZeroRunPastPage {
        /// Offset of the zero run.
        at: usize,
        /// Page offset where the run starts.
        page_offset: usize,
        /// Run length.
        run: usize,
        /// The page size.
        page_len: usize,
    },
    /// Fewer than 2 bytes are left where a literal run's length starts (QEMU needs 2).
    TruncatedLiteralRun {
        /// Offset of the literal run's length.
        at: usize,
        /// Bytes left in the delta.
        remaining: usize,
    },
    /// A literal run of length 0.
    EmptyLiteralRun {
        /// Offset of the literal run's length.
        at: usize,
    },
    /// A literal run goes past the end of the page.
    LiteralRunPastPage {
        /// Offset of the literal run's length.
        at: usize,
        /// Page offset where the run starts.
        page_offset: usize,
        /// Run length.
        run: usize,
        /// The page size.
        page_len: usize,
    },
    /// A literal run goes past the end of the delta.
    LiteralRunPastInput {
        /// Offset of the literal run's length.
        at: usize,
        /// Run length.
        run: usize,
        /// Literal bytes actually left in the delta.
        remaining: usize,
    },
    /// A run length whose second byte has bit 7 set (a third ULEB128 byte is not allowed).
    BadRunLength {
        /// Offset of the run length.
        at: usize,
    },
}

impl fmt::Display for XbzrleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use XbzrleError::*;
        match *self {
            WrongEncoding { found } => write!(
                f,
                "XBZRLE record: encoding byte {found:#04x}, expected {ENCODING_FLAG_XBZRLE:#04x}"
            ),
            LengthOverflow { len, page_len } => write!(
                f,
                "XBZRLE record: delta length {len} exceeds the page size {page_len}"
            ),
            TruncatedZeroRun { at, remaining } => write!(
                f,
                "XBZRLE delta: {remaining} byte(s) left at offset {at} where a run pair starts \
                 (need at least 2)"
            ),
            EmptyZeroRun { at } => write!(
                f,
                "XBZRLE delta: zero run of length 0 at offset {at} (only the first run may be 0)"
            ),
            ZeroRunPastPage {
                at,
                page_offset,
                run,
                page_len,
            } => write!(
                f,
                "XBZRLE delta: zero run of {run} at offset {at} from page offset {page_offset} \
                 passes the page end {page_len}"
            ),
            TruncatedLiteralRun { at, remaining } => write!(
                f,
                "XBZRLE delta: {remaining} byte(s) left at offset {at} where a literal run \
                 starts (need at least 2)"
            ),
            EmptyLiteralRun { at } => {
                write!(f, "XBZRLE delta: literal run of length 0 at offset {at}")
            }
            LiteralRunPastPage {
                at,
                page_offset,
                run,
                page_len,
            } => write!(
                f,
                "XBZRLE delta: literal run of {run} at offset {at} from page offset \
                 {page_offset} passes the page end {page_len}"
            ),
            LiteralRunPastInput { at, run, remaining } => write!(
                f,
                "XBZRLE delta: literal run of {run} at offset {at} but only {remaining} \
                 byte(s) follow"
            ),
            BadRunLength { at } => write!(
                f,
                "XBZRLE delta: run length at offset {at} is longer than 2 bytes"
            ),
        }
    }
}

impl std::error::Error for XbzrleError {}

/// How the encoder finds run boundaries. All kernels give byte-identical output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// One byte at a time: the reference, and the benchmark baseline.
    Naive,
    /// Eight bytes at a time in portable Rust.
    Word,
    /// AVX2, 32 bytes per compare (x86-64 with AVX2 only).
    Avx2,
    /// AVX-512BW, 64 bytes per compare (x86-64 with AVX-512F and AVX-512BW only).
    Avx512,
    /// NEON, 16 bytes per compare (aarch64 only).
    Neon,
}

impl Kernel {
    /// Every kernel, whether or not this CPU supports it.
    pub const ALL: [Kernel; 5] = [
        Kernel::Naive,
        Kernel::Word,
        Kernel::Avx2,
        Kernel::Avx512,
        Kernel::Neon,
    ];

    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        match simd::Isa::best() {
            Some(simd::Isa::Avx512) => Kernel::Avx512,
            Some(simd::Isa::Avx2) => Kernel::Avx2,
            Some(simd::Isa::Neon) => Kernel::Neon,
            None => Kernel::Word,
        }
    }

    /// Whether this CPU can run the kernel ([`encode_with`] falls back to [`Kernel::Word`]
    /// when it cannot).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Naive | Kernel::Word => true,
            Kernel::Avx2 => simd::Isa::Avx2.available(),
            Kernel::Avx512 => simd::Isa::Avx512.available(),
            Kernel::Neon => simd::Isa::Neon.available(),
        }
    }
}

/// Encodes `new` against `old` into `out`, as QEMU 7.2's `xbzrle_encode_buffer(old, new,
/// len, out, out.len())` does; QEMU passes an `out` of one target page.
///
/// The page length is any length (QEMU's target page size); runs longer than
/// [`ULEB128_MAX`](ramstream_spec::xbzrle::ULEB128_MAX) cannot be encoded and give
/// [`Encoded::Overflow`] (QEMU would abort).
pub fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Encoded, EncodeError> {
    encode::encode(old, new, out)
}

/// [`encode`] with a chosen [`Kernel`] (for tests and benchmarks).
pub fn encode_with(
    kernel: Kernel,
    old: &[u8],
    new: &[u8],
    out: &mut [u8],
) -> Result<Encoded, EncodeError> {
    encode::encode_with(kernel, old, new, out)
}

/// Applies `delta` to `page` in place. An empty delta is accepted and changes nothing.
///
/// On error the page may already be partly written (as in QEMU); use [`validate`] first if
/// that matters.
pub fn decode(delta: &[u8], page: &mut [u8]) -> Result<(), XbzrleError> {
    decode::decode(delta, page)
}

/// Checks `delta` against a page of `page_len` bytes with the same rules as [`decode`],
/// without writing anything.
pub fn validate(delta: &[u8], page_len: usize) -> Result<(), XbzrleError> {
    decode::validate(delta, page_len)
}

/// Checks an XBZRLE record's encoding byte and be16 delta length for a page of `page_len`
/// bytes, in QEMU's order (encoding first).
pub fn check_record_header(encoding: u8, len: u16, page_len: usize) -> Result<(), XbzrleError> {
    if encoding != ENCODING_FLAG_XBZRLE {
        return Err(XbzrleError::WrongEncoding { found: encoding });
    }
    if usize::from(len) > page_len {
        return Err(XbzrleError::LengthOverflow {
            len: usize::from(len),
            page_len,
        });
    }
    Ok(())
}

/// Checks a whole record (encoding byte, delta length, delta) and applies the delta to
/// `page`: what QEMU's loader does with an XBZRLE record.
pub fn decode_record(encoding: u8, delta: &[u8], page: &mut [u8]) -> Result<(), XbzrleError> {
    let len = u16::try_from(delta.len()).map_err(|_| XbzrleError::LengthOverflow {
        len: delta.len(),
        page_len: page.len(),
    })?;
    check_record_header(encoding, len, page.len())?;
    decode(delta, page)
}
