//! mapped-ram files (SPEC.md §7.9): reading hand-built files exactly, and every rejection
//! with its file offset, record and block. The real QEMU recordings are checked in
//! `conformance-vectors/tests/vectors.rs`.

// The hand-built files come from ramstream-test-support, an x86-64-only dev-dependency.
#![cfg(target_arch = "x86_64")]

use ramstream_codec::mapped_ram::{MappedRamFile, MappedRamRegion, MappedRamSummary};
use ramstream_codec::transcode::{self, Mode};
use ramstream_codec::{
    decode_all, Decoder, DecoderOptions, Encoder, Error, ErrorKind, Event, MappedRam, RecordKind,
    Status,
};
use ramstream_spec::mapped_ram::{bitmap_len, FILE_OFFSET_ALIGNMENT, HEADER_LEN};
use ramstream_spec::ram::RamFlags;
use ramstream_test_support::mapped_ram_file::{
    page_byte, BuiltMappedRam, MappedRamBlockSpec, MappedRamFileSpec,
};

const PAGE: u64 = 4096;

fn read() -> DecoderOptions {
    DecoderOptions::default().with_mapped_ram(MappedRam::Read)
}

fn small() -> BuiltMappedRam {
    MappedRamFileSpec::small().build()
}

fn parse_err(bytes: &[u8]) -> Error {
    let e = MappedRamFile::parse(bytes, &read()).unwrap_err();
    // The decoder alone reports the same error.
    assert_eq!(decode_all(bytes, read()).unwrap_err(), e);
    e
}

/// The bytes a present page of a hand-built file holds.
fn page(block: usize, p: u64) -> Vec<u8> {
    (0..PAGE as usize).map(|k| page_byte(block, p, k)).collect()
}

