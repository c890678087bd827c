//! QEMU's multifd channels: the side connections that carry RAM pages when the source has
//! capability `multifd` (SPEC.md §14).
//!
//! With `multifd-channels` N the source opens N connections besides the main stream. Each
//! starts with a 64-byte initial packet (`MultiFDInit_t`, [`INIT_PACKET_LEN`]), then carries
//! packets: a fixed header ([`RAM_PACKET_FIXED_LEN`] bytes) with an array of
//! [`page_count`] page offsets, followed by the contents of the packet's normal pages
//! (QEMU `migration/multifd.h`, `MultiFDPacket_t`; `migration/multifd.c`).
//!
//! | offset | size | field (RAM packet) |
//! |---|---|---|
//! | 0 | be32 | magic [`MAGIC`] |
//! | 4 | be32 | version [`VERSION`] |
//! | 8 | be32 | flags ([`PacketFlags`]) |
//! | 12 | be32 | `pages_alloc` |
//! | 16 | be32 | `normal_pages` |
//! | 20 | be32 | `next_packet_size` |
//! | 24 | be64 | `packet_num` |
//! | 32 | be32 | `zero_pages` (9.0+; 0 before) |
//! | 36 | 28 | reserved (0) |
//! | 64 | 256 | `ramblock`: the RAM block's idstr, NUL-terminated |
//! | 320 | be64 × [`page_count`] | page offsets: normal pages, then zero pages |
//!
//! ```
//! use ramstream_spec::multifd::{page_count, ram_packet_len, PacketFlags, Compression};
//! assert_eq!(page_count(4096), 128);
//! assert_eq!(ram_packet_len(128), 1344);
//! let flags = PacketFlags(0x05);
//! assert_eq!(format!("{flags:?}"), "SYNC|ZSTD");
//! assert_eq!(flags.compression(), Compression::ZSTD);
//! assert_eq!(Compression::ZSTD.qemu_name(), Some("zstd"));
//! ```

use core::fmt;
use core::ops::BitOr;

/// The magic every initial packet and every packet starts with (`MULTIFD_MAGIC`), be32
/// `11 22 33 44`. A destination tells a channel from the main stream (`QEVM`) by these four
/// bytes (SPEC.md §14.1, §14.6). The same value as
/// [`stream::MULTIFD_CHANNEL_MAGIC`](crate::stream::MULTIFD_CHANNEL_MAGIC), where it is
/// written.
pub const MAGIC: u32 = crate::stream::MULTIFD_CHANNEL_MAGIC;

/// The only version QEMU 7.2 to 11.1 write and accept, in the initial packet and in every
/// packet (`MULTIFD_VERSION`) (SPEC.md §14.1, §14.2).
pub const VERSION: u32 = 1;

/// Length of the initial packet (`MultiFDInit_t`, packed): magic, version, uuid, channel id,
/// 7 + 32 reserved bytes (SPEC.md §14.1).
pub const INIT_PACKET_LEN: usize = 64;

/// Offset of the 16-byte uuid in the initial packet (SPEC.md §14.1).
pub const INIT_UUID_OFFSET: usize = 8;

/// Offset of the one-byte channel id in the initial packet (SPEC.md §14.1).
pub const INIT_ID_OFFSET: usize = 24;

/// Length of the uuid in the initial packet: QEMU's `QemuUUID`, the source's `-uuid`
/// (all zero when none was given) (SPEC.md §14.1).
pub const UUID_LEN: usize = 16;

/// The most channels a migration can have: `multifd-channels` is 1 to 255, so channel ids
/// are 0 to 254 (SPEC.md §14.1).
pub const MAX_CHANNELS: u8 = 255;

/// Length of the header every packet starts with: magic, version, flags
/// (`MultiFDPacketHdr_t`, named so in 10.0; the same first 12 bytes before) (SPEC.md §14.2).
pub const PACKET_HEADER_LEN: usize = 12;

/// Length of a RAM packet's fixed part, before the offsets array: `sizeof(MultiFDPacket_t)`
/// (SPEC.md §14.3).
pub const RAM_PACKET_FIXED_LEN: usize = 320;

/// Offsets of the fields of a RAM packet (SPEC.md §14.3).
pub mod field {
    /// be32 flags.
    pub const FLAGS: usize = 8;
    /// be32 `pages_alloc`: the writer's offset-array size.
    pub const PAGES_ALLOC: usize = 12;
    /// be32 `normal_pages` (`pages_used` before 7.0).
    pub const NORMAL_PAGES: usize = 16;
    /// be32 `next_packet_size`: bytes of page data after the header.
    pub const NEXT_PACKET_SIZE: usize = 20;
    /// be64 `packet_num`.
    pub const PACKET_NUM: usize = 24;
    /// be32 `zero_pages` (9.0+; reserved and written 0 before).
    pub const ZERO_PAGES: usize = 32;
    /// The 28 reserved bytes (`unused32[1]`, `unused64[3]`).
    pub const RESERVED: usize = 36;
    /// `char ramblock[256]`.
    pub const RAMBLOCK: usize = 64;
    /// `be64 offset[]`.
    pub const OFFSETS: usize = 320;
}

