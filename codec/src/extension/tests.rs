//! Round trips and negative tests of the extension sections (SPEC.md §13, §12.4).

use ramstream_spec::extension::{digest as ids, reference};
use ramstream_spec::limits::MAX_RAM_BLOCKS;
use ramstream_spec::stream::SectionType;
use sha2::{Digest, Sha256};

use super::digest::{
    chunked_block, digest_block, digest_chunk, merged_runs, BlockDigest, ChunkedSha256,
    DigestAlgorithm, DigestSection, SparseSha256,
};
use super::state::{decode_state_body, encode_state_body};
use super::{ExtensionError, ExtensionSection};
use crate::balloon::PageRun;
use crate::{DeviceSection, SectionHeader};

const PAGE: usize = ramstream_spec::ram::TARGET_PAGE_SIZE_X86;

/// The reference machine's two blocks (SPEC.md §13.2's example).
fn two_blocks() -> DigestSection {
    DigestSection {
        algorithm: DigestAlgorithm::Sha256Sparse,
        blocks: vec![
            BlockDigest {
                idstr: "pc.ram".into(),
                used_length: 4 << 20,
                sha256: [7; 32],
            },
            BlockDigest {
                idstr: "ram1".into(),
                used_length: 4 << 20,
                sha256: [0xa5; 32],
            },
        ],
    }
}

fn encode(d: &DigestSection) -> Vec<u8> {
    let mut v = Vec::new();
    d.encode(&mut v).unwrap();
    v
}

fn device<'a>(idstr: &'a str, version_id: u32, body: &'a [u8]) -> DeviceSection<'a> {
    DeviceSection {
        header: SectionHeader {
            section_type: SectionType::FULL,
            section_id: 4,
            idstr,
            instance_id: 0,
            version_id,
        },
        body_offset: 1000,
        body,
    }
}

#[test]
fn digest_body_round_trips_with_the_spec_length() {
    let d = two_blocks();
    let b = encode(&d);
    assert_eq!(b.len(), 98, "SPEC.md §13.2: 6 + 47 + 45");
    assert_eq!(d.encoded_len(), b.len());
    assert_eq!(&b[..6], &[1, 1, 0, 0, 0, 2]);
    assert_eq!(DigestSection::decode(&b), Ok(d.clone()));
    assert_eq!(encode(&DigestSection::decode(&b).unwrap()), b);
    let empty = DigestSection {
        algorithm: DigestAlgorithm::Sha256Chunked,
        blocks: vec![],
    };
    assert_eq!(DigestSection::decode(&encode(&empty)), Ok(empty));
}

