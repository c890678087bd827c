//! A scripted guest for the source tests: memory in a `VecRam`, a script of writes applied
//! at each dirty sync, the dirty log those writes leave, a fake clock, and the loop that
//! drives a `Source` into a `Vec<u8>` and loads the result with the `Loader`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use ramstream_codec::{decode_all, DecoderOptions, Event, PageAddr};
use ramstream_migrate::{
    DirtyPageSource, Error, GuestRam, Loader, LoaderEvent, LoaderOptions, OwnedDeviceBlob, PageRun,
    RamBlockLayout, Source, SourceOptions, Transmit,
};
use ramstream_spec::stream::SectionType;
use ramstream_spec::Dialect;

use crate::support::VecRam;

pub const PAGE: usize = 4096;

/// `pc.ram` (256 pages) and `ram1` (64 pages).
pub fn layout() -> Vec<RamBlockLayout> {
    vec![
        RamBlockLayout::new("pc.ram", 256 * PAGE as u64),
        RamBlockLayout::new("ram1", 64 * PAGE as u64),
    ]
}

/// What the guest does to some pages.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Writes a whole new pattern (seeded) into `count` pages from `first`.
    Write {
        block: usize,
        first: u64,
        count: u64,
        seed: u64,
    },
    /// Changes the first 8 bytes of each page (a small delta for XBZRLE).
    Touch {
        block: usize,
        first: u64,
        count: u64,
        seed: u64,
    },
    /// Zeroes the pages.
    Zero {
        block: usize,
        first: u64,
        count: u64,
    },
}

pub fn w(block: usize, first: u64, count: u64, seed: u64) -> Step {
    Step::Write {
        block,
        first,
        count,
        seed,
    }
}

/// A page of a recognisable pattern: every 8th byte from a tiny generator, the rest zero
/// (half the page stays zero, so XBZRLE has runs to skip).
pub fn pattern(block: usize, page: u64, seed: u64) -> Vec<u8> {
    let mut x = seed ^ (block as u64) << 32 ^ page.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = vec![0u8; PAGE];
    for i in (0..PAGE / 2).step_by(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = x as u8 | 1;
    }
    v
}

/// The dirty log: runs per block, handed out and forgotten by `take_dirty`.
#[derive(Debug, Default)]
pub struct DirtyLog(pub Vec<Vec<PageRun>>);

impl DirtyPageSource for DirtyLog {
    type Error = Infallible;

    fn take_dirty(
        &mut self,
        block: usize,
        visit: &mut dyn FnMut(PageRun),
    ) -> Result<(), Infallible> {
        for r in self.0[block].drain(..) {
            visit(r);
        }
        Ok(())
    }
}

/// A guest whose memory is a `VecRam`, changed by `script[i]` at the `i`-th dirty sync
/// (sync 0 is the setup sync), and past the script by `steady`, while it runs.
pub struct ScriptedGuest {
    pub ram: VecRam,
    pub log: DirtyLog,
    pub script: Vec<Vec<Step>>,
    pub steady: Vec<Step>,
    pub syncs: usize,
    pub running: bool,
}

impl ScriptedGuest {
    pub fn new(script: Vec<Vec<Step>>) -> Self {
        let l = layout();
        ScriptedGuest {
            ram: VecRam::new(&l),
            log: DirtyLog(vec![Vec::new(); l.len()]),
            script,
            steady: Vec::new(),
            syncs: 0,
            running: true,
        }
    }

    /// Applies `step` now, logging the pages it dirtied.
    pub fn apply(&mut self, step: Step) {
        let (block, first, count) = match step {
            Step::Write {
                block,
                first,
                count,
                ..
            }
            | Step::Touch {
                block,
                first,
                count,
                ..
            }
            | Step::Zero {
                block,
                first,
                count,
            } => (block, first, count),
        };
        for p in first..first + count {
            let addr = PageAddr {
                block,
                offset: p * PAGE as u64,
            };
            let page = match step {
                Step::Write { seed, .. } => pattern(block, p, seed),
                Step::Touch { seed, .. } => {
                    let mut page = vec![0; PAGE];
                    self.ram.read_page(addr, &mut page).unwrap();
                    page[..8].copy_from_slice(&(seed | 1).to_le_bytes());
                    page
                }
                Step::Zero { .. } => vec![0; PAGE],
            };
            self.ram.write_page(addr, &page).unwrap();
        }
        self.log.0[block].push(PageRun::new(first, count));
    }

    /// What the guest did since the last sync.
    pub fn run_until_sync(&mut self) {
        if self.running {
            let steps = self
                .script
                .get(self.syncs)
                .cloned()
                .unwrap_or_else(|| self.steady.clone());
            for s in steps {
                self.apply(s);
            }
        }
        self.syncs += 1;
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
        match source.poll_transmit(now, &guest.ram, &mut stream)? {
            Transmit::Send { bytes } if report_sent => source.handle_sent(bytes),
            Transmit::Send { .. } => {}
            Transmit::Wait(until) => {
                waits.push((now, until));
                clock.now = until - clock.tick;
            }
            Transmit::SyncDirty => {
                syncs_at.push(stream.len());
                guest.run_until_sync();
                source.sync_dirty(now, &mut guest.log)?;
            }
            Transmit::StopGuest => {
                guest.running = false;
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
        DecoderOptions::with_dialect(Dialect::RamstreamBalloonV1)
    } else {
        DecoderOptions::default()
    }
}

/// Loads `stream` with the `Loader` into a fresh `VecRam` made from its MEM_SIZE; returns
/// it and the device blobs.
pub fn load(stream: &[u8], decoder: DecoderOptions) -> (VecRam, Vec<OwnedDeviceBlob>) {
    load_with(
        stream,
        LoaderOptions {
            decoder,
            ..LoaderOptions::default()
        },
    )
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
