//! A cursor over borrowed input: short input is "incomplete" (with the count of missing
//! bytes), never an error.

use crate::error::{Error, ErrorKind};

/// Why a parse stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// At least this many more bytes are needed.
    Incomplete(usize),
    /// The input is wrong.
    Fail(Box<Error>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(Box::new(e))
    }
}

pub(crate) type PResult<T> = Result<T, Stop>;

/// A big-endian integer read of the type's width.
macro_rules! prim {
    ($name:ident, $ty:ty) => {
        pub(crate) fn $name(&mut self) -> PResult<$ty> {
            let bytes = self.array::<{ core::mem::size_of::<$ty>() }>()?;
            Ok(<$ty>::from_be_bytes(bytes))
        }
    };
}

/// A read position in `input`, whose first byte is at stream offset `base`.
pub(crate) struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(input: &'a [u8], base: u64) -> Self {
        Cursor {
            input,
            pos: 0,
            base,
        }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The stream offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The unread input.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.input[self.pos..]
    }

    prim!(u8, u8);
    prim!(u16, u16);
    prim!(u32, u32);
    prim!(u64, u64);

    /// The next `N` bytes, copied (for the integer reads).
    fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let rest = self.rest();
        match rest.first_chunk::<N>() {
            Some(a) => {
                self.pos += N;
                Ok(*a)
            }
            None => Err(Stop::Incomplete(N - rest.len())),
        }
    }

    /// The next byte without consuming it.
    pub(crate) fn peek_u8(&self) -> PResult<u8> {
        self.input.get(self.pos).copied().ok_or(Stop::Incomplete(1))
    }

    /// Whether at least `n` unread bytes are present.
    pub(crate) fn has(&self, n: usize) -> bool {
        self.input.len() - self.pos >= n
    }

    /// `n` bytes, borrowed.
    pub(crate) fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let rest = self.rest();
        match rest.get(..n) {
            Some(out) => {
                self.pos += n;
                Ok(out)
            }
            None => Err(Stop::Incomplete(n - rest.len())),
        }
    }

    /// A counted string: u8 length, then that many bytes, which must be UTF-8.
    pub(crate) fn counted_str(&mut self, what: &'static str) -> PResult<&'a str> {
        let at = self.offset();
        let len = self.u8()? as usize;
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes)
            .map_err(|_| Stop::from(Error::new(at, ErrorKind::NotUtf8 { what })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_says_how_many_bytes_are_missing() {
        let mut c = Cursor::new(&[1, 2, 3], 0x10);
        assert!(matches!(c.u32(), Err(Stop::Incomplete(1))));
        assert!(matches!(c.take(5), Err(Stop::Incomplete(2))));
        assert_eq!(c.pos(), 0, "a short read consumes nothing");
        assert_eq!(c.u16().ok(), Some(0x0102));
        assert_eq!(c.offset(), 0x12);
        assert!(matches!(c.u64(), Err(Stop::Incomplete(7))));
        assert_eq!(c.u8().ok(), Some(3));
        assert!(matches!(c.u8(), Err(Stop::Incomplete(1))));
        assert!(matches!(c.peek_u8(), Err(Stop::Incomplete(1))));
    }

    #[test]
    fn integers_are_big_endian() {
        let bytes = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(
            Cursor::new(&bytes, 0).u64().ok(),
            Some(0x0102_0304_0506_0708)
        );
        assert_eq!(Cursor::new(&bytes, 0).u32().ok(), Some(0x0102_0304));
        let mut c = Cursor::new(&bytes, 0);
        assert_eq!(c.take(3).ok(), Some(&bytes[..3]));
        assert_eq!(c.rest(), &bytes[3..]);
        assert!(c.has(5) && !c.has(6));
    }
}
