//! The destination: a sans-IO state machine that loads a migration stream into guest RAM.
//!
//! ```text
//!             handle(bytes) ──► Decoder ──► PAGE / ZERO / XBZRLE / balloon ──► GuestRam
//!                                  │                                         (write_page)
//!   caller ◄── Progress { consumed, event } ◄── Configuration, RamNeeded, Device, Command,
//!                                               Eof, VmDescription, Done
//! ```
//!
//! States, as the caller sees them:
//!
//! ```text
//!  new(ram) ──────────────────────────────────────────┐
//!  without_ram() ── MEM_SIZE ─► RamNeeded ─ provide_ram ┤
//!                                                     ▼
//!                       loading (pages into RAM, devices out as events)
//!                                                     │ EOF section
//!                                                     ▼
//!                   Eof (RAM and devices complete: the guest may be resumed)
//!                                                     │ VMDESCRIPTION, finish()
//!                                                     ▼
//!                                                   Done
//! ```

mod digest_work;
mod event;
mod layout;
mod options;
mod written;
mod zero_run;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use ramstream_codec::balloon::{BalloonMap, BalloonRecord, PageRun};
use ramstream_codec::extension::digest::{DigestAlgorithm, DigestSection};
use ramstream_codec::{
    Decoder, DeviceSection, Event, MemSize, PageAddr, RecordKind, Status, StreamConfig,
    XbzrleDelta, ZeroPage,
};
use ramstream_spec::extension::digest::DIGEST_SECTION_IDSTR;

use crate::device::DeviceBlob;
use crate::digest;
use crate::digest_chunks::ChunkDigests;
use crate::digest_report::{DigestError, DigestReport};
use crate::error::{Error, ErrorKind, LayoutMismatch};
use crate::guest::{GuestRam, RamBlockLayout};
use crate::multifd::{Bound, MultifdError, MultifdSession, SyncPoints};

pub use event::{LoadStats, LoaderEvent, Progress};
pub use options::{DigestPolicy, LoaderOptions, Multifd, ZeroPages};
pub(crate) use written::WrittenPages;

/// The destination loader: feed it the stream, it writes pages into a [`GuestRam`] and
/// hands back device state and progress as [`LoaderEvent`]s.
///
/// Sans-IO: it never reads a socket or a clock. Incremental: any split of the input gives
/// the same memory and the same events; a short input is "need more", never an error.
///
/// The receive policy is the reference receiver's (SPEC.md §7.8, §9.7): the MEM_SIZE record
/// must match the guest's blocks ([`LayoutMismatch`]); PAGE payloads are copied straight
/// from the input into guest memory; ZERO records follow [`ZeroPages`] (by default a page
/// never written is left alone, it is already zero); XBZRLE deltas are decoded onto the page
/// the guest holds through one scratch page; pages of ballooned runs are refused, and pages
/// that balloon records make ballooned are zeroed if they were written; a MULTIFD_FLUSH
/// record is refused ([`ramstream_codec::ErrorKind::PagesOnMultifdChannels`]) unless
/// [`LoaderOptions::multifd`] is on (then the sync points are [`LoaderEvent::MultifdSync`]
/// and the channels are loaded by the [`crate::multifd`] engines), as is a mapped-ram file. The RAM digest section (SPEC.md §13) is handed out, or checked against
/// guest memory at EOF under [`DigestPolicy::Verify`]; [`Loader::verify_digest`] checks it on
/// request.
///
/// ```
/// # use ramstream_migrate::{GuestRam, RamBlockLayout};
/// # use ramstream_codec::PageAddr;
/// # struct NoRam(Vec<RamBlockLayout>);
/// # impl GuestRam for NoRam {
/// #     type Error = std::io::Error;
/// #     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
/// #     fn read_page(&self, _: PageAddr, _: &mut [u8]) -> std::io::Result<()> { Ok(()) }
/// #     fn write_page(&self, _: PageAddr, _: &[u8]) -> std::io::Result<()> { Ok(()) }
/// # }
/// use ramstream_migrate::{Loader, LoaderEvent, LoaderOptions};
/// // A stream with a configuration and no RAM, fed in two pieces.
/// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut loader = Loader::new(NoRam(vec![]), LoaderOptions::default());
/// let p = loader.handle(&stream[..10]).unwrap();
/// assert_eq!((p.consumed, p.event), (8, None)); // the header; the configuration is partial
/// let p = loader.handle(&stream[8..]).unwrap();
/// assert!(matches!(p.event, Some(LoaderEvent::Configuration(c)) if c.machine_type == "pc-i440fx-7.2"));
/// let p = loader.handle(&stream[8 + p.consumed..]).unwrap();
/// assert_eq!(p.event, Some(LoaderEvent::Eof));
/// loader.finish();
/// assert_eq!(loader.handle(&[]).unwrap().event, Some(LoaderEvent::Done));
/// ```
#[derive(Debug)]
pub struct Loader<R> {
    opts: LoaderOptions,
    decoder: Decoder,
    ram: Option<R>,
    /// The first MEM_SIZE record's blocks, in stream order; `None` before it.
    stream_blocks: Option<Vec<RamBlockLayout>>,
    mem_size_offset: u64,
    /// Stream block index to guest block index, once RAM is bound.
    to_guest: Vec<usize>,
    written: Arc<WrittenPages>,
    balloon: BalloonMap,
    /// The multifd session, with multifd on.
    multifd: Option<MultifdSession>,
    sync_points: SyncPoints,
    /// The sync point yielded and not yet released.
    held_sync: Option<u64>,
    /// One page: XBZRLE decodes here, non-zero fills are built here.
    scratch: Vec<u8>,
    stats: LoadStats,
    /// Where the record or section of the last event began.
    event_offset: u64,
    /// The digest section taken under [`DigestPolicy::Verify`], and its offset.
    digest: Option<(DigestSection, u64)>,
    digest_report: Option<DigestReport>,
    /// The running sha256-chunked digest of guest memory (SPEC.md §13.7), from the first
    /// [`Loader::hash_ahead`]; behind a lock so that the `&self` checks can update it.
    chunks: Mutex<Option<ChunkDigests>>,
    awaiting_ram: bool,
    eof: bool,
    poisoned: bool,
}

