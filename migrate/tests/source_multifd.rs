//! The precopy source with multifd (SPEC.md §14), on one thread: a scripted guest through
//! the bulk pass, dirty iterations and stop-and-copy, its packets encoded by the channels'
//! `ChannelSender`s with a lag (jobs queue up per channel and are written later, as
//! threads would), then the main stream decoded by the codec and every channel by its
//! channel decoder with default options (SPEC.md §14.8's refusal rules), RAM rebuilt epoch
//! by epoch and compared with the guest's.

mod source_support;
mod support;

use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU8;
use std::time::Duration;

use ramstream_codec::multifd::{decode_channel, BlockTable, ChannelEvent, ChannelOptions};
use ramstream_codec::{decode_all, DecoderOptions, Event, PageAddr, RamBlock};
use ramstream_migrate::multifd::{ChannelLoadEvent, ChannelLoader};
use ramstream_migrate::{
    ErrorKind, GuestRam, Loader, LoaderEvent, LoaderOptions, Multifd, MultifdSendOptions,
    PacketJob, RamBlockLayout, Source, SourceOptions, Transmit,
};
use source_support::*;
use support::VecRam;

const UUID: [u8; 16] = *b"ramstream-mfd-01";

fn multifd(channels: u8) -> SourceOptions {
    SourceOptions::default()
        .with_multifd(Some(
            MultifdSendOptions::default()
                .with_channels(NonZeroU8::new(channels).unwrap())
                .with_uuid(UUID),
        ))
        .with_balloon(false)
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(3)
}

/// A guest with data and zero pages in both blocks, dirtying pages at every sync.
fn busy_guest() -> ScriptedGuest {
    let mut g = guest(vec![
        vec![w(0, 0, 100, 1)],
        vec![w(0, 10, 20, 2), w(1, 5, 3, 3)],
        vec![
            w(0, 50, 5, 4),
            ScriptStep::Zero {
                block: 0,
                first: 0,
                count: 2,
            },
        ],
        vec![w(1, 60, 4, 5)],
        vec![w(0, 200, 8, 6), w(1, 0, 1, 7)],
    ]);
    g.apply(&w(0, 100, 50, 9));
    g.apply(&w(1, 0, 64, 10));
    g
}

/// What a multifd migration produced.
struct Run {
    source: Source,
    main: Vec<u8>,
    channels: Vec<Vec<u8>>,
    /// `WaitChannels` and `Wait` answers seen.
    waits: usize,
}

