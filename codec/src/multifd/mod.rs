//! QEMU's multifd channels (capability `multifd`, QEMU 7.2 to 11.1): the side connections
//! that carry RAM pages beside the main stream (SPEC.md §14).
//!
//! With `multifd-channels` N the source opens N connections to the destination besides the
//! main stream. Each is one byte stream of its own:
//!
//! | bytes | item |
//! |---|---|
//! | `11 22 33 44 00 00 00 01` uuid(16) id(1) reserved(39) | initial packet ([`InitPacket`], 64 bytes) |
//! | `11 22 33 44 00 00 00 01` flags … ramblock(256) offsets(8 × 128) | packet header ([`PacketHeader`], 1344 bytes on x86) |
//! | `normal_pages` × 4096 bytes | the normal pages' contents |
//! | … | more packets, until the source closes the channel |
//!
//! A packet's pages all belong to one RAM block, named by idstr; its offsets array lists
//! the normal pages' offsets, then (9.0+) the zero pages'. A packet with flag SYNC marks the
//! channel's sync point: every channel has one for each sync point of the main stream (a
//! `ram` EOS in QEMU 7.2, a MULTIFD_FLUSH record from 8.1 on), and a destination lets no
//! channel past its k-th SYNC before every channel and the main stream reached their k-th
//! (SPEC.md §14.5). The main stream itself holds no normal page then; in 7.2–8.2 (and with
//! `zero-page-detection=legacy`) its ZERO records carry the zero pages.
//!
//! - [`ChannelDecoder`]: sans-IO and incremental like the main stream's
//!   [`Decoder`](crate::Decoder) (SPEC.md §11): any split of the input gives the same
//!   [`ChannelEvent`]s, page contents borrow the input, errors carry the channel offset and
//!   id. One decoder reads every QEMU version from 7.2 to 11.1 with no option.
//! - [`BlockTable`]: the main stream's MEM_SIZE list by name, which turns a packet's
//!   (ramblock, offset) into a [`PageAddr`](crate::PageAddr).
//! - [`ChannelSet`]: the checks across channels (one uuid, ids in range and once).
//! - [`ChannelEncoder`]: writes a channel like a given QEMU generation ([`WriterVersion`]).
//!
//! Refused by name: compressed packets (`multifd-compression` zlib, zstd, qpl, uadk,
//! qatzip: `MultifdCompression`) and device-state packets (10.0+, VFIO:
//! `MultifdDeviceState`).
//!
//! Files: `init.rs` (the initial packet), `header.rs` (a packet's header and its checks),
//! `blocks.rs` (the block table), `channels.rs` (the checks across channels), `decoder.rs`
//! (the channel decoder), `encoder.rs` (the writer). Errors are the codec's one
//! [`ErrorKind`](crate::ErrorKind), with [`Error::channel`](crate::Error::channel) set.
//!
//! ```
//! use ramstream_codec::multifd::{decode_channel, BlockTable, ChannelEncoder, ChannelEvent, ChannelOptions, InitPacket, RamPacket, WriterVersion};
//! use ramstream_codec::RamBlock;
//!
//! let blocks = BlockTable::new(&[RamBlock { idstr: "pc.ram".into(), used_length: 1 << 20, page_size: None, mr_addr: None }]);
//! let enc = ChannelEncoder::new(WriterVersion::Qemu9_0, 12).unwrap();
//! let page = vec![1u8; 4096];
//! let mut wire = Vec::new();
//! enc.init(&InitPacket { uuid: [0; 16], id: 0 }, &mut wire);
//! enc.ram_packet(&RamPacket { packet_num: 0, block: "pc.ram", normal: &[(0, &page[..])], zero: &[0x1000], sync: false }, &mut wire).unwrap();
//! let events = decode_channel(&wire, ChannelOptions::default(), &blocks).unwrap();
//! let zeros = events.iter().filter(|(_, e)| matches!(e, ChannelEvent::Zero { .. })).count();
//! let pages = events.iter().filter(|(_, e)| matches!(e, ChannelEvent::Page { .. })).count();
//! assert_eq!((zeros, pages), (1, 1));
//! ```

mod blocks;
mod channels;
mod decoder;
mod encoder;
mod header;
mod init;

pub use self::blocks::BlockTable;
pub use self::channels::ChannelSet;
pub use self::decoder::{
    decode_channel, ChannelDecoder, ChannelEvent, ChannelOptions, ChannelStatus,
};
pub use self::encoder::{ChannelEncoder, RamPacket, WriterVersion};
pub use self::header::PacketHeader;
pub use self::init::InitPacket;
pub use ramstream_spec::multifd::{Compression, PacketFlags};
