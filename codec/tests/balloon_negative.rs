//! Negative tests for balloon records (SPEC.md §9.5, §9.6, §9.9): every misuse gives its own
//! error, at the right offset; no input panics.

mod balloon_support;

use balloon_support as bs;
use ramstream_codec::{
    decode_all, Configuration, Decoder, DecoderOptions, Encoder, Error, ErrorKind, RecordKind,
    SectionHeader, Status,
};
use ramstream_spec::config::capability::RAMSTREAM_BALLOON_V1;
use ramstream_spec::Dialect;

const V1: Dialect = Dialect::RamstreamBalloonV1;
const K: Dialect = Dialect::Kolhe2016;
const FULL: u8 = 0;
const INCR: u8 = 1;

/// Decodes a v1 record placed after MEM_SIZE in an announcing stream.
fn v1_err(record: &[u8]) -> Error {
    let s = bs::with_record(record, true, &bs::v1_blocks());
    let e = bs::decode_err(&s, V1);
    assert_eq!(e.record, Some(RecordKind::Balloon), "{e}");
    e
}

fn v1_base() -> u64 {
    bs::record_offset(true, &bs::v1_blocks())
}

/// Offset of the first run of a v1 record naming `pc.ram`.
fn v1_runs_at() -> u64 {
    v1_base() + 8 + 7 + 10
}

fn kolhe_err(fields: &[u64]) -> Error {
    let s = bs::with_record(&bs::kolhe_record(fields), false, &bs::kolhe_blocks());
    let e = bs::decode_err(&s, K);
    assert_eq!(e.record, Some(RecordKind::Balloon), "{e}");
    e
}

fn kolhe_base() -> u64 {
    bs::record_offset(false, &bs::kolhe_blocks())
}

#[test]
fn valid_records_decode() {
    let rec = bs::v1_record(Some("pc.ram"), 1, INCR, &[(0, 1), (5, 5)], &[(1, 1)]);
    let s = bs::with_record(&rec, true, &bs::v1_blocks());
    bs::decode(&s, V1).unwrap();
    let s = bs::with_record(
        &bs::kolhe_record(&[16, 0, 16, 1, 1, 3, 1, 16, 0]),
        false,
        &bs::kolhe_blocks(),
    );
    bs::decode(&s, K).unwrap();
}

#[test]
fn v1_record_without_announcement() {
    let rec = bs::v1_record(Some("pc.ram"), 1, FULL, &[(0, 1)], &[]);
    let s = bs::with_record(&rec, false, &bs::v1_blocks());
    let e = bs::decode_err(&s, V1);
    assert_eq!(e.kind, ErrorKind::BalloonNotAnnounced);
    assert_eq!(e.offset, bs::record_offset(false, &bs::v1_blocks()));
}

#[test]
fn v1_wrong_version_byte() {
    for version in [0u8, 2, 0xff] {
        let e = v1_err(&bs::v1_record(
            Some("pc.ram"),
            version,
            FULL,
            &[(0, 1)],
            &[],
        ));
        assert_eq!(
            e.kind,
            ErrorKind::BalloonVersion {
                found: version,
                expected: 1
            }
        );
        assert_eq!(e.offset, v1_base() + 8 + 7);
        assert_eq!(e.block.as_deref(), Some("pc.ram"));
    }
}

#[test]
fn v1_unknown_kind() {
    let e = v1_err(&bs::v1_record(Some("pc.ram"), 1, 2, &[(0, 1)], &[]));
    assert_eq!(e.kind, ErrorKind::BalloonKind { found: 2 });
    assert_eq!(e.offset, v1_base() + 8 + 7 + 1);
}

#[test]
fn v1_runs_unsorted() {
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        FULL,
        &[(10, 2), (5, 1)],
        &[],
    ));
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOrder {
            start: 5,
            previous_end: 12
        }
    );
    assert_eq!(e.offset, v1_runs_at() + 16);
}

#[test]
fn v1_runs_overlapping() {
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        INCR,
        &[],
        &[(10, 5), (12, 1)],
    ));
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOrder {
            start: 12,
            previous_end: 15
        }
    );
    assert_eq!(e.offset, v1_runs_at() + 16);
}

#[test]
fn v1_runs_adjacent() {
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        FULL,
        &[(10, 2), (12, 1)],
        &[],
    ));
    assert_eq!(e.kind, ErrorKind::BalloonRunsAdjacent { start: 12 });
}

#[test]
fn v1_run_beyond_the_block() {
    let e = v1_err(&bs::v1_record(Some("pc.ram"), 1, FULL, &[(250, 7)], &[]));
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOutOfRange {
            start: 250,
            count: 7,
            pages: 256
        }
    );
    assert_eq!(e.offset, v1_runs_at());
    // The ROM block has 4 pages; a run that fits pc.ram does not fit it.
    let e = v1_err(&bs::v1_record(
        Some("/rom@etc/acpi/tables"),
        1,
        FULL,
        &[(3, 2)],
        &[],
    ));
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOutOfRange {
            start: 3,
            count: 2,
            pages: 4
        }
    );
    // start + count overflowing u64.
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        FULL,
        &[(u64::MAX, 2)],
        &[],
    ));
    assert!(matches!(e.kind, ErrorKind::BalloonRunOutOfRange { .. }));
}

