//! The XBZRLE decoder, with QEMU's exact acceptance rules (`xbzrle_decode_buffer`).

use super::{uleb, XbzrleError};

/// Walks `delta` with QEMU's checks, calling `apply(page_offset, literal)` for each literal
/// run in order. Returns the page offset just past the last literal run.
#[inline(always)]
fn walk(
    delta: &[u8],
    page_len: usize,
    mut apply: impl FnMut(usize, &[u8]),
) -> Result<usize, XbzrleError> {
    let len = delta.len();
    let mut i = 0;
    let mut d = 0;
    while i < len {
        // Zero run.
        if len - i < 2 {
            return Err(XbzrleError::TruncatedZeroRun {
                at: i,
                remaining: len - i,
            });
        }
        let (zrun, w) = uleb::get(&delta[i..]).map_err(|_| XbzrleError::BadRunLength { at: i })?;
        if i != 0 && zrun == 0 {
            return Err(XbzrleError::EmptyZeroRun { at: i });
        }
        if d + zrun > page_len {
            return Err(XbzrleError::ZeroRunPastPage {
                at: i,
                page_offset: d,
                run: zrun,
                page_len,
            });
        }
        i += w;
        d += zrun;
        // Literal run.
        if len - i < 2 {
            return Err(XbzrleError::TruncatedLiteralRun {
                at: i,
                remaining: len - i,
            });
        }
        let (n, w) = uleb::get(&delta[i..]).map_err(|_| XbzrleError::BadRunLength { at: i })?;
        if n == 0 {
            return Err(XbzrleError::EmptyLiteralRun { at: i });
        }
        if d + n > page_len {
            return Err(XbzrleError::LiteralRunPastPage {
                at: i,
                page_offset: d,
                run: n,
                page_len,
            });
        }
        i += w;
        let Some(literal) = delta.get(i..i + n) else {
            return Err(XbzrleError::LiteralRunPastInput {
                at: i - w,
                run: n,
                remaining: len - i,
            });
        };
        apply(d, literal);
        i += n;
        d += n;
    }
    Ok(d)
}

/// See [`super::decode`].
pub(super) fn decode(delta: &[u8], page: &mut [u8]) -> Result<(), XbzrleError> {
    walk(delta, page.len(), |at, literal| {
        if let Some(dst) = page.get_mut(at..at + literal.len()) {
            dst.copy_from_slice(literal);
        }
    })
    .map(|_| ())
}

/// See [`super::validate`].
pub(super) fn validate(delta: &[u8], page_len: usize) -> Result<(), XbzrleError> {
    walk(delta, page_len, |_, _| {}).map(|_| ())
}
