//! Negative tests, one per refusal rule of the loader, each with its typed error; and the
//! receive policy's positive cases (ZERO skipping, XBZRLE onto the page held, balloon
//! release).

mod support;

use ramstream_codec::balloon::{BalloonMapKind, PageRun};
use ramstream_codec::{ErrorKind as CodecKind, PageAddr, RecordKind};
use ramstream_migrate::{
    Error, ErrorKind, GuestRam, LayoutMismatch, Loader, LoaderEvent, LoaderOptions, RamBlockLayout,
    ZeroPages,
};
use ramstream_spec::config::capability;
use ramstream_spec::Dialect;
use support::*;

use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;

fn layout(blocks: &[(&str, u64)]) -> Vec<RamBlockLayout> {
    blocks
        .iter()
        .map(|(n, l)| RamBlockLayout::new(*n, *l))
        .collect()
}

/// `pc.ram` of 64 pages and `pc.bios` of 4 pages.
fn two_blocks() -> Vec<ramstream_codec::RamBlock> {
    vec![
        block("pc.ram", 64 * PAGE as u64),
        block("pc.bios", 4 * PAGE as u64),
    ]
}

fn guest() -> VecRam {
    VecRam::new(&layout(&[
        ("pc.ram", 64 * PAGE as u64),
        ("pc.bios", 4 * PAGE as u64),
    ]))
}

/// Loads `stream` into `ram` in one piece; the error if any, and the memory.
fn load(ram: VecRam, opts: LoaderOptions, stream: &[u8]) -> (Result<(), Error>, VecRam) {
    let mut loader = Loader::new(ram, opts);
    let r = drive_whole(&mut loader, stream, |_| unreachable!()).map(|_| ());
    let ram = loader.into_ram().unwrap();
    ram.check_guards();
    (r, ram)
}

fn balloon_opts() -> LoaderOptions {
    let mut o = LoaderOptions::default();
    o.decoder.dialect = Dialect::RamstreamBalloonV1;
    o
}

fn balloon_stream() -> StreamBuilder {
    StreamBuilder::new(Some(vec![capability::RAMSTREAM_BALLOON_V1]), None)
}

#[test]
fn a_valid_stream_loads() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 3, &[3; PAGE])
        .page(1, 0, &[9; PAGE])
        .zero(0, 4, 0x11)
        .end_part()
        .device(3, "timer", b"\0\0\0\0\0\0\0\x01")
        .eof();
    let (r, ram) = load(guest(), LoaderOptions::default(), &s.bytes());
    r.unwrap();
    let b0 = ram.contents(0);
    assert!(b0[3 * PAGE..4 * PAGE].iter().all(|&b| b == 3));
    assert!(b0[4 * PAGE..5 * PAGE].iter().all(|&b| b == 0x11));
    assert!(b0[..3 * PAGE]
        .iter()
        .chain(&b0[5 * PAGE..])
        .all(|&b| b == 0));
    assert!(ram.contents(1)[..PAGE].iter().all(|&b| b == 9));
}

#[test]
fn mem_size_with_a_block_the_guest_lacks_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&[block("pc.ram", 64 * PAGE as u64), block("m1", PAGE as u64)]);
    let (r, ram) = load(guest(), LoaderOptions::default(), &s.bytes());
    let e = r.unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Layout(LayoutMismatch::UnknownBlock { idstr, used_length: 4096 }) if idstr == "m1"),
        "{e}"
    );
    assert_eq!(
        (e.record, e.block.as_deref()),
        (Some(RecordKind::MemSize), Some("m1"))
    );
    assert_eq!(ram.writes.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn mem_size_with_another_length_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&[
        block("pc.ram", 32 * PAGE as u64),
        block("pc.bios", 4 * PAGE as u64),
    ]);
    let e = load(guest(), LoaderOptions::default(), &s.bytes())
        .0
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Layout(LayoutMismatch::LengthMismatch {
                stream: 0x20000,
                guest: 0x40000,
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(e.block.as_deref(), Some("pc.ram"));
}

#[test]
fn a_guest_block_the_stream_does_not_send_is_refused_unless_allowed() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&[block("pc.ram", 64 * PAGE as u64)])
        .end_part()
        .eof();
    let e = load(guest(), LoaderOptions::default(), &s.bytes())
        .0
        .unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Layout(LayoutMismatch::BlockNotSent { idstr }) if idstr == "pc.bios"),
        "{e}"
    );
    let opts = LoaderOptions::default().with_allow_unsent_blocks(true);
    load(guest(), opts, &s.bytes()).0.unwrap();
}