/// Length of the `ramblock` field: a RAM block idstr (at most 255 bytes) and its NUL
/// (SPEC.md §14.3).
pub const RAMBLOCK_LEN: usize = 256;

/// Length of a device-state packet's fixed part (10.0+, `MultiFDPacketDeviceState_t`): the
/// 12-byte header, `char idstr[256]`, be32 `instance_id`, be32 `next_packet_size`
/// (SPEC.md §14.4).
pub const DEVICE_STATE_PACKET_LEN: usize = 276;

/// The payload of one RAM packet: `MULTIFD_PACKET_SIZE`, 512 KiB in every version. With
/// the target page size it fixes [`page_count`], and so the size of every RAM packet's
/// header (SPEC.md §14.3).
pub const PACKET_SIZE: u32 = 512 * 1024;

/// The most pages a packet can hold on any QEMU target: [`PACKET_SIZE`] over the smallest
/// target page (1 KiB, SPEC.md §6.2). The default of the codec's
/// `Limits::max_multifd_packet_pages` (SPEC.md §10.1, §14.3).
pub const MAX_PACKET_PAGES: u32 = PACKET_SIZE >> crate::ram::TARGET_PAGE_BITS_MIN;

/// Entries of the offsets array of every RAM packet for a target page of `page_size`
/// bytes: `MULTIFD_PACKET_SIZE / page_size` (QEMU `multifd_ram_page_count()`; 128 on x86)
/// (SPEC.md §14.3).
pub const fn page_count(page_size: u32) -> u32 {
    PACKET_SIZE / page_size
}

/// Length of a RAM packet's header, offsets included, for `page_count` offsets: what a
/// destination reads before the page data, whatever the packet holds (SPEC.md §14.3).
pub const fn ram_packet_len(page_count: u32) -> usize {
    RAM_PACKET_FIXED_LEN + 8 * page_count as usize
}

/// The suffix of a channel file in a multi-file recording: the channel with id `N` of the
/// recording whose main stream is in file `F` is in `F.multifd-N` (SPEC.md §14.9).
pub const RECORDING_CHANNEL_SUFFIX: &str = ".multifd-";

/// The flags word of a packet (`MULTIFD_FLAG_*`, `migration/multifd.h`) (SPEC.md §14.2).
///
/// Bit 0 is SYNC; bits 1 to 5 hold the compression method ([`Compression`], a value, not a
/// set); bit 6 (10.0+) marks a device-state packet. An open newtype: bits this version does
/// not name are kept and printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PacketFlags(pub u32);

impl PacketFlags {
    /// No flag: a RAM packet without compression.
    pub const NONE: PacketFlags = PacketFlags(0);
    /// `MULTIFD_FLAG_SYNC` (0x01): the channel's sync point (SPEC.md §14.5).
    pub const SYNC: PacketFlags = PacketFlags(0x01);
    /// `MULTIFD_FLAG_ZLIB` (0x02, 5.0+): compression method zlib.
    pub const ZLIB: PacketFlags = PacketFlags(0x02);
    /// `MULTIFD_FLAG_ZSTD` (0x04, 5.0+): compression method zstd.
    pub const ZSTD: PacketFlags = PacketFlags(0x04);
    /// `MULTIFD_FLAG_QPL` (0x08, 9.1+): compression method qpl (Intel IAA).
    pub const QPL: PacketFlags = PacketFlags(0x08);
    /// `MULTIFD_FLAG_UADK` (0x10, 9.1+): compression method uadk (HiSilicon).
    pub const UADK: PacketFlags = PacketFlags(0x10);
    /// `MULTIFD_FLAG_QATZIP` (0x20, 9.2+): compression method qatzip (Intel QAT).
    pub const QATZIP: PacketFlags = PacketFlags(0x20);
    /// `MULTIFD_FLAG_DEVICE_STATE` (0x40, 10.0+): a device-state packet
    /// (`MultiFDPacketDeviceState_t`), not a RAM packet (SPEC.md §14.4).
    pub const DEVICE_STATE: PacketFlags = PacketFlags(0x40);

