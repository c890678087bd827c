//! The precopy source, sans-IO: [`Source`], a state machine the caller drives with the
//! instants it reads, the dirty pages its VMM logged and the bytes it managed to send, and
//! polls for stream bytes; the traits it asks a VMM for; its options, results and figures.

mod balloon;
mod batch;
mod channel;
mod completion;
mod counted;
mod meter;
mod multifd;
mod options;
mod packet;
mod page_set;
mod poll;
mod round;
mod stats;
mod sync;
mod transmit;
mod vmm;
mod zero_ahead;

use std::time::Instant;

use ramstream_codec::balloon::PageRun;
use ramstream_codec::cache::{XbzrleCache, XbzrleCacheStats};
use ramstream_codec::extension::digest::{DigestAlgorithm, DigestSection};
use ramstream_codec::{Encoder, RamBlock};
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;

use crate::device::OwnedDeviceBlob;
use crate::digest_chunks::ChunkDigests;
use crate::error::{Error, ErrorKind};
use crate::guest::RamBlockLayout;
use balloon::BalloonRuns;
use batch::Batch;
use meter::Meter;
use multifd::MultifdState;
use page_set::PageSet;
use round::Round;

pub use channel::ChannelSender;
pub use multifd::{ChannelStats, MultifdSendOptions, PacketJob, PacketSent};
pub use options::SourceOptions;
pub use stats::{RoundStats, SendStats};
pub use transmit::{Phase, SourceProgress, Transmit};
pub use vmm::{BalloonSource, DeviceStateSource, DirtyPageSource};

/// Where the state machine stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The setup bytes are due.
    Setup,
    /// The setup sync is due.
    SetupSync,
    /// A round is being sent.
    Round,
    /// The sync that ends a round is due.
    Sync,
    /// Converged: the caller is to stop the guest.
    Stop,
    /// The guest is stopped; the final sync is due.
    FinalSync,
    /// The device sections, digest and EOF are due.
    Complete,
    /// The stream is complete.
    Done,
    /// A poll failed; the source is unusable.
    Failed,
}

/// The instants that matter, as the caller passed them.
#[derive(Clone, Copy, Debug, Default)]
struct Clock {
    first_poll: Option<Instant>,
    round_start: Option<Instant>,
    /// Bytes reported sent when the round started.
    round_sent: u64,
    last_rate_update: Option<Instant>,
    stopped: Option<Instant>,
}

