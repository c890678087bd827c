//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpus.rs`.
//!
//! Every function takes the raw fuzz input, never panics on hostile input, and panics (with
//! a message naming the broken property) only when the codec breaks one of its contracts:
//! a panic inside the codec, a split of the input that decodes differently from the whole,
//! a round trip that does not come back, an XBZRLE decode that disagrees with QEMU's.
//! They are plain functions (not behind `cfg(fuzzing)`) so that the committed corpus is
//! replayed by `cargo test` on a stable toolchain.
//!
//! Input layouts (the first bytes are control bytes, see each function):
//!
//! | entry point | input |
//! |---|---|
//! | [`stream_split`] | `opts, split_seed, stream…` |
//! | [`differential_split`] | `opts, split_seed, stream…` |
//! | [`ram_records`] | `ctl, records…` (after a fixed valid prefix) |
//! | [`balloon_runs`] | `ctl, balloon record payload…` (after the same prefix) |
//! | [`configuration`] | configuration section payload (after `QEVM 3` and `0x07`) |
//! | [`xbzrle_decode`] | `page_sel, page_seed, delta…` |
//! | [`roundtrip_xbzrle`] | `arbitrary` bytes |
//! | [`roundtrip_records`] | `arbitrary` bytes |
//! | [`vmdesc`] | `mode, …` and a real VMDESCRIPTION JSON given by the caller |

use std::collections::BTreeMap;

use arbitrary::{Result as AResult, Unstructured};
use ramstream_spec::config::capability;
use ramstream_spec::ram::{RamFlags, TARGET_PAGE_BITS_MAX, TARGET_PAGE_BITS_MIN};
use ramstream_spec::stream::{Command, SectionType};
use ramstream_spec::Dialect;

use crate::xbzrle::{self, Encoded, Kernel};
use crate::{
    apply_event, decode_all, BareRecord, Configuration, Decoder, DecoderOptions, DeviceSection,
    Encoder, Error, ErrorKind, Event, FieldPresence, Limits, PageAddr, RamBlock, RamImage,
    SectionHeader, Status, ZeroFill,
};

/// Limits for fuzzing: small enough that no input makes the harness allocate without bound.
pub fn fuzz_limits() -> Limits {
    Limits {
        max_ram_blocks: 64,
        max_ram_total: 1 << 30,
        max_vmdesc_len: 1 << 20,
        max_device_section_len: 1 << 20,
        max_balloon_runs: 1 << 16,
        ..Limits::default()
    }
}

/// Most pages a harness [`RamImage`] may hold; further page records are decoded but not
/// applied (`RamImage` allocates lazily, one page per written page, so this bounds memory).
pub const MAX_RESIDENT_PAGES: usize = 2048;

/// Decoder options chosen by one control byte: bits 0–1 dialect, bit 2 strict ZERO fill,
/// bit 3 configuration optional, bit 4 no section footers, bits 5–6 `mr_addr` presence,
/// bit 7 `page_size` fields present. `0` is the default (QEMU 7.2) destination.
pub fn options_from_byte(ctl: u8) -> DecoderOptions {
    DecoderOptions {
        dialect: Dialect::ALL[usize::from(ctl & 3)],
        zero_fill: if ctl & 4 != 0 {
            ZeroFill::RejectNonZero
        } else {
            ZeroFill::AcceptAny
        },
        require_configuration: ctl & 8 == 0,
        section_footers: ctl & 16 == 0,
        mr_addr: match (ctl >> 5) & 3 {
            1 => FieldPresence::Present,
            2 => FieldPresence::Absent,
            _ => FieldPresence::Auto,
        },
        block_page_size: if ctl & 0x80 != 0 {
            FieldPresence::Present
        } else {
            FieldPresence::Auto
        },
        limits: fuzz_limits(),
        ..DecoderOptions::default()
    }
}

/// Chunk sizes for feeding a decoder, from a one-byte seed: seed 0 gives one chunk of
/// everything; otherwise sizes come from a small PRNG, 1..=8 bytes when bit 7 is set, else
/// 1..=4096.
pub fn split_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut x = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let max = if seed & 0x80 != 0 { 8 } else { 4096 };
    std::iter::from_fn(move || {
        if seed == 0 {
            return Some(usize::MAX);
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        Some(1 + (x as usize) % max)
    })
}

/// What a decoder made of a stream: the events, then how it ended.
#[derive(Debug)]
pub struct Run<'a> {
    /// `(offset, event)` pairs, in order.
    pub events: Vec<(u64, Event<'a>)>,
    /// `Ok` when the decoder reached `Done`, else the error that stopped it.
    pub end: Result<(), Error>,
}

/// Decodes `stream` fed in chunks of `sizes`, calling `finish` only once everything was
/// fed, and checks the `Decoder` contract on every call.
pub fn decode_in_chunks<'a>(
    stream: &'a [u8],
    opts: DecoderOptions,
    sizes: impl IntoIterator<Item = usize>,
) -> Run<'a> {
    let mut sizes = sizes.into_iter();
    let mut dec = Decoder::new(opts);
    let mut events = Vec::new();
    let (mut pos, mut avail, mut finished) = (0usize, 0usize, false);
    loop {
        let at = dec.offset();
        assert_eq!(at, pos as u64, "decoder offset drifted from bytes consumed");
        match dec.decode(&stream[pos..avail]) {
            Ok(Status::Event { event, consumed }) => {
                assert!(consumed > 0, "an event consumed nothing: {event:?}");
                assert!(pos + consumed <= avail, "consumed more than given");
                pos += consumed;
                events.push((at, event));
            }
            Ok(Status::NeedMore { needed }) => {
                assert!(!finished, "NeedMore after finish");
                assert!(needed >= 1, "NeedMore of 0 bytes");
                if avail == stream.len() {
                    dec.finish();
                    finished = true;
                } else {
                    let n = sizes.next().unwrap_or(usize::MAX);
                    avail = avail.saturating_add(n.max(1)).min(stream.len());
                }
            }
            Ok(Status::Done) => {
                assert!(finished && pos == stream.len(), "Done before the end");
                assert!(dec.is_done());
                return Run {
                    events,
                    end: Ok(()),
                };
            }
            Err(e) => {
                assert_eq!(
                    dec.decode(&stream[pos..avail])
                        .map(|_| ())
                        .unwrap_err()
                        .kind,
                    ErrorKind::Poisoned,
                    "a failed decoder must stay failed"
                );
                return Run {
                    events,
                    end: Err(e),
                };
            }
        }
    }
}

