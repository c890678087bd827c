//! multifd on the destination (SPEC.md §14): the main stream's `Loader` and one
//! `ChannelLoader` per channel load every multifd vector recorded from QEMU 7.2, 10.0 and 11.1
//! into one guest memory equal to what the real destination held, on threads (the `io`
//! helpers) and on one thread at random splits; zero pages stay exact when ZERO records on
//! the main stream and channel pages meet across sync points; and every sync rule and
//! admission check refuses with the channel's id and offset.

mod support;

use std::time::Duration;

use ramstream_codec::multifd::{ChannelEncoder, InitPacket, RamPacket, WriterVersion};
use ramstream_codec::{Configuration, Encoder, ErrorKind as CodecKind, RamBlock};
use ramstream_conformance_vectors::Vector;
use ramstream_migrate::multifd::{ChannelLoadEvent, ChannelReceiveError, MultifdError};
use ramstream_migrate::{
    Error, ErrorKind, GuestRam, Loader, LoaderEvent, LoaderOptions, Multifd, RamBlockLayout,
    ZeroPages,
};
use rand::{RngExt, SeedableRng};
use support::*;

const PAGE: usize = 4096;

/// Every multifd vector: its manifest, main stream and channels (by id).
fn multifd_vectors() -> Vec<(Vector, Vec<u8>, Vec<Vec<u8>>)> {
    let mut out: Vec<_> = ramstream_conformance_vectors::all()
        .unwrap()
        .into_iter()
        .filter(Vector::is_multifd)
        .map(|v| {
            let main = v.stream().unwrap();
            let channels = v.channels().unwrap();
            (v, main, channels)
        })
        .collect();
    out.sort_by(|a, b| a.0.manifest.name.cmp(&b.0.manifest.name));
    assert!(out.len() >= 12, "{} multifd vectors", out.len());
    out
}

fn compression(v: &Vector) -> &str {
    let m = v.manifest.multifd.as_ref().unwrap();
    m.compression.as_deref().unwrap_or("none")
}

fn options(channels: Multifd) -> LoaderOptions {
    LoaderOptions::default().with_multifd(channels)
}

/// What a threaded load did: per channel (id, pages, zero pages, syncs), and the main
/// loader's sync points.
#[derive(Debug)]
struct Loaded {
    channels: Vec<(u8, u64, u64, u64)>,
    sync_points: u64,
    zero_written: u64,
}

