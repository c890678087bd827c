//! # ramstream reference receiver
//!
//! Loads a live-migration stream written by the reference sender into a destination guest
//! and resumes it, as a QEMU destination would:
//!
//! 1. reads the stream through a fixed-size buffer (1 MiB by default, compacted as the
//!    incremental [`Decoder`] consumes it; the whole stream is never held);
//! 2. builds the destination from MEM_SIZE, writes every PAGE straight from the buffer into
//!    guest memory, applies XBZRLE deltas onto the page it holds, and leaves pages that are
//!    already zero untouched (a ZERO for a page written earlier does zero it);
//! 3. restores the vCPU and VM state (the VM state carries the balloon, whose pages are
//!    discarded), checks the memory layout section against MEM_SIZE;
//! 4. checks the digest section (SPEC.md §13) against its own memory and **refuses to
//!    resume** on a mismatch, a missing digest, or a stream that ended early;
//! 5. resumes the guest and proves it runs (heartbeat advances, self-check passes).
//!
//! The device sections and the digest (SPEC.md §13) are read with
//! [`ramstream_codec::extension`], the same code the reference sender writes them with; the
//! receiver does not depend on the sender. In-memory destinations, the fuzz harness and the
//! sender–receiver pair tests are in the `ramstream-test-support` crate.

#![forbid(unsafe_code)]

pub mod dest;
mod error;
mod options;

use std::io::{self, Read};
use std::time::Instant;

use ramstream_codec::balloon::BalloonMap;
use ramstream_codec::extension::digest::DigestSection;
use ramstream_codec::extension::ExtensionSection;
use ramstream_codec::{apply_event, Decoder, DecoderOptions, Event, Status};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::extension::{digest, reference};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;
use ramstream_spec::{ram, Dialect};

pub use dest::{Destination, KvmDestination, StagedStore, Verification};
pub use error::{RecvError, RecvErrorKind};
pub use options::{ReceiveOptions, ReceiveReport};

#[derive(Default)]
struct Pending {
    vcpu: Option<Vec<u8>>,
    vm: Option<Vec<u8>>,
    layout: Option<Vec<u8>>,
    digest: Option<DigestSection>,
    eof: bool,
}

/// Receives one stream from `input` into a destination built by `make` from the layout
/// MEM_SIZE announces, then restores, checks the digest, resumes and verifies.
pub fn receive<R: Read, D: Destination>(
    mut input: R,
    make: impl FnOnce(&MemoryLayout) -> Result<D, String>,
    opts: &ReceiveOptions,
) -> Result<(D, ReceiveReport), RecvError> {
    let mut st = State {
        dest: None,
        make: Some(make),
        written: Vec::new(),
        balloon: BalloonMap::default(),
        stage: StagedStore::default(),
        report: ReceiveReport::default(),
        pending: Pending::default(),
    };
    let mut bytes = 0u64;
    let r = st.run(&mut input, opts, &mut bytes);
    let resumed = st.dest.as_ref().is_some_and(|d| d.resumed());
    match r {
        Ok(()) => {
            let dest = st.dest.take().ok_or_else(|| RecvError {
                bytes_received: bytes,
                resumed,
                kind: RecvErrorKind::Protocol("no MEM_SIZE".into()),
            })?;
            Ok((dest, st.report))
        }
        Err(kind) => Err(RecvError {
            bytes_received: bytes,
            resumed,
            kind,
        }),
    }
}

struct State<D, F> {
    dest: Option<D>,
    make: Option<F>,
    written: Vec<Vec<u64>>,
    balloon: BalloonMap,
    stage: StagedStore,
    report: ReceiveReport,
    pending: Pending,
}

