//! The multifd targets (SPEC.md §14): one channel decoded whole and in chunks, and packets
//! written by the channel encoder then decoded. Seeds come from the recorded channels
//! ([`multifd_channel_seed`]) and from the encoder ([`multifd_seeds`]).
//!
//! | entry point | input |
//! |---|---|
//! | [`multifd_channel`] | `ctl, split_seed, multifd channel…` |
//! | [`multifd_roundtrip`] | `arbitrary` bytes |

use arbitrary::{Result as AResult, Unstructured};
use ramstream_codec::multifd::{
    BlockTable, ChannelDecoder, ChannelEncoder, ChannelEvent, ChannelOptions, ChannelStatus,
    InitPacket, RamPacket, WriterVersion,
};
use ramstream_codec::{Error, ErrorKind, Limits, RamBlock, Vectored};
use ramstream_spec::multifd::{field, page_count, ram_packet_len, INIT_PACKET_LEN};

use super::split_sizes;

/// The blocks every multifd target resolves pages against: the pc machine's, as in the
/// recorded vectors (a 128 MiB `pc.ram`), each at least one page of `1 << page_bits`.
pub fn multifd_blocks(page_bits: u32) -> Vec<RamBlock> {
    let page = 1u64 << page_bits;
    [
        ("pc.ram", 128u64 << 20),
        ("/rom@etc/acpi/tables", 0x2_0000),
        ("pc.bios", 0x4_0000),
        ("pc.rom", 0x2_0000),
        ("/rom@etc/table-loader", 0x1000),
        ("/rom@etc/acpi/rsdp", 0x1000),
    ]
    .into_iter()
    .map(|(idstr, len)| RamBlock {
        idstr: idstr.into(),
        used_length: len.div_ceil(page) * page,
        page_size: None,
        mr_addr: None,
    })
    .collect()
}

/// The page bits a control byte's bits 0–1 choose: 12 (twice as likely), 10 or 16.
fn page_bits(ctl: u8) -> u32 {
    [12, 10, 16, 12][usize::from(ctl & 3)]
}

/// The options a control byte chooses: its page bits; bit 2: the migration has 4 channels;
/// bit 3: the uuid must be all zero (as in the recordings).
fn channel_options(ctl: u8) -> ChannelOptions {
    ChannelOptions::default()
        .with_page_bits(page_bits(ctl))
        .with_channels((ctl & 4 != 0).then_some(4))
        .with_uuid((ctl & 8 != 0).then_some([0; 16]))
        .with_limits(Limits::default())
}

/// What one decoding of a channel made of it: events as strings with their offsets, then
/// how it ended.
type ChannelRun = (Vec<String>, Result<(), Error>);