/// Loads `main` and `channels` into `ram` as a threaded receiver does: one thread per
/// channel (`ChannelLoader::receive_from`), the main stream on this one, meeting at every
/// sync point (`Loader::sync_with_channels`). The first error that is not an abort.
fn load_threaded<R: GuestRam + Sync>(
    ram: &R,
    main: &[u8],
    channels: &[Vec<u8>],
    multifd: Multifd,
) -> Result<Loaded, Error> {
    let mut loader = Loader::new(ram, options(multifd));
    let session = loader.multifd().unwrap().clone();
    std::thread::scope(|s| {
        let threads: Vec<_> = channels
            .iter()
            .map(|bytes| {
                let mut c = session.channel_loader();
                s.spawn(move || {
                    c.receive_from(ram, &bytes[..], |_, _| {})
                        .map(|()| *c.stats())
                        .map(|st| (c.id().unwrap(), st))
                })
            })
            .collect();
        let main_result = loader.receive_from(main, |l, event| {
            if let LoaderEvent::MultifdSync(_) = event {
                if l.multifd().unwrap().channels().is_none() {
                    l.set_multifd_channels(channels.len() as u8)?;
                }
                l.sync_with_channels(Duration::from_secs(10))?;
            }
            Ok::<_, Stop>(())
        });
        if main_result.is_err() {
            session.abort();
        }
        let mut first = main_result.err().and_then(|s| match s {
            Stop::Load(e)
                if !matches!(e.inner_kind(), ErrorKind::Multifd(MultifdError::Aborted)) =>
            {
                Some(e)
            }
            Stop::Load(_) => None,
            Stop::Read(e) => panic!("reading a slice: {e}"),
        });
        let mut stats = Vec::new();
        for t in threads {
            match t.join().unwrap() {
                Ok((id, st)) => stats.push((id, st.pages, st.zero_pages, st.syncs)),
                Err(ChannelReceiveError::Load(e)) => {
                    first.get_or_insert(e);
                }
                Err(ChannelReceiveError::Aborted) => {}
                Err(e) => panic!("{e}"),
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        stats.sort();
        Ok(Loaded {
            channels: stats,
            sync_points: loader.stats().sync_points,
            zero_written: loader.stats().zero_written,
        })
    })
}

#[derive(Debug)]
enum Stop {
    Load(Error),
    Read(ramstream_migrate::io::ReadError),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Load(e)
    }
}

impl From<ramstream_migrate::io::ReadError> for Stop {
    fn from(e: ramstream_migrate::io::ReadError) -> Self {
        Stop::Read(e)
    }
}

/// Loads on this thread, alternating between the loaders at the sync points and feeding
/// each of them pieces of `chunk()` bytes.
fn load_alternating<R: GuestRam>(
    ram: &R,
    main: &[u8],
    channels: &[Vec<u8>],
    multifd: Multifd,
    mut chunk: impl FnMut() -> usize,
) -> Result<u64, Error> {
    let mut loader = Loader::new(ram, options(multifd));
    let session = loader.multifd().unwrap().clone();
    let mut chans: Vec<_> = channels.iter().map(|_| session.channel_loader()).collect();
    // (consumed, available) per channel.
    let mut fed = vec![(0usize, 0usize); channels.len()];
    // Feeds channel i until it yields `until`, or it is done.
    let mut run_channel = |i: usize,
                           until: Option<ChannelLoadEvent>,
                           chunk: &mut dyn FnMut() -> usize|
     -> Result<(), Error> {
        let bytes = &channels[i];
        loop {
            let (pos, avail) = fed[i];
            if avail == bytes.len() {
                chans[i].finish();
            }
            let p = chans[i].handle(ram, &bytes[pos..avail])?;
            fed[i].0 += p.consumed;
            match p.event {
                None => {
                    assert!(avail < bytes.len());
                    fed[i].1 = (avail + chunk().max(1)).min(bytes.len());
                }
                Some(ChannelLoadEvent::Done) => return Ok(()),
                Some(e) if Some(e) == until => return Ok(()),
                Some(ChannelLoadEvent::NeedBlocks) => panic!("MEM_SIZE precedes every sync point"),
                Some(_) => {}
            }
        }
    };
    let (mut pos, mut avail) = (0usize, 0usize);
    loop {
        if avail == main.len() {
            loader.finish();
        }
        let p = loader.handle(&main[pos..avail])?;
        pos += p.consumed;
        match p.event {
            None => avail = (avail + chunk().max(1)).min(main.len()),
            Some(LoaderEvent::MultifdSync(k)) => {
                if session.channels().is_none() {
                    loader.set_multifd_channels(channels.len() as u8)?;
                }
                for i in 0..channels.len() {
                    run_channel(i, Some(ChannelLoadEvent::Sync(k)), &mut chunk)?;
                }
                loader.release_sync()?;
            }
            Some(LoaderEvent::Done) => break,
            Some(_) => {}
        }
    }
    for i in 0..channels.len() {
        run_channel(i, None, &mut chunk)?;
    }
    Ok(loader.stats().sync_points)
}

#[test]
fn every_multifd_vector_loads_on_threads_equal_to_the_qemu_destination() {
    for (v, main, channels) in multifd_vectors() {
        let name = &v.manifest.name;
        let ram = VecRam::for_manifest(&v);
        let n = channels.len() as u8;
        let r = load_threaded(&ram, &main, &channels, Multifd::Channels(n));
        if compression(&v) != "none" {
            let e = r
                .err()
                .unwrap_or_else(|| panic!("{name}: compression loaded"));
            assert!(
                matches!(e.stream_kind(), Some(CodecKind::MultifdCompression { .. })),
                "{name}: {e}"
            );
            assert!(e.channel().is_some(), "{name}: {e}");
            let text = e.to_string();
            assert!(
                text.starts_with("multifd channel ") && text.contains("zstd"),
                "{name}: {text}"
            );
            eprintln!("{name}: refused: {text}");
            continue;
        }
        let loaded = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            ram.digests(),
            v.block_hashes(),
            "{name}: RAM differs from QEMU's"
        );
        ram.check_guards();
        let m = v.manifest.multifd.as_ref().unwrap();
        assert_eq!(Some(loaded.sync_points), m.sync_points, "{name}");
        for &(id, pages, zeros, syncs) in &loaded.channels {
            let c = m.channel_files.iter().find(|c| c.id == id).unwrap();
            assert_eq!(Some(syncs), c.sync_packets, "{name} channel {id}");
            assert_eq!(Some(pages), c.normal_pages, "{name} channel {id}");
            assert_eq!(Some(zeros), c.zero_pages.or(Some(0)), "{name} channel {id}");
        }
        eprintln!(
            "{name}: {} sync points; channels (id, pages, zero pages, syncs) {:?}; main ZERO written {}: RAM equal",
            loaded.sync_points, loaded.channels, loaded.zero_written
        );
    }
}

