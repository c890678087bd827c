//! RAM rebuilt in memory by several threads at once: the main stream's thread (ZERO records)
//! and one thread per multifd channel (pages), as `receive --extract` and `extract` of a
//! multifd migration write it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, OnceLock};

use ramstream_codec::{Event, PageAddr, PageStore, RamBlock, RamImage};
use ramstream_migrate::{GuestRam, RamBlockLayout};

/// Locks per block: pages are spread over them by page index, so that channels writing
/// neighbouring pages rarely wait for one another.
const SHARDS: u64 = 64;

type Pages = BTreeMap<u64, Box<[u8]>>;

struct Block {
    shards: Vec<Mutex<Pages>>,
}

struct Blocks {
    page_size: usize,
    layout: Vec<RamBlockLayout>,
    blocks: Vec<Block>,
}

/// Sparse RAM shared by threads: only pages written non-zero are held, each behind one of
/// [`SHARDS`] locks of its block. A [`GuestRam`] (the multifd channel loaders write
/// through it) whose blocks are the stream's MEM_SIZE list in order; zeroing a page drops
/// it. Turned into the codec's [`RamImage`] for writing the extract.
#[derive(Default)]
pub struct SharedImage {
    blocks: OnceLock<Blocks>,
}

/// An access the image cannot take.
#[derive(Debug)]
pub struct OutOfImage(PageAddr, usize);

impl fmt::Display for OutOfImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at block {} offset {:#x} are not one page of a block",
            self.1, self.0.block, self.0.offset
        )
    }
}

impl std::error::Error for OutOfImage {}

impl SharedImage {
    /// Takes the blocks of the first MEM_SIZE record (later ones repeat them) and the page
    /// size.
    pub fn set_blocks(&self, page_size: usize, blocks: &[RamBlock]) {
        let _ = self.blocks.set(Blocks {
            page_size,
            layout: blocks
                .iter()
                .map(|b| RamBlockLayout::new(b.idstr.clone(), b.used_length))
                .collect(),
            blocks: blocks
                .iter()
                .map(|_| Block {
                    shards: (0..SHARDS).map(|_| Mutex::new(Pages::new())).collect(),
                })
                .collect(),
        });
    }

    /// The shard holding `addr` (a whole page of a block), locked.
    fn shard(&self, addr: PageAddr, len: usize) -> Result<MutexGuard<'_, Pages>, OutOfImage> {
        let b = self.blocks.get().ok_or(OutOfImage(addr, len))?;
        let layout = b.layout.get(addr.block).ok_or(OutOfImage(addr, len))?;
        if len != b.page_size
            || !addr.is_page_aligned(b.page_size)
            || addr.offset >= layout.used_length()
        {
            return Err(OutOfImage(addr, len));
        }
        let shard = addr.page_index(b.page_size) % SHARDS;
        Ok(b.blocks[addr.block].shards[shard as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies a main-stream page record (PAGE, ZERO, XBZRLE), as the codec's `apply_event`
    /// does for a [`RamImage`]; `offset` is the record's, for errors.
    pub fn apply(&self, event: &Event<'_>, offset: u64) -> anyhow::Result<()> {
        match event {
            Event::Page(p) => self.write_page(p.addr, p.data)?,
            Event::Zero(z) if z.fill == 0 => {
                let ps = self.page_size();
                self.zero_page(z.addr, ps)?;
            }
            Event::Zero(z) => {
                let page = vec![z.fill; self.page_size()];
                self.write_page(z.addr, &page)?;
            }
            Event::Xbzrle(x) => {
                let ps = self.page_size();
                let mut shard = self.shard(x.addr, ps)?;
                let page = shard
                    .entry(x.addr.offset)
                    .or_insert_with(|| vec![0; ps].into_boxed_slice());
                ramstream_codec::xbzrle::decode(x.delta, page).map_err(|e| {
                    ramstream_codec::Error::new(offset, ramstream_codec::ErrorKind::Xbzrle(e))
                        .in_record(ramstream_codec::RecordKind::Xbzrle)
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    fn page_size(&self) -> usize {
        self.blocks.get().map_or(4096, |b| b.page_size)
    }

    /// Moves every page into a [`RamImage`] of the same blocks (the extract writer's), a
    /// shard at a time.
    pub fn into_ram_image(self, blocks: &[RamBlock]) -> RamImage {
        let page_size = self.page_size();
        let mut image = RamImage::new(page_size);
        image.set_blocks(blocks);
        let Some(b) = self.blocks.into_inner() else {
            return image;
        };
        for (i, block) in b.blocks.into_iter().enumerate() {
            for shard in block.shards {
                let pages = shard.into_inner().unwrap_or_else(|e| e.into_inner());
                for (offset, data) in pages {
                    image
                        .page_mut(PageAddr { block: i, offset })
                        .copy_from_slice(&data);
                }
            }
        }
        image
    }
}

impl GuestRam for SharedImage {
    type Error = OutOfImage;

    fn layout(&self) -> &[RamBlockLayout] {
        self.blocks.get().map_or(&[], |b| &b.layout)
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), OutOfImage> {
        let shard = self.shard(addr, buf.len())?;
        match shard.get(&addr.offset) {
            Some(p) => buf.copy_from_slice(p),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), OutOfImage> {
        let mut shard = self.shard(addr, data.len())?;
        match shard.get_mut(&addr.offset) {
            Some(p) => p.copy_from_slice(data),
            None => {
                shard.insert(addr.offset, data.into());
            }
        }
        Ok(())
    }

    /// Drops the page: absent pages are zero.
    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), OutOfImage> {
        self.shard(addr, len)?.remove(&addr.offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_write_pages_that_come_out_in_a_ram_image() {
        let blocks = [RamBlock {
            idstr: "pc.ram".into(),
            used_length: 256 * 4096,
            page_size: None,
            mr_addr: None,
        }];
        let image = SharedImage::default();
        image.set_blocks(4096, &blocks);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let image = &image;
                s.spawn(move || {
                    for p in (u64::from(t)..256).step_by(4) {
                        image
                            .write_page(PageAddr::of_page(0, p, 4096), &[t + 1; 4096])
                            .unwrap();
                    }
                });
            }
        });
        image
            .zero_page(PageAddr::of_page(0, 5, 4096), 4096)
            .unwrap();
        assert!(image
            .write_page(PageAddr::of_page(0, 256, 4096), &[1; 4096])
            .is_err());
        let ram = image.into_ram_image(&blocks);
        assert_eq!(ram.blocks()[0].resident_pages(), 255);
        assert_eq!(ram.page(PageAddr::of_page(0, 6, 4096))[0], 3);
        assert_eq!(ram.page(PageAddr::of_page(0, 5, 4096))[0], 0);
    }
}