/// Decodes `input` fed in chunks of `sizes` (`finish` once everything was fed), checking the
/// decoder's contract on every call and the events' grammar. With `late_table`, the block
/// table is given only when the decoder asks for it.
fn run_channel(
    input: &[u8],
    opts: &ChannelOptions,
    table: &BlockTable,
    sizes: impl IntoIterator<Item = usize>,
    late_table: bool,
) -> ChannelRun {
    let mut sizes = sizes.into_iter();
    let page_size = opts.page_size();
    let mut dec = ChannelDecoder::new(opts.clone());
    if !late_table {
        dec.set_blocks(table.clone());
    }
    let (mut pos, mut avail, mut finished) = (0usize, 0usize, false);
    let mut events = Vec::new();
    // Grammar: Init, then per packet: Packet, Zero*, Page*, [Sync], PacketEnd.
    let mut in_packet: Option<(u32, u32, bool)> = None;
    let mut seen_init = false;
    loop {
        let at = dec.offset();
        assert_eq!(at, pos as u64, "decoder offset drifted from bytes consumed");
        match dec.decode(&input[pos..avail]) {
            Ok(ChannelStatus::Event { event, consumed }) => {
                assert!(pos + consumed <= avail, "consumed more than given");
                match event {
                    ChannelEvent::Init(i) => {
                        assert!(!seen_init && consumed == INIT_PACKET_LEN);
                        assert_eq!(dec.channel(), Some(i.id));
                        seen_init = true;
                    }
                    ChannelEvent::Packet(h) => {
                        assert!(seen_init && in_packet.is_none(), "packet inside a packet");
                        assert_eq!(consumed, ram_packet_len(page_count(page_size as u32)));
                        assert!(h.pages_alloc >= h.normal_pages + h.zero_pages);
                        assert_eq!(h.ramblock.is_some(), h.pages() > 0);
                        if let (Some(name), Some(b)) = (h.ramblock, h.block) {
                            assert_eq!(table.idstr(b), Some(name));
                        }
                        in_packet = Some((h.zero_pages, h.normal_pages, h.is_sync()));
                    }
                    ChannelEvent::Zero { addr } | ChannelEvent::Page { addr, .. } => {
                        let Some((zero, normal, _)) = in_packet.as_mut() else {
                            panic!("a page outside a packet");
                        };
                        let is_zero = matches!(event, ChannelEvent::Zero { .. });
                        if is_zero {
                            assert!(*zero > 0, "more zero pages than announced");
                            *zero -= 1;
                            assert_eq!(consumed, 0);
                        } else {
                            assert_eq!(*zero, 0, "a normal page before the zero pages");
                            assert!(*normal > 0, "more normal pages than announced");
                            *normal -= 1;
                            assert_eq!(consumed, page_size);
                        }
                        let used = table.used_length(addr.block).expect("block in the table");
                        assert!(addr.offset < used, "page beyond its block");
                        assert_eq!(addr.offset % page_size as u64, 0, "unaligned page");
                        if let ChannelEvent::Page { data, .. } = event {
                            assert_eq!(data.len(), page_size);
                            assert_eq!(data.as_ptr(), input[pos..].as_ptr(), "not borrowed");
                        }
                    }
                    ChannelEvent::Sync => {
                        let Some((0, 0, sync)) = in_packet.as_mut() else {
                            panic!("SYNC before the packet's pages ended");
                        };
                        assert!(std::mem::take(sync), "SYNC without the flag, or twice");
                        assert_eq!(consumed, 0);
                    }
                    ChannelEvent::PacketEnd => {
                        assert_eq!(in_packet.take(), Some((0, 0, false)), "packet cut short");
                        assert_eq!(consumed, 0);
                    }
                }
                pos += consumed;
                events.push(format!("{at}: {event:?}"));
            }
            Ok(ChannelStatus::NeedMore { needed }) => {
                assert!(!finished, "NeedMore after finish");
                assert!(needed >= 1, "NeedMore of 0 bytes");
                if avail == input.len() {
                    dec.finish();
                    finished = true;
                } else {
                    let n = sizes.next().unwrap_or(usize::MAX);
                    avail = avail.saturating_add(n.max(1)).min(input.len());
                }
            }
            Ok(ChannelStatus::NeedBlocks) => {
                assert!(dec.blocks().is_none(), "NeedBlocks with a block table");
                assert_eq!(dec.offset(), at, "NeedBlocks consumed");
                dec.set_blocks(table.clone());
            }
            Ok(ChannelStatus::Done) => {
                assert!(finished && pos == input.len(), "Done before the end");
                assert!(in_packet.is_none() && seen_init);
                return (events, Ok(()));
            }
            Err(e) => {
                assert_eq!(
                    dec.decode(&input[pos..avail]).map(|_| ()).unwrap_err().kind,
                    ErrorKind::Poisoned,
                    "a failed decoder must stay failed"
                );
                if let ErrorKind::Truncated { .. } = e.kind {
                    assert!(finished, "truncated before the input ended");
                }
                assert!(e.offset <= input.len() as u64, "error beyond the input");
                if seen_init {
                    assert_eq!(e.channel, dec.channel());
                }
                return (events, Err(e));
            }
        }
    }
}

