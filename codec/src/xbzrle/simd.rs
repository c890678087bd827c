//! The crate's only `unsafe` code: x86-64 AVX2 / AVX-512BW kernels behind runtime feature
//! detection.
//!
//! Every public-to-the-crate function here is safe: it re-checks the CPU feature it needs
//! (a cached atomic load inside `std`) and returns `None` when the feature is missing, so the
//! caller falls back to the portable code. The kernels only ever read whole 32- or 64-byte
//! chunks obtained from `chunks_exact`, so every load is in bounds; tails are left to the
//! portable caller.
#![allow(unsafe_code)]

/// A vector instruction set the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F + AVX-512BW: 64-byte compares straight into a mask register.
    Avx512,
    /// AVX2: 32-byte compares and `vpmovmskb`.
    Avx2,
}

impl Isa {
    /// Whether this CPU supports `self`.
    #[inline]
    pub(crate) fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => {
                    std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512bw")
                }
                Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }

    /// The widest instruction set this CPU supports, if any.
    #[inline]
    pub(crate) fn best() -> Option<Isa> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.available())
    }
}

/// For each full 64-byte chunk of `old`/`new` (up to `masks.len()` chunks), stores a mask with
/// bit `k` set when byte `k` of the chunk is equal in both. Returns the number of chunks done,
/// or `None` when `isa` is not available on this CPU.
#[inline]
pub(crate) fn eq_masks(isa: Isa, old: &[u8], new: &[u8], masks: &mut [u64]) -> Option<usize> {
    if !isa.available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            // SAFETY: `available()` just confirmed AVX-512F and AVX-512BW on this CPU.
            Isa::Avx512 => Some(unsafe { x86::eq_masks_avx512(old, new, masks) }),
            // SAFETY: `available()` just confirmed AVX2 on this CPU.
            Isa::Avx2 => Some(unsafe { x86::eq_masks_avx2(old, new, masks) }),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (old, new, masks);
        None
    }
}

/// Whether every full 64-byte chunk of `buf` is zero (the tail after the last full chunk is
/// not looked at). `None` when `isa` is not available on this CPU.
#[inline]
pub(crate) fn chunks_are_zero(isa: Isa, buf: &[u8]) -> Option<bool> {
    if !isa.available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            // SAFETY: `available()` just confirmed AVX-512F and AVX-512BW on this CPU.
            Isa::Avx512 => Some(unsafe { x86::chunks_are_zero_avx512(buf) }),
            // SAFETY: `available()` just confirmed AVX2 on this CPU.
            Isa::Avx2 => Some(unsafe { x86::chunks_are_zero_avx2(buf) }),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = buf;
        None
    }
}

/// The zero-chunk test of this CPU's widest instruction set, chosen once per process
/// (later calls are one atomic load): a function testing every full 64-byte chunk of a
/// buffer, as [`chunks_are_zero`]; `None` without AVX2 or AVX-512BW.
#[inline]
pub(crate) fn zero_kernel() -> Option<ZeroKernel> {
    static KERNEL: std::sync::OnceLock<Option<ZeroKernel>> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| match Isa::best()? {
        Isa::Avx512 => Some(zero_avx512 as ZeroKernel),
        Isa::Avx2 => Some(zero_avx2 as ZeroKernel),
    })
}

/// A zero-chunk test: whether every full 64-byte chunk of the buffer is zero.
pub(crate) type ZeroKernel = fn(&[u8]) -> bool;

/// AVX-512 [`chunks_are_zero`]; handed out only by [`zero_kernel`] after
/// [`Isa::available`] confirmed AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
fn zero_avx512(buf: &[u8]) -> bool {
    // SAFETY: only reached through `zero_kernel`, which picked it because `Isa::best()`
    // found AVX-512F and AVX-512BW on this CPU.
    unsafe { x86::chunks_are_zero_avx512(buf) }
}

/// AVX2 [`chunks_are_zero`]; handed out only by [`zero_kernel`] after [`Isa::available`]
/// confirmed AVX2.
#[cfg(target_arch = "x86_64")]
fn zero_avx2(buf: &[u8]) -> bool {
    // SAFETY: only reached through `zero_kernel`, which picked it because `Isa::best()`
    // found AVX2 on this CPU.
    unsafe { x86::chunks_are_zero_avx2(buf) }
}

/// Without x86-64 there is no kernel; never handed out (`Isa::best()` is `None`).
#[cfg(not(target_arch = "x86_64"))]
fn zero_avx512(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == 0)
}

/// Without x86-64 there is no kernel; never handed out (`Isa::best()` is `None`).
#[cfg(not(target_arch = "x86_64"))]
fn zero_avx2(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == 0)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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
}
