//! The precopy loop: the thin shell around [`ramstream_migrate::Source`]. It reads the
//! clock, the guest's dirty log and balloon, writes what the engine produces to the
//! transport, sleeps when the bandwidth limit says so, and pauses or resumes the guest.

use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use ramstream_codec::extension::state::encode_state_body;
use ramstream_codec::{PageAddr, Vectored};
use ramstream_migrate::{
    GuestRam, OwnedDeviceBlob, RamBlockLayout, SendStats, Source, SourceOptions, Transmit,
};
use ramstream_spec::extension::reference;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use crate::error::{GuestError, Phase, SendError, SendErrorKind};
use crate::source::{GuestSource, StateBlobs};
use crate::stats::{IterationReport, MigrationReport, RamStats};

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
    /// other page, the behaviour of a sender without the balloon map).
    pub skip_ballooned: bool,
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
        }
    }
}

impl SendOptions {
    /// The engine's options: the reference machine's type, the balloon and digest
    /// extensions (SPEC.md §9, §13.6).
    pub fn source_options(&self) -> SourceOptions {
        SourceOptions {
            machine_type: reference::MACHINE_TYPE.to_string(),
            page_size: PAGE_SIZE,
            xbzrle_cache_size: self.xbzrle.then_some(self.xbzrle_cache_size),
            max_bandwidth: self.max_bandwidth,
            downtime_limit: self.downtime_limit,
            max_iterations: self.max_iterations,
            balloon: self.skip_ballooned,
            digest: true,
        }
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

/// The guest's pages as the engine reads them: [`GuestSource::read_page`], by address too.
struct GuestPages<'g, G> {
    guest: &'g G,
    blocks: &'g [RamBlockLayout],
}

impl<G: GuestSource> GuestRam for GuestPages<'_, G> {
    type Error = GuestError;

    fn layout(&self) -> &[RamBlockLayout] {
        self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError> {
        self.guest.read_page(addr, buf)
    }

    fn write_page(&self, _: PageAddr, _: &[u8]) -> Result<(), GuestError> {
        Err(GuestError::Other("a source guest is only read".into()))
    }
}

/// The transport, counting every byte it accepted.
struct Transport<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Transport<W> {
    fn write_all_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            match self.inner.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Migrates `guest` into `out` with QEMU 7.2's precopy algorithm and stream layout.
///
/// On success the guest is left paused (QEMU's `postmigrate`), dirty logging off. On any
/// failure the guest runs again if it was running when called, dirty logging is off, and the
/// error says which phase failed after how many bytes.
pub fn migrate<G: GuestSource, W: Write>(
    guest: &mut G,
    out: W,
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
    let mut source = match Source::new(&blocks, opts.source_options()) {
        Ok(s) => s,
        Err(e) => {
            return Err(SendError {
                phase: Phase::Setup,
                iteration: 0,
                bytes_sent: 0,
                guest_running: was_running,
                kind: SendErrorKind::Config(e.kind.to_string()),
            })
        }
    };
    let mut out = Transport {
        inner: out,
        written: 0,
    };
    let mut times = Times::default();
    match run(guest, &blocks, &mut source, &mut out, progress, &mut times) {
        Ok(()) => Ok(report(&source, &times)),
        Err(kind) => {
            let _ = guest.stop_dirty_log();
            if was_running && !guest.is_running() {
                let _ = guest.resume();
            }
            Err(SendError {
                phase: source.phase().into(),
                iteration: source.iteration(),
                bytes_sent: out.written,
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
}

/// The loop: poll the engine, do what it says.
fn run<G: GuestSource, W: Write>(
    guest: &mut G,
    blocks: &[RamBlockLayout],
    source: &mut Source,
    out: &mut Transport<W>,
    progress: &mut dyn FnMut(&Progress),
    times: &mut Times,
) -> Result<(), SendErrorKind> {
    let t0 = Instant::now();
    let mut paused_at = None;
    update_balloon(guest, source)?;
    loop {
        let now = Instant::now();
        let ram = GuestPages {
            guest: &*guest,
            blocks,
        };
        let mut v = Vectored::default();
        match source.poll_transmit(now, &ram, &mut v)? {
            Transmit::Send { bytes } => {
                out.write_all_vectored(&mut v.io_slices())?;
                drop(v);
                source.handle_sent(bytes);
                let p = source.progress();
                progress(&Progress {
                    phase: p.phase.into(),
                    iteration: p.iteration,
                    transferred: out.written,
                    round_done: p.round_done,
                    round_total: p.round_total,
                });
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
                paused_at = Some(Instant::now());
                guest.pause()?;
                let mut devices = device_sections(guest.state_blobs()?)?;
                let td = Instant::now();
                let digests = guest.block_digests()?;
                times.digest = td.elapsed();
                source.handle_stopped(Instant::now(), &mut devices)?;
                source.handle_digests(digests)?;
            }
            Transmit::Done => break,
            _ => {}
        }
    }
    out.inner.flush()?;
    let _ = guest.stop_dirty_log();
    times.downtime = paused_at.map_or(Duration::ZERO, |t| t.elapsed());
    times.total = t0.elapsed();
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
        setup_time_ms: ms(s.setup_time),
        downtime_ms: ms(times.downtime),
        digest_ms: ms(times.digest),
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
    }
}