/// Target `multifd_channel`: `ctl, split_seed, channel…`. One multifd channel (SPEC.md §14)
/// with the options `ctl` chooses (page bits, channel count, uuid; bit 4: the block table
/// is given only when the decoder asks for it): decoded whole and in the chunks `split_seed`
/// gives, it yields the same events and the same first error, and every event keeps the
/// decoder's contract (pages inside their blocks, borrowed, counted as the header says).
pub fn multifd_channel(data: &[u8]) {
    let [ctl, seed, input @ ..] = data else {
        return;
    };
    let opts = channel_options(*ctl);
    let table = BlockTable::new(&multifd_blocks(opts.page_bits));
    let whole = run_channel(input, &opts, &table, split_sizes(0), false);
    let split = run_channel(input, &opts, &table, split_sizes(*seed), ctl & 0x10 != 0);
    assert_eq!(whole.0, split.0, "a split decoded other events");
    assert_eq!(whole.1, split.1, "a split ended otherwise");
}

/// A packet as the round-trip target compares it: its block (when it has pages), its pages
/// in decoding order as (offset, first byte or `None` for a zero page), its SYNC flag.
type Decoded = (Option<usize>, Vec<(u64, Option<u8>)>, bool);

/// A packet the round-trip target writes.
#[derive(Debug)]
enum Packet {
    Sync,
    Ram {
        block: usize,
        normal: Vec<(u64, u8)>,
        zero: Vec<u64>,
        sync: bool,
    },
}

fn arbitrary_packets(
    u: &mut Unstructured<'_>,
    blocks: &[RamBlock],
    page_size: u64,
    page_count: usize,
) -> AResult<Vec<Packet>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        if u.ratio(1, 4)? {
            out.push(Packet::Sync);
            continue;
        }
        let block = u.choose_index(blocks.len())?;
        let pages = blocks[block].used_length / page_size;
        let n = usize::from(u.int_in_range(0u8..=8)?).min(page_count);
        let mut normal = Vec::with_capacity(n);
        for _ in 0..n {
            normal.push((u.int_in_range(0..=pages - 1)? * page_size, 0));
        }
        let z = usize::from(u.int_in_range(0u8..=8)?).min(page_count - n);
        let mut zero = Vec::with_capacity(z);
        for _ in 0..z {
            zero.push(u.int_in_range(0..=pages - 1)? * page_size);
        }
        for p in &mut normal {
            p.1 = u.arbitrary()?;
        }
        out.push(Packet::Ram {
            block,
            normal,
            zero,
            sync: u.arbitrary()?,
        });
    }
    Ok(out)
}

