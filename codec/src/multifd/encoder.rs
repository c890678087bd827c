//! Writing a multifd channel: initial packet, RAM packets, SYNC packets, as each QEMU
//! generation writes them (SPEC.md §14.1–§14.3, §14.7).

use ramstream_spec::multifd::{
    field, page_count, ram_packet_len, PacketFlags, MAGIC, RAMBLOCK_LEN, VERSION,
};
use ramstream_spec::ram::{TARGET_PAGE_BITS_MAX, TARGET_PAGE_BITS_MIN};

use super::init::InitPacket;
use crate::error::{Error, ErrorKind};
use crate::sink::Sink;

/// Which QEMU generation a [`ChannelEncoder`] writes like (SPEC.md §14.7). Every one is read
/// by the same [`ChannelDecoder`](super::ChannelDecoder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WriterVersion {
    /// QEMU 7.2 to 8.2: no zero pages in packets (zero pages go on the main stream as ZERO
    /// records); the SYNC flag may ride on a packet with pages; every packet has
    /// `pages_alloc` = the pages of one packet.
    Qemu7_2,
    /// QEMU 9.0 and 9.1: zero pages in packets (`zero-page-detection=multifd`, the default
    /// for machine types ≥ 9.0); SYNC packets carry no pages.
    Qemu9_0,
    /// QEMU 9.2 to 11.1: as 9.0, and the packet is zeroed before it is filled, so a SYNC
    /// packet has `pages_alloc` 0 and no stale field: this encoder's output is then the
    /// bytes QEMU writes (checked against the 10.0 and 11.1 recordings).
    Qemu9_2,
}

impl WriterVersion {
    /// Whether this generation sends zero pages in packets.
    pub fn has_zero_pages(self) -> bool {
        self != WriterVersion::Qemu7_2
    }
}

/// A RAM packet to write: its pages, all of one block (SPEC.md §14.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamPacket<'p, 'a> {
    /// `packet_num`: QEMU numbers packets over all channels, in the order it fills them.
    pub packet_num: u64,
    /// The block's idstr.
    pub block: &'p str,
    /// The normal pages: (offset in the block, one target page of contents). The contents
    /// are written with [`Sink::put_payload`], so a [`Vectored`](crate::Vectored) sink
    /// references them.
    pub normal: &'p [(u64, &'a [u8])],
    /// The zero pages' offsets ([`WriterVersion::Qemu9_0`] and later only).
    pub zero: &'p [u64],
    /// The SYNC flag on a packet with pages ([`WriterVersion::Qemu7_2`] only, which does so
    /// when a sync request meets a pending job).
    pub sync: bool,
}

/// Writes one multifd channel (SPEC.md §14).
///
/// Canonical: the same packets give the same bytes; reserved fields, unused offsets and the
/// rest of the `ramblock` field are zero. For [`WriterVersion::Qemu9_2`] that is exactly
/// what QEMU 9.2 to 11.1 write; QEMU 7.2 to 9.1 leave stale values in the fields of a
/// packet that do not apply to it (a SYNC packet's `ramblock`, for one), which this encoder
/// writes as zeros.
///
/// ```
/// use ramstream_codec::multifd::{ChannelEncoder, RamPacket, WriterVersion};
/// let enc = ChannelEncoder::new(WriterVersion::Qemu9_0, 12).unwrap();
/// let mut out = Vec::new();
/// let zero = [0x3000];
/// enc.ram_packet(&RamPacket { packet_num: 0, block: "pc.ram", normal: &[], zero: &zero, sync: false }, &mut out).unwrap();
/// assert_eq!(out.len(), 1344); // header and offsets only: a zero page has no bytes
/// assert_eq!(&out[32..36], &[0, 0, 0, 1]); // zero_pages
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelEncoder {
    version: WriterVersion,
    page_bits: u32,
    page_count: u32,
}

fn enc_err(reason: impl Into<String>) -> Error {
    Error::new(
        0,
        ErrorKind::Encode {
            reason: reason.into(),
        },
    )
}

impl ChannelEncoder {
    /// An encoder writing like `version` for a target with `page_bits` page bits (12 on
    /// x86; 10 to 16). Packets hold `MULTIFD_PACKET_SIZE` (512 KiB) of pages, as in every
    /// QEMU version.
    pub fn new(version: WriterVersion, page_bits: u32) -> Result<Self, Error> {
        if !(TARGET_PAGE_BITS_MIN..=TARGET_PAGE_BITS_MAX).contains(&page_bits) {
            return Err(enc_err(format!(
                "target page bits {page_bits} outside {TARGET_PAGE_BITS_MIN}..={TARGET_PAGE_BITS_MAX}"
            )));
        }
        Ok(ChannelEncoder {
            version,
            page_bits,
            page_count: page_count(1 << page_bits),
        })
    }

    /// The generation written.
    pub fn version(&self) -> WriterVersion {
        self.version
    }

