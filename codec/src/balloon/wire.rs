//! Parsing and writing balloon records (SPEC.md §9.4–§9.6).

use ramstream_spec::extension::{
    BALLOON_RUN_LEN, BALLOON_V1_VERSION, KOLHE_BALLOON_DISABLE, KOLHE_BALLOON_PAGE_SHIFT,
};
use ramstream_spec::ram::{split_record_word, RamFlags};
use ramstream_spec::Dialect;

use crate::balloon::{
    check_runs, first_common_page, BalloonMapKind, BalloonRecord, BalloonRunsV1, KolheBalloon,
    KolheBitmap, PageRun, RunError, RunList,
};
use crate::cursor::{Cursor, PResult, Stop};
use crate::encoder::{Encoder, Sink};
use crate::error::{Error, ErrorKind};
use crate::event::{PageAddr, RecordKind};
use crate::ram::record::RecordContext;

fn err(at: u64, kind: ErrorKind) -> Error {
    Error::new(at, kind).in_record(RecordKind::Balloon)
}

fn run_error(e: RunError) -> ErrorKind {
    match e {
        RunError::Empty { start } => ErrorKind::BalloonEmptyRun { start },
        RunError::OutOfRange { run, pages } => ErrorKind::BalloonRunOutOfRange {
            start: run.start,
            count: run.count,
            pages,
        },
        RunError::Order {
            start,
            previous_end,
        } => ErrorKind::BalloonRunOrder {
            start,
            previous_end,
        },
        RunError::Adjacent { start } => ErrorKind::BalloonRunsAdjacent { start },
    }
}

/// Parses a balloon record after its word (flag 0x200 alone, maybe with CONTINUE), as the
/// dialect in force says (SPEC.md §9.1). Only called for kolhe-2016 and ramstream-balloon-v1.
pub(crate) fn parse<'a>(
    c: &mut Cursor<'a>,
    cx: &RecordContext<'_>,
    at: u64,
    word: u64,
) -> PResult<BalloonRecord<'a>> {
    match cx.opts.dialect {
        Dialect::Kolhe2016 => parse_kolhe(c, cx, at, word).map(BalloonRecord::Kolhe),
        _ => parse_v1(c, cx, at, word).map(BalloonRecord::V1),
    }
}

