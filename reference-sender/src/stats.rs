//! Migration figures named as QEMU's `query-migrate` names them.

use ramstream_codec::cache::XbzrleCacheStats;
use serde::Serialize;

/// The `ram` object of `query-migrate`, plus the balloon figures ramstream adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RamStats {
    /// Bytes written to the destination (the whole stream).
    pub transferred: u64,
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
    /// Pages dirtied per second, measured over the last iteration.
    pub dirty_pages_rate: u64,
    /// Throughput of the last iteration, megabits per second.
    pub mbps: f64,
    /// Dirty bitmap syncs.
    pub dirty_sync_count: u64,
    /// Ballooned pages skipped without being read (bulk stage and dirty iterations).
    #[serde(rename = "ballooned_skipped")]
    pub ballooned_skipped: u64,
    /// Balloon records (SPEC.md §9.4) written: full maps of blocks whose runs changed.
    #[serde(rename = "balloon_records")]
    pub balloon_records: u64,
    /// Pages read from guest memory and looked at.
    #[serde(rename = "pages_visited")]
    pub pages_visited: u64,
    /// Bytes sent on the multifd channels (included in `transferred`; 0 without multifd).
    pub multifd_bytes: u64,
}

/// One send round: the bulk stage (iteration 0) or a dirty iteration.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IterationReport {
    /// 0 for the bulk stage.
    pub iteration: u32,
    /// Pages the round had to look at (after skipping ballooned ones).
    pub pages: u64,
    /// Bytes written in the round.
    pub bytes: u64,
    /// How long the round took.
    pub duration_ms: f64,
    /// Dirty pages found at the sync that ended the round.
    pub dirty_after: u64,
    /// Expected downtime computed after the round.
    pub expected_downtime_ms: f64,
}

/// Everything a finished migration reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MigrationReport {
    /// `completed`.
    pub status: String,
    /// From connect to EOF flushed.
    pub total_time_ms: f64,
    /// Setup (header to START sent).
    pub setup_time_ms: f64,
    /// Guest paused to EOF flushed on the source.
    pub downtime_ms: f64,
    /// Part of the downtime spent hashing RAM for the digest.
    pub digest_ms: f64,
    /// The expected downtime at the decision to stop.
    pub expected_downtime_ms: f64,
    /// Dirty iterations after the bulk stage.
    pub iterations: u32,
    /// Whether the expected downtime met the limit (false: stopped by `max_iterations`).
    pub converged: bool,
    /// RAM figures.
    pub ram: RamStats,
    /// XBZRLE cache figures, when XBZRLE was on.
    #[serde(rename = "xbzrle-cache", skip_serializing_if = "Option::is_none")]
    pub xbzrle_cache: Option<XbzrleCacheStats>,
    /// Per-round figures.
    pub rounds: Vec<IterationReport>,
    /// The digests sent, `idstr → hex sha256`.
    pub digests: Vec<(String, String)>,
    /// The multifd channels' figures, with multifd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multifd: Option<MultifdReport>,
}

/// A multifd migration's channels (SPEC.md §14).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MultifdReport {
    /// The channels (QEMU `multifd-channels`).
    pub channels: u8,
    /// The uuid in every channel's initial packet, as `8-4-4-4-12` hex.
    pub uuid: String,
    /// Sync points: a SYNC packet on every channel and a MULTIFD_FLUSH record each.
    pub sync_points: u64,
    /// Each channel, by id.
    pub per_channel: Vec<ChannelReport>,
}

/// One multifd channel's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelReport {
    /// The channel id.
    pub id: u8,
    /// Packets sent: RAM packets and SYNC packets (not the initial packet).
    pub packets: u64,
    /// SYNC packets among them.
    pub syncs: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Normal pages (contents on the wire).
    pub normal: u64,
    /// Zero pages (only their offsets on the wire).
    pub zero: u64,
}
