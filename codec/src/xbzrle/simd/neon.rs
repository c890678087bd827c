//! The aarch64 kernels: NEON (Advanced SIMD) intrinsics.
//!
//! NEON is baseline on aarch64, but the functions still carry `#[target_feature]` and are
//! called only after the dispatcher (`super`) has checked the feature, as on x86-64. They read
//! whole 16-byte pieces of chunks obtained from `chunks_exact`, so every load is in bounds;
//! `vld1q_u8` has no alignment requirement.

use core::arch::aarch64::*;

/// Bit `k % 8` in lane `k`: ANDed with a compare result (lanes 0 or 0xff), each lane keeps
/// its own bit, so adding up 8 neighbouring lanes gives their byte of the mask.
const LANE_BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// The 64-bit mask of four 16-byte compare results (lanes 0 or 0xff) covering bytes 0..64:
/// bit `k` set when lane `k % 16` of result `k / 16` is set.
#[inline]
#[target_feature(enable = "neon")]
fn movemask64(c0: uint8x16_t, c1: uint8x16_t, c2: uint8x16_t, c3: uint8x16_t) -> u64 {
    // SAFETY: `LANE_BITS` is 16 readable bytes.
    let bits = unsafe { vld1q_u8(LANE_BITS.as_ptr()) };
    let (t0, t1, t2, t3) = (
        vandq_u8(c0, bits),
        vandq_u8(c1, bits),
        vandq_u8(c2, bits),
        vandq_u8(c3, bits),
    );
    // Pairwise adds: sums of 2 lanes ([t0 | t1], [t2 | t3]), of 4 ([t0 | t1 | t2 | t3]),
    // then of 8: bytes 0..8 are the masks of bytes 0..8, 8..16, ... 56..64 in order, which
    // read as a little-endian u64 put byte `k`'s bit at bit `k`.
    let s01 = vpaddq_u8(t0, t1);
    let s23 = vpaddq_u8(t2, t3);
    let s = vpaddq_u8(s01, s23);
    let s = vpaddq_u8(s, s);
    vgetq_lane_u64::<0>(vreinterpretq_u64_u8(s))
}

/// NEON `eq_masks`: for each full 64-byte chunk (up to `masks.len()`), bit `k` set when byte
/// `k` is equal in `old` and `new`. Returns the number of chunks done.
#[target_feature(enable = "neon")]
pub(super) fn eq_masks(old: &[u8], new: &[u8], masks: &mut [u64]) -> usize {
    let mut done = 0;
    for ((o, n), m) in old
        .chunks_exact(64)
        .zip(new.chunks_exact(64))
        .zip(masks.iter_mut())
    {
        // SAFETY: `o` and `n` are exactly 64 readable bytes, so all four 16-byte quarters are
        // in bounds; `vld1q_u8` has no alignment requirement.
        let (a0, a1, a2, a3, b0, b1, b2, b3) = unsafe {
            let (po, pn) = (o.as_ptr(), n.as_ptr());
            (
                vld1q_u8(po),
                vld1q_u8(po.add(16)),
                vld1q_u8(po.add(32)),
                vld1q_u8(po.add(48)),
                vld1q_u8(pn),
                vld1q_u8(pn.add(16)),
                vld1q_u8(pn.add(32)),
                vld1q_u8(pn.add(48)),
            )
        };
        *m = movemask64(
            vceqq_u8(a0, b0),
            vceqq_u8(a1, b1),
            vceqq_u8(a2, b2),
            vceqq_u8(a3, b3),
        );
        done += 1;
    }
    done
}

/// The OR of the four 16-byte quarters of the 64 bytes at `p`.
///
/// # Safety
///
/// `p` must point to 64 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn or64(p: *const u8) -> uint8x16_t {
    // SAFETY: the caller guarantees 64 readable bytes at `p`.
    unsafe {
        vorrq_u8(
            vorrq_u8(vld1q_u8(p), vld1q_u8(p.add(16))),
            vorrq_u8(vld1q_u8(p.add(32)), vld1q_u8(p.add(48))),
        )
    }
}

/// NEON `chunks_are_zero`: whether every full 64-byte chunk of `buf` is zero, 128 bytes per
/// step, stopping at the first non-zero step.
#[target_feature(enable = "neon")]
pub(super) fn chunks_are_zero(buf: &[u8]) -> bool {
    let mut pairs = buf.chunks_exact(128);
    for q in &mut pairs {
        // SAFETY: `q` is exactly 128 readable bytes: two 64-byte halves.
        let v = unsafe { vorrq_u8(or64(q.as_ptr()), or64(q.as_ptr().add(64))) };
        if vmaxvq_u8(v) != 0 {
            return false;
        }
    }
    for c in pairs.remainder().chunks_exact(64) {
        // SAFETY: `c` is exactly 64 readable bytes.
        let v = unsafe { or64(c.as_ptr()) };
        if vmaxvq_u8(v) != 0 {
            return false;
        }
    }
    true
}
