//! Rebuilding RAM from page records (SPEC.md §7.8): a store trait and an in-memory image.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::addr::PageAddr;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::kind::RecordKind;
use crate::ram::RamBlock;

/// Guest memory that page records are applied to. The receiver implements it over real
/// guest memory; [`RamImage`] implements it in memory for tools and tests.
pub trait PageStore {
    /// The page at `addr` for writing, `page_size` bytes. The decoder has checked that
    /// `addr` is inside the block; an implementation must still never write elsewhere.
    fn page_mut(&mut self, addr: PageAddr) -> &mut [u8];

    /// Fills the page at `addr` with `fill`. The default writes through `page_mut`; a store
    /// may leave a page unbacked when `fill` is 0 and the page is already zero.
    fn fill_page(&mut self, addr: PageAddr, fill: u8) {
        self.page_mut(addr).fill(fill);
    }
}

/// Applies one decoded event to `store`: PAGE copies, ZERO fills, XBZRLE decodes in place
/// onto the page the store holds. Returns whether the event touched memory. `offset` is the
/// event's stream offset, for errors. A MULTIFD_FLUSH record is an error
/// ([`ErrorKind::PagesOnMultifdChannels`]): the pages of such a stream are on other channels,
/// and RAM rebuilt from it alone would be silently incomplete.
pub fn apply_event(
    store: &mut impl PageStore,
    event: &Event<'_>,
    offset: u64,
) -> Result<bool, Error> {
    match event {
        Event::Page(p) => {
            store.page_mut(p.addr).copy_from_slice(p.data);
            Ok(true)
        }
        Event::Zero(z) => {
            store.fill_page(z.addr, z.fill);
            Ok(true)
        }
        Event::Xbzrle(x) => {
            crate::xbzrle::decode(x.delta, store.page_mut(x.addr)).map_err(|e| {
                Error::new(offset, ErrorKind::Xbzrle(e)).in_record(RecordKind::Xbzrle)
            })?;
            Ok(true)
        }
        Event::MultifdFlush(_) => Err(Error::new(offset, ErrorKind::PagesOnMultifdChannels)
            .in_record(RecordKind::MultifdFlush)),
        _ => Ok(false),
    }
}

/// One block of a [`RamImage`].
#[derive(Clone, Debug)]
pub struct BlockImage {
    /// The block's idstr.
    pub idstr: String,
    /// Its used length.
    pub used_length: u64,
    /// Pages that are not all zero, by offset. Absent pages are zero.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl BlockImage {
    /// The non-zero pages held, by ascending offset.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pages.iter().map(|(o, p)| (*o, &p[..]))
    }

    /// How many pages are held (the rest are zero).
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }
}

/// RAM rebuilt in memory, sparse: only pages that were written non-zero are held.
///
/// ```
/// use ramstream_codec::{apply_event, decode_all, DecoderOptions, Event, RamImage};
/// # let stream: &[u8] = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut image = RamImage::new(4096);
/// for (offset, ev) in decode_all(stream, DecoderOptions::default()).unwrap() {
///     if let Event::MemSize(ms) = &ev {
///         image.set_blocks(&ms.blocks);
///     }
///     apply_event(&mut image, &ev, offset).unwrap();
/// }
/// assert!(image.blocks().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct RamImage {
    page_size: usize,
    blocks: Vec<BlockImage>,
}

impl RamImage {
    /// An empty image with the given page size.
    pub fn new(page_size: usize) -> Self {
        RamImage {
            page_size,
            blocks: Vec::new(),
        }
    }

    /// Takes the block list of a MEM_SIZE record. Blocks already held with the same idstr
    /// keep their pages (beyond a shrunk length they are dropped).
    pub fn set_blocks(&mut self, blocks: &[RamBlock]) {
        let mut old: Vec<BlockImage> = std::mem::take(&mut self.blocks);
        self.blocks = blocks
            .iter()
            .map(|b| {
                let mut pages = old
                    .iter_mut()
                    .find(|o| o.idstr == b.idstr)
                    .map(|o| std::mem::take(&mut o.pages))
                    .unwrap_or_default();
                pages.retain(|off, _| *off < b.used_length);
                BlockImage {
                    idstr: b.idstr.clone(),
                    used_length: b.used_length,
                    pages,
                }
            })
            .collect();
    }

    /// The blocks.
    pub fn blocks(&self) -> &[BlockImage] {
        &self.blocks
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The page at `addr` (a shared zero page if none was written).
    pub fn page(&self, addr: PageAddr) -> std::borrow::Cow<'_, [u8]> {
        match self
            .blocks
            .get(addr.block)
            .and_then(|b| b.pages.get(&addr.offset))
        {
            Some(p) => std::borrow::Cow::Borrowed(&p[..]),
            None => std::borrow::Cow::Owned(vec![0u8; self.page_size]),
        }
    }

    /// The sha256 of block `i`'s whole used length.
    pub fn sha256(&self, i: usize) -> [u8; 32] {
        let b = &self.blocks[i];
        let zero = vec![0u8; self.page_size];
        let mut h = Sha256::new();
        let mut off = 0u64;
        for (o, p) in b.pages.iter() {
            while off < *o {
                h.update(&zero);
                off += self.page_size as u64;
            }
            h.update(p);
            off += self.page_size as u64;
        }
        while off < b.used_length {
            h.update(&zero);
            off += self.page_size as u64;
        }
        h.finalize().into()
    }

    /// Block `i` as one dense buffer.
    pub fn to_dense(&self, i: usize) -> Vec<u8> {
        let b = &self.blocks[i];
        let mut v = vec![0u8; b.used_length as usize];
        for (o, p) in b.pages.iter() {
            v[*o as usize..*o as usize + p.len()].copy_from_slice(p);
        }
        v
    }
}

impl PageStore for RamImage {
    fn page_mut(&mut self, addr: PageAddr) -> &mut [u8] {
        let ps = self.page_size;
        self.blocks[addr.block]
            .pages
            .entry(addr.offset)
            .or_insert_with(|| vec![0u8; ps].into_boxed_slice())
    }

    fn fill_page(&mut self, addr: PageAddr, fill: u8) {
        if fill == 0 {
            self.blocks[addr.block].pages.remove(&addr.offset);
        } else {
            self.page_mut(addr).fill(fill);
        }
    }
}