#[test]
fn a_small_file_reads_exactly() {
    let spec = MappedRamFileSpec::small();
    let built = spec.build();
    let file = MappedRamFile::parse(&built.bytes, &read()).unwrap();
    assert_eq!(file.blocks().len(), 2);
    for (i, (b, s)) in file.blocks().iter().zip(&spec.blocks).enumerate() {
        assert_eq!(b.block.idstr, s.idstr);
        assert_eq!(b.block.used_length, s.pages * PAGE);
        assert_eq!(b.header.offset, built.headers[i]);
        assert_eq!(b.header.version, 1);
        assert_eq!(b.header.page_size, PAGE);
        assert_eq!(b.header.bitmap_offset, b.header.end());
        assert_eq!(b.header.pages_offset % PAGE, 0);
        assert_eq!(b.bitmap.len() as u64, bitmap_len(s.pages));
        let got: Vec<(u64, Vec<u8>)> = b.present_pages().map(|(o, d)| (o, d.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> = s.present.iter().map(|&p| (p * PAGE, page(i, p))).collect();
        // Stale bytes behind cleared bits (pages 2 and 68 of pc.ram) are not pages.
        assert_eq!(got, want, "block {}", s.idstr);
    }
    // No page record: the MEM_SIZE event spans the regions, and offsets are file offsets.
    let kinds: Vec<_> = file.events().iter().map(|(_, e)| e.kind()).collect();
    assert!(!kinds.contains(&RecordKind::Page) && !kinds.contains(&RecordKind::Zero));
    let (ms_at, ms) = file
        .events()
        .iter()
        .find_map(|(o, e)| match e {
            Event::MemSize(ms) => Some((*o, ms)),
            _ => None,
        })
        .unwrap();
    assert_eq!(ms.mapped_ram.len(), 2);
    let after = file.events().iter().find(|(o, _)| *o > ms_at).unwrap().0;
    let last = &file.blocks()[1];
    assert_eq!(after, last.header.pages_offset + last.block.used_length);

    // The rebuilt RAM is the present pages, zero elsewhere.
    let image = transcode::rebuild(&built.bytes, &read()).unwrap();
    for (i, s) in spec.blocks.iter().enumerate() {
        let dense = image.to_dense(i);
        for p in 0..s.pages {
            let got = &dense[(p * PAGE) as usize..((p + 1) * PAGE) as usize];
            if s.present.contains(&p) {
                assert_eq!(got, &page(i, p)[..]);
            } else {
                assert!(got.iter().all(|b| *b == 0), "block {i} page {p} not zero");
            }
        }
    }
    let mut store = ramstream_codec::RamImage::new(PAGE as usize);
    store.set_blocks(
        &file
            .blocks()
            .iter()
            .map(|b| b.block.clone())
            .collect::<Vec<_>>(),
    );
    assert_eq!(file.apply_to(&mut store), 7);
    assert_eq!(store.sha256(1), image.sha256(1));

    let s = MappedRamSummary::of(file.blocks());
    assert_eq!((s.pages_present, s.bitmap_bytes), (7, 8 + 16));
    assert_eq!(s.blocks[1].next_offset, after);
    assert!(MappedRamFile::announced(&built.bytes, &Default::default()));
}

#[test]
fn qemu_alignment_and_many_pages() {
    // QEMU's 1 MiB alignment, a block whose bitmap spans several words, every page present.
    let all: Vec<u64> = (0..300).collect();
    let spec = MappedRamFileSpec {
        blocks: vec![MappedRamBlockSpec::new("pc.ram", 300, &all)],
        ignore_shared: false,
        alignment: FILE_OFFSET_ALIGNMENT,
        file_offset: 0,
    };
    let built = spec.build();
    let file = MappedRamFile::parse(&built.bytes, &read()).unwrap();
    let b = &file.blocks()[0];
    assert_eq!(b.header.pages_offset, FILE_OFFSET_ALIGNMENT);
    assert_eq!(b.bitmap.len(), 40);
    assert_eq!(b.present_count(), 300);
}

#[test]
fn the_capability_is_refused_unless_reading_files() {
    let built = small();
    let e = decode_all(&built.bytes, Default::default()).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::UnsupportedCapability {
            name: "mapped-ram".into()
        }
    );
    assert_eq!(e.record, Some(RecordKind::Configuration));
    let msg = e.to_string();
    assert!(msg.contains("not supported by ramstream"), "{msg}");
    assert!(msg.contains("ramstream inspect FILE"), "{msg}");
    assert!(msg.contains("ramstream extract FILE"), "{msg}");
    // A stream without the capability is not a mapped-ram file.
    let plain = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
    assert!(!MappedRamFile::announced(plain, &Default::default()));
    assert!(MappedRamFile::parse(plain, &read())
        .unwrap()
        .blocks()
        .is_empty());
}

#[test]
fn a_file_migrated_at_an_offset() {
    // `file:PATH,offset=N`: the stream starts at N and every offset in it is absolute.
    let n = 3 * PAGE + 5;
    let mut spec = MappedRamFileSpec::small();
    spec.file_offset = n;
    let built = spec.build();
    let opts = read().with_file_offset(n);
    let file = MappedRamFile::parse(built.stream(n), &opts).unwrap();
    assert_eq!(file.events()[0].0, n, "offsets are file offsets");
    assert_eq!(file.blocks()[0].header.offset, built.headers[0]);
    let at_zero = MappedRamFileSpec::small().build();
    let whole = MappedRamFile::parse(&at_zero.bytes, &read()).unwrap();
    for (a, b) in file.blocks().iter().zip(whole.blocks()) {
        assert!(a.present_pages().eq(b.present_pages()));
    }
    let image = transcode::rebuild(built.stream(n), &opts).unwrap();
    let same = transcode::rebuild(&at_zero.bytes, &read()).unwrap();
    assert_eq!(image.sha256(1), same.sha256(1));
    // Read as if it started the file, the next block entry is not where the seek lands.
    assert!(MappedRamFile::parse(built.stream(n), &read()).is_err());
}

#[test]
fn an_ignored_block_with_x_ignore_shared() {
    // QEMU 11.0+: the header of a block x-ignore-shared leaves out has both offsets 0, and
    // the next block entry follows it directly.
    let mut spec = MappedRamFileSpec::small();
    spec.ignore_shared = true;
    spec.blocks[0].ignored = true;
    spec.blocks[0].mr_addr = 0xfffc_0000;
    let built = spec.build();
    let file = MappedRamFile::parse(&built.bytes, &read()).unwrap();
    let (ign, next) = (&file.blocks()[0], &file.blocks()[1]);
    assert!(ign.is_ignored() && ign.bitmap.is_empty() && ign.pages.is_empty());
    assert_eq!(ign.block.mr_addr, Some(0xfffc_0000));
    assert_eq!(ign.present_count(), 0);
    assert_eq!(built.headers[1], ign.header.end() + 1 + 6 + 8 + 8);
    assert_eq!(next.present_count(), 6);
    let s = MappedRamSummary::of(file.blocks());
    assert!(s.blocks[0].ignored && s.blocks[0].next_offset == ign.header.end());

    // Without x-ignore-shared, offsets 0 put the bitmap inside the stream: refused.
    let mut spec = MappedRamFileSpec::small();
    spec.blocks[0].ignored = true;
    let built = spec.build();
    let e = parse_err(&built.bytes);
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamRegionOrder {
            region: MappedRamRegion::Bitmap,
            start: 0,
            previous_end: built.headers[0] + HEADER_LEN as u64,
        }
    );
}

