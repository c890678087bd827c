//! The XBZRLE encoder: QEMU 7.2's canonical output and its exact overflow decisions.
//!
//! All kernels share one run-walking loop ([`encode_runs`]) that mirrors the checks of QEMU's
//! scalar `xbzrle_encode_buffer`; they differ only in how they find run boundaries:
//!
//! * [`Kernel::Naive`]: one byte at a time (the reference, and the benchmark baseline);
//! * [`Kernel::Word`]: eight bytes at a time in plain Rust, building a 64-bit "equal" mask
//!   per 64-byte chunk;
//! * [`Kernel::Avx2`] / [`Kernel::Avx512`] / [`Kernel::Neon`]: the same masks from 32-, 64-
//!   or 16-byte vector compares.
//!
//! The mask kernels fill the masks of up to [`SEGMENT`] bytes at once (one call per 4 KiB
//! page) and the walker finds run ends with `trailing_zeros`.

use super::{simd, uleb, EncodeError, Encoded, Kernel};

/// Bytes whose equality masks are computed in one go.
const SEGMENT: usize = 4096;
/// 64-byte chunks per segment.
const SEGMENT_CHUNKS: usize = SEGMENT / 64;
/// The low seven bits of every byte of a word.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// Gathers bit 0 of byte `k` into bit `56 + k` (see [`word_eq_bits`]).
const GATHER: u64 = 0x0102_0408_1020_4080;

/// Encodes with the best kernel of this CPU. See [`super::encode`].
pub(super) fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Encoded, EncodeError> {
    encode_with(Kernel::detect(), old, new, out)
}

/// Encodes with `kernel` (falling back to [`Kernel::Word`] if this CPU lacks it).
pub(super) fn encode_with(
    kernel: Kernel,
    old: &[u8],
    new: &[u8],
    out: &mut [u8],
) -> Result<Encoded, EncodeError> {
    if old.len() != new.len() {
        return Err(EncodeError::LengthMismatch {
            old: old.len(),
            new: new.len(),
        });
    }
    Ok(match kernel {
        Kernel::Naive => encode_runs(&mut ByteRuns { old, new }, new, out),
        Kernel::Word => encode_runs(&mut MaskRuns::new(old, new, None), new, out),
        Kernel::Avx2 => encode_runs(
            &mut MaskRuns::new(old, new, Some(simd::Isa::Avx2)),
            new,
            out,
        ),
        Kernel::Avx512 => encode_runs(
            &mut MaskRuns::new(old, new, Some(simd::Isa::Avx512)),
            new,
            out,
        ),
        Kernel::Neon => encode_runs(
            &mut MaskRuns::new(old, new, Some(simd::Isa::Neon)),
            new,
            out,
        ),
    })
}

/// Finds run boundaries between two equally long slices.
trait RunFinder {
    /// The first index `>= from` where the slices differ, or their length.
    fn next_diff(&mut self, from: usize) -> usize;
    /// The first index `>= from` where the slices are equal, or their length.
    fn next_equal(&mut self, from: usize) -> usize;
}

/// The shared encoding loop. Its checks are QEMU's, in QEMU's order:
/// before each pair at least 2 bytes of room (checked *before* scanning the zero run, so a
/// page whose output is 1 byte short of full overflows even if only equal bytes follow);
/// after the zero-run length again 2 bytes of room; after the literal-run length, room for
/// the literal bytes. Runs longer than
/// [`ULEB128_MAX`](ramstream_spec::xbzrle::ULEB128_MAX) (only possible for pages larger than
/// 16 KiB, where QEMU would abort on an assertion) are reported as overflow.
#[inline(always)]
fn encode_runs<R: RunFinder>(runs: &mut R, new: &[u8], out: &mut [u8]) -> Encoded {
    let n = new.len();
    let room = out.len();
    let mut i = 0;
    let mut d = 0;
    while i < n {
        if d + 2 > room {
            return Encoded::Overflow;
        }
        let start = runs.next_diff(i);
        if start == n {
            // The trailing equal run is not sent; a page without any change gives nothing.
            return if i == 0 {
                Encoded::Unchanged
            } else {
                Encoded::Delta(d)
            };
        }
        let Some(w) = uleb::put(&mut out[d..], start - i) else {
            return Encoded::Overflow;
        };
        d += w;
        if d + 2 > room {
            return Encoded::Overflow;
        }
        let end = runs.next_equal(start);
        let len = end - start;
        let Some(w) = uleb::put(&mut out[d..], len) else {
            return Encoded::Overflow;
        };
        d += w;
        if d + len > room {
            return Encoded::Overflow;
        }
        copy_literal(&mut out[d..], &new[start..], len);
        d += len;
        i = end;
    }
    if d == 0 {
        Encoded::Unchanged
    } else {
        Encoded::Delta(d)
    }
}

/// Copies `src[..len]` to `dst[..len]` (both at least `len` long). Short runs, the common
/// case for scattered changes, are copied as one fixed 16-byte move when both slices have
/// 16 bytes (bytes past `len` in `dst` are scratch: later pairs overwrite them, and nothing
/// past the returned length is part of the delta).
#[inline(always)]
fn copy_literal(dst: &mut [u8], src: &[u8], len: usize) {
    if len <= 16 {
        if let (Some(d), Some(s)) = (dst.get_mut(..16), src.get(..16)) {
            d.copy_from_slice(s);
            return;
        }
    }
    if let (Some(d), Some(s)) = (dst.get_mut(..len), src.get(..len)) {
        d.copy_from_slice(s);
    }
}

