//! # ramstream reference receiver
//!
//! Loads a live-migration stream written by the reference sender into a destination guest
//! and resumes it, as a QEMU destination would. It is a thin shell (IO and the reference
//! machine's glue) around [`ramstream_migrate::Loader`], the sans-IO destination engine:
//!
//! 1. reads the stream through a fixed-size buffer (1 MiB by default, compacted as the
//!    loader consumes it; the whole stream is never held: the codec's [`StreamReader`]
//!    over a [`StreamBuffer`]) and feeds it to
//!    [`Loader::handle`](ramstream_migrate::Loader::handle);
//! 2. when MEM_SIZE arrives ([`LoaderEvent::RamNeeded`]), builds the destination for the
//!    reference machine's layout of that size; the loader then writes every PAGE straight
//!    from the buffer into guest memory, applies XBZRLE deltas onto the page the guest holds,
//!    leaves pages that are already zero untouched, and refuses what SPEC.md §10.2 lists;
//! 3. collects the device sections ([`LoaderEvent::Device`]: vCPU, VM state, memory layout,
//!    RAM digest, read with [`ramstream_codec::extension`]); after the stream, restores the
//!    vCPU and VM state (the VM state carries the balloon, whose pages are discarded) and
//!    checks the memory layout section against MEM_SIZE;
//! 4. checks the digest section (SPEC.md §13) against its own memory with
//!    [`Loader::verify_digest_with`](ramstream_migrate::Loader::verify_digest_with) and
//!    **refuses to resume** on a mismatch, a missing digest, or a stream that ended early;
//! 5. resumes the guest and proves it runs (heartbeat advances, self-check passes).
//!
//! Guest memory is reached only through [`GuestRam`]'s
//! page reads and writes ([`Destination`]). In-memory destinations, the fuzz harness and
//! the sender–receiver pair tests are in the `ramstream-test-support` crate.
//!
//! [`receive_multifd`] takes a multifd migration (SPEC.md §14): the main stream as above,
//! and one connection per channel, each loaded on a thread of its own by the engine's
//! [`ChannelLoader`](ramstream_migrate::multifd::ChannelLoader) straight into the
//! destination's memory; the main stream waits at every sync point until all channels
//! reached it, and the device state is restored only once every channel ended.

#![forbid(unsafe_code)]

pub mod dest;
mod digest_memory;
mod digest_worker;
mod error;
mod options;
mod restore;

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ramstream_codec::io::{ReadError, Step, StreamReader, Window};
use ramstream_codec::{DecoderOptions, StreamBuffer};
use ramstream_migrate::multifd::{ChannelReceiveError, MultifdError};
use ramstream_migrate::{GuestRam, Loader, LoaderEvent, LoaderOptions, Multifd, RamBlockLayout};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::extension::reference;
use ramstream_spec::Dialect;

pub use dest::{DestError, Destination, DigestMemory, KvmDestination, Verification};
use digest_worker::LazyDigestWorker;
pub use error::{LayoutRefusal, RecvError, RecvErrorKind, VerifyError};
pub use options::{ChannelReport, ReceiveOptions, ReceiveReport};
use restore::DeviceSections;

/// The smallest read buffer, whatever [`ReceiveOptions::buffer_size`] says.
const MIN_BUFFER: usize = 64 * 1024;