impl<R> Loader<R> {
    /// The same loader over another handle on the same guest memory, e.g. the guest itself
    /// from the `Arc` its multifd channel threads shared once they have ended (`f` gives the
    /// memory the loader wrote through, in the same block numbering).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use ramstream_migrate::{GuestRam, PageAddr, RamBlockLayout};
    /// # struct NoRam(Vec<RamBlockLayout>);
    /// # impl GuestRam for NoRam {
    /// #     type Error = std::io::Error;
    /// #     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
    /// #     fn read_page(&self, _: PageAddr, _: &mut [u8]) -> std::io::Result<()> { Ok(()) }
    /// #     fn write_page(&self, _: PageAddr, _: &[u8]) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// use ramstream_migrate::{Loader, LoaderOptions};
    /// let shared = Loader::new(Arc::new(NoRam(vec![])), LoaderOptions::default());
    /// let owned: Loader<NoRam> = shared.map_ram(|ram| Arc::into_inner(ram).unwrap());
    /// assert!(owned.ram().is_some());
    /// ```
    pub fn map_ram<S>(self, f: impl FnOnce(R) -> S) -> Loader<S> {
        Loader {
            opts: self.opts,
            decoder: self.decoder,
            ram: self.ram.map(f),
            stream_blocks: self.stream_blocks,
            mem_size_offset: self.mem_size_offset,
            to_guest: self.to_guest,
            written: self.written,
            balloon: self.balloon,
            multifd: self.multifd,
            sync_points: self.sync_points,
            held_sync: self.held_sync,
            scratch: self.scratch,
            stats: self.stats,
            event_offset: self.event_offset,
            digest: self.digest,
            digest_report: self.digest_report,
            chunks: self.chunks,
            awaiting_ram: self.awaiting_ram,
            eof: self.eof,
            poisoned: self.poisoned,
        }
    }
}

impl<R: GuestRam> Loader<R> {
    /// A budget for [`Loader::hash_ahead`] each time a driver waits for input: 512 pages
    /// (2 MiB of 4 KiB pages, about 1 ms of sha256), twice what a 1 MiB read holds, so that
    /// the running digest keeps ahead of the stream. `Loader::receive_from` uses it under a
    /// verifying [`DigestPolicy`].
    pub const HASH_AHEAD_PAGES: u64 = 512;

    /// A loader into `ram`, which exists before the stream does (as a QEMU destination's).
    pub fn new(ram: R, opts: LoaderOptions) -> Self {
        let mut l = Self::without_ram(opts);
        l.ram = Some(ram);
        l
    }

    /// A loader that asks for guest RAM when the MEM_SIZE record arrives
    /// ([`LoaderEvent::RamNeeded`]), for VMMs that size memory from the stream.
    pub fn without_ram(opts: LoaderOptions) -> Self {
        let multifd = match opts.multifd {
            Multifd::Off => None,
            Multifd::Channels(n) => Some(MultifdSession::new(Some(n), opts.zero_pages)),
            Multifd::Detect => Some(MultifdSession::new(None, opts.zero_pages)),
        };
        Loader {
            decoder: Decoder::new(opts.decoder.clone()),
            scratch: vec![0; opts.page_size],
            opts,
            ram: None,
            stream_blocks: None,
            mem_size_offset: 0,
            to_guest: Vec::new(),
            written: Arc::default(),
            balloon: BalloonMap::default(),
            multifd,
            sync_points: SyncPoints::new(),
            held_sync: None,
            stats: LoadStats::default(),
            event_offset: 0,
            digest: None,
            digest_report: None,
            chunks: Mutex::new(None),
            awaiting_ram: false,
            eof: false,
            poisoned: false,
        }
    }

