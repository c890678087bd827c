//! The RAM digest section (SPEC.md §13) checked against guest memory: by the loader at EOF
//! under `DigestPolicy::Verify`/`Require`, and on request with `Loader::verify_digest`.
//! Matches, mismatches, a missing or malformed section, entries that are not MEM_SIZE's
//! blocks, and ballooned pages counted as zero without being read.

mod support;

use std::sync::atomic::Ordering;

use ramstream_codec::balloon::{BalloonMapKind, PageRun};
use ramstream_codec::extension::digest::{
    chunked_block, digest_block, BlockDigest, DigestAlgorithm, DigestSection,
};
use ramstream_codec::extension::ExtensionError;
use ramstream_codec::RecordKind;
use ramstream_migrate::{
    DigestError, DigestPolicy, Error, ErrorKind, Loader, LoaderEvent, LoaderOptions, RamBlockLayout,
};
use ramstream_spec::config::capability;
use ramstream_spec::extension::digest::DIGEST_SECTION_IDSTR;
use ramstream_spec::Dialect;
use support::*;

use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
/// `pc.ram` of 64 pages, `pc.bios` of 4.
const BLOCKS: [(&str, u64); 2] = [("pc.ram", 64 * PAGE as u64), ("pc.bios", 4 * PAGE as u64)];

fn guest() -> VecRam {
    let layout: Vec<_> = BLOCKS
        .iter()
        .map(|(n, l)| RamBlockLayout::new(*n, *l))
        .collect();
    VecRam::new(&layout)
}

fn opts(digest: DigestPolicy) -> LoaderOptions {
    let mut o = LoaderOptions::default().with_digest(digest);
    o.decoder.dialect = Dialect::RamstreamBalloonV1;
    o
}

/// The source's digest section for memory `blocks` (one `Vec` per block), with the
/// `ballooned` runs of each block counted as zero.
fn section_for(blocks: &[Vec<u8>], ballooned: &[&[PageRun]]) -> DigestSection {
    DigestSection {
        algorithm: DigestAlgorithm::Sha256Sparse,
        blocks: BLOCKS
            .iter()
            .zip(blocks)
            .zip(ballooned)
            .map(|(((idstr, len), mem), runs)| BlockDigest {
                idstr: idstr.to_string(),
                used_length: *len,
                sha256: digest_block(*len / PAGE as u64, PAGE, runs, |p, buf: &mut [u8]| {
                    let at = p as usize * PAGE;
                    buf.copy_from_slice(&mem[at..at + PAGE]);
                    Ok::<_, ()>(())
                })
                .unwrap(),
            })
            .collect(),
    }
}

/// The expected memory of [`ram_records`]: pages 3 and 9 of `pc.ram`, page 1 of `pc.bios`.
fn memory() -> Vec<Vec<u8>> {
    let mut ram = vec![0u8; 64 * PAGE];
    ram[3 * PAGE..4 * PAGE].fill(3);
    ram[9 * PAGE..10 * PAGE].fill(0x99);
    let mut bios = vec![0u8; 4 * PAGE];
    bios[PAGE..2 * PAGE].fill(0xb1);
    vec![ram, bios]
}

/// Header, configuration, `ram` START with MEM_SIZE and the pages of [`memory`], a device.
fn ram_records() -> StreamBuilder {
    let mut s = StreamBuilder::new(Some(vec![capability::RAMSTREAM_BALLOON_V1]), None);
    s.ram_start(&[
        block(BLOCKS[0].0, BLOCKS[0].1),
        block(BLOCKS[1].0, BLOCKS[1].1),
    ])
    .page(0, 3, &[3; PAGE])
    .zero(0, 9, 0x99)
    .page(1, 1, &[0xb1; PAGE])
    .end_part()
    .device(3, "timer", &[0, 0, 0, 0, 0, 0, 0, 1]);
    s
}

/// [`ram_records`], the digest section (id 4) with `body`, EOF; and the section's offset.
fn with_digest(body: &[u8]) -> (Vec<u8>, u64) {
    let mut s = ram_records();
    let at = s.out.len() as u64;
    s.device(4, DIGEST_SECTION_IDSTR, body).eof();
    (s.bytes(), at)
}

fn body(section: &DigestSection) -> Vec<u8> {
    let mut b = Vec::new();
    section.encode(&mut b).unwrap();
    b
}

/// Loads `stream` whole; the events' fingerprints (or the error) and the loader.
fn load(stream: &[u8], o: LoaderOptions) -> (Result<Vec<String>, Error>, Loader<VecRam>) {
    let mut loader = Loader::new(guest(), o);
    let r = drive_whole(&mut loader, stream, |_| unreachable!());
    (r, loader)
}