/// Drives a multifd source over `g`: jobs queue per channel and are written `lag` behind
/// (at most `lag` left queued after each `Packets`), the rest when the source waits.
fn run(
    g: &mut ScriptedGuest,
    opts: SourceOptions,
    lag: usize,
) -> Result<Run, ramstream_migrate::Error> {
    let n = usize::from(opts.multifd.unwrap().channels.get());
    let mut source = Source::new(&layout(), opts)?;
    let mut senders = source.channel_senders();
    assert_eq!(senders.len(), n);
    let mut queues: Vec<VecDeque<PacketJob>> = vec![VecDeque::new(); n];
    let mut channels = vec![Vec::new(); n];
    let (mut main, mut waits, mut next) = (Vec::new(), 0, 0);
    let mut clock = FakeClock::new(Duration::from_millis(1));
    // Writes the oldest job of channel `k`.
    let mut write = |k: usize,
                     source: &mut Source,
                     queues: &mut Vec<VecDeque<PacketJob>>,
                     g: &ScriptedGuest| {
        let job = queues[k].pop_front().expect("a queued job");
        let mut out = Vec::new();
        let sent = senders[k].encode(&job, g, &mut out)?;
        assert_eq!(sent.bytes, out.len());
        channels[k].extend_from_slice(&out);
        source.handle_packet_sent(&sent)
    };
    loop {
        clock.now += clock.tick;
        let now = clock.now;
        match source.poll_transmit(now, &*g, &mut main)? {
            Transmit::Send { bytes } => source.handle_sent(bytes),
            Transmit::Packets => {
                while let Some(job) = source.poll_packet() {
                    queues[usize::from(job.channel())].push_back(job);
                }
                for k in 0..n {
                    while queues[k].len() > lag {
                        write(k, &mut source, &mut queues, g)?;
                    }
                }
            }
            Transmit::WaitChannels => {
                waits += 1;
                // One job, from the channels in turn (as reports would arrive).
                let k = (0..n)
                    .map(|i| (next + i) % n)
                    .find(|&k| !queues[k].is_empty())
                    .expect("the source waits for a queued job");
                next = k + 1;
                write(k, &mut source, &mut queues, g)?;
            }
            Transmit::SyncDirty => {
                assert!(
                    queues.iter().all(VecDeque::is_empty),
                    "drained before a sync"
                );
                g.run_until_sync();
                source.sync_dirty(now, &mut *g)?;
            }
            Transmit::StopGuest => {
                g.stop();
                source.handle_stopped(now, &mut devices())?;
            }
            Transmit::Wait(until) => {
                waits += 1;
                clock.now = until - clock.tick;
            }
            Transmit::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(queues.iter().all(VecDeque::is_empty));
    Ok(Run {
        source,
        main,
        channels,
        waits,
    })
}

fn ram_blocks() -> Vec<RamBlock> {
    layout()
        .iter()
        .map(|b| RamBlock {
            idstr: b.idstr().into(),
            used_length: b.used_length(),
            page_size: None,
            mr_addr: None,
        })
        .collect()
}

/// What the recording says, checked against SPEC.md §14: the main stream's sync points,
/// each channel's initial packet and SYNC packets; RAM rebuilt by applying every channel's
/// pages epoch by epoch (pages before the k-th SYNC belong to sync point k).
struct Decoded {
    flushes: usize,
    image: Vec<Vec<u8>>,
    normal: u64,
    zero: u64,
}

/// One channel's pages between two SYNC packets: contents, or `None` for a zero page.
type Epoch<'a> = Vec<(PageAddr, Option<&'a [u8]>)>;

fn decode(run: &Run) -> Decoded {
    let n = run.channels.len();
    // The main stream: default options (dialect qemu), no page record, a FLUSH before
    // the EOS of START and of each round's last section.
    let events = decode_all(&run.main, DecoderOptions::default()).expect("main stream");
    let mut flushes = 0;
    for (i, (at, e)) in events.iter().enumerate() {
        match e {
            Event::Configuration(c) => assert_eq!(c.capabilities, None, "QEMU lists no multifd"),
            Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_) | Event::Balloon(_) => {
                panic!("a page record on the main stream at {at:#x}")
            }
            Event::MultifdFlush(_) => {
                flushes += 1;
                assert!(matches!(events[i + 1].1, Event::Eos(_)), "FLUSH then EOS");
            }
            _ => {}
        }
    }
    let blocks = BlockTable::new(&ram_blocks());
    // Per channel, per sync point: the pages (contents, or none for a zero page).
    let mut epochs: Vec<Vec<Epoch<'_>>> = vec![Vec::new(); n];
    let (mut normal, mut zero) = (0, 0);
    for (k, ch) in run.channels.iter().enumerate() {
        // Default options enforce SPEC.md §14.8's rules; the migration's own too.
        decode_channel(ch, ChannelOptions::default(), &blocks).expect("channel, default options");
        let opts = ChannelOptions::default()
            .with_channels(Some(n as u8))
            .with_uuid(Some(UUID));
        let events = decode_channel(ch, opts, &blocks).expect("channel");
        let ChannelEvent::Init(init) = events[0].1 else {
            panic!("channel {k} starts with {:?}", events[0].1)
        };
        assert_eq!((init.id, init.uuid), (k as u8, UUID));
        let mut epoch = Vec::new();
        for (_, e) in &events[1..] {
            match *e {
                ChannelEvent::Page { addr, data } => {
                    normal += 1;
                    epoch.push((addr, Some(data)));
                }
                ChannelEvent::Zero { addr } => {
                    zero += 1;
                    epoch.push((addr, None));
                }
                ChannelEvent::Sync => epochs[k].push(std::mem::take(&mut epoch)),
                ChannelEvent::Init(_) => panic!("a second initial packet"),
                _ => {}
            }
        }
        assert!(epoch.is_empty(), "channel {k}: pages after its last SYNC");
        assert_eq!(
            epochs[k].len(),
            flushes,
            "channel {k}: a SYNC per sync point"
        );
    }
    let mut image: Vec<Vec<u8>> = layout()
        .iter()
        .map(|b| vec![0; b.used_length() as usize])
        .collect();
    for sync in 0..flushes {
        let mut seen = BTreeSet::new();
        for ch in &epochs {
            for &(addr, data) in &ch[sync] {
                assert!(seen.insert(addr), "{addr:?} twice in epoch {sync}");
                let at = addr.offset as usize;
                let page = &mut image[addr.block][at..at + PAGE];
                match data {
                    Some(d) => page.copy_from_slice(d),
                    None => page.fill(0),
                }
            }
        }
    }
    Decoded {
        flushes,
        image,
        normal,
        zero,
    }
}

