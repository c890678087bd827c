//! Known vectors, rejection vectors and cross-kernel property tests.

use super::*;
use proptest::prelude::*;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use ramstream_spec::xbzrle::ULEB128_MAX;

/// Encodes with every available kernel, checks they agree, returns the delta (or the
/// outcome) of the naive reference.
fn encode_all(old: &[u8], new: &[u8], room: usize) -> (Encoded, Vec<u8>) {
    let mut reference = vec![0u8; room];
    let want = encode_with(Kernel::Naive, old, new, &mut reference).unwrap();
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let mut out = vec![0u8; room];
        let got = encode_with(kernel, old, new, &mut out).unwrap();
        assert_eq!(got, want, "{kernel:?} outcome");
        if let Encoded::Delta(len) = want {
            assert_eq!(out[..len], reference[..len], "{kernel:?} bytes");
        }
    }
    let mut out = vec![0u8; room];
    assert_eq!(encode(old, new, &mut out).unwrap(), want);
    let len = match want {
        Encoded::Delta(len) => len,
        _ => 0,
    };
    reference.truncate(len);
    (want, reference)
}

fn docs_vector() -> (Vec<u8>, Vec<u8>) {
    let mut old = vec![0u8; 1001];
    old.extend(0x05..=0x13u8);
    old.extend([0x68, 0x00, 0x00, 0x6b, 0x00, 0x6d]);
    old.extend(vec![0u8; 3074]);
    let mut new = vec![0u8; 1001];
    new.extend(0x01..=0x0fu8);
    new.extend([0x68, 0x00, 0x00, 0x67, 0x00, 0x69]);
    new.extend(vec![0u8; 3074]);
    assert_eq!(old.len(), PAGE);
    (old, new)
}

#[test]
fn docs_xbzrle_txt_vector() {
    let (old, new) = docs_vector();
    let (enc, delta) = encode_all(&old, &new, PAGE);
    assert_eq!(enc, Encoded::Delta(24));
    assert_eq!(
        delta,
        [
            0xe9, 0x07, 0x0f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
            0x0c, 0x0d, 0x0e, 0x0f, 0x03, 0x01, 0x67, 0x01, 0x01, 0x69
        ]
    );
    let mut page = old.clone();
    decode(&delta, &mut page).unwrap();
    assert_eq!(page, new);
}

#[test]
fn last_byte_changed() {
    let old = vec![0u8; PAGE];
    let mut new = old.clone();
    new[PAGE - 1] = 1;
    assert_eq!(
        encode_all(&old, &new, PAGE),
        (Encoded::Delta(4), vec![0xff, 0x1f, 0x01, 0x01])
    );
}

#[test]
fn first_byte_changed_gives_zero_first_run() {
    let old = vec![0u8; PAGE];
    let mut new = old.clone();
    new[0] = 7;
    assert_eq!(
        encode_all(&old, &new, PAGE),
        (Encoded::Delta(3), vec![0x00, 0x01, 0x07])
    );
}

#[test]
fn unchanged_and_empty() {
    let page = vec![0x5au8; PAGE];
    assert_eq!(encode_all(&page, &page, PAGE).0, Encoded::Unchanged);
    assert_eq!(encode_all(&[], &[], PAGE).0, Encoded::Unchanged);
    assert_eq!(encode_all(&[], &[], 0).0, Encoded::Unchanged);
}

/// QEMU's tests/unit/test-xbzrle.c overflow case: every other byte changed (half of the
/// page's bytes), 3 delta bytes per changed byte.
#[test]
fn alternating_change_overflows() {
    let old = vec![0u8; PAGE];
    let mut new = old.clone();
    for i in 0..PAGE / 2 - 1 {
        new[i * 2] = 1;
    }
    assert_eq!(encode_all(&old, &new, PAGE).0, Encoded::Overflow);
    // Over only the first half of the page it still fits: 1024 pairs of 3 bytes.
    let mut new = old.clone();
    for i in (0..PAGE / 2).step_by(2) {
        new[i] = 1;
    }
    assert_eq!(encode_all(&old, &new, PAGE).0, Encoded::Delta(3 * 1024));
}

#[test]
fn fully_changed_page_overflows() {
    let old = vec![0u8; PAGE];
    let new = vec![1u8; PAGE];
    assert_eq!(encode_all(&old, &new, PAGE).0, Encoded::Overflow);
    // `00 80 20` + 4096 literal bytes: 4099 bytes of room is exactly enough.
    assert_eq!(encode_all(&old, &new, PAGE + 3).0, Encoded::Delta(PAGE + 3));
    assert_eq!(encode_all(&old, &new, PAGE + 2).0, Encoded::Overflow);
}

/// Under aarch64 (natively or in `qemu-aarch64`) `encode` uses the NEON kernel, so the
/// cross-kernel tests here compare it with the portable ones.
#[cfg(target_arch = "aarch64")]
#[test]
fn aarch64_detects_neon() {
    assert_eq!(Kernel::detect(), Kernel::Neon);
    assert!(Kernel::Neon.is_available());
    assert!(!Kernel::Avx2.is_available() && !Kernel::Avx512.is_available());
}