#[test]
fn blocks_are_matched_by_idstr_not_order() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&[
        block("pc.bios", 4 * PAGE as u64),
        block("pc.ram", 64 * PAGE as u64),
    ])
    .page(0, 1, &[5; PAGE])
    .page(1, 1, &[6; PAGE])
    .end_part()
    .eof();
    let (r, ram) = load(guest(), LoaderOptions::default(), &s.bytes());
    r.unwrap();
    assert_eq!(ram.contents(1)[PAGE], 5, "pc.bios is the guest's block 1");
    assert_eq!(ram.contents(0)[PAGE], 6, "pc.ram is the guest's block 0");
}

#[test]
fn a_later_mem_size_that_changes_the_blocks_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks()).end_part().part().mem_size(&[
        block("pc.ram", 64 * PAGE as u64),
        block("pc.bios", 8 * PAGE as u64),
    ]);
    let e = load(guest(), LoaderOptions::default(), &s.bytes())
        .0
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Layout(LayoutMismatch::Changed)),
        "{e}"
    );
    // The same list again is fine.
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .end_part()
        .part()
        .mem_size(&two_blocks())
        .end_part()
        .eof();
    load(guest(), LoaderOptions::default(), &s.bytes())
        .0
        .unwrap();
}

#[test]
fn provided_ram_with_another_layout_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks()).end_part().eof();
    let mut loader = Loader::without_ram(LoaderOptions::default());
    let e = drive_whole(&mut loader, &s.bytes(), |_| {
        VecRam::new(&layout(&[("pc.ram", 64 * PAGE as u64)]))
    })
    .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Layout(LayoutMismatch::UnknownBlock { .. })
        ),
        "{e}"
    );
}

#[test]
fn feeding_past_ram_needed_without_ram_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 0, &[1; PAGE])
        .end_part()
        .eof();
    let bytes = s.bytes();
    let mut loader = Loader::<VecRam>::without_ram(LoaderOptions::default());
    let mut pos = 0;
    loop {
        let p = loader.handle(&bytes[pos..]).unwrap();
        pos += p.consumed;
        if let Some(LoaderEvent::RamNeeded(blocks)) = p.event {
            assert_eq!(blocks, layout(&[("pc.ram", 0x40000), ("pc.bios", 0x4000)]));
            break;
        }
    }
    let e = loader.handle(&bytes[pos..]).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::RamNotProvided), "{e}");
    let e = loader.handle(&bytes[pos..]).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Poisoned), "{e}");
}

