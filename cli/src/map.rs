//! `ramstream inspect --map map.svg`: every RAM block as a strip of its pages, coloured by
//! what the stream did with each page (SPEC.md §7), with a legend and the counts. Large
//! blocks are binned: a bin of many pages takes the colour of its most frequent class. A
//! multifd recording's channel pages and a mapped-ram file's pages are counted too
//! ([`crate::map_classes`]).

use std::path::Path;

use anyhow::{Context, Result};
use svg::node::element::{Group, Rectangle, Text};
use svg::Document;

use crate::map_classes::{classify, BlockMap, Classified, PageClass};
use crate::DecodeArgs;

/// Width of a strip, in pixels: at most this many bins per block.
const STRIP: u64 = 1000;
/// Height of a strip.
const STRIP_HEIGHT: u64 = 28;
/// Left margin.
const LEFT: u64 = 20;

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

/// Draws the classified pages (with the stream's record counts) as an SVG document.
pub fn draw(title: &str, c: &Classified) -> Document {
    let maps = &c.maps;
    let legend_height = 30 + 20 * PageClass::ALL.len() as u64 + 60;
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
    doc = doc.add(legend(c, 44));
    let mut y = 40 + legend_height;
    for m in maps {
        doc = doc.add(strip(m, y));
        y += block_height;
    }
    doc
}

/// The legend: one swatch per class with its page count, the record counts, the binning.
fn legend(c: &Classified, top: u64) -> Group {
    let (maps, summary, o) = (&c.maps, &c.summary, &c.other);
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
        Text::new(format!(
            "multifd channel pages: {} normal, {} zero; mapped-ram pages: {} present, {} clear (zero)",
            o.channel_pages, o.channel_zero, o.mapped_present, o.mapped_clear
        ))
        .set("class", "legend-other")
        .set("data-channel-page", o.channel_pages)
        .set("data-channel-zero", o.channel_zero)
        .set("data-mapped-present", o.mapped_present)
        .set("data-mapped-clear", o.mapped_clear)
        .set("x", LEFT)
        .set("y", y + 32),
    )
    .add(
        Text::new(
            "Blocks over 1000 pages are binned: a pixel column is many pages, coloured by \
             their most frequent class.",
        )
        .set("x", LEFT)
        .set("y", y + 52)
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
        .set("data-writes", m.writes)
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
/// `file` is the stream's path, for a multifd recording's channel files beside it.
pub fn write(
    bytes: &[u8],
    decode: &DecodeArgs,
    file: &Path,
    title: &str,
    out: &Path,
) -> Result<()> {
    let c = classify(bytes, decode, file)?;
    let doc = draw(title, &c);
    svg::save(out, &doc).with_context(|| format!("cannot write {}", out.display()))
}