#[test]
fn every_multifd_vector_loads_the_same_on_one_thread_at_random_splits() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for (v, main, channels) in multifd_vectors() {
        if compression(&v) != "none" {
            continue;
        }
        let name = &v.manifest.name;
        for (round, multifd) in [Multifd::Channels(channels.len() as u8), Multifd::Detect]
            .into_iter()
            .enumerate()
        {
            let ram = VecRam::for_manifest(&v);
            let max = if round == 0 {
                7
            } else {
                rng.random_range(1..50_000)
            };
            let mut r = rand::rngs::StdRng::seed_from_u64(rng.random());
            load_alternating(&ram, &main, &channels, multifd, || r.random_range(1..=max))
                .unwrap_or_else(|e| panic!("{name} ({multifd:?}, pieces up to {max}): {e}"));
            assert_eq!(ram.digests(), v.block_hashes(), "{name} ({multifd:?})");
        }
    }
}

#[test]
fn without_multifd_a_flush_is_still_refused_and_with_detect_and_no_channel_too() {
    let (v, main, _) = multifd_vectors()
        .into_iter()
        .find(|(v, _, _)| v.manifest.name == "10.0-multifd-4")
        .unwrap();
    let e = load_into_vec_ram(&main, LoaderOptions::default()).unwrap_err();
    assert!(
        matches!(e.stream_kind(), Some(CodecKind::PagesOnMultifdChannels)),
        "{e}"
    );
    // Detect, and no channel connected by the first sync point: one connection after all.
    let ram = VecRam::for_manifest(&v);
    let mut loader = Loader::new(&ram, options(Multifd::Detect));
    let e = loop {
        match loader.handle(&main[loader.offset() as usize..]) {
            Ok(p) => match p.event {
                Some(LoaderEvent::MultifdSync(1)) => {
                    loader.set_multifd_channels(0).unwrap();
                    loader.release_sync().unwrap();
                }
                Some(LoaderEvent::MultifdSync(k)) => panic!("sync point {k} with no channel"),
                _ => {}
            },
            Err(e) => break e,
        }
    };
    assert!(
        matches!(e.stream_kind(), Some(CodecKind::PagesOnMultifdChannels)),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Crafted migrations.

fn blocks() -> Vec<RamBlock> {
    vec![block("pc.ram", 64 * PAGE as u64)]
}

fn ram() -> VecRam {
    VecRam::new(&[RamBlockLayout::new("pc.ram", 64 * PAGE as u64)])
}

/// A QEMU 7.2-style main stream: a configuration with `uuid`, START (MEM_SIZE, EOS), one
/// PART per entry of `parts` holding ZERO records for those pages, END, EOF. Every EOS is a
/// sync point: `parts.len() + 2` of them.
fn main_72(uuid: Option<[u8; 16]>, parts: &[&[u64]]) -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    enc.header(&mut out);
    enc.configuration(
        &Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: None,
            uuid,
        },
        &mut out,
    )
    .unwrap();
    let mut b = StreamBuilder { enc, out };
    b.ram_start(&blocks()).end_part();
    for zeros in parts {
        b.part();
        for &p in *zeros {
            b.zero(0, p, 0);
        }
        b.end_part();
    }
    b.enc
        .section_part(ramstream_spec::stream::SectionType::END, 2, &mut b.out);
    b.end_part().eof();
    b.bytes()
}

