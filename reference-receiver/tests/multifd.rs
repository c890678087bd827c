//! `receive_multifd`: the reference sender's stream of a small scripted guest, split the way
//! QEMU 7.2 sends a multifd migration (pages in packets on N channels, ZERO records, balloon
//! records and device state on the main stream, a SYNC packet on every channel at every
//! `ram` EOS; the balloon map off), is received with one thread per channel into a shared
//! destination; the RAM
//! digest (checked before resuming) proves the memory exact, and it equals a single-stream
//! receive of the same migration. A channel of another migration, a channel cut short and
//! a channel missing its last SYNC packet are refused, naming the channel.

use std::sync::Mutex;

use ramstream_codec::multifd::{ChannelEncoder, InitPacket, RamPacket, WriterVersion};
use ramstream_codec::{decode_all, DecoderOptions, Encoder, Event, PageAddr};
use ramstream_migrate::multifd::MultifdError;
use ramstream_migrate::{ErrorKind, GuestRam, RamBlockLayout};
use ramstream_reference_receiver::dest::{ram_blocks, whole_pages};
use ramstream_reference_receiver::{
    receive, receive_multifd, DestError, ReceiveOptions, RecvErrorKind,
};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::Dialect;
use ramstream_test_support::real_stream::real_stream;
use ramstream_test_support::FakeDestination;

/// Guest memory that channel threads may write at once: one lock per block.
#[derive(Debug)]
struct SharedRam {
    blocks: Vec<RamBlockLayout>,
    mem: Vec<Mutex<Vec<u8>>>,
}

impl SharedRam {
    fn new(layout: &MemoryLayout) -> Self {
        let blocks = ram_blocks(layout);
        SharedRam {
            mem: blocks
                .iter()
                .map(|b| Mutex::new(vec![0; b.used_length() as usize]))
                .collect(),
            blocks,
        }
    }

    fn span(&self, addr: PageAddr, len: usize) -> Result<std::ops::Range<usize>, DestError> {
        whole_pages(addr, len)?;
        let start = addr.offset as usize;
        match self.blocks.get(addr.block) {
            Some(b) if (start + len) as u64 <= b.used_length() => Ok(start..start + len),
            _ => Err(DestError::NotWholePages {
                block: addr.block,
                offset: addr.offset,
                len,
            }),
        }
    }

    fn contents(&self) -> Vec<Vec<u8>> {
        self.mem.iter().map(|m| m.lock().unwrap().clone()).collect()
    }
}

impl GuestRam for SharedRam {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), DestError> {
        let r = self.span(addr, buf.len())?;
        buf.copy_from_slice(&self.mem[addr.block].lock().unwrap()[r]);
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        let r = self.span(addr, data.len())?;
        self.mem[addr.block].lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }
}

/// The reference sender's stream split like a QEMU 7.2 multifd migration over `n`
/// channels of `uuid`: the main stream, and each channel's bytes. The balloon map is off
/// with multifd: its records and capability are left out (the ballooned pages were never
/// sent; the VM state still lists them).
fn split(n: usize, uuid: [u8; 16]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let stream = &real_stream().stream;
    let events = decode_all(
        stream,
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1),
    )
    .unwrap();
    let ch = ChannelEncoder::new(WriterVersion::Qemu7_2, 12).unwrap();
    let mut chans: Vec<Vec<u8>> = (0..n)
        .map(|id| {
            let mut out = Vec::new();
            ch.init(&InitPacket { uuid, id: id as u8 }, &mut out);
            out
        })
        .collect();
    let mut enc = Encoder::new(12);
    let mut main = Vec::new();
    let mut names: Vec<String> = Vec::new();
    // The packet being filled: its channel, block and pages.
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pending_block = 0usize;
    let (mut next, mut num) = (0usize, 0u64);
    let flush = |pending: &mut Vec<(u64, Vec<u8>)>,
                 block: usize,
                 names: &[String],
                 chans: &mut Vec<Vec<u8>>,
                 next: &mut usize,
                 num: &mut u64| {
        if pending.is_empty() {
            return;
        }
        let normal: Vec<(u64, &[u8])> = pending.iter().map(|(o, d)| (*o, &d[..])).collect();
        ch.ram_packet(
            &RamPacket {
                packet_num: *num,
                block: &names[block],
                normal: &normal,
                zero: &[],
                sync: false,
            },
            &mut chans[*next],
        )
        .unwrap();
        *num += 1;
        *next = (*next + 1) % chans.len();
        pending.clear();
    };
    for (_, ev) in &events {
        match ev {
            Event::MemSize(ms) => {
                names = ms.blocks.iter().map(|b| b.idstr.clone()).collect();
                enc.event(ev, &mut main).unwrap();
            }
            Event::Page(p) => {
                if p.addr.block != pending_block || pending.len() == 128 {
                    flush(
                        &mut pending,
                        pending_block,
                        &names,
                        &mut chans,
                        &mut next,
                        &mut num,
                    );
                }
                pending_block = p.addr.block;
                pending.push((p.addr.offset, p.data.to_vec()));
            }
            Event::Configuration(c) => {
                let mut c = c.clone();
                c.capabilities = c
                    .capabilities
                    .map(|caps| {
                        caps.into_iter()
                            .filter(|&n| !n.contains("balloon"))
                            .collect::<Vec<_>>()
                    })
                    .filter(|caps| !caps.is_empty());
                enc.event(&Event::Configuration(c), &mut main).unwrap();
            }
            Event::Balloon(_) => {}
            Event::Zero(z) => enc.zero(z.addr, z.fill, &mut main).unwrap(),
            Event::Xbzrle(x) => enc.xbzrle(x.addr, x.delta, &mut main).unwrap(),
            Event::Eos(_) => {
                // A sync point: every channel's pages, then a SYNC packet on each.
                flush(
                    &mut pending,
                    pending_block,
                    &names,
                    &mut chans,
                    &mut next,
                    &mut num,
                );
                for c in chans.iter_mut() {
                    ch.sync_packet(num, c);
                    num += 1;
                }
                enc.event(ev, &mut main).unwrap();
            }
            other => enc.event(other, &mut main).unwrap(),
        }
    }
    (main, chans)
}

