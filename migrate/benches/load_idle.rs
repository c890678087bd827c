//! Loading an idle guest's stream: a 2 GiB block of which 16 pages hold data, the rest sent
//! as ZERO records (what a sender that knows its never-written pages writes, SPEC.md §7.7),
//! into memory that was never written, so every ZERO record is skipped. The loader ÷ the
//! codec decoding the same bytes event by event (the work a loader does at least, were it
//! to take the records one at a time).
//!
//! Run: `cargo bench -p ramstream-migrate --bench load_idle`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ramstream_codec::{DecoderOptions, Encoder, Events, PageAddr, RamBlock, SectionHeader, Status};
use ramstream_migrate::{GuestRam, Loader, LoaderOptions, RamBlockLayout};

const PAGE: usize = 4096;
const BLOCK: u64 = 2 << 30;

/// Memory that takes writes and forgets them: the loader's own cost is what is timed.
struct NullRam(Vec<RamBlockLayout>);

impl GuestRam for NullRam {
    type Error = Infallible;
    fn layout(&self) -> &[RamBlockLayout] {
        &self.0
    }
    fn read_page(&self, _: PageAddr, buf: &mut [u8]) -> Result<(), Infallible> {
        buf.fill(0);
        Ok(())
    }
    fn write_page(&self, _: PageAddr, data: &[u8]) -> Result<(), Infallible> {
        black_box(data);
        Ok(())
    }
}

/// Header, `ram` START with MEM_SIZE, 16 PAGEs, then ZERO records for every other page.
fn stream() -> (Vec<u8>, u64) {
    let mut enc = Encoder::new(12);
    let mut s = Vec::new();
    enc.header(&mut s);
    enc.section_header(&SectionHeader::ram_start(2), &mut s)
        .unwrap();
    enc.mem_size(&[RamBlock::new("pc.ram", BLOCK)], &mut s)
        .unwrap();
    for p in 0..16u64 {
        let mut v = Vec::new();
        enc.page(PageAddr::of_page(0, p, PAGE), &[p as u8 + 1; PAGE], &mut v)
            .unwrap();
        s.extend_from_slice(&v);
    }
    let zeros = BLOCK / PAGE as u64 - 16;
    enc.zeros(PageAddr::of_page(0, 16, PAGE), zeros, 0, &mut s)
        .unwrap();
    enc.eos(&mut s);
    (s, zeros)
}

fn options() -> DecoderOptions {
    DecoderOptions::default().with_require_configuration(false)
}

fn load(stream: &[u8]) -> u64 {
    let ram = NullRam(vec![RamBlockLayout::new("pc.ram", BLOCK)]);
    let mut loader = Loader::new(ram, LoaderOptions::default().with_decoder(options()));
    let p = loader.handle(black_box(stream)).unwrap();
    assert_eq!((p.consumed, p.event), (stream.len(), None));
    loader.stats().zero_skipped
}

fn decode(stream: &[u8]) -> usize {
    let mut d = ramstream_codec::Decoder::new(options());
    let mut pos = 0;
    let mut n = 0;
    while pos < stream.len() {
        match d.decode(black_box(&stream[pos..])).unwrap() {
            Status::Event { event, consumed } => {
                black_box(event);
                pos += consumed;
                n += 1;
            }
            s => panic!("{s:?}"),
        }
    }
    n
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let (stream, zeros) = stream();
    assert_eq!(load(&stream), zeros);
    // Events::new is what a tool reading a whole stream uses; the decode loop above is the
    // same decoder without its iterator.
    assert!(Events::new(&stream, options()).count() > zeros as usize);
    let mut g = c.benchmark_group("load_idle/2GiB");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("loader", |b| b.iter(|| load(&stream)));
    g.bench_function("baseline_decode_events", |b| b.iter(|| decode(&stream)));
    g.finish();

    let (mut t_load, mut t_dec) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        t_load = t_load.min(time(|| {
            load(&stream);
        }));
        t_dec = t_dec.min(time(|| {
            decode(&stream);
        }));
    }
    println!(
        "RATIO load_idle/2GiB ({} bytes, {zeros} ZERO records): loader {:.1} ns/record ({:.2} GB/s), decoding the events {:.1} ns/record => loader/decode = {:.3}",
        stream.len(),
        t_load.as_secs_f64() * 1e9 / zeros as f64,
        stream.len() as f64 / t_load.as_secs_f64() / 1e9,
        t_dec.as_secs_f64() * 1e9 / zeros as f64,
        t_load.as_secs_f64() / t_dec.as_secs_f64(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