/// A ramstream balloon v1 record (SPEC.md §9.4, §9.5).
fn parse_v1<'a>(
    c: &mut Cursor<'a>,
    cx: &RecordContext<'_>,
    at: u64,
    word: u64,
) -> PResult<BalloonRunsV1<'a>> {
    if !cx.balloon_v1_announced {
        return Err(err(at, ErrorKind::BalloonNotAnnounced).into());
    }
    let (addr, flags) = split_record_word(word, cx.page_bits);
    if addr != 0 || flags.without(RamFlags::CONTINUE) != RamFlags::X200 {
        return Err(err(at, ErrorKind::BalloonWord { word }).into());
    }
    if cx.ram.blocks.is_empty() {
        return Err(err(at, ErrorKind::BalloonBeforeMemSize).into());
    }
    // The block, exactly as page records name it (SPEC.md §9.7).
    let continued = flags.contains(RamFlags::CONTINUE);
    let block = if continued {
        cx.ram
            .last_block
            .ok_or_else(|| err(at, ErrorKind::ContinueWithoutBlock))?
    } else {
        let name_at = c.offset();
        let name = c.counted_str("RAM block idstr")?;
        *cx.ram.index.get(name).ok_or_else(|| {
            err(name_at, ErrorKind::UnknownBlock { idstr: name.into() }).in_block(name)
        })?
    };
    let b = &cx.ram.blocks[block];
    let fail = |at: u64, k: ErrorKind| Stop::from(err(at, k).in_block(b.idstr.as_str()));
    let block_pages = b.used_length >> cx.page_bits;

    let version_at = c.offset();
    let version = c.u8()?;
    if version != BALLOON_V1_VERSION {
        return Err(fail(
            version_at,
            ErrorKind::BalloonVersion {
                found: version,
                expected: BALLOON_V1_VERSION,
            },
        ));
    }
    let kind_at = c.offset();
    let kind_byte = c.u8()?;
    let kind = BalloonMapKind::from_wire(kind_byte)
        .ok_or_else(|| fail(kind_at, ErrorKind::BalloonKind { found: kind_byte }))?;
    let counts_at = c.offset();
    let n_inflate = c.u32()?;
    let n_deflate = c.u32()?;
    let count = u64::from(n_inflate) + u64::from(n_deflate);
    let limit = cx.opts.limits.max_balloon_runs;
    if count > limit {
        return Err(fail(
            counts_at,
            ErrorKind::BalloonTooManyRuns { count, limit },
        ));
    }
    if kind == BalloonMapKind::FullMap && n_deflate != 0 {
        return Err(fail(
            counts_at + 4,
            ErrorKind::BalloonFullMapDeflate { count: n_deflate },
        ));
    }
    let len = |n: u32| {
        usize::try_from(u64::from(n) * BALLOON_RUN_LEN as u64)
            .map_err(|_| fail(counts_at, ErrorKind::BalloonTooManyRuns { count, limit }))
    };
    let (inflate_len, deflate_len) = (len(n_inflate)?, len(n_deflate)?);
    let inflate_at = c.offset();
    let inflate = RunList {
        raw: c.take(inflate_len)?,
    };
    let deflate_at = c.offset();
    let deflate = RunList {
        raw: c.take(deflate_len)?,
    };
    for (list, list_at) in [(inflate, inflate_at), (deflate, deflate_at)] {
        list.check(block_pages)
            .map_err(|(i, e)| fail(list_at + (i * BALLOON_RUN_LEN) as u64, run_error(e)))?;
    }
    if let Some(page) = first_common_page(inflate.iter(), deflate.iter()) {
        return Err(fail(
            deflate_at,
            ErrorKind::BalloonInflateDeflateOverlap { page },
        ));
    }
    Ok(BalloonRunsV1 {
        block,
        continued,
        kind,
        inflate,
        deflate,
    })
}

/// The MEM_SIZE total in the 2016 patch's 4 KiB pages.
pub(crate) fn kolhe_ram_pages(used_lengths: impl Iterator<Item = u64>) -> u64 {
    used_lengths.fold(0u64, |a, l| a.saturating_add(l >> KOLHE_BALLOON_PAGE_SHIFT))
}

