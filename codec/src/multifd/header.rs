//! A packet's header: the 12 bytes every packet starts with, and the rest of a RAM packet's
//! header with its offsets array (SPEC.md §14.2–§14.4).

use ramstream_spec::multifd::{
    field, Compression, PacketFlags, DEVICE_STATE_PACKET_LEN, MAGIC, PACKET_HEADER_LEN,
    RAMBLOCK_LEN, VERSION,
};

use super::blocks::BlockTable;
use crate::error::{Error, ErrorKind};

/// The header of a RAM packet, as a [`ChannelEvent::Packet`](super::ChannelEvent::Packet)
/// gives it (SPEC.md §14.3).
///
/// For a packet without pages, `ramblock` is `None` whatever the field holds: QEMU 7.2 to
/// 9.2 leave the previous packet's name there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader<'a> {
    /// The flags: SYNC, or none. (A packet with other flags is refused.)
    pub flags: PacketFlags,
    /// `pages_alloc`: the writer's offsets-array size (the pages of one packet; 0 in the SYNC
    /// packets of 10.0+).
    pub pages_alloc: u32,
    /// `normal_pages`: pages whose contents follow the header.
    pub normal_pages: u32,
    /// `zero_pages` (9.0+): pages the destination fills with zeros; no bytes follow for them.
    pub zero_pages: u32,
    /// `next_packet_size`: bytes of page data after the header (`normal_pages` pages). In a
    /// packet without pages QEMU 7.2 to 8.2 leave a stale value; it is not checked there.
    pub next_packet_size: u32,
    /// `packet_num`: QEMU's counter over all channels (informational: 7.2 repeats values).
    pub packet_num: u64,
    /// The RAM block the packet's pages belong to, when it has pages (borrowed).
    pub ramblock: Option<&'a str>,
    /// That block's index in the [`BlockTable`], when it has pages.
    pub block: Option<usize>,
}

impl PacketHeader<'_> {
    /// Whether the packet carries the SYNC flag: the channel's next sync point follows its
    /// pages (SPEC.md §14.5).
    pub fn is_sync(&self) -> bool {
        self.flags.contains(PacketFlags::SYNC)
    }

    /// Normal and zero pages together.
    pub fn pages(&self) -> u32 {
        self.normal_pages + self.zero_pages
    }
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

/// What the first 12 bytes of a packet say it is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A RAM packet (its flags: SYNC or none).
    Ram(PacketFlags),
    /// A device-state packet (10.0+): refused once [`DEVICE_STATE_PACKET_LEN`] bytes are
    /// there to name it.
    DeviceState,
}

/// Checks the 12-byte header at channel offset `at` (`b` holds at least 12 bytes): magic,
/// version (QEMU `multifd_recv_unfill_packet_header()`), then the flags: a device-state
/// packet, compression, bits nobody assigns.
pub(crate) fn check_header(b: &[u8], at: u64) -> Result<Kind, Error> {
    debug_assert!(b.len() >= PACKET_HEADER_LEN);
    let magic = be32(b, 0);
    if magic != MAGIC {
        return Err(Error::new(at, ErrorKind::MultifdMagic { found: magic }));
    }
    let version = be32(b, 4);
    if version != VERSION {
        return Err(Error::new(
            at + 4,
            ErrorKind::MultifdVersion { found: version },
        ));
    }
    let flags = PacketFlags(be32(b, field::FLAGS));
    let flags_at = at + field::FLAGS as u64;
    if flags.contains(PacketFlags::DEVICE_STATE) {
        return Ok(Kind::DeviceState);
    }
    let method = flags.compression();
    if method != Compression::NONE {
        return Err(Error::new(
            flags_at,
            ErrorKind::MultifdCompression { method },
        ));
    }
    if flags.unknown() != PacketFlags::NONE {
        return Err(Error::new(
            flags_at,
            ErrorKind::MultifdUnknownFlags { flags },
        ));
    }
    Ok(Kind::Ram(flags))
}

/// The refusal of a device-state packet at `at`, named from its fixed part (`b` holds at
/// least [`DEVICE_STATE_PACKET_LEN`] bytes).
pub(crate) fn device_state_error(b: &[u8], at: u64) -> Error {
    debug_assert!(b.len() >= DEVICE_STATE_PACKET_LEN);
    let name = &b[PACKET_HEADER_LEN..PACKET_HEADER_LEN + 256];
    let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
    Error::new(
        at,
        ErrorKind::MultifdDeviceState {
            idstr: String::from_utf8_lossy(name).into_owned(),
            instance_id: be32(b, PACKET_HEADER_LEN + 256),
            len: be32(b, PACKET_HEADER_LEN + 260),
        },
    )
}

