//! What a stream did with each page, for `inspect --map` (SPEC.md §7): the main stream's
//! records, a multifd recording's channel pages (SPEC.md §14.9) and a mapped-ram file's
//! bitmaps (SPEC.md §7.9), counted per page and classified.

use std::path::Path;

use anyhow::Result;
use ramstream_codec::mapped_ram::block_views;
use ramstream_codec::summary::StreamSummary;
use ramstream_codec::{Event, Events, MemSize, PageAddr, RamBlock};
use ramstream_spec::mapped_ram::page_present;

use crate::input::file_options;
use crate::multifd::recording::channel_path;
use crate::multifd::replay::{Recording, Step};
use crate::DecodeArgs;

/// What the stream did with one page, by the records it sent for it (most notable first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageClass {
    /// Ballooned when the stream ended (SPEC.md §9).
    Ballooned,
    /// At least one XBZRLE record.
    Xbzrle,
    /// Two or more PAGE/ZERO records (channel pages included), no XBZRLE.
    Resent,
    /// Exactly one PAGE record (or channel page, or mapped-ram page present).
    Page,
    /// Exactly one ZERO record (or channel zero page), or a mapped-ram page whose bitmap
    /// bit is clear.
    Zero,
    /// No record.
    NeverSent,
}

impl PageClass {
    /// Every class, legend order.
    pub const ALL: [PageClass; 6] = [
        PageClass::Page,
        PageClass::Zero,
        PageClass::Xbzrle,
        PageClass::Resent,
        PageClass::Ballooned,
        PageClass::NeverSent,
    ];

    /// The name in the legend and in the SVG's `data-class` attributes.
    pub fn name(self) -> &'static str {
        match self {
            PageClass::Ballooned => "ballooned",
            PageClass::Xbzrle => "xbzrle",
            PageClass::Resent => "sent more than once",
            PageClass::Page => "page",
            PageClass::Zero => "zero",
            PageClass::NeverSent => "never sent",
        }
    }

    /// The legend's text.
    pub fn describe(self) -> &'static str {
        match self {
            PageClass::Ballooned => "ballooned at the end",
            PageClass::Xbzrle => "XBZRLE (at least one delta)",
            PageClass::Resent => "sent more than once (PAGE/ZERO)",
            PageClass::Page => "PAGE, sent once",
            PageClass::Zero => "ZERO, sent once",
            PageClass::NeverSent => "never sent",
        }
    }

    /// The fill colour.
    pub fn colour(self) -> &'static str {
        match self {
            PageClass::Ballooned => "#9467bd",
            PageClass::Xbzrle => "#ff7f0e",
            PageClass::Resent => "#d62728",
            PageClass::Page => "#1f77b4",
            PageClass::Zero => "#c7e9c0",
            PageClass::NeverSent => "#eeeeee",
        }
    }
}

/// What the stream sent for one page.
#[derive(Clone, Copy, Default)]
struct PageLog {
    records: u16,
    xbzrle: bool,
    last_zero: bool,
    /// A mapped-ram page whose bitmap bit is clear: a zero page (SPEC.md §7.9).
    cleared: bool,
}

/// A block's pages, classified.
pub struct BlockMap {
    /// The block.
    pub block: RamBlock,
    /// One class per target page.
    pub classes: Vec<PageClass>,
    /// Writes of its pages: records, channel pages, mapped-ram pages present.
    pub writes: u64,
}

impl BlockMap {
    /// Pages of `class` in this block.
    pub fn count(&self, class: PageClass) -> u64 {
        self.classes.iter().filter(|c| **c == class).count() as u64
    }
}

/// Pages that did not come in main-stream records.
#[derive(Clone, Copy, Default)]
pub struct OtherPages {
    /// Normal pages of multifd channel packets.
    pub channel_pages: u64,
    /// Zero pages of multifd channel packets.
    pub channel_zero: u64,
    /// Mapped-ram pages present in their bitmaps.
    pub mapped_present: u64,
    /// Mapped-ram pages clear in their bitmaps (zero pages).
    pub mapped_clear: u64,
}

/// Everything `--map` draws.
pub struct Classified {
    /// Per block, its pages classified.
    pub maps: Vec<BlockMap>,
    /// The main stream's record counts.
    pub summary: StreamSummary,
    /// Channel and mapped-ram pages.
    pub other: OtherPages,
}

/// The pass over the input.
struct Classifier<'i> {
    input: &'i [u8],
    file_offset: u64,
    multifd: bool,
    main_file: &'i Path,
    summary: StreamSummary,
    blocks: Vec<RamBlock>,
    logs: Vec<Vec<PageLog>>,
    writes: Vec<u64>,
    page_size: usize,
    other: OtherPages,
}

