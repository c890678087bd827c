//! One `ram` record: the record word, its checks in QEMU's order, block resolution, then
//! the family that reads the payload (SPEC.md §6.4): [`crate::ram`] for MEM_SIZE, page
//! records, EOS; for flag 0x200 the dialect's reading (SPEC.md §9.1), [`crate::balloon`] for
//! the balloon dialects.

use ramstream_spec::mapped_ram;
use ramstream_spec::ram::{split_record_word, RamFlags};
use ramstream_spec::Dialect;

use crate::addr::PageAddr;
use crate::balloon::wire::{self as balloon_wire, BalloonContext};
use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::kind::RecordKind;
use crate::options::DecoderOptions;
use crate::ram::mem_size::{self, MemSizeFields};
use crate::ram::page::{self, PageHead};
use crate::ram::{BareRecord, RamState};

/// Everything a record parse needs to know besides the input.
pub(crate) struct RecordContext<'s> {
    pub ram: &'s RamState,
    pub opts: &'s DecoderOptions,
    pub page_bits: u32,
    pub mem_size_fields: MemSizeFields,
    /// Whether the stream announced the ramstream balloon extension.
    pub balloon_v1_announced: bool,
}

fn kind_of(flags: RamFlags) -> RecordKind {
    let primary = flags.without(RamFlags::CONTINUE);
    if primary == RamFlags::PAGE {
        RecordKind::Page
    } else if primary == RamFlags::ZERO {
        RecordKind::Zero
    } else if primary == RamFlags::XBZRLE {
        RecordKind::Xbzrle
    } else if primary == RamFlags::MEM_SIZE {
        RecordKind::MemSize
    } else if primary == RamFlags::EOS {
        RecordKind::Eos
    } else {
        RecordKind::RamRecord
    }
}

/// Parses one record of a `ram` section part.
pub(crate) fn parse<'a>(c: &mut Cursor<'a>, cx: &RecordContext<'_>) -> PResult<Event<'a>> {
    let at = c.offset();
    let word = c.u64()?;
    let (addr, flags) = split_record_word(word, cx.page_bits);
    let page_size = 1usize << cx.page_bits;
    let kind = kind_of(flags);
    let fail = |k: ErrorKind| Error::new(at, k).in_record(kind);

    // QEMU 7.2 checks the flags it never accepts before anything else.
    if flags.contains(RamFlags::COMPRESS_PAGE) {
        return Err(fail(ErrorKind::UnexpectedCompressedPage).into());
    }
    // A mapped-ram loader refuses every record that would carry or announce pages
    // ("Unexpected RAM flags"): the pages are at file offsets (SPEC.md §7.9).
    if cx.mem_size_fields.mapped_ram && flags.intersects(mapped_ram::INVALID_FLAGS) {
        let flags = flags & mapped_ram::INVALID_FLAGS;
        return Err(fail(ErrorKind::MappedRamRecord { flags }).into());
    }

    // Page records resolve their block first (reading the idstr), then check the offset.
    let mut block = None;
    if flags.is_page_record() {
        let continued = flags.contains(RamFlags::CONTINUE);
        let index = cx.ram.resolve_block(c, at, continued, kind)?;
        let b = &cx.ram.blocks[index];
        if addr >= b.used_length {
            return Err(fail(ErrorKind::OffsetBeyondBlock {
                offset: addr,
                used_length: b.used_length,
            })
            .in_block(b.idstr.clone())
            .into());
        }
        block = Some(PageHead {
            at,
            addr: PageAddr {
                block: index,
                offset: addr,
            },
            continued,
            block: b.idstr.as_str(),
        });
    }

    let primary = flags.without(RamFlags::CONTINUE);
    match (primary, block) {
        (RamFlags::PAGE, Some(head)) => page::parse_page(c, &head, page_size).map(Event::Page),
        (RamFlags::ZERO, Some(head)) => {
            page::parse_zero(c, &head, cx.opts.zero_fill).map(Event::Zero)
        }
        (RamFlags::XBZRLE, Some(head)) => {
            page::parse_xbzrle(c, &head, page_size).map(Event::Xbzrle)
        }
        (RamFlags::MEM_SIZE, None) => {
            let ms = mem_size::parse(
                c,
                at,
                word,
                addr,
                page_size as u64,
                cx.mem_size_fields,
                &cx.opts.limits,
            )?;
            Ok(Event::MemSize(ms))
        }
        (RamFlags::EOS, None) => Ok(Event::Eos(BareRecord { word })),
        (RamFlags::X200, None) => parse_x200(c, cx, at, word),
        (p, _) if p.contains(RamFlags::HOOK) => Err(fail(ErrorKind::RdmaHook).into()),
        _ => {
            let e = fail(ErrorKind::UnknownFlags { flags });
            Err(match block {
                Some(head) => e.in_block(head.block),
                None => e,
            }
            .into())
        }
    }
}

/// Flag 0x200 alone: its meaning is the dialect's (SPEC.md §9.1).
fn parse_x200<'a>(
    c: &mut Cursor<'a>,
    cx: &RecordContext<'_>,
    at: u64,
    word: u64,
) -> PResult<Event<'a>> {
    let (_, flags) = split_record_word(word, cx.page_bits);
    match cx.opts.dialect {
        Dialect::Qemu | Dialect::Qemu8_1 => Ok(Event::MultifdFlush(BareRecord { word })),
        Dialect::Kolhe2016 | Dialect::RamstreamBalloonV1 => {
            let bx = BalloonContext {
                ram: cx.ram,
                page_bits: cx.page_bits,
                dialect: cx.opts.dialect,
                max_runs: cx.opts.limits.max_balloon_runs,
                v1_announced: cx.balloon_v1_announced,
            };
            balloon_wire::parse(c, &bx, at, word).map(Event::Balloon)
        }
        // qemu-7.2 (and a dialect this codec does not know): 0x200 is no flag.
        _ => Err(Error::new(at, ErrorKind::UnknownFlags { flags })
            .in_record(RecordKind::RamRecord)
            .into()),
    }
}
