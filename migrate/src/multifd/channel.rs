//! The destination engine of one multifd channel: its bytes in, its pages written into the
//! guest RAM the main stream's loader writes into (SPEC.md §14).

use ramstream_codec::multifd::{
    ChannelDecoder, ChannelEvent, ChannelOptions, ChannelStatus, InitPacket,
};
use ramstream_codec::PageAddr;

use super::error::MultifdError;
use super::session::{Bound, MultifdSession};
use crate::error::{Error, ErrorKind};
use crate::guest::GuestRam;
use crate::loader::ZeroPages;

/// What a [`ChannelLoader`] hands back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelLoadEvent {
    /// The channel's initial packet was read and admitted to the migration (its uuid, an
    /// id not taken).
    Admitted(InitPacket),
    /// The channel passed its k-th SYNC packet (counted from 1), after its pages: it stops
    /// here until the main stream released sync point k
    /// ([`MultifdSession::may_continue`]; the `io` feature's `wait_released` blocks for it),
    /// then takes the next call.
    Sync(u64),
    /// The main stream's MEM_SIZE record has not been loaded yet, so the channel's packets
    /// cannot be framed (their header's length follows the main stream's page size) nor its
    /// blocks resolved: call again once [`MultifdSession::is_bound`].
    NeedBlocks,
    /// The channel ended at a packet boundary, after [`ChannelLoader::finish`], with every
    /// sync rule kept so far.
    Done,
}

/// What one [`ChannelLoader::handle`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelProgress {
    /// Input bytes used: drop them before the next call.
    pub consumed: usize,
    /// An event, or `None` when the rest of the input holds only part of the next item.
    pub event: Option<ChannelLoadEvent>,
}

/// Counters of one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelLoadStats {
    /// Bytes decoded, the initial packet included.
    pub bytes: u64,
    /// Packets (SYNC packets included).
    pub packets: u64,
    /// Normal pages written.
    pub pages: u64,
    /// Zero pages (9.0+ `zero-page-detection=multifd`).
    pub zero_pages: u64,
    /// Zero pages that wrote memory (the page held data); the rest were already zero.
    pub zero_written: u64,
    /// SYNC packets passed.
    pub syncs: u64,
}

/// The destination engine of one multifd channel (SPEC.md §14): feed it the channel's
/// bytes, it writes the pages into guest RAM and stops at each SYNC packet.
///
/// Sans-IO and incremental like the [`Loader`](crate::Loader): any split of the input gives
/// the same memory and events; page contents are copied straight from the input into guest
/// memory with [`GuestRam::write_page`]. It is made by [`MultifdSession::channel_loader`]
/// (or the loader's session, [`Loader::multifd`](crate::Loader::multifd)), and shares with
/// the main stream's loader the block table, the written-page bits (so that a ZERO record on
/// the main stream after a sync point zeroes a page a channel wrote before it) and the sync
/// counts. `ram` must be the same memory as the main loader's, in the same block numbering
/// (a clone of an `Arc`, or a `&` to it): channels run on threads of their own, so it is a
/// `GuestRam` whose `&self` writes are safe from several threads.
///
/// The order of a channel's items: [`ChannelLoadEvent::NeedBlocks`] until the main stream's
/// MEM_SIZE record is loaded; [`ChannelLoadEvent::Admitted`] for the initial packet; then
/// pages and, at each SYNC packet, [`ChannelLoadEvent::Sync`]\(k): the caller waits until
/// the main stream released sync point k, then calls again. After
/// [`ChannelLoader::finish`], [`ChannelLoadEvent::Done`] at the end.
///
/// Refused, with the channel's id and the offset in the channel
/// ([`ErrorKind::Channel`]): everything the codec's channel decoder refuses (compression,
/// device-state packets, an unknown block, a truncated packet, ...); another migration's
/// uuid, an id out of range or taken twice; being fed past a SYNC the main stream has not
/// released; pages after the SYNC that pairs with the main stream's last sync point; ending
/// before a sync point the main stream reached ([`MultifdError`]). Pages of ballooned runs
/// are not refused here (no QEMU writer has balloon records).
#[derive(Debug)]
pub struct ChannelLoader {
    session: MultifdSession,
    decoder: Option<ChannelDecoder>,
    id: Option<u8>,
    /// Stopped at this SYNC, until the main stream releases it.
    held: Option<u64>,
    /// Pages since the last SYNC.
    pending: u64,
    /// Past the SYNC of the main stream's last sync point: no page may follow.
    past_last: bool,
    finished: bool,
    poisoned: bool,
    stats: ChannelLoadStats,
    scratch: Vec<u8>,
}

