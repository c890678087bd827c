//! The end of the stream, with the guest stopped: the device sections the caller handed in,
//! the RAM digest section (SPEC.md §13), EOF and the optional VMDESCRIPTION.

use std::time::Instant;

use ramstream_codec::extension::digest::{digest_block, BlockDigest, DigestSection};
use ramstream_codec::{DeviceSection, PageAddr, RecordKind, SectionHeader, Sink};
use ramstream_spec::extension::digest::{
    DIGEST_SECTION_IDSTR, DIGEST_SECTION_INSTANCE_ID, DIGEST_SECTION_VERSION,
};
use ramstream_spec::stream::SectionType;

use super::counted::Counted;
use super::{Phase, Source, Stage, Transmit, RAM_SECTION_ID};
use crate::digest_chunks::ChunkDigests;
use crate::error::{Error, ErrorKind};
use crate::{DigestDone, DigestWork, GuestRam};

/// Pages of stale chunks hashed ahead per poll of a round: one batch's worth, so hashing
/// keeps pace with sending (SPEC.md §13.7).
const CHUNK_PAGES_AHEAD: u64 = 64;

impl Source {
    /// Computes (or takes the caller's) block digests and encodes the digest section's body.
    pub(super) fn prepare_completion<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
    ) -> Result<(), Error> {
        if !self.opts.digest {
            return Ok(());
        }
        let sums = match self.given_digests.take() {
            Some(sums) => sums,
            None if self.chunks.is_some() => self.finish_chunks(ram)?,
            None => self.hash_blocks(ram)?,
        };
        let digest = DigestSection {
            algorithm: self.opts.digest_algorithm,
            blocks: self
                .blocks
                .iter()
                .zip(sums)
                .map(|(b, sha256)| BlockDigest {
                    idstr: b.idstr.clone(),
                    used_length: b.used_length,
                    sha256,
                })
                .collect(),
        };
        self.digest_body.clear();
        digest
            .encode(&mut self.digest_body)
            .map_err(|e| self.error(ErrorKind::Extension(e)))?;
        self.digest = Some(digest);
        Ok(())
    }

    /// With sha256-chunked (SPEC.md §13.7): hashes about one batch of stale chunks ahead,
    /// so that at stop time few are left: as many pages as the poll sent (`pages`; a
    /// known-zero run of thousands costs no read) or [`CHUNK_PAGES_AHEAD`], whichever is
    /// more. Called once per poll of a round.
    pub(super) fn digest_ahead<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        pages: u64,
    ) -> Result<(), Error> {
        if self.digest_offloaded {
            return Ok(());
        }
        self.hash_chunks_ahead(ram, CHUNK_PAGES_AHEAD.max(pages))
            .map(drop)
    }

    /// Hashes stale chunks not out in a [`DigestWork`] until about `budget` pages were read.
    fn hash_chunks_ahead<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        budget: u64,
    ) -> Result<u64, Error> {
        if self.chunks.is_none() {
            return Ok(0);
        }
        self.chunk_balloon();
        let Some(chunks) = &mut self.chunks else {
            return Ok(0);
        };
        let hashed = chunks
            .hash_ahead(ram, budget)
            .map_err(|(addr, e)| self.read_error(addr.block, addr, e))?;
        if self.clock.stopped.is_some() {
            self.stats.digest_chunks_at_stop += hashed;
        }
        Ok(hashed)
    }

    /// With sha256-chunked, for a caller that takes digest work
    /// ([`take_digest_work`](Source::take_digest_work)): hashes stale chunks not out in a
    /// work here and now, until about `max_pages` pages were read (pages known to be zero
    /// are not read; a chunk counts one more), so that the caller's thread can share the
    /// hashing when its worker is busy, or catch the digest up once
    /// [`Transmit::StopGuest`](crate::Transmit::StopGuest) came and before the guest is
    /// stopped (what is hashed then is not hashed in the downtime). Returns how many chunks
    /// it hashed; 0 before the setup sync and from [`handle_stopped`](Source::handle_stopped)
    /// on.
    ///
    /// Errors: [`ErrorKind::Guest`] for a failed read, naming the page and the block.
    pub fn hash_digest_ahead<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        max_pages: u64,
    ) -> Result<u64, Error> {
        if !matches!(self.stage, Stage::Round | Stage::Sync | Stage::Stop) {
            return Ok(0);
        }
        self.hash_chunks_ahead(ram, max_pages)
    }

    /// With sha256-chunked (SPEC.md §13.7): takes stale chunks of one block, about
    /// `max_pages` pages (at least one chunk), for the caller to hash on a thread of its own
    /// ([`DigestWork::run`] on memory shared with that thread) and hand back with
    /// [`handle_digest_done`](Source::handle_digest_done). `None` when nothing is due, before
    /// the setup sync and from [`handle_stopped`](Source::handle_stopped) on (the engine then
    /// hashes what is still stale itself); between
    /// [`Transmit::StopGuest`](crate::Transmit::StopGuest) and the stop a caller may still
    /// take work to catch the digest up before the downtime.
    ///
    /// The first call hands the running digest to the caller: from then on
    /// [`poll_transmit`](Source::poll_transmit) no longer hashes ahead in line. A chunk taken
    /// stays stale until its result is accepted, and a dirty page or balloon change handed
    /// in after it was taken makes that result be dropped, so results lost, late or out of
    /// order never make the digest wrong: at worst the chunk is hashed again at stop time.
    pub fn take_digest_work(&mut self, max_pages: u64) -> Option<DigestWork> {
        self.chunks.as_ref()?;
        self.digest_offloaded = true;
        if !matches!(self.stage, Stage::Round | Stage::Sync | Stage::Stop) {
            return None;
        }
        self.chunk_balloon();
        let mut work = self.chunks.as_mut()?.take_work(max_pages)?;
        work.idstr.clone_from(&self.blocks[work.block()].idstr);
        work.offset = self.stats.produced;
        Some(work)
    }

    /// With sha256-chunked: how many chunks of the running digest are stale and not out in
    /// a [`DigestWork`] (each of at most
    /// [`DIGEST_CHUNK_PAGES`](ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES) pages),
    /// counting the dirty pages handed in so far; 0 without it.
    pub fn digest_chunks_due(&self) -> u64 {
        self.chunks.as_ref().map_or(0, ChunkDigests::due)
    }

    /// Hands back the result of a [`DigestWork`] taken with
    /// [`take_digest_work`](Source::take_digest_work): the digests of the chunks not dirtied
    /// (nor their balloon changed) since are kept, the others dropped, their chunks staying
    /// stale. Ignored once the digest section is written. Returns how many were kept.
    pub fn handle_digest_done(&mut self, done: DigestDone) -> u64 {
        if matches!(self.stage, Stage::Done | Stage::Failed) {
            return 0;
        }
        let Some(chunks) = &mut self.chunks else {
            return 0;
        };
        let a = chunks.accept(&done);
        self.stats.digest_chunks_offloaded += a.kept;
        self.stats.digest_chunks_dropped += a.dropped;
        a.kept
    }

    /// The block digests from the chunk digests, the stale chunks hashed again: with the
    /// guest paused after the final sync, this reads only what was dirtied since.
    fn finish_chunks<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
    ) -> Result<Vec<[u8; ramstream_spec::extension::digest::DIGEST_SHA256_LEN]>, Error> {
        self.chunk_balloon();
        let Some(chunks) = &mut self.chunks else {
            return Ok(Vec::new());
        };
        self.stats.digest_chunks_at_stop += chunks.stale();
        chunks
            .finish(ram)
            .map_err(|(addr, e)| self.read_error(addr.block, addr, e))
    }

    /// The balloon in force, handed to the chunk digests (changed runs make chunks stale).
    fn chunk_balloon(&mut self) {
        let version = self.balloon.version();
        if self.chunk_balloon_version == Some(version) {
            return;
        }
        if let Some(chunks) = &mut self.chunks {
            for block in 0..self.blocks.len() {
                chunks.set_balloon(block, self.balloon.runs(block));
            }
        }
        self.chunk_balloon_version = Some(version);
    }

    /// A failed read of the digest, with its page and block.
    fn read_error<E: std::error::Error + Send + Sync + 'static>(
        &self,
        block: usize,
        addr: PageAddr,
        e: E,
    ) -> Error {
        self.error(ErrorKind::Guest {
            addr,
            source: Box::new(e),
        })
        .in_record(RecordKind::Device)
        .in_block(self.blocks[block].idstr.clone())
    }

    /// Every block's sha256-sparse digest, read through `ram`, ballooned pages not read.
    fn hash_blocks<R: GuestRam + ?Sized>(
        &self,
        ram: &R,
    ) -> Result<Vec<[u8; ramstream_spec::extension::digest::DIGEST_SHA256_LEN]>, Error> {
        let ps = self.opts.page_size;
        (0..self.blocks.len())
            .map(|block| {
                let runs = self.balloon.runs(block);
                digest_block(self.block_pages[block], ps, runs, |p, buf| {
                    let addr = PageAddr::of_page(block, p, ps);
                    ram.read_page(addr, buf).map_err(|e| (addr, e))
                })
                .map_err(|(addr, e)| self.read_error(block, addr, e))
            })
            .collect()
    }

    /// Writes the device sections (ids from 1), the digest section, EOF and the
    /// VMDESCRIPTION, bodies referenced from the source.
    pub(super) fn emit_completion<'s, S: Sink<'s>>(
        &'s mut self,
        now: Instant,
        mut out: Counted<'_, S>,
    ) -> Result<Transmit, Error> {
        let Source {
            enc,
            devices,
            digest_body,
            vm_description,
            opts,
            stats,
            stage,
            phase,
            clock,
            ..
        } = self;
        let digest = opts.digest.then_some(DeviceSection {
            header: SectionHeader {
                section_type: SectionType::FULL,
                section_id: 0,
                idstr: DIGEST_SECTION_IDSTR,
                instance_id: DIGEST_SECTION_INSTANCE_ID,
                version_id: DIGEST_SECTION_VERSION,
            },
            body_offset: 0,
            body: digest_body.as_slice(),
        });
        let sections = devices
            .iter()
            .map(|d| DeviceSection {
                header: SectionHeader {
                    section_type: SectionType::FULL,
                    section_id: 0,
                    idstr: &d.idstr,
                    instance_id: d.instance_id,
                    version_id: d.version_id,
                },
                body_offset: 0,
                body: &d.body,
            })
            .chain(digest);
        let mut written = Ok(());
        for (mut section, id) in sections.zip(RAM_SECTION_ID + 1..) {
            section.header.section_id = id;
            written = enc.device(&section, &mut out);
            if written.is_err() {
                break;
            }
            enc.footer(id, &mut out);
        }
        if written.is_ok() {
            enc.eof(&mut out);
            if let Some(json) = vm_description {
                written = enc.vmdesc(json, &mut out);
            }
        }
        if let Err(e) = written {
            *stage = Stage::Failed;
            let mut e = Error::from(e);
            e.offset = stats.produced;
            return Err(e);
        }
        stats.produced += out.n as u64;
        stats.remaining = 0;
        if let Some(t) = clock.stopped {
            stats.downtime = now.saturating_duration_since(t);
        }
        *stage = Stage::Done;
        *phase = Phase::Completed;
        Ok(Transmit::Send { bytes: out.n })
    }
}
