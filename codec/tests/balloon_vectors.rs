//! The hand-built balloon golden vectors (SPEC.md §9): they match their builders, decode to
//! the expected records under their dialect, re-encode byte for byte, decode the same under
//! any split, and mean different things under each dialect.
//!
//! Regenerate the files with `RAMSTREAM_WRITE_BALLOON_VECTORS=1 cargo test -p
//! ramstream-codec --test balloon_vectors`.

mod balloon_support;

use std::path::{Path, PathBuf};

use balloon_support as bs;
use ramstream_codec::balloon::{BalloonMap, BalloonMapKind, BalloonRecord, KolheBalloon, PageRun};
use ramstream_codec::summary::StreamSummary;
use ramstream_codec::{Decoder, DecoderOptions, Encoder, ErrorKind, Event, RecordKind, Status};
use ramstream_spec::ram::RamFlags;
use ramstream_spec::Dialect;
use sha2::{Digest, Sha256};

struct Vector {
    name: &'static str,
    description: &'static str,
    dialect: Dialect,
    build: fn() -> Vec<u8>,
}

const VECTORS: [Vector; 3] = [
    Vector {
        name: "balloon-v1",
        description: "ramstream balloon extension v1 (SPEC.md §9.4): capability x-ramstream-balloon-v1 announced; pc.ram 256 pages and a 4-page ROM; a full-map record in the START section, an incremental record with CONTINUE (inflate and deflate runs) among page records in a PART section, and one naming the ROM block in the END section.",
        dialect: Dialect::RamstreamBalloonV1,
        build: bs::v1_stream,
    },
    Vector {
        name: "balloon-kolhe-2016",
        description: "The 2016 balloon patch's layout (SPEC.md §9.6), written as its qemu_balloon_bitmap_save would: pc.ram 12 pages and a 4-page ROM (bitmap 16 pages, global indices); first PART: start 0, limit 16, runs 2+3 and 10+4 (across the block boundary), terminator (16, 0); second PART: start 6, limit 7, run 6+2 past the limit. Read as qemu-8.1+, the first record is MULTIFD_FLUSH followed by EOS (0x10) and a missing footer.",
        dialect: Dialect::Kolhe2016,
        build: bs::kolhe_stream,
    },
    Vector {
        name: "balloon-kolhe-2016-disabled",
        description: "The 2016 balloon patch's DISABLE marker (bitmap size all-ones, nothing after it) at the top of a PART section (SPEC.md §9.6).",
        dialect: Dialect::Kolhe2016,
        build: bs::kolhe_disabled_stream,
    },
];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance-vectors/vectors")
        .join(name)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn manifest(v: &Vector, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "name": v.name,
        "description": v.description,
        "dialect": v.dialect.name(),
        "hand_built": true,
        "builder": "codec/tests/balloon_support/mod.rs",
        "stream_len": bytes.len(),
        "stream_sha256": sha256_hex(bytes),
    })
}

#[test]
fn golden_vectors_match_their_builders() {
    // The published crate is unpacked without the workspace beside it: the stored files are
    // not there (the other tests still check the builders' streams). In the workspace the
    // test always runs, and fails if a file is missing.
    let workspace_vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance-vectors");
    if !workspace_vectors.join("Cargo.toml").exists() {
        eprintln!("skipped: no conformance-vectors crate beside this one (a packaged crate)");
        return;
    }
    let write = std::env::var_os("RAMSTREAM_WRITE_BALLOON_VECTORS").is_some();
    for v in &VECTORS {
        let bytes = (v.build)();
        let m = manifest(v, &bytes);
        let d = dir(v.name);
        if write {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("stream.bin"), &bytes).unwrap();
            let mut text = serde_json::to_string_pretty(&m).unwrap();
            text.push('\n');
            std::fs::write(d.join("manifest.json"), text).unwrap();
        }
        let stored = std::fs::read(d.join("stream.bin")).unwrap();
        assert!(
            stored == bytes,
            "{}: stream.bin differs from its builder",
            v.name
        );
        let stored_m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(stored_m, m, "{}: manifest", v.name);
        assert_eq!(stored_m["stream_sha256"], sha256_hex(&stored));
    }
}

#[test]
fn vectors_reencode_byte_for_byte() {
    for v in &VECTORS {
        let bytes = (v.build)();
        let events = bs::decode(&bytes, v.dialect).unwrap();
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        for (_, ev) in &events {
            enc.event(ev, &mut out).unwrap();
        }
        assert!(out == bytes, "{}: re-encoding differs", v.name);
    }
}

