//! ZERO records taken a run at a time (`Decoder::peek_zero_run`) load exactly as the same
//! records one by one: the same memory, statistics, accesses and errors. Fed a byte at a
//! time, the loader never holds a whole next record after a ZERO, so it loads them one by
//! one; fed whole, it takes the runs.

mod support;

use std::sync::atomic::Ordering;

use ramstream_codec::balloon::{BalloonMapKind, PageRun};
use ramstream_codec::{PageAddr, RecordKind};
use ramstream_migrate::{GuestRam, LoadStats, Loader, LoaderOptions, RamBlockLayout, ZeroPages};
use ramstream_spec::config::capability;
use ramstream_spec::Dialect;
use support::*;

const PAGE: usize = 4096;
/// Pages of `pc.ram`: more than one run's worth (4,096).
const PAGES: u64 = 10_000;

fn blocks() -> Vec<ramstream_codec::RamBlock> {
    vec![
        block("pc.ram", PAGES * PAGE as u64),
        block("pc.bios", 4 * PAGE as u64),
    ]
}

fn guest() -> VecRam {
    VecRam::new(&[
        RamBlockLayout::new("pc.ram", PAGES * PAGE as u64),
        RamBlockLayout::new("pc.bios", 4 * PAGE as u64),
    ])
}

fn opts(zero_pages: ZeroPages) -> LoaderOptions {
    let mut o = LoaderOptions::default();
    o.decoder.dialect = Dialect::RamstreamBalloonV1;
    o.zero_pages = zero_pages;
    o
}

/// What a load did: its outcome (error offset, kind, record, block), statistics, memory
/// and counted accesses.
#[derive(Debug, PartialEq)]
struct Outcome {
    error: Option<(u64, String, Option<RecordKind>, Option<String>)>,
    stats: LoadStats,
    memory: Vec<(String, String)>,
    accesses: [u64; 3],
}

fn load(stream: &[u8], zero_pages: ZeroPages, ram: VecRam, bytewise: bool) -> Outcome {
    let mut loader = Loader::new(ram, opts(zero_pages));
    let len = stream.len();
    let r = drive(
        &mut loader,
        stream,
        || if bytewise { 1 } else { len },
        |_| unreachable!(),
    );
    let stats = loader.stats().clone();
    let ram = loader.into_ram().unwrap();
    ram.check_guards();
    Outcome {
        error: r
            .err()
            .map(|e| (e.offset, format!("{:?}", e.kind), e.record, e.block)),
        stats,
        memory: ram.digests(),
        accesses: [
            ram.reads.load(Ordering::Relaxed),
            ram.writes.load(Ordering::Relaxed),
            ram.zeroes.load(Ordering::Relaxed),
        ],
    }
}

/// Loads `stream` whole and a byte at a time under every zero-page policy; they must agree.
fn both_ways(stream: &[u8], ram: impl Fn() -> VecRam) -> Vec<Outcome> {
    let mut out = Vec::new();
    for zp in [
        ZeroPages::SkipUnwritten,
        ZeroPages::ZeroIfNonZero,
        ZeroPages::Always,
    ] {
        let whole = load(stream, zp, ram(), false);
        let bytewise = load(stream, zp, ram(), true);
        assert_eq!(whole, bytewise, "{zp:?}");
        out.push(whole);
    }
    out
}

fn stream() -> StreamBuilder {
    let mut s = StreamBuilder::new(Some(vec![capability::RAMSTREAM_BALLOON_V1]), None);
    s.ram_start(&blocks());
    s
}

fn zeros(s: &mut StreamBuilder, block: usize, first: u64, count: u64) {
    let addr = PageAddr::of_page(block, first, PAGE);
    s.enc.zeros(addr, count, 0, &mut s.out).unwrap();
}

#[test]
fn runs_over_written_and_unwritten_pages_load_as_records_one_by_one() {
    let mut s = stream();
    for p in [0u64, 1, 63, 64, 65, 4095, 4096, 4097, 9999] {
        s.page(0, p, &[p as u8 | 1; PAGE]);
    }
    s.page(1, 2, &[9; PAGE]);
    // Every page of pc.ram zero (runs longer than one step), then pc.bios.
    zeros(&mut s, 0, 0, PAGES);
    zeros(&mut s, 1, 0, 4);
    // Written again, and a shorter run over part of it.
    s.page(0, 70, &[3; PAGE]).page(0, 71, &[3; PAGE]);
    zeros(&mut s, 0, 69, 2);
    s.end_part().eof();
    let out = both_ways(&s.bytes(), guest);
    let skip = &out[0];
    assert_eq!(skip.error, None);
    assert_eq!(skip.stats.pages, 12);
    // Only the written pages are zeroed: 9 + 1, then page 70.
    assert_eq!(skip.stats.zero_written, 11);
    assert_eq!(skip.stats.zero_skipped, PAGES + 4 + 2 - 11);
    assert_eq!(skip.accesses, [0, 12, 11]);
    // Memory: all zero but page 71.
    let expect = guest();
    expect
        .write_page(PageAddr::of_page(0, 71, PAGE), &[3; PAGE])
        .unwrap();
    assert_eq!(skip.memory, expect.digests());
    // The other policies leave the same memory.
    assert!(out.iter().all(|o| o.memory == skip.memory));
}

#[test]
fn a_ballooned_page_inside_a_run_is_refused_at_its_record() {
    let mut s = stream();
    s.balloon(0, BalloonMapKind::FullMap, &[PageRun::new(100, 5)])
        .page(0, 10, &[1; PAGE]);
    zeros(&mut s, 0, 0, 300);
    let out = both_ways(&s.bytes(), guest);
    let (_, kind, record, block) = out[0].error.clone().expect("refused");
    assert_eq!(kind, "PageOfBallooned { page: 100 }");
    assert_eq!(
        (record, block.as_deref()),
        (Some(RecordKind::Zero), Some("pc.ram"))
    );
    // The pages before the ballooned one were loaded.
    assert_eq!(out[0].stats.zero_written + out[0].stats.zero_skipped, 100);
}

#[test]
fn a_failed_zeroing_inside_a_run_is_reported_at_its_record() {
    let mut s = stream();
    for p in [5u64, 3000, 5000] {
        s.page(0, p, &[2; PAGE]);
    }
    zeros(&mut s, 0, 0, PAGES);
    s.end_part().eof();
    let bytes = s.bytes();
    let out = both_ways(&bytes, || {
        guest().failing_zero_at(PageAddr::of_page(0, 3000, PAGE))
    });
    let (offset, kind, record, _) = out[0].error.clone().expect("the zeroing failed");
    assert!(kind.contains("Injected"), "{kind}");
    assert_eq!(record, Some(RecordKind::Zero));
    // The offset is that of page 3000's ZERO record.
    let rec = &bytes[offset as usize..offset as usize + 9];
    assert_eq!(
        u64::from_be_bytes(rec[..8].try_into().unwrap()),
        (3000 * PAGE as u64) | 0x22
    );
}