#[test]
fn every_kernel_is_listed_once() {
    for (i, k) in Kernel::ALL.into_iter().enumerate() {
        assert!(!Kernel::ALL[..i].contains(&k), "{k:?} twice");
    }
    assert!(Kernel::ALL.contains(&Kernel::detect()));
}

#[test]
fn mismatched_lengths_are_an_error() {
    let mut out = [0u8; 16];
    assert_eq!(
        encode(&[0; 8], &[0; 9], &mut out),
        Err(EncodeError::LengthMismatch { old: 8, new: 9 })
    );
}

/// QEMU checks for 2 bytes of room before scanning the next zero run, so a delta one byte
/// short of the buffer overflows even when the rest of the page is unchanged.
#[test]
fn overflow_margin_follows_qemu_order_of_checks() {
    let old = vec![0u8; 64];
    let mut new = old.clone();
    new[0] = 1; // delta: 00 01 01 = 3 bytes, then only equal bytes follow
    assert_eq!(encode_all(&old, &new, 5).0, Encoded::Delta(3));
    assert_eq!(encode_all(&old, &new, 4).0, Encoded::Overflow);
    assert_eq!(encode_all(&old, &new, 3).0, Encoded::Overflow);
    // A change at the very end: no check after the last literal run.
    let mut new = old.clone();
    new[63] = 1; // delta: 3f 01 01
    assert_eq!(encode_all(&old, &new, 3).0, Encoded::Delta(3));
    assert_eq!(encode_all(&old, &new, 2).0, Encoded::Overflow);
}

/// Long runs use two-byte lengths; runs past the ULEB128 limit cannot be encoded.
#[test]
fn long_runs_and_large_pages() {
    let old = vec![0u8; 5 * PAGE];
    let mut new = old.clone();
    new[300..500].fill(9);
    let (enc, delta) = encode_all(&old, &new, PAGE);
    assert_eq!(enc, Encoded::Delta(4 + 200));
    assert_eq!(delta[..4], [0xac, 0x02, 0xc8, 0x01]);
    let mut new = old.clone();
    new[ULEB128_MAX as usize] = 1; // zero run of exactly 16383
    assert_eq!(encode_all(&old, &new, PAGE).0, Encoded::Delta(4));
    let mut new = old.clone();
    new[ULEB128_MAX as usize + 1] = 1; // zero run of 16384
    assert_eq!(encode_all(&old, &new, PAGE).0, Encoded::Overflow);
}