/// The error for `built` with the header of block `b` patched at `field` (0 version, 4 page
/// size, 12 bitmap offset, 20 pages offset).
fn patched(b: usize, field: u64, value: &[u8]) -> (Error, u64) {
    let mut built = small();
    let at = built.headers[b];
    built.patch(at + field, value);
    (parse_err(&built.bytes), at)
}

#[test]
fn header_rejections_name_the_offset_and_block() {
    let check = |e: &Error, at: u64, block: &str| {
        assert_eq!(e.offset, at, "{e}");
        assert_eq!(e.record, Some(RecordKind::MemSize), "{e}");
        assert_eq!(e.block.as_deref(), Some(block), "{e}");
    };
    // Version 2 (QEMU: "Migration mapped-ram capability version not supported").
    let (e, at) = patched(1, 0, &2u32.to_be_bytes());
    assert_eq!(e.kind, ErrorKind::MappedRamVersion { version: 2 });
    check(&e, at, "pc.ram");
    // Version 0 is accepted, as by QEMU (it only rejects versions above 1).
    let mut built = small();
    built.patch(built.headers[0], &0u32.to_be_bytes());
    assert!(MappedRamFile::parse(&built.bytes, &read()).is_ok());
    // A page size other than the target's.
    let (e, at) = patched(0, 4, &8192u64.to_be_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamPageSize {
            page_size: 8192,
            expected: PAGE
        }
    );
    check(&e, at, "pc.bios");
    // pages_offset not page aligned ("region has bad alignment").
    let built = small();
    let po = u64::from_be_bytes(
        built.bytes[built.headers[1] as usize + 20..][..8]
            .try_into()
            .unwrap(),
    );
    let (e, at) = patched(1, 20, &(po + 512).to_be_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamPagesUnaligned {
            pages_offset: po + 512,
            page_size: PAGE
        }
    );
    check(&e, at, "pc.ram");
    // The bitmap going backwards into the header.
    let (e, at) = patched(1, 12, &(built.headers[1] + 20).to_be_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamRegionOrder {
            region: MappedRamRegion::Bitmap,
            start: built.headers[1] + 20,
            previous_end: built.headers[1] + 28,
        }
    );
    check(&e, at, "pc.ram");
    // The pages overlapping the bitmap.
    let (e, at) = patched(1, 12, &(po - 8).to_be_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamRegionOrder {
            region: MappedRamRegion::Pages,
            start: po,
            previous_end: po - 8 + 16,
        }
    );
    check(&e, at, "pc.ram");
}

