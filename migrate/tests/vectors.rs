//! The loader against the golden vectors recorded from QEMU: every block's sha256 equals the
//! one a real QEMU destination held, whatever the split of the input.

mod support;

use ramstream_codec::transcode;
use ramstream_migrate::{ErrorKind, Loader, LoaderEvent};
use rand::{RngExt, SeedableRng};
use support::*;

/// Recorded vectors covering QEMU 7.2, 10.0 and 11.1, XBZRLE, several blocks, q35,
/// x-ignore-shared, postcopy advised, no VMDESCRIPTION, and a booted Linux guest.
const RECORDED: &[&str] = &[
    "idle-noos",
    "live-xbzrle",
    "multi-block",
    "q35-noos",
    "x-ignore-shared",
    "postcopy-advised",
    "suppress-vmdesc",
    "10.0-idle-noos",
    "10.0-live-xbzrle",
    "11.1-multi-block",
    "11.1-live-xbzrle",
    "11.1-q35-noos",
    "10.0-postcopy-advised",
    "11.1-x-ignore-shared",
    "linux-stopped",
    "11.1-linux-balloon",
    "11.1-live-linux-xbzrle",
];

#[test]
fn every_block_equals_what_qemu_loaded() {
    for (v, stream) in vectors(RECORDED) {
        let name = &v.manifest.name;
        // QEMU-style: the destination has its memory before the stream.
        let mut loader = Loader::new(VecRam::for_manifest(&v), options_for(&v));
        let events = drive_whole(&mut loader, &stream, |_| unreachable!("memory was given"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loader.is_eof() && loader.is_done(), "{name}");
        let stats = loader.stats().clone();
        let ram = loader.into_ram().unwrap();
        ram.check_guards();
        for (i, b) in v.manifest.blocks.iter().enumerate() {
            assert_eq!(
                ram.sha256(i),
                b.sha256,
                "{name}: block {} differs from QEMU's",
                b.idstr
            );
        }
        let devices = events.iter().filter(|e| e.contains(": device ")).count();
        assert_eq!(devices as u64, stats.devices, "{name}");
        assert!(devices > 0 && stats.pages > 0, "{name}: {stats:?}");
        assert_eq!(
            events.iter().any(|e| e.contains(": vmdesc ")),
            v.manifest.has_vmdesc.unwrap_or(true),
            "{name}: vmdesc"
        );
        if v.manifest.capabilities.get("xbzrle") == Some(&true) {
            assert!(stats.xbzrle > 0, "{name}: no XBZRLE record applied");
        }
        eprintln!("{name}: {stats:?}");
    }
}

#[test]
fn a_zero_record_for_a_never_written_page_writes_nothing() {
    for (v, stream) in vectors(&["idle-noos", "live-xbzrle"]) {
        let mut loader = Loader::new(VecRam::for_manifest(&v), options_for(&v));
        drive_whole(&mut loader, &stream, |_| unreachable!()).unwrap();
        let s = loader.stats().clone();
        let ram = loader.into_ram().unwrap();
        assert!(s.zero_skipped > 0, "{}", v.manifest.name);
        // Every write is a PAGE, an XBZRLE page or a non-zero fill; zeroing only for pages
        // written before.
        let writes = ram.writes.load(std::sync::atomic::Ordering::Relaxed);
        let zeroes = ram.zeroes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(writes + zeroes, s.pages + s.xbzrle + s.zero_written);
        // Reads only for XBZRLE (decoding onto the page held).
        assert_eq!(
            ram.reads.load(std::sync::atomic::Ordering::Relaxed),
            s.xbzrle
        );
    }
}

#[test]
fn memory_from_mem_size_gives_the_same_ram() {
    for (v, stream) in vectors(&["idle-noos", "11.1-multi-block"]) {
        let ram = load_into_vec_ram(&stream, options_for(&v)).unwrap();
        assert_eq!(ram.digests(), v.block_hashes(), "{}", v.manifest.name);
    }
}

#[test]
fn byte_at_a_time_and_random_splits_give_the_same_memory_and_events() {
    let names = [
        "idle-noos",
        "live-xbzrle",
        "multi-block",
        "balloon-v1",
        "balloon-kolhe-2016",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_1a7e);
    for (v, stream) in vectors(&names) {
        let name = &v.manifest.name;
        let opts = options_for(&v);
        let run = |chunk: &mut dyn FnMut() -> usize| {
            let mut loader = Loader::without_ram(opts.clone());
            let events = drive(&mut loader, &stream, chunk, VecRam::new).unwrap();
            let ram = loader.into_ram().unwrap();
            ram.check_guards();
            (events, ram.digests())
        };
        let whole = run(&mut || stream.len());
        let bytewise = run(&mut || 1);
        assert_eq!(whole, bytewise, "{name}: byte at a time");
        for _ in 0..3 {
            let max = rng.random_range(2..20_000);
            let mut chunks = rand::rngs::StdRng::seed_from_u64(rng.random());
            let split = run(&mut || chunks.random_range(1..max));
            assert_eq!(whole, split, "{name}: random splits up to {max}");
        }
    }
}

#[test]
fn hand_built_balloon_vectors_load_like_the_codec_rebuilds_them() {
    for (v, stream) in vectors(&[
        "balloon-v1",
        "balloon-kolhe-2016",
        "balloon-kolhe-2016-disabled",
    ]) {
        let opts = options_for(&v);
        let image = transcode::rebuild(&stream, &opts.decoder).unwrap();
        let mut loader = Loader::without_ram(opts);
        drive_whole(&mut loader, &stream, VecRam::new).unwrap();
        assert!(loader.stats().balloon_records > 0, "{}", v.manifest.name);
        let ram = loader.into_ram().unwrap();
        for i in 0..image.blocks().len() {
            assert_eq!(
                ram.sha256(i),
                hex::encode(image.sha256(i)),
                "{}: block {i}",
                v.manifest.name
            );
        }
    }
}

#[test]
fn mapped_ram_files_are_refused() {
    let all = ramstream_conformance_vectors::all().unwrap();
    let Some(v) = all
        .iter()
        .filter(|v| is_mapped_ram(v))
        .min_by_key(|v| v.manifest.stream_len)
    else {
        eprintln!("no mapped-ram vector");
        return;
    };
    let stream = v.stream().unwrap();
    // As the decoder is set up by default: the capability is refused.
    let e = load_into_vec_ram(&stream, options_for(v)).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Stream(_)), "{e}");
    // Told to read mapped-ram files, the decoder gives MEM_SIZE with its headers, and the
    // loader refuses: the pages are at file offsets, not in records.
    let mut opts = options_for(v);
    opts.decoder.mapped_ram = ramstream_codec::MappedRam::Read;
    let e = load_into_vec_ram(&stream, opts).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MappedRam), "{e}");
    assert_eq!(e.record, Some(ramstream_codec::RecordKind::MemSize));
}

#[test]
fn the_loader_stops_at_each_event_and_resumes() {
    let (v, stream) = vectors(&["idle-noos"]).pop().unwrap();
    let mut loader = Loader::new(VecRam::for_manifest(&v), options_for(&v));
    let mut pos = 0;
    let mut kinds = Vec::new();
    loader.finish();
    loop {
        let p = loader.handle(&stream[pos..]).unwrap();
        pos += p.consumed;
        match p.event.expect("a finished loader has the whole stream") {
            LoaderEvent::Done => break,
            LoaderEvent::Configuration(_) => kinds.push("configuration"),
            LoaderEvent::Device(_) => kinds.push("device"),
            LoaderEvent::Eof => kinds.push("eof"),
            LoaderEvent::VmDescription(_) => kinds.push("vmdesc"),
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(pos, stream.len());
    assert_eq!(kinds.first(), Some(&"configuration"));
    assert_eq!(kinds[kinds.len() - 2..], ["eof", "vmdesc"]);
    // Done is sticky.
    assert_eq!(loader.handle(&[]).unwrap().event, Some(LoaderEvent::Done));
}
