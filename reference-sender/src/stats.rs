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
    /// Of those, pages the guest memory knew to be zero (never backed), sent without being
    /// read.
    #[serde(rename = "pages_known_zero")]
    pub pages_known_zero: u64,
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
    /// CPU time of the whole sending process (every thread, the guest's vCPU too) over
    /// `total_time_ms`, from `/proc/self/stat` (10 ms resolution); 0 where unreadable.
    pub cpu_ms: f64,
    /// Setup (header to START sent).
    pub setup_time_ms: f64,
    /// Guest paused to EOF flushed on the source.
    pub downtime_ms: f64,
    /// Part of the downtime spent hashing RAM for the digest.
    pub digest_ms: f64,
    /// sha256-chunked (SPEC.md §13.7): chunks hashed after the guest stopped.
    pub digest_chunks_at_stop: u64,
    /// sha256-chunked: chunk digests the digest worker thread computed that were kept.
    pub digest_chunks_offloaded: u64,
    /// sha256-chunked: chunk digests of the worker dropped (dirtied after it was handed out).
    pub digest_chunks_dropped: u64,
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

/// CPU time this process consumed so far, every thread (ended ones too: the vCPU thread
/// ends at each pause), from `utime` + `stime` of `/proc/self/stat`, in clock ticks of the
/// kernel's fixed `USER_HZ` (100 per second on Linux): 10 ms resolution. `None` where procfs
/// is unreadable.
pub(crate) fn process_cpu_time() -> Option<std::time::Duration> {
    /// Linux's `USER_HZ`, the unit of `/proc/*/stat` times (fixed by the ABI).
    const USER_HZ: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: state is
    // field 3 of the line, utime 14 and stime 15.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis(
        (utime + stime) * 1000 / USER_HZ,
    ))
}