/// Decodes `stream` in one piece with `finish` called first (what [`decode_all`] does,
/// keeping the events before an error).
pub fn decode_whole(stream: &[u8], opts: DecoderOptions) -> Run<'_> {
    let mut dec = Decoder::new(opts);
    dec.finish();
    let mut events = Vec::new();
    let mut pos = 0;
    loop {
        let at = dec.offset();
        match dec.decode(&stream[pos..]) {
            Ok(Status::Event { event, consumed }) => {
                pos += consumed;
                events.push((at, event));
            }
            Ok(Status::NeedMore { .. }) => panic!("a finished decoder asked for more"),
            Ok(Status::Done) => {
                return Run {
                    events,
                    end: Ok(()),
                }
            }
            Err(e) => {
                return Run {
                    events,
                    end: Err(e),
                }
            }
        }
    }
}

/// Errors that may legitimately depend on where the input was split: the count of
/// trailing bytes is what had arrived when the decoder saw them.
fn normalise(e: &Error) -> Error {
    let mut e = e.clone();
    if let ErrorKind::TrailingBytes { count } = &mut e.kind {
        *count = 0;
    }
    e
}

/// Asserts that two runs of the same stream agree: same events at the same offsets, and
/// the same error (kind, offset, record, block) or both done.
pub fn assert_same_run(whole: &Run<'_>, split: &Run<'_>, what: &str) {
    assert_eq!(whole.events, split.events, "{what}: events differ");
    match (&whole.end, &split.end) {
        (Ok(()), Ok(())) => {}
        (Err(a), Err(b)) => assert_eq!(normalise(a), normalise(b), "{what}: errors differ"),
        (a, b) => panic!("{what}: one-shot ended {a:?}, split ended {b:?}"),
    }
}

