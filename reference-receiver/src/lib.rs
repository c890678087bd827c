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
//! Guest memory is reached only through [`GuestRam`](ramstream_migrate::GuestRam)'s
//! page reads and writes ([`Destination`]). In-memory destinations, the fuzz harness and
//! the sender–receiver pair tests are in the `ramstream-test-support` crate.

#![forbid(unsafe_code)]

pub mod dest;
mod error;
mod options;
mod restore;

use std::io::Read;
use std::time::Instant;

use ramstream_codec::io::{ReadError, Step, StreamReader, Window};
use ramstream_codec::{DecoderOptions, StreamBuffer};
use ramstream_migrate::{Loader, LoaderEvent, LoaderOptions, RamBlockLayout};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::extension::reference;
use ramstream_spec::Dialect;

pub use dest::{DestError, Destination, KvmDestination, Verification};
pub use error::{LayoutRefusal, RecvError, RecvErrorKind, VerifyError};
pub use options::{ReceiveOptions, ReceiveReport};
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
    let mut rx = Receiver {
        loader: Loader::without_ram(loader_options(opts)),
        make: Some(make),
        sections: DeviceSections::default(),
        report: ReceiveReport::default(),
    };
    let r = rx.run(&mut input, opts);
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
/// VMDESCRIPTION fit in half the read buffer, RAM is bounded by `max_ram_total`.
fn loader_options(opts: &ReceiveOptions) -> LoaderOptions {
    let cap = opts.buffer_size.max(MIN_BUFFER);
    let mut decoder = DecoderOptions::with_dialect(Dialect::RamstreamBalloonV1);
    decoder.limits.max_device_section_len = cap / 2;
    decoder.limits.max_vmdesc_len = u32::try_from(cap / 2).unwrap_or(u32::MAX);
    decoder.limits.max_ram_total = opts.max_ram_total;
    LoaderOptions {
        decoder,
        ..LoaderOptions::default()
    }
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

struct Receiver<D, F> {
    loader: Loader<D>,
    make: Option<F>,
    sections: DeviceSections,
    report: ReceiveReport,
}

impl<D: Destination, F: FnOnce(&MemoryLayout) -> Result<D, DestError>> Receiver<D, F> {
    fn run(&mut self, input: &mut impl Read, opts: &ReceiveOptions) -> Result<(), RecvErrorKind> {
        let cap = opts.buffer_size.max(MIN_BUFFER);
        let mut reader = StreamReader::new(input, StreamBuffer::new(cap, cap));
        let loaded = reader.run(|w| self.step(w));
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
        let eof = Instant::now();
        let s = self.loader.stats();
        self.report.pages = s.pages;
        self.report.zero_written = s.zero_written;
        self.report.zero_skipped = s.zero_skipped;
        self.report.xbzrle = s.xbzrle;
        self.report.sections = s.ram_sections;
        self.report.balloon_records = s.balloon_records;
        let sections = std::mem::take(&mut self.sections);
        restore::finish(
            &mut self.loader,
            sections,
            &mut self.report,
            opts.verify_timeout,
            eof,
        )
    }

    /// Loads what the window holds up to the next event, and acts on it.
    fn step(&mut self, w: Window<'_>) -> Result<Step, Stop> {
        if w.ended {
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
            None => Step::NeedMore(p.consumed),
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
