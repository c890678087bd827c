//! The source tests' guest and loop: test-support's `ScriptedGuest` (memory changed by a
//! script at each dirty sync, and the dirty log those writes leave) on a small layout, a
//! fake clock, and the loop that drives a `Source` into a `Vec<u8>` and loads the result
//! with the `Loader`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ramstream_codec::{decode_all, DecoderOptions, Event};
use ramstream_migrate::{
    Error, Loader, LoaderEvent, LoaderOptions, OwnedDeviceBlob, PageRun, RamBlockLayout, Source,
    SourceOptions, Transmit,
};
pub use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use ramstream_spec::stream::SectionType;
use ramstream_spec::Dialect;
pub use ramstream_test_support::{ScriptStep, ScriptedGuest};

use crate::support::VecRam;

/// `pc.ram` (256 pages) and `ram1` (64 pages).
pub fn layout() -> Vec<RamBlockLayout> {
    let block = |name: &str, pages: u64| {
        RamBlockLayout::new(name, PageRun::new(0, pages).byte_range(PAGE).end)
    };
    vec![block("pc.ram", 256), block("ram1", 64)]
}

/// A running guest with the blocks of [`layout`], changed by `script[i]` at the `i`-th
/// dirty sync (sync 0 is the setup sync), and past the script by its `steady` steps.
pub fn guest(script: Vec<Vec<ScriptStep>>) -> ScriptedGuest {
    ScriptedGuest::with_blocks(&layout(), script)
}

/// The guest writes a new pattern (seeded) into `count` pages from `first`.
pub fn w(block: usize, first: u64, count: u64, seed: u64) -> ScriptStep {
    ScriptStep::Write {
        block,
        first,
        count,
        seed,
    }
}

/// Asserts that the loaded memory `dest` is the guest's, page by page.
pub fn assert_same_memory(g: &ScriptedGuest, dest: &VecRam) {
    for block in 0..layout().len() {
        let (x, y) = (g.block(block), dest.contents(block));
        for (p, (pa, pb)) in x.chunks(PAGE).zip(y.chunks(PAGE)).enumerate() {
            assert!(pa == pb, "block {block} page {p} differs");
        }
    }
}

/// A fake clock: `tick` per poll, jumping to the instant a `Wait` names.
pub struct FakeClock {
    pub now: Instant,
    pub tick: Duration,
}

impl FakeClock {
    pub fn new(tick: Duration) -> Self {
        FakeClock {
            now: Instant::now(),
            tick,
        }
    }
}

/// What a migration produced.
pub struct Migrated {
    pub source: Source,
    pub stream: Vec<u8>,
    /// Stream length at each `SyncDirty` (the setup sync first).
    pub syncs_at: Vec<usize>,
    /// Every `Wait` instant, with the clock when it came.
    pub waits: Vec<(Instant, Instant)>,
}

/// Two device blobs, as a VMM's device model would hand them over.
pub fn devices() -> Vec<OwnedDeviceBlob> {
    vec![
        OwnedDeviceBlob {
            idstr: "timer".into(),
            instance_id: 0,
            version_id: 2,
            body: vec![1, 2, 3, 4],
        },
        OwnedDeviceBlob {
            idstr: "cpu".into(),
            instance_id: 0,
            version_id: 12,
            body: b"vcpu state".to_vec(),
        },
    ]
}

/// Drives a source over `guest` into a `Vec<u8>` with `clock`, reporting every byte sent
/// if `report_sent`.
pub fn migrate_with(
    guest: &mut ScriptedGuest,
    opts: SourceOptions,
    clock: &mut FakeClock,
    report_sent: bool,
) -> Result<Migrated, Error> {
    let mut source = Source::new(&layout(), opts)?;
    let (mut stream, mut syncs_at, mut waits) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        clock.now += clock.tick;
        let now = clock.now;
        match source.poll_transmit(now, &*guest, &mut stream)? {
            Transmit::Send { bytes } if report_sent => source.handle_sent(bytes),
            Transmit::Send { .. } => {}
            Transmit::Wait(until) => {
                waits.push((now, until));
                clock.now = until - clock.tick;
            }
            Transmit::SyncDirty => {
                syncs_at.push(stream.len());
                guest.run_until_sync();
                source.sync_dirty(now, &mut *guest)?;
            }
            Transmit::StopGuest => {
                guest.stop();
                source.handle_stopped(now, &mut devices())?;
            }
            Transmit::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    Ok(Migrated {
        source,
        stream,
        syncs_at,
        waits,
    })
}

/// [`migrate_with`] on a 1 ms clock, every byte reported.
pub fn migrate(guest: &mut ScriptedGuest, opts: SourceOptions) -> Migrated {
    let mut clock = FakeClock::new(Duration::from_millis(1));
    migrate_with(guest, opts, &mut clock, true).expect("migration")
}

/// The decoder options for a stream of `opts`.
pub fn decoder(opts: &SourceOptions) -> DecoderOptions {
    if opts.balloon {
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1)
    } else {
        DecoderOptions::default()
    }
}

/// Loads `stream` with the `Loader` into a fresh `VecRam` made from its MEM_SIZE; returns
/// it and the device blobs.
pub fn load(stream: &[u8], decoder: DecoderOptions) -> (VecRam, Vec<OwnedDeviceBlob>) {
    load_with(stream, LoaderOptions::default().with_decoder(decoder))
}

/// [`load`] with any loader options.
pub fn load_with(stream: &[u8], opts: LoaderOptions) -> (VecRam, Vec<OwnedDeviceBlob>) {
    let mut loader = Loader::without_ram(opts);
    let (mut pos, mut devices) = (0, Vec::new());
    loader.finish();
    loop {
        let p = loader
            .handle(&stream[pos..])
            .expect("the loader takes the stream");
        pos += p.consumed;
        match p.event {
            Some(LoaderEvent::RamNeeded(blocks)) => {
                loader.provide_ram(VecRam::new(&blocks)).unwrap();
            }
            Some(LoaderEvent::Device(d)) => devices.push(d.to_owned()),
            Some(LoaderEvent::Done) => break,
            Some(_) => {}
            None => panic!("a finished loader asked for more"),
        }
    }
    assert_eq!(pos, stream.len());
    (loader.into_ram().expect("ram"), devices)
}

/// The decoded events' kinds, in order, for counting.
pub fn kinds(stream: &[u8], opts: DecoderOptions) -> Vec<(u64, String)> {
    decode_all(stream, opts)
        .expect("the stream decodes")
        .iter()
        .map(|(at, e)| {
            let k = match e {
                Event::SectionStart(_) => "START".to_string(),
                Event::SectionPart { section_type, .. } if *section_type == SectionType::END => {
                    "END".into()
                }
                Event::SectionPart { .. } => "PART".into(),
                Event::Page(_) => "PAGE".into(),
                Event::Zero(_) => "ZERO".into(),
                Event::Xbzrle(_) => "XBZRLE".into(),
                Event::Balloon(_) => "BALLOON".into(),
                Event::Device(d) => format!("DEVICE {}", d.header.idstr),
                Event::Eof => "EOF".into(),
                Event::VmDescription(_) => "VMDESC".into(),
                other => format!("{other:?}")
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap()
                    .into(),
            };
            (*at, k)
        })
        .collect()
}