/// The precopy source: QEMU 7.2's algorithm and stream layout (SPEC.md §2.5), driven by the
/// caller. It never sleeps, reads no clock, and touches no socket.
///
/// ```text
///  Setup ──SyncDirty──> bulk pass ──SyncDirty──┬─> dirty iteration ──SyncDirty──┐
///  header, configuration, every page once,     │   pages dirtied before the     │
///  ram START + MEM_SIZE,  ZERO or PAGE         │   sync; XBZRLE from here on    │
///  balloon full maps                           │  <──── not converged ──────────┘
///                                              └─ converged ─> StopGuest ─> handle_stopped
///                                                  ─SyncDirty─> END (last pages), device
///                                                  sections, digest, EOF ─> Done
/// ```
///
/// The decision to stop is QEMU's: at each sync, the dirty bytes left against the bandwidth
/// of the round just ended (bytes reported with [`Source::handle_sent`] between the `now`s
/// of the two syncs), compared with [`SourceOptions::downtime_limit`]; or
/// [`SourceOptions::max_iterations`] reached.
///
/// With [`SourceOptions::multifd`] the pages go on N multifd channels instead (SPEC.md §14):
/// the polls of a round deal them as [`PacketJob`]s ([`Transmit::Packets`],
/// [`Source::poll_packet`]) that each channel's [`ChannelSender`] reads and encodes, and
/// every round ends with a sync point (a SYNC packet per channel, a MULTIFD_FLUSH record).
///
/// The caller loops: [`poll_transmit`](Source::poll_transmit) with the current instant, the
/// guest's memory and a sink, then does what the [`Transmit`] says: send the bytes and
/// report them ([`handle_sent`](Source::handle_sent)), wait, sync the dirty log, or stop
/// the guest and hand over its device state.
///
/// ```
/// use std::sync::Mutex;
/// use std::time::{Duration, Instant};
/// use ramstream_migrate::{GuestRam, PageAddr, RamBlockLayout, Source, SourceOptions, Transmit};
///
/// /// Guest RAM in a vector (a real VMM uses GuestMemoryMmap: see the example).
/// struct VecRam(Vec<RamBlockLayout>, Mutex<Vec<u8>>);
/// impl GuestRam for VecRam {
///     type Error = std::io::Error;
///     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
///     fn read_page(&self, a: PageAddr, buf: &mut [u8]) -> std::io::Result<()> {
///         let o = a.offset as usize;
///         buf.copy_from_slice(&self.1.lock().unwrap()[o..o + buf.len()]);
///         Ok(())
///     }
///     fn write_page(&self, a: PageAddr, data: &[u8]) -> std::io::Result<()> {
///         let o = a.offset as usize;
///         self.1.lock().unwrap()[o..o + data.len()].copy_from_slice(data);
///         Ok(())
///     }
/// }
///
/// let layout = vec![RamBlockLayout::new("pc.ram", 16 * 4096)];
/// let ram = VecRam(layout.clone(), Mutex::new(vec![0; 16 * 4096]));
/// ram.write_page(PageAddr { block: 0, offset: 0x3000 }, &[7; 4096]).unwrap();
/// let mut source = Source::new(&layout, SourceOptions::default()).unwrap();
/// let (mut stream, mut now) = (Vec::new(), Instant::now());
/// loop {
///     now += Duration::from_millis(1); // a fake clock: the engine reads none
///     match source.poll_transmit(now, &ram, &mut stream).unwrap() {
///         Transmit::Send { bytes } => source.handle_sent(bytes),
///         Transmit::SyncDirty => source.handle_sync(now).unwrap(), // a quiet guest
///         Transmit::StopGuest => source.handle_stopped(now, &mut Vec::new()).unwrap(),
///         Transmit::Done => break,
///         _ => {}
///     }
/// }
/// let events = ramstream_codec::decode_all(&stream, Default::default()).unwrap();
/// assert_eq!(source.stats().normal, 1); // one PAGE, fifteen ZERO records
/// assert_eq!(source.stats().duplicate, 15);
/// assert!(events.len() > 20);
/// ```
pub struct Source {
    opts: SourceOptions,
    blocks: Vec<RamBlock>,
    block_pages: Vec<u64>,
    /// Where each block starts in the blocks laid end to end, in bytes: the XBZRLE cache
    /// key is a global address (SPEC.md §7.7).
    block_base: Vec<u64>,
    enc: Encoder,
    cache: Option<XbzrleCache>,
    stage: Stage,
    phase: Phase,
    iteration: u32,
    /// Pages handed in since the last sync.
    pending: PageSet,
    /// The pages dirty at the sync that decided to stop, sent with the final ones.
    carry: Option<PageSet>,
    round: Option<Round>,
    balloon: BalloonRuns,
    batch: Batch,
    meter: Meter,
    clock: Clock,
    stats: SendStats,
    devices: Vec<OwnedDeviceBlob>,
    vm_description: Option<Vec<u8>>,
    /// Digests the caller computed ([`Source::handle_digests`]).
    given_digests: Option<Vec<[u8; DIGEST_SHA256_LEN]>>,
    /// The running sha256-chunked digest (SPEC.md §13.7), with that algorithm.
    chunks: Option<ChunkDigests>,
    /// The balloon's [`version`](BalloonRuns::version) `chunks` last took.
    chunk_balloon_version: Option<u64>,
    /// The driver takes the chunk digests' work ([`Source::take_digest_work`]): the polls
    /// no longer hash ahead in line.
    digest_offloaded: bool,
    digest: Option<DigestSection>,
    digest_body: Vec<u8>,
    /// With multifd: who gets the next packet, the jobs out (SPEC.md §14).
    multifd: Option<MultifdState>,
}

/// The `ram` section's id; device sections follow from 1.
const RAM_SECTION_ID: u32 = 0;

