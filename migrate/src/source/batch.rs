//! One batch of pages: read through [`GuestRam::read_page`] into page buffers the engine
//! owns, decided (ZERO, PAGE, XBZRLE or nothing: SPEC.md §7.7), and encoded with each PAGE
//! payload and XBZRLE delta referenced from those buffers, not copied (a vectored sink
//! hands them to `write_vectored` as they are).
//!
//! Pages the memory knows to be zero ([`GuestRam::known_zero_pages`]) take no buffer: a
//! batch takes pages until [`BATCH`] were read, so a run of pages the guest never wrote goes
//! out as one run of ZERO records per poll ([`MAX_ZERO_RUN`] pages at most).

use core::ops::Range;

use ramstream_codec::cache::{PageDecision, XbzrleCache};
use ramstream_codec::zero::is_zero_page;
use ramstream_codec::{Encoder, PageAddr, Sink};
use ramstream_spec::xbzrle::RECORD_HEADER_LEN;

use super::counted::Counted;
use super::round::BATCH;
use super::stats::SendStats;
use super::zero_ahead::ZeroAhead;
use crate::GuestRam;

/// Pages a batch covers at most (the read ones and those known to be zero).
pub(crate) const MAX_ZERO_RUN: u64 = 8192;

/// What to send for a page, or a run of pages.
#[derive(Clone, Debug)]
enum Planned {
    /// PAGE with the page in this slot.
    Page(usize),
    /// ZERO for this many consecutive pages.
    Zeros(u64),
    /// XBZRLE with these bytes of the delta buffer.
    Xbzrle(Range<usize>),
}

/// The page buffers of one batch and the records planned for them.
pub(crate) struct Batch {
    page_size: usize,
    /// [`BATCH`] pages, read by `read_page` and referenced by the PAGE records.
    pages: Vec<u8>,
    /// Page slots used in `pages`.
    used: usize,
    /// Pages added since [`clear`](Self::clear).
    visited: u64,
    /// The XBZRLE deltas of the batch, back to back.
    deltas: Vec<u8>,
    plan: Vec<(PageAddr, Planned)>,
    /// Which pages the memory knows to be zero, asked ahead for the round.
    zero: ZeroAhead,
    /// One page of zeros: what a known-zero page is decided as.
    zeros: Vec<u8>,
}

