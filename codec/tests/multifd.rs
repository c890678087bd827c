//! The multifd channel decoder and encoder (SPEC.md §14): round trips for every writer
//! generation, any split of the input giving the same events (and the same first error),
//! the sync and block-table protocol, and one test per refusal rule of SPEC.md §14.8.

use proptest::prelude::*;
use ramstream_codec::multifd::{
    decode_channel, BlockTable, ChannelDecoder, ChannelEncoder, ChannelEvent, ChannelOptions,
    ChannelSet, ChannelStatus, InitPacket, RamPacket, WriterVersion,
};
use ramstream_codec::{Error, ErrorKind, Limits, PageAddr, RamBlock};
use ramstream_spec::multifd::{field, Compression, PacketFlags, INIT_PACKET_LEN};
use rand::{RngExt, SeedableRng};

const PAGE: usize = 4096;
/// The header of every packet on x86, offsets included.
const HDR: usize = 1344;
const P0: u64 = INIT_PACKET_LEN as u64;

fn block(idstr: &str, used_length: u64) -> RamBlock {
    RamBlock::new(idstr, used_length)
}

fn blocks() -> Vec<RamBlock> {
    vec![
        block("pc.ram", 64 * PAGE as u64),
        block("/rom@etc/acpi/tables", 4 * PAGE as u64),
        block("pc.bios", 2 * PAGE as u64),
    ]
}

fn table() -> BlockTable {
    BlockTable::new(&blocks())
}

fn page(seed: u8) -> Vec<u8> {
    (0..PAGE)
        .map(|i| (i as u8).wrapping_mul(7) ^ seed)
        .collect()
}

fn enc(v: WriterVersion) -> ChannelEncoder {
    ChannelEncoder::new(v, 12).unwrap()
}

const UUID: [u8; 16] = *b"ramstream-uuid-1";

/// A channel exercising every event: a 7.2-style SYNC riding on pages and a page-less
/// packet, then 9.0-style zero pages, a SYNC packet of 10.0.
fn sample_channel() -> Vec<u8> {
    let (a, b, c) = (page(1), page(2), page(3));
    let mut w = Vec::new();
    let e7 = enc(WriterVersion::Qemu7_2);
    e7.init(&InitPacket { uuid: UUID, id: 2 }, &mut w);
    e7.sync_packet(2, &mut w);
    let normal = [(0x3000, &a[..]), (0x1000, &b[..])];
    e7.ram_packet(&packet(5, "pc.ram", &normal, &[], true), &mut w)
        .unwrap();
    e7.ram_packet(&packet(5, "", &[], &[], false), &mut w)
        .unwrap();
    let e10 = enc(WriterVersion::Qemu9_2);
    let normal = [(0x1000, &c[..])];
    e10.ram_packet(&packet(9, "pc.bios", &normal, &[0], false), &mut w)
        .unwrap();
    e10.ram_packet(
        &packet(10, "/rom@etc/acpi/tables", &[], &[0x2000, 0x3000], false),
        &mut w,
    )
    .unwrap();
    e10.sync_packet(11, &mut w);
    w
}

fn packet<'p, 'a>(
    packet_num: u64,
    block: &'p str,
    normal: &'p [(u64, &'a [u8])],
    zero: &'p [u64],
    sync: bool,
) -> RamPacket<'p, 'a> {
    RamPacket {
        packet_num,
        block,
        normal,
        zero,
        sync,
    }
}

fn opts() -> ChannelOptions {
    ChannelOptions::default()
}

/// Events as strings with their offsets, or the first error, for `input` fed in chunks.
fn feed(
    input: &[u8],
    opts: &ChannelOptions,
    mut next_chunk: impl FnMut() -> usize,
) -> Result<Vec<String>, Error> {
    let mut dec = ChannelDecoder::new(opts.clone());
    dec.set_blocks(table());
    let (mut pos, mut avail) = (0usize, 0usize);
    let mut out = Vec::new();
    if input.is_empty() {
        dec.finish();
    }
    loop {
        let at = dec.offset();
        match dec.decode(&input[pos..avail])? {
            ChannelStatus::Event { event, consumed } => {
                out.push(format!("{at}: {event:?}"));
                pos += consumed;
            }
            ChannelStatus::NeedMore { needed } => {
                assert!(needed >= 1);
                assert!(avail < input.len());
                avail = avail.saturating_add(next_chunk().max(1)).min(input.len());
                if avail == input.len() {
                    dec.finish();
                }
            }
            ChannelStatus::NeedBlocks => unreachable!("a table was given"),
            ChannelStatus::Done => return Ok(out),
        }
    }
}