/// A QEMU 7.2-style channel: initial packet, then per epoch its pages (page index, fill
/// byte) and a SYNC packet.
fn channel_72(uuid: [u8; 16], id: u8, epochs: &[&[(u64, u8)]]) -> Vec<u8> {
    let enc = ChannelEncoder::new(WriterVersion::Qemu7_2, 12).unwrap();
    let mut out = Vec::new();
    enc.init(&InitPacket { uuid, id }, &mut out);
    let mut num = 0;
    for pages in epochs {
        let data: Vec<(u64, Vec<u8>)> = pages
            .iter()
            .map(|&(p, fill)| (p * PAGE as u64, vec![fill; PAGE]))
            .collect();
        let normal: Vec<(u64, &[u8])> = data.iter().map(|(o, d)| (*o, &d[..])).collect();
        if !normal.is_empty() {
            enc.ram_packet(
                &RamPacket {
                    packet_num: num,
                    block: "pc.ram",
                    normal: &normal,
                    zero: &[],
                    sync: false,
                },
                &mut out,
            )
            .unwrap();
            num += 1;
        }
        enc.sync_packet(num, &mut out);
        num += 1;
    }
    out
}

fn page_of(ram: &VecRam, page: usize) -> Vec<u8> {
    ram.contents(0)[page * PAGE..(page + 1) * PAGE].to_vec()
}

const U: [u8; 16] = [0x11; 16];

/// Loads the main stream `main`, meeting the channels (on other threads) at each sync point.
fn load_main<R: GuestRam>(loader: &mut Loader<R>, main: &[u8]) {
    loader
        .receive_from(main, |l, e| {
            if let LoaderEvent::MultifdSync(_) = e {
                l.sync_with_channels(Duration::from_secs(10))?;
            }
            Ok::<_, Stop>(())
        })
        .unwrap();
}

