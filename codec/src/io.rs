//! Reading a stream from a `std::io::Read` (the `io` feature): [`StreamReader`], the one
//! loop that fills a [`StreamBuffer`] and hands the unread bytes to a decoder, a loader or
//! any other consumer.
//!
//! The codec itself stays sans-IO: this module only moves bytes from a reader into the
//! buffer. The consumer is a closure called with the unread [`Window`]; it decodes what it
//! can, borrowing the window for the duration of the call (page payloads, device bodies),
//! and answers with a [`Step`]: how many bytes it used, and whether it needs more input,
//! can go on, or is done. When the reader reaches its end, the next window says so
//! ([`Window::ended`]): the consumer calls `finish()` on its decoder, so that a stream
//! cut short becomes the decoder's error rather than a wait for more.

use std::io::{self, Read};

use crate::buffer::{ItemTooLarge, StreamBuffer};
use crate::decoder::{Decoder, Status};
use crate::error::Error;
use crate::event::Event;

/// The unread bytes handed to a [`StreamReader`]'s consumer.
#[derive(Clone, Copy, Debug)]
pub struct Window<'w> {
    /// The bytes read and not yet consumed.
    pub bytes: &'w [u8],
    /// The stream offset of `bytes[0]`, counted from the reader's first byte.
    pub offset: u64,
    /// The reader has reached its end: `bytes` are all there is. Call `finish()` on the
    /// decoder (or loader) before decoding them.
    pub ended: bool,
}

/// What a [`StreamReader`]'s consumer did with a [`Window`]: each variant carries how many
/// bytes from the window's front it used (dropped before the next call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// It used this many bytes and may have more to do with the rest: call again.
    Continue(usize),
    /// It used this many bytes and the rest holds only part of the next item: read more,
    /// then call again.
    NeedMore(usize),
    /// It used this many bytes and the stream is complete: stop.
    Done(usize),
}

/// Why a [`StreamReader`] stopped, on its side: reading failed, an item did not fit, or
/// the input ended while the consumer wanted more. The consumer's own errors (the
/// decoder's, the loader's) are the caller's error type, which takes these with `From`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// The reader failed (other than `Interrupted`, which is retried).
    Io {
        /// The stream offset of the byte the failed read would have given: every byte read
        /// before it.
        offset: u64,
        /// The reader's error.
        source: io::Error,
    },
    /// The item at the offset is larger than the buffer may grow.
    ItemTooLarge(ItemTooLarge),
    /// The input ended and the consumer, told so, still asked for more: the stream ended
    /// early. (A decoder that was told to `finish` refuses a short stream itself.)
    EndedEarly {
        /// The stream offset of the unconsumed bytes.
        offset: u64,
    },
}

