//! Page contents for the generators: seeded patterns and sparse arbitrary edits.

use arbitrary::{Result as AResult, Unstructured};

/// A page of `len` bytes filled from `seed` (0 gives a zero page).
pub(super) fn pattern_page(len: usize, seed: u8) -> Vec<u8> {
    if seed == 0 {
        return vec![0; len];
    }
    let mut x = u32::from(seed) | 0x100;
    (0..len)
        .map(|i| {
            if seed & 1 == 0 && i % 64 < 32 {
                return seed;
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub(super) fn arbitrary_page(u: &mut Unstructured<'_>, len: usize) -> AResult<Vec<u8>> {
    let mut page = pattern_page(len, u.arbitrary()?);
    // Sparse edits: runs of new bytes at chosen places.
    for _ in 0..u.int_in_range(0..=16)? {
        let at = u.int_in_range(0..=len - 1)?;
        let run = u.int_in_range(1..=64usize)?.min(len - at);
        let fill: u8 = u.arbitrary()?;
        let bytes = u.bytes(run.min(u.len()))?;
        for (i, b) in page[at..at + run].iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(fill);
        }
    }
    Ok(page)
}
