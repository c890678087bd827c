//! [`ChannelSender`]: one multifd channel's writer (SPEC.md §14), sans-IO like the source it
//! comes from, made to live on the thread that writes the channel.

use ramstream_codec::multifd::{ChannelEncoder, InitPacket, RamPacket};
use ramstream_codec::zero::is_zero_page;
use ramstream_codec::{PageAddr, Sink};
use ramstream_spec::multifd::INIT_PACKET_LEN;

use super::counted::Counted;
use super::packet::{JobKind, PacketJob, PacketSent};
use crate::error::{Error, ErrorKind};
use crate::GuestRam;

/// Writes one multifd channel of a [`Source`](crate::Source)
/// ([`Source::channel_senders`](crate::Source::channel_senders)): turns each
/// [`PacketJob`] of its channel into the packet's bytes, reading the pages through
/// [`GuestRam::read_page`] into a buffer of its own (one packet's worth: 512 KiB), testing
/// each for zero, and referencing the normal pages from that buffer in the caller's sink
/// (a [`Vectored`](ramstream_codec::Vectored) hands them to `write_vectored` as they are:
/// the one copy is `read_page`'s). It is `Send`: move it to the channel's thread; it reads
/// no clock and touches no socket.
///
/// ```
/// use std::num::NonZeroU8;
/// use ramstream_codec::multifd::{decode_channel, BlockTable, ChannelEvent};
/// use ramstream_codec::{PageAddr, RamBlock, Vectored};
/// use ramstream_migrate::{GuestRam, MultifdSendOptions, RamBlockLayout, Source, SourceOptions, Transmit};
///
/// /// Four pages, the second one holding data.
/// struct Four(Vec<RamBlockLayout>);
/// impl GuestRam for Four {
///     type Error = std::io::Error;
///     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
///     fn read_page(&self, a: PageAddr, buf: &mut [u8]) -> std::io::Result<()> {
///         buf.fill(u8::from(a.offset == 0x1000));
///         Ok(())
///     }
///     fn write_page(&self, _: PageAddr, _: &[u8]) -> std::io::Result<()> { Ok(()) }
/// }
///
/// let ram = Four(vec![RamBlockLayout::new("pc.ram", 4 * 4096)]);
/// let multifd = MultifdSendOptions::default()
///     .with_channels(NonZeroU8::MIN)
///     .with_uuid([1; 16]);
/// let opts = SourceOptions::default()
///     .with_multifd(Some(multifd))
///     .with_balloon(false);
/// let mut source = Source::new(ram.layout(), opts)?;
/// let mut sender = source.channel_senders().remove(0);
/// let (mut main, mut channel) = (Vec::new(), Vec::new());
/// let now = std::time::Instant::now();
/// source.poll_transmit(now, &ram, &mut main)?; // header ... START MEM_SIZE FLUSH EOS
/// assert_eq!(source.poll_transmit(now, &ram, &mut main)?, Transmit::Packets);
/// while let Some(job) = source.poll_packet() {
///     let mut v = Vectored::default();
///     let sent = sender.encode(&job, &ram, &mut v)?; // the initial packet, then a SYNC
///     channel.extend_from_slice(&v.to_vec());
///     drop(v);
///     source.handle_packet_sent(&sent)?;
/// }
/// let blocks = BlockTable::new(&[RamBlock { idstr: "pc.ram".into(), used_length: 4 * 4096, page_size: None, mr_addr: None }]);
/// let events = decode_channel(&channel, Default::default(), &blocks)?;
/// assert!(matches!(events[0].1, ChannelEvent::Init(i) if i.uuid == [1; 16] && i.id == 0));
/// assert!(events.iter().any(|(_, e)| *e == ChannelEvent::Sync));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct ChannelSender {
    id: u8,
    uuid: [u8; 16],
    enc: ChannelEncoder,
    /// The source's blocks' idstrs, by index.
    blocks: Vec<String>,
    /// One packet's pages, read by `read_page`; normal pages are referenced from here.
    pages: Vec<u8>,
    /// The zero pages' offsets of the packet being written.
    zero: Vec<u64>,
    /// Its normal pages: offset, and slot in `pages`.
    normal: Vec<(u64, usize)>,
    /// Bytes written on the channel so far (error offsets are channel offsets).
    offset: u64,
}