/// Receives one stream from `input` into a destination built by `make` from the layout
/// MEM_SIZE announces, then restores, checks the digest, resumes and verifies.
pub fn receive<R: Read, D: Destination>(
    mut input: R,
    make: impl FnOnce(&MemoryLayout) -> Result<D, DestError>,
    opts: &ReceiveOptions,
) -> Result<(D, ReceiveReport), RecvError> {
    // The destination's memory for the digest worker, once MEM_SIZE made it.
    let memory: OnceLock<DigestMemory> = OnceLock::new();
    let make = |layout: &MemoryLayout| {
        let d = make(layout)?;
        if let Some(m) = d.digest_memory() {
            let _ = memory.set(m);
        }
        Ok(d)
    };
    let mut rx = Receiver {
        loader: Loader::without_ram(loader_options(opts, Multifd::Off)),
        make: Some(make),
        sections: DeviceSections::default(),
        report: ReceiveReport::default(),
    };
    let loaded = std::thread::scope(|scope| {
        let mut worker = LazyDigestWorker::new(scope, &memory);
        let loaded = rx.load(&mut input, opts, Some(&mut worker));
        loaded.and_then(|eof| worker.finish().map(|()| eof))
    });
    let r = loaded.and_then(|eof| rx.finish(opts, eof));
    let resumed = rx.loader.ram().is_some_and(Destination::resumed);
    let fail = |kind| RecvError {
        bytes_received: rx.report.bytes_received,
        resumed,
        kind,
    };
    match r {
        Ok(()) => match rx.loader.into_ram() {
            Some(dest) => Ok((dest, rx.report)),
            None => Err(fail(RecvErrorKind::NoMemSize)),
        },
        Err(kind) => Err(fail(kind)),
    }
}