impl ReadError {
    /// The stream offset the error is about.
    pub fn offset(&self) -> u64 {
        match self {
            ReadError::Io { offset, .. } | ReadError::EndedEarly { offset } => *offset,
            ReadError::ItemTooLarge(e) => e.offset,
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io { offset, source } => {
                write!(f, "read error at stream offset {offset:#x}: {source}")
            }
            ReadError::ItemTooLarge(e) => e.fmt(f),
            ReadError::EndedEarly { offset } => {
                write!(f, "at offset {offset:#x}: the input ended inside an item")
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io { source, .. } => Some(source),
            ReadError::ItemTooLarge(e) => Some(e),
            ReadError::EndedEarly { .. } => None,
        }
    }
}

impl From<ItemTooLarge> for ReadError {
    fn from(e: ItemTooLarge) -> Self {
        ReadError::ItemTooLarge(e)
    }
}

/// A stream arriving from a [`Read`]er, through a [`StreamBuffer`]: the one read loop of
/// every streaming caller (a raw [`Decoder`] with [`StreamReader::decode`], the migration
/// loader, the reference receiver).
///
/// [`StreamReader::run`] calls the consumer with the unread [`Window`] until it says
/// [`Step::Done`]; whenever it says [`Step::NeedMore`], the reader compacts the buffer,
/// grows it if needed (up to its cap) and reads once more (retrying `Interrupted`). The
/// buffer's counters ([`StreamBuffer::bytes_read`], [`StreamBuffer::high_water`]) stay
/// readable after an error.
///
/// ```
/// use ramstream_codec::io::StreamReader;
/// use ramstream_codec::{Decoder, StreamBuffer};
///
/// // Header, configuration, EOF: any `Read` will do (a socket, a file, a slice).
/// let stream: &[u8] = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut reader = StreamReader::new(stream, StreamBuffer::new(16, 1 << 10));
/// let mut dec = Decoder::new(Default::default());
/// let mut kinds = Vec::new();
/// reader
///     .decode(&mut dec, |offset, event, raw| {
///         kinds.push((offset, format!("{:?}", event.kind()), raw.len()));
///         Ok::<_, Box<dyn std::error::Error>>(())
///     })
///     .unwrap();
/// assert_eq!(kinds[1], (8, "Configuration".into(), 18));
/// assert_eq!(reader.buffer().bytes_read(), 27);
///
/// // The same stream cut short: the decoder, told that the input ended, refuses it.
/// let mut reader = StreamReader::new(&stream[..20], StreamBuffer::new(16, 1 << 10));
/// let err = reader
///     .decode(&mut Decoder::new(Default::default()), |_, _, _| Ok::<_, Box<dyn std::error::Error>>(()))
///     .unwrap_err();
/// assert!(err.to_string().starts_with("at offset 0x8 (configuration section)"), "{err}");
/// ```
#[derive(Debug)]
pub struct StreamReader<R> {
    reader: R,
    buffer: StreamBuffer,
    ended: bool,
}

impl<R: Read> StreamReader<R> {
    /// Reads `reader` through `buffer`.
    pub fn new(reader: R, buffer: StreamBuffer) -> Self {
        StreamReader {
            reader,
            buffer,
            ended: false,
        }
    }

    /// The buffer: its window, offset and counters.
    pub fn buffer(&self) -> &StreamBuffer {
        &self.buffer
    }