#[test]
fn v1_zero_length_run() {
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        INCR,
        &[(0, 1)],
        &[(3, 0)],
    ));
    assert_eq!(e.kind, ErrorKind::BalloonEmptyRun { start: 3 });
    assert_eq!(e.offset, v1_runs_at() + 16);
}

#[test]
fn v1_too_many_runs() {
    // Counts far above the default limit are refused before any run is read.
    let mut rec = bs::v1_record(Some("pc.ram"), 1, INCR, &[], &[]);
    let n = rec.len();
    rec[n - 8..n - 4].copy_from_slice(&u32::MAX.to_be_bytes());
    rec[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = v1_err(&rec);
    assert_eq!(
        e.kind,
        ErrorKind::BalloonTooManyRuns {
            count: 2 * u64::from(u32::MAX),
            limit: 1 << 24
        }
    );
    assert_eq!(e.offset, v1_base() + 8 + 7 + 2);

    // A lowered limit.
    let rec = bs::v1_record(Some("pc.ram"), 1, INCR, &[(0, 1), (2, 1)], &[(4, 1)]);
    let s = bs::with_record(&rec, true, &bs::v1_blocks());
    let mut opts = DecoderOptions::default().with_dialect(V1);
    opts.limits.max_balloon_runs = 2;
    let e = decode_all(&s, opts).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BalloonTooManyRuns { count: 3, limit: 2 });
}

#[test]
fn v1_truncated_payload() {
    let rec = bs::v1_record(Some("pc.ram"), 1, FULL, &[(0, 1), (5, 5)], &[]);
    let s = bs::with_record(&rec, true, &bs::v1_blocks());
    let base = v1_base() as usize;
    for cut in base + 1..base + rec.len() {
        let e = bs::decode_err(&s[..cut], V1);
        assert!(
            matches!(e.kind, ErrorKind::Truncated { .. }),
            "cut {cut}: {e}"
        );
        assert_eq!(e.offset, base as u64);
        // Not finished: the decoder asks for more instead.
        let mut dec = Decoder::new(DecoderOptions::default().with_dialect(V1));
        let mut pos = 0;
        loop {
            match dec.decode(&s[pos..cut]).unwrap() {
                Status::Event { consumed, .. } => pos += consumed,
                Status::NeedMore { needed } => {
                    assert!(needed >= 1);
                    break;
                }
                Status::Done => panic!("done on a cut stream"),
            }
        }
        assert_eq!(pos, base);
    }
}

#[test]
fn v1_full_map_with_deflate_runs() {
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        FULL,
        &[(0, 1)],
        &[(4, 1)],
    ));
    assert_eq!(e.kind, ErrorKind::BalloonFullMapDeflate { count: 1 });
}

#[test]
fn v1_page_inflated_and_deflated() {
    let e = v1_err(&bs::v1_record(
        Some("pc.ram"),
        1,
        INCR,
        &[(0, 4), (10, 4)],
        &[(12, 8)],
    ));
    assert_eq!(e.kind, ErrorKind::BalloonInflateDeflateOverlap { page: 12 });
}

#[test]
fn v1_continue_without_block() {
    let e = v1_err(&bs::v1_record(None, 1, FULL, &[(0, 1)], &[]));
    assert_eq!(e.kind, ErrorKind::ContinueWithoutBlock);
    assert_eq!(e.offset, v1_base());
}

#[test]
fn v1_unknown_block() {
    let e = v1_err(&bs::v1_record(Some("pc.rax"), 1, FULL, &[(0, 1)], &[]));
    assert_eq!(
        e.kind,
        ErrorKind::UnknownBlock {
            idstr: "pc.rax".into()
        }
    );
    assert_eq!(e.offset, v1_base() + 8);
}

#[test]
fn v1_word_with_offset_bits() {
    let mut rec = bs::v1_record(Some("pc.ram"), 1, FULL, &[(0, 1)], &[]);
    rec[..8].copy_from_slice(&0x1200u64.to_be_bytes());
    let e = v1_err(&rec);
    assert_eq!(e.kind, ErrorKind::BalloonWord { word: 0x1200 });
}

fn before_mem_size(record: &[u8], announce: bool) -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    enc.header(&mut out);
    enc.configuration(
        &Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: announce.then(|| vec![RAMSTREAM_BALLOON_V1]),
            uuid: None,
        },
        &mut out,
    )
    .unwrap();
    enc.section_header(&SectionHeader::ram_start(bs::RAM_ID), &mut out)
        .unwrap();
    out.extend_from_slice(record);
    out
}

