//! The block table a channel's pages resolve against: the main stream's MEM_SIZE list
//! (SPEC.md §7.1, §14.3).

use std::collections::HashMap;

use crate::addr::PageAddr;
use crate::error::ErrorKind;
use crate::ram::RamBlock;

/// The RAM blocks of the main stream's MEM_SIZE record, looked up by idstr: what a multifd
/// packet's `ramblock` field names, and how far its offsets may go (SPEC.md §14.3).
///
/// A channel's pages carry the block's name, not its index; the table turns (name, offset)
/// into the codec's [`PageAddr`] (the index in the MEM_SIZE list), the address every other
/// page event uses.
///
/// ```
/// use ramstream_codec::multifd::BlockTable;
/// use ramstream_codec::{ErrorKind, PageAddr, RamBlock};
/// let block = |idstr: &str, used_length| RamBlock { idstr: idstr.into(), used_length, page_size: None, mr_addr: None };
/// let table = BlockTable::new(&[block("pc.ram", 0x10000), block("pc.bios", 0x4000)]);
/// assert_eq!(table.resolve("pc.bios", 0x3000), Ok(PageAddr { block: 1, offset: 0x3000 }));
/// assert!(matches!(table.resolve("pc.bios", 0x4000), Err(ErrorKind::OffsetBeyondBlock { .. })));
/// assert!(matches!(table.resolve("vga.vram", 0), Err(ErrorKind::UnknownBlock { .. })));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockTable {
    blocks: Vec<(String, u64)>,
    index: HashMap<String, usize>,
}

impl BlockTable {
    /// The table of a MEM_SIZE list, in its order (block `i` is [`PageAddr::block`] `i`).
    /// A repeated idstr (which the decoder refuses in MEM_SIZE) resolves to its first block.
    pub fn new(blocks: &[RamBlock]) -> Self {
        let mut index = HashMap::with_capacity(blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            index.entry(b.idstr.clone()).or_insert(i);
        }
        BlockTable {
            blocks: blocks
                .iter()
                .map(|b| (b.idstr.clone(), b.used_length))
                .collect(),
            index,
        }
    }

    /// How many blocks the table holds.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the table holds no block.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The index of the block named `idstr`.
    pub fn find(&self, idstr: &str) -> Option<usize> {
        self.index.get(idstr).copied()
    }

    /// The idstr of block `block`.
    pub fn idstr(&self, block: usize) -> Option<&str> {
        self.blocks.get(block).map(|(n, _)| n.as_str())
    }

    /// The used length of block `block`.
    pub fn used_length(&self, block: usize) -> Option<u64> {
        self.blocks.get(block).map(|&(_, l)| l)
    }

    /// Where the page at `offset` of the block named `idstr` lands: `UnknownBlock` for a
    /// name the MEM_SIZE list does not hold, `OffsetBeyondBlock` for an offset at or past
    /// the block's used length. The offset's alignment is the caller's to check.
    pub fn resolve(&self, idstr: &str, offset: u64) -> Result<PageAddr, ErrorKind> {
        let block = self.find(idstr).ok_or_else(|| ErrorKind::UnknownBlock {
            idstr: idstr.into(),
        })?;
        self.check(block, offset)?;
        Ok(PageAddr { block, offset })
    }

    /// Checks that `offset` lies in block `block` (below its used length).
    pub(crate) fn check(&self, block: usize, offset: u64) -> Result<(), ErrorKind> {
        let used_length = self.blocks[block].1;
        if offset >= used_length {
            return Err(ErrorKind::OffsetBeyondBlock {
                offset,
                used_length,
            });
        }
        Ok(())
    }
}