    /// Whether the reader has reached its end.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// Takes the reader back; bytes read and not consumed are dropped.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Calls `step` with the unread window until it returns [`Step::Done`], reading more
    /// whenever it returns [`Step::NeedMore`]. The first call gets what is buffered (at
    /// first nothing).
    ///
    /// Errors: the consumer's, as it returned them; and this reader's [`ReadError`]s
    /// through `E::from`: a failed read, an item larger than the buffer's cap, or
    /// [`Step::NeedMore`] after a window that said [`Window::ended`].
    ///
    /// # Panics
    ///
    /// If `step` says it used more bytes than the window held.
    pub fn run<E: From<ReadError>>(
        &mut self,
        mut step: impl FnMut(Window<'_>) -> Result<Step, E>,
    ) -> Result<(), E> {
        loop {
            let window = Window {
                bytes: self.buffer.window(),
                offset: self.buffer.offset(),
                ended: self.ended,
            };
            match step(window)? {
                Step::Continue(n) => self.buffer.consume(n),
                Step::Done(n) => {
                    self.buffer.consume(n);
                    return Ok(());
                }
                Step::NeedMore(n) => {
                    self.buffer.consume(n);
                    self.fill()?;
                }
            }
        }
    }

    /// Decodes the stream with `decoder` until it is done, calling `on_event` with each
    /// event's stream offset, the event (borrowing the buffer) and the event's bytes as they
    /// arrived. The decoder is told when the input ends ([`Decoder::finish`]); its errors
    /// reach the caller through `E::from`, as do the reader's.
    pub fn decode<E>(
        &mut self,
        decoder: &mut Decoder,
        mut on_event: impl FnMut(u64, Event<'_>, &[u8]) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<ReadError> + From<Error>,
    {
        self.run(|w| {
            if w.ended {
                decoder.finish();
            }
            let at = decoder.offset();
            match decoder.decode(w.bytes)? {
                Status::Event { event, consumed } => {
                    on_event(at, event, &w.bytes[..consumed])?;
                    Ok(Step::Continue(consumed))
                }
                Status::NeedMore { .. } => Ok(Step::NeedMore(0)),
                Status::Done => Ok(Step::Done(0)),
            }
        })
    }

    /// Reads once into the buffer's spare room; at the end of the input, marks it ended.
    fn fill(&mut self) -> Result<(), ReadError> {
        if self.ended {
            return Err(ReadError::EndedEarly {
                offset: self.buffer.offset(),
            });
        }
        let read_at = self.buffer.bytes_read();
        let spare = self.buffer.spare(1)?;
        let n = loop {
            match self.reader.read(spare) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: read_at,
                        source,
                    })
                }
                Ok(n) => break n,
            }
        };
        if n == 0 {
            self.ended = true;
        }
        self.buffer.filled(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives `data` `step` bytes at a time, interrupted before every read,
    /// then fails with `fail` if set.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
        fail: Option<io::ErrorKind>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.data.is_empty() {
                if let Some(k) = self.fail {
                    return Err(k.into());
                }
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    const STREAM: &[u8] = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";

    #[derive(Debug)]
    enum Stop {
        Read(ReadError),
        Decode(Error),
    }
    impl From<ReadError> for Stop {
        fn from(e: ReadError) -> Self {
            Stop::Read(e)
        }
    }
    impl From<Error> for Stop {
        fn from(e: Error) -> Self {
            Stop::Decode(e)
        }
    }

    fn decode(r: impl Read, buffer: StreamBuffer) -> (Result<Vec<(u64, usize)>, Stop>, u64) {
        let mut reader = StreamReader::new(r, buffer);
        let mut seen = Vec::new();
        let r = reader.decode(&mut Decoder::new(Default::default()), |at, _, raw| {
            seen.push((at, raw.len()));
            Ok::<_, Stop>(())
        });
        (r.map(|()| seen), reader.buffer().bytes_read())
    }

    #[test]
    fn any_read_size_gives_the_same_events() {
        for step in 1..STREAM.len() {
            let r = Trickle {
                data: STREAM,
                step,
                interrupt: false,
                fail: None,
            };
            let (events, read) = decode(r, StreamBuffer::new(1, 64));
            assert_eq!(events.unwrap(), [(0, 8), (8, 18), (26, 1)], "step {step}");
            assert_eq!(read, STREAM.len() as u64);
        }
    }

    #[test]
    fn a_failed_read_keeps_the_stream_offset() {
        let r = Trickle {
            data: &STREAM[..12],
            step: 5,
            interrupt: false,
            fail: Some(io::ErrorKind::ConnectionReset),
        };
        let (events, _) = decode(r, StreamBuffer::new(64, 64));
        match events.unwrap_err() {
            Stop::Read(e @ ReadError::Io { offset: 12, .. }) => assert_eq!(
                e.to_string(),
                "read error at stream offset 0xc: connection reset"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_item_larger_than_the_cap_is_refused_at_its_offset() {
        let (events, _) = decode(STREAM, StreamBuffer::new(4, 16));
        match events.unwrap_err() {
            Stop::Read(ReadError::ItemTooLarge(e)) => {
                assert_eq!(e, ItemTooLarge { offset: 8, cap: 16 })
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_stream_is_the_decoders_error() {
        let (events, read) = decode(&STREAM[..20], StreamBuffer::new(64, 64));
        match events.unwrap_err() {
            Stop::Decode(e) => assert_eq!(e.offset, 8),
            other => panic!("{other:?}"),
        }
        assert_eq!(read, 20);
    }

    #[test]
    fn more_after_the_end_is_ended_early() {
        let mut reader = StreamReader::new(&STREAM[..3], StreamBuffer::new(64, 64));
        let mut ends = 0;
        let r = reader.run(|w| {
            ends += usize::from(w.ended);
            Ok::<_, ReadError>(Step::NeedMore(w.bytes.len().min(1)))
        });
        assert!(
            matches!(r, Err(ReadError::EndedEarly { offset: 2 })),
            "{r:?}"
        );
        assert_eq!(ends, 1);
        assert!(reader.is_ended());
    }
}
