//! The `ram` section's records (SPEC.md §6–§7).

pub(crate) mod mem_size;
pub(crate) mod record;

use std::collections::HashMap;

use crate::event::RamBlock;

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
}