/// The page offsets of the packet being decoded, buffered (at most the pages of one
/// packet, so at most `Limits::max_multifd_packet_pages`).
#[derive(Clone, Debug, Default)]
pub(crate) struct PacketPages {
    /// The zero pages' offsets.
    pub zero: Vec<u64>,
    /// The normal pages' offsets.
    pub normal: Vec<u64>,
}

/// The shape of every RAM packet: the offsets array's entries and the page size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Entries of the offsets array (`MULTIFD_PACKET_SIZE / page_size`).
    pub page_count: u32,
    /// The target page size.
    pub page_size: usize,
}

/// How a RAM packet's header parsed.
pub(crate) enum Parsed<'a> {
    /// Complete and valid; the offsets were pushed (zero pages' first, then normal pages').
    Header(PacketHeader<'a>),
    /// The packet has pages but no block table was given to resolve them.
    NeedBlocks,
}

/// Parses and checks a RAM packet's header at channel offset `at` (`b` holds the whole
/// header, offsets array included) of packets shaped `geometry`. On success `pages` holds
/// the packet's page offsets. Every check that needs no
/// block table comes first, so the first error does not depend on when the table is given.
pub(crate) fn parse_ram<'a>(
    b: &'a [u8],
    at: u64,
    flags: PacketFlags,
    geometry: Geometry,
    blocks: Option<&BlockTable>,
    pages_out: &mut PacketPages,
) -> Result<Parsed<'a>, Error> {
    let Geometry {
        page_count,
        page_size,
    } = geometry;
    let err = |field: usize, kind| Error::new(at + field as u64, kind);
    let pages_alloc = be32(b, field::PAGES_ALLOC);
    if pages_alloc > page_count {
        return Err(err(
            field::PAGES_ALLOC,
            ErrorKind::MultifdPagesAlloc {
                pages_alloc,
                limit: page_count,
            },
        ));
    }
    let normal_pages = be32(b, field::NORMAL_PAGES);
    if normal_pages > pages_alloc {
        return Err(err(
            field::NORMAL_PAGES,
            ErrorKind::MultifdNormalPages {
                normal_pages,
                pages_alloc,
            },
        ));
    }
    let zero_pages = be32(b, field::ZERO_PAGES);
    let room = pages_alloc - normal_pages;
    if zero_pages > room {
        return Err(err(
            field::ZERO_PAGES,
            ErrorKind::MultifdZeroPages { zero_pages, room },
        ));
    }
    let next_packet_size = be32(b, field::NEXT_PACKET_SIZE);
    let packet_num = be64(b, field::PACKET_NUM);
    let mut header = PacketHeader {
        flags,
        pages_alloc,
        normal_pages,
        zero_pages,
        next_packet_size,
        packet_num,
        ramblock: None,
        block: None,
    };
    let pages = (normal_pages + zero_pages) as usize;
    if pages == 0 {
        return Ok(Parsed::Header(header));
    }
    let expected = u64::from(normal_pages) * page_size as u64;
    if u64::from(next_packet_size) != expected {
        return Err(err(
            field::NEXT_PACKET_SIZE,
            ErrorKind::MultifdNextPacketSize {
                found: next_packet_size,
                expected,
            },
        ));
    }
    let name = &b[field::RAMBLOCK..field::RAMBLOCK + RAMBLOCK_LEN];
    let len = name
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| err(field::RAMBLOCK, ErrorKind::MultifdRamblockUnterminated))?;
    let ramblock = core::str::from_utf8(&name[..len]).map_err(|_| {
        err(
            field::RAMBLOCK,
            ErrorKind::NotUtf8 {
                what: "multifd packet ramblock",
            },
        )
    })?;
    let offset_at = |i: usize| field::OFFSETS + 8 * i;
    for i in 0..pages {
        let offset = be64(b, offset_at(i));
        if !offset.is_multiple_of(page_size as u64) {
            return Err(err(
                offset_at(i),
                ErrorKind::UnalignedOffset { offset, page_size },
            )
            .in_block(ramblock));
        }
    }
    let Some(blocks) = blocks else {
        return Ok(Parsed::NeedBlocks);
    };
    let block = blocks.find(ramblock).ok_or_else(|| {
        err(
            field::RAMBLOCK,
            ErrorKind::UnknownBlock {
                idstr: ramblock.into(),
            },
        )
        .in_block(ramblock)
    })?;
    pages_out.zero.clear();
    pages_out.normal.clear();
    for i in 0..pages {
        let offset = be64(b, offset_at(i));
        blocks
            .check(block, offset)
            .map_err(|kind| err(offset_at(i), kind).in_block(ramblock))?;
        if i < normal_pages as usize {
            pages_out.normal.push(offset);
        } else {
            pages_out.zero.push(offset);
        }
    }
    header.ramblock = Some(ramblock);
    header.block = Some(block);
    Ok(Parsed::Header(header))
}
