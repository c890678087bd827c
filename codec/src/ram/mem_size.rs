//! MEM_SIZE: the RAM block list (SPEC.md §7.1), with the mapped-ram headers (§7.9).

use std::collections::HashSet;

use super::mapped_ram_header::{self as header, MappedRamHeader};
use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::kind::RecordKind;
use crate::options::Limits;

/// A RAM block as listed by MEM_SIZE (SPEC.md §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamBlock {
    /// The block's idstr, e.g. `pc.ram`.
    pub idstr: String,
    /// Its used length in bytes.
    pub used_length: u64,
    /// The `page_size` field, when present (postcopy-ram, non-host page size).
    pub page_size: Option<u64>,
    /// The `mr_addr` field, when present (x-ignore-shared).
    pub mr_addr: Option<u64>,
}

impl RamBlock {
    /// A block as QEMU lists it without the optional fields: `idstr` of `used_length` bytes.
    ///
    /// ```
    /// let b = ramstream_codec::RamBlock::new("pc.ram", 1 << 20);
    /// assert_eq!((b.idstr.as_str(), b.used_length, b.page_size), ("pc.ram", 1 << 20, None));
    /// ```
    pub fn new(idstr: impl Into<String>, used_length: u64) -> Self {
        RamBlock {
            idstr: idstr.into(),
            used_length,
            page_size: None,
            mr_addr: None,
        }
    }
}

/// A MEM_SIZE record: the RAM block list (SPEC.md §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemSize {
    /// The raw record word: total bytes | flags (CONTINUE may be set; QEMU 7.2 ignores it).
    pub word: u64,
    /// The blocks, in stream order.
    pub blocks: Vec<RamBlock>,
    /// In a mapped-ram file (SPEC.md §7.9), the header after each block entry, in block
    /// order; empty in a stream.
    pub mapped_ram: Vec<MappedRamHeader>,
}

impl MemSize {
    /// The announced total of used lengths.
    pub fn total(&self, page_bits: u32) -> u64 {
        ramstream_spec::ram::split_record_word(self.word, page_bits).0
    }
}

/// Which optional per-block fields follow each used length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemSizeFields {
    pub page_size: bool,
    pub mr_addr: bool,
    /// A mapped-ram header follows each entry, then the block's regions (SPEC.md §7.9).
    pub mapped_ram: bool,
    /// Whether the input given is all there is (a short mapped-ram header or region is
    /// then a typed error rather than "need more").
    pub input_complete: bool,
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
    let mut headers = Vec::new();
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
        let header = if fields.mapped_ram {
            Some(header::read(c, idstr, fields.input_complete)?)
        } else {
            None
        };
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
        if let Some(h) = header {
            header::check(&h, idstr, used_length, page_size, mr_addr.is_some())?;
            header::skip_regions(c, &h, idstr, used_length, page_size, fields.input_complete)?;
            headers.push(h);
        }
        blocks.push(RamBlock {
            idstr: idstr.to_string(),
            used_length,
            page_size: page_size_field,
            mr_addr,
        });
    }
    Ok(MemSize {
        word,
        blocks,
        mapped_ram: headers,
    })
}