#[test]
fn verify_policy_checks_the_digest_at_eof() {
    let (stream, _) = with_digest(&body(&section_for(&memory(), &[&[], &[]])));
    let (r, loader) = load(&stream, opts(DigestPolicy::Verify));
    let events = r.unwrap();
    // The digest section is the loader's: only the timer is handed out.
    assert_eq!(events.iter().filter(|e| e.contains("device")).count(), 1);
    assert!(events.iter().any(|e| e.ends_with("Eof")), "{events:?}");
    let report = loader.digest_report().expect("verified at EOF");
    assert!(report.is_match() && report.blocks.len() == 2);
    assert_eq!(report.blocks[1].idstr, "pc.bios");
    assert_eq!(
        (loader.stats().devices, loader.ram().unwrap().contents(0)),
        (1, memory()[0].clone())
    );
}

#[test]
fn a_digest_that_differs_from_memory_is_refused_before_eof() {
    let mut section = section_for(&memory(), &[&[], &[]]);
    section.blocks[1].sha256[31] ^= 1;
    let (stream, at) = with_digest(&body(&section));
    for policy in [DigestPolicy::Verify, DigestPolicy::Require] {
        let (r, loader) = load(&stream, opts(policy));
        let e = r.unwrap_err();
        let ErrorKind::Digest(DigestError::Mismatch(check)) = &e.kind else {
            panic!("expected a mismatch, got {e}");
        };
        assert_eq!(check.idstr, "pc.bios");
        assert_ne!(check.expected, check.actual);
        assert_eq!(
            (e.offset, e.record, e.block.as_deref()),
            (at, Some(RecordKind::Device), Some("pc.bios"))
        );
        assert!(e.to_string().contains("refusing to resume"), "{e}");
        assert!(!loader.is_eof() && loader.digest_report().is_none());
    }
}

#[test]
fn require_refuses_a_stream_without_digest_and_verify_accepts_it() {
    let mut s = ram_records();
    let eof_at = s.out.len() as u64;
    s.eof();
    let stream = s.bytes();
    let (r, _) = load(&stream, opts(DigestPolicy::Require));
    let e = r.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Digest(DigestError::Missing)),
        "{e}"
    );
    assert_eq!((e.offset, e.record), (eof_at, Some(RecordKind::Eof)));
    let (r, loader) = load(&stream, opts(DigestPolicy::Verify));
    r.unwrap();
    assert!(loader.is_eof() && loader.digest_report().is_none());
}

#[test]
fn deliver_hands_the_section_out_and_verify_digest_checks_it_on_request() {
    let section = section_for(&memory(), &[&[], &[]]);
    let (stream, at) = with_digest(&body(&section));
    let mut loader = Loader::new(guest(), opts(DigestPolicy::Deliver));
    loader.finish(); // the whole stream is here: a device body may end where the input does
    let mut pos = 0;
    let mut got = None;
    loop {
        let p = loader.handle(&stream[pos..]).unwrap();
        pos += p.consumed;
        assert!(p.event.is_some(), "a finished loader never asks for more");
        match p.event {
            Some(LoaderEvent::Device(d)) if d.idstr == DIGEST_SECTION_IDSTR => {
                assert_eq!(loader.event_offset(), at);
                got = Some(DigestSection::decode(d.body).unwrap());
            }
            Some(LoaderEvent::Eof) => break,
            _ => {}
        }
    }
    let got = got.expect("the section is handed out");
    assert_eq!(got, section);
    assert!(loader.verify_digest(&got).unwrap().is_match());
    // A mismatch is in the report, not an error: the caller decides.
    let mut bad = got.clone();
    bad.blocks[0].sha256[0] ^= 0x80;
    let report = loader.verify_digest(&bad).unwrap();
    assert!(!report.is_match());
    let first = report.first_mismatch().unwrap();
    assert_eq!(first.idstr, "pc.ram");
    assert!(first
        .to_string()
        .starts_with("block \"pc.ram\": stream says"));
}

#[test]
fn entries_must_be_the_mem_size_blocks_in_order() {
    let good = section_for(&memory(), &[&[], &[]]);
    let mut short = good.clone();
    short.blocks.pop();
    let mut swapped = good.clone();
    swapped.blocks.swap(0, 1);
    let mut longer = good.clone();
    longer.blocks[1].used_length += PAGE as u64;
    for (section, want) in [
        (
            short,
            DigestError::BlockCount {
                section: 1,
                stream: 2,
            },
        ),
        (
            swapped,
            DigestError::BlockEntry {
                index: 0,
                idstr: "pc.bios".into(),
                used_length: 4 * PAGE as u64,
            },
        ),
        (
            longer,
            DigestError::BlockEntry {
                index: 1,
                idstr: "pc.bios".into(),
                used_length: 5 * PAGE as u64,
            },
        ),
    ] {
        let (stream, at) = with_digest(&body(&section));
        let (r, _) = load(&stream, opts(DigestPolicy::Verify));
        let e = r.unwrap_err();
        assert!(matches!(&e.kind, ErrorKind::Digest(k) if *k == want), "{e}");
        assert_eq!(e.offset, at);
    }
}