/// How long the main stream waits at a sync point for the channels' SYNC packets (a
/// source writes the point only after every channel sent its own, so they are in flight).
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Receives one multifd migration (SPEC.md §14) into a destination built by `make`, then
/// restores, checks the digest, resumes and verifies it, as [`receive`] does.
///
/// `main` is the main stream's connection and `channels` the channels' (any order: each
/// names itself in its initial packet, whose uuid and id are checked; ids `0 ..=
/// channels.len() - 1`). The caller tells the connections apart by their first bytes
/// (`QEVM` for the main stream, `11 22 33 44` for a channel) and passes them with those
/// bytes still unread. One thread per channel loads its pages straight into the
/// destination's memory, which is therefore shared (`D: Sync`); the main stream is loaded
/// on the calling thread, waiting at each sync point until every channel reached it; the
/// device state is restored once every channel ended. The report lists each channel
/// ([`ReceiveReport::channels`]).
///
/// The main stream is read with dialect `qemu` (flag 0x200 is MULTIFD_FLUSH), so it carries
/// no balloon records: the balloon map is off with multifd.
///
/// When a channel fails, the others and the main stream stop at their next sync point or
/// read; a reader blocked on a silent connection returns when its peer closes it (a source
/// whose channel was dropped fails its migration and closes the others).
pub fn receive_multifd<R, C, D>(
    mut main: R,
    channels: Vec<C>,
    make: impl FnOnce(&MemoryLayout) -> Result<D, DestError>,
    opts: &ReceiveOptions,
) -> Result<(D, ReceiveReport), RecvError>
where
    R: Read,
    C: Read + Send,
    D: Destination + Send + Sync,
{
    let n = u8::try_from(channels.len()).unwrap_or(u8::MAX);
    let loader: Loader<Arc<D>> = Loader::without_ram(loader_options(opts, Multifd::Channels(n)));
    let session = loader.multifd().expect("multifd is on").clone();
    // The destination, once MEM_SIZE made it: the channels write through it, and the
    // digest worker hashes its memory.
    let shared: OnceLock<Arc<D>> = OnceLock::new();
    let memory: OnceLock<DigestMemory> = OnceLock::new();
    let make = |layout: &MemoryLayout| {
        let d = Arc::new(make(layout)?);
        if let Some(m) = d.digest_memory() {
            let _ = memory.set(m);
        }
        let _ = shared.set(Arc::clone(&d));
        Ok(d)
    };
    let mut rx = Receiver {
        loader,
        make: Some(make),
        sections: DeviceSections::default(),
        report: ReceiveReport::default(),
    };
    let (loaded, outcomes) = std::thread::scope(|s| {
        let threads: Vec<_> = channels
            .into_iter()
            .map(|input| {
                let mut loader = session.channel_loader();
                let shared = &shared;
                s.spawn(move || {
                    // The channel's packets are framed by the main stream's page size and
                    // land in the memory MEM_SIZE makes: both come with the block table.
                    if !loader.session().wait_bound() {
                        return (None, Err(ChannelReceiveError::Aborted));
                    }
                    let Some(dest) = shared.get() else {
                        return (None, Err(ChannelReceiveError::Aborted));
                    };
                    let r = loader.receive_from(&**dest, input, |_, _| {});
                    let report = loader.id().map(|id| ChannelReport::of(id, loader.stats()));
                    (report, r)
                })
            })
            .collect();
        let mut worker = LazyDigestWorker::new(s, &memory);
        let loaded = rx.load(&mut main, opts, Some(&mut worker));
        let loaded = loaded.and_then(|eof| worker.finish().map(|()| eof));
        if loaded.is_err() {
            session.abort();
        }
        let outcomes: Vec<_> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or((None, Err(ChannelReceiveError::Aborted)))
            })
            .collect();
        (loaded, outcomes)
    });
    // The cause: a channel's own error rather than the main stream's wait that it aborted.
    let mut cause = None;
    for (report, r) in outcomes {
        match r {
            Ok(()) => rx.report.channels.extend(report),
            Err(ChannelReceiveError::Load(e)) => {
                cause.get_or_insert(RecvErrorKind::Load(e));
            }
            Err(ChannelReceiveError::Read(e)) => {
                cause.get_or_insert(RecvErrorKind::ChannelIo {
                    channel: report.map(|r| r.id),
                    source: std::io::Error::other(e),
                });
            }
            Err(_) => {}
        }
    }
    rx.report.channels.sort_by_key(|c| c.id);
    let aborted = |k: &RecvErrorKind| matches!(k, RecvErrorKind::Load(e) if matches!(e.inner_kind(), ramstream_migrate::ErrorKind::Multifd(MultifdError::Aborted)));
    let loaded = match (loaded, cause) {
        (Err(k), Some(c)) if aborted(&k) => Err(c),
        (Ok(_), Some(c)) => Err(c),
        (r, _) => r,
    };
    // Every channel ended: the destination is the loader's alone again.
    let Receiver {
        loader,
        make,
        sections,
        report,
    } = rx;
    drop(make);
    drop(shared);
    let mut rx = Receiver {
        loader: loader.map_ram(|d| {
            Arc::into_inner(d).expect("the channels' threads ended and dropped the destination")
        }),
        make: None::<fn(&MemoryLayout) -> Result<D, DestError>>,
        sections,
        report,
    };
    let r = loaded.and_then(|eof| rx.finish(opts, eof));
    let resumed = rx.loader.ram().is_some_and(Destination::resumed);
    let fail = |kind| RecvError {
        bytes_received: rx.report.bytes_received,
        resumed,
        kind,
    };
    match r {
        Ok(()) => match rx.loader.into_ram() {
            Some(dest) => Ok((dest, rx.report)),
            None => Err(fail(RecvErrorKind::NoMemSize)),
        },
        Err(kind) => Err(fail(kind)),
    }
}

/// The loader's settings: the balloon extension is understood (flag 0x200 is a balloon
/// record only if the stream announces it, SPEC.md §9.3), device sections and the
/// VMDESCRIPTION fit in half the read buffer, RAM is bounded by `max_ram_total`. With
/// multifd, flag 0x200 is QEMU's MULTIFD_FLUSH (dialect `qemu`): a multifd source sends no
/// balloon records (the balloon map is off with multifd; the VM state still lists the
/// ballooned pages, which were not sent).
fn loader_options(opts: &ReceiveOptions, multifd: Multifd) -> LoaderOptions {
    let cap = opts.buffer_size.max(MIN_BUFFER);
    let dialect = match multifd {
        Multifd::Off => Dialect::RamstreamBalloonV1,
        _ => Dialect::Qemu,
    };
    let mut decoder = DecoderOptions::default().with_dialect(dialect);
    decoder.limits.max_device_section_len = cap / 2;
    decoder.limits.max_vmdesc_len = u32::try_from(cap / 2).unwrap_or(u32::MAX);
    decoder.limits.max_ram_total = opts.max_ram_total;
    LoaderOptions::default()
        .with_decoder(decoder)
        .with_multifd(multifd)
}

