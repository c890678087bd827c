//! The precopy state machine: setup, bulk stage, dirty iterations, stop-and-copy.

use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use ramstream_codec::balloon::{BalloonMapKind, PageRun};
use ramstream_codec::cache::{PageDecision, XbzrleCache};
use ramstream_codec::extension::digest::{BlockDigest, DigestSection};
use ramstream_codec::extension::state::encode_state_body;
use ramstream_codec::zero::is_zero_page;
use ramstream_codec::{
    Configuration, DeviceSection, Encoder, PageAddr, RamBlock, SectionHeader, Vectored,
};
use ramstream_reference_vmm::DirtyBitmap;
use ramstream_spec::config::capability;
use ramstream_spec::extension::{digest, reference};
use ramstream_spec::ram::{
    SECTION_IDSTR, SECTION_INSTANCE_ID, SECTION_VERSION, TARGET_PAGE_BITS_X86,
    TARGET_PAGE_SIZE_X86 as PAGE_SIZE,
};
use ramstream_spec::stream::SectionType;

use crate::error::{Phase, SendError, SendErrorKind};
use crate::source::{runs_of, GuestSource};
use crate::stats::{IterationReport, MigrationReport, RamStats};

/// Section id of the `ram` section.
pub const RAM_SECTION_ID: u32 = 0;
/// Section ids of the FULL sections: vCPU, VM, layout, digest.
pub const DEVICE_SECTION_IDS: [u32; 4] = [1, 2, 3, 4];
/// Pages read and encoded per vectored write.
const BATCH: usize = 64;
/// Pages per PART section at most.
const PAGES_PER_PART: usize = 8192;

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

/// A writer that counts bytes and enforces the bandwidth limit in 100 ms windows, as QEMU's
/// rate limiter does.
struct Meter<W> {
    inner: W,
    bytes: u64,
    limit: Option<u64>,
    window_start: Instant,
    window_bytes: u64,
}

impl<W: Write> Meter<W> {
    fn write_all_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            match self.inner.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.bytes += n as u64;
                    self.window_bytes += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.throttle();
        Ok(())
    }

    fn throttle(&mut self) {
        let Some(limit) = self.limit else { return };
        let window = Duration::from_millis(100);
        let elapsed = self.window_start.elapsed();
        if self.window_bytes >= limit / 10 && elapsed < window {
            std::thread::sleep(window - elapsed);
        }
        if self.window_start.elapsed() >= window {
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
    }
}

enum Planned {
    Page(usize),
    Zero,
    Xbzrle(std::ops::Range<usize>),
}

struct Engine<'g, G, W> {
    guest: &'g mut G,
    out: Meter<W>,
    opts: SendOptions,
    enc: Encoder,
    cache: Option<XbzrleCache>,
    pages: Vec<u8>,
    deltas: Vec<u8>,
    plan: Vec<(PageAddr, Planned)>,
    stats: RamStats,
    phase: Phase,
    iteration: u32,
    progress: &'g mut dyn FnMut(&Progress),
    /// First RAM page number of each block (for the XBZRLE cache key).
    block_base: Vec<u64>,
    /// The balloon runs last announced per block (`None`: never); empty without the map.
    sent_runs: Vec<Option<Vec<PageRun>>>,
    /// Balloon records written.
    balloon_records: u64,
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
    let cache = if opts.xbzrle {
        match XbzrleCache::new(opts.xbzrle_cache_size, PAGE_SIZE) {
            Ok(c) => Some(c),
            Err(e) => {
                return Err(SendError {
                    phase: Phase::Setup,
                    iteration: 0,
                    bytes_sent: 0,
                    guest_running: was_running,
                    kind: SendErrorKind::Config(format!("xbzrle cache: {e}")),
                })
            }
        }
    } else {
        None
    };
    let block_base = {
        let mut acc = 0;
        guest
            .layout()
            .regions
            .iter()
            .map(|r| {
                let b = acc;
                acc += r.pages();
                b
            })
            .collect()
    };
    let mut e = Engine {
        guest,
        out: Meter {
            inner: out,
            bytes: 0,
            limit: opts.max_bandwidth,
            window_start: Instant::now(),
            window_bytes: 0,
        },
        opts: opts.clone(),
        enc: Encoder::new(TARGET_PAGE_BITS_X86),
        cache,
        pages: vec![0; BATCH * PAGE_SIZE],
        deltas: Vec::with_capacity(BATCH * PAGE_SIZE),
        plan: Vec::with_capacity(BATCH),
        stats: RamStats::default(),
        phase: Phase::Setup,
        iteration: 0,
        progress,
        block_base,
        sent_runs: Vec::new(),
        balloon_records: 0,
    };
    match e.run() {
        Ok(report) => Ok(report),
        Err(kind) => {
            let _ = e.guest.stop_dirty_log();
            if was_running && !e.guest.is_running() {
                let _ = e.guest.resume();
            }
            Err(SendError {
                phase: e.phase,
                iteration: e.iteration,
                bytes_sent: e.out.bytes,
                guest_running: e.guest.is_running(),
                kind,
            })
        }
    }
}