#[test]
fn regions_beyond_the_end_of_the_file() {
    let built = small();
    let h = built.headers[1];
    let po = u64::from_be_bytes(built.bytes[h as usize + 20..][..8].try_into().unwrap());
    // Cut inside the pages region.
    let cut = &built.bytes[..(po + 5 * PAGE) as usize];
    let e = parse_err(cut);
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamRegionBeyondEnd {
            region: MappedRamRegion::Pages,
            end: po + 70 * PAGE,
            input_end: po + 5 * PAGE,
        }
    );
    assert_eq!((e.offset, e.block.as_deref()), (h, Some("pc.ram")));
    // Cut inside the bitmap.
    let e = parse_err(&built.bytes[..(h + 28 + 3) as usize]);
    assert_eq!(
        e.kind,
        ErrorKind::MappedRamRegionBeyondEnd {
            region: MappedRamRegion::Bitmap,
            end: h + 28 + 16,
            input_end: h + 28 + 3,
        }
    );
    // pages_offset so large that the pages end overflows.
    let mut far = small();
    far.patch(h + 20, &(!(PAGE - 1)).to_be_bytes());
    let e = parse_err(&far.bytes);
    assert!(
        matches!(
            e.kind,
            ErrorKind::MappedRamRegionBeyondEnd {
                region: MappedRamRegion::Pages,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_truncated_header() {
    let built = small();
    let h = built.headers[1];
    for got in 0..HEADER_LEN as u64 {
        let e = parse_err(&built.bytes[..(h + got) as usize]);
        assert_eq!(
            e.kind,
            ErrorKind::MappedRamHeaderTruncated { got: got as usize }
        );
        assert_eq!((e.offset, e.block.as_deref()), (h, Some("pc.ram")));
    }
}

#[test]
fn page_records_in_a_mapped_ram_file() {
    // QEMU's loader: "Unexpected RAM flags" for PAGE, ZERO, XBZRLE, HOOK and 0x200.
    for flags in [
        RamFlags::PAGE,
        RamFlags::ZERO,
        RamFlags::XBZRLE,
        RamFlags::HOOK,
        RamFlags::X200,
        RamFlags::PAGE | RamFlags::CONTINUE,
    ] {
        let built = small();
        let at = built.part_eos as usize;
        let mut bytes = built.bytes[..at].to_vec();
        bytes.extend(flags.bits().to_be_bytes());
        bytes.extend(b"\x06pc.ram");
        bytes.extend([0u8; 4096]);
        bytes.extend(&built.bytes[at..]);
        let e = parse_err(&bytes);
        assert_eq!(
            e.kind,
            ErrorKind::MappedRamRecord {
                flags: flags.without(RamFlags::CONTINUE)
            },
            "{flags:?}"
        );
        assert_eq!(e.offset, at as u64);
    }
}

#[test]
fn no_bitmap_is_larger_than_the_ram_limit() {
    // The bitmap's length follows from used_length, which the RAM limit bounds before any
    // header is read: nothing is allocated for it anyway (the bitmap is borrowed).
    let mut spec = MappedRamFileSpec::small();
    spec.blocks.truncate(1);
    let mut built = spec.build();
    let word = built.headers[0] - 8 - 1 - 7 - 8;
    let huge = (17u64 << 40) | RamFlags::MEM_SIZE.bits();
    built.patch(word, &huge.to_be_bytes());
    built.patch(built.headers[0] - 8, &(17u64 << 40).to_be_bytes());
    let e = parse_err(&built.bytes);
    assert!(matches!(e.kind, ErrorKind::RamTotalTooLarge { .. }), "{e}");
    assert_eq!(e.offset, word);
}

#[test]
fn truncation_at_every_offset_is_an_error_never_a_panic() {
    let built = small();
    let n = built.bytes.len();
    for cut in 0..n {
        let bytes = &built.bytes[..cut];
        let r = std::panic::catch_unwind(|| {
            (
                decode_all(bytes, read()).is_err(),
                MappedRamFile::parse(bytes, &read()).is_err(),
                transcode::rebuild(bytes, &read()).is_err(),
            )
        });
        assert_eq!(r.ok(), Some((true, true, true)), "cut at {cut}");
    }
    assert!(MappedRamFile::parse(&built.bytes, &read()).is_ok());
}

/// Events of `bytes` fed in chunks from `chunk`, as `(offset, kind)` strings.
fn fed(bytes: &[u8], mut chunk: impl FnMut() -> usize) -> Vec<String> {
    let mut dec = Decoder::new(read());
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::new();
    loop {
        let at = dec.offset();
        match dec.decode(&bytes[start..end]).unwrap() {
            Status::Event { event, consumed } => {
                out.push(format!("{at} {event:?}"));
                start += consumed;
            }
            Status::NeedMore { needed } => {
                assert!(needed >= 1 && end < bytes.len());
                end = (end + chunk().max(1)).min(bytes.len());
                if end == bytes.len() {
                    dec.finish();
                }
            }
            Status::Done => return out,
        }
    }
}

#[test]
fn any_split_gives_the_same_events() {
    let built = small();
    let whole: Vec<String> = decode_all(&built.bytes, read())
        .unwrap()
        .iter()
        .map(|(o, e)| format!("{o} {e:?}"))
        .collect();
    assert_eq!(fed(&built.bytes, || 1), whole, "byte by byte");
    let mut x = 7u32;
    for max in [3usize, 100, 4096, 70_000] {
        let got = fed(&built.bytes, || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            1 + x as usize % max
        });
        assert_eq!(got, whole, "chunks up to {max}");
    }
}

#[test]
fn need_more_inside_the_regions_asks_for_the_rest_of_them() {
    let built = small();
    let h = built.headers[0] as usize;
    let mut dec = Decoder::new(read());
    let mut pos = 0;
    // Header, configuration, START.
    for _ in 0..3 {
        match dec.decode(&built.bytes[pos..h + 28]).unwrap() {
            Status::Event { consumed, .. } => pos += consumed,
            other => panic!("{other:?}"),
        }
    }
    let first = MappedRamFile::parse(&built.bytes, &read()).unwrap();
    let b = &first.blocks()[0];
    let next = (b.header.pages_offset + b.block.used_length) as usize;
    match dec.decode(&built.bytes[pos..h + 28]).unwrap() {
        Status::NeedMore { needed } => assert_eq!(needed, next - (h + 28)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn re_encoding_a_mapped_ram_file() {
    let built = small();
    // Verbatim is refused, with the reason.
    let e = transcode::reencode(&built.bytes, Mode::Verbatim, &read()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Encode { .. }));
    assert!(e.to_string().contains("--from-ram"), "{e}");
    assert_eq!(e.record, Some(RecordKind::MemSize));
    assert!(transcode::reencode(&built.bytes, Mode::RecomputeXbzrle, &read()).is_err());
    // The encoder refuses a mapped-ram MEM_SIZE by itself too.
    let events = decode_all(&built.bytes, read()).unwrap();
    let ms = events
        .iter()
        .find(|(_, e)| matches!(e, Event::MemSize(_)))
        .unwrap();
    assert!(Encoder::new(12).event(&ms.1, &mut Vec::new()).is_err());

    // From RAM: an ordinary stream without the capability, with the same RAM.
    let out = transcode::reencode(&built.bytes, Mode::FromRam, &read()).unwrap();
    let plain = decode_all(&out, Default::default()).unwrap();
    assert!(plain.iter().all(|(_, e)| match e {
        Event::Configuration(c) => c.capabilities.is_none(),
        Event::MemSize(ms) => ms.mapped_ram.is_empty(),
        _ => true,
    }));
    let a = transcode::rebuild(&built.bytes, &read()).unwrap();
    let b = transcode::rebuild(&out, &Default::default()).unwrap();
    for i in 0..2 {
        assert_eq!(a.sha256(i), b.sha256(i));
    }
    // x-ignore-shared stays announced.
    let mut spec = MappedRamFileSpec::small();
    spec.ignore_shared = true;
    let out = transcode::reencode(&spec.build().bytes, Mode::FromRam, &read()).unwrap();
    let cfg = decode_all(&out, Default::default()).unwrap();
    assert!(cfg.iter().any(|(_, e)| matches!(
        e,
        Event::Configuration(c) if c.capabilities.as_deref() == Some(&["x-ignore-shared"][..])
    )));
}
