//! The multifd vectors recorded from real QEMU (`conformance-vectors/vectors/*`, those whose
//! manifest has a `"multifd"` key): every channel file decodes with the channel decoder and
//! no option, the same whole, one byte at a time and at random splits; and the pages of the
//! channels, merged with the main stream's at the sync points (SPEC.md §14.5), rebuild RAM
//! equal to what the real destination QEMU held (the manifest's sha256 per block). A channel
//! of a compressed migration is refused by name, at the same offset for every split.
//!
//! The recordings are zstd-compressed; they are read with the `zstd` command (installed
//! with the QEMU versions, README), since the codec takes no zstd dependency.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ramstream_codec::multifd::{
    decode_channel, BlockTable, ChannelDecoder, ChannelEncoder, ChannelEvent, ChannelOptions,
    ChannelSet, ChannelStatus, InitPacket, RamPacket, WriterVersion,
};
use ramstream_codec::{
    apply_event, decode_all, DecoderOptions, Error, ErrorKind, Event, PageStore, RamBlock, RamImage,
};
use rand::{RngExt, SeedableRng};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance-vectors/vectors")
}

fn unzstd(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .arg("-dqc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running `zstd -dqc {}`: {e} (install zstd)", path.display()));
    assert!(out.status.success(), "zstd -dqc {} failed", path.display());
    out.stdout
}

/// A recorded multifd vector: its manifest, main stream and channels (by id).
struct Vector {
    name: String,
    manifest: serde_json::Value,
    stream: Vec<u8>,
    channels: Vec<(u8, Vec<u8>)>,
}

fn multifd_vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let Ok(dirs) = fs::read_dir(vectors_dir()) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = dirs.map(|d| d.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(m) = fs::read(dir.join("manifest.json")) else {
            continue;
        };
        let manifest: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let Some(mf) = manifest.get("multifd") else {
            continue;
        };
        // A recording still being written has no channel files yet.
        let files = mf["channel_files"].as_array().unwrap();
        if files
            .iter()
            .any(|f| !dir.join(f["file"].as_str().unwrap()).exists())
        {
            continue;
        }
        let stream = unzstd(&dir.join(manifest["stream_file"].as_str().unwrap()));
        let channels = files
            .iter()
            .map(|f| {
                let id = u8::try_from(f["id"].as_u64().unwrap()).unwrap();
                let bytes = unzstd(&dir.join(f["file"].as_str().unwrap()));
                assert_eq!(bytes.len() as u64, f["len"].as_u64().unwrap());
                (id, bytes)
            })
            .collect();
        out.push(Vector {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            manifest,
            stream,
            channels,
        });
    }
    out
}

fn compression(v: &Vector) -> &str {
    v.manifest["multifd"]["compression"]
        .as_str()
        .unwrap_or("none")
}

/// The main stream's blocks and page bits.
fn main_blocks(stream: &[u8]) -> (Vec<RamBlock>, u32) {
    let mut dec = ramstream_codec::Decoder::new(DecoderOptions::default());
    dec.finish();
    let mut pos = 0;
    loop {
        match dec.decode(&stream[pos..]).unwrap() {
            ramstream_codec::Status::Event { event, consumed } => {
                pos += consumed;
                if let Event::MemSize(m) = event {
                    let bits = dec.page_bits();
                    return (m.blocks, bits);
                }
            }
            other => panic!("no MEM_SIZE: {other:?}"),
        }
    }
}

/// Events as comparable strings, or the error, feeding `input` in chunks of the sizes
/// `next_chunk` gives (the decoder sees the unconsumed bytes of what arrived so far).
fn feed(
    input: &[u8],
    opts: &ChannelOptions,
    blocks: &BlockTable,
    mut next_chunk: impl FnMut() -> usize,
) -> Result<Vec<String>, Error> {
    let mut dec = ChannelDecoder::new(opts.clone());
    dec.set_blocks(blocks.clone());
    let (mut pos, mut avail) = (0usize, 0usize);
    let mut events = Vec::new();
    if input.is_empty() {
        dec.finish();
    }
    loop {
        let at = dec.offset();
        match dec.decode(&input[pos..avail])? {
            ChannelStatus::Event { event, consumed } => {
                events.push(format!("{at}: {event:?}"));
                pos += consumed;
            }
            ChannelStatus::NeedMore { needed } => {
                assert!(needed >= 1);
                assert!(avail < input.len(), "wants more after the whole input");
                avail = avail.saturating_add(next_chunk().max(1)).min(input.len());
                if avail == input.len() {
                    dec.finish();
                }
            }
            ChannelStatus::NeedBlocks => panic!("the block table was given"),
            ChannelStatus::Done => return Ok(events),
        }
    }
}