#[test]
fn zero_records_on_the_main_stream_and_channel_pages_stay_exact_across_sync_points() {
    // Epoch k: the records before the k-th sync point (five of them).
    // Epoch 2: channel 0 writes page 5, channel 1 page 6.
    // Epoch 3: the main stream zeroes pages 5 and 7 (7 never written: skipped).
    // Epoch 4: the main stream zeroes page 6; channel 0 writes page 5 again, channel 1
    //          page 7.
    let main = main_72(Some(U), &[&[], &[5, 7], &[6]]);
    let c0 = channel_72(U, 0, &[&[], &[(5, 0xa5)], &[], &[(5, 0x5a)], &[]]);
    let c1 = channel_72(U, 1, &[&[], &[(6, 0x66)], &[], &[(7, 0x77)], &[]]);
    for zero_pages in [
        ZeroPages::SkipUnwritten,
        ZeroPages::Always,
        ZeroPages::ZeroIfNonZero,
    ] {
        let ram = ram();
        let mut loader = Loader::new(
            &ram,
            (options(Multifd::Channels(2))).with_zero_pages(zero_pages),
        );
        let session = loader.multifd().unwrap().clone();
        let chans = [c0.clone(), c1.clone()];
        std::thread::scope(|s| {
            for bytes in &chans {
                let mut c = session.channel_loader();
                let ram = &ram;
                s.spawn(move || c.receive_from(ram, &bytes[..], |_, _| {}).unwrap());
            }
            load_main(&mut loader, &main);
        });
        let first = |p| page_of(&ram, p)[0];
        assert_eq!(
            [first(5), first(6), first(7)],
            [0x5a, 0, 0x77],
            "{zero_pages:?}"
        );
        assert_eq!(page_of(&ram, 5), vec![0x5a; PAGE], "{zero_pages:?}");
        let s = loader.stats();
        assert_eq!(s.sync_points, 5);
        if zero_pages == ZeroPages::SkipUnwritten {
            // Pages 5 and 6 held a channel's data; page 7 had never been written.
            assert_eq!((s.zero_written, s.zero_skipped), (2, 1));
        }
    }
}

/// Loads a crafted migration; its error.
fn refused(main: &[u8], channels: &[Vec<u8>], multifd: Multifd) -> Error {
    let threaded =
        load_threaded(&ram(), main, channels, multifd).expect_err("the migration was refused");
    // The same refusal on one thread, fed a byte at a time (where it is noticed first may
    // differ: the main stream's wait, or the channel's end).
    let one = load_alternating(&ram(), main, channels, multifd, || 1).unwrap_err();
    assert_eq!(
        one.inner_kind().to_string(),
        threaded.inner_kind().to_string()
    );
    threaded
}

#[test]
fn a_channel_of_another_migration_is_refused_at_its_uuid() {
    let main = main_72(Some(U), &[]);
    let other = [0x22; 16];
    let e = refused(
        &main,
        &[
            channel_72(U, 0, &[&[], &[]]),
            channel_72(other, 1, &[&[], &[]]),
        ],
        Multifd::Channels(2),
    );
    assert!(
        matches!(e.stream_kind(), Some(CodecKind::MultifdUuid { .. })),
        "{e}"
    );
    assert_eq!((e.channel(), e.offset), (Some(1), 8));
    assert!(e.to_string().starts_with("multifd channel 1: at offset 0x8: multifd channel of another migration: uuid 22222222-"), "{e}");
    // Without a uuid in the configuration, the first channel's is the migration's.
    let main = main_72(None, &[]);
    let e = load_threaded(
        &ram(),
        &main,
        &[
            channel_72(U, 0, &[&[], &[]]),
            channel_72(other, 1, &[&[], &[]]),
        ],
        Multifd::Channels(2),
    )
    .unwrap_err();
    assert!(
        matches!(e.stream_kind(), Some(CodecKind::MultifdUuid { .. })),
        "{e}"
    );
}

#[test]
fn a_duplicate_or_out_of_range_channel_id_is_refused() {
    let main = main_72(Some(U), &[]);
    let c = |id| channel_72(U, id, &[&[], &[]]);
    let e = refused(&main, &[c(0), c(0)], Multifd::Channels(2));
    assert!(
        matches!(
            e.stream_kind(),
            Some(CodecKind::MultifdDuplicateChannel { id: 0 })
        ),
        "{e}"
    );
    assert_eq!(e.offset, 24);
    let e = refused(&main, &[c(0), c(2)], Multifd::Channels(2));
    assert!(
        matches!(
            e.stream_kind(),
            Some(CodecKind::MultifdChannelId { id: 2, channels: 2 })
        ),
        "{e}"
    );
    // Detect: two connections, ids 0 and 2.
    let e = load_threaded(&ram(), &main, &[c(0), c(2)], Multifd::Detect).unwrap_err();
    assert!(
        matches!(
            e.inner_kind(),
            ErrorKind::Multifd(MultifdError::ChannelOutOfRange { id: 2, channels: 2 })
        ) || matches!(e.stream_kind(), Some(CodecKind::MultifdChannelId { .. })),
        "{e}"
    );
}