    /// The target page size.
    pub fn page_size(&self) -> usize {
        1 << self.page_bits
    }

    /// The pages of one packet (the offsets array's entries): 128 on x86.
    pub fn page_count(&self) -> u32 {
        self.page_count
    }

    /// The length of every packet's header, offsets included: 1344 bytes on x86.
    pub fn header_len(&self) -> usize {
        ram_packet_len(self.page_count)
    }

    /// Writes the initial packet (64 bytes), the first thing on a channel.
    pub fn init<'a>(&self, init: &InitPacket, out: &mut impl Sink<'a>) {
        init.encode(out);
    }

    fn header(&self, flags: PacketFlags, pages_alloc: u32, packet_num: u64) -> Vec<u8> {
        let mut h = vec![0u8; self.header_len()];
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&VERSION.to_be_bytes());
        put32(&mut h, field::FLAGS, flags.bits());
        put32(&mut h, field::PAGES_ALLOC, pages_alloc);
        h[field::PACKET_NUM..field::PACKET_NUM + 8].copy_from_slice(&packet_num.to_be_bytes());
        h
    }

    /// Writes a SYNC packet: no pages; the channel's next sync point (SPEC.md §14.5).
    pub fn sync_packet<'a>(&self, packet_num: u64, out: &mut impl Sink<'a>) {
        let pages_alloc = match self.version {
            WriterVersion::Qemu9_2 => 0,
            _ => self.page_count,
        };
        out.put(&self.header(PacketFlags::SYNC, pages_alloc, packet_num));
    }

    /// Writes a RAM packet: its header with the offsets of its normal then zero pages, then
    /// the normal pages' contents. Refused (`Encode`, nothing written): more pages than a
    /// packet holds, zero pages or a page-less packet for a generation that writes none,
    /// SYNC on a packet with pages for 9.0 and later, a page of the wrong size, an offset
    /// not page aligned, a block name over 255 bytes, empty, or holding a NUL.
    pub fn ram_packet<'a>(
        &self,
        p: &RamPacket<'_, 'a>,
        out: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        let pages = p.normal.len() + p.zero.len();
        if pages > self.page_count as usize {
            return Err(enc_err(format!(
                "{pages} pages in one multifd packet; it holds at most {}",
                self.page_count
            )));
        }
        if !self.version.has_zero_pages() && !p.zero.is_empty() {
            return Err(enc_err(
                "zero pages in a multifd packet: QEMU 7.2 to 8.2 send them on the main stream",
            ));
        }
        if self.version != WriterVersion::Qemu7_2 {
            if pages == 0 {
                return Err(enc_err(
                    "a multifd RAM packet without pages (QEMU 9.0+ sends SYNC packets apart)",
                ));
            }
            if p.sync {
                return Err(enc_err(
                    "SYNC on a multifd packet with pages (QEMU 9.0+ sends SYNC packets apart)",
                ));
            }
        }
        if pages > 0
            && (p.block.is_empty() || p.block.len() >= RAMBLOCK_LEN || p.block.contains('\0'))
        {
            return Err(enc_err(format!(
                "multifd ramblock name {:?} must be 1 to 255 bytes without NUL",
                p.block.chars().take(32).collect::<String>()
            )));
        }
        let page_size = self.page_size();
        for &(offset, data) in p.normal {
            if data.len() != page_size {
                return Err(enc_err(format!(
                    "page at {offset:#x} is {} bytes, not one page of {page_size}",
                    data.len()
                )));
            }
        }
        let offsets = p
            .normal
            .iter()
            .map(|&(o, _)| o)
            .chain(p.zero.iter().copied());
        if let Some(o) = offsets.clone().find(|o| o % page_size as u64 != 0) {
            return Err(enc_err(format!(
                "page offset {o:#x} not aligned to the page size {page_size}"
            )));
        }
        let flags = if p.sync {
            PacketFlags::SYNC
        } else {
            PacketFlags::NONE
        };
        let mut h = self.header(flags, self.page_count, p.packet_num);
        // Both counts are at most `page_count`, checked above.
        let normal = p.normal.len() as u32;
        put32(&mut h, field::NORMAL_PAGES, normal);
        put32(&mut h, field::ZERO_PAGES, p.zero.len() as u32);
        put32(&mut h, field::NEXT_PACKET_SIZE, normal << self.page_bits);
        if pages > 0 {
            h[field::RAMBLOCK..field::RAMBLOCK + p.block.len()].copy_from_slice(p.block.as_bytes());
        }
        for (i, o) in offsets.enumerate() {
            let at = field::OFFSETS + 8 * i;
            h[at..at + 8].copy_from_slice(&o.to_be_bytes());
        }
        out.put(&h);
        for &(_, data) in p.normal {
            out.put_payload(data);
        }
        Ok(())
    }
}

fn put32(h: &mut [u8], at: usize, v: u32) {
    h[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