impl<D: Destination, F: FnOnce(&MemoryLayout) -> Result<D, String>> State<D, F> {
    fn run(
        &mut self,
        input: &mut impl Read,
        opts: &ReceiveOptions,
        bytes: &mut u64,
    ) -> Result<(), RecvErrorKind> {
        let cap = opts.buffer_size.max(64 * 1024);
        // Flag 0x200 is a balloon record only if the stream announces the extension (§9.3).
        let mut dopts = DecoderOptions::with_dialect(Dialect::RamstreamBalloonV1);
        dopts.limits.max_device_section_len = cap / 2;
        dopts.limits.max_vmdesc_len = (cap / 2) as u32;
        dopts.limits.max_ram_total = opts.max_ram_total;
        let mut dec = Decoder::new(dopts);
        let mut buf = vec![0u8; cap];
        let (mut start, mut end) = (0usize, 0usize);
        let mut input_ended = false;
        loop {
            let at = dec.offset();
            match dec.decode(&buf[start..end]) {
                Ok(Status::Event { event, consumed }) => {
                    self.handle(&event, at)?;
                    start += consumed;
                }
                Ok(Status::NeedMore { .. }) => {
                    if start > 0 {
                        buf.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                    if end == cap {
                        return Err(RecvErrorKind::Protocol(format!(
                            "an item at offset {at} is larger than the {cap}-byte buffer"
                        )));
                    }
                    let n = loop {
                        match input.read(&mut buf[end..]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    if n == 0 {
                        input_ended = true;
                        dec.finish();
                    }
                    end += n;
                    *bytes += n as u64;
                    self.report.max_buffered = self.report.max_buffered.max(end);
                }
                Ok(Status::Done) => break,
                Err(e) if input_ended => {
                    return Err(RecvErrorKind::EndedEarly(format!(
                        "at byte {}: {e}",
                        dec.offset()
                    )))
                }
                Err(e) => return Err(RecvErrorKind::Decode(e)),
            }
        }
        self.report.bytes_received = *bytes;
        self.finish(opts)
    }

    fn dest(&mut self) -> Result<&mut D, RecvErrorKind> {
        self.dest
            .as_mut()
            .ok_or_else(|| RecvErrorKind::Protocol("page record before MEM_SIZE".into()))
    }

    fn handle(&mut self, ev: &Event<'_>, at: u64) -> Result<(), RecvErrorKind> {
        match ev {
            Event::Configuration(c) if c.machine_type != reference::MACHINE_TYPE => {
                return Err(RecvErrorKind::Protocol(format!(
                    "machine type {:?} is not {:?}",
                    c.machine_type,
                    reference::MACHINE_TYPE
                )));
            }
            Event::Configuration(c)
                if c.target_page_bits
                    .is_some_and(|b| b != ram::TARGET_PAGE_BITS_X86) =>
            {
                return Err(RecvErrorKind::PageSizeMismatch {
                    offset: at,
                    page_size: c.target_page_bits.map_or(0, |b| 1u64 << b),
                    expected: PAGE_SIZE as u64,
                });
            }
            Event::SectionPart { .. } => self.report.sections += 1,
            Event::MemSize(ms) => {
                let mismatch = |reason: String| RecvErrorKind::LayoutMismatch {
                    offset: at,
                    announced: ms
                        .blocks
                        .iter()
                        .map(|b| (b.idstr.clone(), b.used_length))
                        .collect(),
                    reason,
                };
                // The decoder has checked that the lengths add up to the total, which is at
                // most `max_ram_total`.
                let total: u64 = ms.blocks.iter().map(|b| b.used_length).sum();
                let layout = MemoryLayout::with_ram_size(total).map_err(|e| {
                    mismatch(format!("cannot be laid out by the reference machine: {e}"))
                })?;
                let same = layout.regions.len() == ms.blocks.len()
                    && layout
                        .regions
                        .iter()
                        .zip(&ms.blocks)
                        .all(|(r, b)| r.name == b.idstr && r.size == b.used_length);
                if !same {
                    return Err(mismatch(format!(
                        "do not match the reference machine's layout for {total} bytes"
                    )));
                }
                match self.make.take() {
                    Some(make) => {
                        self.balloon = BalloonMap::new(&ms.blocks, ram::TARGET_PAGE_BITS_X86);
                        self.written = layout
                            .regions
                            .iter()
                            .map(|r| vec![0u64; r.pages().div_ceil(64) as usize])
                            .collect();
                        self.dest = Some(make(&layout).map_err(RecvErrorKind::Guest)?);
                    }
                    None => {
                        if self.dest.as_ref().is_some_and(|d| *d.layout() != layout) {
                            return Err(mismatch("change the first MEM_SIZE's layout".into()));
                        }
                    }
                }
            }
            Event::Page(p) => {
                let page = p.addr.offset / PAGE_SIZE as u64;
                self.refuse_ballooned(at, "PAGE", p.addr.block, page)?;
                self.dest()?
                    .write_page(p.addr.block, page, p.data)
                    .map_err(RecvErrorKind::Guest)?;
                self.mark(p.addr.block, page);
                self.report.pages += 1;
            }
            Event::Zero(z) => {
                let page = z.addr.offset / PAGE_SIZE as u64;
                let b = z.addr.block;
                self.refuse_ballooned(at, "ZERO", b, page)?;
                if z.fill != 0 || self.is_written(b, page) {
                    let fill = [z.fill; PAGE_SIZE];
                    self.dest()?
                        .write_page(b, page, &fill)
                        .map_err(RecvErrorKind::Guest)?;
                    if z.fill != 0 {
                        self.mark(b, page);
                    } else {
                        self.unmark(b, page);
                    }
                    self.report.zero_written += 1;
                } else {
                    self.report.zero_skipped += 1;
                }
            }
            Event::Xbzrle(x) => {
                let page = x.addr.offset / PAGE_SIZE as u64;
                self.refuse_ballooned(at, "XBZRLE", x.addr.block, page)?;
                let dest = self.dest.as_mut().ok_or_else(|| {
                    RecvErrorKind::Protocol("XBZRLE record before MEM_SIZE".into())
                })?;
                self.stage
                    .load(dest, x.addr)
                    .map_err(RecvErrorKind::Guest)?;
                apply_event(&mut self.stage, ev, at).map_err(RecvErrorKind::Decode)?;
                self.stage.commit(dest).map_err(RecvErrorKind::Guest)?;
                self.mark(x.addr.block, page);
                self.report.xbzrle += 1;
            }
            Event::Device(d) => {
                let section = ExtensionSection::from_device(d).map_err(|source| {
                    RecvErrorKind::Extension {
                        offset: d.body_offset,
                        idstr: d.header.idstr.to_string(),
                        source,
                    }
                })?;
                match section {
                    Some(ExtensionSection::Vcpu(b)) => self.pending.vcpu = Some(b.to_vec()),
                    Some(ExtensionSection::Vm(b)) => self.pending.vm = Some(b.to_vec()),
                    Some(ExtensionSection::MemoryLayout(b)) => {
                        self.pending.layout = Some(b.to_vec())
                    }
                    Some(ExtensionSection::Digest(digest)) => self.pending.digest = Some(digest),
                    _ => {
                        return Err(RecvErrorKind::Protocol(format!(
                            "unknown device section {:?} instance {}",
                            d.header.idstr, d.header.instance_id
                        )))
                    }
                }
            }
            Event::Balloon(rec) => {
                let released = self
                    .balloon
                    .apply(rec)
                    .map_err(|e| RecvErrorKind::Protocol(format!("balloon record at {at}: {e}")))?;
                self.report.balloon_records += 1;
                // Newly ballooned pages the destination had written are given back (zeroed).
                for r in released {
                    for p in r.pages {
                        if self.is_written(r.block, p) {
                            let zero = [0u8; PAGE_SIZE];
                            self.dest()?
                                .write_page(r.block, p, &zero)
                                .map_err(RecvErrorKind::Guest)?;
                            self.unmark(r.block, p);
                        }
                    }
                }
            }
            Event::Eof => self.pending.eof = true,
            _ => {}
        }
        Ok(())
    }

    fn mark(&mut self, b: usize, p: u64) {
        if let Some(w) = self
            .written
            .get_mut(b)
            .and_then(|w| w.get_mut((p / 64) as usize))
        {
            *w |= 1 << (p % 64);
        }
    }

    fn unmark(&mut self, b: usize, p: u64) {
        if let Some(w) = self
            .written
            .get_mut(b)
            .and_then(|w| w.get_mut((p / 64) as usize))
        {
            *w &= !(1 << (p % 64));
        }
    }

    /// Refuses a page record for a page the stream's balloon records hold (SPEC.md §9.7).
    fn refuse_ballooned(
        &self,
        offset: u64,
        record: &'static str,
        block: usize,
        page: u64,
    ) -> Result<(), RecvErrorKind> {
        if !self.balloon.contains(block, page) {
            return Ok(());
        }
        Err(RecvErrorKind::PageOfBallooned {
            offset,
            record,
            block: self.balloon.idstr(block).unwrap_or("?").to_string(),
            page,
        })
    }

    fn is_written(&self, b: usize, p: u64) -> bool {
        self.written
            .get(b)
            .and_then(|w| w.get((p / 64) as usize))
            .is_some_and(|w| w >> (p % 64) & 1 == 1)
    }

    fn finish(&mut self, opts: &ReceiveOptions) -> Result<(), RecvErrorKind> {
        let t = Instant::now();
        let p = std::mem::take(&mut self.pending);
        let missing = |what: &str| RecvErrorKind::EndedEarly(format!("no {what} section"));
        if !p.eof {
            return Err(RecvErrorKind::EndedEarly("no EOF".into()));
        }
        let vcpu = p
            .vcpu
            .ok_or_else(|| missing(reference::VCPU_SECTION_IDSTR))?;
        let vm = p.vm.ok_or_else(|| missing(reference::VM_SECTION_IDSTR))?;
        let layout = p
            .layout
            .ok_or_else(|| missing(reference::LAYOUT_SECTION_IDSTR))?;
        let digest = p
            .digest
            .ok_or_else(|| missing(digest::DIGEST_SECTION_IDSTR))?;
        let balloon = &self.balloon;
        let balloon_records = self.report.balloon_records;
        let dest = self
            .dest
            .as_mut()
            .ok_or_else(|| RecvErrorKind::Protocol("no MEM_SIZE".into()))?;
        let layout: MemoryLayout = serde_json::from_slice(&layout)
            .map_err(|e| RecvErrorKind::Protocol(format!("memory layout section: {e}")))?;
        if layout != *dest.layout() {
            return Err(RecvErrorKind::Protocol(
                "the memory layout section does not match MEM_SIZE".into(),
            ));
        }
        let runs = dest.restore(&vcpu, &vm).map_err(RecvErrorKind::Guest)?;
        let ballooned_pages = runs.iter().map(|r| r.page_count).sum();
        // With the balloon extension, the `ram` section's map must agree with the VM state.
        if balloon_records > 0 {
            let wire: Vec<(usize, u64, u64)> = (0..balloon.block_count())
                .flat_map(|b| balloon.runs(b).map(move |r| (b, r.start, r.count)))
                .collect();
            let mut state: Vec<(usize, u64, u64)> = runs
                .iter()
                .map(|r| (r.region, r.first_page, r.page_count))
                .collect();
            state.sort_unstable();
            if wire != state {
                return Err(RecvErrorKind::Protocol(format!(
                    "the balloon map of the ram section ({} pages) differs from the VM state's ({} pages)",
                    balloon.total_ballooned_pages(),
                    ballooned_pages
                )));
            }
        }
        let td = Instant::now();
        let sums = dest.block_digests(&runs).map_err(RecvErrorKind::Guest)?;
        let digest_ms = td.elapsed().as_secs_f64() * 1e3;
        if digest.blocks.len() != layout.regions.len() {
            return Err(RecvErrorKind::Protocol(format!(
                "digest section lists {} blocks, MEM_SIZE {}",
                digest.blocks.len(),
                layout.regions.len()
            )));
        }
        for ((d, r), s) in digest.blocks.iter().zip(&layout.regions).zip(&sums) {
            if d.idstr != r.name || d.used_length != r.size {
                return Err(RecvErrorKind::Protocol(format!(
                    "digest entry {:?} ({} bytes) does not match block {:?} ({} bytes)",
                    d.idstr, d.used_length, r.name, r.size
                )));
            }
            if d.sha256 != *s {
                return Err(RecvErrorKind::DigestMismatch {
                    block: d.idstr.clone(),
                    expected: hex::encode(d.sha256),
                    actual: hex::encode(s),
                });
            }
        }
        dest.resume().map_err(RecvErrorKind::Guest)?;
        let resume_ms = t.elapsed().as_secs_f64() * 1e3;
        let tv = Instant::now();
        let v = dest
            .verify(opts.verify_timeout)
            .map_err(RecvErrorKind::Verify)?;
        self.report.verify_ms = tv.elapsed().as_secs_f64() * 1e3;
        if !v.self_check_passed || v.heartbeat_after <= v.heartbeat_before {
            return Err(RecvErrorKind::Verify(format!("{v:?}")));
        }
        self.report.ballooned_pages = ballooned_pages;
        self.report.digest_verified = true;
        self.report.digest_ms = digest_ms;
        self.report.resume_ms = resume_ms;
        self.report.guest_resumed = true;
        self.report.verification = v;
        self.report.status = "completed".into();
        Ok(())
    }
}