fn whole(input: &[u8], opts: &ChannelOptions) -> Result<Vec<String>, Error> {
    feed(input, opts, || usize::MAX)
}

fn err(input: &[u8]) -> Error {
    decode_channel(input, opts(), &table()).unwrap_err()
}

// --- round trips and the event sequence ----------------------------------------------------

#[test]
fn the_sample_channel_decodes_to_the_expected_events() {
    let w = sample_channel();
    let ev = decode_channel(&w, opts(), &table()).unwrap();
    let kinds: Vec<String> = ev
        .iter()
        .map(|(at, e)| match e {
            ChannelEvent::Init(i) => format!("{at} init {}", i.id),
            ChannelEvent::Packet(h) => format!(
                "{at} packet {} {:?} {}+{} {:?}",
                h.packet_num, h.flags, h.normal_pages, h.zero_pages, h.ramblock
            ),
            ChannelEvent::Page { addr, data } => {
                format!(
                    "{at} page {}:{:#x} {:02x}",
                    addr.block, addr.offset, data[0]
                )
            }
            ChannelEvent::Zero { addr } => format!("{at} zero {}:{:#x}", addr.block, addr.offset),
            ChannelEvent::Sync => format!("{at} sync"),
            ChannelEvent::PacketEnd => format!("{at} end"),
        })
        .collect();
    let p1 = P0 + HDR as u64;
    let p2 = p1 + (HDR + 2 * PAGE) as u64;
    let p3 = p2 + HDR as u64;
    let p4 = p3 + (HDR + PAGE) as u64;
    let p5 = p4 + HDR as u64;
    let expected = vec![
        "0 init 2".to_string(),
        format!("{P0} packet 2 SYNC 0+0 None"),
        format!("{p1} sync"),
        format!("{p1} end"),
        format!("{p1} packet 5 SYNC 2+0 Some(\"pc.ram\")"),
        format!("{} page 0:0x3000 01", p1 + HDR as u64),
        format!("{} page 0:0x1000 02", p1 + (HDR + PAGE) as u64),
        format!("{p2} sync"),
        format!("{p2} end"),
        format!("{p2} packet 5 NONE 0+0 None"),
        format!("{p3} end"),
        format!("{p3} packet 9 NONE 1+1 Some(\"pc.bios\")"),
        // Zero pages first, as QEMU applies them.
        format!("{} zero 2:0x0", p3 + HDR as u64),
        format!("{} page 2:0x1000 03", p3 + HDR as u64),
        format!("{p4} end"),
        format!("{p4} packet 10 NONE 0+2 Some(\"/rom@etc/acpi/tables\")"),
        format!("{p5} zero 1:0x2000"),
        format!("{p5} zero 1:0x3000"),
        format!("{p5} end"),
        format!("{p5} packet 11 SYNC 0+0 None"),
        format!("{} sync", p5 + HDR as u64),
        format!("{} end", p5 + HDR as u64),
    ];
    assert_eq!(kinds, expected);
    assert_eq!(p5 + HDR as u64, w.len() as u64);
}

#[test]
fn page_events_borrow_the_input() {
    let w = sample_channel();
    let ev = decode_channel(&w, opts(), &table()).unwrap();
    for (at, e) in ev {
        if let ChannelEvent::Page { data, .. } = e {
            assert_eq!(data.as_ptr(), w[at as usize..].as_ptr());
            assert_eq!(data.len(), PAGE);
        }
    }
}