#[test]
fn a_channel_that_ends_early_or_is_cut_is_refused_naming_it() {
    let main = main_72(Some(U), &[&[]]);
    let full = channel_72(U, 1, &[&[], &[(3, 1)], &[]]);
    // Ends cleanly after its second SYNC: the main stream has three sync points.
    let short = channel_72(U, 1, &[&[], &[(3, 1)]]);
    let e = refused(
        &main,
        &[channel_72(U, 0, &[&[], &[], &[]]), short],
        Multifd::Channels(2),
    );
    assert!(
        matches!(
            e.inner_kind(),
            ErrorKind::Multifd(MultifdError::ChannelEnded {
                channel: 1,
                syncs: 2,
                needed: 3
            })
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("multifd channel 1 closed after 2 SYNC packet(s)"),
        "{e}"
    );
    // Cut inside a page.
    let cut = full[..full.len() - 1344 - 100].to_vec();
    let e = refused(
        &main,
        &[channel_72(U, 0, &[&[], &[], &[]]), cut],
        Multifd::Channels(2),
    );
    assert!(
        matches!(e.stream_kind(), Some(CodecKind::Truncated { .. })),
        "{e}"
    );
    assert_eq!(e.channel(), Some(1));
}

#[test]
fn pages_after_the_last_sync_point_are_refused() {
    let main = main_72(Some(U), &[]);
    // Two sync points; the channel sends a page after its second SYNC.
    let mut c = channel_72(U, 0, &[&[], &[]]);
    let enc = ChannelEncoder::new(WriterVersion::Qemu7_2, 12).unwrap();
    let page = vec![9u8; PAGE];
    enc.ram_packet(
        &RamPacket {
            packet_num: 9,
            block: "pc.ram",
            normal: &[(0, &page)],
            zero: &[],
            sync: false,
        },
        &mut c,
    )
    .unwrap();
    let e = refused(&main, &[c], Multifd::Channels(1));
    assert!(
        matches!(
            e.inner_kind(),
            ErrorKind::Multifd(MultifdError::PagesAfterLastSync {
                channel: 0,
                pages: 1,
                last: 2
            })
        ),
        "{e}"
    );
    // An extra SYNC after the last sync point, without pages (QEMU 9.1–9.2), is fine.
    let c = channel_72(U, 0, &[&[], &[], &[]]);
    load_threaded(&ram(), &main, &[c], Multifd::Channels(1)).unwrap();
}

#[test]
fn the_engines_refuse_a_barrier_that_was_not_kept() {
    let main = main_72(Some(U), &[]);
    let c0 = channel_72(U, 0, &[&[(1, 1)], &[]]);
    let ram = ram();
    let mut loader = Loader::new(&ram, options(Multifd::Channels(1)));
    let mut chan = loader.multifd().unwrap().channel_loader();
    let first = loop {
        let p = loader.handle(&main[loader.offset() as usize..]).unwrap();
        if let Some(LoaderEvent::MultifdSync(k)) = p.event {
            break k;
        }
    };
    assert_eq!(first, 1);
    // Released before the channel reached its SYNC.
    let e = loader.release_sync().unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Multifd(MultifdError::NotReached {
                channel: 0,
                syncs: None,
                needed: 1
            })
        ),
        "{e}"
    );
    // The channel reaches SYNC 1 and may not go on before the release.
    chan.finish();
    let mut at = 0;
    loop {
        let p = chan.handle(&ram, &c0[at..]).unwrap();
        at += p.consumed;
        if p.event == Some(ChannelLoadEvent::Sync(1)) {
            break;
        }
    }
    let e = chan.handle(&ram, &c0[at..]).unwrap_err();
    assert!(
        matches!(
            e.inner_kind(),
            ErrorKind::Multifd(MultifdError::NotReleased {
                channel: 0,
                sync: 1
            })
        ),
        "{e}"
    );
    // Feeding the main stream before its release is refused too.
    let e = loader
        .handle(&main[loader.offset() as usize..])
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Multifd(MultifdError::SyncPending { index: 1 })
        ),
        "{e}"
    );
}

