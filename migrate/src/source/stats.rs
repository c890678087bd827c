//! A source's figures, named as QEMU's `query-migrate` names them.

use std::time::Duration;

/// What a [`Source`](crate::Source) did: the `ram` object of `query-migrate`, the balloon
/// figures ramstream adds, and one [`RoundStats`] per round. Times are differences of the
/// instants the caller passed in.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SendStats {
    /// Bytes written into the caller's sinks by
    /// [`Source::poll_transmit`](crate::Source::poll_transmit): the main stream (the multifd
    /// channels' are [`SendStats::multifd_bytes`]).
    pub produced: u64,
    /// Bytes the caller reported sent ([`Source::handle_sent`](crate::Source::handle_sent),
    /// and on multifd channels [`Source::handle_packet_sent`](crate::Source::handle_packet_sent)).
    pub sent: u64,
    /// Dirty bytes left at the last sync (0 when completed).
    pub remaining: u64,
    /// Guest RAM in bytes.
    pub total: u64,
    /// Zero pages sent as ZERO records.
    pub duplicate: u64,
    /// Pages sent whole (PAGE records).
    pub normal: u64,
    /// Bytes of PAGE payloads.
    pub normal_bytes: u64,
    /// Pages sent as XBZRLE records.
    pub xbzrle_pages: u64,
    /// Pages dirtied per second, measured over the last round.
    pub dirty_pages_rate: u64,
    /// Throughput of the last round, megabits per second.
    pub mbps: f64,
    /// Dirty syncs (the setup sync included).
    pub dirty_sync_count: u64,
    /// Ballooned pages skipped without being read (bulk pass and dirty syncs).
    pub ballooned_skipped: u64,
    /// Balloon records (SPEC.md §9.4) written: full maps of blocks whose runs changed.
    pub balloon_records: u64,
    /// Pages read from guest memory and looked at (the known-zero ones included).
    pub pages_visited: u64,
    /// Of those, pages the memory knew to be zero and that were not read
    /// ([`GuestRam::known_zero_pages`](crate::GuestRam::known_zero_pages)).
    pub pages_known_zero: u64,
    /// Dirty iterations after the bulk pass.
    pub iterations: u32,
    /// Whether the expected downtime met the limit (false: stopped at `max_iterations`).
    pub converged: bool,
    /// The expected downtime at the decision to stop.
    pub expected_downtime: Duration,
    /// From the first poll to the end of the setup sync.
    pub setup_time: Duration,
    /// From [`Source::handle_stopped`](crate::Source::handle_stopped) to the last poll that
    /// wrote bytes.
    pub downtime: Duration,
    /// The bulk pass (iteration 0) and each dirty iteration.
    pub rounds: Vec<RoundStats>,
    /// multifd: bytes reported sent on the channels, initial packets included (QEMU's
    /// `multifd-bytes`); their pages are counted in `normal` and `duplicate` too.
    pub multifd_bytes: u64,
    /// multifd: sync points passed (one SYNC packet on every channel and one MULTIFD_FLUSH
    /// record each, SPEC.md §14.5).
    pub multifd_syncs: u64,
    /// multifd: each channel's figures, by channel id.
    pub channels: Vec<crate::ChannelStats>,
    /// sha256-chunked digest (SPEC.md §13.7): chunks hashed after the guest stopped (inside
    /// the downtime): those dirtied since they were last hashed.
    pub digest_chunks_at_stop: u64,
    /// sha256-chunked: chunk digests a driver hashed out of line and handed back that were
    /// kept ([`Source::handle_digest_done`](crate::Source::handle_digest_done)).
    pub digest_chunks_offloaded: u64,
    /// sha256-chunked: chunk digests handed back but dropped, their chunk dirtied (or its
    /// balloon changed) after the work was taken.
    pub digest_chunks_dropped: u64,
}

/// One round: the bulk pass (iteration 0) or a dirty iteration.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RoundStats {
    /// 0 for the bulk pass.
    pub iteration: u32,
    /// Pages the round had to look at (after skipping ballooned ones).
    pub pages: u64,
    /// Bytes reported sent during the round.
    pub bytes: u64,
    /// From the sync that started the round to the sync that ended it.
    pub duration: Duration,
    /// Dirty pages found at the sync that ended the round.
    pub dirty_after: u64,
    /// The expected downtime computed at that sync.
    pub expected_downtime: Duration,
}
