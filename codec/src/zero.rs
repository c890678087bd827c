//! The zero-page test: is every byte of a page zero?
//!
//! QEMU sends an all-zero page as a ZERO record (fill byte `0x00`) instead of a PAGE. The
//! test reads the whole page in the common (zero) case, so it must run at memory bandwidth;
//! and it must answer a non-zero page in as few cache lines as possible. For pages of 256
//! bytes or more it first ORs the first 128 bytes in plain Rust (a page with data near its
//! start is answered in one or two cache lines, without the vector kernel's call), then
//! reads the middle and last word (far-apart cache lines, as QEMU's `buffer_is_zero`
//! samples first, middle and last byte), then OR-reduces the rest 256 bytes per step with
//! AVX-512 (128 with AVX2 or NEON, 64 in portable Rust), stopping at the first non-zero step.
//! The kernel is chosen once per process (`simd::zero_kernel`).

use crate::xbzrle::simd::{self, Isa};

/// Whether every byte of `page` is zero (true for an empty slice). Any length is accepted.
///
/// ```
/// use ramstream_codec::zero::is_zero_page;
/// let mut page = vec![0u8; 4096];
/// assert!(is_zero_page(&page));
/// page[4095] = 1;
/// assert!(!is_zero_page(&page));
/// ```
#[inline]
pub fn is_zero_page(page: &[u8]) -> bool {
    let len = page.len();
    if len < HEAD {
        return match page {
            [] => true,
            [first, .., last] if *first != 0 || *last != 0 => false,
            _ => is_zero_with(Isa::best(), page),
        };
    }
    // The first two cache lines, then the middle and last words, in plain loads: data near
    // a page's start is answered in one or two cache lines, and no line is read twice.
    if portable_chunks_are_zero(&page[..HEAD])
        && (word(page, (len / 2) & !7) | word(page, len - 8)) == 0
    {
        let rest = &page[HEAD..];
        let full = rest.len() & !63;
        let (body, tail) = rest.split_at(full);
        let body_zero = match simd::zero_kernel() {
            Some(kernel) => kernel(body),
            None => portable_chunks_are_zero(body),
        };
        body_zero && tail.iter().all(|&b| b == 0)
    } else {
        false
    }
}

/// Bytes the pre-check ORs in plain Rust before the vector kernel (two cache lines); pages
/// shorter than this go to the kernel after a two-byte check.
const HEAD: usize = 128;

/// The native-endian word at `at` (`at + 8 <= page.len()`: the callers' lengths are at
/// least [`HEAD`]).
#[inline(always)]
fn word(page: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&page[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// [`is_zero_page`] without the pre-check, in portable Rust only (for tests and benchmarks).
pub fn is_zero_page_portable(page: &[u8]) -> bool {
    is_zero_with(None, page)
}

fn is_zero_with(isa: Option<Isa>, page: &[u8]) -> bool {
    let full = page.len() & !63;
    let (body, tail) = page.split_at(full);
    let body_zero = isa
        .and_then(|isa| simd::chunks_are_zero(isa, body))
        .unwrap_or_else(|| portable_chunks_are_zero(body));
    body_zero && tail.iter().all(|&b| b == 0)
}

/// OR-reduces 64-byte chunks eight words at a time, stopping at the first non-zero chunk.
fn portable_chunks_are_zero(body: &[u8]) -> bool {
    body.chunks_exact(64).all(|chunk| {
        chunk
            .chunks_exact(8)
            .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([1; 8])))
            .fold(0, |acc, w| acc | w)
            == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_paths(page: &[u8]) -> bool {
        let want = page.iter().all(|&b| b == 0);
        assert_eq!(
            is_zero_page_portable(page),
            want,
            "portable, len {}",
            page.len()
        );
        for isa in Isa::ALL {
            if isa.available() {
                assert_eq!(
                    is_zero_with(Some(isa), page),
                    want,
                    "{isa:?}, len {}",
                    page.len()
                );
            }
        }
        assert_eq!(is_zero_page(page), want);
        want
    }

    #[test]
    fn zero_and_single_nonzero_bytes() {
        for len in [
            0usize, 1, 2, 3, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4095, 4096, 4097,
            65536,
        ] {
            let mut page = vec![0u8; len];
            assert!(all_paths(&page));
            for at in [0, 1, len / 2, len.saturating_sub(2), len.saturating_sub(1)]
                .into_iter()
                .chain((0..len).step_by(37))
            {
                if at < len {
                    page[at] = 0x80;
                    assert!(!all_paths(&page), "len {len}, nonzero at {at}");
                    page[at] = 0;
                }
            }
        }
    }

    #[test]
    fn unaligned_slices() {
        let buf = vec![0u8; 4096 + 64];
        for off in 0..64 {
            let page = &buf[off..off + 4096];
            assert!(all_paths(page));
        }
        let mut buf = buf;
        buf[3000] = 1;
        for off in 0..64 {
            assert!(!all_paths(&buf[off..off + 4096]));
        }
    }
}
