//! [`Events`]: the events of a complete stream held in memory, one at a time.

use core::iter::FusedIterator;

use crate::decoder::{Decoder, Status};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::options::DecoderOptions;

/// An iterator over the events of a complete stream held in memory: each item is the
/// stream offset where the event's record or section begins and the event, borrowing the
/// input. The decoder is told up front that the input is all there is, so a stream cut
/// short is an error ([`ErrorKind::Truncated`], [`ErrorKind::EndedBeforeEof`]).
///
/// It is the one loop over a whole input for every tool ([`decode_all`](crate::decode_all),
/// [`transcode`](crate::transcode), [`MappedRamFile`](crate::mapped_ram::MappedRamFile));
/// between items, [`Events::decoder`] gives what the decoder knows so far (the page size,
/// the blocks) and [`Events::consumed`] how far it got. After an error or the end of the
/// stream it yields nothing more. A receiver, whose input arrives in pieces, feeds a
/// [`Decoder`] through a [`StreamBuffer`](crate::StreamBuffer) instead.
///
/// ```
/// use ramstream_codec::{DecoderOptions, Event, Events};
///
/// // Header, configuration, EOF.
/// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut events = Events::new(stream, DecoderOptions::default());
/// let mut kinds = Vec::new();
/// while let Some(item) = events.next() {
///     let (offset, event) = item.unwrap();
///     if let Event::Configuration(c) = &event {
///         assert_eq!((offset, c.machine_type), (8, "pc-i440fx-7.2"));
///     }
///     kinds.push(format!("{:?}", event.kind()));
/// }
/// assert_eq!(kinds, ["Header", "Configuration", "Eof"]);
/// assert_eq!(events.consumed(), stream.len());
/// assert_eq!(events.decoder().page_size(), 4096);
///
/// // A stream cut short is an error at the offset of what is missing.
/// let err = Events::new(&stream[..12], DecoderOptions::default()).nth(1).unwrap().unwrap_err();
/// assert_eq!(err.offset, 8);
/// ```
#[derive(Clone, Debug)]
pub struct Events<'a> {
    input: &'a [u8],
    pos: usize,
    decoder: Decoder,
    finished: bool,
}

impl<'a> Events<'a> {
    /// The events of `input`, the whole stream from its first byte (`QEVM`), decoded with
    /// `opts`.
    pub fn new(input: &'a [u8], opts: DecoderOptions) -> Self {
        let mut decoder = Decoder::new(opts);
        decoder.finish();
        Events {
            input,
            pos: 0,
            decoder,
            finished: false,
        }
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// How many input bytes the events so far used: after the last event, the stream's
    /// length.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// The decoder, as the events so far left it: the page size in force, the blocks of
    /// the last MEM_SIZE, the options (with [`DecoderOptions::file_offset`]), the offset of
    /// the next byte.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<(u64, Event<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let at = self.decoder.offset();
        let input: &'a [u8] = self.input;
        let item = match self.decoder.decode(&input[self.pos..]) {
            Ok(Status::Event { event, consumed }) => {
                self.pos += consumed;
                return Some(Ok((at, event)));
            }
            Ok(Status::Done) => None,
            // Not reached: a decoder told that the input ended never asks for more.
            Ok(Status::NeedMore { needed }) => {
                Some(Err(Error::new(at, ErrorKind::Truncated { needed })))
            }
            Err(e) => Some(Err(e)),
        };
        self.finished = true;
        item
    }
}

impl FusedIterator for Events<'_> {}
