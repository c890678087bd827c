//! The crate's only `unsafe` code: vector kernels behind runtime feature detection, AVX2 and
//! AVX-512BW on x86-64 (`x86.rs`), NEON on aarch64 (`neon.rs`); this file dispatches.
//!
//! Every public-to-the-crate function here is safe: it re-checks the CPU feature it needs
//! (a cached atomic load inside `std`) and returns `None` when the feature is missing, so the
//! caller falls back to the portable code. The kernels only ever read whole 16-, 32- or
//! 64-byte pieces of chunks obtained from `chunks_exact`, so every load is in bounds; tails
//! are left to the portable caller.
#![allow(unsafe_code)]

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

/// A vector instruction set the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F + AVX-512BW: 64-byte compares straight into a mask register (x86-64).
    Avx512,
    /// AVX2: 32-byte compares and `vpmovmskb` (x86-64).
    Avx2,
    /// NEON (Advanced SIMD): 16-byte compares, masks gathered by pairwise adds (aarch64).
    Neon,
}

impl Isa {
    /// Every instruction set, widest first, whether or not this CPU has it.
    pub(crate) const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Neon];

    /// Whether this CPU supports `self` (never true for another architecture's set).
    #[inline]
    pub(crate) fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            // Baseline on aarch64, checked anyway so every set goes through the same test.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false,
        }
    }

    /// The widest instruction set this CPU supports, if any.
    #[inline]
    pub(crate) fn best() -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.available())
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
    match isa {
        // SAFETY: `available()` just confirmed AVX-512F and AVX-512BW on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(unsafe { x86::eq_masks_avx512(old, new, masks) }),
        // SAFETY: `available()` just confirmed AVX2 on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(unsafe { x86::eq_masks_avx2(old, new, masks) }),
        // SAFETY: `available()` just confirmed NEON on this CPU.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => Some(unsafe { neon::eq_masks(old, new, masks) }),
        _ => {
            let _ = (old, new, masks);
            None
        }
    }
}

/// Whether every full 64-byte chunk of `buf` is zero (the tail after the last full chunk is
/// not looked at). `None` when `isa` is not available on this CPU.
#[inline]
pub(crate) fn chunks_are_zero(isa: Isa, buf: &[u8]) -> Option<bool> {
    if !isa.available() {
        return None;
    }
    match isa {
        // SAFETY: `available()` just confirmed AVX-512F and AVX-512BW on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(unsafe { x86::chunks_are_zero_avx512(buf) }),
        // SAFETY: `available()` just confirmed AVX2 on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(unsafe { x86::chunks_are_zero_avx2(buf) }),
        // SAFETY: `available()` just confirmed NEON on this CPU.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => Some(unsafe { neon::chunks_are_zero(buf) }),
        _ => {
            let _ = buf;
            None
        }
    }
}

/// The zero-chunk test of this CPU's widest instruction set, chosen once per process
/// (later calls are one atomic load): a function testing every full 64-byte chunk of a
/// buffer, as [`chunks_are_zero`]; `None` without AVX2, AVX-512BW or NEON.
#[inline]
pub(crate) fn zero_kernel() -> Option<ZeroKernel> {
    static KERNEL: std::sync::OnceLock<Option<ZeroKernel>> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| match Isa::best()? {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(zero_avx512 as ZeroKernel),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(zero_avx2 as ZeroKernel),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => Some(zero_neon as ZeroKernel),
        _ => None,
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

/// NEON [`chunks_are_zero`]; handed out only by [`zero_kernel`] after [`Isa::available`]
/// confirmed NEON.
#[cfg(target_arch = "aarch64")]
fn zero_neon(buf: &[u8]) -> bool {
    // SAFETY: only reached through `zero_kernel`, which picked it because `Isa::best()`
    // found NEON on this CPU.
    unsafe { neon::chunks_are_zero(buf) }
}
