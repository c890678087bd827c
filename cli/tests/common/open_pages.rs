//! Pages of a multifd recording whose final contents are not fixed by the stream: written
//! more than once, with different contents, in the last epoch (the span between two sync
//! points) that writes them. Within an epoch the channels and the main stream are not
//! ordered, so a destination (QEMU's as well as ramstream's) ends with whichever copy its
//! threads wrote last. QEMU 7.2 produces such pages: the page that fills one packet can open
//! the next packet too, on another channel, in the same epoch (SPEC.md §14.5); the copies
//! differ when the guest wrote the page between the two channels' reads.
//!
//! Two destinations of one recording must agree on every other page, and on these hold one
//! of the copies.

use std::collections::HashMap;
use std::path::Path;

use ramstream_codec::multifd::{decode_channel, BlockTable, ChannelEvent, ChannelOptions};
use ramstream_codec::{DecoderOptions, Event, Events, RamImage};
use ramstream_migrate::multifd::SyncPoints;

/// One write of a page: its epoch and its contents (`None`: a zero page).
struct Write {
    epoch: u64,
    data: Option<Vec<u8>>,
}

/// The open pages of one recording, by block name and offset, with their candidate
/// contents.
pub struct OpenPages {
    page_size: usize,
    /// (block name, offset) -> the copies of its last epoch (zero page: all zeros).
    open: HashMap<(String, u64), Vec<Vec<u8>>>,
    /// Pages written twice or more in one epoch (open or not), for the report.
    pub repeated: usize,
}

impl OpenPages {
    /// Reads recording `main` and its channel files `main.multifd-<id>`.
    pub fn of_recording(main: &Path) -> OpenPages {
        let bytes = std::fs::read(main).unwrap();
        let mut events = Events::new(&bytes, DecoderOptions::default());
        let mut sync = SyncPoints::new();
        let mut epoch = 0u64;
        let mut writes: HashMap<(usize, u64), Vec<Write>> = HashMap::new();
        let mut blocks = None;
        let mut page_bits = 12;
        while let Some(item) = events.next() {
            let (_, event) = item.unwrap();
            page_bits = events.decoder().page_bits();
            match &event {
                Event::MemSize(ms) if blocks.is_none() => blocks = Some(ms.blocks.clone()),
                Event::Zero(z) => {
                    let data = (z.fill != 0).then(|| vec![z.fill; 1 << page_bits]);
                    writes
                        .entry((z.addr.block, z.addr.offset))
                        .or_default()
                        .push(Write { epoch, data });
                }
                Event::Page(p) => writes
                    .entry((p.addr.block, p.addr.offset))
                    .or_default()
                    .push(Write {
                        epoch,
                        data: Some(p.data.to_vec()),
                    }),
                _ => {}
            }
            if let Some(k) = sync.observe(&event) {
                epoch = k;
            }
        }
        let blocks = blocks.expect("a MEM_SIZE record");
        let table = BlockTable::new(&blocks);
        for id in 0u8.. {
            let Ok(channel) = std::fs::read(format!("{}.multifd-{id}", main.display())) else {
                break;
            };
            let opts = ChannelOptions::default().with_page_bits(page_bits);
            let mut epoch = 0u64;
            for (_, event) in decode_channel(&channel, opts, &table).unwrap() {
                let (addr, data) = match event {
                    ChannelEvent::Page { addr, data } => (addr, Some(data.to_vec())),
                    ChannelEvent::Zero { addr } => (addr, None),
                    ChannelEvent::Sync => {
                        epoch += 1;
                        continue;
                    }
                    _ => continue,
                };
                writes
                    .entry((addr.block, addr.offset))
                    .or_default()
                    .push(Write { epoch, data });
            }
        }
        let page_size = 1usize << page_bits;
        let mut open = HashMap::new();
        let mut repeated = 0;
        for ((block, offset), w) in writes {
            let last = w.iter().map(|w| w.epoch).max().unwrap();
            let copies: Vec<Vec<u8>> = w
                .into_iter()
                .filter(|w| w.epoch == last)
                .map(|w| w.data.unwrap_or_else(|| vec![0; page_size]))
                .collect();
            if copies.len() > 1 {
                repeated += 1;
            }
            if copies.iter().any(|c| c != &copies[0]) {
                open.insert((blocks[block].idstr.clone(), offset), copies);
            }
        }
        OpenPages {
            page_size,
            open,
            repeated,
        }
    }

    /// How many pages are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Compares block `name` as two destinations hold it (`a`, `b`: the whole block):
    /// `Err` names the pages where they differ although the stream fixes them, or where
    /// one holds none of an open page's copies; `Ok(n)`: they agree but for `n` open pages.
    pub fn compare(&self, name: &str, a: &[u8], b: &[u8]) -> Result<usize, String> {
        if a.len() != b.len() {
            return Err(format!("{name}: {} bytes against {}", a.len(), b.len()));
        }
        let mut bad = Vec::new();
        let mut open_differing = 0;
        for (i, (x, y)) in a
            .chunks(self.page_size)
            .zip(b.chunks(self.page_size))
            .enumerate()
        {
            let offset = (i * self.page_size) as u64;
            match self.open.get(&(name.to_string(), offset)) {
                Some(copies) => {
                    if !copies.iter().any(|c| c == x) || !copies.iter().any(|c| c == y) {
                        bad.push(format!("{offset:#x} (open, holds none of its copies)"));
                    } else if x != y {
                        open_differing += 1;
                    }
                }
                None if x != y => bad.push(format!("{offset:#x}")),
                None => {}
            }
        }
        if bad.is_empty() {
            Ok(open_differing)
        } else {
            Err(format!(
                "{name}: {} page(s) differ: {}",
                bad.len(),
                bad.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            ))
        }
    }
}

/// Block `name` of `image`, all of it.
pub fn block_bytes(image: &RamImage, name: &str) -> Vec<u8> {
    let i = image
        .blocks()
        .iter()
        .position(|b| b.idstr == name)
        .unwrap_or_else(|| panic!("no block {name}"));
    let ps = image.page_size();
    let len = image.blocks()[i].used_length;
    let mut out = Vec::with_capacity(len as usize);
    for offset in (0..len).step_by(ps) {
        out.extend_from_slice(&image.page(ramstream_codec::PageAddr { block: i, offset }));
    }
    out
}