impl core::fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelSender")
            .field("id", &self.id)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl ChannelSender {
    pub(super) fn new(id: u8, uuid: [u8; 16], enc: ChannelEncoder, blocks: Vec<String>) -> Self {
        ChannelSender {
            id,
            uuid,
            pages: vec![0; enc.page_count() as usize * enc.page_size()],
            zero: Vec::with_capacity(enc.page_count() as usize),
            normal: Vec::with_capacity(enc.page_count() as usize),
            enc,
            blocks,
            offset: 0,
        }
    }

    /// The channel id (its initial packet's).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Bytes written on the channel so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Writes `job`'s packet into `out`: the initial packet, a SYNC packet, or a RAM packet
    /// whose pages it reads through `ram` now (zero pages go in the packet's zero list,
    /// SPEC.md §14.3). Jobs must come in the order
    /// [`Source::poll_packet`](crate::Source::poll_packet) handed them out for this channel.
    ///
    /// Errors (the channel's offset, [`ErrorKind::Channel`]): a job of another channel, a
    /// failed `read_page` (the block named), an encoder refusal.
    pub fn encode<'s, R, S>(
        &'s mut self,
        job: &PacketJob,
        ram: &R,
        out: &mut S,
    ) -> Result<PacketSent, Error>
    where
        R: GuestRam + ?Sized,
        S: Sink<'s>,
    {
        let ChannelSender {
            id,
            uuid,
            enc,
            blocks,
            pages,
            zero,
            normal,
            offset,
        } = self;
        let at = *offset;
        let fail = |kind: ErrorKind| Error::new(at, kind).in_channel(*id);
        if job.channel != *id {
            return Err(fail(ErrorKind::Stream(
                ramstream_codec::ErrorKind::Encode {
                    reason: format!("a job of channel {} given to channel {id}", job.channel),
                },
            )));
        }
        let mut out = Counted::new(out);
        let mut sent = PacketSent {
            channel: *id,
            sync: job.kind == JobKind::Sync,
            init: job.kind == JobKind::Init,
            ..PacketSent::default()
        };
        match job.kind {
            JobKind::Init => {
                enc.init(
                    &InitPacket {
                        uuid: *uuid,
                        id: *id,
                    },
                    &mut out,
                );
                debug_assert_eq!(out.n, INIT_PACKET_LEN);
            }
            JobKind::Sync => enc.sync_packet(job.packet_num, &mut out),
            JobKind::Pages => {
                let Some(idstr) = blocks.get(job.block) else {
                    return Err(fail(ErrorKind::NoSuchBlock { block: job.block }));
                };
                let ps = enc.page_size();
                zero.clear();
                normal.clear();
                // Normal pages are read into consecutive slots; a zero one's slot is reused.
                for &o in &job.offsets {
                    let addr = PageAddr {
                        block: job.block,
                        offset: o,
                    };
                    let slot = normal.len();
                    let buf = pages
                        .get_mut(slot * ps..(slot + 1) * ps)
                        .ok_or_else(|| fail(ErrorKind::NoSuchBlock { block: job.block }))?;
                    ram.read_page(addr, buf).map_err(|e| {
                        fail(ErrorKind::Guest {
                            addr,
                            source: Box::new(e),
                        })
                        .in_block(idstr.clone())
                    })?;
                    if is_zero_page(buf) {
                        zero.push(o);
                    } else {
                        normal.push((o, slot));
                    }
                }
                let pages: &'s [u8] = pages;
                // The one allocation of a packet: the encoder takes (offset, contents) pairs.
                let normal: Vec<(u64, &'s [u8])> = normal
                    .iter()
                    .map(|&(o, slot)| (o, &pages[slot * ps..(slot + 1) * ps]))
                    .collect();
                let packet = RamPacket {
                    packet_num: job.packet_num,
                    block: idstr,
                    normal: &normal,
                    zero: &zero[..],
                    sync: false,
                };
                enc.ram_packet(&packet, &mut out).map_err(|e| {
                    let mut e = Error::from(e);
                    e.offset = at;
                    e.in_channel(*id)
                })?;
                // At most a packet's pages: checked by the encoder.
                sent.normal = normal.len() as u32;
                sent.zero = zero.len() as u32;
            }
        }
        sent.bytes = out.n;
        *offset += out.n as u64;
        Ok(sent)
    }
}
