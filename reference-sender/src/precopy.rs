//! The precopy loop: the thin shell around [`ramstream_migrate::Source`]. It reads the
//! clock, the guest's dirty log and balloon, writes what the engine produces to the
//! transport, sleeps when the bandwidth limit says so, and pauses or resumes the guest.

use std::io::{self, Write};
use std::num::NonZeroU8;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ramstream_codec::extension::digest::DigestAlgorithm;
use ramstream_codec::extension::state::encode_state_body;
use ramstream_codec::{Vectored, VectoredBuffers};
use ramstream_migrate::{
    MultifdSendOptions, OwnedDeviceBlob, RamBlockLayout, SendStats, Source, SourceOptions, Transmit,
};
use ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES;
use ramstream_spec::extension::reference;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use ramstream_migrate::DigestWorker;

use crate::digest_worker::catch_up;
use crate::error::{Phase, SendError, SendErrorKind};
use crate::multifd::{random_uuid, Channels};
use crate::pages::{Pages, SharedPages};
use crate::source::{GuestSource, StateBlobs};
use crate::stats::{ChannelReport, IterationReport, MigrationReport, MultifdReport, RamStats};
use crate::transport::Transport;

/// How to migrate.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOptions {
    /// XBZRLE after the bulk stage (QEMU capability `xbzrle`).
    pub xbzrle: bool,
    /// XBZRLE cache size in bytes (a power of two).
    pub xbzrle_cache_size: u64,
    /// Bandwidth limit in bytes per second (QEMU `max-bandwidth`); `None` = unlimited.
    pub max_bandwidth: Option<u64>,
    /// Stop the guest once the expected downtime is at most this (QEMU `downtime-limit`).
    pub downtime_limit: Duration,
    /// Stop the guest after this many dirty iterations even if not converged.
    pub max_iterations: u32,
    /// Skip ballooned pages without reading them (false: read and send them like any
    /// other page, the behaviour of a sender without the balloon map). Not with multifd,
    /// whose MULTIFD_FLUSH records take the balloon records' flag 0x200 (SPEC.md §9.1):
    /// ballooned pages then go as zero pages.
    pub skip_ballooned: bool,
    /// QEMU's capability `multifd` with this many channels (`multifd-channels`): RAM
    /// pages go on that many connections beside the main stream, written like QEMU 9.2 to
    /// 11.1 (SPEC.md §14), with [`migrate_multifd`]. Not with
    /// XBZRLE (QEMU 8.2+ refuses the pair).
    pub multifd_channels: Option<NonZeroU8>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            xbzrle: false,
            xbzrle_cache_size: ramstream_spec::xbzrle::DEFAULT_CACHE_SIZE,
            max_bandwidth: None,
            downtime_limit: Duration::from_millis(300),
            max_iterations: 30,
            skip_ballooned: true,
            multifd_channels: None,
        }
    }
}

impl SendOptions {
    /// The engine's options: the reference machine's type, the balloon and digest
    /// extensions (SPEC.md §9, §13.6), multifd (with an all-zero uuid, which
    /// [`migrate_multifd`] replaces with a random one).
    pub fn source_options(&self) -> SourceOptions {
        SourceOptions::default()
            .with_machine_type(reference::MACHINE_TYPE.to_string())
            .with_page_size(PAGE_SIZE)
            .with_xbzrle_cache_size(self.xbzrle.then_some(self.xbzrle_cache_size))
            .with_max_bandwidth(self.max_bandwidth)
            .with_downtime_limit(self.downtime_limit)
            .with_max_iterations(self.max_iterations)
            .with_balloon(self.skip_ballooned && self.multifd_channels.is_none())
            .with_digest(true)
            .with_digest_algorithm(DigestAlgorithm::Sha256Chunked)
            .with_multifd(self.multifd_channels.map(|channels| {
                MultifdSendOptions::default()
                    .with_channels(channels)
                    .with_uuid([0; 16])
            }))
    }
}

