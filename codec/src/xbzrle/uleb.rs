//! QEMU's "small" ULEB128: one byte for `0..=127`, two bytes for `128..=ULEB128_MAX`.
//!
//! The first byte carries the low seven bits with bit 7 set when a second byte follows; the
//! second byte carries bits 7..13 and must have bit 7 clear. Non-minimal two-byte forms such as
//! `90 00` (= 16) decode fine, as they do in QEMU.

use ramstream_spec::xbzrle::ULEB128_MAX;

/// Why a small ULEB128 could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UlebError {
    /// The input ended inside the number.
    Truncated,
    /// The second byte has bit 7 set (a third byte is not allowed).
    TooLong,
}

/// Writes `value` (at most [`ULEB128_MAX`]) at the start of `out` and returns the number of
/// bytes written, or `None` when the value is too large or `out` too short.
#[inline(always)]
pub(crate) fn put(out: &mut [u8], value: usize) -> Option<usize> {
    if value < 0x80 {
        *out.first_mut()? = value as u8;
        Some(1)
    } else if value <= ULEB128_MAX as usize {
        let [lo, hi, ..] = out else { return None };
        *lo = (value as u8 & 0x7f) | 0x80;
        *hi = (value >> 7) as u8;
        Some(2)
    } else {
        None
    }
}

/// Reads a small ULEB128 from the start of `input`; returns `(value, bytes used)`.
#[inline(always)]
pub(crate) fn get(input: &[u8]) -> Result<(usize, usize), UlebError> {
    match input {
        [b0, ..] if b0 & 0x80 == 0 => Ok((usize::from(*b0), 1)),
        [_, b1, ..] if b1 & 0x80 != 0 => Err(UlebError::TooLong),
        [b0, b1, ..] => Ok((usize::from(b0 & 0x7f) | (usize::from(*b1) << 7), 2)),
        _ => Err(UlebError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_value() {
        let mut buf = [0u8; 2];
        for v in 0..=ULEB128_MAX as usize {
            let n = put(&mut buf, v).unwrap();
            assert_eq!(n, if v < 128 { 1 } else { 2 });
            assert_eq!(get(&buf[..n]), Ok((v, n)));
        }
        assert_eq!(put(&mut buf, ULEB128_MAX as usize + 1), None);
        assert_eq!(put(&mut buf[..1], 200), None);
    }

    #[test]
    fn decoder_edge_cases() {
        assert_eq!(get(&[0x90, 0x00]), Ok((16, 2)));
        assert_eq!(get(&[0xff, 0x1f]), Ok((4095, 2)));
        assert_eq!(get(&[0x80, 0x80]), Err(UlebError::TooLong));
        assert_eq!(get(&[0x80]), Err(UlebError::Truncated));
        assert_eq!(get(&[]), Err(UlebError::Truncated));
    }
}