#[test]
fn digest_body_truncated_at_every_offset_names_the_field() {
    let b = encode(&two_blocks());
    for cut in 0..b.len() {
        match DigestSection::decode(&b[..cut]) {
            Err(ExtensionError::Truncated {
                at,
                needed,
                available,
                ..
            }) => {
                assert!(
                    at <= cut && at + needed > cut,
                    "cut {cut}: at {at} needs {needed}"
                );
                assert_eq!(available, cut - at, "cut {cut}");
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    let e = DigestSection::decode(&b[..20]).unwrap_err();
    assert_eq!(
        e,
        ExtensionError::Truncated {
            field: "used length",
            at: 13,
            needed: 8,
            available: 7
        }
    );
    assert!(e.to_string().contains("used length at byte 13"), "{e}");
}

#[test]
fn digest_body_unknown_version_algorithm_and_trailing_bytes() {
    let b = encode(&two_blocks());
    let mut v = b.clone();
    v[0] = 2;
    assert_eq!(
        DigestSection::decode(&v),
        Err(ExtensionError::DigestVersion { found: 2 })
    );
    let mut a = b.clone();
    a[1] = 0;
    assert_eq!(
        DigestSection::decode(&a),
        Err(ExtensionError::DigestAlgorithm { found: 0 })
    );
    let mut long = b.clone();
    long.extend([0, 0]);
    assert_eq!(
        DigestSection::decode(&long),
        Err(ExtensionError::TrailingBytes { at: 98, count: 2 })
    );
    // One block fewer announced than present: the second entry is trailing.
    let mut fewer = b.clone();
    fewer[5] = 1;
    assert_eq!(
        DigestSection::decode(&fewer),
        Err(ExtensionError::TrailingBytes { at: 53, count: 45 })
    );
    let mut bad_name = b;
    bad_name[7] = 0xff;
    assert_eq!(
        DigestSection::decode(&bad_name),
        Err(ExtensionError::BlockIdstr { block: 0, at: 7 })
    );
}

#[test]
fn digest_block_count_is_limited_before_anything_is_allocated() {
    let mut b = vec![1, 1];
    b.extend(u32::MAX.to_be_bytes());
    assert_eq!(
        DigestSection::decode(&b),
        Err(ExtensionError::TooManyBlocks {
            count: u32::MAX,
            limit: MAX_RAM_BLOCKS
        })
    );
    // Within the limit but absent: truncated at the first entry, not allocated up front.
    let mut b = vec![1, 1];
    b.extend((MAX_RAM_BLOCKS as u32).to_be_bytes());
    assert!(matches!(
        DigestSection::decode(&b),
        Err(ExtensionError::Truncated { at: 6, .. })
    ));
}

#[test]
fn digest_encode_refuses_instead_of_truncating() {
    let mut d = two_blocks();
    d.blocks[1].idstr = "x".repeat(256);
    let mut out = Vec::new();
    assert_eq!(
        d.encode(&mut out),
        Err(ExtensionError::IdstrTooLong { block: 1, len: 256 })
    );
    assert!(out.is_empty(), "nothing written");
    d.blocks[1].idstr = "y".repeat(255);
    assert_eq!(DigestSection::decode(&encode(&d)), Ok(d));
}

#[test]
fn state_body_round_trip_and_length_mismatch() {
    let mut body = Vec::new();
    encode_state_body(b"abc", &mut body).unwrap();
    assert_eq!(body, b"\0\0\0\x03abc");
    assert_eq!(decode_state_body(&body), Ok(&b"abc"[..]));
    assert_eq!(
        decode_state_body(b"\0\0\0\x04abc"),
        Err(ExtensionError::StateLength {
            prefix: 4,
            available: 3
        })
    );
    assert_eq!(
        decode_state_body(b"\0\0\0\x02abc"),
        Err(ExtensionError::StateLength {
            prefix: 2,
            available: 3
        })
    );
    for cut in 0..4 {
        assert!(matches!(
            decode_state_body(&body[..cut]),
            Err(ExtensionError::Truncated {
                at: 0,
                needed: 4,
                ..
            })
        ));
    }
}

#[test]
fn from_device_classifies_and_checks_the_section_version() {
    let digest = encode(&two_blocks());
    let mut state = Vec::new();
    encode_state_body(b"RSVM", &mut state).unwrap();
    assert_eq!(
        ExtensionSection::from_device(&device(ids::DIGEST_SECTION_IDSTR, 1, &digest)),
        Ok(Some(ExtensionSection::Digest(two_blocks())))
    );
    assert_eq!(
        ExtensionSection::from_device(&device(reference::VM_SECTION_IDSTR, 1, &state)),
        Ok(Some(ExtensionSection::Vm(b"RSVM")))
    );
    for (idstr, want) in [
        (
            reference::VCPU_SECTION_IDSTR,
            ExtensionSection::Vcpu(b"RSVM"),
        ),
        (
            reference::LAYOUT_SECTION_IDSTR,
            ExtensionSection::MemoryLayout(b"RSVM"),
        ),
    ] {
        let got = ExtensionSection::from_device(&device(idstr, 1, &state)).unwrap();
        assert_eq!(got.as_ref().map(ExtensionSection::idstr), Some(idstr));
        assert_eq!(got, Some(want));
    }
    assert_eq!(
        ExtensionSection::from_device(&device("timer", 2, &state)),
        Ok(None)
    );
    assert_eq!(
        DigestSection::from_device(&device(reference::VM_SECTION_IDSTR, 1, &state)),
        Ok(None)
    );
    assert_eq!(
        DigestSection::from_device(&device(ids::DIGEST_SECTION_IDSTR, 2, &digest)),
        Err(ExtensionError::SectionVersion {
            idstr: ids::DIGEST_SECTION_IDSTR,
            found: 2,
            supported: 1
        })
    );
    assert!(matches!(
        ExtensionSection::from_device(&device(reference::VCPU_SECTION_IDSTR, 1, &digest)),
        Err(ExtensionError::StateLength { .. })
    ));
}

#[test]
fn digest_display_and_json_print_hex() {
    let d = two_blocks();
    let text = d.to_string();
    assert!(text.starts_with("ramstream/ram-digest: sha256-sparse, 2 blocks\n"));
    assert!(text.contains(&"07".repeat(32)) && text.contains(&"a5".repeat(32)));
    // The JSON form needs the `serde` feature (on in the workspace through test-support).
    #[cfg(feature = "serde")]
    {
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["blocks"][1]["sha256"], "a5".repeat(32));
        assert_eq!(json["blocks"][0]["idstr"], "pc.ram");
    }
}

/// A block of dense pages, for [`digest_block`].
fn reader(mem: &[u8]) -> impl FnMut(u64, &mut [u8]) -> Result<(), ()> + '_ {
    move |p, buf| {
        let at = p as usize * PAGE;
        buf.copy_from_slice(mem.get(at..at + PAGE).ok_or(())?);
        Ok(())
    }
}

#[test]
fn sparse_digest_is_the_spec_formula() {
    // An all-zero block is sha256 of nothing (SPEC.md §13.2).
    let empty: [u8; 32] = Sha256::digest([]).into();
    let zero = vec![0u8; 8 * PAGE];
    assert_eq!(digest_block(8, PAGE, &[], reader(&zero)), Ok(empty));
    // Pages 2 and 5 hold data: sha256(be64 2 ‖ page 2 ‖ be64 5 ‖ page 5).
    let mut mem = zero.clone();
    mem[2 * PAGE..3 * PAGE].fill(0x11);
    mem[6 * PAGE - 1] = 0x22;
    let mut h = Sha256::new();
    for p in [2u64, 5] {
        h.update(p.to_be_bytes());
        h.update(&mem[p as usize * PAGE..(p as usize + 1) * PAGE]);
    }
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(digest_block(8, PAGE, &[], reader(&mem)), Ok(want));
    let mut s = SparseSha256::new();
    for p in 0..8 {
        s.page(p, &mem[p as usize * PAGE..(p as usize + 1) * PAGE]);
    }
    assert_eq!(s.finish(), want);
    // The same bytes at another page are another digest.
    let mut moved = zero;
    moved[3 * PAGE..4 * PAGE].fill(0x11);
    moved[6 * PAGE - 1] = 0x22;
    assert_ne!(digest_block(8, PAGE, &[], reader(&moved)), Ok(want));
}

#[test]
fn sparse_digest_skips_ballooned_pages_unread_in_any_run_order() {
    let mut mem = vec![0u8; 16 * PAGE];
    for p in 0..16 {
        mem[p * PAGE] = p as u8 + 1;
    }
    let ballooned = [PageRun::new(9, 3), PageRun::new(1, 2), PageRun::new(10, 4)];
    let mut read = Vec::new();
    let d = digest_block(16, PAGE, &ballooned, |p, buf: &mut [u8]| {
        read.push(p);
        reader(&mem)(p, buf)
    })
    .unwrap();
    assert_eq!(read, [0, 3, 4, 5, 6, 7, 8, 14, 15]);
    // Ballooned pages count as zero: the same as a block whose pages there are zero.
    let mut zeroed = mem.clone();
    for p in [1, 2, 9, 10, 11, 12, 13] {
        zeroed[p * PAGE..(p + 1) * PAGE].fill(0);
    }
    assert_eq!(digest_block(16, PAGE, &[], reader(&zeroed)), Ok(d));
    // A run past the block's end stops the walk; a read error is returned.
    assert_eq!(
        digest_block(16, PAGE, &[PageRun::new(12, 100)], reader(&zeroed)),
        digest_block(12, PAGE, &[], reader(&zeroed))
    );
    assert_eq!(digest_block(17, PAGE, &[], reader(&mem)), Err(()));
}

#[test]
fn chunked_digest_is_the_spec_formula() {
    // 40 pages: chunks 0..16, 16..32, 32..40; data in pages 3 and 35 only.
    let mut mem = vec![0u8; 40 * PAGE];
    mem[3 * PAGE] = 0x33;
    mem[36 * PAGE - 1] = 0x35;
    let sparse = |pages: &[u64]| {
        let mut s = SparseSha256::new();
        for &p in pages {
            s.page(p, &mem[p as usize * PAGE..(p as usize + 1) * PAGE]);
        }
        s.finish()
    };
    let mut h = Sha256::new();
    h.update(0u64.to_be_bytes());
    h.update(sparse(&[3]));
    h.update(2u64.to_be_bytes());
    h.update(sparse(&[35]));
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(chunked_block(40, PAGE, &[], reader(&mem)), Ok(want));
    // The top level by hand: chunk 1 (all zero) adds nothing.
    let mut buf = vec![0u8; PAGE];
    let mut top = ChunkedSha256::new();
    for c in 0..3 {
        let d = digest_chunk(c, 40, &[], &mut buf, reader(&mem)).unwrap();
        assert_eq!(d.is_none(), c == 1);
        top.chunk(c, d.as_ref());
    }
    assert_eq!(top.finish(), want);
    // An all-zero block is sha256 of nothing, as with sha256-sparse.
    let empty: [u8; 32] = Sha256::digest([]).into();
    assert_eq!(
        chunked_block(40, PAGE, &[], reader(&vec![0u8; 40 * PAGE])),
        Ok(empty)
    );
    // A moved byte changes the digest; sparse and chunked differ.
    let mut moved = mem.clone();
    moved.swap(3 * PAGE, 4 * PAGE);
    assert_ne!(chunked_block(40, PAGE, &[], reader(&moved)), Ok(want));
    assert_ne!(digest_block(40, PAGE, &[], reader(&mem)), Ok(want));
}

#[test]
fn chunked_digest_skips_ballooned_pages_unread() {
    let mut mem = vec![0u8; 40 * PAGE];
    for p in 0..40 {
        mem[p * PAGE] = p as u8 + 1;
    }
    let ballooned = [
        PageRun::new(30, 5),
        PageRun::new(14, 4),
        PageRun::new(15, 1),
    ];
    assert_eq!(
        merged_runs(&ballooned),
        [PageRun::new(14, 4), PageRun::new(30, 5)]
    );
    let mut read = Vec::new();
    let d = chunked_block(40, PAGE, &ballooned, |p, buf: &mut [u8]| {
        read.push(p);
        reader(&mem)(p, buf)
    })
    .unwrap();
    assert!(read
        .iter()
        .all(|p| !(14..18).contains(p) && !(30..35).contains(p)));
    assert_eq!(read.len(), 40 - 9);
    let mut zeroed = mem.clone();
    for p in (14..18).chain(30..35) {
        zeroed[p * PAGE..(p + 1) * PAGE].fill(0);
    }
    assert_eq!(chunked_block(40, PAGE, &[], reader(&zeroed)), Ok(d));
    assert_eq!(chunked_block(41, PAGE, &[], reader(&mem)), Err(()));
}

#[test]
fn digest_algorithm_byte_round_trips_and_unknown_is_refused() {
    let mut d = two_blocks();
    d.algorithm = DigestAlgorithm::Sha256Chunked;
    let b = encode(&d);
    assert_eq!(&b[..2], &[1, 2]);
    assert_eq!(DigestSection::decode(&b), Ok(d.clone()));
    assert!(d.to_string().contains("sha256-chunked"));
    let mut bad = b;
    bad[1] = 3;
    assert_eq!(
        DigestSection::decode(&bad),
        Err(ExtensionError::DigestAlgorithm { found: 3 })
    );
}
