//! `ramstream pages`: the records a stream sent for some pages of one RAM block (stream
//! offset, kind) and a hex dump of those pages as the destination ends up with them, XBZRLE
//! deltas applied in order (SPEC.md §7.3, §7.4, §7.6). A multifd recording's channel pages
//! are listed with their channel, offset and epoch (SPEC.md §14.9), a mapped-ram file's
//! pages with their file offset (SPEC.md §7.9).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ramstream_codec::mapped_ram::block_views;
use ramstream_codec::{Event, Events, MemSize};
use ramstream_spec::mapped_ram::page_present;

use crate::input::{file_options, read_stream};
use crate::multifd::recording::channel_path;
use crate::multifd::replay::{ChannelPage, Recording, Step};
use crate::page_writes::{ChosenPages, Content, Origin};
use crate::DecodeArgs;

/// `ramstream pages`'s arguments.
#[derive(Args, Debug)]
pub struct PagesArgs {
    /// The stream file (`.zst` files are decompressed): a stream, a mapped-ram file, or the
    /// main stream of a multifd recording whose channels are beside it (`FILE.multifd-<id>`).
    pub file: PathBuf,
    /// The RAM block's idstr, e.g. `pc.ram`.
    #[arg(long)]
    pub block: String,
    /// Byte offset of the first page in the block (decimal or 0x hex; rounded down to a
    /// page).
    #[arg(long, default_value = "0", value_parser = parse_number)]
    pub offset: u64,
    /// How many pages to show.
    #[arg(long, default_value_t = 1, value_parser = parse_number)]
    pub count: u64,
    /// Print one JSON object (the pages, their records, their bytes in hex) instead of
    /// text; an error is then a JSON object too.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// A decimal or `0x` hexadecimal number.
fn parse_number(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number: {e}"))
}

/// `ramstream pages`.
pub fn run(a: &PagesArgs) -> Result<()> {
    let bytes = read_stream(&a.file)?;
    let where_ = a.file.display().to_string();
    if a.count == 0 || a.count > 1 << 16 {
        bail!("--count {} is not in 1..=65536", a.count);
    }
    let opts = file_options(&a.decode);
    let file_offset = opts.file_offset;
    let recording = Recording::open(&a.file)?;
    let mut s = Walk {
        a,
        input: &bytes,
        file_offset,
        multifd: recording.is_some(),
        chosen: None,
        mapped: false,
        ignored: false,
    };
    let walked = match &recording {
        None => (|| {
            let mut events = Events::new(&bytes, opts);
            while let Some((at, event)) = events.next().transpose()? {
                let page_size = events.decoder().page_size();
                s.main(at, None, page_size, &event)?;
            }
            Ok(())
        })(),
        Some(r) => r.replay(&bytes, opts, |step| match step {
            Step::Main {
                at,
                epoch,
                page_size,
                event,
            } => s.main(at, Some(epoch), page_size, event),
            Step::Channel(p) => s.channel(&p),
        }),
    };
    walked.context(where_.clone())?;
    let (mapped, ignored) = (s.mapped, s.ignored);
    let Some(chosen) = s.chosen else {
        bail!("{where_}: no MEM_SIZE record names RAM blocks");
    };
    bytes.check_unchanged()?;
    let never = if ignored {
        "not in the file: x-ignore-shared leaves the block out (SPEC.md §7.9); the destination \
         keeps its own memory"
    } else if mapped {
        "not present: zero (its bitmap bit is clear, SPEC.md §7.9)"
    } else {
        "never sent: the destination keeps what it had (zeros on a fresh one)"
    };
    if a.json {
        println!("{}", chosen.to_json(&where_, never));
    } else {
        chosen.report(never, |s| print!("{s}"));
    }
    Ok(())
}

/// One pass over the input, collecting the writes of the chosen pages.
struct Walk<'w> {
    a: &'w PagesArgs,
    /// The stream (for a mapped-ram file's regions) and its first byte's file offset.
    input: &'w [u8],
    file_offset: u64,
    multifd: bool,
    chosen: Option<ChosenPages>,
    mapped: bool,
    /// The chosen block is a mapped-ram file's block `x-ignore-shared` leaves out.
    ignored: bool,
}

