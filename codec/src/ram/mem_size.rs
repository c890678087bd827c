//! MEM_SIZE: the RAM block list (SPEC.md §7.1).

use std::collections::HashSet;

use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::{MemSize, RamBlock, RecordKind};
use crate::options::Limits;

/// Which optional per-block fields follow each used length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemSizeFields {
    pub page_size: bool,
    pub mr_addr: bool,
}

fn err(at: u64, kind: ErrorKind) -> Error {
    Error::new(at, kind).in_record(RecordKind::MemSize)
}

/// Parses the block list after a MEM_SIZE word announcing `total` bytes.
pub(crate) fn parse(
    c: &mut Cursor<'_>,
    word_at: u64,
    word: u64,
    total: u64,
    page_size: u64,
    fields: MemSizeFields,
    limits: &Limits,
) -> PResult<MemSize> {
    if total > limits.max_ram_total {
        return Err(err(
            word_at,
            ErrorKind::RamTotalTooLarge {
                total,
                limit: limits.max_ram_total,
            },
        )
        .into());
    }
    let mut blocks = Vec::new();
    let mut seen = HashSet::new();
    let mut sum = 0u64;
    while sum < total {
        if blocks.len() >= limits.max_ram_blocks {
            return Err(err(
                c.offset(),
                ErrorKind::TooManyBlocks {
                    limit: limits.max_ram_blocks,
                },
            )
            .into());
        }
        let block_at = c.offset();
        let idstr = c.counted_str("RAM block idstr")?;
        let used_length = c.u64()?;
        let page_size_field = if fields.page_size {
            Some(c.u64()?)
        } else {
            None
        };
        let mr_addr = if fields.mr_addr { Some(c.u64()?) } else { None };
        if used_length == 0 || used_length % page_size != 0 {
            return Err(err(block_at, ErrorKind::BadUsedLength { used_length })
                .in_block(idstr)
                .into());
        }
        if !seen.insert(idstr) {
            return Err(err(
                block_at,
                ErrorKind::DuplicateBlock {
                    idstr: idstr.into(),
                },
            )
            .into());
        }
        sum = sum.saturating_add(used_length);
        if sum > total {
            return Err(err(word_at, ErrorKind::MemSizeMismatch { total, sum })
                .in_block(idstr)
                .into());
        }
        blocks.push(RamBlock {
            idstr: idstr.to_string(),
            used_length,
            page_size: page_size_field,
            mr_addr,
        });
    }
    Ok(MemSize { word, blocks })
}
