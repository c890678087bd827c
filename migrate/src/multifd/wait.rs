//! Blocking helpers for a threaded multifd receiver (the `io` feature): the barrier at each
//! sync point, and a channel's read loop over a `std::io::Read`.

use std::io::Read;
use std::time::Duration;

use ramstream_codec::io::{ReadError, Step, StreamReader};
use ramstream_codec::StreamBuffer;

use super::channel::{ChannelLoadEvent, ChannelLoader};
use super::error::MultifdError;
use super::session::MultifdSession;
use crate::error::{Error, ErrorKind};
use crate::guest::GuestRam;
use crate::loader::Loader;

/// The read buffer of a channel: a packet header (1,344 bytes on x86, at most 4 KiB + 320
/// for 512 pages) and pages, read in large pieces.
const CHANNEL_BUFFER: usize = 1 << 20;

impl MultifdSession {
    /// Blocks until the main stream's MEM_SIZE record bound the block table; `false` if the
    /// migration was aborted first.
    pub fn wait_bound(&self) -> bool {
        self.wait_while(None, |s| !s.is_bound())
    }

    /// Blocks until every channel passed its SYNC for sync point `k`
    /// ([`MultifdSession::ready`]), at most `timeout`. Errors: a channel that ended short of
    /// it, the number of channels unknown, [`MultifdError::Aborted`],
    /// [`MultifdError::SyncTimeout`].
    pub fn wait_channels(&self, k: u64, timeout: Duration) -> Result<(), MultifdError> {
        let mut refused = None;
        let done = self.wait_while(Some(timeout), |s| match s.ready(k) {
            Ok(ready) => !ready,
            Err(e) => {
                refused = Some(e);
                false
            }
        });
        if let Some(e) = refused {
            return Err(e);
        }
        if done {
            return Ok(());
        }
        if self.is_aborted() {
            return Err(MultifdError::Aborted);
        }
        Err(MultifdError::SyncTimeout {
            needed: k,
            waiting: self.waiting_for(k),
        })
    }

    /// Blocks until a channel stopped at its k-th SYNC may go on
    /// ([`MultifdSession::may_continue`]); `false` if the migration was aborted first.
    pub fn wait_released(&self, k: u64) -> bool {
        self.wait_while(None, |s| !s.may_continue(k))
    }
}

impl<R: GuestRam> Loader<R> {
    /// At [`LoaderEvent::MultifdSync`](crate::LoaderEvent::MultifdSync): blocks until every
    /// channel reached the sync point (at most `timeout`), then releases it
    /// ([`Loader::release_sync`]), which lets the channels go on. On an error the session is
    /// aborted, so that the channels' threads stop too.
    pub fn sync_with_channels(&mut self, timeout: Duration) -> Result<(), Error> {
        let (Some(session), Some(k)) = (self.multifd().cloned(), self.pending_sync()) else {
            return self.release_sync();
        };
        if let Err(e) = session.wait_channels(k, timeout) {
            session.abort();
            return Err(Error::new(self.offset(), ErrorKind::Multifd(e)));
        }
        self.release_sync().inspect_err(|_| session.abort())
    }
}

/// Why [`ChannelLoader::receive_from`] stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelReceiveError {
    /// The channel's bytes (or the sync rules) were refused: the loader's error, with the
    /// channel id and the offset in the channel.
    Load(Error),
    /// Reading failed.
    Read(ReadError),
    /// The migration was aborted by the main stream or another channel, which have the
    /// error that stopped it.
    Aborted,
}

impl std::fmt::Display for ChannelReceiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelReceiveError::Load(e) => e.fmt(f),
            ChannelReceiveError::Read(e) => e.fmt(f),
            ChannelReceiveError::Aborted => MultifdError::Aborted.fmt(f),
        }
    }
}

impl std::error::Error for ChannelReceiveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChannelReceiveError::Load(e) => Some(e),
            ChannelReceiveError::Read(e) => Some(e),
            ChannelReceiveError::Aborted => None,
        }
    }
}