/// A progress snapshot, given to the caller's callback after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// The iteration (0 = bulk).
    pub iteration: u32,
    /// Bytes written so far.
    pub transferred: u64,
    /// Pages done in this round.
    pub round_done: u64,
    /// Pages in this round.
    pub round_total: u64,
}

/// Migrates `guest` like [`migrate`], its RAM pages on the multifd
/// `channels` (one writer per channel, in channel-id order: QEMU connects the main stream
/// first, then the channels, each beginning with its initial packet) and everything else on
/// `main`. `opts.multifd_channels` must be the number of writers.
///
/// Each channel is written by a thread of its own, reading the pages of its packets
/// through the guest's [`GuestSource::page_reader`] (a guest without one is refused) into
/// one packet's buffer, testing them for zero, and writing header and pages with one
/// `write_vectored`. The channels' uuid is drawn at random for the migration (and reported
/// in [`MigrationReport::multifd`]). The balloon extension is off: ballooned pages go as
/// zero pages (SPEC.md §9.1: MULTIFD_FLUSH takes its flag).
///
/// A failed channel fails the migration with that channel's error; the guest runs again,
/// as with [`migrate`]. After any failure the channels' queues are closed and
/// their threads joined: a thread blocked in a write returns once its peer reads or closes
/// the connection (a destination closes every connection when one fails).
pub fn migrate_multifd<G, W, C>(
    guest: &mut G,
    main: W,
    channels: Vec<C>,
    opts: &SendOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MigrationReport, SendError>
where
    G: GuestSource,
    W: Write,
    C: Write + Send,
{
    drive(guest, main, Some(channels), opts, progress)
}

/// Migrates `guest` into `out` with QEMU 7.2's precopy algorithm and stream layout.
///
/// On success the guest is left paused (QEMU's `postmigrate`), dirty logging off. On any
/// failure the guest runs again if it was running when called, dirty logging is off, and the
/// error says which phase failed after how many bytes. With
/// [`SendOptions::multifd_channels`] it refuses: multifd needs its channels' connections
/// ([`migrate_multifd`]).
pub fn migrate<G: GuestSource, W: Write>(
    guest: &mut G,
    out: W,
    opts: &SendOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MigrationReport, SendError> {
    drive::<G, W, io::Sink>(guest, out, None, opts, progress)
}

/// [`migrate`] over a main stream and, with [`SendOptions::multifd_channels`], one writer
/// per channel (the shell of [`migrate_multifd`]).
pub(crate) fn drive<G: GuestSource, W: Write, C: Write + Send>(
    guest: &mut G,
    out: W,
    channels: Option<Vec<C>>,
    opts: &SendOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MigrationReport, SendError> {
    let was_running = guest.is_running();
    let blocks: Vec<RamBlockLayout> = guest
        .layout()
        .regions
        .iter()
        .map(|r| RamBlockLayout::new(r.name.clone(), r.size))
        .collect();
    let refuse = |kind: SendErrorKind| SendError {
        phase: Phase::Setup,
        iteration: 0,
        bytes_sent: 0,
        guest_running: was_running,
        kind,
    };
    let mut source_opts = opts.source_options();
    let shared = match (&mut source_opts.multifd, &channels) {
        (None, None) => None,
        (Some(m), Some(c)) if c.len() == usize::from(m.channels.get()) => {
            m.uuid = random_uuid();
            let reader = guest.page_reader().ok_or_else(|| {
                refuse(SendErrorKind::Config(
                    "multifd: this guest offers no page reader for the channel threads \
                     (GuestSource::page_reader)"
                        .into(),
                ))
            })?;
            Some(SharedPages {
                reader,
                blocks: blocks.clone(),
            })
        }
        (m, c) => {
            return Err(refuse(SendErrorKind::Config(format!(
                "multifd: {} channels asked for, {} connections given{}",
                m.map_or(0, |m| m.channels.get()),
                c.as_ref().map_or(0, Vec::len),
                if c.is_none() {
                    " (multifd needs one connection per channel: migrate_multifd)"
                } else {
                    ""
                }
            ))))
        }
    };
    let mut source = Source::new(&blocks, source_opts)
        .map_err(|e| refuse(SendErrorKind::Config(e.kind.to_string())))?;
    let mut out = Transport::new(out);
    let mut times = Times::default();
    let channel_bytes = AtomicU64::new(0);
    // sha256-chunked is hashed by a worker thread when the guest's memory can be read from
    // one (SPEC.md §13.7); else by the engine in line.
    let digest_pages = (source.options().digest
        && source.options().digest_algorithm == DigestAlgorithm::Sha256Chunked)
        .then(|| guest.page_reader())
        .flatten()
        .map(|reader| SharedPages {
            reader,
            blocks: blocks.clone(),
        });
    let mut drive_loop = |source: &mut Source, threads: Threads<'_, '_>, times: &mut Times| {
        run(guest, &blocks, source, &mut out, threads, progress, times)
    };
    let result = std::thread::scope(|scope| {
        let mut digest = match digest_pages
            .as_ref()
            .map(|ram| DigestWorker::start(scope, ram))
        {
            Some(Err(e)) => return Err(SendErrorKind::Io(e)),
            started => started.and_then(Result::ok),
        };
        let r = match (&shared, channels) {
            (Some(shared), Some(writers)) => {
                let senders = source.channel_senders();
                let mut ch = Channels::start(scope, senders, writers, shared, &channel_bytes);
                let threads = Threads {
                    channels: Some(&mut ch),
                    digest: digest.as_mut(),
                };
                let r = drive_loop(&mut source, threads, &mut times);
                let end = ch.finish(&mut source, r.is_ok());
                r.and(end)
            }
            _ => {
                let threads = Threads {
                    channels: None,
                    digest: digest.as_mut(),
                };
                drive_loop(&mut source, threads, &mut times)
            }
        };
        let end = digest.map_or(Ok(()), |d| d.finish().map_err(SendErrorKind::from));
        r.and(end)
    });
    match result {
        Ok(()) => Ok(report(&source, &times)),
        Err(kind) => {
            let _ = guest.stop_dirty_log();
            if was_running && !guest.is_running() {
                let _ = guest.resume();
            }
            Err(SendError {
                phase: source.phase().into(),
                iteration: source.iteration(),
                bytes_sent: out.written + channel_bytes.load(Ordering::Relaxed),
                guest_running: guest.is_running(),
                kind,
            })
        }
    }
}

/// What the shell times with the real clock (the engine times rounds from the same reads).
#[derive(Debug, Default)]
struct Times {
    total: Duration,
    downtime: Duration,
    digest: Duration,
    /// CPU time of the whole process from connect to EOF, where readable.
    cpu: Option<Duration>,
}

/// Pages of the sha256-chunked digest the main thread hashes per poll while the digest
/// worker is behind (the engine's own pace when it hashes in line: one batch's worth).
const SHARED_DIGEST_PAGES: u64 = 64;

/// The threads beside the main loop: the multifd channels, the digest worker.
struct Threads<'a, 'scope> {
    channels: Option<&'a mut Channels<'scope>>,
    digest: Option<&'a mut DigestWorker<'scope>>,
}

/// The loop: poll the engine, do what it says; with multifd, hand the channels their
/// packets and take their reports; with a digest worker, hand it chunks to hash and the
/// engine its results.
fn run<G: GuestSource, W: Write>(
    guest: &mut G,
    blocks: &[RamBlockLayout],
    source: &mut Source,
    out: &mut Transport<W>,
    threads: Threads<'_, '_>,
    progress: &mut dyn FnMut(&Progress),
    times: &mut Times,
) -> Result<(), SendErrorKind> {
    let Threads {
        mut channels,
        mut digest,
    } = threads;
    let t0 = Instant::now();
    let cpu0 = crate::stats::process_cpu_time();
    let mut paused_at = None;
    update_balloon(guest, source)?;
    let mut report_progress = |source: &Source, written: u64| {
        let p = source.progress();
        progress(&Progress {
            phase: p.phase.into(),
            iteration: p.iteration,
            transferred: written + source.stats().multifd_bytes,
            round_done: p.round_done,
            round_total: p.round_total,
        });
    };
    // One arena and segment list for every poll's sink (each poll borrows guest memory
    // afresh, so the sink itself cannot outlive it).
    let mut buffers = VectoredBuffers::default();
    loop {
        if let Some(ch) = channels.as_deref_mut() {
            ch.take_reports(source)?;
        }
        let ram = Pages {
            reader: &*guest,
            blocks,
        };
        if let Some(d) = digest.as_deref_mut() {
            d.serve(source)?;
            let p = source.progress();
            let due = source.digest_chunks_due() * DIGEST_CHUNK_PAGES;
            if d.busy() && due > p.round_total.saturating_sub(p.round_done) {
                // The worker is behind what is left to send: this thread hashes a share, so
                // that little is left to hash once the guest is stopped.
                source.hash_digest_ahead(&ram, SHARED_DIGEST_PAGES)?;
            }
        }
        let now = Instant::now();
        let mut v = Vectored::with_buffers(std::mem::take(&mut buffers));
        let transmit = source.poll_transmit(now, &ram, &mut v);
        if let Ok(Transmit::Send { .. }) = &transmit {
            out.write_vectored_all(&v)?;
        }
        buffers = v.recycle();
        match transmit? {
            Transmit::Send { bytes } => {
                source.handle_sent(bytes);
                report_progress(source, out.written);
            }
            Transmit::Wait(until) => std::thread::sleep(until.saturating_duration_since(now)),
            Transmit::SyncDirty => {
                if source.stats().dirty_sync_count == 0 {
                    guest.start_dirty_log()?;
                }
                for map in guest.sync_dirty()? {
                    source.handle_dirty_bitmap(map.region(), map.words())?;
                }
                update_balloon(guest, source)?;
                source.handle_sync(Instant::now())?;
            }
            Transmit::StopGuest => {
                if let Some(d) = digest.as_deref_mut() {
                    catch_up(d, source, &ram)?;
                }
                paused_at = Some(Instant::now());
                guest.pause()?;
                let mut devices = device_sections(guest.state_blobs()?)?;
                source.handle_stopped(Instant::now(), &mut devices)?;
                if let Some(d) = digest.as_deref_mut() {
                    d.drain(source)?;
                }
                if source.options().digest_algorithm == DigestAlgorithm::Sha256Sparse {
                    // sha256-chunked is kept by the engine during the precopy (SPEC.md
                    // §13.7); sha256-sparse hashes all of RAM now, in parallel.
                    let td = Instant::now();
                    source.handle_digests(guest.block_digests()?)?;
                    times.digest = td.elapsed();
                }
            }
            Transmit::Packets | Transmit::WaitChannels => {
                let Some(ch) = channels.as_deref_mut() else {
                    return Err(SendErrorKind::Config(
                        "the engine asked for multifd channels, and there are none".into(),
                    ));
                };
                ch.serve(source)?;
                report_progress(source, out.written);
            }
            Transmit::Done => break,
            _ => {}
        }
    }
    out.inner.flush()?;
    // The downtime ends with the stream (QEMU's `migration_calculate_complete` too): turning
    // the dirty log off afterwards (a few ms for a large slot under nested KVM) is cleanup
    // the destination does not wait for.
    times.downtime = paused_at.map_or(Duration::ZERO, |t| t.elapsed());
    let _ = guest.stop_dirty_log();
    times.total = t0.elapsed();
    times.cpu = cpu0
        .zip(crate::stats::process_cpu_time())
        .map(|(a, b)| b.saturating_sub(a));
    Ok(())
}

/// Hands the guest's balloon to the engine (ignored by it without the balloon map).
fn update_balloon<G: GuestSource>(guest: &G, source: &mut Source) -> Result<(), SendErrorKind> {
    if !source.options().balloon {
        return Ok(());
    }
    let runs = guest.ballooned_runs();
    for block in 0..guest.layout().regions.len() {
        source.handle_balloon(block, runs.get(block).map_or(&[], Vec::as_slice))?;
    }
    Ok(())
}

/// The reference machine's device sections (SPEC.md §13.6): vCPU, VM and memory layout,
/// each body length-prefixed.
fn device_sections(blobs: StateBlobs) -> Result<Vec<OwnedDeviceBlob>, SendErrorKind> {
    [
        (reference::VCPU_SECTION_IDSTR, blobs.vcpu),
        (reference::VM_SECTION_IDSTR, blobs.vm),
        (reference::LAYOUT_SECTION_IDSTR, blobs.layout),
    ]
    .into_iter()
    .map(|(idstr, blob)| {
        let mut body = Vec::with_capacity(4 + blob.len());
        encode_state_body(&blob, &mut body)?;
        Ok(OwnedDeviceBlob {
            idstr: idstr.to_string(),
            instance_id: 0,
            version_id: reference::SECTION_VERSION,
            body,
        })
    })
    .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The engine's figures, named as `query-migrate` names them.
fn report(source: &Source, times: &Times) -> MigrationReport {
    let s: &SendStats = source.stats();
    MigrationReport {
        status: "completed".into(),
        total_time_ms: ms(times.total),
        cpu_ms: times.cpu.map_or(0.0, ms),
        setup_time_ms: ms(s.setup_time),
        downtime_ms: ms(times.downtime),
        digest_ms: ms(times.digest),
        digest_chunks_at_stop: s.digest_chunks_at_stop,
        digest_chunks_offloaded: s.digest_chunks_offloaded,
        digest_chunks_dropped: s.digest_chunks_dropped,
        expected_downtime_ms: ms(s.expected_downtime),
        iterations: s.iterations,
        converged: s.converged,
        ram: RamStats {
            transferred: s.sent,
            remaining: s.remaining,
            total: s.total,
            duplicate: s.duplicate,
            normal: s.normal,
            normal_bytes: s.normal_bytes,
            xbzrle_pages: s.xbzrle_pages,
            dirty_pages_rate: s.dirty_pages_rate,
            mbps: s.mbps,
            dirty_sync_count: s.dirty_sync_count,
            ballooned_skipped: s.ballooned_skipped,
            balloon_records: s.balloon_records,
            pages_visited: s.pages_visited,
            pages_known_zero: s.pages_known_zero,
            multifd_bytes: s.multifd_bytes,
        },
        xbzrle_cache: source.xbzrle_stats(),
        rounds: s
            .rounds
            .iter()
            .map(|r| IterationReport {
                iteration: r.iteration,
                pages: r.pages,
                bytes: r.bytes,
                duration_ms: ms(r.duration),
                dirty_after: r.dirty_after,
                expected_downtime_ms: ms(r.expected_downtime),
            })
            .collect(),
        digests: source
            .digest()
            .map(|d| {
                d.blocks
                    .iter()
                    .map(|b| (b.idstr.clone(), hex::encode(b.sha256)))
                    .collect()
            })
            .unwrap_or_default(),
        multifd: source.options().multifd.map(|m| MultifdReport {
            channels: m.channels.get(),
            uuid: uuid_string(&m.uuid),
            sync_points: s.multifd_syncs,
            per_channel: (s.channels.iter().zip(0..))
                .map(|(c, id)| ChannelReport {
                    id,
                    packets: c.packets,
                    syncs: c.syncs,
                    bytes: c.bytes,
                    normal: c.normal,
                    zero: c.zero,
                })
                .collect(),
        }),
    }
}

/// A uuid as `8-4-4-4-12` lowercase hex.
fn uuid_string(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
