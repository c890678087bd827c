//! A cursor over borrowed input built on nom's streaming parsers: short input is
//! "incomplete", never an error.

use nom::number::streaming::{be_u16, be_u32, be_u64, be_u8};

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

fn needed(n: nom::Needed) -> usize {
    match n {
        nom::Needed::Size(s) => s.get(),
        nom::Needed::Unknown => 1,
    }
}

macro_rules! prim {
    ($name:ident, $ty:ty, $f:ident) => {
        pub(crate) fn $name(&mut self) -> PResult<$ty> {
            match $f::<&[u8], ()>(&self.input[self.pos..]) {
                Ok((_, v)) => {
                    self.pos += core::mem::size_of::<$ty>();
                    Ok(v)
                }
                Err(nom::Err::Incomplete(n)) => Err(Stop::Incomplete(needed(n))),
                Err(_) => Err(Stop::Incomplete(1)),
            }
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

    prim!(u8, u8, be_u8);
    prim!(u16, u16, be_u16);
    prim!(u32, u32, be_u32);
    prim!(u64, u64, be_u64);

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
        let (rest, out) = nom::bytes::streaming::take::<usize, &[u8], ()>(n)(
            &self.input[self.pos..],
        )
        .map_err(|e| match e {
            nom::Err::Incomplete(n) => Stop::Incomplete(needed(n)),
            _ => Stop::Incomplete(1),
        })?;
        let _ = rest;
        self.pos += n;
        Ok(out)
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