    /// Gives the loader guest RAM: after [`LoaderEvent::RamNeeded`], or before the MEM_SIZE
    /// record to replace what [`Loader::new`] was given. Checks it against the stream's
    /// blocks when they are known.
    pub fn provide_ram(&mut self, ram: R) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::new(self.decoder.offset(), ErrorKind::Poisoned));
        }
        self.ram = Some(ram);
        if self.stream_blocks.is_some() {
            let at = self.mem_size_offset;
            return self.bind_ram(at).inspect_err(|_| self.poisoned = true);
        }
        Ok(())
    }

    /// Says that the input has ended: the bytes passed from now on are all there is. A
    /// stream cut short is then an error rather than "need more".
    pub fn finish(&mut self) {
        self.decoder.finish();
    }

    /// Loads records from the front of `input` until one yields an event for the caller or
    /// the rest of `input` holds only part of a record.
    ///
    /// Pages are written into guest RAM during the call. Drop `consumed` bytes from the
    /// front of the input before the next call.
    pub fn handle<'a>(&mut self, input: &'a [u8]) -> Result<Progress<'a>, Error> {
        if self.poisoned {
            return Err(Error::new(self.decoder.offset(), ErrorKind::Poisoned));
        }
        if self.awaiting_ram {
            self.poisoned = true;
            return Err(Error::new(self.decoder.offset(), ErrorKind::RamNotProvided)
                .in_record(RecordKind::MemSize));
        }
        if let Some(index) = self.held_sync {
            self.poisoned = true;
            self.abort_multifd();
            return Err(Error::new(
                self.decoder.offset(),
                ErrorKind::Multifd(MultifdError::SyncPending { index }),
            ));
        }
        let mut pos = 0usize;
        loop {
            let at = self.decoder.offset();
            let status = match self.decoder.decode(&input[pos..]) {
                Ok(s) => s,
                Err(e) => {
                    self.poisoned = true;
                    self.abort_multifd();
                    return Err(e.into());
                }
            };
            let event = match status {
                Status::NeedMore { .. } => {
                    return Ok(Progress {
                        consumed: pos,
                        event: None,
                    })
                }
                Status::Done => {
                    self.event_offset = at;
                    return Ok(Progress {
                        consumed: pos,
                        event: Some(LoaderEvent::Done),
                    });
                }
                Status::Event { event, consumed } => {
                    pos += consumed;
                    event
                }
            };
            let zero = matches!(event, Event::Zero(_));
            match self.apply(event, at) {
                // The ZERO records after this one, a run at a time.
                Ok(None) if zero => match self.zero_run(&input[pos..]) {
                    Ok(n) => pos += n,
                    Err(e) => {
                        self.poisoned = true;
                        self.abort_multifd();
                        return Err(e);
                    }
                },
                Ok(None) => {}
                Ok(Some(event)) => {
                    self.event_offset = at;
                    return Ok(Progress {
                        consumed: pos,
                        event: Some(event),
                    });
                }
                Err(e) => {
                    self.poisoned = true;
                    self.abort_multifd();
                    return Err(e);
                }
            }
        }
    }

    /// With multifd: the session the channels' loaders share with this loader
    /// ([`MultifdSession::channel_loader`]). `None` when [`LoaderOptions::multifd`] is off.
    pub fn multifd(&self) -> Option<&MultifdSession> {
        self.multifd.as_ref()
    }

    /// The sync point yielded ([`LoaderEvent::MultifdSync`]) and not yet released.
    pub fn pending_sync(&self) -> Option<u64> {
        self.held_sync
    }

    /// Lets the main stream go on past the sync point it stopped at
    /// ([`LoaderEvent::MultifdSync`]), and the channels past their SYNC packets for it.
    /// Refused ([`ErrorKind::Multifd`]) unless every channel passed its SYNC packet for the
    /// point ([`MultifdError::NotReached`]), when one ended before it
    /// ([`MultifdError::ChannelEnded`]), or with no point pending. The caller waits for the
    /// channels first (`Loader::sync_with_channels` with the `io` feature does both).
    pub fn release_sync(&mut self) -> Result<(), Error> {
        let at = self.decoder.offset();
        let (Some(session), Some(k)) = (&self.multifd, self.held_sync) else {
            return Err(Error::new(
                at,
                ErrorKind::Multifd(MultifdError::NoSyncPending),
            ));
        };
        session
            .release(k)
            .map_err(|e| Error::new(at, ErrorKind::Multifd(e)))?;
        self.held_sync = None;
        Ok(())
    }

    /// With [`Multifd::Detect`]: the number of channels, at the first sync point and before
    /// releasing it (the channels that connected by then; 0 for none: the stream is then
    /// loaded as one connection, and a later MULTIFD_FLUSH refused).
    pub fn set_multifd_channels(&mut self, channels: u8) -> Result<(), Error> {
        let at = self.decoder.offset();
        let session = self
            .multifd
            .as_ref()
            .ok_or_else(|| Error::new(at, ErrorKind::Multifd(MultifdError::Off)))?;
        session
            .set_channels(channels)
            .map_err(|e| Error::new(at, ErrorKind::Multifd(e)))
    }

    /// Stops the channels' waits after an error of the main stream.
    fn abort_multifd(&self) {
        if let Some(s) = &self.multifd {
            s.abort();
        }
    }

    /// Whether `event` is a sync point of a multifd migration (SPEC.md §14.5): its index,
    /// or `None` (also when the migration turned out to have no channel).
    fn sync_point(&mut self, event: &Event<'_>) -> Option<u64> {
        let session = self.multifd.as_ref()?;
        let k = self.sync_points.observe(event)?;
        if session.channels() == Some(0) {
            return None;
        }
        Some(k)
    }

    /// The guest RAM, once given.
    pub fn ram(&self) -> Option<&R> {
        self.ram.as_ref()
    }

    /// The guest RAM, mutably: for a VMM that restores device state into the object that
    /// also holds its memory. It must go on listing the same blocks
    /// ([`GuestRam::layout`]): the loader checked them once, when it was given the RAM.
    pub fn ram_mut(&mut self) -> Option<&mut R> {
        self.ram.as_mut()
    }

    /// Takes the guest RAM back.
    pub fn into_ram(self) -> Option<R> {
        self.ram
    }

    /// The stream offset of the next byte to load (the bytes consumed so far).
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }

    /// The stream offset where the record or section of the last event began: the
    /// configuration section, the MEM_SIZE record of [`LoaderEvent::RamNeeded`], a device
    /// section's header, the EOF byte. For errors that name the stream byte the caller
    /// refused.
    pub fn event_offset(&self) -> u64 {
        self.event_offset
    }

    /// Checks a RAM digest section (SPEC.md §13) against guest memory: its entries must be
    /// the MEM_SIZE blocks in order, then each block's sha256-sparse digest is computed
    /// through [`GuestRam::read_page`], pages of the stream's ballooned runs counted as zero
    /// without being read. Call it once the stream is loaded (at [`LoaderEvent::Eof`]); the
    /// report says, block by block, whether memory matches.
    ///
    /// Errors ([`ErrorKind::Digest`], or [`ErrorKind::Guest`] for a failed read) are for a
    /// section that does not fit the stream; a mismatch is in the report.
    pub fn verify_digest(&self, section: &DigestSection) -> Result<DigestReport, Error> {
        self.verify_digest_with(section, &self.balloon)
    }

    /// [`Loader::verify_digest`] with another balloon map (stream block numbering): for a
    /// VMM that knows more ballooned pages than the stream's balloon records say (from its
    /// own balloon device's state), which it has discarded and which read as zero. Start
    /// from a clone of [`Loader::balloon`] and inflate the runs.
    pub fn verify_digest_with(
        &self,
        section: &DigestSection,
        ballooned: &BalloonMap,
    ) -> Result<DigestReport, Error> {
        let ps = self.opts.page_size;
        self.verify_by(section, ballooned, |ram, block, len, runs| {
            digest::block_digest_with(section.algorithm, ram, block, len, ps, runs)
        })
    }

    /// The digest check shared by [`Loader::verify_digest_with`] and
    /// [`Loader::verify_digest_parallel`]: the running digest when it was kept, else every
    /// block hashed by `hash`.
    fn verify_by(
        &self,
        section: &DigestSection,
        ballooned: &BalloonMap,
        hash: impl Fn(
            &R,
            usize,
            u64,
            &[PageRun],
        ) -> Result<
            [u8; ramstream_spec::extension::digest::DIGEST_SHA256_LEN],
            (PageAddr, R::Error),
        >,
    ) -> Result<DigestReport, Error> {
        let at = self.decoder.offset();
        let (Some(ram), Some(blocks)) = (&self.ram, &self.stream_blocks) else {
            return Err(Error::new(at, ErrorKind::Digest(DigestError::NoBlocks)));
        };
        if self.awaiting_ram {
            return Err(Error::new(at, ErrorKind::RamNotProvided));
        }
        if let Some(report) = self.verify_incremental(ram, blocks, section, ballooned, at) {
            return report;
        }
        digest::verify(ram, section, blocks, &self.to_guest, ballooned, at, hash)
    }

    /// The check from the running chunk digests, when [`Loader::hash_ahead`] started them
    /// and `section` is sha256-chunked: only the chunks written since are read.
    fn verify_incremental(
        &self,
        ram: &R,
        blocks: &[RamBlockLayout],
        section: &DigestSection,
        ballooned: &BalloonMap,
        at: u64,
    ) -> Option<Result<DigestReport, Error>> {
        if section.algorithm != DigestAlgorithm::Sha256Chunked {
            return None;
        }
        let mut guard = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        let chunks = guard.as_mut()?;
        self.absorb_touched(chunks);
        let chunks = RefCell::new(chunks);
        Some(digest::verify(
            ram,
            section,
            blocks,
            &self.to_guest,
            ballooned,
            at,
            |ram, guest, _, runs| {
                let stream = self.to_guest.iter().position(|&g| g == guest).unwrap_or(0);
                chunks.borrow_mut().block_digest(ram, stream, runs)
            },
        ))
    }

    /// Marks stale the chunks the written-page tracker saw written since the last call.
    fn absorb_touched(&self, chunks: &mut ChunkDigests) {
        for block in 0..self.to_guest.len() {
            chunks.mark_chunk_words(block, &self.written.take_touched(block));
        }
    }

    /// Hashes stale chunks of the running sha256-chunked digest (SPEC.md §13.7) until about
    /// `budget` pages were read; returns how many chunks it hashed. A sans-IO step for the
    /// driver to call while it waits for input (e.g. at each "need more"), so that the digest
    /// check at EOF ([`Loader::verify_digest`], [`DigestPolicy::Verify`]) reads only the
    /// chunks written since the last call instead of all of RAM.
    ///
    /// The first call starts the running digest (every chunk stale); from then on every page
    /// the loader or a multifd channel writes, zeroes or patches marks its chunk stale again,
    /// and a balloon change does at the check. Memory written by anyone but the loader after
    /// the first call is not seen: call it only while the guest does not run and the caller
    /// leaves memory alone. Before the MEM_SIZE record and guest RAM, or with a `budget` of
    /// 0, it does nothing.
    ///
    /// Errors: [`ErrorKind::Guest`] for a failed read, naming the block.
    pub fn hash_ahead(&mut self, budget: u64) -> Result<u64, Error> {
        let at = self.decoder.offset();
        let (Some(ram), Some(blocks)) = (&self.ram, &self.stream_blocks) else {
            return Ok(0);
        };
        if self.awaiting_ram || self.poisoned || budget == 0 {
            return Ok(0);
        }
        let chunks = Self::running_chunks(
            &mut self.chunks,
            blocks,
            &self.to_guest,
            &self.written,
            &self.balloon,
            self.opts.page_size,
        );
        chunks.hash_ahead(ram, budget).map_err(|(addr, source)| {
            let stream = self.to_guest.iter().position(|&g| g == addr.block);
            Error::new(
                at,
                ErrorKind::Guest {
                    addr,
                    source: Box::new(source),
                },
            )
            .in_block(
                stream
                    .and_then(|s| blocks.get(s))
                    .map_or("?", |b| b.idstr()),
            )
        })
    }

    /// How many chunks of the running digest ([`Loader::hash_ahead`]) are stale, not
    /// counting writes since its last call; `None` before it started.
    pub fn stale_digest_chunks(&self) -> Option<u64> {
        let guard = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(ChunkDigests::stale)
    }

    /// The digest verification done at EOF under [`DigestPolicy::Verify`] (every block
    /// matched, or the loader would have refused the stream); `None` before EOF or when the
    /// stream had no digest section.
    pub fn digest_report(&self) -> Option<&DigestReport> {
        self.digest_report.as_ref()
    }

    /// What the loader did so far.
    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    /// The stream's configuration, once decoded.
    pub fn config(&self) -> Option<&StreamConfig> {
        self.decoder.config()
    }

    /// The stream's blocks (the first MEM_SIZE record's, in stream order), once known.
    pub fn stream_blocks(&self) -> Option<&[RamBlockLayout]> {
        self.stream_blocks.as_deref()
    }

    /// For each stream block, the index of the guest block it is loaded into.
    pub fn guest_block_of(&self, stream_block: usize) -> Option<usize> {
        self.to_guest.get(stream_block).copied()
    }

    /// The pages the stream's balloon records hold (stream block numbering, target pages).
    pub fn balloon(&self) -> &BalloonMap {
        &self.balloon
    }

    /// Whether the EOF section was loaded: RAM and device state are complete.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Whether the whole stream was loaded.
    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// The options in force.
    pub fn options(&self) -> &LoaderOptions {
        &self.opts
    }

    fn apply<'a>(&mut self, event: Event<'a>, at: u64) -> Result<Option<LoaderEvent<'a>>, Error> {
        Ok(match event {
            Event::Configuration(c) => {
                self.check_page_size(at, RecordKind::Configuration)?;
                if let (Some(session), Some(uuid)) = (&self.multifd, c.uuid) {
                    session.set_migration_uuid(uuid);
                }
                Some(LoaderEvent::Configuration(c))
            }
            Event::MemSize(ms) => self.mem_size(ms, at)?,
            Event::Page(p) => {
                let g = self.guest_addr(p.addr, at, RecordKind::Page)?;
                ram_of(&self.ram, at, RecordKind::Page)?
                    .write_page(g, p.data)
                    .map_err(|e| self.guest_error(p.addr, g, e, at, RecordKind::Page))?;
                self.written.mark(p.addr);
                self.stats.pages += 1;
                None
            }
            Event::Zero(z) => {
                self.zero(z, at)?;
                None
            }
            Event::Xbzrle(x) => {
                self.xbzrle(x, at)?;
                None
            }
            Event::Balloon(b) => {
                self.balloon_record(&b, at)?;
                None
            }
            Event::MultifdFlush(_) | Event::Eos(_) => match self.sync_point(&event) {
                Some(k) => {
                    if let Some(session) = &self.multifd {
                        session.main_reached(k);
                    }
                    self.held_sync = Some(k);
                    self.stats.sync_points += 1;
                    Some(LoaderEvent::MultifdSync(k))
                }
                None if matches!(event, Event::MultifdFlush(_)) => {
                    return Err(Error::new(
                        at,
                        ErrorKind::Stream(ramstream_codec::ErrorKind::PagesOnMultifdChannels),
                    )
                    .in_record(RecordKind::MultifdFlush))
                }
                None => None,
            },
            Event::SectionStart(_) | Event::SectionPart { .. } => {
                self.sync_point(&event);
                self.stats.ram_sections += 1;
                None
            }
            Event::Device(d) if self.takes_digest(&d) => {
                let section = DigestSection::from_device(&d)
                    .map_err(|e| {
                        Error::new(at, ErrorKind::Digest(DigestError::Section(e)))
                            .in_record(RecordKind::Device)
                    })?
                    .ok_or_else(|| {
                        // Not reached: `takes_digest` checked the idstr.
                        Error::new(at, ErrorKind::Digest(DigestError::Missing))
                    })?;
                self.digest = Some((section, at));
                None
            }
            Event::Device(d) => {
                self.stats.devices += 1;
                Some(LoaderEvent::Device(DeviceBlob {
                    idstr: d.header.idstr,
                    instance_id: d.header.instance_id,
                    version_id: d.header.version_id,
                    body: d.body,
                }))
            }
            Event::Command(c) => Some(LoaderEvent::Command(c)),
            Event::Eof => {
                if let Some(session) = &self.multifd {
                    session.main_ended().map_err(|e| {
                        Error::new(at, ErrorKind::Multifd(e)).in_record(RecordKind::Eof)
                    })?;
                }
                self.check_digest(at)?;
                self.eof = true;
                Some(LoaderEvent::Eof)
            }
            Event::VmDescription(json) => Some(LoaderEvent::VmDescription(json)),
            _ => None,
        })
    }

    /// Whether the loader keeps `d` for itself: the digest section under a verifying policy.
    fn takes_digest(&self, d: &DeviceSection<'_>) -> bool {
        self.opts.digest != DigestPolicy::Deliver && d.header.idstr == DIGEST_SECTION_IDSTR
    }

    /// At EOF, under a verifying [`DigestPolicy`]: checks the digest section taken earlier
    /// against guest memory, or refuses its absence under [`DigestPolicy::Require`].
    fn check_digest(&mut self, at: u64) -> Result<(), Error> {
        if self.opts.digest == DigestPolicy::Deliver {
            return Ok(());
        }
        let Some((section, section_at)) = self.digest.take() else {
            if self.opts.digest == DigestPolicy::Require {
                return Err(Error::new(at, ErrorKind::Digest(DigestError::Missing))
                    .in_record(RecordKind::Eof));
            }
            return Ok(());
        };
        let report = self.verify_digest(&section).map_err(|mut e| {
            e.offset = section_at;
            e.in_record(RecordKind::Device)
        })?;
        if let Some(bad) = report.first_mismatch() {
            return Err(Error::new(
                section_at,
                ErrorKind::Digest(DigestError::Mismatch(Box::new(bad.clone()))),
            )
            .in_record(RecordKind::Device)
            .in_block(bad.idstr.clone()));
        }
        self.digest_report = Some(report);
        Ok(())
    }

    fn check_page_size(&self, at: u64, record: RecordKind) -> Result<(), Error> {
        let stream = self.decoder.page_size();
        if stream == self.opts.page_size {
            return Ok(());
        }
        Err(Error::new(
            at,
            ErrorKind::PageSizeMismatch {
                stream: stream as u64,
                guest: self.opts.page_size as u64,
            },
        )
        .in_record(record))
    }

    fn mem_size(&mut self, ms: MemSize, at: u64) -> Result<Option<LoaderEvent<'static>>, Error> {
        let err = |kind| Error::new(at, kind).in_record(RecordKind::MemSize);
        if !ms.mapped_ram.is_empty() {
            return Err(err(ErrorKind::MappedRam));
        }
        self.check_page_size(at, RecordKind::MemSize)?;
        let blocks: Vec<RamBlockLayout> = ms.blocks.iter().map(RamBlockLayout::from).collect();
        if let Some(first) = &self.stream_blocks {
            // QEMU sends MEM_SIZE once per `ram` START; a later one must not move blocks.
            if *first != blocks {
                return Err(err(ErrorKind::Layout(LayoutMismatch::Changed)));
            }
            return Ok(None);
        }
        self.balloon = BalloonMap::new(&ms.blocks, self.decoder.page_bits());
        self.stream_blocks = Some(blocks);
        self.mem_size_offset = at;
        if self.ram.is_some() {
            self.bind_ram(at)?;
            return Ok(None);
        }
        self.awaiting_ram = true;
        Ok(self.stream_blocks.clone().map(LoaderEvent::RamNeeded))
    }

    /// Checks the guest's layout against the stream's blocks and sets up page tracking.
    fn bind_ram(&mut self, at: u64) -> Result<(), Error> {
        let (Some(ram), Some(blocks)) = (&self.ram, &self.stream_blocks) else {
            return Ok(());
        };
        let map = layout::match_blocks(blocks, ram.layout(), self.opts.allow_unsent_blocks)
            .map_err(|m| {
                let e = Error::new(at, ErrorKind::Layout(m.clone())).in_record(RecordKind::MemSize);
                match layout::mismatch_block(&m) {
                    Some(b) => e.in_block(b),
                    None => e,
                }
            })?;
        // Channels bound earlier keep writing (and touching) through their tracker.
        self.written = match self.multifd.as_ref().and_then(MultifdSession::bound) {
            Some(b) => Arc::clone(&b.written),
            None => Arc::new(WrittenPages::new(
                blocks.iter().map(RamBlockLayout::used_length),
                self.decoder.page_size(),
            )),
        };
        *self
            .chunks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(session) = &self.multifd {
            let table: Vec<ramstream_codec::RamBlock> = blocks
                .iter()
                .map(|b| ramstream_codec::RamBlock {
                    idstr: b.idstr().to_string(),
                    used_length: b.used_length(),
                    page_size: None,
                    mr_addr: None,
                })
                .collect();
            // A second `provide_ram` after MEM_SIZE keeps the first binding: the channels
            // may already write through it.
            if !session.is_bound() {
                session
                    .bind(Bound {
                        page_bits: self.decoder.page_bits(),
                        table: ramstream_codec::multifd::BlockTable::new(&table),
                        to_guest: map.clone(),
                        written: Arc::clone(&self.written),
                        limits: self.opts.decoder.limits.clone(),
                    })
                    .map_err(|e| Error::new(at, ErrorKind::Multifd(e)))?;
            }
        }
        self.to_guest = map;
        self.awaiting_ram = false;
        Ok(())
    }

    fn block_name(&self, stream_block: usize) -> &str {
        self.stream_blocks
            .as_ref()
            .and_then(|b| b.get(stream_block))
            .map_or("?", |b| b.idstr())
    }

    /// The guest address of a page record, after refusing a ballooned page and checking
    /// that guest RAM is there.
    fn guest_addr(&self, addr: PageAddr, at: u64, record: RecordKind) -> Result<PageAddr, Error> {
        let page = addr.page_index(self.decoder.page_size());
        if self.balloon.contains(addr.block, page) {
            return Err(Error::new(at, ErrorKind::PageOfBallooned { page })
                .in_record(record)
                .in_block(self.block_name(addr.block)));
        }
        ram_of(&self.ram, at, record)?;
        let block = self.guest_block_of(addr.block).ok_or_else(|| {
            // Not reached: the decoder only names blocks of the MEM_SIZE list, all mapped.
            Error::new(at, ErrorKind::Layout(LayoutMismatch::Changed))
                .in_record(record)
                .in_block(self.block_name(addr.block))
        })?;
        Ok(PageAddr {
            block,
            offset: addr.offset,
        })
    }

    fn guest_error(
        &self,
        addr: PageAddr,
        guest: PageAddr,
        source: R::Error,
        at: u64,
        record: RecordKind,
    ) -> Error {
        Error::new(
            at,
            ErrorKind::Guest {
                addr: guest,
                source: Box::new(source),
            },
        )
        .in_record(record)
        .in_block(self.block_name(addr.block))
    }

    fn zero(&mut self, z: ZeroPage, at: u64) -> Result<(), Error> {
        let rec = RecordKind::Zero;
        if z.fill != 0 {
            let g = self.guest_addr(z.addr, at, rec)?;
            let ram = ram_of(&self.ram, at, rec)?;
            let mut fill = std::mem::take(&mut self.scratch);
            fill.fill(z.fill);
            let r = ram.write_page(g, &fill);
            self.scratch = fill;
            r.map_err(|e| self.guest_error(z.addr, g, e, at, rec))?;
            self.written.mark(z.addr);
            self.stats.zero_written += 1;
            return Ok(());
        }
        self.guest_addr(z.addr, at, rec)?;
        if self.clear_page(z.addr, at, rec)? {
            self.stats.zero_written += 1;
        } else {
            self.stats.zero_skipped += 1;
        }
        Ok(())
    }

    /// Makes the page at `addr` (stream numbering) zero under the [`ZeroPages`] policy;
    /// returns whether memory was written.
    fn clear_page(&mut self, addr: PageAddr, at: u64, rec: RecordKind) -> Result<bool, Error> {
        let ram = ram_of(&self.ram, at, rec)?;
        let g = PageAddr {
            block: self.to_guest.get(addr.block).copied().unwrap_or(usize::MAX),
            offset: addr.offset,
        };
        let write = match self.opts.zero_pages {
            ZeroPages::SkipUnwritten => self.written.is_marked(addr),
            ZeroPages::Always => true,
            ZeroPages::ZeroIfNonZero => {
                let mut buf = std::mem::take(&mut self.scratch);
                let r = ram.read_page(g, &mut buf);
                let nonzero = !ramstream_codec::zero::is_zero_page(&buf);
                self.scratch = buf;
                r.map_err(|e| self.guest_error(addr, g, e, at, rec))?;
                nonzero
            }
        };
        if write {
            ram.zero_page(g, self.opts.page_size)
                .map_err(|e| self.guest_error(addr, g, e, at, rec))?;
            self.written.touch(addr);
        }
        self.written.unmark(addr);
        Ok(write)
    }

    fn xbzrle(&mut self, x: XbzrleDelta<'_>, at: u64) -> Result<(), Error> {
        let rec = RecordKind::Xbzrle;
        let g = self.guest_addr(x.addr, at, rec)?;
        let ram = ram_of(&self.ram, at, rec)?;
        let mut page = std::mem::take(&mut self.scratch);
        let r = ram
            .read_page(g, &mut page)
            .map_err(|e| self.guest_error(x.addr, g, e, at, rec))
            .and_then(|()| {
                ramstream_codec::xbzrle::decode(x.delta, &mut page).map_err(|e| {
                    Error::new(at, ErrorKind::Stream(ramstream_codec::ErrorKind::Xbzrle(e)))
                        .in_record(rec)
                        .in_block(self.block_name(x.addr.block))
                })
            })
            .and_then(|()| {
                ram.write_page(g, &page)
                    .map_err(|e| self.guest_error(x.addr, g, e, at, rec))
            });
        self.scratch = page;
        r?;
        self.written.mark(x.addr);
        self.stats.xbzrle += 1;
        Ok(())
    }

    fn balloon_record(&mut self, rec: &BalloonRecord<'_>, at: u64) -> Result<(), Error> {
        let released = self
            .balloon
            .apply(rec)
            .map_err(|e| Error::new(at, ErrorKind::Balloon(e)).in_record(RecordKind::Balloon))?;
        self.stats.balloon_records += 1;
        let page_size = self.decoder.page_size();
        for r in released {
            let run = PageRun::from_range(r.pages);
            self.stats.ballooned_pages += run.count;
            // Pages given to the balloon read as zero (SPEC.md §9.8).
            let addrs: Box<dyn Iterator<Item = PageAddr>> = match self.opts.zero_pages {
                ZeroPages::SkipUnwritten => {
                    Box::new(self.written.marked_in(r.block, run).into_iter())
                }
                _ => Box::new(run.addrs(r.block, page_size)),
            };
            for addr in addrs {
                self.clear_page(addr, at, RecordKind::Balloon)?;
            }
        }
        Ok(())
    }
}

/// The guest RAM, or [`ErrorKind::RamNotProvided`]. A free function so that the borrow is
/// of the one field.
fn ram_of<R>(ram: &Option<R>, at: u64, record: RecordKind) -> Result<&R, Error> {
    ram.as_ref()
        .ok_or_else(|| Error::new(at, ErrorKind::RamNotProvided).in_record(record))
}

impl<R: GuestRam + Sync> Loader<R> {
    /// [`Loader::verify_digest_with`] hashing each block on up to `threads` threads
    /// ([`block_digest_parallel`](crate::block_digest_parallel)): for a receiver whose guest
    /// memory may be read from several threads, to shorten the check inside the downtime.
    pub fn verify_digest_parallel(
        &self,
        section: &DigestSection,
        ballooned: &BalloonMap,
        threads: usize,
    ) -> Result<DigestReport, Error> {
        let ps = self.opts.page_size;
        self.verify_by(section, ballooned, |ram, block, len, runs| {
            digest::block_digest_parallel(section.algorithm, ram, block, len, ps, runs, threads)
        })
    }
}
