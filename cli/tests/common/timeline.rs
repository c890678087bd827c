//! Reading a `--timeline` SVG back: its pages panel's bars and its legend's totals.

use std::path::Path;

/// What a `--timeline` SVG says: the `pages` panel's bars, and its legend's totals.
#[derive(Debug)]
pub struct TimelineCounts {
    /// The pages panel's bars (one per round), in pages.
    pub bars: Vec<u64>,
    /// The legend's `data-pages`.
    pub pages: u64,
    /// The legend's `data-bytes`.
    pub bytes: u64,
    /// The legend's `data-multifd-pages`.
    pub multifd_pages: Option<u64>,
    /// The legend's `data-multifd-bytes`.
    pub multifd_bytes: Option<u64>,
}

pub fn timeline_counts(svg: &Path) -> TimelineCounts {
    let text = std::fs::read_to_string(svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let panel = doc
        .descendants()
        .find(|n| n.attribute("data-series") == Some("pages"))
        .expect("a pages panel");
    let bars = panel
        .children()
        .filter(|n| n.attribute("class") == Some("round"))
        .map(|n| n.attribute("data-value").unwrap().parse::<f64>().unwrap() as u64)
        .collect();
    let legend = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("legend"))
        .expect("a legend");
    let attr = |k: &str| legend.attribute(k).map(|v| v.parse::<u64>().unwrap());
    TimelineCounts {
        bars,
        pages: attr("data-pages").unwrap(),
        bytes: attr("data-bytes").unwrap(),
        multifd_pages: attr("data-multifd-pages"),
        multifd_bytes: attr("data-multifd-bytes"),
    }
}
