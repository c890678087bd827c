//! The checks across a migration's channels: one uuid, ids in range, each id once
//! (SPEC.md §14.6).

use ramstream_spec::multifd::{INIT_ID_OFFSET, INIT_UUID_OFFSET};

use super::init::InitPacket;
use crate::error::{Error, ErrorKind};

/// The channels of one migration seen so far: a destination admits each channel's
/// [`InitPacket`] here, and refuses a channel of another migration (another uuid), an id
/// out of range, or an id already taken (SPEC.md §14.6).
///
/// ```
/// use ramstream_codec::multifd::{ChannelSet, InitPacket};
/// use ramstream_codec::ErrorKind;
/// let mut set = ChannelSet::new(Some(2), None);
/// set.admit(&InitPacket { uuid: [7; 16], id: 1 }).unwrap();
/// assert!(!set.is_complete());
/// let e = set.admit(&InitPacket { uuid: [8; 16], id: 0 }).unwrap_err();
/// assert!(matches!(e.kind, ErrorKind::MultifdUuid { .. }));
/// set.admit(&InitPacket { uuid: [7; 16], id: 0 }).unwrap();
/// assert!(set.is_complete());
/// assert!(matches!(set.admit(&InitPacket { uuid: [7; 16], id: 0 }).unwrap_err().kind, ErrorKind::MultifdDuplicateChannel { id: 0 }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSet {
    channels: Option<u8>,
    uuid: Option<[u8; 16]>,
    seen: [u64; 4],
    count: usize,
}

impl ChannelSet {
    /// The set of a migration with `channels` channels (QEMU's `multifd-channels`, if
    /// known) and uuid `uuid` (if known, e.g. from the main stream's `configuration/uuid`;
    /// otherwise the first channel admitted fixes it).
    pub fn new(channels: Option<u8>, uuid: Option<[u8; 16]>) -> Self {
        ChannelSet {
            channels,
            uuid,
            seen: [0; 4],
            count: 0,
        }
    }

    /// Admits a channel. Errors are at the initial packet's field (channel offsets): the
    /// uuid (`MultifdUuid`), the id (`MultifdChannelId`, `MultifdDuplicateChannel`). A
    /// refused channel is not counted.
    pub fn admit(&mut self, init: &InitPacket) -> Result<(), Error> {
        let id = init.id;
        if let Some(expected) = self.uuid {
            if init.uuid != expected {
                return Err(Error::new(
                    INIT_UUID_OFFSET as u64,
                    ErrorKind::MultifdUuid {
                        found: init.uuid,
                        expected,
                    },
                )
                .in_channel(id));
            }
        }
        if let Some(channels) = self.channels {
            if id >= channels {
                return Err(Error::new(
                    INIT_ID_OFFSET as u64,
                    ErrorKind::MultifdChannelId { id, channels },
                ));
            }
        }
        let (word, bit) = (usize::from(id / 64), 1u64 << (id % 64));
        if self.seen[word] & bit != 0 {
            return Err(Error::new(
                INIT_ID_OFFSET as u64,
                ErrorKind::MultifdDuplicateChannel { id },
            )
            .in_channel(id));
        }
        self.seen[word] |= bit;
        self.count += 1;
        self.uuid = Some(init.uuid);
        Ok(())
    }

    /// The migration's uuid: the one given, or the first admitted channel's.
    pub fn uuid(&self) -> Option<[u8; 16]> {
        self.uuid
    }

    /// How many channels were admitted.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no channel was admitted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether channel `id` was admitted.
    pub fn contains(&self, id: u8) -> bool {
        self.seen[usize::from(id / 64)] & (1u64 << (id % 64)) != 0
    }

    /// Whether every channel of a migration with a known number of channels was admitted.
    pub fn is_complete(&self) -> bool {
        self.channels.is_some_and(|n| usize::from(n) == self.count)
    }
}