/// The naive reference: compares one byte at a time.
struct ByteRuns<'a> {
    old: &'a [u8],
    new: &'a [u8],
}

impl RunFinder for ByteRuns<'_> {
    #[inline(always)]
    fn next_diff(&mut self, from: usize) -> usize {
        let mut i = from;
        while i < self.new.len() && self.old[i] == self.new[i] {
            i += 1;
        }
        i
    }

    #[inline(always)]
    fn next_equal(&mut self, from: usize) -> usize {
        let mut i = from;
        while i < self.new.len() && self.old[i] != self.new[i] {
            i += 1;
        }
        i
    }
}

/// Run finding over per-chunk equality masks (bit `k` of `masks[c]` set when byte
/// `64 c + k` of the current segment is equal in both slices; bits past the end are 0).
struct MaskRuns<'a> {
    old: &'a [u8],
    new: &'a [u8],
    isa: Option<simd::Isa>,
    /// Start of the segment whose masks are loaded, or `usize::MAX`.
    segment: usize,
    masks: [u64; SEGMENT_CHUNKS],
}

impl<'a> MaskRuns<'a> {
    fn new(old: &'a [u8], new: &'a [u8], isa: Option<simd::Isa>) -> Self {
        MaskRuns {
            old,
            new,
            isa,
            segment: usize::MAX,
            masks: [0; SEGMENT_CHUNKS],
        }
    }

    /// The equality mask of the 64-byte chunk holding `pos` (`pos < len`).
    #[inline(always)]
    fn mask_at(&mut self, pos: usize) -> u64 {
        let segment = pos & !(SEGMENT - 1);
        if segment != self.segment {
            self.load(segment);
        }
        self.masks[(pos - segment) / 64]
    }

    #[cold]
    #[inline(never)]
    fn load(&mut self, segment: usize) {
        let end = self.new.len().min(segment + SEGMENT);
        let old = &self.old[segment..end];
        let new = &self.new[segment..end];
        let done = self
            .isa
            .and_then(|isa| simd::eq_masks(isa, old, new, &mut self.masks))
            .unwrap_or(0);
        fill_masks_portable(
            &old[done * 64..],
            &new[done * 64..],
            &mut self.masks[done..],
        );
        self.segment = segment;
    }
}

impl RunFinder for MaskRuns<'_> {
    #[inline(always)]
    fn next_diff(&mut self, from: usize) -> usize {
        let n = self.new.len();
        let mut pos = from;
        while pos < n {
            let diff = !self.mask_at(pos) >> (pos % 64);
            if diff != 0 {
                return n.min(pos + diff.trailing_zeros() as usize);
            }
            pos = (pos | 63) + 1;
        }
        n
    }

    #[inline(always)]
    fn next_equal(&mut self, from: usize) -> usize {
        let n = self.new.len();
        let mut pos = from;
        while pos < n {
            let equal = self.mask_at(pos) >> (pos % 64);
            if equal != 0 {
                return n.min(pos + equal.trailing_zeros() as usize);
            }
            pos = (pos | 63) + 1;
        }
        n
    }
}

/// Portable mask fill: eight bytes at a time for full chunks, bytewise for a partial tail.
fn fill_masks_portable(old: &[u8], new: &[u8], masks: &mut [u64]) {
    let mut chunks = old.chunks(64).zip(new.chunks(64));
    for (m, (o, n)) in masks.iter_mut().zip(&mut chunks) {
        *m = if o == n {
            u64::MAX >> (64 - o.len())
        } else if o.len() == 64 {
            o.chunks_exact(8)
                .zip(n.chunks_exact(8))
                .enumerate()
                .fold(0, |acc, (k, (a, b))| acc | word_eq_bits(a, b) << (8 * k))
        } else {
            o.iter()
                .zip(n)
                .enumerate()
                .fold(0, |acc, (k, (a, b))| acc | u64::from(a == b) << k)
        };
    }
}

/// Bit `k` (0..8) set when byte `k` of the two 8-byte words is equal.
#[inline(always)]
fn word_eq_bits(a: &[u8], b: &[u8]) -> u64 {
    let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
        return 0;
    };
    let x = u64::from_le_bytes(a) ^ u64::from_le_bytes(b);
    // 0x80 exactly in the bytes of `x` that are zero (no carries between bytes).
    let zero_bytes = !(((x & LOW7) + LOW7) | x | LOW7);
    if zero_bytes == 0 {
        return 0;
    }
    // Bytes hold 0 or 1 after the shift; the multiply moves byte k's bit to bit 56 + k
    // without carries (all other partial products land on distinct bits or overflow).
    (zero_bytes >> 7).wrapping_mul(GATHER) >> 56
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_eq_bits_matches_bytes() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let a = state.to_le_bytes();
            let sel = (state >> 3) as u8;
            let mut b = a;
            for (k, byte) in b.iter_mut().enumerate() {
                if sel & (1 << k) == 0 {
                    *byte = byte.wrapping_add(1 + (k as u8));
                }
            }
            let want = (0..8).fold(0u64, |m, k| m | u64::from(a[k] == b[k]) << k);
            assert_eq!(word_eq_bits(&a, &b), want, "{a:?} {b:?}");
        }
    }
}
