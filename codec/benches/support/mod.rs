//! Inputs shared by the XBZRLE benches: a deterministic filler and the page-pair shapes.

use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Bytes of new pages (and as many of old pages).
pub const SET: usize = 512 << 20;

/// xorshift64*: fast, deterministic filler.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn random_set(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; SET];
    for w in buf.chunks_exact_mut(8) {
        w.copy_from_slice(&rng.next().to_ne_bytes());
    }
    black_box(&mut buf);
    buf
}

/// Derives a new page from its old page, in place.
pub type Shape = fn(&mut Rng, &mut [u8]);

/// The page-pair shapes: name and how to derive a new page from its old page.
pub fn shapes() -> [(&'static str, Shape); 4] {
    [
        ("identical", |_, _| ()),
        // ~1 %: two runs of 20 bytes at random places.
        ("1pct-runs", |rng, p| {
            for _ in 0..2 {
                let at = rng.below(PAGE - 20);
                p[at..at + 20].iter_mut().for_each(|b| *b = !*b);
            }
        }),
        // ~10 %: 410 single bytes at random places.
        ("10pct-scattered", |rng, p| {
            for _ in 0..PAGE / 10 {
                let at = rng.below(PAGE);
                p[at] = !p[at];
            }
        }),
        // Every byte changed: overflow.
        ("random", |rng, p| {
            for w in p.chunks_exact_mut(8) {
                let x = u64::from_ne_bytes(w.try_into().unwrap())
                    ^ (rng.next() | 0x0101_0101_0101_0101);
                w.copy_from_slice(&x.to_ne_bytes());
            }
        }),
    ]
}

pub fn derive(old: &[u8], shape: Shape) -> Vec<u8> {
    let mut new = old.to_vec();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    new.chunks_exact_mut(PAGE).for_each(|p| shape(&mut rng, p));
    black_box(&mut new);
    new
}

/// memcpy of `new` onto `dst`, page by page: the baseline the benches divide by.
pub fn copy_set(new: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(PAGE).zip(new.chunks_exact(PAGE)) {
        d.copy_from_slice(black_box(s));
    }
}

/// Wall time of one call.
pub fn time(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}