#[test]
fn rounds_over_four_lagging_channels_rebuild_the_guest() {
    for (channels, lag) in [(1, 0), (2, 1), (4, 3), (3, 8)] {
        let mut g = busy_guest();
        let run = run(&mut g, multifd(channels), lag).expect("migration");
        let s = run.source.stats();
        let d = decode(&run);
        // Setup, the bulk pass, three dirty iterations, stop-and-copy.
        assert_eq!((s.iterations, s.dirty_sync_count), (3, 6));
        assert_eq!(
            d.flushes, 6,
            "a sync point at setup and at each round's end"
        );
        assert_eq!(s.multifd_syncs, 6);
        for b in 0..layout().len() {
            assert!(
                d.image[b] == g.block(b),
                "{channels} channels: block {b} differs"
            );
        }
        // The figures are the channels'.
        let total: usize = run.channels.iter().map(Vec::len).sum();
        assert_eq!(s.multifd_bytes, total as u64);
        assert_eq!(s.sent, (run.main.len() + total) as u64);
        assert_eq!(s.produced, run.main.len() as u64);
        assert_eq!((s.normal, s.duplicate), (d.normal, d.zero));
        assert_eq!(s.pages_visited, d.normal + d.zero);
        assert!(d.normal > 200 && d.zero > 100, "{s:?}");
        assert_eq!(s.channels.len(), usize::from(channels));
        for (k, c) in s.channels.iter().enumerate() {
            assert_eq!(c.bytes, run.channels[k].len() as u64);
            assert_eq!(c.syncs, 6);
            assert!(c.normal + c.zero > 0, "channel {k} carried pages");
        }
        assert_eq!(run.source.packets_in_flight(), 0);
        if lag > 0 {
            assert!(run.waits > 0, "the source waited for its channels");
        }
    }
}

#[test]
fn the_destination_engine_loads_it_sync_point_by_sync_point() {
    let mut g = busy_guest();
    let run = run(&mut g, multifd(3), 2).expect("migration");
    let ram = VecRam::new(&layout());
    let opts = LoaderOptions::default().with_multifd(Multifd::Channels(3));
    let mut loader = Loader::new(&ram, opts);
    loader.finish();
    let session = loader.multifd().expect("multifd").clone();
    let mut channels: Vec<_> = (0..3).map(|_| session.channel_loader()).collect();
    let mut pos = [0usize; 3];
    // Feeds channel `i` until it says `until`.
    let mut feed = |i: usize, until: ChannelLoadEvent, channels: &mut Vec<ChannelLoader>| loop {
        let p = channels[i]
            .handle(&ram, &run.channels[i][pos[i]..])
            .expect("channel loads");
        pos[i] += p.consumed;
        if p.event == Some(until) {
            break;
        }
    };
    let (mut at, mut syncs) = (0, 0);
    loop {
        let p = loader.handle(&run.main[at..]).expect("main stream loads");
        at += p.consumed;
        match p.event {
            Some(LoaderEvent::MultifdSync(k)) => {
                for i in 0..3 {
                    feed(i, ChannelLoadEvent::Sync(k), &mut channels);
                }
                loader.release_sync().expect("every channel reached it");
                syncs += 1;
            }
            Some(LoaderEvent::Eof) => break,
            Some(_) => {}
            None => panic!("the loader wants more than the stream"),
        }
    }
    // The device state came after the last sync point; every channel ends at a packet.
    for i in 0..3 {
        channels[i].finish();
        feed(i, ChannelLoadEvent::Done, &mut channels);
    }
    assert_eq!(syncs, 6);
    assert_same_memory(&g, &ram);
}

#[test]
fn the_bandwidth_limit_counts_the_channels_bytes() {
    // 256 KiB/s: 25.6 KiB per 100 ms window, about 19 packets' headers or 6 full pages.
    let opts = (multifd(2)).with_max_bandwidth(Some(256 << 10));
    let mut g = busy_guest();
    let run = run(&mut g, opts, 1).expect("migration");
    let d = decode(&run);
    for b in 0..layout().len() {
        assert!(d.image[b] == g.block(b), "block {b} differs");
    }
    // Waiting on the clock: the rounds took the simulated seconds the bytes demand, give or
    // take the packets still in flight when a window filled (counted in the next one's).
    let s = run.source.stats();
    let round_secs: f64 = s.rounds.iter().map(|r| r.duration.as_secs_f64()).sum();
    let round_bytes: u64 = s.rounds.iter().map(|r| r.bytes).sum();
    let rate = round_bytes as f64 / round_secs;
    assert!(run.waits > 10, "{} waits", run.waits);
    assert!(
        rate < 2.0 * (256 << 10) as f64,
        "{rate} B/s over {round_secs} s"
    );
}

