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
        }
    }

    /// Reads the pages at `pages` (at most [`BATCH`]) and decides each: with `cache` through
    /// the XBZRLE cache (keys from `block_base`, where each block starts in the blocks laid
    /// end to end, in bytes), otherwise ZERO or PAGE by the zero-page test. Stops at the
    /// first read error.
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
        for (slot, &addr) in pages.iter().enumerate() {
            let span = slot * ps..(slot + 1) * ps;
            ram.read_page(addr, &mut self.pages[span.clone()])
                .map_err(|e| (addr, e))?;
            stats.pages_visited += 1;
            let buf = &self.pages[span];
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
                        Ok(PageDecision::Page { .. }) | Err(_) => Some(Planned::Page(slot)),
                    }
                }
                None if is_zero_page(buf) => Some(Planned::Zero),
                None => Some(Planned::Page(slot)),
            };
            if let Some(p) = planned {
                self.plan.push((addr, p));
            }
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