#[test]
fn a_page_beyond_its_block_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks()).page(1, 4, &[1; PAGE]);
    let (r, ram) = load(guest(), LoaderOptions::default(), &s.bytes());
    let e = r.unwrap_err();
    assert!(
        matches!(
            e.stream_kind(),
            Some(CodecKind::OffsetBeyondBlock {
                offset: 0x4000,
                used_length: 0x4000
            })
        ),
        "{e}"
    );
    assert_eq!(
        (e.record, e.block.as_deref()),
        (Some(RecordKind::Page), Some("pc.bios"))
    );
    assert_eq!(ram.writes.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn pages_of_ballooned_runs_are_refused() {
    type Rec = fn(&mut StreamBuilder) -> &mut StreamBuilder;
    let cases: [(Rec, RecordKind); 3] = [
        (|s| s.page(0, 20, &[1; PAGE]), RecordKind::Page),
        (|s| s.zero(0, 20, 0), RecordKind::Zero),
        (|s| s.xbzrle(0, 20, &[0, 1, 7]), RecordKind::Xbzrle),
    ];
    for (record, kind) in cases {
        let mut s = balloon_stream();
        s.ram_start(&two_blocks())
            .balloon(0, BalloonMapKind::FullMap, &[PageRun::new(16, 8)])
            .page(0, 15, &[2; PAGE]) // before the run: fine
            .page(0, 24, &[2; PAGE]); // after it: fine
        record(&mut s);
        let (r, ram) = load(guest(), balloon_opts(), &s.bytes());
        let e = r.unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::PageOfBallooned { page: 20 }),
            "{e}"
        );
        assert_eq!((e.record, e.block.as_deref()), (Some(kind), Some("pc.ram")));
        assert_eq!(ram.writes.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}

#[test]
fn pages_that_become_ballooned_are_zeroed_if_written() {
    let mut s = balloon_stream();
    s.ram_start(&two_blocks())
        .page(0, 5, &[7; PAGE])
        .page(0, 40, &[8; PAGE])
        .balloon(0, BalloonMapKind::FullMap, &[PageRun::new(0, 32)])
        .end_part()
        .eof();
    let mut loader = Loader::new(guest(), balloon_opts());
    drive_whole(&mut loader, &s.bytes(), |_| unreachable!()).unwrap();
    assert_eq!(loader.stats().ballooned_pages, 32);
    assert!(loader.balloon().contains(0, 5));
    let ram = loader.into_ram().unwrap();
    assert!(ram.contents(0)[5 * PAGE..6 * PAGE].iter().all(|&b| b == 0));
    assert!(ram.contents(0)[40 * PAGE..41 * PAGE]
        .iter()
        .all(|&b| b == 8));
    // One page was written before the balloon took it: one zeroing, not 32.
    assert_eq!(ram.zeroes.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_multifd_flush_is_refused() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 0, &[1; PAGE])
        .multifd_flush();
    let e = load(guest(), LoaderOptions::default(), &s.bytes())
        .0
        .unwrap_err();
    assert!(
        matches!(e.stream_kind(), Some(CodecKind::PagesOnMultifdChannels)),
        "{e}"
    );
    assert_eq!(e.record, Some(RecordKind::MultifdFlush));
}

#[test]
fn another_target_page_size_is_refused() {
    let s = StreamBuilder::new(None, Some(16));
    let e = load(guest(), LoaderOptions::default(), &s.bytes())
        .0
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::PageSizeMismatch {
                stream: 65536,
                guest: 4096
            }
        ),
        "{e}"
    );
    assert_eq!(e.record, Some(RecordKind::Configuration));
}

#[test]
fn a_truncated_stream_is_refused_at_every_cut() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 3, &[3; PAGE])
        .zero(0, 4, 0)
        .xbzrle(0, 3, &[0, 1, 7])
        .end_part()
        .device(3, "timer", b"\0\0\0\0\0\0\0\x01")
        .eof();
    let bytes = s.bytes();
    // Every cut before the EOF byte.
    for cut in 0..bytes.len() {
        let (r, _) = load(guest(), LoaderOptions::default(), &bytes[..cut]);
        let e = r.unwrap_err();
        assert!(
            matches!(
                e.stream_kind(),
                Some(CodecKind::Truncated { .. } | CodecKind::EndedBeforeEof)
            ),
            "cut at {cut}: {e}"
        );
        assert!(e.offset <= cut as u64, "cut at {cut}: {e}");
    }
    load(guest(), LoaderOptions::default(), &bytes).0.unwrap();
}

