//! The 28-byte header after each MEM_SIZE block entry of a mapped-ram file, its checks, and
//! the seek past the block's regions (SPEC.md §7.9).

use ramstream_spec::mapped_ram::{bitmap_len, HEADER_LEN, HEADER_VERSION};

use crate::cursor::{Cursor, PResult, Stop};
use crate::error::{Error, ErrorKind};
use crate::kind::{MappedRamRegion, RecordKind};

/// The mapped-ram header QEMU writes after a MEM_SIZE block entry (`MappedRamHeader`,
/// `migration/ram.c` `mapped_ram_setup_ramblock()`), with the file offset it was read at.
///
/// Offsets are absolute file offsets. An ignored block of a stream with `x-ignore-shared`
/// (QEMU 11.0+) has `bitmap_offset == pages_offset == 0` and no regions
/// ([`MappedRamHeader::skips_block`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MappedRamHeader {
    /// File offset of the header's first byte.
    pub offset: u64,
    /// `be32 version`: 1 (QEMU 9.0 to 11.1).
    pub version: u32,
    /// `be64 page_size`: the target page size.
    pub page_size: u64,
    /// `be64 bitmap_offset`: file offset of the block's bitmap.
    pub bitmap_offset: u64,
    /// `be64 pages_offset`: file offset of the block's page 0.
    pub pages_offset: u64,
}

impl MappedRamHeader {
    /// File offset just after the header.
    pub fn end(&self) -> u64 {
        self.offset + HEADER_LEN as u64
    }

    /// Whether the header marks a block that `x-ignore-shared` leaves out (QEMU 11.0+: both
    /// offsets 0, no regions, no seek). The decoder accepts such a header only when the
    /// stream has `x-ignore-shared`.
    pub fn skips_block(&self) -> bool {
        self.bitmap_offset == 0 && self.pages_offset == 0
    }

    /// Where the stream goes on after this block: `pages_offset + used_length` (the seek
    /// QEMU does after the header), or just after the header for an ignored block. `None`
    /// when the sum overflows.
    pub fn next_entry(&self, used_length: u64) -> Option<u64> {
        if self.skips_block() {
            Some(self.end())
        } else {
            self.pages_offset.checked_add(used_length)
        }
    }
}

fn err(at: u64, block: &str, kind: ErrorKind) -> Stop {
    Error::new(at, kind)
        .in_record(RecordKind::MemSize)
        .in_block(block)
        .into()
}

/// Reads the 28 header bytes at the cursor (no checks yet). With the whole input given
/// (`input_complete`), a short header is `MappedRamHeaderTruncated`, as QEMU's "Could not
/// read whole mapped-ram migration header".
pub(crate) fn read(
    c: &mut Cursor<'_>,
    block: &str,
    input_complete: bool,
) -> PResult<MappedRamHeader> {
    let offset = c.offset();
    if input_complete && !c.has(HEADER_LEN) {
        let got = c.rest().len();
        return Err(err(
            offset,
            block,
            ErrorKind::MappedRamHeaderTruncated { got },
        ));
    }
    Ok(MappedRamHeader {
        offset,
        version: c.u32()?,
        page_size: c.u64()?,
        bitmap_offset: c.u64()?,
        pages_offset: c.u64()?,
    })
}

/// Checks a header against its block (SPEC.md §7.9), in QEMU's order where QEMU checks:
/// version, then (ramstream) the page size, the ignored-block form, the pages alignment,
/// then (ramstream) that the bitmap lies after the header and the pages after the bitmap.
pub(crate) fn check(
    h: &MappedRamHeader,
    block: &str,
    used_length: u64,
    page_size: u64,
    ignore_shared: bool,
) -> PResult<()> {
    let at = h.offset;
    if h.version > HEADER_VERSION {
        return Err(err(
            at,
            block,
            ErrorKind::MappedRamVersion { version: h.version },
        ));
    }
    if h.page_size != page_size {
        return Err(err(
            at,
            block,
            ErrorKind::MappedRamPageSize {
                page_size: h.page_size,
                expected: page_size,
            },
        ));
    }
    if ignore_shared && h.skips_block() {
        return Ok(());
    }
    if !h.pages_offset.is_multiple_of(page_size) {
        return Err(err(
            at,
            block,
            ErrorKind::MappedRamPagesUnaligned {
                pages_offset: h.pages_offset,
                page_size,
            },
        ));
    }
    if h.bitmap_offset < h.end() {
        return Err(err(
            at,
            block,
            ErrorKind::MappedRamRegionOrder {
                region: MappedRamRegion::Bitmap,
                start: h.bitmap_offset,
                previous_end: h.end(),
            },
        ));
    }
    let bitmap_end = h
        .bitmap_offset
        .saturating_add(bitmap_len(used_length / page_size));
    if bitmap_end > h.pages_offset {
        return Err(err(
            at,
            block,
            ErrorKind::MappedRamRegionOrder {
                region: MappedRamRegion::Pages,
                start: h.pages_offset,
                previous_end: bitmap_end,
            },
        ));
    }
    Ok(())
}

/// Consumes the block's regions, from the end of its (checked) header up to the next block
/// entry: the seek QEMU's writer does. With the whole input given, a region ending past it
/// is `MappedRamRegionBeyondEnd`; otherwise short input is "need more".
pub(crate) fn skip_regions(
    c: &mut Cursor<'_>,
    h: &MappedRamHeader,
    block: &str,
    used_length: u64,
    page_size: u64,
    input_complete: bool,
) -> PResult<()> {
    let here = c.offset();
    let input_end = here.saturating_add(c.rest().len() as u64);
    let beyond = |region, end| {
        err(
            h.offset,
            block,
            ErrorKind::MappedRamRegionBeyondEnd {
                region,
                end,
                input_end,
            },
        )
    };
    let Some(next) = h.next_entry(used_length) else {
        return Err(beyond(MappedRamRegion::Pages, u64::MAX));
    };
    // `check` made sure header end <= bitmap <= pages, so the seek goes forward.
    let skip = usize::try_from(next - here).map_err(|_| beyond(MappedRamRegion::Pages, next))?;
    if !c.has(skip) {
        if !input_complete {
            return Err(Stop::Incomplete(skip - c.rest().len()));
        }
        let bitmap_end = h
            .bitmap_offset
            .saturating_add(bitmap_len(used_length / page_size));
        return Err(if bitmap_end > input_end {
            beyond(MappedRamRegion::Bitmap, bitmap_end)
        } else {
            beyond(MappedRamRegion::Pages, next)
        });
    }
    c.take(skip)?;
    Ok(())
}
