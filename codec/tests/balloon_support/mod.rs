//! Hand-built balloon streams (SPEC.md §9): the golden vectors' builders and helpers for the
//! negative tests.

#![allow(dead_code)]

use ramstream_codec::balloon::{BalloonMapKind, KolheBalloon, PageRun};
use ramstream_codec::{
    decode_all, Configuration, DecoderOptions, Encoder, Error, Event, PageAddr, RamBlock,
    SectionHeader,
};
use ramstream_spec::config::capability::RAMSTREAM_BALLOON_V1;
use ramstream_spec::stream::SectionType;
use ramstream_spec::Dialect;

pub const RAM_ID: u32 = 2;

fn block(idstr: &str, pages: u64) -> RamBlock {
    RamBlock {
        idstr: idstr.into(),
        used_length: pages << 12,
        page_size: None,
        mr_addr: None,
    }
}

/// The v1 vector's blocks: 256 + 4 pages.
pub fn v1_blocks() -> Vec<RamBlock> {
    vec![block("pc.ram", 256), block("/rom@etc/acpi/tables", 4)]
}

/// The kolhe-2016 vector's blocks: 12 + 4 pages, so the bitmap holds 16 = 0x10 pages, which
/// read as a record word is EOS.
pub fn kolhe_blocks() -> Vec<RamBlock> {
    vec![block("pc.ram", 12), block("/rom@etc/acpi/tables", 4)]
}

pub fn page(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        .collect()
}

pub fn at(block: usize, page: u64) -> PageAddr {
    PageAddr {
        block,
        offset: page << 12,
    }
}

/// Header, configuration (listing `caps`), `ram` START and MEM_SIZE.
pub fn prelude(enc: &mut Encoder, out: &mut Vec<u8>, caps: Option<Vec<&str>>, blocks: &[RamBlock]) {
    enc.header(out);
    enc.configuration(
        &Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: caps,
            uuid: None,
        },
        out,
    )
    .unwrap();
    enc.section_header(&SectionHeader::ram_start(RAM_ID), out)
        .unwrap();
    enc.mem_size(blocks, out).unwrap();
}

pub fn end_section(enc: &mut Encoder, out: &mut Vec<u8>) {
    enc.eos(out);
    enc.footer(RAM_ID, out);
}

/// `balloon-v1`: the extension announced, a full map in START, incremental records (one with
/// CONTINUE, one naming another block) among page records in PART and END.
pub fn v1_stream() -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    prelude(
        &mut enc,
        &mut out,
        Some(vec![RAMSTREAM_BALLOON_V1]),
        &v1_blocks(),
    );
    enc.balloon_v1(
        0,
        BalloonMapKind::FullMap,
        &[PageRun::new(16, 48), PageRun::new(100, 100)],
        &[],
        &mut out,
    )
    .unwrap();
    end_section(&mut enc, &mut out);

    let p = page(7);
    enc.section_part(SectionType::PART, RAM_ID, &mut out);
    enc.page(at(0, 0), &p, &mut out).unwrap();
    enc.zero(at(0, 1), 0, &mut out).unwrap();
    // Same block as the ZERO before: CONTINUE, no idstr.
    enc.balloon_v1(
        0,
        BalloonMapKind::Incremental,
        &[PageRun::new(64, 4), PageRun::new(250, 6)],
        &[PageRun::new(120, 10)],
        &mut out,
    )
    .unwrap();
    enc.zero(at(0, 2), 0, &mut out).unwrap();
    enc.page(at(0, 125), &p, &mut out).unwrap();
    end_section(&mut enc, &mut out);

    enc.section_part(SectionType::END, RAM_ID, &mut out);
    enc.balloon_v1(
        1,
        BalloonMapKind::Incremental,
        &[PageRun::new(0, 2)],
        &[],
        &mut out,
    )
    .unwrap();
    enc.zero(at(1, 3), 0, &mut out).unwrap();
    end_section(&mut enc, &mut out);
    enc.eof(&mut out);
    out
}