#[test]
fn a_malformed_or_newer_section_is_refused_where_it_is() {
    let mut newer = body(&section_for(&memory(), &[&[], &[]]));
    newer[0] = 2; // the body's version byte
    let (stream, at) = with_digest(&newer);
    let (r, _) = load(&stream, opts(DigestPolicy::Verify));
    let e = r.unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Digest(DigestError::Section(ExtensionError::DigestVersion {
                found: 2
            }))
        ),
        "{e}"
    );
    assert_eq!((e.offset, e.record), (at, Some(RecordKind::Device)));
    assert!(std::error::Error::source(&e).is_some());
    // Delivered, the same body is the caller's to judge: the loader does not look at it.
    let (r, _) = load(&stream, opts(DigestPolicy::Deliver));
    r.unwrap();
}

#[test]
fn ballooned_pages_count_as_zero_and_are_not_read() {
    // Page 9 of pc.ram is written, then pages 8..12 are ballooned: the loader zeroes page 9,
    // and the digest skips the run without reading it.
    let runs = [PageRun::new(8, 4)];
    let mut s = ram_records();
    s.part()
        .balloon(0, BalloonMapKind::FullMap, &runs)
        .end_part();
    let mut mem = memory();
    mem[0][9 * PAGE..10 * PAGE].fill(0);
    let section = section_for(&mem, &[&runs, &[]]);
    s.device(4, DIGEST_SECTION_IDSTR, &body(&section)).eof();
    let (r, loader) = load(&s.bytes(), opts(DigestPolicy::Verify));
    r.unwrap();
    assert!(loader.digest_report().unwrap().is_match());
    // The same digest, computed without the run, differs only if the page held data: here
    // it was zeroed, so the sparse digests agree.
    assert_eq!(section, section_for(&mem, &[&[], &[]]));
    let ram = loader.ram().unwrap();
    let before = ram.reads.load(Ordering::Relaxed);
    loader.verify_digest(&section).unwrap();
    let read = ram.reads.load(Ordering::Relaxed) - before;
    assert_eq!(
        read,
        64 - 4 + 4,
        "every page but the ballooned run is read once"
    );
}

#[test]
fn verify_digest_with_counts_the_callers_ballooned_pages_as_zero() {
    // The source counts page 3 of pc.ram ballooned (its balloon device said so, the stream
    // did not); the destination still holds the page's data until it discards it.
    let (stream, _) = with_digest(&body(&section_for(&memory(), &[&[], &[]])));
    let (r, loader) = load(&stream, opts(DigestPolicy::Deliver));
    r.unwrap();
    let mut src = memory();
    src[0][3 * PAGE..4 * PAGE].fill(0);
    let section = section_for(&src, &[&[PageRun::new(3, 1)], &[]]);
    assert!(!loader.verify_digest(&section).unwrap().is_match());
    let mut map = loader.balloon().clone();
    map.inflate(0, 3..4).unwrap();
    assert!(loader
        .verify_digest_with(&section, &map)
        .unwrap()
        .is_match());
}

#[test]
fn a_digest_check_before_mem_size_is_refused() {
    let loader: Loader<VecRam> = Loader::without_ram(LoaderOptions::default());
    let e = loader
        .verify_digest(&DigestSection {
            algorithm: DigestAlgorithm::Sha256Sparse,
            blocks: vec![],
        })
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Digest(DigestError::NoBlocks)),
        "{e}"
    );
}

/// [`section_for`] with the sha256-chunked algorithm (SPEC.md §13.7).
fn chunked_section_for(blocks: &[Vec<u8>], ballooned: &[&[PageRun]]) -> DigestSection {
    let mut s = section_for(blocks, ballooned);
    s.algorithm = DigestAlgorithm::Sha256Chunked;
    for ((b, mem), runs) in s.blocks.iter_mut().zip(blocks).zip(ballooned) {
        b.sha256 = chunked_block(b.used_length / PAGE as u64, PAGE, runs, |p, buf| {
            let at = p as usize * PAGE;
            buf.copy_from_slice(&mem[at..at + PAGE]);
            Ok::<_, ()>(())
        })
        .unwrap();
    }
    s
}

#[test]
fn a_chunked_digest_is_verified_and_a_wrong_one_refused() {
    let good = chunked_section_for(&memory(), &[&[], &[]]);
    assert_ne!(good, section_for(&memory(), &[&[], &[]]));
    let (stream, _) = with_digest(&body(&good));
    let (events, loader) = load(&stream, opts(DigestPolicy::Require));
    events.expect("a matching sha256-chunked digest loads");
    assert!(loader.digest_report().is_some_and(|r| r.is_match()));
    // One byte of pc.ram differs from what the source hashed: refused, naming the block.
    let mut other = memory();
    other[0][40 * PAGE] = 1;
    let bad = chunked_section_for(&other, &[&[], &[]]);
    let (stream, _) = with_digest(&body(&bad));
    let (events, _) = load(&stream, opts(DigestPolicy::Verify));
    let e = events.expect_err("a differing sha256-chunked digest is refused");
    assert!(
        matches!(&e.kind, ErrorKind::Digest(DigestError::Mismatch(c)) if c.idstr == "pc.ram"),
        "{e}"
    );
}
