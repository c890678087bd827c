//! Decoding a whole stream (the `balloon-v1` conformance vector, the codec's doc-test stream:
//! configuration, MEM_SIZE, ZERO and PAGE records, balloon runs, device sections), so mostly
//! record words, lengths and idstrs read through the codec's cursor ÷ a plain copy of the
//! same bytes.
//!
//! Run: `cargo bench -p ramstream-codec --bench decode`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ramstream_codec::{DecoderOptions, Events};
use ramstream_spec::Dialect;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Streams decoded per timed pass (so that a pass lasts long enough to time).
const REPEAT: usize = 5000;

/// The stream.
const STREAM: &[u8] = include_bytes!("../src/testdata/balloon-v1.bin");

fn decode_pass(stream: &[u8]) -> usize {
    let mut n = 0;
    for _ in 0..REPEAT {
        let opts = DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1);
        for item in Events::new(black_box(stream), opts) {
            black_box(item.unwrap());
            n += 1;
        }
    }
    n
}

fn copy_pass(stream: &[u8], dst: &mut [u8]) {
    for _ in 0..REPEAT {
        dst.copy_from_slice(black_box(stream));
        black_box(&mut *dst);
    }
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let stream = STREAM;
    let mut dst = vec![0u8; stream.len()];
    let events = decode_pass(stream) / REPEAT;
    let mut g = c.benchmark_group("decode/balloon-v1");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes((stream.len() * REPEAT) as u64));
    g.bench_function("decode", |b| b.iter(|| decode_pass(stream)));
    g.bench_function("baseline_memcpy", |b| {
        b.iter(|| copy_pass(stream, &mut dst))
    });
    g.finish();

    let (mut t_dec, mut t_cpy) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        t_dec = t_dec.min(time(|| {
            decode_pass(stream);
        }));
        t_cpy = t_cpy.min(time(|| copy_pass(stream, &mut dst)));
    }
    let bytes = (stream.len() * REPEAT) as f64;
    println!(
        "RATIO decode/balloon-v1 ({} bytes, {events} events): decode {:.0} ns/event, {:.2} GB/s, memcpy {:.2} GB/s => decode/memcpy = {:.3}",
        stream.len(),
        t_dec.as_secs_f64() * 1e9 / (events * REPEAT) as f64,
        bytes / t_dec.as_secs_f64() / 1e9,
        bytes / t_cpy.as_secs_f64() / 1e9,
        t_cpy.as_secs_f64() / t_dec.as_secs_f64(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