/// `balloon-kolhe-2016`: the 2016 patch's records at the top of each PART section, as its
/// `qemu_balloon_bitmap_save` writes them: the first over the whole bitmap with a run across
/// the block boundary and the terminator, the second over the touched range [6, 7) with the
/// run 6+2 running past the limit (SPEC.md §9.6).
pub fn kolhe_stream() -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    prelude(&mut enc, &mut out, None, &kolhe_blocks());
    end_section(&mut enc, &mut out);

    let p = page(9);
    let first = [PageRun::new(2, 3), PageRun::new(10, 4)];
    enc.section_part(SectionType::PART, RAM_ID, &mut out);
    enc.kolhe_balloon_from_runs(16, 0, 16, &first, &mut out)
        .unwrap();
    enc.page(at(0, 0), &p, &mut out).unwrap();
    enc.zero(at(0, 1), 0, &mut out).unwrap();
    end_section(&mut enc, &mut out);

    let second = [PageRun::new(2, 3), PageRun::new(6, 2), PageRun::new(10, 4)];
    enc.section_part(SectionType::PART, RAM_ID, &mut out);
    enc.kolhe_balloon_from_runs(16, 6, 7, &second, &mut out)
        .unwrap();
    enc.zero(at(1, 3), 0, &mut out).unwrap();
    end_section(&mut enc, &mut out);

    enc.section_part(SectionType::END, RAM_ID, &mut out);
    enc.page(at(0, 5), &p, &mut out).unwrap();
    end_section(&mut enc, &mut out);
    enc.eof(&mut out);
    out
}

/// `balloon-kolhe-2016-disabled`: the DISABLE marker (the patch sends it once a postcopy
/// migration has happened).
pub fn kolhe_disabled_stream() -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    prelude(&mut enc, &mut out, None, &kolhe_blocks());
    end_section(&mut enc, &mut out);
    enc.section_part(SectionType::PART, RAM_ID, &mut out);
    enc.kolhe_balloon(&KolheBalloon::Disabled, &mut out)
        .unwrap();
    enc.page(at(0, 3), &page(1), &mut out).unwrap();
    end_section(&mut enc, &mut out);
    enc.eof(&mut out);
    out
}

/// A stream whose START section holds MEM_SIZE, then `record` (raw bytes), then EOS.
/// `announce` lists the v1 capability in the configuration.
pub fn with_record(record: &[u8], announce: bool, blocks: &[RamBlock]) -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    let caps = announce.then(|| vec![RAMSTREAM_BALLOON_V1]);
    prelude(&mut enc, &mut out, caps, blocks);
    out.extend_from_slice(record);
    end_section(&mut enc, &mut out);
    enc.eof(&mut out);
    out
}

/// The byte offset where `with_record` puts the record.
pub fn record_offset(announce: bool, blocks: &[RamBlock]) -> u64 {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    let caps = announce.then(|| vec![RAMSTREAM_BALLOON_V1]);
    prelude(&mut enc, &mut out, caps, blocks);
    out.len() as u64
}

/// Raw bytes of a v1 record: word (0x200 | CONTINUE if `idstr` is None), idstr, version,
/// kind, counts and runs.
pub fn v1_record(
    idstr: Option<&str>,
    version: u8,
    kind: u8,
    inflate: &[(u64, u64)],
    deflate: &[(u64, u64)],
) -> Vec<u8> {
    let mut v = Vec::new();
    let word: u64 = if idstr.is_some() { 0x200 } else { 0x220 };
    v.extend_from_slice(&word.to_be_bytes());
    if let Some(name) = idstr {
        v.push(name.len() as u8);
        v.extend_from_slice(name.as_bytes());
    }
    v.push(version);
    v.push(kind);
    v.extend_from_slice(&(inflate.len() as u32).to_be_bytes());
    v.extend_from_slice(&(deflate.len() as u32).to_be_bytes());
    for (s, c) in inflate.iter().chain(deflate) {
        v.extend_from_slice(&s.to_be_bytes());
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

/// Raw bytes of a kolhe-2016 record: word, then each be64 of `fields`.
pub fn kolhe_record(fields: &[u64]) -> Vec<u8> {
    let mut v = 0x200u64.to_be_bytes().to_vec();
    for f in fields {
        v.extend_from_slice(&f.to_be_bytes());
    }
    v
}

pub fn decode(stream: &[u8], dialect: Dialect) -> Result<Vec<(u64, Event<'_>)>, Error> {
    decode_all(stream, DecoderOptions::default().with_dialect(dialect))
}

/// The decoding error of `stream` under `dialect`; panics if it decodes.
pub fn decode_err(stream: &[u8], dialect: Dialect) -> Error {
    match decode(stream, dialect) {
        Ok(ev) => panic!("decoded without error: {} events", ev.len()),
        Err(e) => e,
    }
}
