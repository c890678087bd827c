//! `ramstream inspect --map map.svg`: every RAM block as a strip of its pages, coloured by
//! what the stream did with each page (SPEC.md §7), with a legend and the counts. Large
//! blocks are binned: a bin of many pages takes the colour of its most frequent class.

use std::path::Path;

use anyhow::{Context, Result};
use ramstream_codec::summary::StreamSummary;
use ramstream_codec::{Event, Events, RamBlock};
use svg::node::element::{Group, Rectangle, Text};
use svg::Document;

use crate::input::file_options;
use crate::DecodeArgs;

/// Width of a strip, in pixels: at most this many bins per block.
const STRIP: u64 = 1000;
/// Height of a strip.
const STRIP_HEIGHT: u64 = 28;
/// Left margin.
const LEFT: u64 = 20;

/// What the stream did with one page, by the records it sent for it (most notable first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageClass {
    /// Ballooned when the stream ended (SPEC.md §9).
    Ballooned,
    /// At least one XBZRLE record.
    Xbzrle,
    /// Two or more PAGE/ZERO records, no XBZRLE.
    Resent,
    /// Exactly one PAGE record.
    Page,
    /// Exactly one ZERO record.
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

    fn describe(self) -> &'static str {
        match self {
            PageClass::Ballooned => "ballooned at the end",
            PageClass::Xbzrle => "XBZRLE (at least one delta)",
            PageClass::Resent => "sent more than once (PAGE/ZERO)",
            PageClass::Page => "PAGE, sent once",
            PageClass::Zero => "ZERO, sent once",
            PageClass::NeverSent => "never sent",
        }
    }

    fn colour(self) -> &'static str {
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
}

/// A block's pages, classified.
pub struct BlockMap {
    /// The block.
    pub block: RamBlock,
    /// One class per target page.
    pub classes: Vec<PageClass>,
}

impl BlockMap {
    /// Pages of `class` in this block.
    pub fn count(&self, class: PageClass) -> u64 {
        self.classes.iter().filter(|c| **c == class).count() as u64
    }
}

/// Decodes the stream and classifies every page of every block; also returns the summary
/// (record counts) of the same pass.
pub fn classify(bytes: &[u8], decode: &DecodeArgs) -> Result<(Vec<BlockMap>, StreamSummary)> {
    let mut events = Events::new(bytes, file_options(decode));
    let mut summary = StreamSummary::default();
    let mut blocks: Vec<RamBlock> = Vec::new();
    let mut logs: Vec<Vec<PageLog>> = Vec::new();
    let mut page_size = 4096usize;
    while let Some((at, event)) = events.next().transpose()? {
        summary.observe(at, &event);
        let (addr, xbzrle, zero) = match &event {
            Event::MemSize(ms) if !ms.mapped_ram.is_empty() => anyhow::bail!(
                "a mapped-ram file (SPEC.md §7.9): its pages sit at fixed file offsets, not in \
                 records; --map draws records"
            ),
            Event::MemSize(ms) => {
                page_size = events.decoder().page_size();
                if blocks.is_empty() {
                    blocks = ms.blocks.clone();
                    logs = blocks
                        .iter()
                        .map(|b| vec![PageLog::default(); pages_of(b, page_size)])
                        .collect();
                }
                continue;
            }
            Event::Page(p) => (p.addr, false, false),
            Event::Zero(z) => (z.addr, false, true),
            Event::Xbzrle(x) => (x.addr, true, false),
            Event::MultifdFlush(_) => anyhow::bail!(
                "at offset {at:#x}: MULTIFD_FLUSH record: a multifd migration's main stream, \
                 whose pages travel on its channels; --map reads no channels"
            ),
            _ => continue,
        };
        let index = addr.page_index(page_size) as usize;
        if let Some(log) = logs.get_mut(addr.block).and_then(|l| l.get_mut(index)) {
            log.records = log.records.saturating_add(1);
            log.xbzrle |= xbzrle;
            log.last_zero = zero;
        }
    }
    let balloon = summary.balloon.map();
    let maps = blocks
        .into_iter()
        .zip(logs)
        .enumerate()
        .map(|(b, (block, log))| BlockMap {
            block,
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
                    } else {
                        PageClass::NeverSent
                    }
                })
                .collect(),
        })
        .collect();
    Ok((maps, summary))
}

fn pages_of(b: &RamBlock, page_size: usize) -> usize {
    b.used_length.div_ceil(page_size as u64) as usize
}

/// The most frequent class of `pages` (ties go to the more notable class).
fn dominant(pages: &[PageClass]) -> PageClass {
    let mut counts = [0usize; 6];
    for c in pages {
        counts[*c as usize] += 1;
    }
    let best = (0..6).max_by_key(|i| (counts[*i], std::cmp::Reverse(*i)));
    [
        PageClass::Ballooned,
        PageClass::Xbzrle,
        PageClass::Resent,
        PageClass::Page,
        PageClass::Zero,
        PageClass::NeverSent,
    ][best.unwrap_or(5)]
}