impl<G: GuestSource, W: Write> Engine<'_, G, W> {
    fn blocks(&self) -> Vec<RamBlock> {
        self.guest
            .layout()
            .regions
            .iter()
            .map(|r| RamBlock {
                idstr: r.name.clone(),
                used_length: r.size,
                page_size: None,
                mr_addr: None,
            })
            .collect()
    }

    fn write_small(
        &mut self,
        f: impl FnOnce(&mut Encoder, &mut Vec<u8>) -> Result<(), ramstream_codec::Error>,
    ) -> Result<(), SendErrorKind> {
        let mut v = Vec::new();
        f(&mut self.enc, &mut v)?;
        Ok(self.out.write_all_vectored(&mut [IoSlice::new(&v)])?)
    }

    /// Ballooned pages as one bitmap per block (words of 64 pages).
    fn ballooned_bitmaps(&self) -> Vec<Vec<u64>> {
        let runs = self.guest.ballooned_runs();
        self.guest
            .layout()
            .regions
            .iter()
            .enumerate()
            .map(|(b, r)| {
                let mut w = vec![0u64; r.pages().div_ceil(64) as usize];
                if self.opts.skip_ballooned {
                    for run in runs_of(&runs, b) {
                        for p in run.start..run.end().min(r.pages()) {
                            w[(p / 64) as usize] |= 1 << (p % 64);
                        }
                    }
                }
                w
            })
            .collect()
    }

    fn run(&mut self) -> Result<MigrationReport, SendErrorKind> {
        let t0 = Instant::now();
        let mut report = MigrationReport {
            status: "active".into(),
            ..Default::default()
        };
        self.stats.total = self.guest.layout().total_bytes();

        // Setup: header, configuration, ram START with MEM_SIZE (QEMU ram_save_setup).
        self.phase = Phase::Setup;
        let blocks = self.blocks();
        let map_on = self.opts.skip_ballooned;
        let balloon_caps = map_on.then(|| vec![capability::RAMSTREAM_BALLOON_V1]);
        self.write_small(|enc, v| {
            enc.header(v);
            enc.configuration(
                &Configuration {
                    machine_type: reference::MACHINE_TYPE,
                    target_page_bits: None,
                    capabilities: balloon_caps,
                    uuid: None,
                },
                v,
            )?;
            enc.section_header(
                &SectionHeader {
                    section_type: SectionType::START,
                    section_id: RAM_SECTION_ID,
                    idstr: SECTION_IDSTR,
                    instance_id: SECTION_INSTANCE_ID,
                    version_id: SECTION_VERSION,
                },
                v,
            )?;
            enc.mem_size(&blocks, v)
        })?;
        if map_on {
            // The whole balloon map, one full-map record per block (SPEC.md §9.4).
            self.sent_runs = vec![None; blocks.len()];
            self.send_balloon_updates()?;
        }
        self.write_small(|enc, v| {
            enc.eos(v);
            enc.footer(RAM_SECTION_ID, v);
            Ok(())
        })?;
        self.guest.start_dirty_log()?;
        // The setup sync: everything counts as dirty for the bulk stage.
        self.guest.sync_dirty()?;
        self.stats.dirty_sync_count = 1;
        if let Some(c) = &mut self.cache {
            c.set_generation(1);
        }
        report.setup_time_ms = ms(t0.elapsed());

        // Bulk stage: every page that is not ballooned.
        self.phase = Phase::Bulk;
        let ballooned = self.ballooned_bitmaps();
        let mut bulk = Vec::new();
        for (b, r) in self.guest.layout().regions.iter().enumerate() {
            let w = &ballooned[b];
            for p in 0..r.pages() {
                if w[(p / 64) as usize] >> (p % 64) & 1 == 1 {
                    self.stats.ballooned_skipped += 1;
                } else {
                    bulk.push((b, p));
                }
            }
        }
        let mut round_start = Instant::now();
        let mut round_bytes = self.out.bytes;
        self.send_round(&bulk, SectionType::PART, false)?;
        if let Some(c) = &mut self.cache {
            c.end_of_first_pass();
        }
        let mut rounds_log = vec![IterationReport {
            iteration: 0,
            pages: bulk.len() as u64,
            ..Default::default()
        }];
        drop(bulk);

        // Dirty iterations until the expected downtime meets the limit.
        let mut last_rate_update = Instant::now();
        let (pending, converged, expected) = loop {
            let dur = round_start.elapsed().max(Duration::from_millis(1));
            let bytes = self.out.bytes - round_bytes;
            let bandwidth = bytes as f64 / dur.as_secs_f64(); // bytes per second
            let dirty = self.sync()?;
            if let Some(c) = &mut self.cache {
                if last_rate_update.elapsed() >= Duration::from_secs(1) {
                    c.update_rates();
                    last_rate_update = Instant::now();
                }
            }
            let n = dirty.len() as u64;
            self.stats.remaining = n * PAGE_SIZE as u64;
            self.stats.dirty_pages_rate = (n as f64 / dur.as_secs_f64()) as u64;
            self.stats.mbps = bandwidth * 8.0 / 1e6;
            let expected = self.stats.remaining as f64 / bandwidth.max(1.0);
            if let Some(last) = rounds_log.last_mut() {
                last.bytes = bytes;
                last.duration_ms = ms(dur);
                last.dirty_after = n;
                last.expected_downtime_ms = expected * 1e3;
            }
            if expected <= self.opts.downtime_limit.as_secs_f64() {
                break (dirty, true, expected);
            }
            if self.iteration >= self.opts.max_iterations {
                break (dirty, false, expected);
            }
            self.iteration += 1;
            self.phase = Phase::Iterate;
            round_start = Instant::now();
            round_bytes = self.out.bytes;
            rounds_log.push(IterationReport {
                iteration: self.iteration,
                pages: n,
                ..Default::default()
            });
            self.send_round(&dirty, SectionType::PART, false)?;
        };
        report.converged = converged;
        report.expected_downtime_ms = expected * 1e3;
        report.iterations = self.iteration;

        // Stop and copy.
        self.phase = Phase::StopAndCopy;
        let down = Instant::now();
        // As QEMU's migration_completion: no bandwidth limit while the guest is stopped.
        self.out.limit = None;
        self.guest.pause()?;
        let mut last = pending;
        last.extend(self.sync()?);
        last.sort_unstable();
        last.dedup();
        self.send_round(&last, SectionType::END, true)?;
        let blobs = self.guest.state_blobs()?;
        let td = Instant::now();
        let sums = self.guest.block_digests()?;
        report.digest_ms = ms(td.elapsed());
        let digest = DigestSection {
            blocks: blocks
                .iter()
                .zip(&sums)
                .map(|(b, s)| BlockDigest {
                    idstr: b.idstr.clone(),
                    used_length: b.used_length,
                    sha256: *s,
                })
                .collect(),
        };
        let state = |blob: &[u8]| -> Result<Vec<u8>, SendErrorKind> {
            let mut body = Vec::with_capacity(4 + blob.len());
            encode_state_body(blob, &mut body)?;
            Ok(body)
        };
        let mut digest_body = Vec::with_capacity(digest.encoded_len());
        digest.encode(&mut digest_body)?;
        let bodies = [
            (
                reference::VCPU_SECTION_IDSTR,
                state(&blobs.vcpu)?,
                reference::SECTION_VERSION,
                0,
            ),
            (
                reference::VM_SECTION_IDSTR,
                state(&blobs.vm)?,
                reference::SECTION_VERSION,
                0,
            ),
            (
                reference::LAYOUT_SECTION_IDSTR,
                state(&blobs.layout)?,
                reference::SECTION_VERSION,
                0,
            ),
            (
                digest::DIGEST_SECTION_IDSTR,
                digest_body,
                digest::DIGEST_SECTION_VERSION,
                digest::DIGEST_SECTION_INSTANCE_ID,
            ),
        ];
        let mut v = Vectored::default();
        for ((idstr, body, version, instance), id) in bodies.iter().zip(DEVICE_SECTION_IDS) {
            self.enc.device(
                &DeviceSection {
                    header: SectionHeader {
                        section_type: SectionType::FULL,
                        section_id: id,
                        idstr,
                        instance_id: *instance,
                        version_id: *version,
                    },
                    body_offset: 0,
                    body,
                },
                &mut v,
            )?;
            self.enc.footer(id, &mut v);
        }
        self.enc.eof(&mut v);
        self.out.write_all_vectored(&mut v.io_slices())?;
        self.out.inner.flush()?;
        let _ = self.guest.stop_dirty_log();
        report.downtime_ms = ms(down.elapsed());
        report.total_time_ms = ms(t0.elapsed());
        self.phase = Phase::Completed;
        self.stats.transferred = self.out.bytes;
        self.stats.remaining = 0;
        self.stats.balloon_records = self.balloon_records;
        report.status = "completed".into();
        report.ram = self.stats.clone();
        report.xbzrle_cache = self.cache.as_ref().map(|c| c.stats());
        report.rounds = rounds_log;
        report.digests = digest
            .blocks
            .iter()
            .map(|b| (b.idstr.clone(), hex::encode(b.sha256)))
            .collect();
        Ok(report)
    }

    /// A dirty sync: the dirty pages that are not ballooned, `(block, page)` ascending.
    fn sync(&mut self) -> Result<Vec<(usize, u64)>, SendErrorKind> {
        let maps: Vec<DirtyBitmap> = self.guest.sync_dirty()?;
        self.stats.dirty_sync_count += 1;
        if let Some(c) = &mut self.cache {
            c.set_generation(self.stats.dirty_sync_count);
        }
        let ballooned = self.ballooned_bitmaps();
        let mut out = Vec::new();
        for m in &maps {
            let b = m.region();
            for p in m.iter() {
                if ballooned[b][(p / 64) as usize] >> (p % 64) & 1 == 1 {
                    self.stats.ballooned_skipped += 1;
                } else {
                    out.push((b, p));
                }
            }
        }
        Ok(out)
    }

    /// Sends `pages` in sections of type `kind` (PART or END), each ended by EOS and footer.
    fn send_round(
        &mut self,
        pages: &[(usize, u64)],
        kind: SectionType,
        last_stage: bool,
    ) -> Result<(), SendErrorKind> {
        let total = pages.len() as u64;
        let mut done = 0u64;
        let parts: Vec<&[(usize, u64)]> = if pages.is_empty() {
            vec![&[]]
        } else {
            pages.chunks(PAGES_PER_PART).collect()
        };
        let nparts = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            // Only the very last section of the stop-and-copy is END.
            let st = if kind == SectionType::END && i + 1 == nparts {
                SectionType::END
            } else {
                SectionType::PART
            };
            self.enc.reset_continue();
            self.write_small(|enc, v| {
                enc.section_part(st, RAM_SECTION_ID, v);
                Ok(())
            })?;
            if i == 0 {
                self.send_balloon_updates()?;
            }
            for batch in part.chunks(BATCH) {
                self.send_batch(batch, last_stage)?;
                done += batch.len() as u64;
                (self.progress)(&Progress {
                    phase: self.phase,
                    iteration: self.iteration,
                    transferred: self.out.bytes,
                    round_done: done,
                    round_total: total,
                });
            }
            self.write_small(|enc, v| {
                enc.eos(v);
                enc.footer(RAM_SECTION_ID, v);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Writes a full-map balloon record for every block whose runs changed since they were
    /// last announced (only with the balloon map on).
    fn send_balloon_updates(&mut self) -> Result<(), SendErrorKind> {
        if self.sent_runs.is_empty() {
            return Ok(());
        }
        let runs = self.guest.ballooned_runs();
        let mut v = Vec::new();
        for b in 0..self.sent_runs.len() {
            let now = runs_of(&runs, b);
            if self.sent_runs[b].as_ref() == Some(&now) {
                continue;
            }
            self.enc
                .balloon_v1(b, BalloonMapKind::FullMap, &now, &[], &mut v)?;
            self.balloon_records += 1;
            self.sent_runs[b] = Some(now);
        }
        self.out.write_all_vectored(&mut [IoSlice::new(&v)])?;
        Ok(())
    }

    fn send_batch(
        &mut self,
        batch: &[(usize, u64)],
        last_stage: bool,
    ) -> Result<(), SendErrorKind> {
        self.plan.clear();
        self.deltas.clear();
        for (slot, &(b, p)) in batch.iter().enumerate() {
            let buf = &mut self.pages[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE];
            self.guest.read_page(b, p, buf)?;
            self.stats.pages_visited += 1;
            let buf = &self.pages[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE];
            let addr = PageAddr {
                block: b,
                offset: p * PAGE_SIZE as u64,
            };
            let planned = match &mut self.cache {
                Some(cache) => {
                    let key = (self.block_base[b] + p) * PAGE_SIZE as u64;
                    match cache.decide(key, buf, last_stage) {
                        Ok(PageDecision::Zero) => Some(Planned::Zero),
                        Ok(PageDecision::Unchanged) => None,
                        Ok(PageDecision::Xbzrle { delta }) => {
                            let s = self.deltas.len();
                            self.deltas.extend_from_slice(delta);
                            Some(Planned::Xbzrle(s..self.deltas.len()))
                        }
                        // The cache's copy equals the page read (see the cache's docs).
                        Ok(PageDecision::Page { .. }) | Err(_) => Some(Planned::Page(slot)),
                    }
                }
                None if is_zero_page(buf) => Some(Planned::Zero),
                None => Some(Planned::Page(slot)),
            };
            if let Some(pl) = planned {
                self.plan.push((addr, pl));
            }
        }
        let mut v = Vectored::default();
        let mut last_block = None;
        for (addr, pl) in &self.plan {
            let named = last_block != Some(addr.block);
            last_block = Some(addr.block);
            match pl {
                Planned::Page(slot) => {
                    self.enc.page(
                        *addr,
                        &self.pages[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE],
                        &mut v,
                    )?;
                    self.stats.normal += 1;
                    self.stats.normal_bytes += PAGE_SIZE as u64;
                }
                Planned::Zero => {
                    self.enc.zero(*addr, 0, &mut v)?;
                    self.stats.duplicate += 1;
                }
                Planned::Xbzrle(r) => {
                    self.enc.xbzrle(*addr, &self.deltas[r.clone()], &mut v)?;
                    self.stats.xbzrle_pages += 1;
                    if named {
                        if let Some(c) = &mut self.cache {
                            let name = &self.guest.layout().regions[addr.block].name;
                            c.add_idstr_bytes(1 + name.len() as u64);
                        }
                    }
                }
            }
        }
        self.out.write_all_vectored(&mut v.io_slices())?;
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
