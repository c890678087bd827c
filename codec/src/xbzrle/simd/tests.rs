//! Every available kernel against a byte-at-a-time reference.

use super::*;

/// xorshift64: deterministic bytes without a dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The reference masks: bit `k` of mask `c` set when byte `64 c + k` is equal.
fn reference_masks(old: &[u8], new: &[u8]) -> Vec<u64> {
    old.chunks_exact(64)
        .zip(new.chunks_exact(64))
        .map(|(o, n)| (0..64).fold(0u64, |m, k| m | u64::from(o[k] == n[k]) << k))
        .collect()
}

#[test]
fn eq_masks_match_the_reference() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..300 {
        // Lengths with partial chunks too, and every equality density.
        let len = 64 * (1 + round % 9) + round % 64;
        let old: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        let keep = xorshift(&mut state) % 9;
        let new: Vec<u8> = old
            .iter()
            .map(|&b| {
                if xorshift(&mut state) % 8 < keep {
                    b
                } else {
                    b.wrapping_add(1 + (xorshift(&mut state) % 255) as u8)
                }
            })
            .collect();
        let want = reference_masks(&old, &new);
        for isa in Isa::ALL {
            let mut masks = vec![0u64; want.len() + 1];
            match eq_masks(isa, &old, &new, &mut masks) {
                None => assert!(!isa.available(), "{isa:?}"),
                Some(done) => {
                    assert_eq!(done, want.len(), "{isa:?}, len {len}");
                    assert_eq!(masks[..done], want[..], "{isa:?}, len {len}");
                }
            }
            // Fewer masks than chunks: stops at the masks' end.
            let mut short = [0u64; 1];
            if let Some(done) = eq_masks(isa, &old, &new, &mut short) {
                assert_eq!((done, short[0]), (1, want[0]), "{isa:?}");
            }
        }
    }
}

#[test]
fn eq_masks_single_byte_positions() {
    let old = [0x5au8; 64];
    for k in 0..64 {
        let mut new = old;
        new[k] ^= 0x80;
        for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
            let mut masks = [0u64; 1];
            assert_eq!(eq_masks(isa, &old, &new, &mut masks), Some(1));
            assert_eq!(masks[0], !(1u64 << k), "{isa:?}, byte {k} differs");
            // Only byte k equal.
            let inverse: Vec<u8> = old.iter().map(|b| !b).collect();
            let mut only = inverse.clone();
            only[k] = old[k];
            assert_eq!(eq_masks(isa, &old, &only, &mut masks), Some(1));
            assert_eq!(masks[0], 1u64 << k, "{isa:?}, byte {k} equal");
        }
    }
}

#[test]
fn chunks_are_zero_matches_the_reference() {
    for len in [
        0usize,
        63,
        64,
        65,
        127,
        128,
        191,
        192,
        256,
        320,
        4096,
        4096 + 63,
    ] {
        let mut buf = vec![0u8; len];
        let full = len & !63;
        for isa in Isa::ALL {
            assert_eq!(
                chunks_are_zero(isa, &buf),
                isa.available().then_some(true),
                "{isa:?}, len {len}"
            );
        }
        for at in 0..len {
            buf[at] = 1 << (at % 8);
            let want = at >= full; // the tail is not looked at
            for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
                assert_eq!(
                    chunks_are_zero(isa, &buf),
                    Some(want),
                    "{isa:?}, len {len}, non-zero at {at}"
                );
            }
            if let Some(kernel) = zero_kernel() {
                assert_eq!(kernel(&buf), want, "zero_kernel, len {len}, at {at}");
            }
            buf[at] = 0;
        }
    }
}

#[test]
fn best_is_the_first_available() {
    assert_eq!(
        Isa::best(),
        Isa::ALL.into_iter().find(|isa| isa.available())
    );
    assert_eq!(zero_kernel().is_some(), Isa::best().is_some());
}

/// Under aarch64 (natively or in `qemu-aarch64`) the NEON kernels are the ones chosen.
#[cfg(target_arch = "aarch64")]
#[test]
fn aarch64_picks_neon() {
    assert!(Isa::Neon.available());
    assert_eq!(Isa::best(), Some(Isa::Neon));
    assert!(zero_kernel().is_some());
    assert!(!Isa::Avx2.available() && !Isa::Avx512.available());
}
