//! Parsing and writing balloon records (SPEC.md §9.4–§9.6).
//!
//! The `ram` record dispatcher reads the record word and hands flag 0x200 here, with a
//! [`BalloonContext`]. For writing, the encoder writes a v1 record's word and idstr (with the
//! CONTINUE state it shares with page records) and the functions below check and write the
//! rest; a kolhe-2016 record names no block, so they write it whole.

use ramstream_spec::extension::{
    BALLOON_RUN_LEN, BALLOON_V1_VERSION, KOLHE_BALLOON_DISABLE, KOLHE_BALLOON_PAGE_SHIFT,
};
use ramstream_spec::ram::{split_record_word, RamFlags};
use ramstream_spec::Dialect;

use super::{
    check_runs, first_common_page, kolhe_is_unchanged, BalloonMapKind, BalloonRecord,
    BalloonRunsV1, KolheBalloon, KolheBitmap, PageRun, RunError, RunList,
};
use crate::cursor::{Cursor, PResult, Stop};
use crate::error::{Error, ErrorKind};
use crate::kind::RecordKind;
use crate::ram::RamState;
use crate::sink::Sink;

/// What a balloon record parse needs to know besides the input: the stream so far, as the
/// `ram` record dispatcher holds it.
pub(crate) struct BalloonContext<'s> {
    /// The current MEM_SIZE block list and the CONTINUE state shared with page records.
    pub ram: &'s RamState,
    /// The target page bits in force.
    pub page_bits: u32,
    /// Which writer's meaning of flag 0x200 is in force: kolhe-2016 or ramstream-balloon-v1.
    pub dialect: Dialect,
    /// The most runs one record may carry (`Limits::max_balloon_runs`).
    pub max_runs: u64,
    /// Whether the stream announced the ramstream balloon extension.
    pub v1_announced: bool,
}

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
    cx: &BalloonContext<'_>,
    at: u64,
    word: u64,
) -> PResult<BalloonRecord<'a>> {
    match cx.dialect {
        Dialect::Kolhe2016 => parse_kolhe(c, cx, at, word).map(BalloonRecord::Kolhe),
        _ => parse_v1(c, cx, at, word).map(BalloonRecord::V1),
    }
}

