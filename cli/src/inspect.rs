//! `ramstream inspect`: a human or JSON summary of a stream.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ramstream_codec::mapped_ram::{block_views, MappedRamSummary};
use ramstream_codec::summary::{StreamSummary, WriterEvidence};
use ramstream_codec::vmdesc::{check_splits, SplitCheck, VmDescription};
use ramstream_codec::{Event, Events, RamBlock};
use ramstream_migrate::multifd::{SyncMode, SyncPoints};
use serde::Serialize;

use crate::input::{file_options, read_stream};
use crate::multifd::recording::{channel_files, read_channel};
use crate::multifd::tap::{ChannelCounts, ChannelTap, MainFacts};
use crate::DecodeArgs;

/// `ramstream inspect`'s arguments.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The stream file (`.zst`: decompressed); `-` reads standard input.
    pub file: PathBuf,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Print every device section's fields, decoded through the VMDESCRIPTION (with
    /// --json: one object keyed `"idstr (section_id)"`, like analyze-migration.py -d state).
    #[arg(long, conflicts_with = "vmdesc")]
    pub devices: bool,
    /// Print the VMDESCRIPTION (with --json: its JSON as the stream carries it).
    #[arg(long)]
    pub vmdesc: bool,
    /// Also draw every RAM block's pages, coloured by what the stream did with them, as an
    /// SVG file.
    #[arg(long, value_name = "SVG")]
    pub map: Option<PathBuf>,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// The JSON document `inspect --json` prints.
#[derive(Serialize)]
struct Report<'a> {
    file: String,
    dialect: &'a str,
    #[serde(flatten)]
    summary: &'a StreamSummary,
    /// The device-section splits checked against the VMDESCRIPTION (absent without one).
    vmdesc_splits: Option<&'a SplitCheck>,
    /// A mapped-ram file's layout: per block its header, bitmap and pages present (SPEC.md
    /// §7.9); absent for a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    mapped_ram: Option<&'a MappedRamSummary>,
    /// The oldest QEMU that can have written the stream, and why (SPEC.md §8.2).
    min_writer: Option<WriterEvidence>,
    /// A multifd recording's channels, from the files beside the stream (SPEC.md §14.9);
    /// absent without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    multifd: Option<&'a MultifdInspection>,
}

/// A multifd recording's channels (SPEC.md §14.9).
#[derive(Debug, Serialize)]
pub struct MultifdInspection {
    /// How the main stream synchronises with the channels: `per-section` (every ram EOS,
    /// QEMU 7.2) or `per-round` (MULTIFD_FLUSH records, 8.1+) (SPEC.md §14.5).
    pub sync_mode: Option<&'static str>,
    /// The main stream's sync points; every channel has as many SYNC packets.
    pub sync_points: u64,
    /// The migration's uuid (every channel's), hex.
    pub uuid: Option<String>,
    /// Per channel file.
    pub channels: Vec<ChannelFile>,
}

/// One channel file of a multifd recording.
#[derive(Debug, Serialize)]
pub struct ChannelFile {
    pub file: String,
    #[serde(flatten)]
    pub counts: ChannelCounts,
}

/// What `inspect` learns from a file.
pub struct Inspection {
    /// The stream summary.
    pub summary: StreamSummary,
    /// The device-section splits checked against the VMDESCRIPTION.
    pub splits: Option<SplitCheck>,
    /// The mapped-ram layout, for a mapped-ram file.
    pub mapped_ram: Option<MappedRamSummary>,
    /// The main stream's MEM_SIZE blocks and page bits, for its channels.
    pub blocks: Option<(Vec<RamBlock>, u32)>,
    /// The main stream's sync points, were it a multifd migration's.
    pub sync: SyncPoints,
    /// The configuration's uuid.
    pub uuid: Option<[u8; 16]>,
}

