//! The balloon extension on the source (SPEC.md §9): full maps at START and wherever the
//! balloon changed, ballooned pages never read nor sent, and a destination that loads it.

mod source_support;
mod support;

use std::cell::Cell;
use std::time::{Duration, Instant};

use ramstream_codec::balloon::{BalloonMap, PageRun};
use ramstream_codec::{decode_all, Event, PageAddr, RamBlock};
use ramstream_migrate::{GuestRam, RamBlockLayout, Source, SourceOptions, Transmit};
use source_support::*;

/// Which pages are ballooned, and how many times one was read.
struct Ballooned {
    runs: Vec<(usize, PageRun)>,
    reads: Cell<u64>,
}

/// Guest memory that counts reads of ballooned pages.
struct Counting<'a> {
    ram: &'a ScriptedGuest,
    ballooned: &'a Ballooned,
}

type GuestError = <ScriptedGuest as GuestRam>::Error;

impl GuestRam for Counting<'_> {
    type Error = GuestError;
    fn layout(&self) -> &[RamBlockLayout] {
        self.ram.layout()
    }
    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError> {
        let b = self.ballooned;
        if b.runs
            .iter()
            .any(|(block, r)| *block == addr.block && r.contains(addr, PAGE))
        {
            b.reads.set(b.reads.get() + 1);
        }
        self.ram.read_page(addr, buf)
    }
    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), GuestError> {
        self.ram.write_page(addr, data)
    }
}

#[test]
fn ballooned_pages_are_announced_by_runs_and_never_read() {
    let mut g = guest(vec![]);
    g.apply(&w(0, 0, 256, 1));
    g.apply(&w(1, 0, 64, 2));
    g.steady = vec![w(0, 0, 4, 3)];
    let opts = SourceOptions::default()
        .with_balloon(true)
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(3);
    let mut source = Source::new(&layout(), opts.clone()).unwrap();
    // The balloon before migrating: pages 100..150 of pc.ram and 10..20 of ram1, given to
    // the host (their contents are undefined; the guest no longer touches them).
    let mut map = BalloonMap::new(
        &layout()
            .iter()
            .map(|b| RamBlock {
                idstr: b.idstr().into(),
                used_length: b.used_length(),
                page_size: None,
                mr_addr: None,
            })
            .collect::<Vec<_>>(),
        12,
    );
    map.inflate(0, 100..150).unwrap();
    map.inflate(1, 10..20).unwrap();
    source.update_balloon(&map).unwrap();
    let mut ballooned = Ballooned {
        runs: vec![(0, PageRun::new(100, 50)), (1, PageRun::new(10, 10))],
        reads: Cell::new(0),
    };
    let (mut stream, mut now, mut syncs) = (Vec::new(), Instant::now(), 0);
    loop {
        now += Duration::from_millis(1);
        let ram = Counting {
            ram: &g,
            ballooned: &ballooned,
        };
        match source.poll_transmit(now, &ram, &mut stream).unwrap() {
            Transmit::Send { bytes } => source.handle_sent(bytes),
            Transmit::SyncDirty => {
                syncs += 1;
                if syncs == 3 {
                    // During the first dirty iteration the guest deflates 140..150 and
                    // inflates 0..4 of pc.ram (which it was dirtying).
                    map.deflate(0, 140..150).unwrap();
                    map.inflate(0, 0..4).unwrap();
                    ballooned.runs = vec![
                        (0, PageRun::new(0, 4)),
                        (0, PageRun::new(100, 40)),
                        (1, PageRun::new(10, 10)),
                    ];
                    // Deflated pages come back from the host zeroed.
                    g.apply(&ScriptStep::Zero {
                        block: 0,
                        first: 140,
                        count: 10,
                    });
                    g.steady = vec![w(0, 140, 2, 5)];
                }
                g.run_until_sync();
                source.update_balloon(&map).unwrap();
                source.sync_dirty(now, &mut g).unwrap();
            }
            Transmit::StopGuest => source.handle_stopped(now, &mut devices()).unwrap(),
            Transmit::Done => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ballooned.reads.get(), 0, "ballooned pages are never read");
    let s = source.stats();
    assert!(s.ballooned_skipped >= 60, "{s:?}");
    // Two full maps at START (one per block), one when pc.ram's balloon changed.
    assert_eq!(s.balloon_records, 3);

    // Announced, and readable only in the balloon dialect.
    assert!(decode_all(&stream, Default::default()).is_err());
    let events = decode_all(&stream, decoder(&opts)).unwrap();
    let Some(Event::Configuration(c)) = events.get(1).map(|(_, e)| e) else {
        panic!("no configuration");
    };
    assert!(c.has_capability("x-ramstream-balloon-v1"));
    let balloons = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Balloon(_)))
        .count();
    assert_eq!(balloons, 3);
    // No page record for a page ballooned at that point of the stream: the Loader refuses
    // one (PageOfBallooned), and loads this stream.
    let (dest, _) = load(&stream, decoder(&opts));
    let ballooned_at_end = [
        (0, vec![PageRun::new(0, 4), PageRun::new(100, 40)]),
        (1, vec![PageRun::new(10, 10)]),
    ];
    for (block, runs) in ballooned_at_end {
        let (src, dst) = (g.block(block), dest.contents(block));
        let addrs = PageRun::of_block(src.len() as u64, PAGE).addrs(block, PAGE);
        for ((s, d), addr) in src.chunks(PAGE).zip(dst.chunks(PAGE)).zip(addrs) {
            if runs.iter().any(|x| x.contains(addr, PAGE)) {
                assert!(d.iter().all(|&b| b == 0), "ballooned {addr:?}");
            } else {
                assert!(s == d, "page {addr:?} differs");
            }
        }
    }
}
