//! Blocking IO around the engines (the `io` feature): [`Loader::receive_from`] loads a
//! stream from a `std::io::Read`, [`Source::send_to`] sends one into a `std::io::Write`.
//!
//! The engines stay sans-IO; these helpers are the IO layer a VMM would otherwise write
//! itself. Receiving goes through the codec's one read loop, [`StreamReader`] over a
//! [`StreamBuffer`] (both re-exported here): page payloads are written into guest memory
//! straight from the read buffer, device state is handed to the caller borrowing it. Sending reads the clock (`Instant::now()`) and sleeps through
//! the bandwidth limit's waits, which the [`Source`] itself never does.

use std::io::{self, Read, Write};
use std::thread;
use std::time::Instant;

pub use ramstream_codec::io::{ReadError, Step, StreamReader, Window};
pub use ramstream_codec::{ItemTooLarge, StreamBuffer};

use crate::error::Error;
use crate::guest::GuestRam;
use crate::loader::{Loader, LoaderEvent};
use crate::source::{DirtyPageSource, Source, Transmit};

impl<R: GuestRam> Loader<R> {
    /// Loads the stream `input` gives until the loader is done
    /// ([`LoaderEvent::Done`]: at the end of the input after EOF, or after the
    /// VMDESCRIPTION), calling `on_event` with the loader and every other event:
    /// [`LoaderEvent::RamNeeded`] (call [`Loader::provide_ram`]),
    /// [`LoaderEvent::Device`] (borrowing the read buffer), [`LoaderEvent::Eof`], ...
    ///
    /// Reads through a [`StreamBuffer::for_limits`] of the decoder's limits; use
    /// [`Loader::receive_with`] to choose the buffer or to read its counters. Errors reach
    /// the caller through `E::from`: the loader's ([`Error`]: a malformed or refused
    /// stream, or one cut short), and reading's ([`ReadError`], with the stream offset).
    ///
    /// While it waits for input under a verifying [`DigestPolicy`](crate::DigestPolicy) it
    /// hashes written chunks ahead ([`Loader::hash_ahead`]), so that the check at EOF is short.
    ///
    /// ```
    /// # use ramstream_migrate::{GuestRam, PageAddr, RamBlockLayout};
    /// # struct NoRam(Vec<RamBlockLayout>);
    /// # impl GuestRam for NoRam {
    /// #     type Error = std::io::Error;
    /// #     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
    /// #     fn read_page(&self, _: PageAddr, _: &mut [u8]) -> std::io::Result<()> { Ok(()) }
    /// #     fn write_page(&self, _: PageAddr, _: &[u8]) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// use ramstream_migrate::{Loader, LoaderEvent, LoaderOptions};
    ///
    /// // Any `Read`: a socket, a file, here a slice holding a stream without RAM.
    /// let input: &[u8] = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
    /// let mut loader = Loader::new(NoRam(vec![]), LoaderOptions::default());
    /// let mut events = Vec::new();
    /// loader.receive_from(input, |_loader, event| {
    ///     events.push(format!("{event:?}"));
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?;
    /// assert_eq!(events.len(), 2);
    /// assert!(events[0].starts_with("Configuration") && events[1] == "Eof");
    ///
    /// // Cut short: the loader's error, at the offset where the stream stops making sense.
    /// let mut loader = Loader::new(NoRam(vec![]), LoaderOptions::default());
    /// let err = loader
    ///     .receive_from(&input[..20], |_, _| Ok::<_, Box<dyn std::error::Error>>(()))
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("at offset 0x8"), "{err}");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_from<I: Read, E>(
        &mut self,
        input: I,
        on_event: impl FnMut(&mut Self, LoaderEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<ReadError> + From<Error>,
    {
        let buffer = StreamBuffer::for_limits(&self.options().decoder.limits);
        self.receive_with(&mut StreamReader::new(input, buffer), on_event)
    }

    /// [`Loader::receive_from`] through the caller's reader and buffer: afterwards (also
    /// after an error) [`StreamReader::buffer`] says how many bytes were read and the most
    /// it held at once.
    pub fn receive_with<I: Read, E>(
        &mut self,
        reader: &mut StreamReader<I>,
        mut on_event: impl FnMut(&mut Self, LoaderEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<ReadError> + From<Error>,
    {
        reader.run(|w| {
            if w.ended {
                self.finish();
            }
            let p = self.handle(w.bytes)?;
            Ok(match p.event {
                None => {
                    // Waiting for input: keep the running digest the EOF check uses.
                    if self.options().digest != crate::DigestPolicy::Deliver {
                        self.hash_ahead(Self::HASH_AHEAD_PAGES)?;
                    }
                    Step::NeedMore(p.consumed)
                }
                Some(LoaderEvent::Done) => Step::Done(p.consumed),
                Some(event) => {
                    on_event(self, event)?;
                    Step::Continue(p.consumed)
                }
            })
        })
    }
}

impl Source {
    /// Runs the source against `out` until it asks to stop the guest
    /// ([`Transmit::StopGuest`]) or the stream is complete ([`Transmit::Done`]), and
    /// returns that (or any other [`Transmit`] this helper does not handle).
    ///
    /// Blocking, with the time read here: each poll is made at `Instant::now()` into a
    /// buffer of its own; what it produced is written to `out` and reported sent; a
    /// [`Transmit::Wait`] sleeps until its instant; a [`Transmit::SyncDirty`] is answered
    /// from `dirty` ([`Source::sync_dirty`]). `out` is flushed before returning. Call it
    /// again after [`Source::handle_stopped`] to send the rest.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use ramstream_migrate::{DirtyPageSource, GuestRam, PageAddr, PageRun, RamBlockLayout};
    /// use ramstream_migrate::{Source, SourceOptions, Transmit};
    ///
    /// /// Two pages of guest RAM, all zero, that nobody writes.
    /// struct Idle(Vec<RamBlockLayout>);
    /// impl GuestRam for Idle {
    ///     type Error = std::io::Error;
    ///     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
    ///     fn read_page(&self, _: PageAddr, buf: &mut [u8]) -> std::io::Result<()> {
    ///         buf.fill(0);
    ///         Ok(())
    ///     }
    ///     fn write_page(&self, _: PageAddr, _: &[u8]) -> std::io::Result<()> { Ok(()) }
    /// }
    /// impl DirtyPageSource for Idle {
    ///     type Error = Infallible;
    ///     fn take_dirty(&mut self, _: usize, _: &mut dyn FnMut(PageRun)) -> Result<(), Infallible> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let ram = Idle(vec![RamBlockLayout::new("pc.ram", 2 * 4096)]);
    /// let mut source = Source::new(ram.layout(), SourceOptions::default())?;
    /// let mut out = Vec::new();
    /// assert_eq!(source.send_to(&ram, &mut Idle(vec![]), &mut out)?, Transmit::StopGuest);
    /// source.handle_stopped(std::time::Instant::now(), &mut Vec::new())?; // no devices
    /// assert_eq!(source.send_to(&ram, &mut Idle(vec![]), &mut out)?, Transmit::Done);
    /// assert_eq!(source.stats().sent, out.len() as u64);
    /// assert!(ramstream_codec::decode_all(&out, Default::default()).is_ok());
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_to<G, D, W>(
        &mut self,
        ram: &G,
        dirty: &mut D,
        out: &mut W,
    ) -> Result<Transmit, SendError>
    where
        G: GuestRam + ?Sized,
        D: DirtyPageSource + ?Sized,
        W: Write + ?Sized,
    {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let now = Instant::now();
            match self.poll_transmit(now, ram, &mut buf)? {
                Transmit::Send { bytes } => {
                    let offset = self.stats().sent;
                    out.write_all(&buf)
                        .map_err(|source| SendError::Write { offset, source })?;
                    self.handle_sent(bytes);
                }
                Transmit::Wait(until) => thread::sleep(until.saturating_duration_since(now)),
                Transmit::SyncDirty => self.sync_dirty(now, dirty)?,
                next => {
                    let offset = self.stats().sent;
                    out.flush()
                        .map_err(|source| SendError::Write { offset, source })?;
                    return Ok(next);
                }
            }
        }
    }
}

/// Why [`Source::send_to`] stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The source failed (a guest memory read, the dirty log, an encoder refusal): its
    /// error, with the stream offset.
    Source(Error),
    /// Writing to the output failed.
    Write {
        /// The stream offset of the first byte of the failed write: every byte reported
        /// sent before it.
        offset: u64,
        /// The writer's error.
        source: io::Error,
    },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Source(e) => e.fmt(f),
            SendError::Write { offset, source } => {
                write!(f, "write error at stream offset {offset:#x}: {source}")
            }
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Source(e) => e.source(),
            SendError::Write { source, .. } => Some(source),
        }
    }
}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        SendError::Source(e)
    }
}