/// Checks the properties every decoded event list has, whatever the input.
fn check_events(events: &[(u64, Event<'_>)], opts: &DecoderOptions) {
    let mut page_size = 1usize << opts.default_page_bits;
    let mut blocks: Vec<RamBlock> = Vec::new();
    let mut last = None;
    for (at, ev) in events {
        if let Some(l) = last {
            assert!(*at > l, "event offsets must increase");
        }
        last = Some(*at);
        let addr = match ev {
            Event::Configuration(c) => {
                if let Some(b) = c.target_page_bits {
                    assert!((TARGET_PAGE_BITS_MIN..=TARGET_PAGE_BITS_MAX).contains(&b));
                    page_size = 1 << b;
                }
                None
            }
            Event::MemSize(ms) => {
                assert!(ms.blocks.len() <= opts.limits.max_ram_blocks);
                let sum: u64 = ms.blocks.iter().map(|b| b.used_length).sum();
                assert!(sum <= opts.limits.max_ram_total);
                for b in &ms.blocks {
                    assert!(b.used_length > 0 && b.used_length % page_size as u64 == 0);
                }
                blocks = ms.blocks.clone();
                None
            }
            Event::Page(p) => {
                assert_eq!(p.data.len(), page_size, "PAGE payload is not one page");
                Some(p.addr)
            }
            Event::Zero(z) => {
                if opts.zero_fill == ZeroFill::RejectNonZero {
                    assert_eq!(z.fill, 0);
                }
                Some(z.addr)
            }
            Event::Xbzrle(x) => {
                assert!(x.delta.len() <= page_size);
                Some(x.addr)
            }
            Event::MultifdFlush(_) => {
                assert_eq!(opts.dialect, Dialect::Qemu8_1);
                None
            }
            Event::Device(d) => {
                assert!(d.body.len() <= opts.limits.max_device_section_len);
                None
            }
            Event::VmDescription(j) => {
                assert!(j.len() <= opts.limits.max_vmdesc_len as usize);
                None
            }
            _ => None,
        };
        if let Some(a) = addr {
            let b = blocks.get(a.block).expect("page record names no block");
            assert!(a.offset < b.used_length, "page offset beyond block");
            assert_eq!(a.offset % page_size as u64, 0, "unaligned page offset");
        }
    }
}

/// The page size in force after the events (configuration's target page bits).
fn page_size_of(events: &[(u64, Event<'_>)], opts: &DecoderOptions) -> usize {
    let bits = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Configuration(c) => c.target_page_bits,
            _ => None,
        })
        .unwrap_or(opts.default_page_bits);
    1 << bits
}

/// A QEMU 7.2 `xbzrle_decode_buffer` transcribed literally, as the reference for
/// [`xbzrle::decode`]: returns the page length written up to, or `Err` where QEMU returns
/// -1, writing the page as QEMU does.
#[allow(clippy::result_unit_err)] // a test oracle: the error carries no information
pub fn reference_xbzrle_decode(src: &[u8], dst: &mut [u8]) -> Result<usize, ()> {
    fn uleb(input: &[u8]) -> Result<(usize, usize), ()> {
        if input[0] & 0x80 == 0 {
            Ok((usize::from(input[0]), 1))
        } else {
            if input[1] & 0x80 != 0 {
                return Err(());
            }
            Ok((
                usize::from(input[0] & 0x7f) + (usize::from(input[1]) << 7),
                2,
            ))
        }
    }
    let (slen, dlen) = (src.len(), dst.len());
    let (mut i, mut d) = (0usize, 0usize);
    while i < slen {
        if slen - i < 2 {
            return Err(());
        }
        let (count, ret) = uleb(&src[i..])?;
        if i != 0 && count == 0 {
            return Err(());
        }
        i += ret;
        d += count;
        if d > dlen {
            return Err(());
        }
        if slen - i < 2 {
            return Err(());
        }
        let (count, ret) = uleb(&src[i..])?;
        if count == 0 {
            return Err(());
        }
        i += ret;
        if d + count > dlen || i + count > slen {
            return Err(());
        }
        dst[d..d + count].copy_from_slice(&src[i..i + count]);
        d += count;
        i += count;
    }
    Ok(d)
}

/// Applies the events to a [`RamImage`] (at most [`MAX_RESIDENT_PAGES`] pages) and checks
/// each write against a model of what it must do.
fn apply_to_image(events: &[(u64, Event<'_>)], page_size: usize) {
    let mut image = RamImage::new(page_size);
    let resident = |im: &RamImage| {
        im.blocks()
            .iter()
            .map(|b| b.resident_pages())
            .sum::<usize>()
    };
    for (at, ev) in events {
        if let Event::MemSize(ms) = ev {
            image.set_blocks(&ms.blocks);
            continue;
        }
        if resident(&image) >= MAX_RESIDENT_PAGES {
            continue;
        }
        match ev {
            Event::Page(p) => {
                assert!(apply_event(&mut image, ev, *at).unwrap());
                assert!(image.page(p.addr)[..] == *p.data, "PAGE not applied");
            }
            Event::Zero(z) => {
                assert!(apply_event(&mut image, ev, *at).unwrap());
                assert!(image.page(z.addr).iter().all(|b| *b == z.fill));
            }
            Event::Xbzrle(x) => {
                let mut expect = image.page(x.addr).into_owned();
                let ours = apply_event(&mut image, ev, *at);
                let theirs = reference_xbzrle_decode(x.delta, &mut expect);
                match (&ours, theirs) {
                    (Ok(true), Ok(_)) => {}
                    (Err(e), Err(())) => assert!(matches!(e.kind, ErrorKind::Xbzrle(_))),
                    _ => panic!("XBZRLE apply {ours:?} but QEMU's decoder {theirs:?}"),
                }
                assert!(
                    image.page(x.addr)[..] == expect[..],
                    "XBZRLE page differs from QEMU's"
                );
            }
            _ => assert!(!apply_event(&mut image, ev, *at).unwrap()),
        }
    }
}

/// Applies balloon records to a [`BalloonMap`](crate::balloon::BalloonMap) (run-based: no
/// allocation per page) and checks that it stays inside its blocks.
fn apply_to_balloon_map(events: &[(u64, Event<'_>)], page_bits: u32) {
    use crate::balloon::BalloonMap;
    let mut map = BalloonMap::default();
    for (_, ev) in events {
        match ev {
            Event::MemSize(ms) => map = BalloonMap::new(&ms.blocks, page_bits),
            Event::Balloon(rec) => {
                let _ = map.apply(rec);
                for b in 0..map.block_count() {
                    let pages = map.block_pages(b);
                    let ballooned = map.ballooned_pages(b);
                    assert!(
                        ballooned <= pages,
                        "more pages ballooned than the block has"
                    );
                    let rest: u64 = map
                        .unballooned_ranges(b, 0..pages)
                        .map(|r| r.end - r.start)
                        .sum();
                    assert_eq!(rest + ballooned, pages, "balloon map does not add up");
                }
            }
            _ => {}
        }
    }
}

/// Re-encodes accepted events with [`Encoder::event`]; the result must decode to the same
/// events, and re-encoding those must give the same bytes again.
fn check_reencode(events: &[(u64, Event<'_>)], opts: &DecoderOptions) {
    let page_bits = page_size_of(events, opts).trailing_zeros();
    let encode = |evs: &[(u64, Event<'_>)]| {
        let mut enc = Encoder::new(page_bits);
        let mut out = Vec::new();
        for (_, ev) in evs {
            enc.event(ev, &mut out)
                .unwrap_or_else(|e| panic!("cannot re-encode {ev:?}: {e}"));
        }
        out
    };
    let once = encode(events);
    let again = decode_all(&once, opts.clone())
        .unwrap_or_else(|e| panic!("re-encoded stream does not decode: {e}"));
    let strip = |evs: &[(u64, Event<'_>)]| -> Vec<String> {
        evs.iter()
            .map(|(_, e)| match e {
                Event::Device(d) => format!(
                    "{:?}",
                    DeviceSection {
                        body_offset: 0,
                        ..*d
                    }
                ),
                e => format!("{e:?}"),
            })
            .collect()
    };
    assert_eq!(
        strip(events),
        strip(&again),
        "re-encoded stream decodes differently"
    );
    assert!(once == encode(&again), "re-encoding is not idempotent");
}

/// Everything a whole stream goes through: one-shot and split decoding must agree, the
/// events must be sane, applying them to an image must match QEMU's XBZRLE decoder, and an
/// accepted stream must re-encode to an equivalent one.
pub fn exercise_stream(stream: &[u8], opts: &DecoderOptions, split_seed: u8) {
    let whole = decode_whole(stream, opts.clone());
    let split = decode_in_chunks(stream, opts.clone(), split_sizes(split_seed));
    assert_same_run(&whole, &split, "seeded split");
    check_events(&whole.events, opts);
    let mut summary = crate::summary::StreamSummary::default();
    for (at, ev) in &whole.events {
        summary.observe(*at, ev);
    }
    let page_size = page_size_of(&whole.events, opts);
    apply_to_image(&whole.events, page_size);
    apply_to_balloon_map(&whole.events, page_size.trailing_zeros());
    if whole.end.is_ok() {
        check_reencode(&whole.events, opts);
        let _ = crate::transcode::reencode(stream, crate::transcode::Mode::RecomputeXbzrle, opts);
    }
}

/// Target `stream_split`: `opts, split_seed, stream…`. A whole stream under the options of
/// [`options_from_byte`], fed in the chunks of [`split_sizes`], applied to an image and
/// re-encoded (see [`exercise_stream`]).
pub fn stream_split(data: &[u8]) {
    let [ctl, seed, stream @ ..] = data else {
        return;
    };
    exercise_stream(stream, &options_from_byte(*ctl), *seed);
}

/// Target `differential_split`: `opts, split_seed, stream…`. The incremental decoder fed
/// in seeded chunks, byte by byte (inputs up to 4 KiB) and whole-but-unfinished must agree
/// with one-shot decoding.
pub fn differential_split(data: &[u8]) {
    let [ctl, seed, stream @ ..] = data else {
        return;
    };
    let opts = options_from_byte(*ctl);
    let whole = decode_whole(stream, opts.clone());
    let split = decode_in_chunks(stream, opts.clone(), split_sizes(*seed | 1));
    assert_same_run(&whole, &split, "seeded split");
    let unfinished = decode_in_chunks(stream, opts.clone(), [usize::MAX]);
    assert_same_run(&whole, &unfinished, "whole input, finish late");
    if stream.len() <= 4096 {
        let bytewise = decode_in_chunks(stream, opts, std::iter::repeat(1));
        assert_same_run(&whole, &bytewise, "byte by byte");
    }
}

/// The RAM blocks of QEMU 7.2's `pc-i440fx-7.2` with 64 MiB, as the recorded vectors have
/// them, so that records cut from the vectors apply.
pub fn vector_blocks() -> Vec<RamBlock> {
    [
        ("pc.ram", 64 << 20),
        ("/rom@etc/acpi/tables", 128 << 10),
        ("pc.bios", 256 << 10),
        ("pc.rom", 128 << 10),
        ("/rom@etc/table-loader", 4 << 10),
        ("/rom@etc/acpi/rsdp", 4 << 10),
    ]
    .into_iter()
    .map(|(n, l)| RamBlock {
        idstr: n.into(),
        used_length: l,
        page_size: None,
        mr_addr: None,
    })
    .collect()
}

/// The stream prefix [`ram_records`] puts before the fuzz bytes: header, configuration,
/// `ram` START (section id 2) and MEM_SIZE with [`vector_blocks`]. `ctl` as in
/// [`ram_records`].
pub fn ram_records_prefix(ctl: u8) -> (Vec<u8>, DecoderOptions) {
    let dialect = Dialect::ALL[usize::from(ctl & 3)];
    let ignore_shared = ctl & 8 != 0;
    let mut caps = Vec::new();
    if ignore_shared {
        caps.push(capability::X_IGNORE_SHARED);
    }
    if dialect == Dialect::RamstreamBalloonV1 && ctl & 16 == 0 {
        caps.push(capability::RAMSTREAM_BALLOON_V1);
    }
    let opts = DecoderOptions {
        dialect,
        zero_fill: if ctl & 4 != 0 {
            ZeroFill::RejectNonZero
        } else {
            ZeroFill::AcceptAny
        },
        limits: fuzz_limits(),
        ..DecoderOptions::default()
    };
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    enc.header(&mut out);
    enc.configuration(
        &Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: (!caps.is_empty()).then_some(caps),
            uuid: None,
        },
        &mut out,
    )
    .unwrap();
    enc.section_header(
        &SectionHeader {
            section_type: SectionType::START,
            section_id: 2,
            idstr: "ram",
            instance_id: 0,
            version_id: 4,
        },
        &mut out,
    )
    .unwrap();
    let mut blocks = vector_blocks();
    for (i, b) in blocks.iter_mut().enumerate() {
        b.mr_addr = ignore_shared.then_some(i as u64 * 0x1000_0000);
    }
    enc.mem_size(&blocks, &mut out).unwrap();
    (out, opts)
}

/// Target `ram_records`: `ctl, records…`. The records follow a valid prefix
/// ([`ram_records_prefix`]) inside the `ram` START section (id 2). `ctl`: bits 0–1 the
/// dialect (`qemu-7.2`, `qemu-8.1+`, `kolhe-2016`, `ramstream-balloon-v1`), bit 2 strict
/// ZERO fill, bit 3 `x-ignore-shared` (MEM_SIZE with `mr_addr`), bit 4 do not announce
/// the balloon extension, bits 5–7 the split seed.
pub fn ram_records(data: &[u8]) {
    let [ctl, records @ ..] = data else {
        return;
    };
    let (mut stream, opts) = ram_records_prefix(*ctl);
    stream.extend_from_slice(records);
    exercise_stream(&stream, &opts, ctl & 0xe0);
}

/// Target `balloon_runs`: `ctl, payload…`. A balloon record (flag 0x200) inside the
/// [`ram_records`] prefix: `ctl` bit 0 clear is `ramstream-balloon-v1` (extension announced),
/// set is `kolhe-2016`; bit 1 set adds CONTINUE to the word (v1: the block of the previous
/// record, here none, so also the error path) — the fuzz bytes follow the record word (the
/// v1 idstr, or the kolhe bitmap header). Bit 2 strict ZERO fill, bits 5–7 the split seed.
/// Same checks as [`stream_split`], plus the balloon map.
pub fn balloon_runs(data: &[u8]) {
    let [ctl, payload @ ..] = data else {
        return;
    };
    let dialect = if ctl & 1 == 0 { 3 } else { 2 };
    let (mut stream, opts) = ram_records_prefix(dialect | (ctl & 4));
    let word = RamFlags::X200.bits()
        | if ctl & 2 != 0 {
            RamFlags::CONTINUE.bits()
        } else {
            0
        };
    stream.extend_from_slice(&word.to_be_bytes());
    stream.extend_from_slice(payload);
    exercise_stream(&stream, &opts, ctl & 0xe0);
}

/// Target `configuration`: the configuration payload (after `QEVM 3` and the `0x07`
/// byte) and whatever follows it, under the default and the balloon-v1 dialect.
pub fn configuration(data: &[u8]) {
    let mut stream = b"QEVM\0\0\0\x03\x07".to_vec();
    stream.extend_from_slice(data);
    for dialect in [Dialect::Qemu7_2, Dialect::RamstreamBalloonV1] {
        let opts = DecoderOptions {
            dialect,
            limits: fuzz_limits(),
            ..DecoderOptions::default()
        };
        exercise_stream(&stream, &opts, 0x81);
    }
}

/// A page of `len` bytes filled from `seed` (0 gives a zero page).
fn pattern_page(len: usize, seed: u8) -> Vec<u8> {
    if seed == 0 {
        return vec![0; len];
    }
    let mut x = u32::from(seed) | 0x100;
    (0..len)
        .map(|i| {
            if seed & 1 == 0 && i % 64 < 32 {
                return seed;
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The page length a selector byte picks: 4096, 1024, 65536 or a short `1..=64`.
fn page_len(sel: u8) -> usize {
    match sel & 3 {
        0 => 4096,
        1 => 1024,
        2 if sel & 4 != 0 => 65536,
        _ => 1 + usize::from(sel >> 2) % 64,
    }
}

/// Target `xbzrle_decode`: `page_sel, page_seed, delta…`. The delta is applied to a page
/// (length from `page_sel`, contents from `page_seed`) and must behave exactly as QEMU
/// 7.2's decoder does: same acceptance, same bytes written (also when it fails part-way),
/// [`xbzrle::validate`] agreeing with [`xbzrle::decode`], and only literal runs written.
pub fn xbzrle_decode(data: &[u8]) {
    let [sel, seed, delta @ ..] = data else {
        return;
    };
    let old = pattern_page(page_len(*sel), *seed);
    let mut ours = old.clone();
    let mut theirs = old.clone();
    let r = xbzrle::decode(delta, &mut ours);
    let q = reference_xbzrle_decode(delta, &mut theirs);
    assert_eq!(r.is_ok(), q.is_ok(), "decode {r:?}, QEMU {q:?}");
    assert!(ours == theirs, "decode wrote other bytes than QEMU");
    assert_eq!(xbzrle::validate(delta, old.len()), r, "validate disagrees");
    if let Ok(len) = u16::try_from(delta.len()) {
        let mut page = old.clone();
        let rec = xbzrle::decode_record(1, delta, &mut page);
        let hdr = xbzrle::check_record_header(1, len, old.len());
        assert_eq!(rec, hdr.and(r), "decode_record disagrees");
    }
}

/// Target `roundtrip_xbzrle`: arbitrary old and new pages → [`xbzrle::encode`] (every
/// kernel, same output) → [`xbzrle::decode`] gives the new page back, and QEMU's decoder
/// accepts the delta.
pub fn roundtrip_xbzrle(data: &[u8]) {
    let _ = roundtrip_xbzrle_inner(&mut Unstructured::new(data));
}

fn arbitrary_page(u: &mut Unstructured<'_>, len: usize) -> AResult<Vec<u8>> {
    let mut page = pattern_page(len, u.arbitrary()?);
    // Sparse edits: runs of new bytes at chosen places.
    for _ in 0..u.int_in_range(0..=16)? {
        let at = u.int_in_range(0..=len - 1)?;
        let run = u.int_in_range(1..=64usize)?.min(len - at);
        let fill: u8 = u.arbitrary()?;
        let bytes = u.bytes(run.min(u.len()))?;
        for (i, b) in page[at..at + run].iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(fill);
        }
    }
    Ok(page)
}

fn roundtrip_xbzrle_inner(u: &mut Unstructured<'_>) -> AResult<()> {
    let len = page_len(u.arbitrary()?);
    let old = arbitrary_page(u, len)?;
    let mut new = old.clone();
    for _ in 0..u.int_in_range(0..=24)? {
        let at = u.int_in_range(0..=len - 1)?;
        let run = u.int_in_range(1..=300usize)?.min(len - at);
        let fill: u8 = u.arbitrary()?;
        let flip = u.arbitrary::<bool>()?;
        for (i, b) in new[at..at + run].iter_mut().enumerate() {
            *b = if flip { *b ^ (i as u8 | 1) } else { fill };
        }
    }
    let out_len = if u.arbitrary::<bool>()? {
        len
    } else {
        u.int_in_range(0..=len)?
    };
    let mut reference = vec![0u8; out_len];
    let want = xbzrle::encode_with(Kernel::Naive, &old, &new, &mut reference).unwrap();
    for k in Kernel::ALL {
        let mut out = vec![0u8; out_len];
        let got = xbzrle::encode_with(k, &old, &new, &mut out).unwrap();
        assert_eq!(got, want, "kernel {k:?} disagrees with Naive");
        if let Encoded::Delta(n) = got {
            assert_eq!(out[..n], reference[..n], "kernel {k:?} bytes differ");
        }
    }
    match want {
        Encoded::Unchanged => assert!(old == new, "Unchanged for a changed page"),
        Encoded::Delta(n) => {
            assert!((2..=out_len).contains(&n));
            assert!(old != new, "a delta for an unchanged page");
            let mut page = old.clone();
            xbzrle::decode(&reference[..n], &mut page).expect("own delta rejected");
            assert!(page == new, "delta does not give the new page");
            let mut q = old.clone();
            reference_xbzrle_decode(&reference[..n], &mut q).expect("QEMU rejects the delta");
            assert!(q == new, "QEMU's decoder gives another page");
        }
        Encoded::Overflow => assert!(old != new || out_len < 2, "overflow of an unchanged page"),
    }
    Ok(())
}

/// Target `roundtrip_records`: a structure-aware stream (`arbitrary`): configuration,
/// the `ram` section with MEM_SIZE, PAGE, ZERO and XBZRLE records (deltas made by the
/// encoder from the page the destination holds to an arbitrary new page), EOS, PART/END
/// sections, device sections with arbitrary bodies, commands, EOF and a VMDESCRIPTION,
/// written with the canonical [`Encoder`] methods. Decoding must give back exactly the
/// records written, applying them must give the modelled RAM, and re-encoding the decoded
/// events must give the same bytes.
pub fn roundtrip_records(data: &[u8]) {
    let Ok(plan) = Plan::generate(&mut Unstructured::new(data)) else {
        return;
    };
    plan.check();
}

/// One item of a generated stream, owning its bytes.
#[derive(Debug)]
enum Item {
    MemSize(Vec<RamBlock>),
    Page(PageAddr, Vec<u8>),
    Zero(PageAddr, u8),
    /// Address, the page before, the page after.
    Xbzrle(PageAddr, Vec<u8>, Vec<u8>),
    MultifdFlush,
    /// PART or END and the ram section's id (EOS and footer after its records).
    Part(SectionType),
    /// End of a ram section: EOS, footer.
    EndRam,
    Device {
        section_id: u32,
        idstr: String,
        instance_id: u32,
        version_id: u32,
        body: Vec<u8>,
    },
    Command(Command, Vec<u8>),
}

#[derive(Debug)]
struct Plan {
    page_bits: u32,
    dialect: Dialect,
    machine_type: String,
    send_page_bits: bool,
    ignore_shared: bool,
    uuid: Option<[u8; 16]>,
    ram_id: u32,
    items: Vec<Item>,
    vmdesc: Option<Vec<u8>>,
}

fn some_bytes(u: &mut Unstructured<'_>, max: usize) -> AResult<Vec<u8>> {
    let n = u.int_in_range(0..=max)?.min(u.len());
    Ok(u.bytes(n)?.to_vec())
}

fn printable(u: &mut Unstructured<'_>, max: usize) -> AResult<String> {
    let n = u.int_in_range(1..=max)?;
    (0..n)
        .map(|_| u.int_in_range(0x20u8..=0x7e).map(char::from))
        .collect()
}

impl Plan {
    fn generate(u: &mut Unstructured<'_>) -> AResult<Plan> {
        let page_bits = if u.ratio(1, 4)? {
            u.int_in_range(TARGET_PAGE_BITS_MIN..=TARGET_PAGE_BITS_MAX)?
        } else {
            12
        };
        let ps = 1u64 << page_bits;
        let dialect = if u.arbitrary()? {
            Dialect::Qemu8_1
        } else {
            Dialect::Qemu7_2
        };
        let machine_type = {
            let n = u.int_in_range(0..=40)?;
            let s: String = (0..n)
                .map(|_| u.arbitrary::<char>())
                .collect::<AResult<_>>()?;
            s.chars().take(256).collect::<String>()
        };
        let machine_type = if machine_type.len() > 256 {
            machine_type.chars().take(64).collect()
        } else {
            machine_type
        };
        let send_page_bits = page_bits != 12 || u.arbitrary()?;
        let ignore_shared = u.ratio(1, 4)?;
        let uuid = if u.arbitrary()? {
            Some(u.arbitrary()?)
        } else {
            None
        };
        let ram_id: u32 = u.arbitrary()?;
        let gen_blocks = |u: &mut Unstructured<'_>| -> AResult<Vec<RamBlock>> {
            let n = u.int_in_range(1..=4)?;
            let mut v: Vec<RamBlock> = Vec::new();
            for i in 0..n {
                let mut idstr = printable(u, 24)?;
                if v.iter().any(|b| b.idstr == idstr) {
                    idstr.push_str(&i.to_string());
                }
                if v.iter().any(|b| b.idstr == idstr) {
                    continue;
                }
                v.push(RamBlock {
                    idstr,
                    used_length: ps * u.int_in_range(1..=32u64)?,
                    page_size: None,
                    mr_addr: if ignore_shared {
                        Some(u.arbitrary()?)
                    } else {
                        None
                    },
                });
            }
            Ok(v)
        };
        let mut items = Vec::new();
        let mut blocks = gen_blocks(u)?;
        items.push(Item::MemSize(blocks.clone()));
        // The model of the destination's RAM, to make XBZRLE deltas against.
        let mut model: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
        let mut in_ram = true;
        let mut next_device_id = ram_id.wrapping_add(1);
        while !u.is_empty() && items.len() < 256 {
            if !in_ram {
                match u.int_in_range(0..=3)? {
                    0 | 1 => {
                        let t = if u.arbitrary()? {
                            SectionType::PART
                        } else {
                            SectionType::END
                        };
                        items.push(Item::Part(t));
                        in_ram = true;
                    }
                    2 => {
                        let mut body = some_bytes(u, 200)?;
                        let section_id = next_device_id;
                        next_device_id = next_device_id.wrapping_add(1);
                        strip_footers(&mut body, section_id);
                        items.push(Item::Device {
                            section_id,
                            idstr: printable(u, 40)?,
                            instance_id: u.int_in_range(0..=0xffff)?,
                            version_id: u.int_in_range(0..=0xffff)?,
                            body,
                        });
                    }
                    _ => {
                        let (cmd, payload) = match u.int_in_range(0..=3)? {
                            0 => (Command::PING, u.bytes(4)?.to_vec()),
                            1 => (Command::OPEN_RETURN_PATH, vec![]),
                            2 => (Command::POSTCOPY_RAM_DISCARD, some_bytes(u, 64)?),
                            _ => (Command::POSTCOPY_ADVISE, u.bytes(16)?.to_vec()),
                        };
                        items.push(Item::Command(cmd, payload));
                    }
                }
                continue;
            }
            let pick_addr = |u: &mut Unstructured<'_>, blocks: &[RamBlock]| -> AResult<PageAddr> {
                let block = u.choose_index(blocks.len())?;
                let pages = blocks[block].used_length / ps;
                Ok(PageAddr {
                    block,
                    offset: u.int_in_range(0..=pages - 1)? * ps,
                })
            };
            match u.int_in_range(0..=9)? {
                0..=2 => {
                    let addr = pick_addr(u, &blocks)?;
                    let page = arbitrary_page(u, ps as usize)?;
                    model.insert(
                        (blocks[addr.block].idstr.clone(), addr.offset),
                        page.clone(),
                    );
                    items.push(Item::Page(addr, page));
                }
                3 | 4 => {
                    let addr = pick_addr(u, &blocks)?;
                    let fill = if u.ratio(1, 4)? { u.arbitrary()? } else { 0 };
                    model.insert(
                        (blocks[addr.block].idstr.clone(), addr.offset),
                        vec![fill; ps as usize],
                    );
                    items.push(Item::Zero(addr, fill));
                }
                5..=7 => {
                    let addr = pick_addr(u, &blocks)?;
                    let key = (blocks[addr.block].idstr.clone(), addr.offset);
                    let old = model
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| vec![0; ps as usize]);
                    let mut new = old.clone();
                    for _ in 0..u.int_in_range(1..=8)? {
                        let at = u.int_in_range(0..=ps as usize - 1)?;
                        let run = u.int_in_range(1..=100usize)?.min(ps as usize - at);
                        let v: u8 = u.arbitrary()?;
                        new[at..at + run].fill(v);
                    }
                    model.insert(key, new.clone());
                    items.push(Item::Xbzrle(addr, old, new));
                }
                8 => {
                    if u.ratio(1, 3)? {
                        let keep = blocks.clone();
                        blocks = gen_blocks(u)?;
                        if u.arbitrary()? {
                            // Re-announce with the old names, possibly other lengths.
                            for (b, k) in blocks.iter_mut().zip(keep) {
                                b.idstr = k.idstr;
                            }
                            let mut seen = std::collections::HashSet::new();
                            blocks.retain(|b| seen.insert(b.idstr.clone()));
                        }
                        // As RamImage does: same idstr keeps its pages below the new length.
                        model.retain(|(name, off), _| {
                            blocks
                                .iter()
                                .any(|b| &b.idstr == name && *off < b.used_length)
                        });
                        items.push(Item::MemSize(blocks.clone()));
                    } else if dialect == Dialect::Qemu8_1 {
                        items.push(Item::MultifdFlush);
                    }
                }
                _ => {
                    items.push(Item::EndRam);
                    in_ram = false;
                }
            }
        }
        if in_ram {
            items.push(Item::EndRam);
        }
        let vmdesc = if u.arbitrary()? {
            let mut j = b"{".to_vec();
            j.extend_from_slice(&some_bytes(u, 64)?);
            Some(j)
        } else {
            None
        };
        Ok(Plan {
            page_bits,
            dialect,
            machine_type,
            send_page_bits,
            ignore_shared,
            uuid,
            ram_id,
            items,
            vmdesc,
        })
    }

    fn check(&self) {
        let ps = 1usize << self.page_bits;
        let caps = self
            .ignore_shared
            .then(|| vec![capability::X_IGNORE_SHARED]);
        let config = Configuration {
            machine_type: &self.machine_type,
            target_page_bits: self.send_page_bits.then_some(self.page_bits),
            capabilities: caps,
            uuid: self.uuid,
        };
        let ram_header = SectionHeader {
            section_type: SectionType::START,
            section_id: self.ram_id,
            idstr: "ram",
            instance_id: 0,
            version_id: 4,
        };
        let mut enc = Encoder::new(self.page_bits);
        let mut out = Vec::new();
        let mut expected: Vec<Event<'_>> = Vec::new();
        let mut deltas: Vec<Vec<u8>> = Vec::new();
        enc.header(&mut out);
        expected.push(Event::Header { version: 3 });
        enc.configuration(&config, &mut out).unwrap();
        expected.push(Event::Configuration(config.clone()));
        enc.section_header(&ram_header, &mut out).unwrap();
        expected.push(Event::SectionStart(ram_header));
        // First pass: make the deltas (owned), so events can borrow them after.
        for item in &self.items {
            if let Item::Xbzrle(_, old, new) = item {
                let mut d = vec![0u8; ps];
                match xbzrle::encode(old, new, &mut d).unwrap() {
                    // A delta the be16 length cannot carry is sent as a whole page too.
                    Encoded::Delta(n) if n <= usize::from(u16::MAX) => d.truncate(n),
                    Encoded::Delta(_) => d.clear(),
                    Encoded::Unchanged | Encoded::Overflow => d.clear(),
                }
                deltas.push(d);
            }
        }
        let mut deltas_it = deltas.iter();
        let mut last_block = None;
        let mut announced: Vec<String> = Vec::new();
        let cont = |last: &mut Option<usize>, addr: PageAddr| {
            let c = *last == Some(addr.block);
            *last = Some(addr.block);
            c
        };
        for item in &self.items {
            match item {
                Item::MemSize(blocks) => {
                    enc.mem_size(blocks, &mut out).unwrap();
                    let total: u64 = blocks.iter().map(|b| b.used_length).sum();
                    expected.push(Event::MemSize(crate::MemSize {
                        word: total | RamFlags::MEM_SIZE.bits(),
                        blocks: blocks.clone(),
                    }));
                    // The last block survives a new MEM_SIZE when its name is still
                    // announced (SPEC.md §6: CONTINUE keeps naming it).
                    last_block = last_block
                        .and_then(|i: usize| announced.get(i).cloned())
                        .and_then(|n: String| blocks.iter().position(|b| b.idstr == n));
                    announced = blocks.iter().map(|b| b.idstr.clone()).collect();
                }
                Item::Page(addr, data) => {
                    enc.page(*addr, data, &mut out).unwrap();
                    expected.push(Event::Page(crate::PageRecord {
                        addr: *addr,
                        continued: cont(&mut last_block, *addr),
                        data,
                    }));
                }
                Item::Zero(addr, fill) => {
                    enc.zero(*addr, *fill, &mut out).unwrap();
                    expected.push(Event::Zero(crate::ZeroPage {
                        addr: *addr,
                        continued: cont(&mut last_block, *addr),
                        fill: *fill,
                    }));
                }
                Item::Xbzrle(addr, _, new) => {
                    let d = deltas_it.next().unwrap();
                    if d.is_empty() {
                        // Unchanged or overflow: QEMU sends the page whole.
                        enc.page(*addr, new, &mut out).unwrap();
                        expected.push(Event::Page(crate::PageRecord {
                            addr: *addr,
                            continued: cont(&mut last_block, *addr),
                            data: new,
                        }));
                    } else {
                        enc.xbzrle(*addr, d, &mut out).unwrap();
                        expected.push(Event::Xbzrle(crate::XbzrleDelta {
                            addr: *addr,
                            continued: cont(&mut last_block, *addr),
                            delta: d,
                        }));
                    }
                }
                Item::MultifdFlush => {
                    let b = BareRecord {
                        word: RamFlags::X200.bits(),
                    };
                    enc.event(&Event::MultifdFlush(b), &mut out).unwrap();
                    expected.push(Event::MultifdFlush(b));
                }
                Item::Part(t) => {
                    enc.section_part(*t, self.ram_id, &mut out);
                    expected.push(Event::SectionPart {
                        section_type: *t,
                        section_id: self.ram_id,
                    });
                }
                Item::EndRam => {
                    enc.eos(&mut out);
                    expected.push(Event::Eos(BareRecord {
                        word: RamFlags::EOS.bits(),
                    }));
                    enc.footer(self.ram_id, &mut out);
                    expected.push(Event::Footer {
                        section_id: self.ram_id,
                    });
                }
                Item::Device {
                    section_id,
                    idstr,
                    instance_id,
                    version_id,
                    body,
                } => {
                    let header = SectionHeader {
                        section_type: SectionType::FULL,
                        section_id: *section_id,
                        idstr,
                        instance_id: *instance_id,
                        version_id: *version_id,
                    };
                    let d = DeviceSection {
                        header,
                        body_offset: 0,
                        body,
                    };
                    enc.device(&d, &mut out).unwrap();
                    enc.footer(*section_id, &mut out);
                    expected.push(Event::Device(d));
                    expected.push(Event::Footer {
                        section_id: *section_id,
                    });
                }
                Item::Command(c, payload) => {
                    enc.command(*c, payload, &mut out).unwrap();
                    expected.push(Event::Command(crate::CommandRecord {
                        command: *c,
                        payload,
                    }));
                }
            }
        }
        enc.eof(&mut out);
        expected.push(Event::Eof);
        if let Some(j) = &self.vmdesc {
            enc.vmdesc(j, &mut out).unwrap();
            expected.push(Event::VmDescription(j));
        }

        let opts = DecoderOptions {
            dialect: self.dialect,
            limits: fuzz_limits(),
            ..DecoderOptions::default()
        };
        let events = decode_all(&out, opts.clone())
            .unwrap_or_else(|e| panic!("encoded stream does not decode: {e}"));
        let got: Vec<Event<'_>> = events
            .iter()
            .map(|(_, e)| match e {
                Event::Device(d) => Event::Device(DeviceSection {
                    body_offset: 0,
                    ..*d
                }),
                e => e.clone(),
            })
            .collect();
        assert_events_eq(
            &got,
            &expected,
            "decoded events differ from the records written",
        );
        for (at, e) in &events {
            if let Event::Device(d) = e {
                assert!(d.body_offset > *at);
            }
        }
        // Same events in chunks, and the bytes again from the decoded events.
        let split = decode_in_chunks(&out, opts.clone(), split_sizes(0x05));
        assert_same_run(&decode_whole(&out, opts.clone()), &split, "split");
        let again = crate::transcode::reencode(&out, crate::transcode::Mode::Verbatim, &opts)
            .expect("verbatim re-encode");
        assert!(again == out, "verbatim re-encode differs");

        // The RAM the records build is the model's.
        let mut image = RamImage::new(ps);
        for (at, ev) in &events {
            if let Event::MemSize(ms) = ev {
                image.set_blocks(&ms.blocks);
            }
            apply_event(&mut image, ev, *at).expect("own XBZRLE delta does not apply");
        }
        let mut blocks_now = Vec::<RamBlock>::new();
        let mut state: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
        for item in &self.items {
            let (a, page) = match item {
                Item::MemSize(b) => {
                    blocks_now = b.clone();
                    state.retain(|(n, off), _| {
                        blocks_now
                            .iter()
                            .any(|b| &b.idstr == n && *off < b.used_length)
                    });
                    continue;
                }
                Item::Page(a, d) => (a, d.clone()),
                Item::Zero(a, f) => (a, vec![*f; ps]),
                Item::Xbzrle(a, _, n) => (a, n.clone()),
                _ => continue,
            };
            state.insert((blocks_now[a.block].idstr.clone(), a.offset), page);
        }
        for (bi, b) in image.blocks().iter().enumerate() {
            for (off, page) in b.pages() {
                let want = state
                    .get(&(b.idstr.clone(), off))
                    .cloned()
                    .unwrap_or_else(|| vec![0; ps]);
                assert!(
                    page == &want[..],
                    "block {bi} page {off:#x} differs from the model"
                );
            }
        }
        for ((name, off), want) in &state {
            let Some(bi) = image.blocks().iter().position(|b| &b.idstr == name) else {
                continue;
            };
            let got = image.page(PageAddr {
                block: bi,
                offset: *off,
            });
            assert!(
                got[..] == want[..],
                "{name} page {off:#x} differs from the model"
            );
        }
    }
}

/// Makes sure `body ++ footer(id)` has its first `7E be32(id)` at the footer, so the
/// device framing finds the body's real end.
fn strip_footers(body: &mut [u8], id: u32) {
    let footer = {
        let mut f = vec![SectionType::FOOTER.0];
        f.extend_from_slice(&id.to_be_bytes());
        f
    };
    loop {
        let mut all = body.to_vec();
        all.extend_from_slice(&footer);
        match all.windows(footer.len()).position(|w| w == footer) {
            Some(p) if p < body.len() => body[p] = 0x7f,
            _ => return,
        }
    }
}

/// Target `vmdesc`: `mode, …` with `real_json` a real VMDESCRIPTION (the fuzz target embeds
/// one from a vector). Mode bit 0 clear: the rest is JSON for [`VmDescription::parse`](crate::vmdesc::VmDescription::parse)
/// (and [`VmDescription::parse_trailer`](crate::vmdesc::VmDescription::parse_trailer) on the same bytes); whatever parses is walked
/// over the input. Set: the next byte picks a device of `real_json` and the rest is its
/// body for [`decode_device`](crate::vmdesc::decode_device).
pub fn vmdesc(real_json: &[u8], data: &[u8]) {
    use crate::vmdesc::{decode_device, decode_device_prefix, decode_vmsd, VmDescription};
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode & 1 == 0 {
        let _ = VmDescription::parse_trailer(rest);
        let Ok(desc) = VmDescription::parse(rest) else {
            return;
        };
        for d in desc.devices.iter().take(8) {
            if let Ok(v) = decode_device_prefix(d, rest) {
                assert!(v.consumed <= rest.len());
                let _ = serde_json::to_string(&v);
            }
        }
        if let Some(c) = &desc.configuration {
            if let Ok(v) = decode_vmsd("configuration", c, rest) {
                assert!(v.consumed <= rest.len());
            }
        }
        return;
    }
    let desc = VmDescription::parse(real_json).expect("the real vmdesc parses");
    let [pick, body @ ..] = rest else {
        return;
    };
    if desc.devices.is_empty() {
        return;
    }
    let d = &desc.devices[usize::from(*pick) % desc.devices.len()];
    match decode_device(d, body) {
        Ok(v) => {
            assert_eq!(v.consumed, body.len());
            let _ = serde_json::to_string(&v);
        }
        Err(_) => {
            if let Ok(v) = decode_device_prefix(d, body) {
                assert!(v.consumed <= body.len());
            }
        }
    }
}

/// Panics with the first differing event (each shown in at most 400 characters) when the two
/// lists differ: a whole stream's events are too long to read in a fuzzer's log.
fn assert_events_eq(got: &[Event<'_>], expected: &[Event<'_>], what: &str) {
    if got == expected {
        return;
    }
    let short = |e: Option<&Event<'_>>| {
        let mut s = format!("{e:?}");
        if s.len() > 400 {
            let mut cut = 400;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    };
    let i = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    panic!(
        "{what}: {} events decoded, {} written; first difference at event {i}:\n  decoded: {}\n  written: {}",
        got.len(),
        expected.len(),
        short(got.get(i)),
        short(expected.get(i)),
    );
}