#[test]
fn sync_packets_per_generation() {
    for (v, pages_alloc) in [
        (WriterVersion::Qemu7_2, 128u32),
        (WriterVersion::Qemu9_0, 128),
        (WriterVersion::Qemu9_2, 0),
    ] {
        let mut w = Vec::new();
        enc(v).sync_packet(0x0102_0304_0506_0708, &mut w);
        assert_eq!(w.len(), HDR);
        assert_eq!(&w[..12], b"\x11\x22\x33\x44\0\0\0\x01\0\0\0\x01");
        assert_eq!(&w[12..16], &pages_alloc.to_be_bytes(), "{v:?}");
        assert_eq!(&w[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(w[32..].iter().all(|&b| b == 0));
    }
}

fn arb_version() -> impl Strategy<Value = WriterVersion> {
    prop_oneof![
        Just(WriterVersion::Qemu7_2),
        Just(WriterVersion::Qemu9_0),
        Just(WriterVersion::Qemu9_2),
    ]
}

/// One packet to write: block index, normal offsets (page indices), zero offsets, sync,
/// or a SYNC packet.
#[derive(Clone, Debug)]
enum Spec {
    Ram {
        block: usize,
        normal: Vec<u64>,
        zero: Vec<u64>,
        sync: bool,
    },
    Sync,
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        1 => Just(Spec::Sync),
        4 => (0usize..3, prop::collection::vec(0u64..64, 0..6), prop::collection::vec(0u64..64, 0..6), any::<bool>())
            .prop_map(|(block, normal, zero, sync)| Spec::Ram { block, normal, zero, sync }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Encode, decode: the same packets come back, for any split of the bytes.
    #[test]
    fn encoder_decoder_round_trip(
        version in arb_version(),
        id in any::<u8>(),
        specs in prop::collection::vec(arb_spec(), 0..8),
        seed in any::<u64>(),
    ) {
        let blocks = blocks();
        let e = enc(version);
        let mut w = Vec::new();
        e.init(&InitPacket { uuid: UUID, id }, &mut w);
        let contents: Vec<Vec<u8>> = (0..8).map(|i| page(i as u8)).collect();
        // What each written packet must decode to: (pages as (offset, zero?), sync).
        let mut expected = Vec::new();
        for (n, s) in specs.iter().enumerate() {
            match s {
                Spec::Sync => {
                    e.sync_packet(n as u64, &mut w);
                    expected.push((None, vec![], true));
                }
                Spec::Ram { block, normal, zero, sync } => {
                    let b = &blocks[*block];
                    let pages = b.used_length / PAGE as u64;
                    let normal: Vec<(u64, &[u8])> = normal
                        .iter()
                        .enumerate()
                        .map(|(i, p)| ((p % pages) * PAGE as u64, &contents[i % 8][..]))
                        .collect();
                    let zero: Vec<u64> = if version.has_zero_pages() {
                        zero.iter().map(|p| (p % pages) * PAGE as u64).collect()
                    } else {
                        vec![]
                    };
                    let sync = *sync && version == WriterVersion::Qemu7_2;
                    let p = packet(n as u64, &b.idstr, &normal, &zero, sync);
                    let r = e.ram_packet(&p, &mut w);
                    if normal.is_empty() && zero.is_empty() && version != WriterVersion::Qemu7_2 {
                        prop_assert!(r.is_err());
                        continue;
                    }
                    r.unwrap();
                    let mut got: Vec<(u64, Option<u8>)> =
                        zero.iter().map(|&o| (o, None)).collect();
                    got.extend(normal.iter().map(|&(o, d)| (o, Some(d[0]))));
                    let blk = (!got.is_empty()).then_some(*block);
                    expected.push((blk, got, sync));
                }
            }
        }
        let ev = decode_channel(&w, opts(), &table()).unwrap();
        prop_assert_eq!(ev[0].1, ChannelEvent::Init(InitPacket { uuid: UUID, id }));
        let mut decoded = Vec::new();
        for (_, e) in &ev[1..] {
            match *e {
                ChannelEvent::Packet(h) => decoded.push((h.block, vec![], false)),
                ChannelEvent::Page { addr, data } => {
                    let last = decoded.last_mut().unwrap();
                    prop_assert_eq!(Some(addr.block), last.0);
                    last.1.push((addr.offset, Some(data[0])));
                }
                ChannelEvent::Zero { addr } => decoded.last_mut().unwrap().1.push((addr.offset, None)),
                ChannelEvent::Sync => decoded.last_mut().unwrap().2 = true,
                ChannelEvent::PacketEnd => {}
                ChannelEvent::Init(_) => prop_assert!(false, "a second initial packet"),
            }
        }
        prop_assert_eq!(decoded, expected);
        // And any split gives the same.
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let max = r.random_range(1..3 * HDR);
        let want = whole(&w, &opts());
        prop_assert_eq!(feed(&w, &opts(), || r.random_range(1..=max)), want);
    }
}

// --- splits ---------------------------------------------------------------------------------

#[test]
fn one_byte_at_a_time_and_every_two_way_split_match_one_shot() {
    let w = sample_channel();
    let expected = whole(&w, &opts()).unwrap();
    assert_eq!(expected.len(), 22);
    assert_eq!(feed(&w, &opts(), || 1).unwrap(), expected);
    for cut in 0..=w.len() {
        let mut first = true;
        let got = feed(&w, &opts(), || {
            if std::mem::take(&mut first) {
                cut
            } else {
                usize::MAX
            }
        });
        assert_eq!(got.unwrap(), expected, "split at {cut}");
    }
}

#[test]
fn random_splits_match_one_shot() {
    let w = sample_channel();
    let expected = whole(&w, &opts()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for _ in 0..200 {
        let max = rng.random_range(1..2 * HDR);
        assert_eq!(
            feed(&w, &opts(), || rng.random_range(1..=max)).unwrap(),
            expected
        );
    }
}

#[test]
fn a_bad_byte_anywhere_gives_the_same_first_error_for_every_split() {
    let w = sample_channel();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let mut bad = w.clone();
        let i = rng.random_range(0..bad.len());
        bad[i] ^= 1 << rng.random_range(0..8);
        let expected = whole(&bad, &opts());
        assert_eq!(feed(&bad, &opts(), || 1), expected, "byte {i}");
        let max = rng.random_range(1..2 * HDR);
        assert_eq!(
            feed(&bad, &opts(), || rng.random_range(1..=max)),
            expected,
            "byte {i}"
        );
    }
}

#[test]
fn truncation_at_every_offset_is_need_more_then_truncated() {
    let w = sample_channel();
    let full = whole(&w, &opts()).unwrap();
    for cut in 0..w.len() {
        let mut dec = ChannelDecoder::new(opts());
        dec.set_blocks(table());
        let mut pos = 0;
        let mut events = 0;
        // Unfinished: NeedMore, never an error.
        loop {
            match dec.decode(&w[pos..cut]).unwrap() {
                ChannelStatus::Event { consumed, .. } => {
                    pos += consumed;
                    events += 1;
                }
                ChannelStatus::NeedMore { needed } => {
                    assert!(cut + needed <= w.len() || pos == cut, "cut {cut}");
                    break;
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert!(events < full.len());
        // Finished: Truncated at the item's offset (or Done at a packet boundary).
        dec.finish();
        let at = dec.offset();
        match dec.decode(&w[pos..cut]) {
            Err(e) => {
                assert!(
                    matches!(e.kind, ErrorKind::Truncated { .. }),
                    "cut {cut}: {e}"
                );
                assert_eq!(e.offset, at);
                assert!(e.offset <= cut as u64);
                if cut >= INIT_PACKET_LEN {
                    assert_eq!(e.channel, Some(2));
                }
            }
            Ok(ChannelStatus::Done) => assert_eq!(pos, cut),
            Ok(other) => panic!("cut {cut}: {other:?}"),
        }
    }
}

// --- the block table and the sync protocol ---------------------------------------------------

#[test]
fn a_packet_with_pages_waits_for_the_block_table() {
    let w = sample_channel();
    let mut dec = ChannelDecoder::new(opts());
    dec.finish();
    let mut pos = 0;
    let mut events = Vec::new();
    loop {
        match dec.decode(&w[pos..]).unwrap() {
            ChannelStatus::Event { event, consumed } => {
                pos += consumed;
                events.push(format!("{event:?}"));
            }
            ChannelStatus::NeedBlocks => {
                // Only at the first packet with pages, nothing consumed, offset unchanged.
                assert_eq!(pos as u64, P0 + HDR as u64);
                assert_eq!(dec.offset(), pos as u64);
                assert_eq!(dec.decode(&w[pos..]).unwrap(), ChannelStatus::NeedBlocks);
                dec.set_blocks(table());
            }
            ChannelStatus::Done => break,
            ChannelStatus::NeedMore { .. } => unreachable!(),
        }
    }
    assert_eq!(events.len(), whole(&w, &opts()).unwrap().len());
}

#[test]
fn channel_set_admits_each_id_once_with_one_uuid() {
    let mut set = ChannelSet::new(Some(3), None);
    assert!(set.is_empty());
    set.admit(&InitPacket { uuid: UUID, id: 2 }).unwrap();
    assert_eq!(set.uuid(), Some(UUID));
    let e = set
        .admit(&InitPacket {
            uuid: [0; 16],
            id: 0,
        })
        .unwrap_err();
    assert_eq!(
        (e.offset, e.channel, e.kind.clone()),
        (
            8,
            Some(0),
            ErrorKind::MultifdUuid {
                found: [0; 16],
                expected: UUID
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "multifd channel 0: at offset 0x8: multifd channel of another migration: uuid \
         00000000-0000-0000-0000-000000000000, expected 72616d73-7472-6561-6d2d-757569642d31"
    );
    let e = set.admit(&InitPacket { uuid: UUID, id: 3 }).unwrap_err();
    assert_eq!(
        (e.offset, e.kind),
        (24, ErrorKind::MultifdChannelId { id: 3, channels: 3 })
    );
    let e = set.admit(&InitPacket { uuid: UUID, id: 2 }).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MultifdDuplicateChannel { id: 2 });
    set.admit(&InitPacket { uuid: UUID, id: 0 }).unwrap();
    assert!(!set.is_complete() && set.contains(0) && !set.contains(1));
    set.admit(&InitPacket { uuid: UUID, id: 1 }).unwrap();
    assert!(set.is_complete());
    assert_eq!(set.len(), 3);
    // Unknown count: any id, each once; never complete.
    let mut open = ChannelSet::new(None, Some(UUID));
    open.admit(&InitPacket {
        uuid: UUID,
        id: 254,
    })
    .unwrap();
    assert!(!open.is_complete());
}

// --- refusals (SPEC.md §14.8) ---------------------------------------------------------------

fn init(id: u8) -> Vec<u8> {
    InitPacket { uuid: UUID, id }.to_bytes().to_vec()
}

/// The initial packet, then a packet of `pc.ram` with two normal pages and one zero page.
fn one_packet() -> Vec<u8> {
    let (a, b) = (page(1), page(2));
    let mut w = init(1);
    let normal = [(0x1000, &a[..]), (0x2000, &b[..])];
    enc(WriterVersion::Qemu9_2)
        .ram_packet(&packet(0, "pc.ram", &normal, &[0x3000], false), &mut w)
        .unwrap();
    w
}

fn put32(w: &mut [u8], at: usize, v: u32) {
    w[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(w: &mut [u8], at: usize, v: u64) {
    w[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// The packet of [`one_packet`] with `f` applied to its header (channel offsets).
fn bad_packet(f: impl FnOnce(&mut [u8])) -> Error {
    let mut w = one_packet();
    f(&mut w[INIT_PACKET_LEN..]);
    err(&w)
}

fn at(field: usize) -> u64 {
    P0 + field as u64
}

#[test]
fn initial_packet_refusals() {
    let mut w = init(0);
    w[0] = 0x51;
    let e = err(&w);
    assert_eq!((e.offset, e.channel), (0, None));
    assert_eq!(e.kind, ErrorKind::MultifdMagic { found: 0x5122_3344 });
    assert_eq!(
        e.to_string(),
        "at offset 0x0: multifd packet magic 0x51223344, expected 0x11223344"
    );
    // The main stream's magic on a channel.
    let e = err(b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(e.kind, ErrorKind::MultifdMagic { found: 0x5145_564d });
    let mut w = init(0);
    w[7] = 2;
    assert_eq!(
        (err(&w).offset, err(&w).kind),
        (4, ErrorKind::MultifdVersion { found: 2 })
    );
    // Another migration's uuid, when the decoder knows the migration's.
    let o = opts().with_uuid(Some([9; 16]));
    let e = decode_channel(&init(5), o, &table()).unwrap_err();
    assert_eq!((e.offset, e.channel), (8, Some(5)));
    assert_eq!(
        e.kind,
        ErrorKind::MultifdUuid {
            found: UUID,
            expected: [9; 16]
        }
    );
    // An id out of range, when the decoder knows the number of channels.
    let o = opts().with_channels(Some(2));
    decode_channel(&init(1), o.clone(), &table()).unwrap();
    let e = decode_channel(&init(2), o, &table()).unwrap_err();
    assert_eq!(
        (e.offset, e.channel, e.kind),
        (24, None, ErrorKind::MultifdChannelId { id: 2, channels: 2 })
    );
    // Nothing at all, or half an initial packet.
    assert_eq!(err(&[]).kind, ErrorKind::Truncated { needed: 64 });
    assert_eq!(
        err(&init(0)[..40]).kind,
        ErrorKind::Truncated { needed: 24 }
    );
}

#[test]
fn packet_magic_version_and_flags() {
    let e = bad_packet(|p| p[3] = 0x45);
    assert_eq!(
        (e.offset, e.channel, e.kind.clone()),
        (P0, Some(1), ErrorKind::MultifdMagic { found: 0x1122_3345 })
    );
    assert_eq!(
        e.to_string(),
        "multifd channel 1: at offset 0x40: multifd packet magic 0x11223345, expected 0x11223344"
    );
    let e = bad_packet(|p| put32(p, 4, 0));
    assert_eq!(
        (e.offset, e.kind),
        (P0 + 4, ErrorKind::MultifdVersion { found: 0 })
    );
    let e = bad_packet(|p| put32(p, field::FLAGS, 0x80));
    assert_eq!(
        (e.offset, e.kind),
        (
            at(field::FLAGS),
            ErrorKind::MultifdUnknownFlags {
                flags: PacketFlags(0x80)
            }
        )
    );
}

#[test]
fn every_compression_method_is_refused_by_name() {
    for (bits, name) in [
        (0x02, "zlib"),
        (0x04, "zstd"),
        (0x08, "qpl"),
        (0x10, "uadk"),
        (0x20, "qatzip"),
    ] {
        // With SYNC too, and on a packet without pages: the bits alone decide.
        for flags in [bits, bits | 1] {
            let e = bad_packet(|p| put32(p, field::FLAGS, flags));
            assert_eq!(e.offset, at(field::FLAGS));
            assert_eq!(
                e.kind,
                ErrorKind::MultifdCompression {
                    method: Compression(bits)
                }
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("multifd-compression={name}")),
                "{msg}"
            );
        }
    }
    let e = bad_packet(|p| put32(p, field::FLAGS, 0x06));
    assert!(
        e.to_string().contains("unknown compression bits 0x6"),
        "{e}"
    );
}

#[test]
fn device_state_packets_are_refused_by_name() {
    let mut w = init(0);
    let mut p = vec![0u8; 276];
    p[..12].copy_from_slice(b"\x11\x22\x33\x44\0\0\0\x01\0\0\0\x40");
    p[12..29].copy_from_slice(b"0000:00:05.0/vfio");
    put32(&mut p, 268, 0);
    put32(&mut p, 272, 4096);
    w.extend_from_slice(&p);
    w.extend_from_slice(&[0xee; 4096]);
    let e = err(&w);
    assert_eq!((e.offset, e.channel), (P0, Some(0)));
    assert_eq!(
        e.kind,
        ErrorKind::MultifdDeviceState {
            idstr: "0000:00:05.0/vfio".into(),
            instance_id: 0,
            len: 4096
        }
    );
    assert!(e.to_string().contains("VFIO"), "{e}");
    // Its fixed part cut short: truncated, not a guess.
    let e = err(&w[..INIT_PACKET_LEN + 100]);
    assert_eq!(e.kind, ErrorKind::Truncated { needed: 176 });
}

#[test]
fn page_counts_beyond_the_packet() {
    let e = bad_packet(|p| put32(p, field::PAGES_ALLOC, 129));
    assert_eq!(
        (e.offset, e.kind),
        (
            at(field::PAGES_ALLOC),
            ErrorKind::MultifdPagesAlloc {
                pages_alloc: 129,
                limit: 128
            }
        )
    );
    let e = bad_packet(|p| put32(p, field::NORMAL_PAGES, 129));
    assert_eq!(
        (e.offset, e.kind),
        (
            at(field::NORMAL_PAGES),
            ErrorKind::MultifdNormalPages {
                normal_pages: 129,
                pages_alloc: 128
            }
        )
    );
    let e = bad_packet(|p| {
        put32(p, field::PAGES_ALLOC, 4);
        put32(p, field::ZERO_PAGES, 3);
    });
    assert_eq!(
        (e.offset, e.kind),
        (
            at(field::ZERO_PAGES),
            ErrorKind::MultifdZeroPages {
                zero_pages: 3,
                room: 2
            }
        )
    );
    // pages_alloc below the packet's pages is accepted (QEMU frames by its own count).
    let mut w = one_packet();
    put32(&mut w[INIT_PACKET_LEN..], field::PAGES_ALLOC, 3);
    decode_channel(&w, opts(), &table()).unwrap();
    let e = bad_packet(|p| put32(p, field::NEXT_PACKET_SIZE, 3 * PAGE as u32));
    assert_eq!(
        (e.offset, e.kind),
        (
            at(field::NEXT_PACKET_SIZE),
            ErrorKind::MultifdNextPacketSize {
                found: 3 * PAGE as u32,
                expected: 2 * PAGE as u64
            }
        )
    );
}

#[test]
fn ramblock_refusals() {
    let e = bad_packet(|p| p[field::RAMBLOCK..field::RAMBLOCK + 256].fill(b'x'));
    assert_eq!(
        (e.offset, e.kind),
        (at(field::RAMBLOCK), ErrorKind::MultifdRamblockUnterminated)
    );
    let e = bad_packet(|p| p[field::RAMBLOCK] = 0xff);
    assert!(matches!(e.kind, ErrorKind::NotUtf8 { .. }), "{e}");
    let e = bad_packet(|p| p[field::RAMBLOCK..field::RAMBLOCK + 7].copy_from_slice(b"vga.ram"));
    assert_eq!(
        (e.offset, e.block.as_deref(), e.kind.clone()),
        (
            at(field::RAMBLOCK),
            Some("vga.ram"),
            ErrorKind::UnknownBlock {
                idstr: "vga.ram".into()
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "multifd channel 1: at offset 0x80 (block \"vga.ram\"): unknown RAM block \"vga.ram\""
    );
}

#[test]
fn offset_refusals() {
    let off = |i: usize| field::OFFSETS + 8 * i;
    // Unaligned, a normal page's and a zero page's.
    for i in [0, 2] {
        let e = bad_packet(|p| put64(p, off(i), 0x1800));
        assert_eq!(
            (e.offset, e.block.as_deref(), e.kind),
            (
                at(off(i)),
                Some("pc.ram"),
                ErrorKind::UnalignedOffset {
                    offset: 0x1800,
                    page_size: PAGE
                }
            )
        );
    }
    // At the block's end, one page past it, and a u64 that would overflow.
    for o in [64 * PAGE as u64, 65 * PAGE as u64, u64::MAX - 4095] {
        for i in [1, 2] {
            let e = bad_packet(|p| put64(p, off(i), o));
            assert_eq!(
                (e.offset, e.block.as_deref(), e.kind),
                (
                    at(off(i)),
                    Some("pc.ram"),
                    ErrorKind::OffsetBeyondBlock {
                        offset: o,
                        used_length: 64 * PAGE as u64
                    }
                ),
                "offset {o:#x} as entry {i}"
            );
        }
    }
    // The last page is fine.
    let mut w = one_packet();
    put64(&mut w[INIT_PACKET_LEN..], off(2), 63 * PAGE as u64);
    decode_channel(&w, opts(), &table()).unwrap();
}

#[test]
fn stale_fields_of_a_packet_without_pages_are_not_read() {
    // QEMU 7.2 to 9.2 leave the previous packet's ramblock, next_packet_size and offsets in
    // a packet without pages; only the counts are read.
    let mut w = init(0);
    let mut p = vec![0u8; HDR];
    p[..12].copy_from_slice(b"\x11\x22\x33\x44\0\0\0\x01\0\0\0\x01");
    put32(&mut p, field::PAGES_ALLOC, 128);
    put32(&mut p, field::NEXT_PACKET_SIZE, 0x1234_5678);
    p[field::RAMBLOCK..field::RAMBLOCK + 256].fill(0xff);
    p[field::OFFSETS..].fill(0x55);
    w.extend_from_slice(&p);
    let ev = decode_channel(&w, opts(), &table()).unwrap();
    assert!(
        matches!(ev[1].1, ChannelEvent::Packet(h) if h.ramblock.is_none() && h.next_packet_size == 0x1234_5678)
    );
    assert_eq!(ev[2].1, ChannelEvent::Sync);
}

#[test]
fn errors_are_final() {
    let mut w = one_packet();
    w[INIT_PACKET_LEN] = 0;
    let mut dec = ChannelDecoder::new(opts());
    dec.set_blocks(table());
    assert!(matches!(
        dec.decode(&w).unwrap(),
        ChannelStatus::Event {
            event: ChannelEvent::Init(_),
            consumed: 64
        }
    ));
    assert!(matches!(
        dec.decode(&w[64..]).unwrap_err().kind,
        ErrorKind::MultifdMagic { .. }
    ));
    let e = dec.decode(&w[64..]).unwrap_err();
    assert_eq!(
        (e.offset, e.channel, e.kind),
        (P0, Some(1), ErrorKind::Poisoned)
    );
}

#[test]
fn bytes_after_the_end_are_trailing() {
    let w = init(0);
    let mut dec = ChannelDecoder::new(opts());
    dec.finish();
    assert!(matches!(
        dec.decode(&w).unwrap(),
        ChannelStatus::Event { .. }
    ));
    assert_eq!(dec.decode(&[]).unwrap(), ChannelStatus::Done);
    assert_eq!(
        dec.decode(b"x").unwrap_err().kind,
        ErrorKind::TrailingBytes { count: 1 }
    );
}

// --- limits and configuration ---------------------------------------------------------------

#[test]
fn packet_pages_limit_and_other_page_sizes() {
    // The default limit admits every target's packet: 512 pages of 1 KiB.
    for bits in 10..=16 {
        let o = opts().with_page_bits(bits);
        let e = ChannelEncoder::new(WriterVersion::Qemu9_2, bits).unwrap();
        let ps = 1usize << bits;
        let data = vec![7u8; ps];
        let mut w = init(0);
        let normal = [(ps as u64, &data[..])];
        e.ram_packet(&packet(1, "pc.ram", &normal, &[], false), &mut w)
            .unwrap();
        assert_eq!(w.len(), 64 + 320 + 8 * (512 * 1024 / ps) + ps);
        let ev = decode_channel(&w, o, &table()).unwrap();
        assert_eq!(
            ev[2].1,
            ChannelEvent::Page {
                addr: PageAddr {
                    block: 0,
                    offset: ps as u64
                },
                data: &data[..]
            }
        );
    }
    // A lower limit refuses the configuration before reading anything.
    let o = opts().with_limits(Limits::default().with_max_multifd_packet_pages(127));
    let e = decode_channel(&init(0), o, &table()).unwrap_err();
    assert_eq!(
        (e.offset, e.kind),
        (
            0,
            ErrorKind::MultifdPacketPages {
                packet_size: 512 * 1024,
                page_size: PAGE,
                limit: 127
            }
        )
    );
    // A smaller packet size frames smaller headers, and refuses pages_alloc beyond it.
    let o = opts().with_packet_size(64 * PAGE as u32);
    let mut w = init(0);
    let mut p = vec![0u8; 320 + 8 * 64];
    p[..12].copy_from_slice(b"\x11\x22\x33\x44\0\0\0\x01\0\0\0\x01");
    put32(&mut p, field::PAGES_ALLOC, 64);
    w.extend_from_slice(&p);
    decode_channel(&w, o.clone(), &table()).unwrap();
    put32(&mut w[64..], field::PAGES_ALLOC, 65);
    assert!(matches!(
        decode_channel(&w, o, &table()).unwrap_err().kind,
        ErrorKind::MultifdPagesAlloc {
            pages_alloc: 65,
            limit: 64
        }
    ));
    for packet_size in [0, 4095, 6000] {
        let o = opts().with_packet_size(packet_size);
        assert!(matches!(
            decode_channel(&init(0), o, &table()).unwrap_err().kind,
            ErrorKind::MultifdPacketPages { .. }
        ));
    }
}

// --- the encoder's refusals -----------------------------------------------------------------

#[test]
fn encoder_refusals_write_nothing() {
    let a = page(1);
    let short = [0u8; 100];
    let many: Vec<(u64, &[u8])> = (0..129).map(|i| (i * PAGE as u64, &a[..])).collect();
    let long = "x".repeat(256);
    let one = [(0u64, &a[..])];
    let unaligned = [(0x10u64, &a[..])];
    let wrong_size = [(0u64, &short[..])];
    let cases: Vec<(WriterVersion, RamPacket<'_, '_>, &str)> = vec![
        (
            WriterVersion::Qemu9_2,
            packet(0, "pc.ram", &many, &[], false),
            "at most 128",
        ),
        (
            WriterVersion::Qemu7_2,
            packet(0, "pc.ram", &[], &[0], false),
            "zero pages",
        ),
        (
            WriterVersion::Qemu9_0,
            packet(0, "pc.ram", &[], &[], false),
            "without pages",
        ),
        (
            WriterVersion::Qemu9_0,
            packet(0, "pc.ram", &one, &[], true),
            "SYNC",
        ),
        (
            WriterVersion::Qemu9_2,
            packet(0, "pc.ram", &wrong_size, &[], false),
            "100 bytes",
        ),
        (
            WriterVersion::Qemu9_2,
            packet(0, "pc.ram", &unaligned, &[], false),
            "not aligned",
        ),
        (
            WriterVersion::Qemu9_2,
            packet(0, "pc.ram", &[], &[0x10], false),
            "not aligned",
        ),
        (
            WriterVersion::Qemu9_2,
            packet(0, &long, &one, &[], false),
            "1 to 255",
        ),
        (
            WriterVersion::Qemu9_2,
            packet(0, "", &one, &[], false),
            "1 to 255",
        ),
        (
            WriterVersion::Qemu9_2,
            packet(0, "a\0b", &one, &[], false),
            "1 to 255",
        ),
    ];
    for (v, p, needle) in cases {
        let mut out = Vec::new();
        let e = enc(v).ram_packet(&p, &mut out).unwrap_err();
        match e.kind {
            ErrorKind::Encode { reason } => assert!(reason.contains(needle), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(out.is_empty());
    }
    assert!(ChannelEncoder::new(WriterVersion::Qemu9_2, 9).is_err());
    assert!(ChannelEncoder::new(WriterVersion::Qemu9_2, 17).is_err());
    // 255 bytes is the longest name.
    let name = "y".repeat(255);
    let mut out = Vec::new();
    enc(WriterVersion::Qemu9_2)
        .ram_packet(&packet(0, &name, &[(0, &a[..])], &[], false), &mut out)
        .unwrap();
    assert_eq!(out[64 + 255], 0);
}

#[test]
fn vectored_sinks_reference_the_pages() {
    let a = page(1);
    let mut out = ramstream_codec::Vectored::default();
    enc(WriterVersion::Qemu9_2)
        .ram_packet(&packet(0, "pc.ram", &[(0, &a[..])], &[], false), &mut out)
        .unwrap();
    assert_eq!(out.io_slices().last().unwrap().as_ptr(), a.as_ptr());
    assert_eq!(out.len(), HDR + PAGE);
}
