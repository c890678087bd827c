//! Parsing balloon records (SPEC.md §9).

use crate::balloon::BalloonRecord;
use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::RecordKind;
use crate::ram::record::RecordContext;

/// Parses a balloon record after its word.
pub(crate) fn parse<'a>(
    _c: &mut Cursor<'a>,
    cx: &RecordContext<'_>,
    at: u64,
    _word: u64,
) -> PResult<BalloonRecord<'a>> {
    Err(Error::new(
        at,
        ErrorKind::DialectRejects {
            dialect: cx.opts.dialect,
            reason: "balloon records are not decoded yet",
        },
    )
    .in_record(RecordKind::Balloon)
    .into())
}
