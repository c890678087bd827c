//! The sans-IO decoder of one multifd channel (SPEC.md §14, §11's contract).

use ramstream_spec::multifd::{
    ram_packet_len, DEVICE_STATE_PACKET_LEN, INIT_PACKET_LEN, PACKET_HEADER_LEN, PACKET_SIZE,
};
use ramstream_spec::ram::TARGET_PAGE_BITS_X86;

use super::blocks::BlockTable;
use super::header::{self, Geometry, Kind, PacketHeader, PacketPages, Parsed};
use super::init::{self, InitPacket};
use crate::addr::PageAddr;
use crate::error::{Error, ErrorKind};
use crate::options::Limits;

/// The settings of a [`ChannelDecoder`]: what a QEMU destination knows locally.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelOptions {
    /// Target page bits (12 on x86; the main stream's `target-page-bits`).
    pub page_bits: u32,
    /// The payload of one packet, `MULTIFD_PACKET_SIZE` (512 KiB in every QEMU version).
    /// With the page size it fixes the pages of one packet and so the header's length.
    pub packet_size: u32,
    /// The number of channels (QEMU's `multifd-channels`), if known: a channel id at or
    /// above it is refused.
    pub channels: Option<u8>,
    /// The migration's uuid, if known (the main stream's `configuration/uuid`, or the first
    /// channel's): a channel with another is refused.
    pub uuid: Option<[u8; 16]>,
    /// Input limits (`max_multifd_packet_pages`).
    pub limits: Limits,
}

impl ChannelOptions {
    /// These options with [`page_bits`](Self::page_bits) set to `v`.
    #[must_use]
    pub fn with_page_bits(mut self, v: u32) -> Self {
        self.page_bits = v;
        self
    }

    /// These options with [`packet_size`](Self::packet_size) set to `v`.
    #[must_use]
    pub fn with_packet_size(mut self, v: u32) -> Self {
        self.packet_size = v;
        self
    }

    /// These options with [`channels`](Self::channels) set to `v`.
    #[must_use]
    pub fn with_channels(mut self, v: Option<u8>) -> Self {
        self.channels = v;
        self
    }

    /// These options with [`uuid`](Self::uuid) set to `v`.
    #[must_use]
    pub fn with_uuid(mut self, v: Option<[u8; 16]>) -> Self {
        self.uuid = v;
        self
    }

    /// These options with [`limits`](Self::limits) set to `v`.
    #[must_use]
    pub fn with_limits(mut self, v: Limits) -> Self {
        self.limits = v;
        self
    }
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            page_bits: TARGET_PAGE_BITS_X86,
            packet_size: PACKET_SIZE,
            channels: None,
            uuid: None,
            limits: Limits::default(),
        }
    }
}

impl ChannelOptions {
    /// The target page size in bytes.
    pub fn page_size(&self) -> usize {
        1usize << self.page_bits
    }
}

/// One item of a multifd channel (SPEC.md §14).
///
/// The events of one RAM packet come in this order: [`Packet`](ChannelEvent::Packet) (the
/// header), a [`Zero`](ChannelEvent::Zero) per zero page, a [`Page`](ChannelEvent::Page)
/// per normal page, [`Sync`](ChannelEvent::Sync) if the packet has the SYNC flag, then
/// [`PacketEnd`](ChannelEvent::PacketEnd). Zero pages come first because QEMU's destination
/// applies them first (`multifd_recv_zero_page_process()` before the normal pages' read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelEvent<'a> {
    /// The initial packet (64 bytes).
    Init(InitPacket),
    /// A RAM packet's header, offsets array included.
    Packet(PacketHeader<'a>),
    /// A normal page: its contents follow, one target page, borrowed from the input.
    Page {
        /// Where it lands.
        addr: PageAddr,
        /// Its contents.
        data: &'a [u8],
    },
    /// A zero page (9.0+ with `zero-page-detection=multifd`): no bytes on the wire; the
    /// destination makes the page all zeros.
    Zero {
        /// Where it lands.
        addr: PageAddr,
    },
    /// The packet had the SYNC flag: the channel's next sync point, after its pages. The
    /// destination lets this channel go on only once every channel and the main stream
    /// reached the same sync point (SPEC.md §14.5). No bytes.
    Sync,
    /// The end of a packet. No bytes.
    PacketEnd,
}