/// Feeds `bytes` one byte at a time; returns the events as debug strings.
fn feed_bytewise(bytes: &[u8], dialect: Dialect) -> Vec<String> {
    let mut dec = Decoder::new(DecoderOptions::default().with_dialect(dialect));
    let mut pos = 0;
    let mut avail = 0;
    let mut out = Vec::new();
    loop {
        if avail == bytes.len() {
            dec.finish();
        }
        let at = dec.offset();
        match dec.decode(&bytes[pos..avail]).unwrap() {
            Status::Event { event, consumed } => {
                out.push(format!("{at}: {event:?}"));
                pos += consumed;
            }
            Status::NeedMore { .. } => avail += 1,
            Status::Done => return out,
        }
    }
}

#[test]
fn vectors_decode_the_same_byte_by_byte() {
    for v in &VECTORS {
        let bytes = (v.build)();
        let one_shot: Vec<String> = bs::decode(&bytes, v.dialect)
            .unwrap()
            .iter()
            .map(|(o, e)| format!("{o}: {e:?}"))
            .collect();
        assert_eq!(feed_bytewise(&bytes, v.dialect), one_shot, "{}", v.name);
    }
}

fn balloons<'a>(events: &'a [(u64, Event<'a>)]) -> Vec<(u64, BalloonRecord<'a>)> {
    events
        .iter()
        .filter_map(|(o, e)| match e {
            Event::Balloon(b) => Some((*o, *b)),
            _ => None,
        })
        .collect()
}

#[test]
fn v1_vector_decodes_to_its_records() {
    let bytes = bs::v1_stream();
    let events = bs::decode(&bytes, Dialect::RamstreamBalloonV1).unwrap();
    let recs = balloons(&events);
    assert_eq!(recs.len(), 3);
    let v: Vec<_> = recs
        .iter()
        .map(|(_, r)| match r {
            BalloonRecord::V1(v) => *v,
            other => panic!("not v1: {other:?}"),
        })
        .collect();
    assert_eq!(
        (v[0].block, v[0].continued, v[0].kind),
        (0, false, BalloonMapKind::FullMap)
    );
    assert_eq!(
        v[0].inflate.iter().collect::<Vec<_>>(),
        [PageRun::new(16, 48), PageRun::new(100, 100)]
    );
    assert!(v[0].deflate.is_empty());
    assert_eq!(
        (v[1].block, v[1].continued, v[1].kind),
        (0, true, BalloonMapKind::Incremental)
    );
    assert_eq!(
        v[1].inflate.iter().collect::<Vec<_>>(),
        [PageRun::new(64, 4), PageRun::new(250, 6)]
    );
    assert_eq!(
        v[1].deflate.iter().collect::<Vec<_>>(),
        [PageRun::new(120, 10)]
    );
    assert_eq!((v[2].block, v[2].continued), (1, false));
    // The record after a v1 record on the same block uses CONTINUE: shared last-block state.
    let after = events
        .iter()
        .skip_while(|(o, _)| *o != recs[1].0)
        .nth(1)
        .unwrap();
    assert_eq!(
        after.1.ram_flags(),
        Some(RamFlags::ZERO | RamFlags::CONTINUE)
    );
    assert_eq!(
        events
            .iter()
            .find(|(o, _)| *o == recs[1].0)
            .unwrap()
            .1
            .ram_flags(),
        Some(RamFlags::X200 | RamFlags::CONTINUE)
    );

    let mut map = BalloonMap::default();
    for (_, ev) in &events {
        match ev {
            Event::MemSize(ms) => map = BalloonMap::new(&ms.blocks, 12),
            Event::Balloon(b) => {
                map.apply(b).unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(
        map.runs(0).collect::<Vec<_>>(),
        [
            PageRun::new(16, 52),
            PageRun::new(100, 20),
            PageRun::new(130, 70),
            PageRun::new(250, 6)
        ]
    );
    assert_eq!(map.ballooned_pages(0), 148);
    assert_eq!(map.ballooned_pages(1), 2);
    // No page record lands on a page ballooned at the time it was sent.
    assert!(!map.contains(0, 125) && !map.contains(0, 0) && !map.contains(1, 3));
}

#[test]
fn kolhe_vector_decodes_to_its_records() {
    let bytes = bs::kolhe_stream();
    let events = bs::decode(&bytes, Dialect::Kolhe2016).unwrap();
    let recs = balloons(&events);
    assert_eq!(recs.len(), 2);
    let BalloonRecord::Kolhe(KolheBalloon::Bitmap(a)) = recs[0].1 else {
        panic!("{:?}", recs[0]);
    };
    assert_eq!(
        (a.bitmap_pages, a.start, a.limit, a.terminated),
        (16, 0, 16, true)
    );
    assert_eq!(
        a.runs.iter().collect::<Vec<_>>(),
        [PageRun::new(2, 3), PageRun::new(10, 4)]
    );
    let BalloonRecord::Kolhe(KolheBalloon::Bitmap(b)) = recs[1].1 else {
        panic!("{:?}", recs[1]);
    };
    assert_eq!(
        (b.bitmap_pages, b.start, b.limit, b.terminated),
        (16, 6, 7, false)
    );
    assert_eq!(b.runs.iter().collect::<Vec<_>>(), [PageRun::new(6, 2)]);

    let mut summary = StreamSummary::default();
    for (o, ev) in &events {
        summary.observe(*o, ev);
    }
    // Global indices 2..5, 6..8 and 10..12 land in pc.ram (12 pages), 12..14 in the ROM.
    let m = summary.balloon.map();
    assert_eq!(
        m.runs(0).collect::<Vec<_>>(),
        [PageRun::new(2, 3), PageRun::new(6, 2), PageRun::new(10, 2)]
    );
    assert_eq!(m.runs(1).collect::<Vec<_>>(), [PageRun::new(0, 2)]);
    assert_eq!(summary.balloon.ballooned_pages["pc.ram"], 7);
    assert_eq!(summary.balloon.ballooned_pages["/rom@etc/acpi/tables"], 2);
    assert_eq!(summary.balloon.dialect.as_deref(), Some("kolhe-2016"));
    // The JSON form needs the `serde` feature (on in the workspace through test-support; a
    // packaged crate tested without features skips it).
    #[cfg(feature = "serde")]
    {
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["balloon"]["records"].as_array().unwrap().len(), 2);
        assert_eq!(json["balloon"]["ballooned_pages"]["pc.ram"], 7);
    }
}

#[test]
fn kolhe_disabled_vector() {
    let bytes = bs::kolhe_disabled_stream();
    let events = bs::decode(&bytes, Dialect::Kolhe2016).unwrap();
    let recs = balloons(&events);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].1, BalloonRecord::Kolhe(KolheBalloon::Disabled));
    let mut map = BalloonMap::new(&bs::kolhe_blocks(), 12);
    map.inflate(0, 0..3).unwrap();
    map.apply(&recs[0].1).unwrap();
    assert!(map.is_disabled());
    assert_eq!(map.total_ballooned_pages(), 0);
}

/// The first 0x200 word of the kolhe-2016 vector and what follows it, under every dialect.
#[test]
fn same_bytes_differ_by_dialect() {
    let bytes = bs::kolhe_stream();
    let word_at = bytes
        .windows(8)
        .position(|w| w == 0x200u64.to_be_bytes())
        .unwrap() as u64;

    // qemu-7.2: the word is an error.
    let e = bs::decode_err(&bytes, Dialect::Qemu7_2);
    assert_eq!(e.offset, word_at);
    assert_eq!(
        e.kind,
        ErrorKind::UnknownFlags {
            flags: RamFlags::X200
        }
    );

    // qemu-8.1+: MULTIFD_FLUSH, then the bitmap size 0x10 reads as EOS, then the start
    // field's first byte is not a footer.
    let mut dec = Decoder::new(DecoderOptions::default().with_dialect(Dialect::Qemu8_1));
    dec.finish();
    let mut pos = 0usize;
    let mut seen = Vec::new();
    let err = loop {
        let at = dec.offset();
        match dec.decode(&bytes[pos..]) {
            Ok(Status::Event { event, consumed }) => {
                if at >= word_at {
                    seen.push((at, event.kind()));
                }
                pos += consumed;
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        seen,
        [
            (word_at, RecordKind::MultifdFlush),
            (word_at + 8, RecordKind::Eos)
        ]
    );
    assert_eq!(err.offset, word_at + 16);
    assert!(matches!(
        err.kind,
        ErrorKind::MissingFooter { found: 0, .. }
    ));

    // kolhe-2016: one balloon record of 8 + 24 + 2·16 + 16 bytes, then a PAGE record.
    let events = bs::decode(&bytes, Dialect::Kolhe2016).unwrap();
    let i = events.iter().position(|(o, _)| *o == word_at).unwrap();
    assert!(matches!(
        events[i].1,
        Event::Balloon(BalloonRecord::Kolhe(_))
    ));
    assert_eq!(events[i + 1].0, word_at + 8 + 24 + 32 + 16);
    assert_eq!(events[i + 1].1.kind(), RecordKind::Page);

    // ramstream-balloon-v1: the stream did not announce the extension.
    let e = bs::decode_err(&bytes, Dialect::RamstreamBalloonV1);
    assert_eq!(
        (e.offset, e.kind),
        (word_at, ErrorKind::BalloonNotAnnounced)
    );
    assert_eq!(e.record, Some(RecordKind::Balloon));
}

/// A stream announcing the v1 capability is refused at the configuration by every other
/// dialect, as QEMU refuses it ("Received unknown capability").
#[test]
fn v1_stream_refused_at_the_capability_by_other_dialects() {
    let bytes = bs::v1_stream();
    for d in [Dialect::Qemu7_2, Dialect::Qemu8_1, Dialect::Kolhe2016] {
        let e = bs::decode_err(&bytes, d);
        assert_eq!(
            e.kind,
            ErrorKind::UnknownCapability {
                name: "x-ramstream-balloon-v1".into()
            },
            "{d}"
        );
        assert_eq!(e.record, Some(RecordKind::Configuration));
    }
}

/// Announced but never used is fine: the v1 dialect reads an ordinary stream that lists the
/// capability, and one that does not list it.
#[test]
fn announced_but_unused_and_plain_streams_decode_under_v1() {
    for announce in [true, false] {
        let s = bs::with_record(&[], announce, &bs::v1_blocks());
        let ev = bs::decode(&s, Dialect::RamstreamBalloonV1).unwrap();
        assert!(!ev.iter().any(|(_, e)| matches!(e, Event::Balloon(_))));
    }
}

fn runs_of(pages: &std::collections::BTreeSet<u64>) -> Vec<PageRun> {
    let mut out: Vec<PageRun> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some(r) if r.end() == p => r.count += 1,
            _ => out.push(PageRun::new(p, 1)),
        }
    }
    out
}

proptest::proptest! {
    /// Any valid v1 record the encoder writes decodes to the same runs and re-encodes to the
    /// same bytes; the same for kolhe-2016 records written as the patch's writer would.
    #[test]
    fn balloon_records_round_trip(
        inflate in proptest::collection::btree_set(0..256u64, 0..40),
        deflate in proptest::collection::btree_set(0..256u64, 0..40),
        start in 0..16u64,
        len in 0..16u64,
        kolhe in proptest::collection::btree_set(0..16u64, 0..16),
    ) {
        let deflate: std::collections::BTreeSet<u64> = deflate.difference(&inflate).copied().collect();
        let (inf, def) = (runs_of(&inflate), runs_of(&deflate));
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        bs::prelude(&mut enc, &mut out, Some(vec!["x-ramstream-balloon-v1"]), &bs::v1_blocks());
        enc.balloon_v1(0, BalloonMapKind::FullMap, &inf, &[], &mut out).unwrap();
        enc.balloon_v1(0, BalloonMapKind::Incremental, &inf, &def, &mut out).unwrap();
        bs::end_section(&mut enc, &mut out);
        enc.eof(&mut out);
        let events = bs::decode(&out, Dialect::RamstreamBalloonV1).unwrap();
        let recs = balloons(&events);
        proptest::prop_assert_eq!(recs.len(), 2);
        let BalloonRecord::V1(v) = recs[1].1 else { panic!() };
        proptest::prop_assert!(v.continued);
        proptest::prop_assert_eq!(v.inflate.iter().collect::<Vec<_>>(), inf);
        proptest::prop_assert_eq!(v.deflate.iter().collect::<Vec<_>>(), def);
        let mut again = Vec::new();
        let mut enc = Encoder::new(12);
        for (_, e) in &events {
            enc.event(e, &mut again).unwrap();
        }
        proptest::prop_assert_eq!(&again, &out);

        let limit = (start + len).min(16);
        let runs = runs_of(&kolhe);
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        bs::prelude(&mut enc, &mut out, None, &bs::kolhe_blocks());
        enc.kolhe_balloon_from_runs(16, start.min(limit), limit, &runs, &mut out).unwrap();
        bs::end_section(&mut enc, &mut out);
        enc.eof(&mut out);
        let events = bs::decode(&out, Dialect::Kolhe2016).unwrap();
        let mut again = Vec::new();
        let mut enc = Encoder::new(12);
        for (_, e) in &events {
            enc.event(e, &mut again).unwrap();
        }
        proptest::prop_assert_eq!(&again, &out);
    }
}
