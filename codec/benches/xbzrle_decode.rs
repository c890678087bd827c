//! XBZRLE decode of 512 MiB of pages (in place onto resident old pages) ÷ memcpy of the same
//! new pages onto them.
//!
//! Run: `cargo bench -p ramstream-codec --bench xbzrle_decode`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;
use support::{copy_set, derive, random_set, shapes, time, SET};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ramstream_codec::xbzrle::{decode, encode, Encoded};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use std::hint::black_box;
use std::time::Duration;

/// All deltas back to back, and each page's (start, end) in that buffer.
fn deltas(old: &[u8], new: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut all = Vec::new();
    let mut spans = Vec::new();
    let mut out = vec![0u8; PAGE];
    for (o, n) in old.chunks_exact(PAGE).zip(new.chunks_exact(PAGE)) {
        let len = match encode(o, n, &mut out) {
            Ok(Encoded::Delta(len)) => len,
            // Unchanged pages are not sent; an empty delta is a no-op for the decoder.
            Ok(Encoded::Unchanged) => 0,
            other => panic!("{other:?}"),
        };
        spans.push((all.len(), all.len() + len));
        all.extend_from_slice(&out[..len]);
    }
    (all, spans)
}

fn decode_set(all: &[u8], spans: &[(usize, usize)], pages: &mut [u8]) {
    for (page, &(a, b)) in pages.chunks_exact_mut(PAGE).zip(spans) {
        decode(black_box(&all[a..b]), page).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let old = random_set(1);
    let mut report = Vec::new();
    for (name, shape) in shapes()
        .into_iter()
        .filter(|(n, _)| ["1pct-runs", "10pct-scattered"].contains(n))
    {
        let new = derive(&old, shape);
        let (all, spans) = deltas(&old, &new);
        // The destination pages start as the old contents (decoding is idempotent, so
        // repeated iterations see the same work).
        let mut dst = old.clone();
        black_box(&mut dst);
        let mut g = c.benchmark_group(format!("xbzrle_decode/{name}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(SET as u64));
        g.bench_function("decode", |b| b.iter(|| decode_set(&all, &spans, &mut dst)));
        g.bench_function("baseline_memcpy", |b| b.iter(|| copy_set(&new, &mut dst)));
        g.finish();
        assert!(dst == new);

        let (mut t_dec, mut t_cpy) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            t_dec = t_dec.min(time(|| decode_set(&all, &spans, &mut dst)));
            t_cpy = t_cpy.min(time(|| copy_set(&new, &mut dst)));
        }
        report.push(format!(
            "RATIO xbzrle_decode/{name} (deltas {:.1} % of page data): decode {:.2} GB/s, memcpy {:.2} GB/s => decode/memcpy = {:.2}",
            100.0 * all.len() as f64 / SET as f64,
            SET as f64 / t_dec.as_secs_f64() / 1e9,
            SET as f64 / t_cpy.as_secs_f64() / 1e9,
            t_cpy.as_secs_f64() / t_dec.as_secs_f64(),
        ));
    }
    for r in report {
        println!("{r}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