/// What [`ChannelDecoder::decode`] found at the front of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelStatus<'a> {
    /// One event; drop `consumed` bytes (0 for [`ChannelEvent::Zero`],
    /// [`ChannelEvent::Sync`] and [`ChannelEvent::PacketEnd`]) before the next call.
    Event {
        /// The event, borrowing from the input.
        event: ChannelEvent<'a>,
        /// How many input bytes it used.
        consumed: usize,
    },
    /// The input holds only part of the next item: call again with the same bytes and at
    /// least `needed` more. Nothing was consumed and no state changed.
    NeedMore {
        /// At least this many more bytes are needed.
        needed: usize,
    },
    /// A RAM packet with pages is complete in the input, but no [`BlockTable`] was given to
    /// resolve its block: call [`ChannelDecoder::set_blocks`] with the main stream's MEM_SIZE
    /// list, then call again with the same bytes. Nothing was consumed.
    NeedBlocks,
    /// The channel ended at a packet boundary after [`ChannelDecoder::finish`].
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    PacketStart,
    Zeros { next: usize },
    Pages { next: usize },
    Sync,
    End,
    Done,
}

/// A sans-IO, incremental decoder of one multifd channel (SPEC.md §14).
///
/// Feed it the channel's unconsumed bytes, exactly as for the main stream's
/// [`Decoder`](crate::Decoder) (SPEC.md §11): each call returns one event or asks for more,
/// any split of the input gives the same events, page contents borrow the input, and the
/// only allocation is the offsets of one packet (at most
/// [`Limits::max_multifd_packet_pages`]). Errors carry the offset in the channel and, once
/// the initial packet was read, the channel id. Resolving a packet's pages needs the main
/// stream's block list ([`ChannelDecoder::set_blocks`]).
///
/// ```
/// use ramstream_codec::multifd::{
///     BlockTable, ChannelDecoder, ChannelEncoder, ChannelEvent, ChannelOptions, ChannelStatus,
///     InitPacket, RamPacket, WriterVersion,
/// };
/// use ramstream_codec::{PageAddr, RamBlock};
///
/// // A channel as QEMU 10.0 writes it: initial packet, one page of pc.ram, a SYNC packet.
/// let blocks = [RamBlock { idstr: "pc.ram".into(), used_length: 1 << 20, page_size: None, mr_addr: None }];
/// let page = [0x5au8; 4096];
/// let enc = ChannelEncoder::new(WriterVersion::Qemu9_2, 12).unwrap();
/// let mut wire = Vec::new();
/// enc.init(&InitPacket { uuid: [0; 16], id: 1 }, &mut wire);
/// let normal = [(0x2000, &page[..])];
/// enc.ram_packet(&RamPacket { packet_num: 7, block: "pc.ram", normal: &normal, zero: &[], sync: false }, &mut wire).unwrap();
/// enc.sync_packet(8, &mut wire);
///
/// let mut dec = ChannelDecoder::new(ChannelOptions::default());
/// dec.set_blocks(BlockTable::new(&blocks));
/// dec.finish();
/// let (mut pos, mut events) = (0, Vec::new());
/// loop {
///     match dec.decode(&wire[pos..]).unwrap() {
///         ChannelStatus::Event { event, consumed } => {
///             pos += consumed;
///             events.push(event);
///         }
///         ChannelStatus::Done => break,
///         other => unreachable!("{other:?}"),
///     }
/// }
/// assert_eq!(events[0], ChannelEvent::Init(InitPacket { uuid: [0; 16], id: 1 }));
/// assert_eq!(events[2], ChannelEvent::Page { addr: PageAddr { block: 0, offset: 0x2000 }, data: &page[..] });
/// assert!(matches!(events[5], ChannelEvent::Sync));
/// assert_eq!(events.len(), 7);
/// ```
#[derive(Clone, Debug)]
pub struct ChannelDecoder {
    opts: ChannelOptions,
    state: State,
    offset: u64,
    input_complete: bool,
    poisoned: bool,
    id: Option<u8>,
    blocks: Option<BlockTable>,
    /// The current packet's block index, page offsets and SYNC flag.
    block: usize,
    pages: PacketPages,
    sync: bool,
}

