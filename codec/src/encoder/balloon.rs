//! Writing balloon records (SPEC.md §9.4, §9.6): the encoder writes a v1 record's word and
//! idstr with the CONTINUE state it shares with page records (SPEC.md §9.7); the balloon
//! family checks the runs and writes the rest.

use ramstream_spec::limits::MAX_BALLOON_RUNS;
use ramstream_spec::ram::RamFlags;

use super::Encoder;
use crate::addr::PageAddr;
use crate::balloon::wire;
use crate::balloon::{BalloonMapKind, BalloonRecord, KolheBalloon, PageRun};
use crate::error::Error;
use crate::sink::Sink;

impl Encoder {
    /// Ramstream balloon v1 records for `block` (SPEC.md §9.4): one record, or more when the
    /// runs are more than a reader accepts by default in one record
    /// (`limits::MAX_BALLOON_RUNS`, SPEC.md §9.5 rule 5); see
    /// [`Encoder::balloon_v1_records`]. CONTINUE is used when the block is the previous page
    /// or balloon record's, as for page records. The runs are checked against the rules of
    /// SPEC.md §9.5.
    ///
    /// ```
    /// use ramstream_codec::balloon::{BalloonMapKind, PageRun};
    /// use ramstream_codec::{Encoder, RamBlock};
    /// let mut enc = Encoder::new(12);
    /// let mut out = Vec::new();
    /// enc.mem_size(&[RamBlock { idstr: "pc.ram".into(), used_length: 1 << 20, page_size: None, mr_addr: None }], &mut out);
    /// out.clear();
    /// enc.balloon_v1(0, BalloonMapKind::FullMap, &[PageRun::new(16, 32)], &[], &mut out).unwrap();
    /// assert_eq!(out.len(), 8 + 7 + 10 + 16);
    /// ```
    pub fn balloon_v1<'a>(
        &mut self,
        block: usize,
        kind: BalloonMapKind,
        inflate: &[PageRun],
        deflate: &[PageRun],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        self.balloon_v1_records(block, kind, inflate, deflate, MAX_BALLOON_RUNS, s)
            .map(|_| ())
    }

    /// Ramstream balloon v1 records for `block` carrying at most `max_runs` runs each, so a
    /// reader whose `Limits::max_balloon_runs` is `max_runs` accepts them (SPEC.md §9.5 rule
    /// 5). The first record has `kind` and the first runs (inflate runs, then deflate runs);
    /// each later record is incremental and carries the next ones. Applied in order they
    /// give the same map as one record with all the runs: a full map is its first part plus
    /// inflates, and the two lists of an incremental change are disjoint. Returns how many
    /// records were written. Checks everything first and writes nothing on error.
    pub fn balloon_v1_records<'a>(
        &mut self,
        block: usize,
        kind: BalloonMapKind,
        inflate: &[PageRun],
        deflate: &[PageRun],
        max_runs: u64,
        s: &mut impl Sink<'a>,
    ) -> Result<usize, Error> {
        wire::check_v1(
            &self.block_lengths,
            self.page_bits,
            block,
            kind,
            inflate.iter().copied(),
            deflate.iter().copied(),
        )?;
        let total = inflate.len() + deflate.len();
        let per = wire::v1_runs_per_record(max_runs, total)?;
        let n_inflate = inflate.len();
        let mut from = 0usize;
        let mut records = 0;
        loop {
            let to = from.saturating_add(per).min(total);
            let inf = &inflate[from.min(n_inflate)..to.min(n_inflate)];
            let def = &deflate[from.saturating_sub(n_inflate)..to.saturating_sub(n_inflate)];
            let k = if records == 0 {
                kind
            } else {
                BalloonMapKind::Incremental
            };
            self.page_word(PageAddr { block, offset: 0 }, RamFlags::X200, None, s)?;
            wire::write_v1(k, inf, def, s)?;
            records += 1;
            from = to;
            if from >= total {
                return Ok(records);
            }
        }
    }

    /// A kolhe-2016 record exactly as given (SPEC.md §9.6). Only a record the decoder reads
    /// back as the same record is written: the checks of SPEC.md §9.6 against the announced
    /// blocks, and pairs exactly as the loader's loop reads them (every run read while the
    /// position is below the limit, the terminator only if the loop would read it, and one
    /// if it would read another pair).
    pub fn kolhe_balloon<'a>(
        &mut self,
        rec: &KolheBalloon<'a>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        wire::write_kolhe(&self.block_lengths, rec, s)
    }

    /// A kolhe-2016 record as the 2016 patch's `qemu_balloon_bitmap_save` writes it for the
    /// ballooned `runs` (global 4 KiB pages, sorted, the whole map) over `[start, limit)`:
    /// maximal runs from `start` while the position is below `limit`, a run clipped at its
    /// front to `start` but not at its end, and the `(bitmap_pages, 0)` terminator when no
    /// ballooned page remains (SPEC.md §9.6). `start > limit` is allowed only as the patch's
    /// unchanged header (`limit` 0, `start` the bitmap size of the previous transfer, at most
    /// `bitmap_pages`): then no pair is written.
    pub fn kolhe_balloon_from_runs<'a>(
        &mut self,
        bitmap_pages: u64,
        start: u64,
        limit: u64,
        runs: &[PageRun],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        wire::write_kolhe_from_runs(&self.block_lengths, bitmap_pages, start, limit, runs, s)
    }

    /// Writes a decoded balloon record back, byte for byte (CONTINUE as the record says).
    pub(super) fn balloon_record<'a>(
        &mut self,
        rec: &BalloonRecord<'a>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        match rec {
            BalloonRecord::Kolhe(k) => self.kolhe_balloon(k, s),
            BalloonRecord::V1(v) => {
                wire::check_v1(
                    &self.block_lengths,
                    self.page_bits,
                    v.block,
                    v.kind,
                    v.inflate.iter(),
                    v.deflate.iter(),
                )?;
                self.page_word(
                    PageAddr {
                        block: v.block,
                        offset: 0,
                    },
                    RamFlags::X200,
                    Some(v.continued),
                    s,
                )?;
                wire::write_v1_record(v, s)
            }
        }
    }
}