/// Target `multifd_roundtrip`: `arbitrary` bytes choose a writer generation, page bits, a
/// channel id and packets (normal pages, zero pages, SYNC). What the [`ChannelEncoder`]
/// accepts decodes back to the same packets, the same with a [`Vectored`] sink, and
/// whatever it refuses it refuses for a reason the generation documents.
pub fn multifd_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(sel) = u.int_in_range(0u8..=2) else {
        return;
    };
    let version = [
        WriterVersion::Qemu7_2,
        WriterVersion::Qemu9_0,
        WriterVersion::Qemu9_2,
    ][usize::from(sel)];
    let Ok(ctl) = u.arbitrary::<u8>() else {
        return;
    };
    let bits = page_bits(ctl);
    let page_size = 1u64 << bits;
    let enc = ChannelEncoder::new(version, bits).expect("page bits in range");
    let blocks = multifd_blocks(bits);
    let Ok(id) = u.arbitrary::<u8>() else {
        return;
    };
    let Ok(packets) = arbitrary_packets(&mut u, &blocks, page_size, enc.page_count() as usize)
    else {
        return;
    };
    let contents: Vec<Vec<u8>> = (0..=255u8)
        .step_by(51)
        .map(|s| {
            (0..page_size)
                .map(|i| (i as u8).wrapping_mul(31) ^ s)
                .collect()
        })
        .collect();
    let mut wire = Vec::new();
    let mut vectored = Vectored::default();
    enc.init(&InitPacket { uuid: [0; 16], id }, &mut wire);
    enc.init(&InitPacket { uuid: [0; 16], id }, &mut vectored);
    // What each accepted packet must decode to.
    let mut expected = Vec::new();
    for (n, p) in packets.iter().enumerate() {
        match p {
            Packet::Sync => {
                enc.sync_packet(n as u64, &mut wire);
                enc.sync_packet(n as u64, &mut vectored);
                expected.push((None, vec![], true));
            }
            Packet::Ram {
                block,
                normal,
                zero,
                sync,
            } => {
                let normal: Vec<(u64, &[u8])> = normal
                    .iter()
                    .map(|&(o, c)| (o, &contents[usize::from(c) % contents.len()][..]))
                    .collect();
                let packet = RamPacket {
                    packet_num: n as u64,
                    block: &blocks[*block].idstr,
                    normal: &normal,
                    zero,
                    sync: *sync,
                };
                let before = wire.len();
                match enc.ram_packet(&packet, &mut wire) {
                    Ok(()) => {
                        enc.ram_packet(&packet, &mut vectored).unwrap();
                        let mut pages: Vec<(u64, Option<u8>)> =
                            zero.iter().map(|&o| (o, None)).collect();
                        pages.extend(normal.iter().map(|&(o, d)| (o, Some(d[0]))));
                        let blk = (!pages.is_empty()).then_some(*block);
                        expected.push((blk, pages, *sync));
                    }
                    Err(e) => {
                        assert_eq!(wire.len(), before, "a refused packet wrote bytes");
                        let ErrorKind::Encode { reason } = &e.kind else {
                            panic!("{e}");
                        };
                        let documented = match version {
                            WriterVersion::Qemu7_2 => !zero.is_empty(),
                            _ => *sync || normal.is_empty() && zero.is_empty(),
                        };
                        assert!(documented, "refused: {reason}");
                    }
                }
            }
        }
    }
    assert!(vectored.to_vec() == wire, "vectored output differs");
    let opts = ChannelOptions::default().with_page_bits(bits);
    let table = BlockTable::new(&blocks);
    let (events, end) = run_channel(&wire, &opts, &table, split_sizes(ctl), false);
    end.expect("the encoder's output decodes");
    let mut decoded: Vec<Decoded> = Vec::new();
    let mut dec = ChannelDecoder::new(opts);
    dec.set_blocks(table);
    dec.finish();
    let mut pos = 0;
    while let ChannelStatus::Event { event, consumed } = dec.decode(&wire[pos..]).unwrap() {
        pos += consumed;
        match event {
            ChannelEvent::Init(i) => assert_eq!(i.id, id),
            ChannelEvent::Packet(h) => {
                assert_eq!(
                    h.next_packet_size as u64,
                    u64::from(h.normal_pages) * page_size
                );
                decoded.push((h.block, vec![], false));
            }
            ChannelEvent::Page { addr, data } => decoded
                .last_mut()
                .unwrap()
                .1
                .push((addr.offset, Some(data[0]))),
            ChannelEvent::Zero { addr } => decoded.last_mut().unwrap().1.push((addr.offset, None)),
            ChannelEvent::Sync => decoded.last_mut().unwrap().2 = true,
            ChannelEvent::PacketEnd => {}
        }
    }
    assert_eq!(decoded, expected, "round trip");
    assert_eq!(events.len() > 1, !expected.is_empty());
}

/// A recorded channel cut into a `multifd_channel` seed: control byte 8 (page bits 12, the
/// recordings' zero uuid), split seed `seed`, and the channel up to the end of its packet
/// that ends last within `max_len` bytes (at least the initial packet).
pub fn multifd_channel_seed(channel: &[u8], seed: u8, max_len: usize) -> Vec<u8> {
    let hdr = ram_packet_len(page_count(4096));
    let mut end = INIT_PACKET_LEN.min(channel.len());
    let mut p = end;
    while p + hdr <= channel.len() {
        let normal = u32::from_be_bytes(
            channel[p + field::NORMAL_PAGES..p + field::NORMAL_PAGES + 4]
                .try_into()
                .unwrap(),
        ) as usize;
        let next = p + hdr + normal.min(512) * 4096;
        if next > channel.len() || next > max_len {
            break;
        }
        end = next;
        p = next;
    }
    let mut out = vec![8, seed];
    out.extend_from_slice(&channel[..end]);
    out
}