/// Where the source stands and its figures; not its page buffers, cache or bitmaps.
impl core::fmt::Debug for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Source")
            .field("phase", &self.phase)
            .field("stage", &self.stage)
            .field("iteration", &self.iteration)
            .field("blocks", &self.blocks.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// A source for guest RAM of `layout` (QEMU's RAM blocks, in the order MEM_SIZE lists
    /// them and the [`GuestRam`](crate::GuestRam) numbers them).
    ///
    /// Fails if the page size is not a power of two, a block is not a whole number of
    /// pages, or the XBZRLE cache size is not usable.
    pub fn new(layout: &[RamBlockLayout], opts: SourceOptions) -> Result<Source, Error> {
        let ps = opts.page_size;
        if !ps.is_power_of_two() {
            return Err(Error::new(0, ErrorKind::InvalidPageSize { page_size: ps }));
        }
        if let Some((block, b)) = layout
            .iter()
            .enumerate()
            .find(|(_, b)| PageRun::of_bytes(0..b.used_length(), ps).is_none())
        {
            return Err(Error::new(
                0,
                ErrorKind::BlockNotWholePages {
                    block,
                    used_length: b.used_length(),
                    page_size: ps,
                },
            )
            .in_block(b.idstr()));
        }
        let cache = opts
            .xbzrle_cache_size
            .map(|size| XbzrleCache::new(size, ps))
            .transpose()
            .map_err(|e| Error::new(0, ErrorKind::XbzrleCache(e)))?;
        let multifd = MultifdState::new(&opts)?;
        let block_pages: Vec<u64> = layout
            .iter()
            .map(|b| PageRun::of_block(b.used_length(), ps).count)
            .collect();
        let block_base = layout
            .iter()
            .scan(0u64, |acc, b| {
                let base = *acc;
                *acc = acc.saturating_add(b.used_length());
                Some(base)
            })
            .collect();
        let blocks = layout
            .iter()
            .map(|b| RamBlock {
                idstr: b.idstr().to_string(),
                used_length: b.used_length(),
                page_size: None,
                mr_addr: None,
            })
            .collect();
        let stats = SendStats {
            total: layout.iter().map(RamBlockLayout::used_length).sum(),
            ..SendStats::default()
        };
        Ok(Source {
            enc: Encoder::new(ps.trailing_zeros()),
            cache,
            stage: Stage::Setup,
            phase: Phase::Setup,
            iteration: 0,
            pending: PageSet::empty(&block_pages),
            carry: None,
            round: None,
            balloon: BalloonRuns::new(opts.balloon, layout.len()),
            batch: Batch::new(ps, &block_pages),
            meter: Meter::default(),
            clock: Clock::default(),
            stats,
            devices: Vec::new(),
            vm_description: None,
            given_digests: None,
            chunks: (opts.digest && opts.digest_algorithm == DigestAlgorithm::Sha256Chunked)
                .then(|| ChunkDigests::new(&block_pages, ps)),
            chunk_balloon_version: None,
            digest_offloaded: false,
            digest: None,
            digest_body: Vec::new(),
            multifd,
            blocks,
            block_pages,
            block_base,
            opts,
        })
    }

    /// Reports `bytes` of what [`poll_transmit`](Source::poll_transmit) wrote as sent: the
    /// bandwidth limit and the convergence decision count these.
    pub fn handle_sent(&mut self, bytes: usize) {
        self.meter.sent(bytes as u64);
        self.stats.sent = self.meter.sent;
    }

    /// Adds pages of `block` written by the guest, as runs (any order, overlaps allowed),
    /// to the pages of the next sync.
    pub fn handle_dirty(&mut self, block: usize, runs: &[PageRun]) -> Result<(), Error> {
        for r in runs {
            self.check_run(block, *r)?;
        }
        for r in runs {
            self.pending.insert(block, r.range());
        }
        if let Some(c) = &mut self.chunks {
            c.mark_runs(block, runs);
        }
        Ok(())
    }

    /// Adds pages of `block` written by the guest, as a bitmap: bit `i % 64` of word
    /// `i / 64` is page `i`, the layout of `KVM_GET_DIRTY_LOG` and vm-memory's
    /// `AtomicBitmap::get_and_reset`. Bits past the block's last page are ignored.
    pub fn handle_dirty_bitmap(&mut self, block: usize, words: &[u64]) -> Result<(), Error> {
        self.check_block(block)?;
        self.pending.insert_words(block, words);
        if let Some(c) = &mut self.chunks {
            c.mark_words(block, words);
        }
        Ok(())
    }

    /// Sets the pages of `block` the guest's balloon holds (the whole set, as runs in any
    /// order); in force from the next sync. Ignored unless [`SourceOptions::balloon`].
    pub fn handle_balloon(&mut self, block: usize, runs: &[PageRun]) -> Result<(), Error> {
        for r in runs {
            self.check_run(block, *r)?;
        }
        self.balloon.set(block, balloon::normalize(runs.to_vec()));
        Ok(())
    }

    /// [`handle_balloon`](Source::handle_balloon) for every block, from `balloon`.
    pub fn update_balloon<B: BalloonSource + ?Sized>(&mut self, balloon: &B) -> Result<(), Error> {
        if !self.balloon.enabled() {
            return Ok(());
        }
        let mut runs = Vec::new();
        for block in 0..self.blocks.len() {
            runs.clear();
            balloon.ballooned(block, &mut |r| runs.push(r));
            self.handle_balloon(block, &runs)?;
        }
        Ok(())
    }

    /// Takes the dirty log of every block from `dirty`, then
    /// [`handle_sync`](Source::handle_sync): the whole answer to [`Transmit::SyncDirty`].
    pub fn sync_dirty<D: DirtyPageSource + ?Sized>(
        &mut self,
        now: Instant,
        dirty: &mut D,
    ) -> Result<(), Error> {
        if !matches!(
            self.stage,
            Stage::SetupSync | Stage::Sync | Stage::FinalSync
        ) {
            return Err(self.unexpected("sync_dirty"));
        }
        let mut runs = Vec::new();
        for block in 0..self.blocks.len() {
            runs.clear();
            dirty
                .take_dirty(block, &mut |r| runs.push(r))
                .map_err(|e| self.error(ErrorKind::DirtyLog(Box::new(e))))?;
            self.handle_dirty(block, &runs)?;
        }
        self.handle_sync(now)
    }

    /// The guest's vCPUs are stopped (after [`Transmit::StopGuest`]): takes its device
    /// state, sent after the last pages as FULL sections with ids from 1, in order, and
    /// the VMDESCRIPTION if `devices` gives one. The final dirty sync follows.
    pub fn handle_stopped<D: DeviceStateSource + ?Sized>(
        &mut self,
        now: Instant,
        devices: &mut D,
    ) -> Result<(), Error> {
        if self.stage != Stage::Stop {
            return Err(self.unexpected("handle_stopped"));
        }
        let mut blobs = Vec::new();
        devices
            .save(&mut |b| blobs.push(b.to_owned()))
            .map_err(|e| self.error(ErrorKind::DeviceState(Box::new(e))))?;
        self.devices = blobs;
        self.vm_description = devices.vm_description();
        self.clock.stopped = Some(now);
        self.stage = Stage::FinalSync;
        Ok(())
    }

    /// Digests of the stopped guest's blocks (SPEC.md §13.2, ballooned pages counted as
    /// zero) with [`SourceOptions::digest_algorithm`], computed by the caller (in parallel,
    /// say), in block order. Without them the source hashes the blocks itself through
    /// `GuestRam` when the digest is due (with sha256-chunked, only the chunks dirtied since
    /// it hashed them during the precopy, SPEC.md §13.7).
    pub fn handle_digests(&mut self, digests: Vec<[u8; DIGEST_SHA256_LEN]>) -> Result<(), Error> {
        if self.clock.stopped.is_none() || matches!(self.stage, Stage::Done | Stage::Failed) {
            return Err(self.unexpected("handle_digests"));
        }
        if digests.len() != self.blocks.len() {
            return Err(self.error(ErrorKind::DigestCount {
                expected: self.blocks.len(),
                found: digests.len(),
            }));
        }
        self.given_digests = Some(digests);
        Ok(())
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The dirty iteration (0: setup and the bulk pass).
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Where the source stands, for a progress display.
    pub fn progress(&self) -> SourceProgress {
        let (round_done, round_total) = self.round.as_ref().map_or((0, 0), |r| (r.done, r.total));
        SourceProgress {
            phase: self.phase,
            iteration: self.iteration,
            round_done,
            round_total,
            sent: self.meter.sent,
        }
    }

    /// The figures so far.
    pub fn stats(&self) -> &SendStats {
        &self.stats
    }

    /// The XBZRLE cache's figures, with XBZRLE on.
    pub fn xbzrle_stats(&self) -> Option<XbzrleCacheStats> {
        self.cache.as_ref().map(XbzrleCache::stats)
    }

    /// The digest section sent, once it was.
    pub fn digest(&self) -> Option<&DigestSection> {
        self.digest.as_ref()
    }

    /// The options.
    pub fn options(&self) -> &SourceOptions {
        &self.opts
    }

    fn check_block(&self, block: usize) -> Result<(), Error> {
        if block < self.blocks.len() {
            Ok(())
        } else {
            Err(self.error(ErrorKind::NoSuchBlock { block }))
        }
    }

    fn check_run(&self, block: usize, run: PageRun) -> Result<(), Error> {
        self.check_block(block)?;
        let pages = self.block_pages[block];
        match run.start.checked_add(run.count) {
            Some(end) if end <= pages => Ok(()),
            _ => Err(self
                .error(ErrorKind::RunOutOfRange { block, run, pages })
                .in_block(self.blocks[block].idstr.clone())),
        }
    }

    /// An error at the bytes produced so far.
    fn error(&self, kind: ErrorKind) -> Error {
        Error::new(self.stats.produced, kind)
    }

    fn unexpected(&self, call: &'static str) -> Error {
        self.error(ErrorKind::UnexpectedCall {
            call,
            phase: self.phase,
        })
    }
}
