//! One batch of pages: read through [`GuestRam::read_page`] into page buffers the engine
//! owns, decided (ZERO, PAGE, XBZRLE or nothing: SPEC.md §7.7), and encoded with each PAGE
//! payload and XBZRLE delta referenced from those buffers, not copied (a vectored sink
//! hands them to `write_vectored` as they are).

use core::ops::Range;

use ramstream_codec::cache::{PageDecision, XbzrleCache};
use ramstream_codec::zero::is_zero_page;
use ramstream_codec::{Encoder, PageAddr, Sink};
use ramstream_spec::xbzrle::RECORD_HEADER_LEN;

use super::counted::Counted;
use super::round::BATCH;
use super::stats::SendStats;
use crate::GuestRam;

/// What to send for a page.
#[derive(Clone, Debug)]
enum Planned {
    /// PAGE with the page in this slot.
    Page(usize),
    /// ZERO.
    Zero,
    /// XBZRLE with these bytes of the delta buffer.
    Xbzrle(Range<usize>),
}

/// The page buffers of one batch and the records planned for them.
pub(crate) struct Batch {
    page_size: usize,
    /// [`BATCH`] pages, read by `read_page` and referenced by the PAGE records.
    pages: Vec<u8>,
    /// The XBZRLE deltas of the batch, back to back.
    deltas: Vec<u8>,
    plan: Vec<(PageAddr, Planned)>,
    /// Which pages of the batch the memory knows to be zero (not read).
    zero: [bool; BATCH],
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
    pub(crate) fn new(page_size: usize) -> Self {
        Batch {
            page_size,
            pages: vec![0; BATCH * page_size],
            deltas: Vec::with_capacity(BATCH * page_size),
            plan: Vec::with_capacity(BATCH),
            zero: [false; BATCH],
            zeros: vec![0; page_size],
        }
    }

    /// Reads the pages at `pages` (at most [`BATCH`]) and decides each: with `cache` through
    /// the XBZRLE cache (keys from `block_base`, where each block starts in the blocks laid
    /// end to end, in bytes), otherwise ZERO or PAGE by the zero-page test. A page the
    /// memory knows to be zero ([`GuestRam::known_zero_pages`], asked once per run of
    /// consecutive pages) is not read: it is decided as a page of zeros. Stops at the first
    /// read error.
    pub(crate) fn fill<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        pages: &[PageAddr],
        block_base: &[u64],
        mut cache: Option<&mut XbzrleCache>,
        last_stage: bool,
        stats: &mut SendStats,
    ) -> Result<(), (PageAddr, R::Error)> {
        let ps = self.page_size;
        self.plan.clear();
        self.deltas.clear();
        self.known_zero(ram, pages)?;
        for (slot, &addr) in pages.iter().enumerate() {
            let span = slot * ps..(slot + 1) * ps;
            let known_zero = self.zero[slot];
            if known_zero {
                stats.pages_known_zero += 1;
            } else {
                ram.read_page(addr, &mut self.pages[span.clone()])
                    .map_err(|e| (addr, e))?;
            }
            stats.pages_visited += 1;
            let buf: &[u8] = if known_zero {
                &self.zeros
            } else {
                &self.pages[span]
            };
            let planned = match cache.as_deref_mut() {
                Some(cache) => {
                    let key = block_base[addr.block] + addr.offset;
                    match cache.decide(key, buf, last_stage) {
                        Ok(PageDecision::Zero) => Some(Planned::Zero),
                        Ok(PageDecision::Unchanged) => None,
                        Ok(PageDecision::Xbzrle { delta }) => {
                            let start = self.deltas.len();
                            self.deltas.extend_from_slice(delta);
                            Some(Planned::Xbzrle(start..self.deltas.len()))
                        }
                        // The cache's copy equals the page read (see the cache's docs); a
                        // page of the wrong size cannot happen: the buffer is one page.
                        Ok(PageDecision::Page { .. }) | Err(_) if known_zero => Some(Planned::Zero),
                        Ok(PageDecision::Page { .. }) | Err(_) => Some(Planned::Page(slot)),
                    }
                }
                None if known_zero || is_zero_page(buf) => Some(Planned::Zero),
                None => Some(Planned::Page(slot)),
            };
            if let Some(p) = planned {
                self.plan.push((addr, p));
            }
        }
        Ok(())
    }

    /// Asks `ram` which of `pages` are known to be zero, once per run of consecutive pages
    /// of one block, into `self.zero`.
    fn known_zero<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        pages: &[PageAddr],
    ) -> Result<(), (PageAddr, R::Error)> {
        let ps = self.page_size as u64;
        let mut start = 0;
        while start < pages.len() {
            let first = pages[start];
            let mut end = start + 1;
            while end < pages.len()
                && pages[end].block == first.block
                && pages[end].offset == first.offset + (end - start) as u64 * ps
            {
                end += 1;
            }
            ram.known_zero_pages(first, self.page_size, &mut self.zero[start..end])
                .map_err(|e| (first, e))?;
            start = end;
        }
        Ok(())
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
                Planned::Zero => {
                    enc.zero(*addr, 0, out)?;
                    stats.duplicate += 1;
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