impl ChannelDecoder {
    /// A decoder for one channel, expecting its initial packet first.
    pub fn new(opts: ChannelOptions) -> Self {
        ChannelDecoder {
            opts,
            state: State::Init,
            offset: 0,
            input_complete: false,
            poisoned: false,
            id: None,
            blocks: None,
            block: 0,
            pages: PacketPages::default(),
            sync: false,
        }
    }

    /// The options in force.
    pub fn options(&self) -> &ChannelOptions {
        &self.opts
    }

    /// Gives the block table the packets' pages resolve against (the main stream's
    /// MEM_SIZE list). Takes effect from the next packet header.
    pub fn set_blocks(&mut self, blocks: BlockTable) {
        self.blocks = Some(blocks);
    }

    /// The block table, once given.
    pub fn blocks(&self) -> Option<&BlockTable> {
        self.blocks.as_ref()
    }

    /// The channel id, once the initial packet was read.
    pub fn channel(&self) -> Option<u8> {
        self.id
    }

    /// The channel offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Declares that the input has ended: a partial item is then `Truncated`, and the end of
    /// input at a packet boundary is [`ChannelStatus::Done`].
    pub fn finish(&mut self) {
        self.input_complete = true;
    }

    /// The pages of one packet, as configured.
    fn page_count(&self) -> Result<u32, Error> {
        let page_size = self.opts.page_size();
        let limit = self.opts.limits.max_multifd_packet_pages;
        let bad = || {
            Error::new(
                0,
                ErrorKind::MultifdPacketPages {
                    packet_size: self.opts.packet_size,
                    page_size,
                    limit,
                },
            )
        };
        if self.opts.page_bits >= 32 || !(self.opts.packet_size as usize).is_multiple_of(page_size)
        {
            return Err(bad());
        }
        let pages = self.opts.packet_size >> self.opts.page_bits;
        if pages == 0 || pages > limit {
            return Err(bad());
        }
        Ok(pages)
    }

