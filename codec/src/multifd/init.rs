//! The initial packet a multifd channel starts with (`MultiFDInit_t`, SPEC.md §14.1).

use ramstream_spec::multifd::{
    INIT_ID_OFFSET, INIT_PACKET_LEN, INIT_UUID_OFFSET, MAGIC, UUID_LEN, VERSION,
};

use crate::error::{Error, ErrorKind};
use crate::sink::Sink;

/// A multifd channel's initial packet: which migration (`uuid`) and which channel (`id`)
/// (SPEC.md §14.1).
///
/// On the wire: be32 magic `0x11223344`, be32 version 1, the 16-byte uuid, the channel id,
/// 39 reserved bytes (written 0; not read by QEMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InitPacket {
    /// The source's uuid (QEMU `-uuid`; all zero when none was given). Every channel of one
    /// migration carries the same.
    pub uuid: [u8; 16],
    /// The channel id, `0 ..= multifd-channels - 1`.
    pub id: u8,
}

impl InitPacket {
    /// The 64 bytes QEMU writes for this packet (`multifd_send_initial_packet()`).
    ///
    /// ```
    /// use ramstream_codec::multifd::InitPacket;
    /// let b = InitPacket { uuid: [0; 16], id: 3 }.to_bytes();
    /// assert_eq!(&b[..8], b"\x11\x22\x33\x44\0\0\0\x01");
    /// assert_eq!(b[24], 3);
    /// ```
    pub fn to_bytes(&self) -> [u8; INIT_PACKET_LEN] {
        let mut b = [0u8; INIT_PACKET_LEN];
        b[..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&VERSION.to_be_bytes());
        b[INIT_UUID_OFFSET..INIT_UUID_OFFSET + UUID_LEN].copy_from_slice(&self.uuid);
        b[INIT_ID_OFFSET] = self.id;
        b
    }

    /// Writes the packet into `out`.
    pub fn encode<'a>(&self, out: &mut impl Sink<'a>) {
        out.put(&self.to_bytes());
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the initial packet from `b` (at least [`INIT_PACKET_LEN`] bytes), checking what
/// QEMU's `multifd_recv_initial_packet()` checks, in its order: magic, version, then (when
/// known) the migration's uuid and the number of channels. Offsets are channel offsets.
pub(crate) fn parse(
    b: &[u8],
    uuid: Option<&[u8; 16]>,
    channels: Option<u8>,
) -> Result<InitPacket, Error> {
    let magic = be32(b, 0);
    if magic != MAGIC {
        return Err(Error::new(0, ErrorKind::MultifdMagic { found: magic }));
    }
    let version = be32(b, 4);
    if version != VERSION {
        return Err(Error::new(4, ErrorKind::MultifdVersion { found: version }));
    }
    let mut found = [0u8; UUID_LEN];
    found.copy_from_slice(&b[INIT_UUID_OFFSET..INIT_UUID_OFFSET + UUID_LEN]);
    let id = b[INIT_ID_OFFSET];
    if let Some(expected) = uuid {
        if &found != expected {
            return Err(Error::new(
                INIT_UUID_OFFSET as u64,
                ErrorKind::MultifdUuid {
                    found,
                    expected: *expected,
                },
            )
            .in_channel(id));
        }
    }
    if let Some(channels) = channels {
        if id >= channels {
            return Err(Error::new(
                INIT_ID_OFFSET as u64,
                ErrorKind::MultifdChannelId { id, channels },
            ));
        }
    }
    Ok(InitPacket { uuid: found, id })
}
