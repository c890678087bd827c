//! The `ram` section's record family (SPEC.md §6–§7): MEM_SIZE with its mapped-ram headers,
//! PAGE, ZERO and XBZRLE, EOS and MULTIFD_FLUSH; and the block table the records resolve
//! their block against.
//!
//! Each file reads its record's bytes after the record word and returns its own type; the
//! dispatcher that reads the word and picks the family is `frame::ram_record`.

pub(crate) mod mapped_ram_header;
pub(crate) mod mem_size;
pub(crate) mod page;

use std::collections::HashMap;

pub use self::mapped_ram_header::MappedRamHeader;
pub use self::mem_size::{MemSize, RamBlock};
pub use self::page::{PageRecord, XbzrleDelta, ZeroPage};

use crate::cursor::{Cursor, PResult, Stop};
use crate::error::{Error, ErrorKind};
use crate::kind::RecordKind;

/// A record word without payload (EOS, MULTIFD_FLUSH), kept raw so re-encoding is lossless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BareRecord {
    /// The raw record word (QEMU writes exactly the flag).
    pub word: u64,
}

/// What the `ram` loader remembers across records and sections.
#[derive(Clone, Debug, Default)]
pub(crate) struct RamState {
    /// The current MEM_SIZE block list.
    pub blocks: Vec<RamBlock>,
    /// idstr → index into `blocks`.
    pub index: HashMap<String, usize>,
    /// The block of the last page record (for CONTINUE), across all sections.
    pub last_block: Option<usize>,
}

impl RamState {
    /// Replaces the block list (a MEM_SIZE record). As in QEMU, the block remembered for
    /// CONTINUE stays remembered if it is still listed (SPEC.md §6.5).
    pub fn set_blocks(&mut self, blocks: Vec<RamBlock>) {
        let last = self
            .last_block
            .and_then(|i| self.blocks.get(i))
            .map(|b| b.idstr.clone());
        self.index = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b.idstr.clone(), i))
            .collect();
        self.blocks = blocks;
        self.last_block = last.and_then(|n| self.index.get(&n).copied());
    }

    /// The block a page record or a balloon v1 record names (SPEC.md §6.5, §9.7): with
    /// CONTINUE the remembered one, otherwise the counted idstr at the cursor, looked up in
    /// the current list. Errors are `record`'s: `ContinueWithoutBlock` at the record word
    /// (`at`), `UnknownBlock` at the idstr.
    pub fn resolve_block(
        &self,
        c: &mut Cursor<'_>,
        at: u64,
        continued: bool,
        record: RecordKind,
    ) -> PResult<usize> {
        if continued {
            return self.last_block.ok_or_else(|| {
                Stop::from(Error::new(at, ErrorKind::ContinueWithoutBlock).in_record(record))
            });
        }
        let name_at = c.offset();
        let name = c.counted_str("RAM block idstr")?;
        self.index.get(name).copied().ok_or_else(|| {
            Error::new(name_at, ErrorKind::UnknownBlock { idstr: name.into() })
                .in_record(record)
                .in_block(name)
                .into()
        })
    }
}