    /// `MULTIFD_FLAG_COMPRESSION_MASK` of 9.2 and later (`0x1f << 1`), the union of every
    /// version's mask: 7.2–9.0 reserve bits 1–3 (`7 << 1`, [`COMPRESSION_MASK_7_2`]), 9.1
    /// bits 1–4 (`0xf << 1`, [`COMPRESSION_MASK_9_1`]) (SPEC.md §14.2).
    ///
    /// [`COMPRESSION_MASK_7_2`]: PacketFlags::COMPRESSION_MASK_7_2
    /// [`COMPRESSION_MASK_9_1`]: PacketFlags::COMPRESSION_MASK_9_1
    pub const COMPRESSION_MASK: PacketFlags = PacketFlags(0x1f << 1);
    /// The compression mask of 7.2 to 9.0 (`7 << 1`).
    pub const COMPRESSION_MASK_7_2: PacketFlags = PacketFlags(7 << 1);
    /// The compression mask of 9.1 (`0xf << 1`).
    pub const COMPRESSION_MASK_9_1: PacketFlags = PacketFlags(0xf << 1);
    /// Every bit some QEMU version up to 11.1 assigns.
    pub const KNOWN: PacketFlags =
        PacketFlags(Self::SYNC.0 | Self::COMPRESSION_MASK.0 | Self::DEVICE_STATE.0);

    const NAMED: &'static [(&'static str, u32)] = &[
        ("SYNC", 0x01),
        ("ZLIB", 0x02),
        ("ZSTD", 0x04),
        ("QPL", 0x08),
        ("UADK", 0x10),
        ("QATZIP", 0x20),
        ("DEVICE_STATE", 0x40),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: PacketFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub const fn intersects(self, other: PacketFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// The compression method: the bits under [`PacketFlags::COMPRESSION_MASK`].
    pub const fn compression(self) -> Compression {
        Compression(self.0 & Self::COMPRESSION_MASK.0)
    }

    /// The bits no QEMU version up to 11.1 assigns.
    pub const fn unknown(self) -> PacketFlags {
        PacketFlags(self.0 & !Self::KNOWN.0)
    }
}

impl BitOr for PacketFlags {
    type Output = PacketFlags;
    fn bitor(self, rhs: PacketFlags) -> PacketFlags {
        PacketFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for PacketFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::flags::fmt_flags(
            f,
            u64::from(self.0),
            Self::NAMED.iter().map(|&(n, v)| (n, u64::from(v))),
        )
    }
}

impl fmt::Display for PacketFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

wire_enum! {
    /// The compression method of a packet: its flags under
    /// [`PacketFlags::COMPRESSION_MASK`], a value (QEMU's `multifd-compression` parameter;
    /// `MULTIFD_FLAG_*`) (SPEC.md §14.2).
    pub struct Compression(u32) {
        /// `none`: the pages follow the header as they are.
        NONE = 0x00,
        /// `zlib` (5.0+).
        ZLIB = 0x02,
        /// `zstd` (5.0+).
        ZSTD = 0x04,
        /// `qpl` (9.1+).
        QPL = 0x08,
        /// `uadk` (9.1+).
        UADK = 0x10,
        /// `qatzip` (9.2+).
        QATZIP = 0x20,
    }
}

impl Compression {
    /// The name QEMU's `multifd-compression` parameter gives the method (QAPI
    /// `MultiFDCompression`), `None` for a value no version assigns.
    pub const fn qemu_name(self) -> Option<&'static str> {
        match self.0 {
            0x00 => Some("none"),
            0x02 => Some("zlib"),
            0x04 => Some("zstd"),
            0x08 => Some("qpl"),
            0x10 => Some("uadk"),
            0x20 => Some("qatzip"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(page_count(4096), 128);
        assert_eq!(page_count(1024), MAX_PACKET_PAGES);
        assert_eq!(page_count(65536), 8);
        assert_eq!(ram_packet_len(page_count(4096)), 1344);
        assert_eq!(
            field::OFFSETS,
            field::RAMBLOCK + RAMBLOCK_LEN,
            "offsets follow the ramblock field"
        );
        assert_eq!(RAM_PACKET_FIXED_LEN, field::OFFSETS);
        assert_eq!(DEVICE_STATE_PACKET_LEN, PACKET_HEADER_LEN + 256 + 4 + 4);
        assert_eq!(INIT_ID_OFFSET, INIT_UUID_OFFSET + UUID_LEN);
    }

    #[test]
    fn flags_print_and_split() {
        assert_eq!(format!("{:?}", PacketFlags::NONE), "NONE");
        assert_eq!(format!("{}", PacketFlags(0x41)), "SYNC|DEVICE_STATE");
        assert_eq!(format!("{:?}", PacketFlags(0x181)), "SYNC|0x180");
        assert_eq!(PacketFlags(0x181).unknown(), PacketFlags(0x180));
        assert_eq!(PacketFlags(0x23).compression(), Compression(0x22));
        assert_eq!(PacketFlags::KNOWN.bits(), 0x7f);
        assert_eq!(format!("{:?}", Compression(0x06)), "Compression(0x6)");
        assert_eq!(Compression(0x06).qemu_name(), None);
        for (c, n) in [
            (Compression::NONE, "none"),
            (Compression::ZLIB, "zlib"),
            (Compression::QPL, "qpl"),
            (Compression::UADK, "uadk"),
            (Compression::QATZIP, "qatzip"),
        ] {
            assert_eq!(c.qemu_name(), Some(n));
        }
    }
}