/// Why the read loop stopped: the reader's error, or the receiver's.
enum Stop {
    Read(ReadError),
    Receiver(RecvErrorKind),
}

impl From<ReadError> for Stop {
    fn from(e: ReadError) -> Self {
        Stop::Read(e)
    }
}

impl From<RecvErrorKind> for Stop {
    fn from(kind: RecvErrorKind) -> Self {
        Stop::Receiver(kind)
    }
}

/// The receive of one main stream into a loader over guest memory `L` (the destination, or
/// an `Arc` of it shared with multifd channel threads), the destination made by `F`.
struct Receiver<L, F> {
    loader: Loader<L>,
    make: Option<F>,
    sections: DeviceSections,
    report: ReceiveReport,
}

impl<L: GuestRam, F: FnOnce(&MemoryLayout) -> Result<L, DestError>> Receiver<L, F> {
    /// Loads the stream from `input`; returns the instant it ended (EOF and after).
    /// With a digest `worker`, the running digest is hashed on its thread while the input
    /// is awaited (else on this one).
    fn load(
        &mut self,
        input: &mut impl Read,
        opts: &ReceiveOptions,
        mut worker: Option<&mut LazyDigestWorker<'_, '_>>,
    ) -> Result<Instant, RecvErrorKind> {
        let cap = opts.buffer_size.max(MIN_BUFFER);
        let mut reader = StreamReader::new(input, StreamBuffer::new(cap, cap));
        let loaded = reader.run(|w| self.step(w, worker.as_deref_mut()));
        self.report.bytes_received = reader.buffer().bytes_read();
        self.report.max_buffered = reader.buffer().high_water();
        loaded.map_err(|stop| match stop {
            Stop::Receiver(kind) => kind,
            Stop::Read(ReadError::Io { source, .. }) => RecvErrorKind::Io(source),
            Stop::Read(ReadError::ItemTooLarge(e)) => RecvErrorKind::ItemTooLarge {
                offset: e.offset,
                buffer: e.cap,
            },
            // `EndedEarly`, not reached: once the input ended the loader finishes or refuses.
            Stop::Read(e) => RecvErrorKind::EndedEarly(ramstream_migrate::Error::new(
                e.offset(),
                ramstream_migrate::ErrorKind::Stream(ramstream_codec::ErrorKind::EndedBeforeEof),
            )),
        })?;
        let s = self.loader.stats();
        self.report.pages = s.pages;
        self.report.zero_written = s.zero_written;
        self.report.zero_skipped = s.zero_skipped;
        self.report.xbzrle = s.xbzrle;
        self.report.sections = s.ram_sections;
        self.report.balloon_records = s.balloon_records;
        self.report.sync_points = s.sync_points;
        Ok(Instant::now())
    }