impl MultifdSession {
    /// A loader for one more channel of this migration.
    pub fn channel_loader(&self) -> ChannelLoader {
        ChannelLoader::new(self.clone())
    }
}

impl ChannelLoader {
    pub(crate) fn new(session: MultifdSession) -> Self {
        ChannelLoader {
            session,
            decoder: None,
            id: None,
            held: None,
            pending: 0,
            past_last: false,
            finished: false,
            poisoned: false,
            stats: ChannelLoadStats::default(),
            scratch: Vec::new(),
        }
    }

    /// The migration this channel belongs to.
    pub fn session(&self) -> &MultifdSession {
        &self.session
    }

    /// The channel id, once its initial packet was read.
    pub fn id(&self) -> Option<u8> {
        self.id
    }

    /// The offset in the channel of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.decoder.as_ref().map_or(0, ChannelDecoder::offset)
    }

    /// What the channel did so far.
    pub fn stats(&self) -> &ChannelLoadStats {
        &self.stats
    }

    /// Says that the input has ended: a partial packet is then an error, and the end at a
    /// packet boundary [`ChannelLoadEvent::Done`].
    pub fn finish(&mut self) {
        self.finished = true;
        if let Some(d) = self.decoder.as_mut() {
            d.finish();
        }
    }

    /// The error `kind` at channel offset `at`, with the channel's id once known.
    fn error(&self, at: u64, kind: ErrorKind) -> Error {
        let e = Error::new(at, kind);
        match self.id {
            Some(id) => e.in_channel(id),
            None => e,
        }
    }

    /// Loads items from the front of `input` (the channel's unconsumed bytes) until one
    /// yields an event or the rest holds only part of an item. Pages go into `ram` during
    /// the call.
    pub fn handle<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        input: &[u8],
    ) -> Result<ChannelProgress, Error> {
        if self.poisoned {
            return Err(self.error(self.offset(), ErrorKind::Poisoned));
        }
        let r = self.step(ram, input);
        if r.is_err() {
            self.poisoned = true;
            self.session.abort();
        }
        r
    }

    fn step<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        input: &[u8],
    ) -> Result<ChannelProgress, Error> {
        if let Some(k) = self.held {
            if !self.session.may_continue(k) {
                let channel = self.id.unwrap_or_default();
                return Err(self.error(
                    self.offset(),
                    ErrorKind::Multifd(MultifdError::NotReleased { channel, sync: k }),
                ));
            }
            self.held = None;
            self.past_last = self.session.past_last(k);
        }
        let session = self.session.clone();
        let Some(bound) = session.bound() else {
            return Ok(ChannelProgress {
                consumed: 0,
                event: Some(ChannelLoadEvent::NeedBlocks),
            });
        };
        let dec = self.decoder.get_or_insert_with(|| {
            let mut d = ChannelDecoder::new(
                ChannelOptions::default()
                    .with_page_bits(bound.page_bits)
                    .with_limits(bound.limits.clone()),
            );
            d.set_blocks(bound.table.clone());
            d
        });
        if self.finished {
            dec.finish();
        }
        let mut pos = 0usize;
        loop {
            let dec = self.decoder.as_mut().expect("made above");
            let at = dec.offset();
            let status = dec.decode(&input[pos..]).map_err(|e| {
                let channel = e.channel.or(self.id);
                let e = Error::from(e);
                match channel {
                    Some(id) => e.in_channel(id),
                    None => e,
                }
            })?;
            let (event, consumed) = match status {
                ChannelStatus::NeedMore { .. } => {
                    return Ok(ChannelProgress {
                        consumed: pos,
                        event: None,
                    })
                }
                // Not reached: the table was given before the first packet.
                ChannelStatus::NeedBlocks => {
                    return Ok(ChannelProgress {
                        consumed: pos,
                        event: Some(ChannelLoadEvent::NeedBlocks),
                    })
                }
                ChannelStatus::Done => {
                    return self.end(at).map(|()| ChannelProgress {
                        consumed: pos,
                        event: Some(ChannelLoadEvent::Done),
                    })
                }
                ChannelStatus::Event { event, consumed } => (event, consumed),
            };
            pos += consumed;
            self.stats.bytes += consumed as u64;
            match event {
                ChannelEvent::Init(init) => {
                    self.session.admit(&init).map_err(|e| {
                        let e = Error::from(e);
                        e.in_channel(init.id)
                    })?;
                    self.id = Some(init.id);
                    return Ok(ChannelProgress {
                        consumed: pos,
                        event: Some(ChannelLoadEvent::Admitted(init)),
                    });
                }
                ChannelEvent::Packet(_) => self.stats.packets += 1,
                ChannelEvent::Page { addr, data } => {
                    self.before_page(at)?;
                    let g = guest(bound, addr);
                    ram.write_page(g, data)
                        .map_err(|e| self.guest_error(g, e, at, bound, addr))?;
                    bound.written.mark(addr);
                    self.stats.pages += 1;
                }
                ChannelEvent::Zero { addr } => {
                    self.before_page(at)?;
                    let g = guest(bound, addr);
                    if self.zero(ram, bound, addr, g, at)? {
                        self.stats.zero_written += 1;
                    }
                    self.stats.zero_pages += 1;
                }
                ChannelEvent::Sync => {
                    self.stats.syncs += 1;
                    self.pending = 0;
                    let k = self.stats.syncs;
                    if let Some(id) = self.id {
                        self.session.channel_synced(id, k);
                    }
                    self.held = Some(k);
                    return Ok(ChannelProgress {
                        consumed: pos,
                        event: Some(ChannelLoadEvent::Sync(k)),
                    });
                }
                ChannelEvent::PacketEnd => {}
            }
        }
    }

    /// Counts a page of the current epoch; refuses it after the main stream's last sync
    /// point.
    fn before_page(&mut self, at: u64) -> Result<(), Error> {
        self.pending += 1;
        if self.past_last {
            let last = self.session.last_sync_point().unwrap_or(self.stats.syncs);
            return Err(self.error(
                at,
                ErrorKind::Multifd(MultifdError::PagesAfterLastSync {
                    channel: self.id.unwrap_or_default(),
                    pages: self.pending,
                    last,
                }),
            ));
        }
        Ok(())
    }

    /// Applies a zero page under the session's [`ZeroPages`] policy; returns whether memory
    /// was written.
    fn zero<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        bound: &Bound,
        addr: PageAddr,
        g: PageAddr,
        at: u64,
    ) -> Result<bool, Error> {
        let page_size = 1usize << bound.page_bits;
        let write = match self.session.zero_pages() {
            ZeroPages::SkipUnwritten => bound.written.is_marked(addr),
            ZeroPages::Always => true,
            ZeroPages::ZeroIfNonZero => {
                self.scratch.resize(page_size, 0);
                ram.read_page(g, &mut self.scratch)
                    .map_err(|e| self.guest_error(g, e, at, bound, addr))?;
                !ramstream_codec::zero::is_zero_page(&self.scratch)
            }
        };
        if write {
            ram.zero_page(g, page_size)
                .map_err(|e| self.guest_error(g, e, at, bound, addr))?;
            bound.written.touch(addr);
        }
        bound.written.unmark(addr);
        Ok(write)
    }

    fn guest_error<E: std::error::Error + Send + Sync + 'static>(
        &self,
        g: PageAddr,
        source: E,
        at: u64,
        bound: &Bound,
        addr: PageAddr,
    ) -> Error {
        let e = self.error(
            at,
            ErrorKind::Guest {
                addr: g,
                source: Box::new(source),
            },
        );
        match bound.table.idstr(addr.block) {
            Some(b) => e.in_block(b),
            None => e,
        }
    }

    /// The channel ended at a packet boundary at offset `at`.
    fn end(&mut self, at: u64) -> Result<(), Error> {
        let Some(id) = self.id else {
            // Not reached: the decoder reads the initial packet before it can be done.
            return Ok(());
        };
        self.session
            .channel_ended(id, self.stats.syncs, self.pending)
            .map_err(|e| self.error(at, ErrorKind::Multifd(e)))
    }
}

/// Where a channel's page (stream numbering) lands in guest memory.
fn guest(bound: &Bound, addr: PageAddr) -> PageAddr {
    PageAddr {
        block: bound
            .to_guest
            .get(addr.block)
            .copied()
            .unwrap_or(usize::MAX),
        offset: addr.offset,
    }
}