/// Seeds for both multifd targets, from the encoder: every writer generation (7.2's SYNC on
/// pages and page-less packets, 9.0's zero pages, 10.0's zeroed SYNC packets), a
/// device-state packet and a compressed one (refused), and `arbitrary` bytes for the round
/// trip.
pub fn multifd_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let blocks = multifd_blocks(12);
    let (a, b) = (vec![0x5au8; 4096], vec![0xa5u8; 4096]);
    let mut out = Vec::new();
    let channel = |version, f: &dyn Fn(&ChannelEncoder, &mut Vec<u8>)| {
        let enc = ChannelEncoder::new(version, 12).unwrap();
        let mut w = vec![8u8, 0x81];
        enc.init(
            &InitPacket {
                uuid: [0; 16],
                id: 1,
            },
            &mut w,
        );
        f(&enc, &mut w);
        w
    };
    let normal = [(0x1000u64, &a[..]), (0x7000, &b[..])];
    out.push((
        "multifd_channel",
        "qemu-7.2",
        channel(WriterVersion::Qemu7_2, &|e, w| {
            e.sync_packet(0, w);
            let p = RamPacket {
                packet_num: 4,
                block: &blocks[0].idstr,
                normal: &normal,
                zero: &[],
                sync: true,
            };
            e.ram_packet(&p, w).unwrap();
            e.ram_packet(&RamPacket { normal: &[], ..p }, w).unwrap();
        }),
    ));
    out.push((
        "multifd_channel",
        "qemu-9.0-zero-pages",
        channel(WriterVersion::Qemu9_0, &|e, w| {
            let p = RamPacket {
                packet_num: 1,
                block: &blocks[2].idstr,
                normal: &normal[..1],
                zero: &[0, 0x3000],
                sync: false,
            };
            e.ram_packet(&p, w).unwrap();
            e.sync_packet(2, w);
        }),
    ));
    out.push((
        "multifd_channel",
        "qemu-10.0",
        channel(WriterVersion::Qemu9_2, &|e, w| {
            e.sync_packet(0, w);
            let p = RamPacket {
                packet_num: 1,
                block: &blocks[5].idstr,
                normal: &[],
                zero: &[0],
                sync: false,
            };
            e.ram_packet(&p, w).unwrap();
            e.sync_packet(3, w);
        }),
    ));
    let mut device = channel(WriterVersion::Qemu9_2, &|_, _| {});
    let mut d = vec![0u8; 276];
    d[..12].copy_from_slice(b"\x11\x22\x33\x44\0\0\0\x01\0\0\0\x40");
    d[12..29].copy_from_slice(b"0000:00:05.0/vfio");
    d[272..276].copy_from_slice(&16u32.to_be_bytes());
    device.extend_from_slice(&d);
    device.extend_from_slice(&[0xee; 16]);
    out.push(("multifd_channel", "device-state", device));
    let mut zstd = channel(WriterVersion::Qemu9_2, &|e, w| {
        let p = RamPacket {
            packet_num: 0,
            block: &blocks[0].idstr,
            normal: &normal,
            zero: &[],
            sync: false,
        };
        e.ram_packet(&p, w).unwrap();
    });
    zstd[2 + INIT_PACKET_LEN + field::FLAGS + 3] = 0x04;
    out.push(("multifd_channel", "zstd", zstd));
    for (i, len) in [8usize, 64, 256, 1024].iter().enumerate() {
        let bytes: Vec<u8> = (0..*len)
            .map(|k| (k as u32).wrapping_mul(2654435761).to_be_bytes()[1])
            .collect();
        out.push((
            "multifd_roundtrip",
            ["prng-0", "prng-1", "prng-2", "prng-3"][i],
            bytes,
        ));
    }
    out
}
