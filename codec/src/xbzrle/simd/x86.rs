//! The x86-64 kernels: AVX-512BW and AVX2 intrinsics.
//!
//! Each function is compiled with its target features enabled and may only be called once
//! the dispatcher (`super`) has confirmed them on this CPU. They read whole 32- or 64-byte
//! pieces of chunks obtained from `chunks_exact`, so every load is in bounds.

use std::arch::x86_64::*;

#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn eq_masks_avx512(old: &[u8], new: &[u8], masks: &mut [u64]) -> usize {
    let mut done = 0;
    for ((o, n), m) in old
        .chunks_exact(64)
        .zip(new.chunks_exact(64))
        .zip(masks.iter_mut())
    {
        // SAFETY: `o` and `n` are exactly 64 readable bytes; `loadu` has no alignment
        // requirement.
        let (a, b) = unsafe {
            (
                _mm512_loadu_si512(o.as_ptr().cast()),
                _mm512_loadu_si512(n.as_ptr().cast()),
            )
        };
        *m = _mm512_cmpeq_epi8_mask(a, b);
        done += 1;
    }
    done
}

#[target_feature(enable = "avx2")]
pub(super) fn eq_masks_avx2(old: &[u8], new: &[u8], masks: &mut [u64]) -> usize {
    let mut done = 0;
    for ((o, n), m) in old
        .chunks_exact(64)
        .zip(new.chunks_exact(64))
        .zip(masks.iter_mut())
    {
        // SAFETY: `o` and `n` are exactly 64 readable bytes, so both 32-byte halves are in
        // bounds; `loadu` has no alignment requirement.
        let (a0, a1, b0, b1) = unsafe {
            (
                _mm256_loadu_si256(o.as_ptr().cast()),
                _mm256_loadu_si256(o.as_ptr().add(32).cast()),
                _mm256_loadu_si256(n.as_ptr().cast()),
                _mm256_loadu_si256(n.as_ptr().add(32).cast()),
            )
        };
        let lo = _mm256_movemask_epi8(_mm256_cmpeq_epi8(a0, b0)) as u32;
        let hi = _mm256_movemask_epi8(_mm256_cmpeq_epi8(a1, b1)) as u32;
        *m = u64::from(lo) | (u64::from(hi) << 32);
        done += 1;
    }
    done
}

#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn chunks_are_zero_avx512(buf: &[u8]) -> bool {
    let mut quads = buf.chunks_exact(256);
    for q in &mut quads {
        // SAFETY: `q` is exactly 256 readable bytes: four unaligned 64-byte loads.
        let v = unsafe {
            let p = q.as_ptr();
            _mm512_or_si512(
                _mm512_or_si512(
                    _mm512_loadu_si512(p.cast()),
                    _mm512_loadu_si512(p.add(64).cast()),
                ),
                _mm512_or_si512(
                    _mm512_loadu_si512(p.add(128).cast()),
                    _mm512_loadu_si512(p.add(192).cast()),
                ),
            )
        };
        if _mm512_test_epi64_mask(v, v) != 0 {
            return false;
        }
    }
    for c in quads.remainder().chunks_exact(64) {
        // SAFETY: `c` is exactly 64 readable bytes.
        let v = unsafe { _mm512_loadu_si512(c.as_ptr().cast()) };
        if _mm512_test_epi64_mask(v, v) != 0 {
            return false;
        }
    }
    true
}

#[target_feature(enable = "avx2")]
pub(super) fn chunks_are_zero_avx2(buf: &[u8]) -> bool {
    let mut quads = buf.chunks_exact(128);
    for q in &mut quads {
        // SAFETY: `q` is exactly 128 readable bytes: four unaligned 32-byte loads.
        let v = unsafe {
            let p = q.as_ptr();
            _mm256_or_si256(
                _mm256_or_si256(
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.add(32).cast()),
                ),
                _mm256_or_si256(
                    _mm256_loadu_si256(p.add(64).cast()),
                    _mm256_loadu_si256(p.add(96).cast()),
                ),
            )
        };
        if _mm256_testz_si256(v, v) == 0 {
            return false;
        }
    }
    for c in quads.remainder().chunks_exact(64) {
        // SAFETY: `c` is exactly 64 readable bytes, two 32-byte loads.
        let v = unsafe {
            _mm256_or_si256(
                _mm256_loadu_si256(c.as_ptr().cast()),
                _mm256_loadu_si256(c.as_ptr().add(32).cast()),
            )
        };
        if _mm256_testz_si256(v, v) == 0 {
            return false;
        }
    }
    true
}
