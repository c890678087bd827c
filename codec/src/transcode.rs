//! Whole-stream transformations shared by the tools: rebuild RAM, re-encode (SPEC.md §7.8).

use ramstream_spec::config::capability;
use ramstream_spec::stream::SectionType;

use crate::addr::PageAddr;
use crate::decode_all;
use crate::encoder::Encoder;
use crate::error::{Error, ErrorKind};
use crate::event::{Configuration, Event};
use crate::events::Events;
use crate::image::{apply_event, RamImage};
use crate::kind::RecordKind;
use crate::mapped_ram::block_views;
use crate::options::DecoderOptions;
use crate::sink::{Sink, Vectored};

/// How to re-encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every record as decoded: the output equals the input.
    Verbatim,
    /// XBZRLE records re-derived with ramstream's encoder from the page the destination held
    /// before and the page after; for a QEMU stream the output still equals the input.
    RecomputeXbzrle,
    /// A fresh single-pass `ram` section from the final RAM (ZERO for zero pages, PAGE
    /// otherwise); every other section verbatim.
    FromRam,
}

/// Rebuilds the RAM of a complete stream, or of a mapped-ram file when `opts` read them
/// ([`MappedRam::Read`](crate::MappedRam::Read)): its pages are then taken from each
/// block's bitmap and pages region when the MEM_SIZE record is decoded (SPEC.md §7.9).
///
/// ```
/// use ramstream_codec::transcode::rebuild;
/// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let image = rebuild(stream, &Default::default()).unwrap();
/// assert!(image.blocks().is_empty());
/// ```
pub fn rebuild(bytes: &[u8], opts: &DecoderOptions) -> Result<RamImage, Error> {
    let mut events = Events::new(bytes, opts.clone());
    let mut image = RamImage::new(events.decoder().page_size());
    while let Some((at, event)) = events.next().transpose()? {
        if let Event::MemSize(ms) = &event {
            let page_size = events.decoder().page_size();
            if image.page_size() != page_size {
                image = RamImage::new(page_size);
            }
            image.set_blocks(&ms.blocks);
            for (i, b) in block_views(bytes, opts.file_offset, ms, page_size)?
                .iter()
                .enumerate()
            {
                b.apply_to(&mut image, i);
            }
        }
        apply_event(&mut image, &event, at)?;
    }
    Ok(image)
}

/// Re-encodes a complete stream.
///
/// A mapped-ram file (read when `opts` say so, SPEC.md §7.9) converts only with
/// [`Mode::FromRam`], into an ordinary single-pass stream without the `mapped-ram`
/// capability. The other modes refuse it: its bitmaps and pages lie in file regions that
/// are no records (with never-written gaps, and stale bytes behind cleared bitmap bits that
/// no decoded event carries), so re-encoding the records cannot give the file back.
pub fn reencode(bytes: &[u8], mode: Mode, opts: &DecoderOptions) -> Result<Vec<u8>, Error> {
    let events = decode_all(bytes, opts.clone())?;
    let page_bits = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Configuration(c) => c.target_page_bits,
            _ => None,
        })
        .unwrap_or(opts.default_page_bits);
    let mapped_ram = events.iter().find_map(|(o, e)| match e {
        Event::MemSize(ms) if !ms.mapped_ram.is_empty() => Some(*o),
        _ => None,
    });
    if let (Some(offset), Mode::Verbatim | Mode::RecomputeXbzrle) = (mapped_ram, mode) {
        return Err(Error::new(
            offset,
            ErrorKind::Encode {
                reason: "a mapped-ram file re-encodes only from its RAM (Mode::FromRam, \
                         `ramstream reencode --from-ram`): its bitmaps and pages lie in file \
                         regions that are no records, with never-written gaps and possibly \
                         stale bytes behind cleared bitmap bits, so re-encoding the records \
                         cannot give the file back"
                    .into(),
            },
        )
        .in_record(RecordKind::MemSize));
    }
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
        Mode::FromRam => from_ram(&events, page_bits, bytes, opts.file_offset),
    }
}

fn recompute_xbzrle(events: &[(u64, Event<'_>)], page_bits: u32) -> Result<Vec<u8>, Error> {
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
            let n = match crate::xbzrle::encode(&old, &new, &mut scratch) {
                Ok(crate::xbzrle::Encoded::Delta(n)) => n,
                other => {
                    return Err(Error::new(
                        *offset,
                        ErrorKind::Encode {
                            reason: format!(
                                "ramstream's XBZRLE encoder gives {other:?} for this record"
                            ),
                        },
                    )
                    .in_record(RecordKind::Xbzrle))
                }
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

/// `bytes` (whose first byte is at `file_offset`) holds the pages of a mapped-ram file.
fn from_ram(
    events: &[(u64, Event<'_>)],
    page_bits: u32,
    bytes: &[u8],
    file_offset: u64,
) -> Result<Vec<u8>, Error> {
    let page_size = 1usize << page_bits;
    let mut image = RamImage::new(page_size);
    for (offset, ev) in events {
        if let Event::MemSize(ms) = ev {
            image.set_blocks(&ms.blocks);
            for (i, b) in block_views(bytes, file_offset, ms, page_size)?
                .iter()
                .enumerate()
            {
                b.apply_to(&mut image, i);
            }
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
        .ok_or_else(|| {
            Error::new(
                0,
                ErrorKind::Encode {
                    reason: "the stream has no MEM_SIZE record".into(),
                },
            )
        })?;

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
    let write_ram = |enc: &mut Encoder, out: &mut Vectored<'_>, id: u32| -> Result<(), Error> {
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
            // The output is a stream, so it must not announce mapped-ram: a destination
            // compares that capability with its own (SPEC.md §3.3, §7.9).
            Event::Configuration(c) if c.has_capability(capability::MAPPED_RAM) => {
                let caps: Vec<&str> = c
                    .capabilities
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|n| *n != capability::MAPPED_RAM)
                    .collect();
                let stream = Configuration {
                    // QEMU writes the subsection only when a validated capability is on.
                    capabilities: (!caps.is_empty()).then_some(caps),
                    ..c.clone()
                };
                enc.event(&Event::Configuration(stream), &mut out)?;
            }
            Event::SectionStart(h) => {
                ram_id = Some(h.section_id);
                enc.section_header(h, &mut out)?;
                enc.mem_size(&blocks, &mut out)?;
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
