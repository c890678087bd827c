//! What [`Source::poll_transmit`](crate::Source::poll_transmit) hands back, and where the
//! source stands.

use core::fmt;
use std::time::Instant;

/// What the caller does next, as [`Source::poll_transmit`](crate::Source::poll_transmit)
/// says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// `bytes` bytes (possibly 0) were written into the caller's sink: send them, report
    /// them with [`Source::handle_sent`](crate::Source::handle_sent), and poll again.
    Send {
        /// How many.
        bytes: usize,
    },
    /// The bandwidth limit allows nothing more before this instant: poll again then.
    Wait(Instant),
    /// A dirty sync is due: hand in the pages written since the previous sync
    /// ([`Source::handle_dirty`](crate::Source::handle_dirty) or
    /// [`handle_dirty_bitmap`](crate::Source::handle_dirty_bitmap) per block, and the
    /// balloon if it changed), then call [`Source::handle_sync`](crate::Source::handle_sync);
    /// or call [`Source::sync_dirty`](crate::Source::sync_dirty) with a
    /// [`DirtyPageSource`](crate::DirtyPageSource). The first sync only clears the log: the
    /// bulk pass sends every page anyway.
    SyncDirty,
    /// The migration converged (or reached `max_iterations`): stop the guest's vCPUs, then
    /// call [`Source::handle_stopped`](crate::Source::handle_stopped) with its device state.
    StopGuest,
    /// The stream is complete (EOF, and the VMDESCRIPTION if any, were written).
    Done,
    /// multifd ([`SourceOptions::multifd`](crate::SourceOptions::multifd)): work for the
    /// channels is ready and nothing was written into the sink. Take every job with
    /// [`Source::poll_packet`](crate::Source::poll_packet) until it gives `None`, hand each
    /// to its channel's [`ChannelSender`](crate::ChannelSender) (in order, per channel),
    /// and poll again. The source hands out these first, before any further stream bytes.
    Packets,
    /// multifd: a sync point was passed (SPEC.md §14.5) and jobs are still out: report
    /// each as it is written ([`Source::handle_packet_sent`](crate::Source::handle_packet_sent))
    /// and poll again once none is; nothing was written into the sink. QEMU's source waits
    /// for its channels at every sync point the same way (`multifd_send_sync_main()`).
    WaitChannels,
}

/// The phase of a migration, as QEMU's `query-migrate` would name the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Header, configuration, `ram` START with MEM_SIZE, the first dirty sync.
    Setup,
    /// The bulk pass: every page once.
    Bulk,
    /// A dirty iteration: the pages written since the previous sync (PART sections).
    Iterate,
    /// The guest is (to be) stopped: the last pages (END), device state, digest, EOF.
    StopAndCopy,
    /// The stream is complete.
    Completed,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Setup => "setup",
            Phase::Bulk => "bulk stage",
            Phase::Iterate => "dirty iteration",
            Phase::StopAndCopy => "stop-and-copy",
            Phase::Completed => "completed",
        })
    }
}

/// Where the source stands, for a progress display
/// ([`Source::progress`](crate::Source::progress)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceProgress {
    /// The phase.
    pub phase: Phase,
    /// The dirty iteration (0: the bulk pass).
    pub iteration: u32,
    /// Pages done in the current round.
    pub round_done: u64,
    /// Pages in the current round.
    pub round_total: u64,
    /// Bytes the caller reported sent.
    pub sent: u64,
}
