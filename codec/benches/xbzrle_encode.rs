//! XBZRLE encode over 512 MiB of old + 512 MiB of new resident pages, per kernel, ÷ memcpy of
//! the same new pages; the naive byte loop is the baseline encoder.
//!
//! Run: `cargo bench -p ramstream-codec --bench xbzrle_encode`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;
use support::{copy_set, derive, random_set, shapes, time, SET};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ramstream_codec::xbzrle::{encode_with, Encoded, Kernel};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use std::hint::black_box;
use std::time::Duration;

/// Encodes every page pair into one reused page-sized buffer (as QEMU does); returns the
/// total delta length so nothing is optimised away.
fn encode_set(kernel: Kernel, old: &[u8], new: &[u8], out: &mut [u8]) -> usize {
    old.chunks_exact(PAGE)
        .zip(new.chunks_exact(PAGE))
        .map(|(o, n)| match encode_with(kernel, o, n, out) {
            Ok(Encoded::Delta(len)) => len,
            Ok(Encoded::Overflow) => PAGE,
            _ => 0,
        })
        .sum()
}

fn gbps(t: Duration) -> f64 {
    SET as f64 / t.as_secs_f64() / 1e9
}

fn bench(c: &mut Criterion) {
    let old = random_set(1);
    let mut dst = random_set(2);
    let mut out = vec![0u8; PAGE];
    let kernels: Vec<Kernel> = [
        Kernel::Avx512,
        Kernel::Avx2,
        Kernel::Neon,
        Kernel::Word,
        Kernel::Naive,
    ]
    .into_iter()
    .filter(|k| k.is_available())
    .collect();
    let mut report = Vec::new();
    for (name, shape) in shapes() {
        let new = derive(&old, shape);
        let mut g = c.benchmark_group(format!("xbzrle_encode/{name}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(SET as u64));
        for &k in &kernels {
            g.bench_function(format!("{k:?}"), |b| {
                b.iter(|| encode_set(k, &old, &new, &mut out))
            });
        }
        g.bench_function("baseline_memcpy", |b| b.iter(|| copy_set(&new, &mut dst)));
        g.finish();

        // Ratios from interleaved runs over the same bytes (best of 3 each).
        let mut best = vec![Duration::MAX; kernels.len() + 1];
        for _ in 0..3 {
            for (i, &k) in kernels.iter().enumerate() {
                best[i] = best[i].min(time(|| {
                    black_box(encode_set(k, &old, &new, &mut out));
                }));
            }
            let last = kernels.len();
            best[last] = best[last].min(time(|| copy_set(&new, &mut dst)));
        }
        let memcpy = best[kernels.len()];
        let naive = best[kernels.len() - 1];
        let delta_bytes = encode_set(Kernel::Naive, &old, &new, &mut out);
        report.push(format!(
            "RATIO xbzrle_encode/{name} (delta+overflow bytes {:.1} % of page data): memcpy {:.2} GB/s",
            100.0 * delta_bytes as f64 / SET as f64,
            gbps(memcpy)
        ));
        for (i, k) in kernels.iter().enumerate() {
            report.push(format!(
                "RATIO xbzrle_encode/{name}/{k:?}: {:.2} GB/s => /memcpy = {:.2}, speed-up over naive = {:.2}",
                gbps(best[i]),
                memcpy.as_secs_f64() / best[i].as_secs_f64(),
                naive.as_secs_f64() / best[i].as_secs_f64(),
            ));
        }
    }
    for r in report {
        println!("{r}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
