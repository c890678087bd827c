//! Runs of ZERO records read in one step: a sender that walks never-written memory writes
//! thousands of 9-byte ZERO records in a row (SPEC.md §7.4), and a loader that decodes them
//! one event at a time spends more on the dispatch than on the pages.

use ramstream_spec::ram::{split_record_word, RamFlags, ZERO_RECORD_CONTINUED_LEN};

use super::{Decoder, State};
use crate::addr::PageAddr;

/// Consecutive ZERO records found by [`Decoder::peek_zero_run`]: each with CONTINUE and
/// fill `00`, for adjacent pages of the block the last page record named. Decoding them one
/// by one gives the same [`Event::Zero`](crate::Event::Zero) events, in page order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroRun {
    at: u64,
    first: PageAddr,
    pages: u64,
    page_size: u64,
}

impl ZeroRun {
    /// The first record's page.
    pub fn first(&self) -> PageAddr {
        self.first
    }

    /// How many records (pages).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The page of record `i` (`i < pages`).
    pub fn page(&self, i: u64) -> PageAddr {
        PageAddr::new(self.first.block, self.first.offset + i * self.page_size)
    }

    /// The stream offset of record `i`: where an error about its page is reported.
    pub fn offset_of(&self, i: u64) -> u64 {
        self.at + i * ZERO_RECORD_CONTINUED_LEN as u64
    }
}

impl Decoder {
    /// Looks for a run of at most `max_pages` ZERO records at the front of `input` that
    /// [`Decoder::decode`] would return as [`Event::Zero`](crate::Event::Zero) events one by
    /// one: inside a `ram` section part, each with CONTINUE (so after a page record named
    /// the block), fill `00`, the first at any page of that block and each next one at the
    /// page after, all inside the block's used length. Changes nothing; `None` when the
    /// front of `input` is not such a record (decode it as usual). A mapped-ram stream has
    /// no ZERO records, so never a run.
    ///
    /// ```
    /// use ramstream_codec::{
    ///     Decoder, DecoderOptions, Encoder, Event, PageAddr, RamBlock, SectionHeader, Status,
    /// };
    ///
    /// // A stream whose RAM section holds one PAGE and then 100 ZERO records.
    /// let mut enc = Encoder::new(12);
    /// let mut s = Vec::new();
    /// enc.header(&mut s);
    /// enc.section_header(&SectionHeader::ram_start(1), &mut s).unwrap();
    /// enc.mem_size(&[RamBlock::new("pc.ram", 1 << 20)], &mut s).unwrap();
    /// enc.page(PageAddr::new(0, 0), &[7; 4096], &mut s).unwrap();
    /// enc.zeros(PageAddr::new(0, 4096), 100, 0, &mut s).unwrap();
    ///
    /// // No configuration section in this short stream.
    /// let mut d = Decoder::new(DecoderOptions::default().with_require_configuration(false));
    /// let mut pos = 0;
    /// // Decode up to the first ZERO record (itself included).
    /// loop {
    ///     let Status::Event { event, consumed } = d.decode(&s[pos..]).unwrap() else {
    ///         unreachable!()
    ///     };
    ///     pos += consumed;
    ///     if matches!(event, Event::Zero(_)) {
    ///         break;
    ///     }
    /// }
    /// let run = d.peek_zero_run(&s[pos..], u64::MAX).unwrap();
    /// assert_eq!(run.first(), PageAddr::new(0, 2 * 4096));
    /// assert_eq!(run.pages(), 99);
    /// pos += d.consume_zero_run(&run, run.pages()).unwrap();
    /// assert_eq!(pos, s.len());
    /// ```
    pub fn peek_zero_run(&self, input: &[u8], max_pages: u64) -> Option<ZeroRun> {
        if self.poisoned || self.mapped_ram || !matches!(self.state, State::RamRecords { .. }) {
            return None;
        }
        let block = self.ram.last_block?;
        let used_length = self.ram.blocks.get(block)?.used_length;
        let page_size = 1u64 << self.page_bits;
        let want = RamFlags::ZERO | RamFlags::CONTINUE;
        let mut first = None;
        let mut pages = 0u64;
        for rec in input.chunks_exact(ZERO_RECORD_CONTINUED_LEN) {
            if pages == max_pages {
                break;
            }
            let (word, fill) = rec.split_at(ZERO_RECORD_CONTINUED_LEN - 1);
            let word = u64::from_be_bytes(word.try_into().ok()?);
            let (offset, flags) = split_record_word(word, self.page_bits);
            let expected = first.map(|f: u64| f + pages * page_size);
            if flags != want
                || fill[0] != 0
                || offset >= used_length
                || expected.is_some_and(|e| e != offset)
            {
                break;
            }
            first.get_or_insert(offset);
            pages += 1;
        }
        Some(ZeroRun {
            at: self.offset,
            first: PageAddr::new(block, first?),
            pages,
            page_size,
        })
    }