#[test]
fn compression_and_device_state_packets_are_refused_by_name_with_the_channel() {
    for (v, main, channels) in multifd_vectors() {
        if compression(&v) == "none" {
            continue;
        }
        let e = load_alternating(
            &VecRam::for_manifest(&v),
            &main,
            &channels,
            Multifd::Channels(channels.len() as u8),
            || 4096,
        )
        .unwrap_err();
        let Some(CodecKind::MultifdCompression { method }) = e.stream_kind() else {
            panic!("{}: {e}", v.manifest.name);
        };
        assert_eq!(method.qemu_name(), Some("zstd"));
        assert!(e.channel().is_some());
    }
}

#[test]
fn a_metered_channel_reports_each_batch_before_its_events() {
    // Channel 0 writes page 5 in epoch 2 and page 5 again in epoch 4.
    let main = main_72(Some(U), &[&[], &[], &[]]);
    let c0 = channel_72(U, 0, &[&[], &[(5, 0xa5)], &[], &[(5, 0x5a)], &[]]);
    let c1 = channel_72(U, 1, &[&[], &[(6, 0x66)], &[], &[], &[]]);
    let ram = ram();
    let mut loader = Loader::new(&ram, options(Multifd::Channels(2)));
    let session = loader.multifd().unwrap().clone();
    // What channel 0 saw, in order: ("batch", mark, pages) and ("sync", k, pages).
    let (seen, marks) = std::thread::scope(|s| {
        let mut c = session.channel_loader();
        let (ram, c0) = (&ram, &c0);
        let metered = s.spawn(move || {
            let seen: std::cell::RefCell<Vec<(&str, u64, u64)>> = Default::default();
            let mut marks = 0u64;
            // A first read of one byte: a batch that takes no packet.
            let input = std::io::Read::chain(&c0[..1], &c0[1..]);
            let mut calls = 0u64;
            let r = c.receive_from_metered(
                ram,
                input,
                || {
                    marks += 1;
                    marks
                },
                |l, mark| {
                    calls += 1;
                    assert_eq!(mark, calls, "mark() is called once per batch, before it");
                    seen.borrow_mut().push(("batch", mark, l.stats().pages));
                },
                |l, e| {
                    if let ChannelLoadEvent::Sync(k) = e {
                        seen.borrow_mut().push(("sync", k, l.stats().pages));
                    }
                },
            );
            assert_eq!(r.map(|()| c.stats().pages).unwrap(), 2);
            (seen.into_inner(), marks)
        });
        let mut c = session.channel_loader();
        s.spawn(move || c.receive_from(ram, &c1[..], |_, _| {}).unwrap());
        load_main(&mut loader, &main);
        metered.join().unwrap()
    });
    assert!(marks >= 2, "{seen:?}");
    // Each SYNC comes after a batch that already counts every page before it.
    for (i, &(what, _, pages)) in seen.iter().enumerate() {
        if what == "sync" {
            let before = seen[..i].iter().rev().find(|s| s.0 == "batch").unwrap();
            assert_eq!(before.2, pages, "{seen:?}");
        }
    }
    let syncs: Vec<u64> = seen.iter().filter(|s| s.0 == "sync").map(|s| s.2).collect();
    assert_eq!(
        syncs.first(),
        Some(&0),
        "nothing before the first sync: {seen:?}"
    );
    assert_eq!(
        syncs.last(),
        Some(&2),
        "both pages before the last: {seen:?}"
    );
    assert_eq!(seen.last().unwrap().2, 2);
}