#[test]
fn a_truncated_recorded_stream_is_refused() {
    let (v, stream) = vectors(&["idle-noos"]).pop().unwrap();
    for cut in [100, stream.len() / 2, stream.len() - 1000] {
        let e = load(VecRam::for_manifest(&v), options_for(&v), &stream[..cut])
            .0
            .unwrap_err();
        assert!(
            matches!(
                e.stream_kind(),
                Some(CodecKind::Truncated { .. } | CodecKind::EndedBeforeEof)
            ),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn a_bad_xbzrle_delta_is_refused_and_writes_nothing() {
    let mut s = StreamBuilder::new(None, None);
    // A literal run past the end of the page.
    s.ram_start(&two_blocks())
        .page(0, 1, &[4; PAGE])
        .xbzrle(0, 1, &[0x80, 0x20, 0x10, 1]);
    let (r, ram) = load(guest(), LoaderOptions::default(), &s.bytes());
    let e = r.unwrap_err();
    assert!(matches!(e.stream_kind(), Some(CodecKind::Xbzrle(_))), "{e}");
    assert_eq!(e.record, Some(RecordKind::Xbzrle));
    assert!(ram.contents(0)[PAGE..2 * PAGE].iter().all(|&b| b == 4));
}

#[test]
fn xbzrle_decodes_onto_the_page_the_guest_holds() {
    let old = [4u8; PAGE];
    let mut new = old;
    new[100..110].fill(9);
    new[4000] = 1;
    let mut delta = vec![0u8; PAGE];
    let n = match ramstream_codec::xbzrle::encode(&old, &new, &mut delta).unwrap() {
        ramstream_codec::xbzrle::Encoded::Delta(n) => n,
        other => panic!("{other:?}"),
    };
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 1, &old)
        .end_part()
        .part()
        .xbzrle(0, 1, &delta[..n])
        .end_part()
        .eof();
    let (r, ram) = load(guest(), LoaderOptions::default(), &s.bytes());
    r.unwrap();
    assert_eq!(ram.contents(0)[PAGE..2 * PAGE], new);
}

#[test]
fn a_failed_guest_write_is_reported_with_its_address() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 0, &[1; PAGE])
        .page(1, 2, &[1; PAGE])
        .end_part()
        .eof();
    let bad = PageAddr {
        block: 1,
        offset: 2 * PAGE as u64,
    };
    let (r, _) = load(
        guest().failing_write_at(bad),
        LoaderOptions::default(),
        &s.bytes(),
    );
    let e = r.unwrap_err();
    let ErrorKind::Guest { addr, source } = &e.kind else {
        panic!("{e}");
    };
    assert_eq!(*addr, bad);
    assert_eq!(
        source.downcast_ref::<VecRamError>(),
        Some(&VecRamError::Injected(bad))
    );
    assert_eq!(
        (e.record, e.block.as_deref()),
        (Some(RecordKind::Page), Some("pc.bios"))
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn zero_records_follow_the_zero_page_policy() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 1, &[1; PAGE])
        .zero(0, 1, 0) // written before: zeroed
        .zero(0, 2, 0) // never written
        .zero(1, 0, 0) // a ROM page the VMM prefilled
        .end_part()
        .eof();
    let prefilled = || {
        let g = guest();
        g.prefill(1, 0xee);
        g
    };
    let run = |policy| {
        let opts = LoaderOptions::default().with_zero_pages(policy);
        let (r, ram) = load(prefilled(), opts, &s.bytes());
        r.unwrap();
        ram
    };
    let skip = run(ZeroPages::SkipUnwritten);
    assert!(skip.contents(0)[PAGE..3 * PAGE].iter().all(|&b| b == 0));
    assert!(
        skip.contents(1)[..PAGE].iter().all(|&b| b == 0xee),
        "left as it was"
    );
    assert_eq!(skip.zeroes.load(std::sync::atomic::Ordering::Relaxed), 1);
    let check = run(ZeroPages::ZeroIfNonZero);
    assert!(check.contents(1)[..PAGE].iter().all(|&b| b == 0));
    assert!(check.contents(1)[PAGE..].iter().all(|&b| b == 0xee));
    assert_eq!(check.zeroes.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(check.reads.load(std::sync::atomic::Ordering::Relaxed), 3);
    let always = run(ZeroPages::Always);
    assert_eq!(always.zeroes.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(always.sha256(1), check.sha256(1));
}

#[test]
fn the_loader_is_poisoned_after_an_error() {
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks()).multifd_flush().end_part().eof();
    let bytes = s.bytes();
    let mut loader = Loader::new(guest(), LoaderOptions::default());
    let e = drive_whole(&mut loader, &bytes, |_| unreachable!()).unwrap_err();
    assert!(matches!(
        e.stream_kind(),
        Some(CodecKind::PagesOnMultifdChannels)
    ));
    let e = loader.handle(&bytes).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Poisoned), "{e}");
    assert!(loader.provide_ram(guest()).is_err());
}

#[test]
fn the_guest_ram_trait_forwards_through_references() {
    let ram = guest();
    let by_ref: &VecRam = &ram;
    let arc = std::sync::Arc::new(guest());
    let addr = PageAddr {
        block: 0,
        offset: 0,
    };
    by_ref.write_page(addr, &[3; PAGE]).unwrap();
    arc.write_page(addr, &[3; PAGE]).unwrap();
    assert_eq!(ram.sha256(0), arc.sha256(0));
    // A loader over a borrowed guest leaves the guest with the caller.
    let mut s = StreamBuilder::new(None, None);
    s.ram_start(&two_blocks())
        .page(0, 9, &[9; PAGE])
        .end_part()
        .eof();
    let mut loader = Loader::new(&ram, LoaderOptions::default());
    drive_whole(&mut loader, &s.bytes(), |_| unreachable!()).unwrap();
    drop(loader);
    assert_eq!(ram.contents(0)[9 * PAGE], 9);
}
