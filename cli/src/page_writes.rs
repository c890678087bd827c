//! The chosen pages of `ramstream pages` and every write that reached them, in the order
//! `ramstream extract` applies them: where each came from (main stream, multifd channel,
//! mapped-ram file region), its kind, and the page as it stood after it; then the report.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use ramstream_codec::xbzrle;

use crate::hex_dump::hex_dump;

/// Where a write came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A record of the main stream, at this stream offset.
    Main(u64),
    /// A page of a multifd channel packet (SPEC.md §14.3).
    Channel {
        /// The channel's id.
        id: u8,
        /// Channel-file offset of the page's bytes (of the packet, for a zero page).
        at: u64,
        /// Channel-file offset of its packet.
        packet: u64,
    },
    /// A mapped-ram page present in its bitmap, at this file offset (SPEC.md §7.9).
    File(u64),
}

impl Origin {
    /// Which source it is: the main stream and each channel are ordered within themselves,
    /// not against each other within an epoch.
    fn source(self) -> Option<u8> {
        match self {
            Origin::Channel { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Where it came from, as JSON fields.
    fn to_json(self) -> serde_json::Value {
        match self {
            Origin::Main(at) => serde_json::json!({ "source": "main", "offset": at }),
            Origin::Channel { id, at, packet } => serde_json::json!({
                "source": "channel", "channel": id, "offset": at, "packet_offset": packet,
            }),
            Origin::File(at) => serde_json::json!({ "source": "file", "offset": at }),
        }
    }

    fn describe(self) -> String {
        match self {
            Origin::Main(at) => format!("main      {at:#012x}"),
            Origin::Channel { id, at, packet } => {
                format!("channel {id} {at:#012x} (packet at {packet:#x})")
            }
            Origin::File(at) => format!("file      {at:#012x}"),
        }
    }
}

/// What a write does to the page.
pub enum Content<'a> {
    /// The page's bytes.
    Data(&'a [u8]),
    /// Every byte this value.
    Fill(u8),
    /// A multifd zero page: all zeros, no bytes on the wire (SPEC.md §14.3).
    ZeroPage,
    /// An XBZRLE delta against the page as it stands (SPEC.md §7.6).
    Delta(&'a [u8]),
}

/// One write of one chosen page.
struct PageWrite {
    origin: Origin,
    /// Sync points before it, in a multifd recording.
    epoch: Option<u64>,
    kind: &'static str,
    detail: String,
    /// The same detail as JSON fields (`fill`, `delta_bytes`).
    detail_json: Option<(&'static str, u64)>,
    page: usize,
    /// The page after this write.
    after: Vec<u8>,
}

/// The pages `first .. first + count` of one block and what wrote them.
pub struct ChosenPages {
    /// The block's idstr.
    pub block: String,
    /// Its index in the MEM_SIZE record.
    pub index: usize,
    /// Page index of the first chosen page.
    pub first: u64,
    /// Target page size.
    pub page_size: usize,
    pages: Vec<Vec<u8>>,
    writes: Vec<PageWrite>,
    multifd: bool,
}

impl ChosenPages {
    /// `count` pages of block `block` (MEM_SIZE index `index`) from page `first`, zeros so far.
    pub fn new(
        block: &str,
        index: usize,
        first: u64,
        count: u64,
        page_size: usize,
        multifd: bool,
    ) -> Self {
        ChosenPages {
            block: block.to_string(),
            index,
            first,
            page_size,
            pages: vec![vec![0; page_size]; count as usize],
            writes: Vec::new(),
            multifd,
        }
    }

    /// How many pages are chosen.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Which chosen page `offset` of block `block` is, if any.
    pub fn which(&self, block: usize, offset: u64) -> Option<usize> {
        let index = offset / self.page_size as u64;
        (block == self.index && index >= self.first && index - self.first < self.pages.len() as u64)
            .then(|| (index - self.first) as usize)
    }

    /// Applies one write of chosen page `page`.
    pub fn apply(
        &mut self,
        page: usize,
        origin: Origin,
        epoch: Option<u64>,
        kind: &'static str,
        content: Content<'_>,
    ) -> Result<()> {
        let buf = &mut self.pages[page];
        let (detail, detail_json) = match content {
            Content::Data(d) => {
                buf.copy_from_slice(d);
                (String::new(), None)
            }
            Content::Fill(f) => {
                buf.fill(f);
                (format!("fill {f:#04x}"), Some(("fill", u64::from(f))))
            }
            Content::ZeroPage => {
                buf.fill(0);
                (String::new(), None)
            }
            Content::Delta(d) => {
                xbzrle::decode(d, buf).with_context(|| {
                    format!("the XBZRLE record at {}", origin.describe().trim())
                })?;
                (
                    format!("{}-byte delta", d.len()),
                    Some(("delta_bytes", d.len() as u64)),
                )
            }
        };
        self.writes.push(PageWrite {
            origin,
            epoch,
            kind,
            detail,
            detail_json,
            page,
            after: buf.clone(),
        });
        Ok(())
    }

    /// The report: per page its writes, the same-epoch copies that differ, and a hex dump
    /// of the page as `extract` leaves it; handed to `emit` one page at a time.
    pub fn report(&self, never: &str, mut emit: impl FnMut(&str)) {
        let mut out = String::new();
        let mut by_page: Vec<Vec<&PageWrite>> = vec![Vec::new(); self.pages.len()];
        for w in &self.writes {
            by_page[w.page].push(w);
        }
        for (i, (page, mine)) in self.pages.iter().zip(by_page).enumerate() {
            emit(&out);
            out.clear();
            let offset = (self.first + i as u64) * self.page_size as u64;
            let _ = writeln!(
                out,
                "{} page {} (offset {offset:#x}): {} records",
                self.block,
                self.first + i as u64,
                mine.len()
            );
            for w in &mine {
                let line = match (self.multifd, w.origin, w.epoch) {
                    (false, Origin::Main(at), _) => format!("{at:#012x} {:<6}", w.kind),
                    (_, o, Some(e)) => format!("{} epoch {e} {:<9}", o.describe(), w.kind),
                    (_, o, None) => format!("{} {:<9}", o.describe(), w.kind),
                };
                let _ = writeln!(out, "  {line} {}", w.detail);
            }
            let open = differing_copies(&mine);
            for (epoch, _) in &open {
                let _ = writeln!(
                    out,
                    "  same epoch {epoch}, copies differ: a destination may keep either"
                );
            }
            if mine.is_empty() {
                let _ = writeln!(out, "  {never}");
                continue;
            }
            let last_epoch = mine.last().and_then(|w| w.epoch);
            let open_last = open.iter().find(|(e, _)| Some(*e) == last_epoch);
            if open_last.is_some() {
                let _ = writeln!(
                    out,
                    "  the page as `ramstream extract` leaves it (the last copy above):"
                );
            }
            out.push_str(&hex_dump(page, offset));
            for w in open_last.iter().flat_map(|(_, ws)| ws) {
                if w.after != *page {
                    let _ = writeln!(out, "  the other copy, from {}:", w.origin.describe());
                    out.push_str(&hex_dump(&w.after, offset));
                }
            }
        }
        emit(&out);
    }
}

impl ChosenPages {
    /// The report as one JSON object (`ramstream pages --json`): per page its offset, its
    /// writes (source, offset, epoch, kind, fill or delta size), the epochs whose copies
    /// differ, and the page's bytes in hex as `extract` leaves it (`null` if never written:
    /// `never` says why), with the other copies of an open last epoch.
    pub fn to_json(&self, file: &str, never: &str) -> serde_json::Value {
        let mut by_page: Vec<Vec<&PageWrite>> = vec![Vec::new(); self.pages.len()];
        for w in &self.writes {
            by_page[w.page].push(w);
        }
        let pages: Vec<serde_json::Value> = self
            .pages
            .iter()
            .zip(by_page)
            .enumerate()
            .map(|(i, (page, mine))| {
                let index = self.first + i as u64;
                let records: Vec<serde_json::Value> = mine
                    .iter()
                    .map(|w| {
                        let mut r = w.origin.to_json();
                        r["kind"] = w.kind.into();
                        if let Some(e) = w.epoch {
                            r["epoch"] = e.into();
                        }
                        if let Some((k, v)) = w.detail_json {
                            r[k] = v.into();
                        }
                        r
                    })
                    .collect();
                let open = differing_copies(&mine);
                let last_epoch = mine.last().and_then(|w| w.epoch);
                let others: Vec<serde_json::Value> = open
                    .iter()
                    .filter(|(e, _)| Some(*e) == last_epoch)
                    .flat_map(|(_, ws)| ws)
                    .filter(|w| w.after != *page)
                    .map(|w| {
                        let mut o = w.origin.to_json();
                        o["data"] = hex::encode(&w.after).into();
                        o
                    })
                    .collect();
                serde_json::json!({
                    "page": index,
                    "offset": index * self.page_size as u64,
                    "records": records,
                    "differing_epochs": open.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
                    "data": (!mine.is_empty()).then(|| hex::encode(page)),
                    "never": mine.is_empty().then_some(never),
                    "other_copies": others,
                })
            })
            .collect();
        serde_json::json!({
            "file": file,
            "block": self.block,
            "page_size": self.page_size,
            "pages": pages,
        })
    }
}

/// The epochs in which two sources (the main stream, the channels) each left a different
/// copy of the page, with those copies (each source's last write in the epoch).
fn differing_copies<'w>(writes: &[&'w PageWrite]) -> Vec<(u64, Vec<&'w PageWrite>)> {
    let mut out = Vec::new();
    let mut epochs: Vec<u64> = writes.iter().filter_map(|w| w.epoch).collect();
    epochs.dedup();
    for e in epochs {
        let mut last: Vec<&PageWrite> = Vec::new();
        for w in writes.iter().filter(|w| w.epoch == Some(e)) {
            match last
                .iter_mut()
                .find(|l| l.origin.source() == w.origin.source())
            {
                Some(l) => *l = w,
                None => last.push(w),
            }
        }
        if last.iter().any(|w| w.after != last[0].after) {
            out.push((e, last));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(id: u8, at: u64) -> Origin {
        Origin::Channel { id, at, packet: 0 }
    }

    /// Two channels leave different copies in the page's last epoch: both records, the
    /// note, the last copy (extract's) dumped first, then the other one.
    #[test]
    fn different_copies_in_the_last_epoch_are_both_dumped() {
        let mut c = ChosenPages::new("pc.ram", 0, 3, 1, 16, true);
        let (a, b) = ([0xaa; 16], [0xbb; 16]);
        c.apply(0, Origin::Main(0x40), Some(0), "ZERO", Content::Fill(0))
            .unwrap();
        c.apply(0, chan(0, 0x100), Some(2), "PAGE", Content::Data(&a))
            .unwrap();
        c.apply(0, chan(1, 0x200), Some(2), "PAGE", Content::Data(&b))
            .unwrap();
        let mut out = String::new();
        c.report("never sent", |s| out.push_str(s));
        assert!(
            out.starts_with("pc.ram page 3 (offset 0x30): 3 records\n"),
            "{out}"
        );
        assert!(out.contains("same epoch 2, copies differ: a destination may keep either"));
        let last = out.find("|................|").unwrap();
        let bb = out.find("bb bb bb").unwrap();
        let other = out
            .find("the other copy, from channel 0 0x0000000100")
            .unwrap();
        let aa = out.find("aa aa aa").unwrap();
        assert!(bb < other && other < aa && last > 0, "{out}");
    }

    /// Equal copies, or copies from one source, are no open question.
    #[test]
    fn equal_copies_or_one_source_are_not_flagged() {
        let mut c = ChosenPages::new("pc.ram", 0, 0, 1, 16, true);
        let (a, b) = ([0xaa; 16], [0xbb; 16]);
        c.apply(0, chan(0, 0x100), Some(1), "PAGE", Content::Data(&a))
            .unwrap();
        c.apply(0, chan(1, 0x200), Some(1), "PAGE", Content::Data(&a))
            .unwrap();
        c.apply(0, chan(1, 0x300), Some(2), "PAGE", Content::Data(&a))
            .unwrap();
        c.apply(0, chan(1, 0x400), Some(2), "PAGE", Content::Data(&b))
            .unwrap();
        let mut out = String::new();
        c.report("never sent", |s| out.push_str(s));
        assert!(!out.contains("copies differ"));
    }
}
