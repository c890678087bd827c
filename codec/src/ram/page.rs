//! PAGE, ZERO and XBZRLE records: one target page each, at a block and offset the record word
//! and idstr named (SPEC.md §7.3, §7.4, §7.6.1).

use ramstream_spec::xbzrle::ENCODING_FLAG_XBZRLE;

use crate::addr::PageAddr;
use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::kind::RecordKind;
use crate::options::ZeroFill;

/// A PAGE record: one raw target page (SPEC.md §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRecord<'a> {
    /// Where the page lands.
    pub addr: PageAddr,
    /// Whether the record used CONTINUE (no idstr on the wire).
    pub continued: bool,
    /// The page bytes, borrowed from the input.
    pub data: &'a [u8],
}

/// A ZERO record: a page filled with one byte (SPEC.md §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroPage {
    /// Where the page lands.
    pub addr: PageAddr,
    /// Whether the record used CONTINUE.
    pub continued: bool,
    /// The fill byte (0 from every QEMU since 1.5).
    pub fill: u8,
}

/// An XBZRLE record: a delta against the page the destination holds (SPEC.md §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XbzrleDelta<'a> {
    /// Where the page lands.
    pub addr: PageAddr,
    /// Whether the record used CONTINUE.
    pub continued: bool,
    /// The encoded delta, borrowed from the input.
    pub delta: &'a [u8],
}

/// A page record's word and block, as the dispatcher resolved them (SPEC.md §6.4 steps
/// 1–4): what the payload parsers below need besides the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageHead<'n> {
    /// The stream offset of the record word.
    pub at: u64,
    /// Where the page lands (offset checked against the block's used length).
    pub addr: PageAddr,
    /// Whether the record word carried CONTINUE.
    pub continued: bool,
    /// The block's idstr, for errors.
    pub block: &'n str,
}

/// A PAGE record's payload: one target page of `page_size` bytes, borrowed.
pub(crate) fn parse_page<'a>(
    c: &mut Cursor<'a>,
    head: &PageHead<'_>,
    page_size: usize,
) -> PResult<PageRecord<'a>> {
    let data = c.take(page_size)?;
    Ok(PageRecord {
        addr: head.addr,
        continued: head.continued,
        data,
    })
}

/// A ZERO record's payload: the fill byte, refused unless 0 when `zero_fill` says so.
pub(crate) fn parse_zero(
    c: &mut Cursor<'_>,
    head: &PageHead<'_>,
    zero_fill: ZeroFill,
) -> PResult<ZeroPage> {
    let fill = c.u8()?;
    if fill != 0 && zero_fill == ZeroFill::RejectNonZero {
        return Err(Error::new(head.at, ErrorKind::NonZeroFill { fill })
            .in_record(RecordKind::Zero)
            .in_block(head.block)
            .into());
    }
    Ok(ZeroPage {
        addr: head.addr,
        continued: head.continued,
        fill,
    })
}

/// An XBZRLE record's payload: encoding byte (checked before the length is read), be16
/// length of at most a page, then the delta, borrowed and not decoded (SPEC.md §7.6.3).
pub(crate) fn parse_xbzrle<'a>(
    c: &mut Cursor<'a>,
    head: &PageHead<'_>,
    page_size: usize,
) -> PResult<XbzrleDelta<'a>> {
    let fail = |at: u64, kind: ErrorKind| {
        Error::new(at, kind)
            .in_record(RecordKind::Xbzrle)
            .in_block(head.block)
    };
    let enc_at = c.offset();
    let enc = c.u8()?;
    if enc != ENCODING_FLAG_XBZRLE {
        return Err(fail(enc_at, ErrorKind::XbzrleEncoding { found: enc }).into());
    }
    let len = c.u16()?;
    if len as usize > page_size {
        return Err(fail(enc_at + 1, ErrorKind::XbzrleLength { len, page_size }).into());
    }
    let delta = c.take(len as usize)?;
    Ok(XbzrleDelta {
        addr: head.addr,
        continued: head.continued,
        delta,
    })
}
