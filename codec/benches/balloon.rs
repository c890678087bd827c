//! The sender's scan over a 90%-ballooned 16 GiB guest (4 Mi pages of 4 KiB), SPEC.md §9.8:
//! visiting the unballooned pages through `BalloonMap::unballooned_ranges` (skipping by
//! runs) against testing one bit per page of a bitmap, as the 2016 patch's
//! `qemu_balloon_bitmap_test` did (~320 ms for 12 GB ballooned in its thread).
//!
//! Only the map is allocated, not guest memory. The "work" per unballooned page is adding its
//! index to a checksum, so both variants produce the same number.
//!
//! `cargo bench -p ramstream-codec --bench balloon` prints criterion's timings and then the
//! ratio measured in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ramstream_codec::balloon::BalloonMap;
use ramstream_codec::RamBlock;

const PAGES: u64 = 4 << 20; // 16 GiB / 4 KiB
/// Ballooned memory comes in chunks: the guest driver inflates in batches and the buddy
/// allocator hands out contiguous blocks. 1000-page chunks, 900 ballooned, 100 not.
const CHUNK: u64 = 1000;
const BALLOONED_PER_CHUNK: u64 = 900;

fn setup() -> (BalloonMap, Vec<u64>) {
    let blocks = [RamBlock {
        idstr: "pc.ram".into(),
        used_length: PAGES << 12,
        page_size: None,
        mr_addr: None,
    }];
    let mut map = BalloonMap::new(&blocks, 12);
    let mut bitmap = vec![0u64; (PAGES / 64) as usize];
    let mut start = 0;
    while start < PAGES {
        let end = (start + BALLOONED_PER_CHUNK).min(PAGES);
        map.inflate(0, start..end).unwrap();
        for p in start..end {
            bitmap[(p / 64) as usize] |= 1 << (p % 64);
        }
        start += CHUNK;
    }
    (map, bitmap)
}

/// Visits every unballooned page by runs: ballooned pages are skipped a run at a time.
fn scan_runs(map: &BalloonMap) -> u64 {
    let mut sum = 0u64;
    for r in map.unballooned_ranges(0, 0..PAGES) {
        for p in r {
            sum = sum.wrapping_add(black_box(p));
        }
    }
    sum
}

/// Only the unballooned ranges, without touching their pages: the scan's own cost.
fn ranges_only(map: &BalloonMap) -> u64 {
    map.unballooned_ranges(0, 0..PAGES)
        .map(|r| black_box(r.end - r.start))
        .sum()
}

/// Visits every page and tests its bit, as the 2016 patch did per page.
fn scan_bitmap(bitmap: &[u64]) -> u64 {
    let mut sum = 0u64;
    for p in 0..PAGES {
        if bitmap[(p / 64) as usize] >> (p % 64) & 1 == 0 {
            sum = sum.wrapping_add(black_box(p));
        }
    }
    sum
}

fn bench(c: &mut Criterion) {
    let (map, bitmap) = setup();
    assert_eq!(scan_runs(&map), scan_bitmap(&bitmap));
    let mut g = c.benchmark_group("balloon_scan_16GiB_90pct");
    g.bench_function("runs", |b| b.iter(|| scan_runs(black_box(&map))));
    g.bench_function("runs_ranges_only", |b| {
        b.iter(|| ranges_only(black_box(&map)))
    });
    g.bench_function("bitmap_per_page", |b| {
        b.iter(|| scan_bitmap(black_box(&bitmap)))
    });
    g.finish();
}

/// The best of `rounds` timings of `f`.
fn best(rounds: u32, mut f: impl FnMut() -> u64) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn ratio() {
    let (map, bitmap) = setup();
    let runs = best(20, || scan_runs(&map));
    let only = best(20, || ranges_only(&map));
    let bits = best(20, || scan_bitmap(&bitmap));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "balloon scan, 16 GiB at 90% ballooned ({} runs): runs {:.3} ms, ranges only {:.3} ms, \
         per-page bitmap {:.3} ms; bitmap/runs = {:.1}x, bitmap/ranges-only = {:.0}x",
        map.run_count(0),
        ms(runs),
        ms(only),
        ms(bits),
        bits.as_secs_f64() / runs.as_secs_f64(),
        bits.as_secs_f64() / only.as_secs_f64()
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    ratio();
    c.final_summary();
}
