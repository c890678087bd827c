//! The checks every decoded stream goes through: sane events, the image and balloon map
//! they build, and re-encoding.

use ramstream_codec::{
    apply_event, decode_all, DecoderOptions, DeviceSection, Encoder, ErrorKind, Event, RamBlock,
    RamImage, ZeroFill,
};
use ramstream_spec::ram::{TARGET_PAGE_BITS_MAX, TARGET_PAGE_BITS_MIN};
use ramstream_spec::Dialect;

use super::{
    assert_same_run, decode_in_chunks, decode_whole, decode_with_zero_runs,
    reference_xbzrle_decode, split_sizes, MAX_RESIDENT_PAGES,
};

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
                assert!(matches!(opts.dialect, Dialect::Qemu | Dialect::Qemu8_1));
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
            // Its pages are on other channels: rebuilding from this stream is refused.
            Event::MultifdFlush(_) => assert_eq!(
                apply_event(&mut image, ev, *at).unwrap_err().kind,
                ErrorKind::PagesOnMultifdChannels
            ),
            _ => assert!(!apply_event(&mut image, ev, *at).unwrap()),
        }
    }
}

/// Applies balloon records to a [`BalloonMap`](ramstream_codec::balloon::BalloonMap) (run-based: no
/// allocation per page) and checks that it stays inside its blocks.
fn apply_to_balloon_map(events: &[(u64, Event<'_>)], page_bits: u32) {
    use ramstream_codec::balloon::BalloonMap;
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
    let runs = decode_with_zero_runs(stream, opts.clone(), 1 + u64::from(split_seed));
    assert_same_run(&whole, &runs, "ZERO records taken a run at a time");
    check_events(&whole.events, opts);
    let mut summary = ramstream_codec::summary::StreamSummary::default();
    for (at, ev) in &whole.events {
        summary.observe(*at, ev);
    }
    let page_size = page_size_of(&whole.events, opts);
    apply_to_image(&whole.events, page_size);
    apply_to_balloon_map(&whole.events, page_size.trailing_zeros());
    if whole.end.is_ok() {
        check_reencode(&whole.events, opts);
        let _ = ramstream_codec::transcode::reencode(
            stream,
            ramstream_codec::transcode::Mode::RecomputeXbzrle,
            opts,
        );
    }
}