/// The 2016 patch's `qemu_balloon_bitmap_load` payload (SPEC.md §9.6).
fn parse_kolhe<'a>(
    c: &mut Cursor<'a>,
    cx: &RecordContext<'_>,
    at: u64,
    word: u64,
) -> PResult<KolheBalloon<'a>> {
    // The patch writes the bare flag: no offset, no CONTINUE, no idstr.
    if word != RamFlags::X200.bits() {
        return Err(err(at, ErrorKind::BalloonWord { word }).into());
    }
    if cx.ram.blocks.is_empty() {
        return Err(err(at, ErrorKind::BalloonBeforeMemSize).into());
    }
    let size_at = c.offset();
    let bitmap_pages = c.u64()?;
    if bitmap_pages == KOLHE_BALLOON_DISABLE {
        return Ok(KolheBalloon::Disabled);
    }
    let ram_pages = kolhe_ram_pages(cx.ram.blocks.iter().map(|b| b.used_length));
    if bitmap_pages != ram_pages {
        return Err(err(
            size_at,
            ErrorKind::KolheBitmapSize {
                bitmap_pages,
                ram_pages,
            },
        )
        .into());
    }
    let start_at = c.offset();
    let start = c.u64()?;
    let limit = c.u64()?;
    if start > limit {
        return Err(err(start_at, ErrorKind::KolheStartAfterLimit { start, limit }).into());
    }
    if limit > bitmap_pages {
        return Err(err(
            start_at + 8,
            ErrorKind::KolheLimitBeyondBitmap {
                limit,
                bitmap_pages,
            },
        )
        .into());
    }
    // The loader's loop: pairs while the running position is below the limit; a pair of
    // length 0 ends it early.
    let runs_from = c.rest();
    let max_runs = cx.opts.limits.max_balloon_runs;
    let mut pos = start;
    let mut n: u64 = 0;
    let mut terminated = false;
    while pos < limit {
        let pair_at = c.offset();
        let run_start = c.u64()?;
        let run_len = c.u64()?;
        if run_len == 0 {
            if run_start != bitmap_pages {
                return Err(err(
                    pair_at,
                    ErrorKind::KolheTerminator {
                        start: run_start,
                        bitmap_pages,
                    },
                )
                .into());
            }
            terminated = true;
            break;
        }
        if run_start < pos {
            return Err(err(
                pair_at,
                ErrorKind::BalloonRunOrder {
                    start: run_start,
                    previous_end: pos,
                },
            )
            .into());
        }
        if n > 0 && run_start == pos {
            return Err(err(pair_at, ErrorKind::BalloonRunsAdjacent { start: run_start }).into());
        }
        let end = match run_start.checked_add(run_len) {
            Some(e) if e <= bitmap_pages => e,
            _ => {
                return Err(err(
                    pair_at,
                    ErrorKind::BalloonRunOutOfRange {
                        start: run_start,
                        count: run_len,
                        pages: bitmap_pages,
                    },
                )
                .into())
            }
        };
        n += 1;
        if n > max_runs {
            return Err(err(
                pair_at,
                ErrorKind::BalloonTooManyRuns {
                    count: n,
                    limit: max_runs,
                },
            )
            .into());
        }
        pos = end;
    }
    // n ≤ max_runs and every pair was read from the input, so this fits.
    let raw_len = n as usize * BALLOON_RUN_LEN;
    Ok(KolheBalloon::Bitmap(KolheBitmap {
        bitmap_pages,
        start,
        limit,
        runs: RunList {
            raw: &runs_from[..raw_len],
        },
        terminated,
    }))
}

fn enc_err(reason: impl Into<String>) -> Error {
    Error::new(
        0,
        ErrorKind::Encode {
            reason: reason.into(),
        },
    )
    .in_record(RecordKind::Balloon)
}

fn check_for_encode(runs: impl Iterator<Item = PageRun>, pages: u64) -> Result<(), Error> {
    check_runs(runs, pages).map_err(|(i, e)| enc_err(format!("run {i}: {}", run_error(e))))
}