    /// Loads what the window holds up to the next event, and acts on it.
    fn step(
        &mut self,
        w: Window<'_>,
        mut worker: Option<&mut LazyDigestWorker<'_, '_>>,
    ) -> Result<Step, Stop> {
        if w.ended {
            if let Some(d) = worker.as_deref_mut() {
                // The check at EOF is near: the works out are worth waiting for.
                d.drain(&mut self.loader)?;
            }
            self.loader.finish();
        }
        let p = self
            .loader
            .handle(w.bytes)
            .map_err(|e| match e.stream_kind() {
                Some(
                    ramstream_codec::ErrorKind::Truncated { .. }
                    | ramstream_codec::ErrorKind::EndedBeforeEof,
                ) if w.ended => RecvErrorKind::EndedEarly(e),
                _ => RecvErrorKind::Load(e),
            })?;
        Ok(match p.event {
            None => {
                // While the input is awaited: hash the chunks written so far (SPEC.md
                // §13.7), so that the digest check at EOF reads only the chunks written
                // since; on the worker's thread, and on this one too while it is busy.
                let offloaded = match worker {
                    Some(d) => d.serve(&mut self.loader)?,
                    None => false,
                };
                if !offloaded {
                    self.loader
                        .hash_ahead(Loader::<L>::HASH_AHEAD_PAGES)
                        .map_err(RecvErrorKind::Load)?;
                }
                Step::NeedMore(p.consumed)
            }
            Some(LoaderEvent::Done) => Step::Done(p.consumed),
            Some(event) => {
                // Device bodies are views into the window, which starts at `w.offset`.
                let body_offset = |body: &[u8]| {
                    w.offset
                        + (body.as_ptr() as usize).saturating_sub(w.bytes.as_ptr() as usize) as u64
                };
                self.event(event, body_offset)?;
                Step::Continue(p.consumed)
            }
        })
    }

    /// Acts on one loader event; `body_offset` gives the stream offset of a slice of it.
    fn event(
        &mut self,
        event: LoaderEvent<'_>,
        body_offset: impl Fn(&[u8]) -> u64,
    ) -> Result<(), RecvErrorKind> {
        let offset = self.loader.event_offset();
        match event {
            LoaderEvent::Configuration(c) if c.machine_type != reference::MACHINE_TYPE => {
                Err(RecvErrorKind::MachineType {
                    offset,
                    found: c.machine_type.to_string(),
                    expected: reference::MACHINE_TYPE,
                })
            }
            LoaderEvent::RamNeeded(blocks) => self.build(&blocks, offset),
            LoaderEvent::Device(d) => self.sections.take(&d, offset, body_offset(d.body)),
            // A multifd sync point: every channel must reach it before the stream goes on.
            LoaderEvent::MultifdSync(_) => self
                .loader
                .sync_with_channels(SYNC_TIMEOUT)
                .map_err(RecvErrorKind::Load),
            _ => Ok(()),
        }
    }

    /// Builds the destination for the MEM_SIZE record at `offset` and gives it to the
    /// loader: the blocks must be the reference machine's layout for their total.
    fn build(&mut self, blocks: &[RamBlockLayout], offset: u64) -> Result<(), RecvErrorKind> {
        let refuse = |reason| RecvErrorKind::LayoutMismatch {
            offset,
            announced: blocks
                .iter()
                .map(|b| (b.idstr().to_string(), b.used_length()))
                .collect(),
            reason,
        };
        // The decoder has checked that the lengths add up to the total, which is at most
        // `max_ram_total`.
        let total = blocks
            .iter()
            .fold(0u64, |t, b| t.saturating_add(b.used_length()));
        let layout = MemoryLayout::with_ram_size(total)
            .map_err(|e| refuse(crate::LayoutRefusal::Unplaceable(e)))?;
        let expected = dest::ram_blocks(&layout);
        if expected != blocks {
            return Err(refuse(crate::LayoutRefusal::NotReferenceLayout {
                expected,
            }));
        }
        if let Some(make) = self.make.take() {
            let dest = make(&layout).map_err(RecvErrorKind::Build)?;
            self.loader.provide_ram(dest).map_err(RecvErrorKind::Load)?;
        }
        Ok(())
    }
}

impl<D: Destination, F> Receiver<D, F> {
    /// After the stream (ended at `eof`): restores the device state, checks the balloon and
    /// the digest, resumes the guest and verifies it.
    fn finish(&mut self, opts: &ReceiveOptions, eof: Instant) -> Result<(), RecvErrorKind> {
        let sections = std::mem::take(&mut self.sections);
        restore::finish(
            &mut self.loader,
            sections,
            &mut self.report,
            opts.verify_timeout,
            eof,
        )
    }
}