fn opts() -> ReceiveOptions {
    ReceiveOptions::default()
}

fn make(layout: &MemoryLayout) -> Result<FakeDestination<SharedRam>, DestError> {
    Ok(FakeDestination::with_ram(layout, SharedRam::new(layout)))
}

const UUID: [u8; 16] = [0x5a; 16];

#[test]
fn a_multifd_migration_loads_exactly_and_resumes() {
    // The single-stream receive of the same migration, for comparison.
    let (single, _) = receive(&real_stream().stream[..], make, &opts()).unwrap();
    for n in [1, 2, 4] {
        let (main, chans) = split(n, UUID);
        let readers: Vec<&[u8]> = chans.iter().map(|c| &c[..]).collect();
        let (dest, report) = receive_multifd(&main[..], readers, make, &opts())
            .unwrap_or_else(|e| panic!("{n} channels: {e}"));
        assert!(report.digest_verified && report.guest_resumed, "{report:?}");
        assert_eq!(
            dest.ram().contents(),
            single.ram().contents(),
            "{n} channels"
        );
        assert_eq!(report.channels.len(), n);
        let pages: u64 = report.channels.iter().map(|c| c.pages).sum();
        assert!(pages > 0 && report.pages == 0, "{report:?}");
        for c in &report.channels {
            assert_eq!(c.syncs, report.sync_points, "{report:?}");
            assert_eq!(c.bytes, chans[usize::from(c.id)].len() as u64);
        }
        eprintln!(
            "{n} channel(s): {} sync points, channel pages {:?}, ZERO on the main stream written {} skipped {}",
            report.sync_points,
            report.channels.iter().map(|c| c.pages).collect::<Vec<_>>(),
            report.zero_written,
            report.zero_skipped
        );
    }
}

/// The receive's error for a migration whose channels `edit` changed.
fn refused(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> RecvErrorKind {
    let (main, mut chans) = split(2, UUID);
    edit(&mut chans);
    let readers: Vec<&[u8]> = chans.iter().map(|c| &c[..]).collect();
    let e = receive_multifd(&main[..], readers, make, &opts()).unwrap_err();
    assert!(!e.resumed);
    e.kind
}

fn load_error(k: RecvErrorKind) -> ramstream_migrate::Error {
    match k {
        RecvErrorKind::Load(e) => e,
        other => panic!("{other}"),
    }
}

#[test]
fn a_channel_of_another_migration_is_refused_naming_it() {
    // The reference machine's stream carries no uuid: the first channel admitted fixes the
    // migration's, so the refusal names whichever channel came second.
    let e = load_error(refused(|c| c[1][8..24].copy_from_slice(&[0x77; 16])));
    assert!(e.channel().is_some() && e.offset == 8, "{e}");
    assert!(
        matches!(
            e.stream_kind(),
            Some(ramstream_codec::ErrorKind::MultifdUuid { .. })
        ),
        "{e}"
    );
}

#[test]
fn a_channel_cut_short_or_missing_its_last_sync_is_refused() {
    let e = load_error(refused(|c| {
        let len = c[0].len();
        c[0].truncate(len - 1344 - 2000);
    }));
    assert_eq!(e.channel(), Some(0), "{e}");
    // Without its last SYNC packet (1,344 bytes on x86).
    let e = load_error(refused(|c| {
        let len = c[1].len();
        c[1].truncate(len - 1344);
    }));
    assert!(
        matches!(
            e.inner_kind(),
            ErrorKind::Multifd(MultifdError::ChannelEnded { channel: 1, .. })
        ),
        "{e}"
    );
}