impl From<Error> for ChannelReceiveError {
    fn from(e: Error) -> Self {
        ChannelReceiveError::Load(e)
    }
}

impl From<ReadError> for ChannelReceiveError {
    fn from(e: ReadError) -> Self {
        ChannelReceiveError::Read(e)
    }
}

impl ChannelLoader {
    /// Loads the channel `input` gives into `ram` until it ends, on the calling thread (one
    /// per channel): waits for the main stream's MEM_SIZE, stops at each SYNC packet until the
    /// main stream released that sync point, and calls `on_event` with every event
    /// ([`ChannelLoadEvent::Admitted`] first). On an error, and when the input ends short of
    /// the sync rules, the session is aborted, so that the main stream and the other
    /// channels stop waiting.
    pub fn receive_from<R: GuestRam + ?Sized, I: Read>(
        &mut self,
        ram: &R,
        input: I,
        on_event: impl FnMut(&ChannelLoader, ChannelLoadEvent),
    ) -> Result<(), ChannelReceiveError> {
        self.receive_from_metered(ram, input, || (), |_, ()| {}, on_event)
    }

    /// [`ChannelLoader::receive_from`], also calling `on_batch(self, mark)` after every
    /// batch of bytes the loader took (its [`ChannelLoader::stats`] then count them), before
    /// it waits at a SYNC packet or reports an event; `mark` is what `mark()` returned just
    /// before the batch was handed to the loader. A caller times its channels with it
    /// (`mark` reads its clock: the engine reads none), e.g. a timeline that puts each
    /// channel's pages into the main stream's section they arrived in.
    ///
    /// ```no_run
    /// # use ramstream_migrate::GuestRam;
    /// # fn f<R: GuestRam>(loader: &mut ramstream_migrate::multifd::ChannelLoader,
    /// #      ram: &R,
    /// #      socket: std::net::TcpStream) -> Result<(), ramstream_migrate::multifd::ChannelReceiveError> {
    /// let mut timed = Vec::new();
    /// loader.receive_from_metered(
    ///     ram,
    ///     socket,
    ///     std::time::Instant::now,
    ///     |l, at| timed.push((at, l.stats().pages)),
    ///     |_, _| {},
    /// )
    /// # }
    /// ```
    pub fn receive_from_metered<R: GuestRam + ?Sized, I: Read, T>(
        &mut self,
        ram: &R,
        input: I,
        mut mark: impl FnMut() -> T,
        mut on_batch: impl FnMut(&ChannelLoader, T),
        mut on_event: impl FnMut(&ChannelLoader, ChannelLoadEvent),
    ) -> Result<(), ChannelReceiveError> {
        let session = self.session().clone();
        let mut reader =
            StreamReader::new(input, StreamBuffer::new(CHANNEL_BUFFER, CHANNEL_BUFFER));
        let r = reader.run(|w| {
            if w.ended {
                self.finish();
            }
            let at = mark();
            let p = self.handle(ram, w.bytes)?;
            on_batch(self, at);
            let step = match p.event {
                None => Step::NeedMore(p.consumed),
                Some(ChannelLoadEvent::Done) => Step::Done(p.consumed),
                Some(ChannelLoadEvent::NeedBlocks) => {
                    if !session.wait_bound() {
                        return Err(ChannelReceiveError::Aborted);
                    }
                    Step::Continue(p.consumed)
                }
                Some(ChannelLoadEvent::Sync(k)) => {
                    on_event(self, ChannelLoadEvent::Sync(k));
                    if !session.wait_released(k) {
                        return Err(ChannelReceiveError::Aborted);
                    }
                    return Ok(Step::Continue(p.consumed));
                }
                Some(e) => {
                    on_event(self, e);
                    Step::Continue(p.consumed)
                }
            };
            if let Step::Done(_) = step {
                on_event(self, ChannelLoadEvent::Done);
            }
            Ok(step)
        });
        if r.is_err() {
            session.abort();
        }
        r
    }
}
