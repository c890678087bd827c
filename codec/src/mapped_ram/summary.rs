//! A serialisable summary of a mapped-ram file's layout: what `ramstream inspect` prints
//! beside the stream summary, and what the conformance snapshots pin (SPEC.md §7.9).

use crate::mapped_ram::MappedBlock;

/// One block of a mapped-ram file as summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct MappedBlockSummary {
    /// The block's idstr.
    pub idstr: String,
    /// File offset of its header.
    pub header_offset: u64,
    /// The header's version.
    pub version: u32,
    /// The header's page size.
    pub page_size: u64,
    /// File offset of the bitmap (0 for an ignored block).
    pub bitmap_offset: u64,
    /// Bitmap length in bytes (0 for an ignored block).
    pub bitmap_len: u64,
    /// File offset of page 0 (0 for an ignored block).
    pub pages_offset: u64,
    /// Where the stream goes on after the block: `pages_offset + used_length`, or just
    /// after the header for an ignored block.
    pub next_offset: u64,
    /// Pages in the block.
    pub pages: u64,
    /// Pages the bitmap marks present (the rest are zero).
    pub pages_present: u64,
    /// Whether `x-ignore-shared` leaves the block out (both offsets 0).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "core::ops::Not::not"))]
    pub ignored: bool,
}

impl From<&MappedBlock<'_>> for MappedBlockSummary {
    fn from(b: &MappedBlock<'_>) -> Self {
        let h = &b.header;
        MappedBlockSummary {
            idstr: b.block.idstr.clone(),
            header_offset: h.offset,
            version: h.version,
            page_size: h.page_size,
            bitmap_offset: h.bitmap_offset,
            bitmap_len: b.bitmap.len() as u64,
            pages_offset: h.pages_offset,
            next_offset: h.next_entry(b.block.used_length).unwrap_or(u64::MAX),
            pages: b.page_count(),
            pages_present: b.present_count(),
            ignored: b.is_ignored(),
        }
    }
}

/// The mapped-ram layout of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct MappedRamSummary {
    /// The blocks, in MEM_SIZE order.
    pub blocks: Vec<MappedBlockSummary>,
    /// Pages present over all blocks.
    pub pages_present: u64,
    /// Bitmap bytes over all blocks.
    pub bitmap_bytes: u64,
}

impl MappedRamSummary {
    /// The summary of a file's blocks ([`MappedRamFile::blocks`](crate::mapped_ram::MappedRamFile::blocks), or
    /// [`block_views`](crate::mapped_ram::block_views) of its MEM_SIZE).
    pub fn of(blocks: &[MappedBlock<'_>]) -> Self {
        let blocks: Vec<MappedBlockSummary> = blocks.iter().map(MappedBlockSummary::from).collect();
        MappedRamSummary {
            pages_present: blocks.iter().map(|b| b.pages_present).sum(),
            bitmap_bytes: blocks.iter().map(|b| b.bitmap_len).sum(),
            blocks,
        }
    }
}
