//! Where a page lands: a block of the MEM_SIZE list and a byte offset in it.

/// Where a page record lands: block index (into the MEM_SIZE list) and offset in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageAddr {
    /// Index of the block in the current MEM_SIZE list.
    pub block: usize,
    /// Byte offset inside the block (page aligned).
    pub offset: u64,
}