    /// Decodes the next item from `input` (the unconsumed bytes of the channel).
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<ChannelStatus<'a>, Error> {
        if self.poisoned {
            return Err(self.contextual(Error::new(self.offset, ErrorKind::Poisoned)));
        }
        let r = self.step(input);
        if let Err(e) = r {
            self.poisoned = true;
            return Err(self.contextual(e));
        }
        r
    }

    fn contextual(&self, mut e: Error) -> Error {
        if e.channel.is_none() {
            e.channel = self.id;
        }
        e
    }

    /// `NeedMore`, or `Truncated` at `at` after `finish`.
    fn short<'a>(&self, have: usize, need: usize) -> Result<ChannelStatus<'a>, Error> {
        if self.input_complete {
            Err(Error::new(
                self.offset,
                ErrorKind::Truncated {
                    needed: need - have,
                },
            ))
        } else {
            Ok(ChannelStatus::NeedMore {
                needed: need - have,
            })
        }
    }

    fn emit<'a>(&mut self, event: ChannelEvent<'a>, consumed: usize) -> ChannelStatus<'a> {
        self.offset += consumed as u64;
        ChannelStatus::Event { event, consumed }
    }

    fn step<'a>(&mut self, input: &'a [u8]) -> Result<ChannelStatus<'a>, Error> {
        let page_size = self.opts.page_size();
        match self.state {
            State::Init => {
                self.page_count()?;
                if input.len() < INIT_PACKET_LEN {
                    return self.short(input.len(), INIT_PACKET_LEN);
                }
                let init = init::parse(input, self.opts.uuid.as_ref(), self.opts.channels)?;
                self.id = Some(init.id);
                self.state = State::PacketStart;
                Ok(self.emit(ChannelEvent::Init(init), INIT_PACKET_LEN))
            }
            State::PacketStart => {
                if input.is_empty() && self.input_complete {
                    self.state = State::Done;
                    return Ok(ChannelStatus::Done);
                }
                if input.len() < PACKET_HEADER_LEN {
                    return self.short(input.len(), PACKET_HEADER_LEN);
                }
                let flags = match header::check_header(input, self.offset)? {
                    Kind::DeviceState => {
                        if input.len() < DEVICE_STATE_PACKET_LEN {
                            return self.short(input.len(), DEVICE_STATE_PACKET_LEN);
                        }
                        return Err(header::device_state_error(input, self.offset));
                    }
                    Kind::Ram(flags) => flags,
                };
                let page_count = self.page_count()?;
                let len = ram_packet_len(page_count);
                if input.len() < len {
                    return self.short(input.len(), len);
                }
                let parsed = header::parse_ram(
                    &input[..len],
                    self.offset,
                    flags,
                    Geometry {
                        page_count,
                        page_size,
                    },
                    self.blocks.as_ref(),
                    &mut self.pages,
                )?;
                let header = match parsed {
                    Parsed::NeedBlocks => return Ok(ChannelStatus::NeedBlocks),
                    Parsed::Header(h) => h,
                };
                if header.pages() == 0 {
                    self.pages.zero.clear();
                    self.pages.normal.clear();
                }
                self.block = header.block.unwrap_or(0);
                self.sync = header.is_sync();
                self.state = State::Zeros { next: 0 };
                Ok(self.emit(ChannelEvent::Packet(header), len))
            }
            State::Zeros { next } => {
                if let Some(&offset) = self.pages.zero.get(next) {
                    self.state = State::Zeros { next: next + 1 };
                    let addr = PageAddr {
                        block: self.block,
                        offset,
                    };
                    return Ok(self.emit(ChannelEvent::Zero { addr }, 0));
                }
                self.state = State::Pages { next: 0 };
                self.step(input)
            }
            State::Pages { next } => {
                let Some(&offset) = self.pages.normal.get(next) else {
                    self.state = State::Sync;
                    return self.step(input);
                };
                if input.len() < page_size {
                    return self.short(input.len(), page_size);
                }
                self.state = State::Pages { next: next + 1 };
                let addr = PageAddr {
                    block: self.block,
                    offset,
                };
                Ok(self.emit(
                    ChannelEvent::Page {
                        addr,
                        data: &input[..page_size],
                    },
                    page_size,
                ))
            }
            State::Sync => {
                self.state = State::End;
                if self.sync {
                    return Ok(self.emit(ChannelEvent::Sync, 0));
                }
                self.step(input)
            }
            State::End => {
                self.state = State::PacketStart;
                Ok(self.emit(ChannelEvent::PacketEnd, 0))
            }
            State::Done => {
                if input.is_empty() {
                    Ok(ChannelStatus::Done)
                } else {
                    Err(Error::new(
                        self.offset,
                        ErrorKind::TrailingBytes { count: input.len() },
                    ))
                }
            }
        }
    }
}

/// Decodes a whole channel held in memory into `(channel offset, event)` pairs, its pages
/// resolved against `blocks` (the main stream's MEM_SIZE list). A convenience for tools
/// and tests; a receiver feeds a [`ChannelDecoder`] as bytes arrive.
pub fn decode_channel<'a>(
    input: &'a [u8],
    opts: ChannelOptions,
    blocks: &BlockTable,
) -> Result<Vec<(u64, ChannelEvent<'a>)>, Error> {
    let mut dec = ChannelDecoder::new(opts);
    dec.set_blocks(blocks.clone());
    dec.finish();
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let at = dec.offset();
        match dec.decode(&input[pos..])? {
            ChannelStatus::Event { event, consumed } => {
                pos += consumed;
                out.push((at, event));
            }
            ChannelStatus::Done => return Ok(out),
            ChannelStatus::NeedMore { .. } | ChannelStatus::NeedBlocks => {
                unreachable!("a finished decoder with a block table neither waits nor asks")
            }
        }
    }
}