#[test]
fn balloon_record_before_mem_size() {
    let s = before_mem_size(
        &bs::v1_record(Some("pc.ram"), 1, FULL, &[(0, 1)], &[]),
        true,
    );
    assert_eq!(bs::decode_err(&s, V1).kind, ErrorKind::BalloonBeforeMemSize);
    let s = before_mem_size(&bs::kolhe_record(&[16, 0, 16, 16, 0]), false);
    assert_eq!(bs::decode_err(&s, K).kind, ErrorKind::BalloonBeforeMemSize);
}

#[test]
fn kolhe_start_after_limit() {
    let e = kolhe_err(&[16, 5, 3]);
    assert_eq!(
        e.kind,
        ErrorKind::KolheStartAfterLimit { start: 5, limit: 3 }
    );
    assert_eq!(e.offset, kolhe_base() + 16);
}

#[test]
fn kolhe_bitmap_size_mismatch() {
    let e = kolhe_err(&[15, 0, 15, 15, 0]);
    assert_eq!(
        e.kind,
        ErrorKind::KolheBitmapSize {
            bitmap_pages: 15,
            ram_pages: 16
        }
    );
    assert_eq!(e.offset, kolhe_base() + 8);
}

#[test]
fn kolhe_limit_beyond_bitmap() {
    let e = kolhe_err(&[16, 0, 17]);
    assert_eq!(
        e.kind,
        ErrorKind::KolheLimitBeyondBitmap {
            limit: 17,
            bitmap_pages: 16
        }
    );
}

#[test]
fn kolhe_bad_terminator() {
    let e = kolhe_err(&[16, 0, 16, 5, 0]);
    assert_eq!(
        e.kind,
        ErrorKind::KolheTerminator {
            start: 5,
            bitmap_pages: 16
        }
    );
    assert_eq!(e.offset, kolhe_base() + 32);
}

#[test]
fn kolhe_runs_unsorted_or_overlapping() {
    let e = kolhe_err(&[16, 0, 16, 5, 2, 3, 1]);
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOrder {
            start: 3,
            previous_end: 7
        }
    );
    assert_eq!(e.offset, kolhe_base() + 48);
    // A run before the record's start.
    let e = kolhe_err(&[16, 4, 16, 2, 1]);
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOrder {
            start: 2,
            previous_end: 4
        }
    );
}

#[test]
fn kolhe_runs_adjacent() {
    let e = kolhe_err(&[16, 0, 16, 1, 1, 2, 1]);
    assert_eq!(e.kind, ErrorKind::BalloonRunsAdjacent { start: 2 });
}

#[test]
fn kolhe_run_beyond_bitmap() {
    let e = kolhe_err(&[16, 0, 16, 14, 3]);
    assert_eq!(
        e.kind,
        ErrorKind::BalloonRunOutOfRange {
            start: 14,
            count: 3,
            pages: 16
        }
    );
}

#[test]
fn kolhe_too_many_runs() {
    let s = bs::with_record(
        &bs::kolhe_record(&[16, 0, 16, 1, 1, 3, 1, 16, 0]),
        false,
        &bs::kolhe_blocks(),
    );
    let mut opts = DecoderOptions::default().with_dialect(K);
    opts.limits.max_balloon_runs = 1;
    let e = decode_all(&s, opts).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BalloonTooManyRuns { count: 2, limit: 1 });
    assert_eq!(e.offset, kolhe_base() + 8 + 24 + 16);
}

#[test]
fn kolhe_truncated_payload() {
    let rec = bs::kolhe_record(&[16, 0, 16, 1, 1, 16, 0]);
    let s = bs::with_record(&rec, false, &bs::kolhe_blocks());
    let base = kolhe_base() as usize;
    for cut in base + 1..base + rec.len() {
        let e = bs::decode_err(&s[..cut], K);
        assert!(
            matches!(e.kind, ErrorKind::Truncated { .. }),
            "cut {cut}: {e}"
        );
        assert_eq!(e.offset, base as u64);
    }
}

#[test]
fn kolhe_word_with_continue_or_offset() {
    for word in [0x220u64, 0x1200] {
        let mut rec = bs::kolhe_record(&[16, 0, 16, 16, 0]);
        rec[..8].copy_from_slice(&word.to_be_bytes());
        let s = bs::with_record(&rec, false, &bs::kolhe_blocks());
        let e = bs::decode_err(&s, K);
        assert_eq!(e.kind, ErrorKind::BalloonWord { word });
        assert_eq!(e.offset, kolhe_base());
    }
}

/// Every truncation and many single-byte corruptions of every vector, under every dialect:
/// an error or events, never a panic.
#[test]
fn no_panic_on_truncation_or_corruption() {
    let vectors = [
        bs::v1_stream(),
        bs::kolhe_stream(),
        bs::kolhe_disabled_stream(),
    ];
    for v in &vectors {
        for d in Dialect::ALL {
            for cut in 0..v.len() {
                let _ = bs::decode(&v[..cut], d);
            }
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut m = v.clone();
                let i = (x % m.len() as u64) as usize;
                m[i] = (x >> 32) as u8;
                let _ = bs::decode(&m, d);
            }
        }
    }
}