impl Walk<'_> {
    /// A main-stream event (`epoch`: its sync points, in a multifd recording).
    fn main(
        &mut self,
        at: u64,
        epoch: Option<u64>,
        page_size: usize,
        event: &Event<'_>,
    ) -> Result<()> {
        if let Event::MemSize(ms) = event {
            if self.chosen.is_none() {
                self.chosen = Some(choose(self.a, ms, page_size, self.multifd)?);
            }
            if !ms.mapped_ram.is_empty() {
                self.mapped = true;
                if let Some(c) = self.chosen.as_mut() {
                    self.ignored |= apply_mapped(c, self.input, self.file_offset, ms)?;
                }
            }
            return Ok(());
        }
        let (addr, kind, content) = match event {
            Event::Page(p) => (p.addr, "PAGE", Content::Data(p.data)),
            Event::Zero(z) => (z.addr, "ZERO", Content::Fill(z.fill)),
            Event::Xbzrle(x) => (x.addr, "XBZRLE", Content::Delta(x.delta)),
            Event::MultifdFlush(_) if !self.multifd && !self.mapped => bail!(
                "at offset {at:#x}: MULTIFD_FLUSH record: a multifd migration's main \
                 stream, whose pages are in its channels; none of them is beside it ({})",
                channel_path(&self.a.file, 0).display()
            ),
            _ => return Ok(()),
        };
        let Some(c) = self.chosen.as_mut() else {
            return Ok(());
        };
        if let Some(page) = c.which(addr.block, addr.offset) {
            c.apply(page, Origin::Main(at), epoch, kind, content)?;
        }
        Ok(())
    }

    /// A page of a channel packet.
    fn channel(&mut self, p: &ChannelPage<'_>) -> Result<()> {
        let Some(c) = self.chosen.as_mut() else {
            return Ok(());
        };
        let Some(page) = c.which(p.addr.block, p.addr.offset) else {
            return Ok(());
        };
        let origin = Origin::Channel {
            id: p.id,
            at: p.at,
            packet: p.packet,
        };
        let (kind, content) = match p.data {
            Some(d) => ("PAGE", Content::Data(d)),
            None => ("zero page", Content::ZeroPage),
        };
        c.apply(page, origin, Some(p.epoch), kind, content)
    }
}

/// The chosen pages of the block `a` names, checked against the MEM_SIZE record `ms`.
fn choose(a: &PagesArgs, ms: &MemSize, page_size: usize, multifd: bool) -> Result<ChosenPages> {
    let Some(i) = ms.blocks.iter().position(|b| b.idstr == a.block) else {
        let names: Vec<&str> = ms.blocks.iter().map(|b| b.idstr.as_str()).collect();
        bail!(
            "no RAM block {:?} (the stream has {})",
            a.block,
            names.join(", ")
        );
    };
    let first = a.offset / page_size as u64;
    let block_pages = ms.blocks[i].used_length / page_size as u64;
    if first + a.count > block_pages {
        bail!(
            "pages {first}..{} are beyond block {} ({block_pages} pages)",
            first + a.count,
            a.block
        );
    }
    Ok(ChosenPages::new(
        &a.block, i, first, a.count, page_size, multifd,
    ))
}

/// A mapped-ram MEM_SIZE (SPEC.md §7.9): the chosen pages its bitmap marks present, as
/// writes from their file offsets. Returns whether the chosen block is left out of the
/// file (`x-ignore-shared`).
fn apply_mapped(c: &mut ChosenPages, input: &[u8], file_offset: u64, ms: &MemSize) -> Result<bool> {
    let views = block_views(input, file_offset, ms, c.page_size)?;
    let Some(view) = views.get(c.index) else {
        return Ok(false);
    };
    if view.is_ignored() {
        return Ok(true);
    }
    let ps = c.page_size as u64;
    for page in 0..c.len() {
        let n = c.first + page as u64;
        if !page_present(view.bitmap, n) {
            continue;
        }
        let Some(data) = view.pages.get((n * ps) as usize..((n + 1) * ps) as usize) else {
            continue;
        };
        let at = view.header.pages_offset + n * ps;
        let detail = Content::Data(data);
        c.apply(page, Origin::File(at), None, "PAGE", detail)?;
    }
    Ok(false)
}
