//! What a multifd destination refuses beyond a channel's own bytes: the sync rules across
//! the main stream and the channels (SPEC.md §14.5, §14.8), and misuse of the engines.

use core::fmt;

/// A refusal of the sync rules across a migration's main stream and channels (SPEC.md
/// §14.5, §14.8), carried by [`ErrorKind::Multifd`](crate::ErrorKind::Multifd).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultifdError {
    /// A channel ended (its connection closed) before the SYNC packet that pairs with a
    /// sync point the main stream reached: its pages for that point may be missing.
    ChannelEnded {
        /// The channel id.
        channel: u8,
        /// The SYNC packets it sent.
        syncs: u64,
        /// The sync point the main stream reached.
        needed: u64,
    },
    /// A channel sent pages after the SYNC packet that pairs with the main stream's last
    /// sync point: they would land after the device state was loaded.
    PagesAfterLastSync {
        /// The channel id.
        channel: u8,
        /// How many pages.
        pages: u64,
        /// The main stream's last sync point.
        last: u64,
    },
    /// The main stream was released past sync point `needed` before a channel reached its
    /// SYNC for it (or before a channel connected at all: `syncs` is `None`): the caller's
    /// barrier let it through too early.
    NotReached {
        /// The channel id.
        channel: u8,
        /// The SYNC packets it passed, if it was admitted.
        syncs: Option<u64>,
        /// The sync point.
        needed: u64,
    },
    /// A channel was fed past its k-th SYNC before the main stream released sync point k.
    NotReleased {
        /// The channel id.
        channel: u8,
        /// The sync point.
        sync: u64,
    },
    /// The main loader was fed past sync point `index` before
    /// [`Loader::release_sync`](crate::Loader::release_sync).
    SyncPending {
        /// The sync point.
        index: u64,
    },
    /// [`Loader::release_sync`](crate::Loader::release_sync) with no sync point pending.
    NoSyncPending,
    /// The main stream reached a sync point, but the number of channels was never given
    /// ([`Multifd::Detect`](crate::Multifd::Detect) needs
    /// [`Loader::set_multifd_channels`](crate::Loader::set_multifd_channels) first).
    ChannelsUnknown,
    /// The number of channels was fixed to `configured`; `given` differs.
    ChannelCount {
        /// The number in force.
        configured: u8,
        /// The number given.
        given: u8,
    },
    /// An admitted channel's id is not below the number of channels given later.
    ChannelOutOfRange {
        /// The channel id.
        id: u8,
        /// The number of channels.
        channels: u8,
    },
    /// The block table was bound twice.
    AlreadyBound,
    /// The migration was stopped ([`MultifdSession::abort`](crate::multifd::MultifdSession::abort)):
    /// the main stream or another channel failed first, with its own error.
    Aborted,
    /// The main stream waited at sync point `needed` longer than the caller allowed for
    /// these channels (id, SYNC packets passed if admitted) to reach it. A QEMU source writes
    /// a sync point only after every channel sent its SYNC packet, so they were late or
    /// never connected.
    SyncTimeout {
        /// The sync point.
        needed: u64,
        /// The channels it waited for: id, and SYNC packets passed (`None`: never admitted).
        waiting: Vec<(u8, Option<u64>)>,
    },
    /// Channels were asked of a loader without multifd
    /// ([`LoaderOptions::multifd`](crate::LoaderOptions::multifd) is
    /// [`Multifd::Off`](crate::Multifd::Off)).
    Off,
}

impl fmt::Display for MultifdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultifdError::ChannelEnded { channel, syncs, needed } => write!(
                f,
                "multifd channel {channel} closed after {syncs} SYNC packet(s), but the main stream reached sync point {needed}: the channel's pages before that point may be missing (SPEC.md §14.5)"
            ),
            MultifdError::PagesAfterLastSync { channel, pages, last } => write!(
                f,
                "multifd channel {channel} sent {pages} page(s) after its SYNC for the main stream's last sync point ({last}): they would land after the device state (SPEC.md §14.5)"
            ),
            MultifdError::NotReached { channel, syncs: Some(syncs), needed } => write!(
                f,
                "the main stream was released past sync point {needed} while multifd channel {channel} had passed {syncs} SYNC packet(s)"
            ),
            MultifdError::NotReached { channel, syncs: None, needed } => write!(
                f,
                "the main stream was released past sync point {needed} but multifd channel {channel} never sent its initial packet"
            ),
            MultifdError::NotReleased { channel, sync } => write!(
                f,
                "multifd channel {channel} was fed past its SYNC {sync} before the main stream released that sync point"
            ),
            MultifdError::SyncPending { index } => write!(
                f,
                "the main stream was fed past sync point {index} before Loader::release_sync"
            ),
            MultifdError::NoSyncPending => f.write_str("Loader::release_sync with no sync point pending"),
            MultifdError::ChannelsUnknown => f.write_str(
                "the main stream reached a multifd sync point, but the number of channels is not known",
            ),
            MultifdError::ChannelCount { configured, given } => write!(
                f,
                "the migration has {configured} multifd channel(s), not {given}"
            ),
            MultifdError::ChannelOutOfRange { id, channels } => write!(
                f,
                "multifd channel id {id} out of range: the migration has {channels} channel(s)"
            ),
            MultifdError::Aborted => f.write_str("stopped: the main stream or another multifd channel failed"),
            MultifdError::SyncTimeout { needed, waiting } => {
                write!(f, "the main stream waited at sync point {needed} for ")?;
                for (i, (id, syncs)) in waiting.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match syncs {
                        Some(n) => write!(f, "multifd channel {id} (at SYNC {n})")?,
                        None => write!(f, "multifd channel {id} (never connected)")?,
                    }
                }
                f.write_str(": a QEMU source writes a sync point only after every channel sent its SYNC packet")
            }
            MultifdError::AlreadyBound => f.write_str("the multifd block table was bound twice"),
            MultifdError::Off => f.write_str("multifd is off in the loader's options"),
        }
    }
}

impl std::error::Error for MultifdError {}