    /// Consumes the first `pages` records of `run`, which [`Decoder::peek_zero_run`] found
    /// at the current offset; returns how many input bytes they were. `None`, consuming
    /// nothing, when `run` is not from this offset or holds fewer pages.
    pub fn consume_zero_run(&mut self, run: &ZeroRun, pages: u64) -> Option<usize> {
        if self.poisoned || run.at != self.offset || pages > run.pages {
            return None;
        }
        let bytes = pages * ZERO_RECORD_CONTINUED_LEN as u64;
        self.offset += bytes;
        usize::try_from(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Decoder, DecoderOptions, Encoder, Event, PageAddr, RamBlock, SectionHeader, Status,
    };

    /// A RAM section: a PAGE at page 0, then `zeros` built by the caller.
    fn stream(zeros: impl FnOnce(&mut Encoder, &mut Vec<u8>)) -> Vec<u8> {
        let mut enc = Encoder::new(12);
        let mut s = Vec::new();
        enc.header(&mut s);
        enc.section_header(&SectionHeader::ram_start(1), &mut s)
            .unwrap();
        enc.mem_size(
            &[
                RamBlock::new("pc.ram", 4 << 20),
                RamBlock::new("other", 1 << 16),
            ],
            &mut s,
        )
        .unwrap();
        enc.page(PageAddr::new(0, 0), &[7; 4096], &mut s).unwrap();
        zeros(&mut enc, &mut s);
        enc.eos(&mut s);
        s
    }

    /// Every event one by one, and the same stream with every run taken by
    /// peek/consume: the same ZERO pages in the same order, the same offsets after.
    /// (stream offset of the record, its page) of each ZERO page, in order.
    type Zeros = Vec<(u64, PageAddr)>;

    fn both_ways(s: &[u8], max: u64) -> (Zeros, Zeros) {
        let mut one = Vec::new();
        let mut d = Decoder::new(DecoderOptions::default().with_require_configuration(false));
        let mut pos = 0;
        while let Status::Event { event, consumed } = d.decode(&s[pos..]).unwrap() {
            if let Event::Zero(z) = event {
                one.push((d.offset() - consumed as u64, z.addr));
            }
            pos += consumed;
            if pos == s.len() {
                break;
            }
        }
        let mut runs = Vec::new();
        let mut d = Decoder::new(DecoderOptions::default().with_require_configuration(false));
        let mut pos = 0;
        while pos < s.len() {
            if let Some(run) = d.peek_zero_run(&s[pos..], max) {
                assert!(run.pages() >= 1 && run.pages() <= max);
                for i in 0..run.pages() {
                    runs.push((run.offset_of(i), run.page(i)));
                }
                pos += d.consume_zero_run(&run, run.pages()).unwrap();
                continue;
            }
            let Status::Event { event, consumed } = d.decode(&s[pos..]).unwrap() else {
                panic!("incomplete at {pos}")
            };
            if let Event::Zero(z) = event {
                runs.push((d.offset() - consumed as u64, z.addr));
            }
            pos += consumed;
        }
        assert_eq!(d.offset(), s.len() as u64);
        (one, runs)
    }

    #[test]
    fn a_run_reads_as_its_records_one_by_one() {
        let s = stream(|enc, s| {
            enc.zeros(PageAddr::new(0, 4096), 300, 0, s).unwrap();
            // A gap, a block change, a fill that is not zero, a page in between.
            enc.zeros(PageAddr::new(0, 400 * 4096), 5, 0, s).unwrap();
            enc.zeros(PageAddr::new(1, 0), 16, 0, s).unwrap();
            enc.zeros(PageAddr::new(1, 4096 * 3), 1, 0x55, s).unwrap();
            enc.zero(PageAddr::new(0, 4096 * 500), 0, s).unwrap();
            enc.page(PageAddr::new(0, 4096 * 501), &[1; 4096], s)
                .unwrap();
            enc.zeros(PageAddr::new(0, 4096 * 502), 4, 0, s).unwrap();
        });
        for max in [1, 2, 7, 64, u64::MAX] {
            let (one, runs) = both_ways(&s, max);
            assert_eq!(one.len(), 300 + 5 + 16 + 1 + 1 + 4, "max {max}");
            assert_eq!(one, runs, "max {max}");
        }
    }

    #[test]
    fn no_run_where_decode_would_not_give_zero_pages() {
        let s = stream(|enc, s| enc.zeros(PageAddr::new(0, 4096), 3, 0, s).unwrap());
        let mut d = Decoder::new(DecoderOptions::default().with_require_configuration(false));
        // Before any section: not a RAM record.
        assert_eq!(d.peek_zero_run(&s, u64::MAX), None);
        let mut pos = 0;
        loop {
            let Status::Event { event, consumed } = d.decode(&s[pos..]).unwrap() else {
                unreachable!()
            };
            pos += consumed;
            if matches!(event, Event::Zero(_)) {
                break;
            }
        }
        // A truncated record is not part of a run; zero records is not a run.
        let run = d.peek_zero_run(&s[pos..s.len() - 10], u64::MAX).unwrap();
        assert_eq!(run.pages(), 1);
        assert_eq!(d.peek_zero_run(&s[pos..pos + 8], u64::MAX), None);
        assert_eq!(d.peek_zero_run(&s[pos..], 0), None);
        // A run peeked elsewhere, or asked for more pages than it has, consumes nothing.
        let run = d.peek_zero_run(&s[pos..], u64::MAX).unwrap();
        assert_eq!(d.consume_zero_run(&run, 3), None);
        assert_eq!(d.consume_zero_run(&run, 1), Some(9));
        assert_eq!(d.consume_zero_run(&run, 1), None);
    }

    #[test]
    fn a_page_beyond_the_block_ends_the_run_and_decode_reports_it() {
        let mut s = stream(|enc, s| enc.zeros(PageAddr::new(1, 4096 * 14), 2, 0, s).unwrap());
        // A third record, hand-written, one page past the 64 KiB block's end.
        let eos = s.split_off(s.len() - 8);
        s.extend_from_slice(&((16u64 * 4096) | 0x22).to_be_bytes());
        s.push(0);
        s.extend_from_slice(&eos);
        let mut d = Decoder::new(DecoderOptions::default().with_require_configuration(false));
        let mut pos = 0;
        let mut zeros = 0;
        while zeros < 1 {
            let Status::Event { event, consumed } = d.decode(&s[pos..]).unwrap() else {
                unreachable!()
            };
            pos += consumed;
            zeros += matches!(event, Event::Zero(_)) as u32;
        }
        let run = d.peek_zero_run(&s[pos..], u64::MAX).unwrap();
        assert_eq!((run.first(), run.pages()), (PageAddr::new(1, 4096 * 15), 1));
        pos += d.consume_zero_run(&run, 1).unwrap();
        let err = d.decode(&s[pos..]).unwrap_err();
        assert!(err.to_string().contains("beyond"), "{err}");
    }
}