impl Classifier<'_> {
    fn main(&mut self, at: u64, page_size: usize, event: &Event<'_>) -> Result<()> {
        self.summary.observe(at, event);
        let (addr, xbzrle, zero) = match event {
            Event::MemSize(ms) => return self.mem_size(ms, page_size),
            Event::Page(p) => (p.addr, false, false),
            Event::Zero(z) => (z.addr, false, true),
            Event::Xbzrle(x) => (x.addr, true, false),
            Event::MultifdFlush(_)
                if !self.multifd && self.other.mapped_present + self.other.mapped_clear == 0 =>
            {
                anyhow::bail!(
                    "at offset {at:#x}: MULTIFD_FLUSH record: a multifd migration's main \
                     stream, whose pages are in its channels; none of them is beside it ({})",
                    channel_path(self.main_file, 0).display()
                )
            }
            _ => return Ok(()),
        };
        self.log(addr, xbzrle, zero);
        Ok(())
    }

    fn mem_size(&mut self, ms: &MemSize, page_size: usize) -> Result<()> {
        self.page_size = page_size;
        if self.blocks.is_empty() {
            self.blocks = ms.blocks.clone();
            self.logs = self
                .blocks
                .iter()
                .map(|b| vec![PageLog::default(); pages_of(b, page_size)])
                .collect();
            self.writes = vec![0; self.blocks.len()];
        }
        let views = block_views(self.input, self.file_offset, ms, page_size)?;
        for (b, view) in views.iter().enumerate() {
            if view.is_ignored() {
                continue;
            }
            let Some(log) = self.logs.get_mut(b) else {
                continue;
            };
            for (n, l) in log.iter_mut().enumerate().take(view.page_count() as usize) {
                if page_present(view.bitmap, n as u64) {
                    l.records = l.records.saturating_add(1);
                    l.last_zero = false;
                    self.writes[b] += 1;
                    self.other.mapped_present += 1;
                } else {
                    l.cleared = true;
                    self.other.mapped_clear += 1;
                }
            }
        }
        Ok(())
    }

    fn log(&mut self, addr: PageAddr, xbzrle: bool, zero: bool) {
        let index = addr.page_index(self.page_size) as usize;
        if let Some(log) = self.logs.get_mut(addr.block).and_then(|l| l.get_mut(index)) {
            log.records = log.records.saturating_add(1);
            log.xbzrle |= xbzrle;
            log.last_zero = zero;
            self.writes[addr.block] += 1;
        }
    }

    fn finish(self) -> Classified {
        let balloon = self.summary.balloon.map();
        let maps = self
            .blocks
            .into_iter()
            .zip(self.logs)
            .zip(self.writes)
            .enumerate()
            .map(|(b, ((block, log), writes))| BlockMap {
                block,
                writes,
                classes: log
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        if b < balloon.block_count() && balloon.contains(b, i as u64) {
                            PageClass::Ballooned
                        } else if l.xbzrle {
                            PageClass::Xbzrle
                        } else if l.records > 1 {
                            PageClass::Resent
                        } else if l.records == 1 && l.last_zero {
                            PageClass::Zero
                        } else if l.records == 1 {
                            PageClass::Page
                        } else if l.cleared {
                            PageClass::Zero
                        } else {
                            PageClass::NeverSent
                        }
                    })
                    .collect(),
            })
            .collect();
        Classified {
            maps,
            summary: self.summary,
            other: self.other,
        }
    }
}

/// Decodes the stream `bytes` of file `file` (with the channel files beside it, for a
/// multifd recording) and classifies every page of every block.
pub fn classify(bytes: &[u8], decode: &DecodeArgs, file: &Path) -> Result<Classified> {
    let opts = file_options(decode);
    let recording = Recording::open(file)?;
    let mut c = Classifier {
        input: bytes,
        file_offset: opts.file_offset,
        multifd: recording.is_some(),
        main_file: file,
        summary: StreamSummary::default(),
        blocks: Vec::new(),
        logs: Vec::new(),
        writes: Vec::new(),
        page_size: 4096,
        other: OtherPages::default(),
    };
    match &recording {
        None => {
            let mut events = Events::new(bytes, opts);
            while let Some((at, event)) = events.next().transpose()? {
                let page_size = events.decoder().page_size();
                c.main(at, page_size, &event)?;
            }
        }
        Some(r) => r.replay(bytes, opts, |step| match step {
            Step::Main {
                at,
                page_size,
                event,
                ..
            } => c.main(at, page_size, event),
            Step::Channel(p) => {
                match p.data {
                    Some(_) => c.other.channel_pages += 1,
                    None => c.other.channel_zero += 1,
                }
                c.log(p.addr, false, p.data.is_none());
                Ok(())
            }
        })?,
    }
    Ok(c.finish())
}

fn pages_of(b: &RamBlock, page_size: usize) -> usize {
    b.used_length.div_ceil(page_size as u64) as usize
}
