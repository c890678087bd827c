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
    /// Replaces the block list (a MEM_SIZE record).
    pub fn set_blocks(&mut self, blocks: Vec<RamBlock>) {
        self.index = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b.idstr.clone(), i))
            .collect();
        self.blocks = blocks;
        self.last_block = None;
    }
}