/// A ramstream balloon v1 record (SPEC.md §9.4, §9.5).
fn parse_v1<'a>(
    c: &mut Cursor<'a>,
    cx: &BalloonContext<'_>,
    at: u64,
    word: u64,
) -> PResult<BalloonRunsV1<'a>> {
    if !cx.v1_announced {
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
    let block = cx
        .ram
        .resolve_block(c, at, continued, RecordKind::Balloon)?;
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
    let limit = cx.max_runs;
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
fn kolhe_ram_pages(used_lengths: impl Iterator<Item = u64>) -> u64 {
    used_lengths.fold(0u64, |a, l| a.saturating_add(l >> KOLHE_BALLOON_PAGE_SHIFT))
}

/// The bitmap size check (SPEC.md §9.6): `qemu_balloon_bitmap_save` writes
/// `balloon_bitmap_pages`, which starts as `last_ram_offset() >> 12` and only grows
/// (`qemu_balloon_bitmap_extend`). `ram_addr` space counts every block's `max_length` (the
/// resizable ACPI ROMs reserve far more than they use) and any gap, so the size is at least
/// the MEM_SIZE total of used lengths, and above it on any machine with a resizable block.
fn kolhe_size_error(bitmap_pages: u64, ram_pages: u64) -> Option<ErrorKind> {
    (bitmap_pages < ram_pages).then_some(ErrorKind::KolheBitmapSize {
        bitmap_pages,
        ram_pages,
    })
}

/// The `start`/`limit` checks (SPEC.md §9.6): which field is wrong (0 start, 1 limit) and why.
/// The writer's first transfer is `[0, size)`; a later one is `[min, max]` of the pages
/// touched since the previous transfer (`min ≤ max < size`), or the unchanged header.
fn kolhe_range_error(bitmap_pages: u64, start: u64, limit: u64) -> Option<(u64, ErrorKind)> {
    if start > limit && !kolhe_is_unchanged(bitmap_pages, start, limit) {
        return Some((0, ErrorKind::KolheStartAfterLimit { start, limit }));
    }
    if limit > bitmap_pages {
        return Some((
            1,
            ErrorKind::KolheLimitBeyondBitmap {
                limit,
                bitmap_pages,
            },
        ));
    }
    None
}

/// The checks of one pair with `run_len ≠ 0` read at running position `pos` (SPEC.md §9.6):
/// the writer finds each run with `find_next_bit` from `pos` and ends it with
/// `find_next_zero_bit`, both bounded by the bitmap size, so a run is non-empty, starts at or
/// after `pos`, after the first never exactly at `pos` (the bit there is clear), and ends
/// within the bitmap.
fn kolhe_run_error(run: PageRun, pos: u64, first: bool, bitmap_pages: u64) -> Option<ErrorKind> {
    if run.count == 0 {
        return Some(ErrorKind::BalloonEmptyRun { start: run.start });
    }
    if run.start < pos {
        return Some(ErrorKind::BalloonRunOrder {
            start: run.start,
            previous_end: pos,
        });
    }
    if !first && run.start == pos {
        return Some(ErrorKind::BalloonRunsAdjacent { start: run.start });
    }
    match run.start.checked_add(run.count) {
        Some(e) if e <= bitmap_pages => None,
        _ => Some(ErrorKind::BalloonRunOutOfRange {
            start: run.start,
            count: run.count,
            pages: bitmap_pages,
        }),
    }
}

/// The 2016 patch's `qemu_balloon_bitmap_load` payload (SPEC.md §9.6).
fn parse_kolhe<'a>(
    c: &mut Cursor<'a>,
    cx: &BalloonContext<'_>,
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
    if let Some(k) = kolhe_size_error(bitmap_pages, ram_pages) {
        return Err(err(size_at, k).into());
    }
    let start_at = c.offset();
    let start = c.u64()?;
    let limit = c.u64()?;
    if let Some((field, k)) = kolhe_range_error(bitmap_pages, start, limit) {
        return Err(err(start_at + 8 * field, k).into());
    }
    // The loader's loop: pairs while the running position is below the limit; a pair of
    // length 0 ends it early. (The unchanged header has limit 0: no pair.)
    let runs_from = c.rest();
    let max_runs = cx.max_runs;
    let mut pos = start;
    let mut n: u64 = 0;
    let mut terminated = false;
    while pos < limit {
        let pair_at = c.offset();
        let run = PageRun::new(c.u64()?, c.u64()?);
        if run.count == 0 {
            // The writer's terminator: `find_next_bit` found no set bit before the size.
            if run.start != bitmap_pages {
                return Err(err(
                    pair_at,
                    ErrorKind::KolheTerminator {
                        start: run.start,
                        bitmap_pages,
                    },
                )
                .into());
            }
            terminated = true;
            break;
        }
        if let Some(k) = kolhe_run_error(run, pos, n == 0, bitmap_pages) {
            return Err(err(pair_at, k).into());
        }
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
        pos = run.end();
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

/// How many runs one v1 record may carry for a reader whose `Limits::max_balloon_runs` is
/// `max_runs` (SPEC.md §9.5 rule 5). Fails when that leaves no room for any of `total` runs.
pub(crate) fn v1_runs_per_record(max_runs: u64, total: usize) -> Result<usize, Error> {
    // Each list's count is a be32, so no record carries more than 2^32 - 1 of either.
    let per = usize::try_from(max_runs)
        .unwrap_or(usize::MAX)
        .min(u32::MAX as usize);
    if per == 0 && total > 0 {
        return Err(enc_err(
            "a balloon record limit of 0 runs leaves no room for any",
        ));
    }
    Ok(per)
}

/// The checks the decoder makes of a v1 record for `block` (SPEC.md §9.4, §9.5), against
/// the used lengths of the announced MEM_SIZE blocks and the target page bits.
pub(crate) fn check_v1(
    used_lengths: &[u64],
    page_bits: u32,
    block: usize,
    kind: BalloonMapKind,
    inflate: impl Iterator<Item = PageRun> + Clone,
    deflate: impl Iterator<Item = PageRun> + Clone,
) -> Result<(), Error> {
    let used = *used_lengths
        .get(block)
        .ok_or_else(|| enc_err(format!("block index {block} not announced")))?;
    let pages = used >> page_bits;
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

/// A v1 record after its word and idstr (SPEC.md §9.4): version, kind, counts, then the
/// runs, formatted from `inflate` and `deflate`.
pub(crate) fn write_v1<'a>(
    kind: BalloonMapKind,
    inflate: &[PageRun],
    deflate: &[PageRun],
    s: &mut impl Sink<'a>,
) -> Result<(), Error> {
    write_v1_header(kind, inflate.len(), deflate.len(), s)?;
    s.put(&RunList::to_wire(inflate));
    s.put(&RunList::to_wire(deflate));
    Ok(())
}

/// A decoded v1 record after its word and idstr, byte for byte, its runs referenced as
/// payloads.
pub(crate) fn write_v1_record<'a>(
    v: &BalloonRunsV1<'a>,
    s: &mut impl Sink<'a>,
) -> Result<(), Error> {
    write_v1_header(v.kind, v.inflate.len(), v.deflate.len(), s)?;
    s.put_payload(v.inflate.as_bytes());
    s.put_payload(v.deflate.as_bytes());
    Ok(())
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

/// The kolhe-2016 header checks the decoder makes, against the used lengths of the
/// announced MEM_SIZE blocks.
fn check_kolhe_header(
    used_lengths: &[u64],
    bitmap_pages: u64,
    start: u64,
    limit: u64,
) -> Result<(), Error> {
    if used_lengths.is_empty() {
        return Err(enc_err("a kolhe-2016 record before MEM_SIZE"));
    }
    if bitmap_pages == KOLHE_BALLOON_DISABLE {
        return Err(enc_err(
            "a kolhe-2016 bitmap of 2^64 - 1 pages reads as the DISABLE marker",
        ));
    }
    let ram_pages = kolhe_ram_pages(used_lengths.iter().copied());
    let e = kolhe_size_error(bitmap_pages, ram_pages)
        .or_else(|| kolhe_range_error(bitmap_pages, start, limit).map(|(_, k)| k));
    match e {
        Some(k) => Err(enc_err(k.to_string())),
        None => Ok(()),
    }
}

/// A whole kolhe-2016 record exactly as given, record word included (it names no block, so
/// it shares no state with page records) (SPEC.md §9.6): the checks of SPEC.md §9.6 against
/// the used lengths of the announced MEM_SIZE blocks, then pairs exactly as the loader's loop
/// reads them. Writes nothing on error.
pub(crate) fn write_kolhe<'a>(
    used_lengths: &[u64],
    rec: &KolheBalloon<'a>,
    s: &mut impl Sink<'a>,
) -> Result<(), Error> {
    let b = match rec {
        KolheBalloon::Disabled => {
            if used_lengths.is_empty() {
                return Err(enc_err("a kolhe-2016 record before MEM_SIZE"));
            }
            s.put(&RamFlags::X200.bits().to_be_bytes());
            s.put(&KOLHE_BALLOON_DISABLE.to_be_bytes());
            return Ok(());
        }
        KolheBalloon::Bitmap(b) => b,
    };
    check_kolhe_header(used_lengths, b.bitmap_pages, b.start, b.limit)?;
    let mut pos = b.start;
    for (i, r) in b.runs.iter().enumerate() {
        if pos >= b.limit {
            return Err(enc_err(format!(
                "run {i}: the loader stops at position {pos} (limit {}) before it",
                b.limit
            )));
        }
        if let Some(k) = kolhe_run_error(r, pos, i == 0, b.bitmap_pages) {
            return Err(enc_err(format!("run {i}: {k}")));
        }
        pos = r.end();
    }
    if b.terminated && pos >= b.limit {
        return Err(enc_err(
            "the loader stops before the terminator (position at or past the limit)",
        ));
    }
    if !b.terminated && pos < b.limit {
        return Err(enc_err(format!(
            "the loader reads another pair at position {pos} (limit {}): a terminator is missing",
            b.limit
        )));
    }
    s.put(&RamFlags::X200.bits().to_be_bytes());
    s.put(&b.bitmap_pages.to_be_bytes());
    s.put(&b.start.to_be_bytes());
    s.put(&b.limit.to_be_bytes());
    s.put_payload(b.runs.as_bytes());
    if b.terminated {
        s.put(&b.bitmap_pages.to_be_bytes());
        s.put(&0u64.to_be_bytes());
    }
    Ok(())
}

/// A whole kolhe-2016 record as the 2016 patch's `qemu_balloon_bitmap_save` writes it for
/// the ballooned `runs` over `[start, limit)` (SPEC.md §9.6), checked against the used
/// lengths of the announced MEM_SIZE blocks. Writes nothing on error.
pub(crate) fn write_kolhe_from_runs<'a>(
    used_lengths: &[u64],
    bitmap_pages: u64,
    start: u64,
    limit: u64,
    runs: &[PageRun],
    s: &mut impl Sink<'a>,
) -> Result<(), Error> {
    check_kolhe_header(used_lengths, bitmap_pages, start, limit)?;
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
