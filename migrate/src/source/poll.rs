//! [`Source::poll_transmit`]: the setup bytes, then one batch of pages per call with the
//! `ram` section framing around it, then the device sections, digest and EOF.

use std::time::Instant;

use ramstream_codec::balloon::PageRun;
use ramstream_codec::{Configuration, RecordKind, SectionHeader, Sink};
use ramstream_spec::config::capability;
use ramstream_spec::ram::{SECTION_IDSTR, SECTION_INSTANCE_ID, SECTION_VERSION};
use ramstream_spec::stream::SectionType;

use super::batch::MAX_ZERO_RUN;
use super::counted::Counted;
use super::round::RoundKind;
use super::{Source, Stage, Transmit, RAM_SECTION_ID};
use crate::error::{Error, ErrorKind};
use crate::GuestRam;

/// What the first half of a poll decided.
pub(super) enum Step {
    /// Nothing (more) to write: tell the caller this.
    Say(Transmit),
    /// Bytes were written: tell the caller how many.
    Wrote,
    /// A batch of pages was read: encode it, and end the section if `closes`.
    Batch { closes: bool },
    /// The device sections, digest and EOF are due.
    Complete,
}

impl Source {
    /// Writes the next stream bytes into `out` as of `now`, reading pages through `ram`,
    /// and says what the caller does next ([`Transmit`]).
    ///
    /// `out` is any [`Sink`]: a `Vec<u8>` or `BytesMut` gets a copy of each payload; a
    /// [`Vectored`](ramstream_codec::Vectored) references page payloads, XBZRLE deltas and
    /// device bodies inside the source's own buffers (pages are read into them by
    /// [`GuestRam::read_page`]) until it is dropped, ready for `write_vectored`: the
    /// one copy is `read_page`'s.
    ///
    /// Each call reads at most 64 pages. During the bulk pass and dirty iterations it
    /// returns [`Transmit::Wait`] instead while the bandwidth limit is used up. An error
    /// (a failed `read_page`, an encoder refusal) leaves the source unusable.
    pub fn poll_transmit<'s, R, S>(
        &'s mut self,
        now: Instant,
        ram: &R,
        out: &mut S,
    ) -> Result<Transmit, Error>
    where
        R: GuestRam + ?Sized,
        S: Sink<'s>,
    {
        let mut out = Counted::new(out);
        let step = match self.prepare(now, ram, &mut out) {
            Ok(step) => step,
            Err(e) => {
                self.stage = Stage::Failed;
                return Err(e);
            }
        };
        match step {
            Step::Say(t) => Ok(t),
            Step::Wrote => {
                self.stats.produced += out.n as u64;
                self.meter.produced(out.n as u64);
                Ok(Transmit::Send { bytes: out.n })
            }
            Step::Batch { closes } => self.emit_batch(now, closes, out),
            Step::Complete => self.emit_completion(now, out),
        }
    }

    /// Everything of a poll that does not reference the source's buffers from `out`.
    fn prepare<'s, R, S>(
        &mut self,
        now: Instant,
        ram: &R,
        out: &mut Counted<'_, S>,
    ) -> Result<Step, Error>
    where
        R: GuestRam + ?Sized,
        S: Sink<'s>,
    {
        self.clock.first_poll.get_or_insert(now);
        if let Some(t) = self.multifd_gate() {
            return Ok(Step::Say(t));
        }
        match self.stage {
            Stage::Failed => Err(self.error(ErrorKind::Poisoned)),
            Stage::Setup => {
                self.write_setup(out)?;
                self.stage = Stage::SetupSync;
                Ok(Step::Wrote)
            }
            Stage::SetupSync | Stage::Sync | Stage::FinalSync => Ok(Step::Say(Transmit::SyncDirty)),
            Stage::Stop => Ok(Step::Say(Transmit::StopGuest)),
            Stage::Round if self.multifd.is_some() => {
                let step = self.multifd_round(now, out)?;
                self.digest_ahead(ram, 0)?;
                Ok(step)
            }
            Stage::Round => {
                let step = self.read_batch(now, ram, out)?;
                self.digest_ahead(ram, self.batch.visited())?;
                Ok(step)
            }
            Stage::Complete => {
                self.prepare_completion(ram)?;
                Ok(Step::Complete)
            }
            Stage::Done => Ok(Step::Say(Transmit::Done)),
        }
    }

    /// Header, configuration, `ram` START with MEM_SIZE, the balloon's full maps, EOS,
    /// footer (QEMU `ram_save_setup`).
    fn write_setup<'s, S: Sink<'s>>(&mut self, out: &mut Counted<'_, S>) -> Result<(), Error> {
        let caps = self
            .opts
            .balloon
            .then(|| vec![capability::RAMSTREAM_BALLOON_V1]);
        let page_bits = self.opts.page_size.trailing_zeros();
        let config = Configuration {
            machine_type: &self.opts.machine_type,
            target_page_bits: (self.opts.page_size != ramstream_spec::ram::TARGET_PAGE_SIZE_X86)
                .then_some(page_bits),
            capabilities: caps,
            uuid: None,
        };
        let start = SectionHeader {
            section_type: SectionType::START,
            section_id: RAM_SECTION_ID,
            idstr: SECTION_IDSTR,
            instance_id: SECTION_INSTANCE_ID,
            version_id: SECTION_VERSION,
        };
        let enc = &mut self.enc;
        enc.header(out);
        enc.configuration(&config, out)?;
        enc.section_header(&start, out)?;
        enc.mem_size(&self.blocks, out)?;
        self.balloon.apply();
        self.stats.balloon_records += self.balloon.announce(enc, out)?;
        if let Some(m) = &mut self.multifd {
            m.setup(enc, out, &mut self.stats)?;
        }
        enc.eos(out);
        enc.footer(RAM_SECTION_ID, out);
        Ok(())
    }

    /// Opens a section if none is, then reads the next batch of the round into the page
    /// buffers and decides each page.
    fn read_batch<'s, R, S>(
        &mut self,
        now: Instant,
        ram: &R,
        out: &mut Counted<'_, S>,
    ) -> Result<Step, Error>
    where
        R: GuestRam + ?Sized,
        S: Sink<'s>,
    {
        let Some(round) = self.round.as_mut() else {
            return Err(self.error(ErrorKind::Poisoned));
        };
        // As QEMU's migration_completion: no bandwidth limit while the guest is stopped.
        let limit = self
            .opts
            .max_bandwidth
            .filter(|_| round.kind != RoundKind::Final);
        if let Some(t) = self.meter.not_before(now, limit) {
            return Ok(Step::Say(Transmit::Wait(t)));
        }
        // No more pages than the window allows, give or take one (QEMU checks between pages).
        let max_pages = self.meter.budget(limit).map_or(u64::MAX, |b| {
            PageRun::covering(0..b, self.opts.page_size).count.max(1)
        });
        if !round.part_open {
            let section_type = round.open_part();
            self.enc.reset_continue();
            self.enc.section_part(section_type, RAM_SECTION_ID, out);
            if round.parts == 1 {
                // Balloon changes first, before any page of the round (SPEC.md §9.7).
                self.stats.balloon_records += self.balloon.announce(&mut self.enc, out)?;
            }
        }
        // Runs of pages until the page slots are full (pages known to be zero need none),
        // the section ends, or the window's budget or `MAX_ZERO_RUN` pages are reached.
        let kind = round.kind;
        let mut left = max_pages.min(MAX_ZERO_RUN);
        self.batch.clear();
        while let Some(run) = round.peek_run(left).filter(|_| !self.batch.full()) {
            let added = self.batch.add_run(
                ram,
                run,
                &self.block_base,
                self.cache.as_mut(),
                kind == RoundKind::Final,
                &mut self.stats,
            );
            let added = match added {
                Ok(n) => n,
                Err((addr, e)) => {
                    let idstr = self.blocks[addr.block].idstr.clone();
                    return Err(self
                        .error(ErrorKind::Guest {
                            addr,
                            source: Box::new(e),
                        })
                        .in_record(RecordKind::Page)
                        .in_block(idstr));
                }
            };
            round.take(run.0, run.1, added);
            left -= added;
            if added < run.2 {
                break;
            }
        }
        let closes = round.close_if_due();
        let done = round.is_done();
        if done {
            self.end_round(now, kind);
        }
        Ok(Step::Batch { closes })
    }

    /// The round of `kind` took its last page: the dirty sync is due, or the completion.
    pub(super) fn end_round(&mut self, now: Instant, kind: RoundKind) {
        self.stage = match kind {
            RoundKind::Bulk => {
                if let Some(c) = &mut self.cache {
                    c.end_of_first_pass();
                }
                self.clock.last_rate_update = Some(now);
                Stage::Sync
            }
            RoundKind::Dirty => Stage::Sync,
            RoundKind::Final => Stage::Complete,
        };
    }

    /// Encodes the batch read, payloads referenced from the page buffers, and the EOS and
    /// footer if the section closes.
    fn emit_batch<'s, S: Sink<'s>>(
        &'s mut self,
        now: Instant,
        closes: bool,
        mut out: Counted<'_, S>,
    ) -> Result<Transmit, Error> {
        let Source {
            batch,
            enc,
            cache,
            stats,
            stage,
            clock,
            meter,
            ..
        } = self;
        if let Err(e) = batch.encode(enc, cache.as_mut(), stats, &mut out) {
            *stage = Stage::Failed;
            let mut e = Error::from(e);
            e.offset = stats.produced;
            return Err(e);
        }
        if closes {
            enc.eos(&mut out);
            enc.footer(RAM_SECTION_ID, &mut out);
        }
        stats.produced += out.n as u64;
        meter.produced(out.n as u64);
        if let Some(t) = clock.stopped {
            stats.downtime = now.saturating_duration_since(t);
        }
        Ok(Transmit::Send { bytes: out.n })
    }
}
