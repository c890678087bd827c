//! One `ram` record: the record word, block resolution and payload (SPEC.md §6–§7).

use ramstream_spec::mapped_ram;
use ramstream_spec::ram::{split_record_word, RamFlags};
use ramstream_spec::xbzrle::ENCODING_FLAG_XBZRLE;
use ramstream_spec::Dialect;

use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::{BareRecord, Event, PageAddr, PageRecord, RecordKind, XbzrleDelta, ZeroPage};
use crate::options::{DecoderOptions, ZeroFill};
use crate::ram::mem_size::{self, MemSizeFields};
use crate::ram::RamState;

/// Everything a record parse needs to know besides the input.
pub(crate) struct RecordContext<'s> {
    pub ram: &'s RamState,
    pub opts: &'s DecoderOptions,
    pub page_bits: u32,
    pub mem_size_fields: MemSizeFields,
    /// Whether the stream announced the ramstream balloon extension.
    #[allow(dead_code)]
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
        let index = if continued {
            cx.ram
                .last_block
                .ok_or_else(|| fail(ErrorKind::ContinueWithoutBlock))?
        } else {
            let name_at = c.offset();
            let name = c.counted_str("RAM block idstr")?;
            *cx.ram.index.get(name).ok_or_else(|| {
                Error::new(name_at, ErrorKind::UnknownBlock { idstr: name.into() })
                    .in_record(kind)
                    .in_block(name)
            })?
        };
        let b = &cx.ram.blocks[index];
        if addr >= b.used_length {
            return Err(fail(ErrorKind::OffsetBeyondBlock {
                offset: addr,
                used_length: b.used_length,
            })
            .in_block(b.idstr.clone())
            .into());
        }
        block = Some((
            PageAddr {
                block: index,
                offset: addr,
            },
            continued,
            b.idstr.as_str(),
        ));
    }

    let primary = flags.without(RamFlags::CONTINUE);
    match (primary, block) {
        (RamFlags::PAGE, Some((addr, continued, _))) => {
            let data = c.take(page_size)?;
            Ok(Event::Page(PageRecord {
                addr,
                continued,
                data,
            }))
        }
        (RamFlags::ZERO, Some((addr, continued, name))) => {
            let fill = c.u8()?;
            if fill != 0 && cx.opts.zero_fill == ZeroFill::RejectNonZero {
                return Err(fail(ErrorKind::NonZeroFill { fill }).in_block(name).into());
            }
            Ok(Event::Zero(ZeroPage {
                addr,
                continued,
                fill,
            }))
        }
        (RamFlags::XBZRLE, Some((addr, continued, name))) => {
            let enc_at = c.offset();
            let enc = c.u8()?;
            if enc != ENCODING_FLAG_XBZRLE {
                return Err(Error::new(enc_at, ErrorKind::XbzrleEncoding { found: enc })
                    .in_record(kind)
                    .in_block(name)
                    .into());
            }
            let len = c.u16()?;
            if len as usize > page_size {
                return Err(
                    Error::new(enc_at + 1, ErrorKind::XbzrleLength { len, page_size })
                        .in_record(kind)
                        .in_block(name)
                        .into(),
                );
            }
            let delta = c.take(len as usize)?;
            Ok(Event::Xbzrle(XbzrleDelta {
                addr,
                continued,
                delta,
            }))
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
                Some((_, _, name)) => e.in_block(name),
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
        Dialect::Qemu7_2 => Err(Error::new(at, ErrorKind::UnknownFlags { flags })
            .in_record(RecordKind::RamRecord)
            .into()),
        Dialect::Qemu | Dialect::Qemu8_1 => Ok(Event::MultifdFlush(BareRecord { word })),
        Dialect::Kolhe2016 | Dialect::RamstreamBalloonV1 => {
            crate::balloon::wire::parse(c, cx, at, word).map(Event::Balloon)
        }
    }
}