#[test]
fn decode_rejection_vectors() {
    let mut page = vec![0u8; PAGE];
    let cases: &[(&[u8], XbzrleError)] = &[
        // The fact sheet's "zero nzrun" vector: QEMU rejects it at the 2-byte check first.
        (
            &[0x10, 0x00],
            XbzrleError::TruncatedLiteralRun {
                at: 1,
                remaining: 1,
            },
        ),
        (&[0x10, 0x00, 0x00], XbzrleError::EmptyLiteralRun { at: 1 }),
        (
            &[0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb],
            XbzrleError::EmptyZeroRun { at: 3 },
        ),
        (
            &[0xff, 0x1f, 0x02, 0xaa, 0xbb],
            XbzrleError::LiteralRunPastPage {
                at: 2,
                page_offset: 4095,
                run: 2,
                page_len: PAGE,
            },
        ),
        (
            &[0x10, 0x02, 0xaa, 0xbb, 0x05],
            XbzrleError::TruncatedZeroRun {
                at: 4,
                remaining: 1,
            },
        ),
        (
            &[0x05, 0x05],
            XbzrleError::TruncatedLiteralRun {
                at: 1,
                remaining: 1,
            },
        ),
        (
            &[0x05],
            XbzrleError::TruncatedZeroRun {
                at: 0,
                remaining: 1,
            },
        ),
        (
            &[0x80, 0x80, 0x01, 0x00],
            XbzrleError::BadRunLength { at: 0 },
        ),
        (
            &[0x01, 0x81, 0x80, 0x00],
            XbzrleError::BadRunLength { at: 1 },
        ),
        (
            &[0x81, 0x20, 0x01, 0x00],
            XbzrleError::ZeroRunPastPage {
                at: 0,
                page_offset: 0,
                run: 4097,
                page_len: PAGE,
            },
        ),
        (
            &[0x00, 0x03, 0xaa, 0xbb],
            XbzrleError::LiteralRunPastInput {
                at: 1,
                run: 3,
                remaining: 2,
            },
        ),
    ];
    for (delta, want) in cases {
        assert_eq!(validate(delta, PAGE), Err(*want), "{delta:02x?}");
        assert_eq!(decode(delta, &mut page), Err(*want), "{delta:02x?}");
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn decode_accepts_qemu_quirks() {
    let mut page = vec![0u8; PAGE];
    decode(&[0x00, 0x01, 0x99], &mut page).unwrap();
    assert_eq!(page[0], 0x99);
    decode(&[], &mut page).unwrap();
    // Non-minimal two-byte ULEB128 (0x90 0x00 = 16).
    decode(&[0x90, 0x00, 0x01, 0x42], &mut page).unwrap();
    assert_eq!(page[16], 0x42);
    // A zero run exactly to the page end followed by nothing is fine only as the last pair:
    // here it is followed by a literal run, which must fail.
    assert!(decode(&[0x80, 0x20, 0x01, 0x01], &mut page).is_err());
    // Zero run ending exactly at the page end, then a literal run: past page.
    decode(&[0xff, 0x1f, 0x01, 0x77], &mut page).unwrap();
    assert_eq!(page[4095], 0x77);
}

#[test]
fn record_header_checks() {
    assert_eq!(check_record_header(0x01, 4096, PAGE), Ok(()));
    assert_eq!(
        check_record_header(0x02, 4, PAGE),
        Err(XbzrleError::WrongEncoding { found: 2 })
    );
    assert_eq!(
        check_record_header(0x01, 4097, PAGE),
        Err(XbzrleError::LengthOverflow {
            len: 4097,
            page_len: PAGE
        })
    );
    let mut page = vec![0u8; PAGE];
    decode_record(0x01, &[0x00, 0x01, 0x99], &mut page).unwrap();
    assert_eq!(page[0], 0x99);
    assert_eq!(
        decode_record(0x00, &[], &mut page),
        Err(XbzrleError::WrongEncoding { found: 0 })
    );
}

/// A page pair: the old page and a list of edits (offset, length, byte seed).
fn page_pair(len: usize) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let old = prop_oneof![
        Just(vec![0u8; len]),
        proptest::collection::vec(any::<u8>(), len),
    ];
    let edits =
        prop_oneof![
            // identical
            Just(Vec::new()),
            // a few runs, some crossing 32/64-byte boundaries, some long (128+)
            proptest::collection::vec((0..len, 1usize..300, any::<u8>()), 1..6),
            // scattered single bytes
            proptest::collection::vec((0..len, Just(1usize), any::<u8>()), 1..400),
            // runs straddling chunk boundaries exactly
            proptest::collection::vec(
                ((0..len / 32).prop_map(|c| c * 32), 1usize..70, any::<u8>())
                    .prop_map(|(c, l, b)| (c.saturating_sub(l / 2), l, b)),
                1..20
            ),
        ];
    (old, edits, any::<bool>()).prop_map(move |(old, edits, fully_random)| {
        let mut new = old.clone();
        if fully_random && edits.is_empty() {
            for (i, b) in new.iter_mut().enumerate() {
                *b = b.wrapping_add(1 + (i % 7) as u8);
            }
        }
        for (at, run, seed) in edits {
            let end = (at + run).min(len);
            for (k, b) in new[at..end].iter_mut().enumerate() {
                // Differs from old unless the seed makes it land on the same value.
                *b = b.wrapping_add(seed.wrapping_add(k as u8) | 1);
            }
        }
        (old, new)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn kernels_agree_and_round_trip((old, new) in page_pair(PAGE)) {
        let (enc, delta) = encode_all(&old, &new, PAGE);
        match enc {
            Encoded::Unchanged => prop_assert_eq!(&old, &new),
            Encoded::Delta(len) => {
                prop_assert!(len <= PAGE);
                let mut page = old.clone();
                decode(&delta, &mut page).unwrap();
                prop_assert_eq!(page, new);
            }
            Encoded::Overflow => {
                // With unlimited room the delta exists and is longer than a page, or hits the
                // QEMU room checks at the margin.
                let (big, delta) = encode_all(&old, &new, 3 * PAGE);
                let Encoded::Delta(len) = big else { panic!("{big:?}") };
                prop_assert!(len + 2 > PAGE);
                let mut page = old.clone();
                decode(&delta, &mut page).unwrap();
                prop_assert_eq!(page, new);
            }
        }
    }

    #[test]
    fn odd_lengths_and_small_rooms(
        len in 0usize..300,
        room in 0usize..320,
        seed in any::<u64>(),
        density in 0u32..8,
    ) {
        let mut state = seed | 1;
        let mut next = move || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state };
        let old: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let new: Vec<u8> = old.iter().map(|&b| if next() % 8 < u64::from(density) { b ^ 0x5a } else { b }).collect();
        let (enc, delta) = encode_all(&old, &new, room);
        if let Encoded::Delta(_) = enc {
            let mut page = old.clone();
            decode(&delta, &mut page).unwrap();
            prop_assert_eq!(page, new);
        }
    }

    #[test]
    fn decode_never_panics_and_validate_agrees(delta in proptest::collection::vec(any::<u8>(), 0..64), page_len in 0usize..200) {
        let mut page = vec![0u8; page_len];
        prop_assert_eq!(validate(&delta, page_len), decode(&delta, &mut page));
    }
}