/// Decodes `bytes` into a summary, failing with the decoder's error; with a VMDESCRIPTION,
/// also checks every device-section split against it (SPEC.md §5.2). A mapped-ram file
/// (its configuration lists `mapped-ram`) is read as such, and its layout summarised
/// (SPEC.md §7.9).
pub fn summarise(
    bytes: &[u8],
    decode: &DecodeArgs,
    mut bar: crate::progress::Bytes,
) -> Result<Inspection> {
    let opts = file_options(decode);
    let file_offset = opts.file_offset;
    let mut events = Events::new(bytes, opts);
    let mut mapped_ram = None;
    let mut summary = StreamSummary::default();
    summary.balloon.dialect = Some(decode.dialect.name().to_string());
    let mut devices = Vec::new();
    let mut vmdesc = None;
    let mut blocks = None;
    let mut sync = SyncPoints::new();
    let mut uuid = None;
    while let Some((at, event)) = events.next().transpose()? {
        bar.at(at);
        summary.observe(at, &event);
        sync.observe(&event);
        match &event {
            Event::MemSize(ms) if blocks.is_none() => {
                blocks = Some((ms.blocks.clone(), events.decoder().page_bits()))
            }
            Event::Configuration(c) => uuid = c.uuid,
            _ => {}
        }
        if let Event::MemSize(ms) = &event {
            if !ms.mapped_ram.is_empty() {
                let page_size = events.decoder().page_size();
                let blocks = block_views(bytes, file_offset, ms, page_size)?;
                mapped_ram = Some(MappedRamSummary::of(&blocks));
            }
        }
        match event {
            Event::Device(d) => devices.push(d),
            Event::VmDescription(j) => vmdesc = Some(j),
            _ => {}
        }
    }
    summary.stream_len = events.consumed() as u64;
    let splits = match vmdesc {
        Some(j) => Some(check_splits(
            &VmDescription::parse(j).context("the VMDESCRIPTION trailer")?,
            &devices,
        )),
        None => None,
    };
    Ok(Inspection {
        summary,
        splits,
        mapped_ram,
        blocks,
        sync,
        uuid,
    })
}

/// The channel files beside recording `file`, decoded against its main stream (SPEC.md
/// §14.9): each must name its own id and the migration's uuid; `None` without any.
pub fn inspect_channels(file: &Path, main: &Inspection) -> Result<Option<MultifdInspection>> {
    let files = channel_files(file)?;
    if files.is_empty() {
        return Ok(None);
    }
    let facts = MainFacts::new();
    if let Some(uuid) = main.uuid {
        facts.set_uuid(uuid);
    }
    let limits = ramstream_codec::Limits::default();
    match &main.blocks {
        Some((blocks, bits)) => facts.set_blocks(*bits, blocks, &limits),
        None => anyhow::bail!(
            "{}: no MEM_SIZE record for its multifd channels",
            file.display()
        ),
    }
    let mut channels = Vec::new();
    for (id, path) in files {
        let bytes = read_channel(&path)?;
        let mut tap = ChannelTap::new(std::sync::Arc::clone(&facts));
        tap.feed(&bytes)
            .and_then(|()| tap.finish())
            .with_context(|| path.display().to_string())?;
        bytes.check_unchanged()?;
        if tap.counts.id != Some(id) {
            anyhow::bail!(
                "{}: its initial packet names channel {:?}, not {id}",
                path.display(),
                tap.counts.id
            );
        }
        channels.push(ChannelFile {
            file: path.display().to_string(),
            counts: tap.counts,
        });
    }
    Ok(Some(MultifdInspection {
        sync_mode: main.sync.mode().map(|m| match m {
            SyncMode::PerSection => "per-section",
            SyncMode::PerRound => "per-round",
        }),
        sync_points: main.sync.count(),
        uuid: channels.first().and_then(|c| c.counts.uuid.clone()),
        channels,
    }))
}

