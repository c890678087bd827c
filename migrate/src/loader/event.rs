//! What the loader hands back: events for the caller, progress, counters.

use ramstream_codec::{CommandRecord, Configuration};

use crate::device::DeviceBlob;
use crate::guest::RamBlockLayout;

/// What the loader hands back to its caller: everything that is not a page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoaderEvent<'a> {
    /// The configuration section: machine type, target page size, capabilities. The
    /// loader has checked the page size; the machine type is the caller's to check.
    Configuration(Configuration<'a>),
    /// The MEM_SIZE record of a loader made by [`Loader::without_ram`](crate::Loader::without_ram): create guest RAM
    /// with these blocks and pass it to [`Loader::provide_ram`](crate::Loader::provide_ram) before feeding more. The
    /// lengths come from the stream: their total is bounded by the decoder's
    /// `limits.max_ram_total`, which a VMM sets to what it is willing to allocate.
    RamNeeded(Vec<RamBlockLayout>),
    /// A device's state (a FULL section), borrowed from the input.
    Device(DeviceBlob<'a>),
    /// A command section (e.g. `POSTCOPY_ADVISE`, `SWITCHOVER_START`), for callers that act
    /// on them; a plain precopy destination ignores it.
    Command(CommandRecord<'a>),
    /// The main stream's k-th multifd sync point (counted from 1; SPEC.md §14.5): a
    /// MULTIFD_FLUSH record, or a `ram` EOS of a stream whose START section has none. The
    /// loader takes no more input until [`Loader::release_sync`](crate::Loader::release_sync),
    /// which refuses unless every channel passed its k-th SYNC packet: wait for them
    /// (`Loader::sync_with_channels` with the `io` feature), then release. Only with
    /// [`LoaderOptions::multifd`](crate::LoaderOptions::multifd) on.
    MultifdSync(u64),
    /// The EOF section: RAM and device state are complete, the guest may be resumed. A
    /// VMDESCRIPTION may still follow. With multifd, RAM is complete once every channel's
    /// loader also returned [`ChannelLoadEvent::Done`](crate::multifd::ChannelLoadEvent::Done).
    Eof,
    /// The VMDESCRIPTION trailer's JSON, borrowed from the input.
    VmDescription(&'a [u8]),
    /// The whole stream is loaded: after the VMDESCRIPTION, or after EOF once
    /// [`Loader::finish`](crate::Loader::finish) said the input ended.
    Done,
}

/// What one [`Loader::handle`](crate::Loader::handle) call did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress<'a> {
    /// Input bytes used; call again with the rest, followed by any new bytes.
    pub consumed: usize,
    /// An event for the caller, or `None` when the rest of the input holds only part of the
    /// next record: feed more (or call [`Loader::finish`](crate::Loader::finish) if the input ended).
    pub event: Option<LoaderEvent<'a>>,
}

/// Counters of what the loader did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadStats {
    /// PAGE records written.
    pub pages: u64,
    /// ZERO records that wrote memory.
    pub zero_written: u64,
    /// ZERO records skipped because the page was already zero.
    pub zero_skipped: u64,
    /// XBZRLE records applied.
    pub xbzrle: u64,
    /// Balloon records applied.
    pub balloon_records: u64,
    /// Pages that balloon records made ballooned.
    pub ballooned_pages: u64,
    /// `ram` section headers (START, PART, END).
    pub ram_sections: u64,
    /// Device sections handed out.
    pub devices: u64,
    /// multifd sync points passed (SPEC.md §14.5).
    pub sync_points: u64,
}
