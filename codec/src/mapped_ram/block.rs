//! A block of a mapped-ram file as borrowed views: its bitmap, its pages region, and the
//! pages the bitmap marks present (SPEC.md §7.9).

use ramstream_spec::mapped_ram::{bitmap_len, page_present};

use crate::addr::PageAddr;
use crate::error::{Error, ErrorKind};
use crate::image::PageStore;
use crate::kind::{MappedRamRegion, RecordKind};
use crate::ram::{MappedRamHeader, RamBlock};

/// One RAM block of a mapped-ram file: its MEM_SIZE entry, its header, and its bitmap and
/// pages regions borrowed from the input.
///
/// A page whose bit is set holds data at `pages_offset + i * page_size`; a clear bit is a
/// zero page (QEMU clears the bit instead of writing a zero page), whatever bytes lie in
/// the pages region behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedBlock<'a> {
    /// The block's MEM_SIZE entry.
    pub block: RamBlock,
    /// Its mapped-ram header.
    pub header: MappedRamHeader,
    /// The bitmap, `ceil(pages / 64) * 8` bytes (empty for an ignored block).
    pub bitmap: &'a [u8],
    /// The pages region, `used_length` bytes (empty for an ignored block).
    pub pages: &'a [u8],
    page_size: usize,
}

impl<'a> MappedBlock<'a> {
    /// The block's views into `input`, the stream whose first byte is at file offset
    /// `file_offset`. The decoder has checked the header; a region outside `input` is
    /// still an error here (`MappedRamRegionBeyondEnd`), never a panic.
    pub fn new(
        input: &'a [u8],
        file_offset: u64,
        block: &RamBlock,
        header: &MappedRamHeader,
        page_size: usize,
    ) -> Result<Self, Error> {
        let mut mb = MappedBlock {
            block: block.clone(),
            header: *header,
            bitmap: &[],
            pages: &[],
            page_size,
        };
        if block.mr_addr.is_some() && header.skips_block() {
            return Ok(mb);
        }
        let pages = block.used_length / page_size as u64;
        mb.bitmap = region(
            input,
            file_offset,
            header,
            &block.idstr,
            MappedRamRegion::Bitmap,
            header.bitmap_offset,
            bitmap_len(pages),
        )?;
        mb.pages = region(
            input,
            file_offset,
            header,
            &block.idstr,
            MappedRamRegion::Pages,
            header.pages_offset,
            block.used_length,
        )?;
        Ok(mb)
    }

    /// Whether `x-ignore-shared` leaves the block out (QEMU 11.0+ marks it with both
    /// offsets 0): it has no regions and its content is not in the file.
    pub fn is_ignored(&self) -> bool {
        self.block.mr_addr.is_some() && self.header.skips_block()
    }

    /// Target pages in the block.
    pub fn page_count(&self) -> u64 {
        self.block.used_length / self.page_size as u64
    }

    /// How many pages the bitmap marks present.
    pub fn present_count(&self) -> u64 {
        self.present_pages().count() as u64
    }

    /// The pages the bitmap marks present, as `(offset in the block, page bytes)`, by
    /// ascending offset. The bytes borrow the input.
    pub fn present_pages(&self) -> PresentPages<'a> {
        PresentPages {
            bitmap: self.bitmap,
            pages: self.pages,
            page_size: self.page_size,
            next: 0,
            count: if self.is_ignored() {
                0
            } else {
                self.page_count()
            },
        }
    }

    /// Writes every present page into `store` as block `index`; returns how many. Absent
    /// pages are left as the store holds them (zero in a fresh store).
    pub fn apply_to(&self, store: &mut impl PageStore, index: usize) -> u64 {
        let mut n = 0;
        for (offset, data) in self.present_pages() {
            store
                .page_mut(PageAddr {
                    block: index,
                    offset,
                })
                .copy_from_slice(data);
            n += 1;
        }
        n
    }
}

/// `len` bytes at file offset `start`, from `input` (whose first byte is at `file_offset`).
fn region<'a>(
    input: &'a [u8],
    file_offset: u64,
    header: &MappedRamHeader,
    idstr: &str,
    what: MappedRamRegion,
    start: u64,
    len: u64,
) -> Result<&'a [u8], Error> {
    let input_end = file_offset.saturating_add(input.len() as u64);
    let end = start.saturating_add(len);
    let slice = start
        .checked_sub(file_offset)
        .and_then(|s| usize::try_from(s).ok())
        .zip(usize::try_from(len).ok())
        .and_then(|(s, l)| input.get(s..s.checked_add(l)?));
    slice.ok_or_else(|| {
        Error::new(
            header.offset,
            ErrorKind::MappedRamRegionBeyondEnd {
                region: what,
                end,
                input_end,
            },
        )
        .in_record(RecordKind::MemSize)
        .in_block(idstr)
    })
}

/// The present pages of a [`MappedBlock`], by ascending offset.
#[derive(Clone, Debug)]
pub struct PresentPages<'a> {
    bitmap: &'a [u8],
    pages: &'a [u8],
    page_size: usize,
    next: u64,
    count: u64,
}

impl<'a> Iterator for PresentPages<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.count {
            let i = self.next;
            // Skip a whole zero byte of the bitmap at once.
            if i.is_multiple_of(8) && self.bitmap.get((i / 8) as usize) == Some(&0) {
                self.next += 8;
                continue;
            }
            self.next += 1;
            if page_present(self.bitmap, i) {
                let start = i as usize * self.page_size;
                let data = self.pages.get(start..start + self.page_size)?;
                return Some((i * self.page_size as u64, data));
            }
        }
        None
    }
}