/// `ramstream inspect`.
pub fn run(a: &InspectArgs) -> Result<()> {
    let (file, json, decode) = (a.file.as_path(), a.json, &a.decode);
    let bytes = read_stream(file)?;
    if let Some(out) = &a.map {
        let name = file
            .file_name()
            .unwrap_or(file.as_os_str())
            .to_string_lossy();
        crate::map::write(&bytes, decode, file, &name, out)
            .with_context(|| format!("{}", file.display()))?;
    }
    if a.devices {
        return crate::inspect_devices::run(&bytes, decode, json)
            .with_context(|| format!("{}", file.display()));
    }
    if a.vmdesc {
        return crate::inspect_vmdesc::run(&bytes, decode, json)
            .with_context(|| format!("{}", file.display()));
    }
    let bar = crate::progress::Bytes::new("decoding", Some(bytes.len() as u64), json);
    let inspection = summarise(&bytes, decode, bar)
        .with_context(|| format!("{}", file.display()))
        .map_err(|e| crate::failure::retry_dialects(e, &bytes, decode))?;
    bytes.check_unchanged()?;
    let multifd = inspect_channels(file, &inspection)?;
    let Inspection {
        summary,
        splits,
        mapped_ram,
        ..
    } = inspection;
    if json {
        let report = Report {
            file: file.display().to_string(),
            dialect: decode.dialect.name(),
            summary: &summary,
            vmdesc_splits: splits.as_ref(),
            mapped_ram: mapped_ram.as_ref(),
            min_writer: summary.min_writer_version(),
            multifd: multifd.as_ref(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_human(file, &summary, decode);
    if let Some(m) = &mapped_ram {
        print_mapped_ram(m);
    }
    if let Some(c) = &splits {
        print_splits(c);
    }
    if let Some(m) = &multifd {
        print_multifd(m);
    }
    Ok(())
}

/// A multifd recording's channels: one line each.
fn print_multifd(m: &MultifdInspection) {
    println!(
        "  multifd: {} channels, {} sync points ({}), uuid {}",
        m.channels.len(),
        m.sync_points,
        m.sync_mode.unwrap_or("?"),
        m.uuid.as_deref().unwrap_or("?")
    );
    println!(
        "    {:>3} {:>12} {:>8} {:>8} {:>8} {:>6}  file",
        "id", "bytes", "packets", "pages", "zero", "SYNC"
    );
    for c in &m.channels {
        let n = &c.counts;
        println!(
            "    {:>3} {:>12} {:>8} {:>8} {:>8} {:>6}  {}",
            n.id.map_or("?".into(), |i| i.to_string()),
            n.bytes,
            n.packets,
            n.pages,
            n.zero_pages,
            n.syncs,
            c.file
        );
    }
}

fn print_human(file: &Path, s: &StreamSummary, decode: &DecodeArgs) {
    println!("{}: {} bytes", file.display(), s.stream_len);
    println!(
        "  stream version {}, machine type {}, dialect {}",
        s.stream_version.unwrap_or(0),
        s.machine_type.as_deref().unwrap_or("(no configuration)"),
        decode.dialect
    );
    if let Some(w) = s.min_writer_version() {
        println!(
            "  written by QEMU {}.{} or later ({})",
            w.version.0, w.version.1, w.because
        );
    }
    if !s.capabilities.is_empty() {
        println!("  capabilities: {}", s.capabilities.join(", "));
    }
    for c in &s.commands {
        println!(
            "  command {} ({} bytes) at {:#x}",
            c.command, c.len, c.offset
        );
    }
    let r = &s.ram;
    println!(
        "  ram: {} sections ({} PART), {} blocks",
        r.sections,
        r.part_sections,
        r.blocks.len()
    );
    println!(
        "  records: {} PAGE, {} ZERO, {} XBZRLE, {} EOS, {} MEM_SIZE, {} with CONTINUE{}{}",
        r.records.page,
        r.records.zero,
        r.records.xbzrle,
        r.records.eos,
        r.records.mem_size,
        r.records.continued,
        if r.records.multifd_flush > 0 {
            format!(", {} MULTIFD_FLUSH", r.records.multifd_flush)
        } else {
            String::new()
        },
        if r.records.balloon > 0 {
            format!(", {} BALLOON", r.records.balloon)
        } else {
            String::new()
        },
    );
    println!(
        "  {:<28} {:>14} {:>8} {:>8} {:>8}",
        "block", "used_length", "page", "zero", "xbzrle"
    );
    for b in &r.blocks {
        let c = r.per_block.get(&b.idstr).cloned().unwrap_or_default();
        println!(
            "  {:<28} {:>#14x} {:>8} {:>8} {:>8}",
            b.idstr, b.used_length, c.page, c.zero, c.xbzrle
        );
    }
    print_balloon(s);
    println!("  devices: {} sections", s.devices.len());
    for d in &s.devices {
        println!(
            "    {:<32} inst {:<3} ver {:<3} id {:<4} {:>7} bytes at {:#x}",
            d.idstr, d.instance_id, d.version_id, d.section_id, d.length, d.offset
        );
    }
    println!(
        "  EOF: {}, VMDESCRIPTION: {}",
        if s.eof { "yes" } else { "no" },
        s.vmdesc_len
            .map(|l| format!("{l} bytes"))
            .unwrap_or_else(|| "absent".into())
    );
}

/// The balloon part (SPEC.md §9): dialect, records, ballooned pages per block.
fn print_balloon(s: &StreamSummary) {
    let b = &s.balloon;
    if b.records.is_empty() {
        return;
    }
    println!(
        "  balloon ({}): {} records",
        b.dialect.as_deref().unwrap_or("?"),
        b.records.len()
    );
    for r in &b.records {
        let what = match (&r.block, r.kolhe) {
            (Some(block), _) => format!(
                "block {block}{}",
                if r.continued { " (CONTINUE)" } else { "" }
            ),
            (None, Some(k)) => format!(
                "bitmap {} pages, start {}, limit {}",
                k.bitmap_pages, k.start, k.limit
            ),
            (None, None) => String::new(),
        };
        println!(
            "    {:#010x} {:<20} {} +{} runs/{} pages -{} runs/{} pages",
            r.offset,
            r.kind,
            what,
            r.inflate_runs,
            r.inflate_pages,
            r.deflate_runs,
            r.deflate_pages
        );
    }
    for (idstr, n) in &b.ballooned_pages {
        println!("    {idstr:<28} {n:>10} pages ballooned");
    }
}

fn print_splits(c: &SplitCheck) {
    println!(
        "  device splits: {} confirmed by the VMDESCRIPTION, {} disagree, {} unchecked",
        c.confirmed,
        c.disagreements.len(),
        c.unchecked.len()
    );
    for (what, list) in [("DISAGREES", &c.disagreements), ("unchecked", &c.unchecked)] {
        for f in list {
            println!(
                "    {what}: {} instance {} (body at {:#x}, {} bytes): {}",
                f.idstr, f.instance_id, f.body_offset, f.body_len, f.reason
            );
        }
    }
}

/// The mapped-ram layout (SPEC.md §7.9): per block its header, bitmap, pages region and
/// where the stream goes on.
fn print_mapped_ram(m: &MappedRamSummary) {
    println!(
        "  mapped-ram: {} pages present, {} bitmap bytes",
        m.pages_present, m.bitmap_bytes
    );
    println!(
        "    {:<24} {:>10} {:>3} {:>5} {:>12} {:>7} {:>12} {:>12} {:>15}",
        "block", "header", "ver", "page", "bitmap", "bytes", "pages", "next", "present/pages"
    );
    for b in &m.blocks {
        println!(
            "    {:<24} {:>#10x} {:>3} {:>5} {:>#12x} {:>7} {:>#12x} {:>#12x} {:>15}{}",
            b.idstr,
            b.header_offset,
            b.version,
            b.page_size,
            b.bitmap_offset,
            b.bitmap_len,
            b.pages_offset,
            b.next_offset,
            format!("{}/{}", b.pages_present, b.pages),
            if b.ignored { " (x-ignore-shared)" } else { "" }
        );
    }
}