/// Draws `maps` (with the stream's record counts from `summary`) as an SVG document.
pub fn draw(title: &str, maps: &[BlockMap], summary: &StreamSummary) -> Document {
    let legend_height = 30 + 20 * PageClass::ALL.len() as u64 + 40;
    let block_height = STRIP_HEIGHT + 34;
    let height = 40 + legend_height + block_height * maps.len() as u64 + 10;
    let width = STRIP + 2 * LEFT;
    let mut doc = Document::new()
        .set("xmlns", "http://www.w3.org/2000/svg")
        .set("width", width)
        .set("height", height)
        .set("viewBox", (0, 0, width, height))
        .set("font-family", "sans-serif")
        .set("font-size", 13)
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(
            Text::new(format!("RAM map of {title}"))
                .set("x", LEFT)
                .set("y", 24)
                .set("font-size", 17)
                .set("font-weight", "bold"),
        );
    doc = doc.add(legend(maps, summary, 44));
    let mut y = 40 + legend_height;
    for m in maps {
        doc = doc.add(strip(m, y));
        y += block_height;
    }
    doc
}

/// The legend: one swatch per class with its page count, the record counts, the binning.
fn legend(maps: &[BlockMap], summary: &StreamSummary, top: u64) -> Group {
    let mut g = Group::new().set("class", "legend");
    let total: u64 = maps.iter().map(|m| m.classes.len() as u64).sum();
    for (i, class) in PageClass::ALL.iter().enumerate() {
        let n: u64 = maps.iter().map(|m| m.count(*class)).sum();
        let y = top + 20 * i as u64;
        g = g.add(
            Group::new()
                .set("class", "legend-entry")
                .set("data-class", class.name())
                .set("data-pages", n)
                .add(
                    Rectangle::new()
                        .set("x", LEFT)
                        .set("y", y)
                        .set("width", 14)
                        .set("height", 14)
                        .set("fill", class.colour())
                        .set("stroke", "#555"),
                )
                .add(
                    Text::new(format!("{}: {n} pages", class.describe()))
                        .set("x", LEFT + 22)
                        .set("y", y + 12),
                ),
        );
    }
    let r = &summary.ram.records;
    let ballooned: u64 = summary.balloon.ballooned_pages.values().sum();
    let y = top + 20 * PageClass::ALL.len() as u64 + 8;
    g.add(
        Text::new(format!(
            "{total} pages in {} blocks; records: {} PAGE, {} ZERO, {} XBZRLE; {ballooned} pages ballooned",
            maps.len(),
            r.page,
            r.zero,
            r.xbzrle
        ))
        .set("class", "legend-records")
        .set("data-page", r.page)
        .set("data-zero", r.zero)
        .set("data-xbzrle", r.xbzrle)
        .set("data-ballooned", ballooned)
        .set("x", LEFT)
        .set("y", y + 12),
    )
    .add(
        Text::new(
            "Blocks over 1000 pages are binned: a pixel column is many pages, coloured by \
             their most frequent class.",
        )
        .set("x", LEFT)
        .set("y", y + 32)
        .set("fill", "#444"),
    )
}

/// One block: its label and a strip of runs of equal colour.
fn strip(m: &BlockMap, top: u64) -> Group {
    let pages = m.classes.len() as u64;
    let per_bin = pages.div_ceil(STRIP).max(1);
    let bins = pages.div_ceil(per_bin).max(1);
    let bin_width = STRIP as f64 / bins as f64;
    let mut label = format!(
        "{}: {} page(s) ({:#x} bytes)",
        m.block.idstr, pages, m.block.used_length
    );
    if per_bin > 1 {
        label.push_str(&format!(", 1 px = {per_bin} pages"));
    }
    let mut g = Group::new()
        .set("class", "block")
        .set("data-block", m.block.idstr.as_str())
        .set("data-pages", pages)
        .add(Text::new(label).set("x", LEFT).set("y", top + 14));
    for class in PageClass::ALL {
        g = g.set(
            format!("data-{}", class.name().replace(' ', "-")),
            m.count(class),
        );
    }
    let classes: Vec<PageClass> = m.classes.chunks(per_bin as usize).map(dominant).collect();
    let y = top + 20;
    let mut start = 0usize;
    while start < classes.len() {
        let c = classes[start];
        let mut end = start + 1;
        while end < classes.len() && classes[end] == c {
            end += 1;
        }
        g = g.add(
            Rectangle::new()
                .set("x", LEFT as f64 + start as f64 * bin_width)
                .set("y", y)
                .set("width", (end - start) as f64 * bin_width)
                .set("height", STRIP_HEIGHT)
                .set("fill", c.colour())
                .set("data-class", c.name()),
        );
        start = end;
    }
    g.add(
        Rectangle::new()
            .set("x", LEFT)
            .set("y", y)
            .set("width", STRIP)
            .set("height", STRIP_HEIGHT)
            .set("fill", "none")
            .set("stroke", "#333"),
    )
}

/// `inspect --map`: classifies the stream's pages and writes the SVG to `out`.
pub fn write(bytes: &[u8], decode: &DecodeArgs, title: &str, out: &Path) -> Result<()> {
    let (maps, summary) = classify(bytes, decode)?;
    let doc = draw(title, &maps, &summary);
    svg::save(out, &doc).with_context(|| format!("cannot write {}", out.display()))
}
