//! How to receive and what a finished receive reports.

use std::time::Duration;

use ramstream_spec::limits;
use serde::{Deserialize, Serialize};

use crate::dest::Verification;

/// How to receive.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// Size of the read buffer; also the largest device section accepted.
    pub buffer_size: usize,
    /// How long to wait for the resumed guest's heartbeat and self-check.
    pub verify_timeout: Duration,
    /// The largest guest RAM this destination is configured to accept: a MEM_SIZE total above
    /// it is refused by the decoder (`ErrorKind::RamTotalTooLarge`) before any memory is
    /// mapped (SPEC.md §10). Defaults to `ramstream_spec::limits::MAX_RAM_TOTAL`.
    pub max_ram_total: u64,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            buffer_size: 1 << 20,
            verify_timeout: Duration::from_secs(20),
            max_ram_total: limits::MAX_RAM_TOTAL,
        }
    }
}

/// What a finished receive reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReceiveReport {
    /// `completed`.
    pub status: String,
    /// Bytes read.
    pub bytes_received: u64,
    /// PAGE records written.
    pub pages: u64,
    /// ZERO records that had to zero a page written earlier.
    pub zero_written: u64,
    /// ZERO records for pages already zero (left untouched).
    pub zero_skipped: u64,
    /// XBZRLE records applied.
    pub xbzrle: u64,
    /// `ram` section headers (START, PART, END).
    pub sections: u64,
    /// Balloon records (SPEC.md §9.4) applied.
    pub balloon_records: u64,
    /// Ballooned pages restored from the VM state.
    pub ballooned_pages: u64,
    /// Whether every block's digest matched.
    pub digest_verified: bool,
    /// Time spent hashing memory.
    pub digest_ms: f64,
    /// From the end of the stream to the guest resumed (restore, digest check, resume).
    pub resume_ms: f64,
    /// Time the resumed guest took to prove it runs (heartbeat and self-check).
    pub verify_ms: f64,
    /// Whether the guest was resumed.
    pub guest_resumed: bool,
    /// The resumed guest's proof of life.
    pub verification: Verification,
    /// Largest number of bytes buffered at once.
    pub max_buffered: usize,
    /// multifd sync points of the main stream (SPEC.md §14.5); 0 without multifd.
    #[serde(default)]
    pub sync_points: u64,
    /// The multifd channels, by id ([`receive_multifd`](crate::receive_multifd)); empty
    /// without multifd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelReport>,
}

/// What one multifd channel carried (SPEC.md §14).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelReport {
    /// The channel id of its initial packet.
    pub id: u8,
    /// Bytes received on it.
    pub bytes: u64,
    /// Packets, SYNC packets included.
    pub packets: u64,
    /// Normal pages written.
    pub pages: u64,
    /// Zero pages.
    pub zero_pages: u64,
    /// SYNC packets.
    pub syncs: u64,
}

impl ChannelReport {
    pub(crate) fn of(id: u8, s: &ramstream_migrate::multifd::ChannelLoadStats) -> Self {
        ChannelReport {
            id,
            bytes: s.bytes,
            packets: s.packets,
            pages: s.pages,
            zero_pages: s.zero_pages,
            syncs: s.syncs,
        }
    }
}
