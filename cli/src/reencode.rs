//! `ramstream reencode`: decode a stream and encode it again.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ramstream_codec::{
    apply_event, decode_all, Encoder, Event, PageAddr, RamImage, Sink, Vectored,
};
use ramstream_spec::stream::SectionType;

use crate::input::read_stream;
use crate::DecodeArgs;

/// How to re-encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every record as decoded: the output equals the input.
    Verbatim,
    /// XBZRLE records re-derived with ramstream's encoder.
    RecomputeXbzrle,
    /// A fresh single-pass `ram` section from the final RAM.
    FromRam,
}

pub fn run(input: &Path, output: &Path, mode: Mode, decode: &DecodeArgs) -> Result<()> {
    let bytes = read_stream(input)?;
    let out = reencode(&bytes, mode, decode).with_context(|| format!("{}", input.display()))?;
    let tmp = output.with_extension("partial");
    std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output)?;
    eprintln!(
        "wrote {} bytes to {} ({} bytes in)",
        out.len(),
        output.display(),
        bytes.len()
    );
    Ok(())
}

/// Re-encodes a complete stream.
pub fn reencode(bytes: &[u8], mode: Mode, decode: &DecodeArgs) -> Result<Vec<u8>> {
    let events = decode_all(bytes, decode.options())?;
    let page_bits = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Configuration(c) => c.target_page_bits,
            _ => None,
        })
        .unwrap_or(decode.options().default_page_bits);
    match mode {
        Mode::Verbatim => {
            let mut enc = Encoder::new(page_bits);
            let mut out = Vectored::default();
            for (_, ev) in &events {
                enc.event(ev, &mut out)?;
            }
            Ok(out.to_vec())
        }
        Mode::RecomputeXbzrle => recompute_xbzrle(&events, page_bits),
        Mode::FromRam => from_ram(&events, page_bits),
    }
}

fn recompute_xbzrle(events: &[(u64, Event<'_>)], page_bits: u32) -> Result<Vec<u8>> {
    let page_size = 1usize << page_bits;
    let mut image = RamImage::new(page_size);
    let mut enc = Encoder::new(page_bits);
    let mut out = Vec::new();
    let mut scratch = vec![0u8; page_size];
    for (offset, ev) in events {
        if let Event::MemSize(ms) = ev {
            image.set_blocks(&ms.blocks);
        }
        if let Event::Xbzrle(x) = ev {
            let old = image.page(x.addr).into_owned();
            apply_event(&mut image, ev, *offset)?;
            let new = image.page(x.addr);
            let n = match ramstream_codec::xbzrle::encode(&old, &new, &mut scratch)? {
                ramstream_codec::xbzrle::Encoded::Delta(n) => n,
                other => bail!(
                    "at offset {offset:#x}: QEMU sent an XBZRLE record where ramstream's encoder gives {other:?}"
                ),
            };
            let mut rec = *x;
            rec.delta = &scratch[..n];
            enc.event(&Event::Xbzrle(rec), &mut out)?;
            continue;
        }
        apply_event(&mut image, ev, *offset)?;
        enc.event(ev, &mut out)?;
    }
    Ok(out)
}

fn from_ram(events: &[(u64, Event<'_>)], page_bits: u32) -> Result<Vec<u8>> {
    let page_size = 1usize << page_bits;
    let mut image = RamImage::new(page_size);
    for (offset, ev) in events {
        if let Event::MemSize(ms) = ev {
            image.set_blocks(&ms.blocks);
        }
        apply_event(&mut image, ev, *offset)?;
    }
    let blocks = events
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::MemSize(ms) => Some(ms.blocks.clone()),
            _ => None,
        })
        .context("the stream has no MEM_SIZE record")?;

    let mut enc = Encoder::new(page_bits);
    let mut out = Vectored::default();
    let mut ram_id = None;
    let mut in_ram = false;
    let mut ram_written = false;
    let pages: Vec<(PageAddr, Vec<u8>)> = image
        .blocks()
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            (0..b.used_length / page_size as u64).map(move |p| PageAddr {
                block: i,
                offset: p * page_size as u64,
            })
        })
        .map(|a| (a, image.page(a).into_owned()))
        .collect();
    let write_ram = |enc: &mut Encoder, out: &mut Vectored<'_>, id: u32| -> Result<()> {
        enc.section_part(SectionType::PART, id, out);
        for (addr, data) in &pages {
            if data.iter().all(|b| *b == 0) {
                enc.zero(*addr, 0, out)?;
            } else {
                // Copied into the arena: these pages are rebuilt, not borrowed from input.
                let mut tmp = Vec::new();
                enc.page(*addr, data, &mut tmp)?;
                out.put(&tmp);
            }
        }
        enc.eos(out);
        enc.footer(id, out);
        enc.section_part(SectionType::END, id, out);
        enc.eos(out);
        enc.footer(id, out);
        Ok(())
    };
    for (_, ev) in events {
        match ev {
            Event::SectionStart(h) => {
                ram_id = Some(h.section_id);
                enc.section_header(h, &mut out);
                enc.mem_size(&blocks, &mut out);
                enc.eos(&mut out);
                enc.footer(h.section_id, &mut out);
                in_ram = true;
            }
            Event::SectionPart { .. } => in_ram = true,
            Event::Footer { .. } if in_ram => in_ram = false,
            _ if in_ram => {}
            Event::Device(_) | Event::Eof if !ram_written => {
                if let Some(id) = ram_id {
                    write_ram(&mut enc, &mut out, id)?;
                }
                ram_written = true;
                enc.event(ev, &mut out)?;
            }
            _ => enc.event(ev, &mut out)?,
        }
    }
    Ok(out.to_vec())
}