fn whole(input: &[u8], opts: &ChannelOptions, blocks: &BlockTable) -> Result<Vec<String>, Error> {
    decode_channel(input, opts.clone(), blocks)
        .map(|ev| ev.iter().map(|(at, e)| format!("{at}: {e:?}")).collect())
}

#[test]
fn every_channel_decodes_the_same_whole_byte_by_byte_and_at_random_splits() {
    let vectors = multifd_vectors();
    eprintln!(
        "multifd vectors: {:?}",
        vectors.iter().map(|v| &v.name).collect::<Vec<_>>()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for v in &vectors {
        let (blocks, page_bits) = main_blocks(&v.stream);
        let table = BlockTable::new(&blocks);
        let opts = ChannelOptions::default().with_page_bits(page_bits);
        for (id, bytes) in &v.channels {
            let expected = whole(bytes, &opts, &table);
            let ctx = format!("{} channel {id}", v.name);
            match (&expected, compression(v)) {
                (Ok(ev), "none") => assert!(ev.len() > 1, "{ctx}: {} events", ev.len()),
                (Err(e), "none") => panic!("{ctx}: {e}"),
                (Err(e), method) => {
                    // Refused by name, at the first compressed packet's flags.
                    let ErrorKind::MultifdCompression { method: m } = e.kind else {
                        panic!("{ctx}: {e}");
                    };
                    assert_eq!(m.qemu_name(), Some(method), "{ctx}");
                    assert_eq!(e.channel, Some(*id), "{ctx}");
                    assert!(e.to_string().contains(method), "{e}");
                }
                (Ok(_), method) => {
                    // A channel that happened to carry no page has no compressed packet.
                    assert_ne!(method, "none");
                }
            }
            assert_eq!(
                feed(bytes, &opts, &table, || 1),
                expected,
                "{ctx}: byte by byte"
            );
            for _ in 0..8 {
                let max = rng.random_range(1..20_000);
                let mut r = rand::rngs::StdRng::seed_from_u64(rng.random());
                let got = feed(bytes, &opts, &table, || r.random_range(1..=max));
                assert_eq!(got, expected, "{ctx}: random split up to {max}");
            }
        }
    }
}

/// A channel's initial packet, SYNC count, and the indices of its page events cut at its
/// SYNC events.
fn channel_segments(events: &[(u64, ChannelEvent<'_>)]) -> (InitPacket, usize, Vec<Vec<usize>>) {
    let ChannelEvent::Init(init) = events[0].1 else {
        panic!("no initial packet");
    };
    let mut segs = vec![Vec::new()];
    let mut syncs = 0;
    for (i, (_, e)) in events.iter().enumerate() {
        match e {
            ChannelEvent::Page { .. } | ChannelEvent::Zero { .. } => {
                segs.last_mut().unwrap().push(i)
            }
            ChannelEvent::Sync => {
                syncs += 1;
                segs.push(Vec::new());
            }
            _ => {}
        }
    }
    (init, syncs, segs)
}

#[test]
fn channels_and_main_stream_rebuild_the_destination_ram() {
    let mut checked = 0;
    for v in multifd_vectors() {
        if compression(&v) != "none" {
            continue;
        }
        let (blocks, page_bits) = main_blocks(&v.stream);
        let table = BlockTable::new(&blocks);
        let opts = ChannelOptions::default().with_page_bits(page_bits);
        let main = decode_all(&v.stream, DecoderOptions::default()).unwrap();
        // The main stream's sync points (SPEC.md §14.5): MULTIFD_FLUSH records when it has
        // any (8.1+, machine types ≥ 8.1), otherwise every `ram` EOS.
        let per_round = main
            .iter()
            .any(|(_, e)| matches!(e, Event::MultifdFlush(_)));
        let mut main_segs: Vec<Vec<usize>> = vec![Vec::new()];
        for (i, (_, e)) in main.iter().enumerate() {
            let sync_point = if per_round {
                matches!(e, Event::MultifdFlush(_))
            } else {
                matches!(e, Event::Eos(_))
            };
            if sync_point {
                main_segs.push(Vec::new());
            } else {
                main_segs.last_mut().unwrap().push(i);
            }
        }
        let sync_points = main_segs.len() - 1;
        let decoded: Vec<_> = v
            .channels
            .iter()
            .map(|(_, b)| decode_channel(b, opts.clone(), &table).unwrap())
            .collect();
        let mut set = ChannelSet::new(Some(u8::try_from(v.channels.len()).unwrap()), None);
        let mut chans = Vec::new();
        for ((id, _), events) in v.channels.iter().zip(&decoded) {
            let (init, syncs, segs) = channel_segments(events);
            assert_eq!(init.id, *id, "{}: file of channel {id}", v.name);
            set.admit(&init).unwrap();
            assert_eq!(
                syncs, sync_points,
                "{} channel {id}: one SYNC per sync point of the main stream",
                v.name
            );
            chans.push((events, segs));
        }
        assert!(set.is_complete());
        let uuid = v.manifest["multifd"]["uuid"].as_str().unwrap();
        let hex: String = set
            .uuid()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, uuid.replace('-', ""));

        // Apply epoch by epoch: the main stream's records before its k-th sync point, and
        // each channel's pages before its k-th SYNC.
        let mut image = RamImage::new(1 << page_bits);
        image.set_blocks(&blocks);
        let mut pages = [0usize; 2];
        for k in 0..=sync_points {
            for &i in &main_segs[k] {
                let (at, e) = &main[i];
                if let Event::MemSize(m) = e {
                    assert_eq!(m.blocks, blocks, "{}: a second MEM_SIZE", v.name);
                    continue;
                }
                if matches!(e, Event::Page(_) | Event::Zero(_)) {
                    pages[0] += 1;
                }
                apply_event(&mut image, e, *at).unwrap();
            }
            for (events, segs) in &chans {
                for &i in &segs[k] {
                    pages[1] += 1;
                    match events[i].1 {
                        ChannelEvent::Page { addr, data } => {
                            image.page_mut(addr).copy_from_slice(data)
                        }
                        ChannelEvent::Zero { addr } => image.fill_page(addr, 0),
                        _ => unreachable!(),
                    }
                }
            }
        }
        for (i, b) in v.manifest["blocks"].as_array().unwrap().iter().enumerate() {
            let sha: String = image.sha256(i).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                b["idstr"].as_str().unwrap(),
                blocks[i].idstr,
                "{}: block order",
                v.name
            );
            assert_eq!(
                sha,
                b["sha256"].as_str().unwrap(),
                "{}: block {} differs from the destination QEMU's",
                v.name,
                blocks[i].idstr
            );
        }
        eprintln!(
            "{}: {} sync points ({}), {} page records on the main stream, {} pages on {} channels: RAM equal",
            v.name,
            sync_points,
            if per_round { "MULTIFD_FLUSH" } else { "EOS" },
            pages[0],
            pages[1],
            v.channels.len()
        );
        checked += 1;
    }
    eprintln!("{checked} multifd vectors rebuilt");
}

/// QEMU 10.0 and later zero a packet before filling it, so re-encoding a decoded channel
/// with [`WriterVersion::Qemu9_2`] gives its bytes back exactly.
#[test]
fn channels_of_qemu_10_and_later_re_encode_byte_for_byte() {
    let mut checked = 0;
    for v in multifd_vectors() {
        let version = v.manifest["qemu_version"].as_str().unwrap_or("");
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 10 || compression(&v) != "none" {
            continue;
        }
        let (blocks, page_bits) = main_blocks(&v.stream);
        let table = BlockTable::new(&blocks);
        let opts = ChannelOptions::default().with_page_bits(page_bits);
        let enc = ChannelEncoder::new(WriterVersion::Qemu9_2, page_bits).unwrap();
        for (id, bytes) in &v.channels {
            let events = decode_channel(bytes, opts.clone(), &table).unwrap();
            let mut out = Vec::new();
            let mut i = 0;
            while i < events.len() {
                match events[i].1 {
                    ChannelEvent::Init(init) => enc.init(&init, &mut out),
                    ChannelEvent::Packet(h) => {
                        let (mut normal, mut zero) = (Vec::new(), Vec::new());
                        let mut sync = false;
                        i += 1;
                        loop {
                            match events[i].1 {
                                ChannelEvent::Page { addr, data } => {
                                    normal.push((addr.offset, data))
                                }
                                ChannelEvent::Zero { addr } => zero.push(addr.offset),
                                ChannelEvent::Sync => sync = true,
                                ChannelEvent::PacketEnd => break,
                                ref e => panic!("{e:?} inside a packet"),
                            }
                            i += 1;
                        }
                        if h.pages() == 0 && sync {
                            enc.sync_packet(h.packet_num, &mut out);
                        } else {
                            let packet = RamPacket {
                                packet_num: h.packet_num,
                                block: h.ramblock.unwrap(),
                                normal: &normal,
                                zero: &zero,
                                sync,
                            };
                            enc.ram_packet(&packet, &mut out).unwrap();
                        }
                    }
                    ref e => panic!("{e:?} outside a packet"),
                }
                i += 1;
            }
            assert!(
                out == *bytes,
                "{} channel {id}: re-encoding differs",
                v.name
            );
            checked += 1;
        }
    }
    eprintln!("{checked} channels of QEMU 10.0+ re-encoded byte for byte");
}