#[test]
fn the_main_stream_is_framing_flushes_and_device_state() {
    let mut g = busy_guest();
    let run = run(&mut g, multifd(2), 1).expect("migration");
    let kinds = kinds(&run.main, DecoderOptions::default());
    let names: Vec<&str> = kinds.iter().map(|(_, k)| k.as_str()).collect();
    let start = names.iter().position(|n| *n == "START").unwrap();
    assert_eq!(
        &names[start..start + 4],
        ["START", "MemSize", "MultifdFlush", "Eos"],
        "setup: MEM_SIZE, the first sync point, EOS"
    );
    // The END section: its pages on the channels, then the last sync point.
    let end = names.iter().position(|n| *n == "END").unwrap();
    assert_eq!(&names[end..end + 3], ["END", "MultifdFlush", "Eos"]);
    assert_eq!(names.iter().filter(|n| **n == "MultifdFlush").count(), 6);
    assert!(names.contains(&"DEVICE ramstream/ram-digest"));
    // The digest is the guest's.
    let digest = run.source.digest().expect("digest");
    for (b, d) in digest.blocks.iter().enumerate() {
        let pages = (d.used_length / PAGE as u64) as usize;
        let sum =
            ramstream_codec::extension::digest::chunked_block(pages as u64, PAGE, &[], |p, buf| {
                let at = p as usize * PAGE;
                buf.copy_from_slice(&g.block(b)[at..at + PAGE]);
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap();
        assert_eq!(sum, d.sha256);
    }
}

#[test]
fn multifd_is_refused_with_xbzrle_and_with_the_balloon_extension_by_name() {
    let xbzrle = (multifd(2)).with_xbzrle_cache_size(Some(1 << 20));
    let e = Source::new(&layout(), xbzrle).unwrap_err();
    assert!(matches!(
        e.kind,
        ErrorKind::MultifdIncompatible { with: "xbzrle", .. }
    ));
    assert!(
        e.to_string()
            .contains("Multifd is not compatible with xbzrle"),
        "{e}"
    );
    let balloon = (multifd(2)).with_balloon(true);
    let e = Source::new(&layout(), balloon).unwrap_err();
    assert!(
        e.to_string().contains("x-ramstream-balloon-v1") && e.to_string().contains("0x200"),
        "{e}"
    );
    // Without multifd nothing changes: no channel, no job.
    let mut plain = Source::new(&layout(), SourceOptions::default()).unwrap();
    assert!(plain.channel_senders().is_empty());
    assert_eq!(plain.poll_packet(), None);
    assert!(plain.handle_packet_sent(&Default::default()).is_err());
}

/// The scripted guest, failing reads at one address.
struct FailAt<'g>(&'g ScriptedGuest, PageAddr);

impl GuestRam for FailAt<'_> {
    type Error = std::io::Error;
    fn layout(&self) -> &[RamBlockLayout] {
        GuestRam::layout(self.0)
    }
    fn read_page(&self, a: PageAddr, buf: &mut [u8]) -> std::io::Result<()> {
        if a == self.1 {
            return Err(std::io::Error::other("injected"));
        }
        GuestRam::read_page(self.0, a, buf).map_err(std::io::Error::other)
    }
    fn write_page(&self, _: PageAddr, _: &[u8]) -> std::io::Result<()> {
        unreachable!()
    }
}

#[test]
fn a_failed_read_on_a_channel_names_the_channel_and_the_block() {
    let bad = PageAddr {
        block: 1,
        offset: 0x3000,
    };
    let mut g = busy_guest();
    let mut source = Source::new(&layout(), multifd(2)).unwrap();
    let mut senders = source.channel_senders();
    let mut clock = FakeClock::new(Duration::from_millis(1));
    let e = loop {
        clock.now += clock.tick;
        match source
            .poll_transmit(clock.now, &g, &mut Vec::new())
            .unwrap()
        {
            Transmit::Packets => {
                let mut failed = None;
                while let Some(job) = source.poll_packet() {
                    let k = usize::from(job.channel());
                    match senders[k].encode(&job, &FailAt(&g, bad), &mut Vec::new()) {
                        Ok(sent) => source.handle_packet_sent(&sent).unwrap(),
                        Err(e) => failed = failed.or(Some(e)),
                    }
                }
                if let Some(e) = failed {
                    break e;
                }
            }
            Transmit::SyncDirty => {
                g.run_until_sync();
                source.sync_dirty(clock.now, &mut g).unwrap();
            }
            Transmit::Send { bytes } => source.handle_sent(bytes),
            other => panic!("unexpected {other:?} before the bulk pass reached ram1"),
        }
    };
    // Packets of ram1 alternate between the two channels; the one holding 0x3000 failed.
    assert!(e.channel().is_some(), "{e}");
    assert_eq!(e.block.as_deref(), Some("ram1"));
    let text = e.to_string();
    assert!(text.starts_with("multifd channel "), "{text}");
    assert!(
        text.contains("offset 0x3000") && text.contains("injected"),
        "{text}"
    );
}