impl core::fmt::Debug for Batch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Batch")
            .field("page_size", &self.page_size)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Buffers for pages of `page_size` bytes of blocks of `block_pages` pages.
    pub(crate) fn new(page_size: usize, block_pages: &[u64]) -> Self {
        Batch {
            page_size,
            pages: vec![0; BATCH * page_size],
            used: 0,
            visited: 0,
            deltas: Vec::with_capacity(BATCH * page_size),
            plan: Vec::with_capacity(BATCH),
            zero: ZeroAhead::new(block_pages),
            zeros: vec![0; page_size],
        }
    }

    /// A round starts: forget what the memory said of its pages before.
    pub(crate) fn new_round(&mut self) {
        self.zero.forget();
    }

    /// Empties the batch (its plan and buffers) for the next poll.
    pub(crate) fn clear(&mut self) {
        self.plan.clear();
        self.deltas.clear();
        self.used = 0;
        self.visited = 0;
    }

    /// Pages added since [`clear`](Self::clear).
    pub(crate) fn visited(&self) -> u64 {
        self.visited
    }

    /// Whether every page slot is used: no page that must be read fits any more.
    pub(crate) fn full(&self) -> bool {
        self.used == BATCH
    }

    /// Adds pages from page `first` of `block`, at most `count` (consecutive pages of one
    /// block), and decides each: with `cache` through the XBZRLE cache (keys from
    /// `block_base`, where each block starts in the blocks laid end to end, in bytes),
    /// otherwise ZERO or PAGE by the zero-page test. A page the memory knows to be zero is
    /// not read: without a cache a run of them is planned as one run of ZERO records.
    /// Returns how many pages were added: fewer than `count` when the page slots ran out.
    /// Stops at the first read error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_run<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        (block, first, count): (usize, u64, u64),
        block_base: &[u64],
        mut cache: Option<&mut XbzrleCache>,
        last_stage: bool,
        stats: &mut SendStats,
    ) -> Result<u64, (PageAddr, R::Error)> {
        let ps = self.page_size;
        let mut i = 0;
        while i < count {
            let addr = PageAddr::of_page(block, first + i, ps);
            let zeros = self.zero.zero_run(ram, addr, ps, count - i)?;
            if zeros > 0 && cache.is_none() {
                stats.pages_visited += zeros;
                stats.pages_known_zero += zeros;
                self.visited += zeros;
                self.plan_zeros(addr, zeros);
                i += zeros;
                continue;
            }
            if zeros == 0 && self.full() {
                break;
            }
            self.add_page(
                ram,
                addr,
                zeros > 0,
                block_base,
                cache.as_deref_mut(),
                last_stage,
                stats,
            )?;
            i += 1;
        }
        Ok(i)
    }

    /// Adds the page at `addr`: not read if `known_zero`, else read into the next slot.
    #[allow(clippy::too_many_arguments)]
    fn add_page<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        addr: PageAddr,
        known_zero: bool,
        block_base: &[u64],
        cache: Option<&mut XbzrleCache>,
        last_stage: bool,
        stats: &mut SendStats,
    ) -> Result<(), (PageAddr, R::Error)> {
        let ps = self.page_size;
        stats.pages_visited += 1;
        self.visited += 1;
        let slot = self.used;
        let buf: &[u8] = if known_zero {
            stats.pages_known_zero += 1;
            &self.zeros
        } else {
            let span = slot * ps..(slot + 1) * ps;
            ram.read_page(addr, &mut self.pages[span.clone()])
                .map_err(|e| (addr, e))?;
            &self.pages[span]
        };
        let planned = match cache {
            Some(cache) => {
                let key = block_base[addr.block] + addr.offset;
                match cache.decide(key, buf, last_stage) {
                    Ok(PageDecision::Zero) => Some(Planned::Zeros(1)),
                    Ok(PageDecision::Unchanged) => None,
                    Ok(PageDecision::Xbzrle { delta }) => {
                        let start = self.deltas.len();
                        self.deltas.extend_from_slice(delta);
                        Some(Planned::Xbzrle(start..self.deltas.len()))
                    }
                    // The cache's copy equals the page read (see the cache's docs); a page
                    // of the wrong size cannot happen: the buffer is one page.
                    Ok(PageDecision::Page { .. }) | Err(_) if known_zero => Some(Planned::Zeros(1)),
                    Ok(PageDecision::Page { .. }) | Err(_) => Some(Planned::Page(slot)),
                }
            }
            None if known_zero || is_zero_page(buf) => Some(Planned::Zeros(1)),
            None => Some(Planned::Page(slot)),
        };
        if !known_zero {
            self.used += 1;
        }
        match planned {
            Some(Planned::Zeros(_)) => self.plan_zeros(addr, 1),
            Some(p) => self.plan.push((addr, p)),
            None => {}
        }
        Ok(())
    }

    /// Plans ZERO records for `count` pages from `addr`: the run before them grows if they
    /// follow it.
    fn plan_zeros(&mut self, addr: PageAddr, count: u64) {
        if let Some((first, Planned::Zeros(n))) = self.plan.last_mut() {
            if first.block == addr.block && first.offset + *n * self.page_size as u64 == addr.offset
            {
                *n += count;
                return;
            }
        }
        self.plan.push((addr, Planned::Zeros(count)));
    }

    /// Encodes the planned records into `out`, the payloads referenced from this batch.
    pub(crate) fn encode<'s, S: Sink<'s>>(
        &'s self,
        enc: &mut Encoder,
        mut cache: Option<&mut XbzrleCache>,
        stats: &mut SendStats,
        out: &mut Counted<'_, S>,
    ) -> Result<(), ramstream_codec::Error> {
        let ps = self.page_size;
        for (addr, planned) in &self.plan {
            match planned {
                Planned::Page(slot) => {
                    enc.page(*addr, &self.pages[slot * ps..(slot + 1) * ps], out)?;
                    stats.normal += 1;
                    stats.normal_bytes += ps as u64;
                }
                Planned::Zeros(n) => {
                    enc.zeros(*addr, *n, 0, out)?;
                    stats.duplicate += n;
                }
                Planned::Xbzrle(r) => {
                    let before = out.n;
                    enc.xbzrle(*addr, &self.deltas[r.clone()], out)?;
                    stats.xbzrle_pages += 1;
                    // QEMU counts the idstr of a record sent without CONTINUE.
                    let idstr = out.n - before - 8 - RECORD_HEADER_LEN - r.len();
                    if let Some(c) = cache.as_deref_mut() {
                        c.add_idstr_bytes(idstr as u64);
                    }
                }
            }
        }
        Ok(())
    }
}
