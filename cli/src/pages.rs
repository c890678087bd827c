//! `ramstream pages`: the records a stream sent for some pages of one RAM block (stream
//! offset, kind) and a hex dump of those pages as the destination ends up with them, XBZRLE
//! deltas applied in order (SPEC.md §7.3, §7.4, §7.6).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ramstream_codec::{xbzrle, Event, Events};

use crate::input::{file_options, read_stream};
use crate::multifd::recording::channel_files;
use crate::DecodeArgs;

/// Bytes per hex dump line.
const LINE: usize = 16;

/// `ramstream pages`'s arguments.
#[derive(Args, Debug)]
pub struct PagesArgs {
    /// The stream file (`.zst` files are decompressed).
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

/// One record that wrote one of the chosen pages.
struct Write {
    /// The record's stream offset.
    at: u64,
    /// PAGE, ZERO or XBZRLE.
    kind: &'static str,
    /// Which of the chosen pages (0-based).
    page: usize,
    /// XBZRLE delta length, ZERO fill byte.
    detail: String,
}

/// `ramstream pages`.
pub fn run(a: &PagesArgs) -> Result<()> {
    let bytes = read_stream(&a.file)?;
    let where_ = || a.file.display().to_string();
    if !channel_files(&a.file).is_empty() {
        bail!(
            "{}: a multifd recording: its pages are in the channel files beside it, which \
             `pages` does not read (use `ramstream extract`)",
            where_()
        );
    }
    if a.count == 0 || a.count > 1 << 16 {
        bail!("--count {} is not in 1..=65536", a.count);
    }
    let mut events = Events::new(&bytes, file_options(&a.decode));
    let mut block = None;
    let mut first = 0u64;
    let mut page_size = 0usize;
    let mut pages: Vec<Vec<u8>> = Vec::new();
    let mut writes = Vec::new();
    while let Some((at, event)) = events.next().transpose().with_context(where_)? {
        if let Event::MemSize(ms) = &event {
            if !ms.mapped_ram.is_empty() {
                bail!(
                    "{}: a mapped-ram file (SPEC.md §7.9): its pages sit at fixed file offsets, \
                     not in records; `pages` reads records (use `ramstream extract`)",
                    where_()
                );
            }
            let Some(i) = ms.blocks.iter().position(|b| b.idstr == a.block) else {
                let names: Vec<&str> = ms.blocks.iter().map(|b| b.idstr.as_str()).collect();
                bail!(
                    "{}: no RAM block {:?} (the stream has {})",
                    where_(),
                    a.block,
                    names.join(", ")
                );
            };
            page_size = events.decoder().page_size();
            let used = ms.blocks[i].used_length;
            first = a.offset / page_size as u64;
            let block_pages = used / page_size as u64;
            if first + a.count > block_pages {
                bail!(
                    "{}: pages {first}..{} are beyond block {} ({block_pages} pages)",
                    where_(),
                    first + a.count,
                    a.block
                );
            }
            block = Some(i);
            pages = vec![vec![0; page_size]; a.count as usize];
            continue;
        }
        let (addr, kind) = match &event {
            Event::Page(p) => (p.addr, "PAGE"),
            Event::Zero(z) => (z.addr, "ZERO"),
            Event::Xbzrle(x) => (x.addr, "XBZRLE"),
            Event::MultifdFlush(_) => bail!(
                "{}: at offset {at:#x}: MULTIFD_FLUSH record: a multifd migration's main \
                 stream, whose pages travel on its channels; `pages` reads no channels",
                where_()
            ),
            _ => continue,
        };
        if Some(addr.block) != block {
            continue;
        }
        let index = addr.page_index(page_size);
        if index < first || index >= first + a.count {
            continue;
        }
        let page = (index - first) as usize;
        let buf = &mut pages[page];
        let detail = match &event {
            Event::Page(p) => {
                buf.copy_from_slice(p.data);
                String::new()
            }
            Event::Zero(z) => {
                buf.fill(z.fill);
                format!("fill {:#04x}", z.fill)
            }
            Event::Xbzrle(x) => {
                xbzrle::decode(x.delta, buf)
                    .with_context(|| format!("{}: the XBZRLE record at {at:#x}", where_()))?;
                format!("{}-byte delta", x.delta.len())
            }
            _ => continue,
        };
        writes.push(Write {
            at,
            kind,
            page,
            detail,
        });
    }
    if block.is_none() {
        bail!("{}: no MEM_SIZE record names RAM blocks", where_());
    }
    bytes.check_unchanged()?;
    for (i, page) in pages.iter().enumerate() {
        let offset = (first + i as u64) * page_size as u64;
        let mine: Vec<&Write> = writes.iter().filter(|w| w.page == i).collect();
        println!(
            "{} page {} (offset {offset:#x}): {} records",
            a.block,
            first + i as u64,
            mine.len()
        );
        for w in &mine {
            println!("  {:#012x} {:<6} {}", w.at, w.kind, w.detail);
        }
        if mine.is_empty() {
            println!("  never sent: the destination keeps what it had (zeros on a fresh one)");
            continue;
        }
        print!("{}", hex_dump(page, offset));
    }
    Ok(())
}

/// `hexdump -C` style: offset, 16 bytes, ASCII; a run of lines equal to the previous one
/// is one `*` line, and then the end offset closes the dump.
pub fn hex_dump(data: &[u8], base: u64) -> String {
    let mut out = String::new();
    let mut previous: Option<&[u8]> = None;
    let mut starred = false;
    for (n, line) in data.chunks(LINE).enumerate() {
        if previous == Some(line) {
            if !starred {
                out.push_str("  *\n");
                starred = true;
            }
            continue;
        }
        previous = Some(line);
        starred = false;
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "  {:012x}  {:<47}  |{ascii}|\n",
            base + (n * LINE) as u64,
            hex.join(" ")
        ));
    }
    if starred {
        out.push_str(&format!("  {:012x}\n", base + data.len() as u64));
    }
    out
}