/// Writing balloon records (SPEC.md §9.4, §9.6).
impl Encoder {
    /// A ramstream balloon v1 record for `block` (SPEC.md §9.4). CONTINUE is used when the
    /// block is the previous page or balloon record's, as for page records. The runs are
    /// checked against the rules of SPEC.md §9.5.
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
        self.check_v1(
            block,
            kind,
            inflate.iter().copied(),
            deflate.iter().copied(),
        )?;
        self.page_word(PageAddr { block, offset: 0 }, RamFlags::X200, None, s)?;
        write_v1_header(kind, inflate.len(), deflate.len(), s)?;
        s.put(&RunList::to_wire(inflate));
        s.put(&RunList::to_wire(deflate));
        Ok(())
    }

    fn check_v1(
        &self,
        block: usize,
        kind: BalloonMapKind,
        inflate: impl Iterator<Item = PageRun> + Clone,
        deflate: impl Iterator<Item = PageRun> + Clone,
    ) -> Result<(), Error> {
        let used = *self
            .block_lengths
            .get(block)
            .ok_or_else(|| enc_err(format!("block index {block} not announced")))?;
        let pages = used >> self.page_bits;
        if kind == BalloonMapKind::FullMap && deflate.clone().next().is_some() {
            return Err(enc_err("a full-map record has no deflate runs"));
        }
        check_for_encode(inflate.clone(), pages)?;
        check_for_encode(deflate.clone(), pages)?;
        if let Some(p) = first_common_page(inflate, deflate) {
            return Err(enc_err(format!("page {p} both inflated and deflated")));
        }
        Ok(())
    }

    /// A kolhe-2016 record exactly as given (SPEC.md §9.6).
    pub fn kolhe_balloon<'a>(
        &mut self,
        rec: &KolheBalloon<'a>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        s.put(&RamFlags::X200.bits().to_be_bytes());
        match rec {
            KolheBalloon::Disabled => s.put(&KOLHE_BALLOON_DISABLE.to_be_bytes()),
            KolheBalloon::Bitmap(b) => {
                if b.start > b.limit || b.limit > b.bitmap_pages {
                    return Err(enc_err("kolhe-2016 needs start <= limit <= bitmap size"));
                }
                check_for_encode(b.runs.iter(), b.bitmap_pages)?;
                s.put(&b.bitmap_pages.to_be_bytes());
                s.put(&b.start.to_be_bytes());
                s.put(&b.limit.to_be_bytes());
                s.put_payload(b.runs.as_bytes());
                if b.terminated {
                    s.put(&b.bitmap_pages.to_be_bytes());
                    s.put(&0u64.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    /// A kolhe-2016 record as the 2016 patch's `qemu_balloon_bitmap_save` writes it for the
    /// ballooned `runs` (global 4 KiB pages, sorted, the whole map) over `[start, limit)`:
    /// maximal runs from `start` while the position is below `limit`, a run clipped at its
    /// front to `start` but not at its end, and the `(bitmap_pages, 0)` terminator when no
    /// ballooned page remains (SPEC.md §9.6).
    pub fn kolhe_balloon_from_runs<'a>(
        &mut self,
        bitmap_pages: u64,
        start: u64,
        limit: u64,
        runs: &[PageRun],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        if start > limit || limit > bitmap_pages {
            return Err(enc_err("kolhe-2016 needs start <= limit <= bitmap size"));
        }
        check_for_encode(runs.iter().copied(), bitmap_pages)?;
        s.put(&RamFlags::X200.bits().to_be_bytes());
        s.put(&bitmap_pages.to_be_bytes());
        s.put(&start.to_be_bytes());
        s.put(&limit.to_be_bytes());
        let mut pos = start;
        let mut i = runs.partition_point(|r| r.end() <= pos);
        while pos < limit {
            let Some(r) = runs.get(i) else {
                s.put(&bitmap_pages.to_be_bytes());
                s.put(&0u64.to_be_bytes());
                break;
            };
            let from = r.start.max(pos);
            s.put(&from.to_be_bytes());
            s.put(&(r.end() - from).to_be_bytes());
            pos = r.end();
            i += 1;
        }
        Ok(())
    }

    /// Writes a decoded balloon record back, byte for byte (CONTINUE as the record says).
    pub(crate) fn balloon_record<'a>(
        &mut self,
        rec: &BalloonRecord<'a>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        match rec {
            BalloonRecord::Kolhe(k) => self.kolhe_balloon(k, s),
            BalloonRecord::V1(v) => {
                self.check_v1(v.block, v.kind, v.inflate.iter(), v.deflate.iter())?;
                self.page_word(
                    PageAddr {
                        block: v.block,
                        offset: 0,
                    },
                    RamFlags::X200,
                    Some(v.continued),
                    s,
                )?;
                write_v1_header(v.kind, v.inflate.len(), v.deflate.len(), s)?;
                s.put_payload(v.inflate.as_bytes());
                s.put_payload(v.deflate.as_bytes());
                Ok(())
            }
        }
    }
}

fn write_v1_header<'a>(
    kind: BalloonMapKind,
    n_inflate: usize,
    n_deflate: usize,
    s: &mut impl Sink<'a>,
) -> Result<(), Error> {
    let count = |n: usize| u32::try_from(n).map_err(|_| enc_err("more than 2^32-1 runs"));
    s.put(&[BALLOON_V1_VERSION, kind.wire()]);
    s.put(&count(n_inflate)?.to_be_bytes());
    s.put(&count(n_deflate)?.to_be_bytes());
    Ok(())
}
