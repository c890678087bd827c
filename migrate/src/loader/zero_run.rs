//! ZERO records applied a run at a time: after a ZERO record the loader takes the run of
//! ZERO records that follows it ([`Decoder::peek_zero_run`]) in one step, with the same
//! effect on memory, statistics and errors as loading them one by one. An idle guest's
//! stream is mostly such runs (SPEC.md §7.4), which otherwise cost more in per-record
//! dispatch than the pages themselves.
//!
//! [`Decoder::peek_zero_run`]: ramstream_codec::Decoder::peek_zero_run

use ramstream_codec::balloon::PageRun;
use ramstream_codec::{PageAddr, RecordKind};

use super::{ram_of, Loader, ZeroPages};
use crate::error::Error;
use crate::guest::GuestRam;

/// The most ZERO records taken in one step.
const MAX_RUN: u64 = 4096;

impl<R: GuestRam> Loader<R> {
    /// Applies the run of ZERO records at the front of `input`, if there is one; returns
    /// how many bytes it consumed (0: none, decode the next record as usual). A ballooned
    /// page ends the run before it, so that decoding it refuses it as a record.
    pub(super) fn zero_run(&mut self, input: &[u8]) -> Result<usize, Error> {
        let Some(run) = self.decoder.peek_zero_run(input, MAX_RUN) else {
            return Ok(0);
        };
        let page_size = self.decoder.page_size() as u64;
        let first = run.first();
        let start = first.offset / page_size;
        let pages = match self
            .balloon
            .unballooned_ranges(first.block, start..start + run.pages())
            .next()
        {
            Some(r) if r.start == start => r.end - r.start,
            _ => return Ok(0),
        };
        let rec = RecordKind::Zero;
        // The block is mapped and the memory there (checked once for the run).
        let guest = self.guest_addr(first, run.offset_of(0), rec)?.block;
        let Some(consumed) = self.decoder.consume_zero_run(&run, pages) else {
            return Ok(0);
        };
        if self.opts.zero_pages != ZeroPages::SkipUnwritten {
            for i in 0..pages {
                if self.clear_page(run.page(i), run.offset_of(i), rec)? {
                    self.stats.zero_written += 1;
                } else {
                    self.stats.zero_skipped += 1;
                }
            }
            return Ok(consumed);
        }
        // Only the pages written since they were last zero need zeroing. The counts move
        // page by page, as one by one, so that a failure leaves the same statistics.
        let mut counted = 0u64;
        for addr in self.written.marked_in(
            first.block,
            PageRun {
                start,
                count: pages,
            },
        ) {
            let i = (addr.offset - first.offset) / page_size;
            self.stats.zero_skipped += i - counted;
            counted = i;
            let g = PageAddr::new(guest, addr.offset);
            let at = run.offset_of(i);
            ram_of(&self.ram, at, rec)?
                .zero_page(g, self.opts.page_size)
                .map_err(|e| self.guest_error(addr, g, e, at, rec))?;
            self.written.touch(addr);
            self.written.unmark(addr);
            self.stats.zero_written += 1;
            counted += 1;
        }
        self.stats.zero_skipped += pages - counted;
        Ok(consumed)
    }
}
