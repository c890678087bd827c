//! Zero-page test over 1 GiB of resident pages ÷ a plain sequential read of the same bytes.
//!
//! Run: `cargo bench -p ramstream-codec --bench zero_page`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ramstream_codec::zero::{is_zero_page, is_zero_page_portable};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SET: usize = 1 << 30;

/// 1 GiB written with non-zero bytes first (so every page is resident, not the shared zero
/// page), then shaped by `shape`.
fn page_set(shape: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut buf = vec![0xa5u8; SET];
    // Keep the compiler from folding the writes into a `calloc` of untouched memory.
    black_box(&mut buf);
    buf.chunks_exact_mut(PAGE).for_each(shape);
    black_box(&mut buf);
    buf
}

/// Resident set size of this process, from /proc (Linux), for the report.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn count_zero(buf: &[u8], f: fn(&[u8]) -> bool) -> usize {
    buf.chunks_exact(PAGE).filter(|p| f(black_box(p))).count()
}

/// The baseline: OR of every u64 word (a plain sequential read of all bytes).
fn or_reduce(buf: &[u8]) -> u64 {
    buf.chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap()))
        .fold(0, |a, w| a | w)
}

fn best_of(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn bench(c: &mut Criterion) {
    let sets: [(&str, Vec<u8>); 4] = [
        ("zero", page_set(|p| p.fill(0))),
        // Non-zero somewhere in the 4th quarter (not at the pre-checked first/middle/last
        // byte): the test has to read 3/4 of each page.
        (
            "nonzero-late",
            page_set(|p| {
                p.fill(0);
                p[PAGE * 3 / 4 + 17] = 1;
            }),
        ),
        // First non-zero byte at offset 64 (the second cache line): no pre-check sample
        // sees it; the scan must stop in its first step.
        (
            "nonzero-at-64",
            page_set(|p| {
                p.fill(0);
                p[64] = 1;
            }),
        ),
        // Typical non-zero data: the three-byte pre-check answers at once.
        ("nonzero-random", page_set(|_| ())),
    ];
    println!("page sets built, RSS {} MiB", rss_mib());
    let mut ratios = Vec::new();
    for (name, buf) in &sets {
        let mut g = c.benchmark_group(format!("zero_page/{name}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Bytes(SET as u64));
        g.bench_function("is_zero_page", |b| b.iter(|| count_zero(buf, is_zero_page)));
        g.bench_function("portable", |b| {
            b.iter(|| count_zero(buf, is_zero_page_portable))
        });
        g.bench_function("baseline_or_reduce", |b| {
            b.iter(|| or_reduce(black_box(buf)))
        });
        g.finish();

        let (mut t_fast, mut t_portable, mut t_read) =
            (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            t_fast = t_fast.min(best_of(1, || {
                black_box(count_zero(buf, is_zero_page));
            }));
            t_portable = t_portable.min(best_of(1, || {
                black_box(count_zero(buf, is_zero_page_portable));
            }));
            t_read = t_read.min(best_of(1, || {
                black_box(or_reduce(black_box(buf)));
            }));
        }
        ratios.push(format!(
            "RATIO zero_page/{name}: is_zero_page {:.2} GB/s, portable {:.2} GB/s, sequential read {:.2} GB/s => \
             is_zero_page/read = {:.2}, portable/read = {:.2}",
            gbps(SET, t_fast),
            gbps(SET, t_portable),
            gbps(SET, t_read),
            t_read.as_secs_f64() / t_fast.as_secs_f64(),
            t_read.as_secs_f64() / t_portable.as_secs_f64(),
        ));
    }
    for r in ratios {
        println!("{r}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
