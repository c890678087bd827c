//! multifd on the source (SPEC.md §14): RAM pages go out on N channels beside the main
//! stream, written like QEMU 9.2 to 11.1 (`WriterVersion::Qemu9_2`, zero pages detected in
//! the channels as with `zero-page-detection=multifd`, a sync point per round).
//!
//! The engine stays one state machine on one thread; it decides *which* pages go on which
//! channel, and a [`ChannelSender`](crate::ChannelSender) per channel (its own thread, in
//! the caller's IO layer) reads them, tests them for zero and encodes the packet:
//!
//! ```text
//!  Source::poll_transmit ─► main stream: header, configuration, START MEM_SIZE FLUSH EOS,
//!        │                  PART … FLUSH EOS (a round's end), END FLUSH EOS, devices, EOF
//!        └─ Transmit::Packets ─► Source::poll_packet ─► PacketJob { channel k, pages }
//!                                                          │ (caller's queue to thread k)
//!                          ChannelSender k: read_page ×n, zero test, encode ─► channel k
//!                                                          │
//!           Source::handle_packet_sent(PacketSent) ◄───────┘ (bytes, normal, zero pages)
//! ```
//!
//! - **Channels**: every channel starts with its initial packet (the first job of each),
//!   then RAM packets of up to 128 pages (x86) of one block, dealt round-robin, numbered
//!   over all channels in the order they are made (`packet_num`).
//! - **Sync points** (SPEC.md §14.5, per-round mode of QEMU ≥ 8.1): at setup and at the end
//!   of every round (the bulk pass, each dirty iteration, the stop-and-copy pass), one SYNC
//!   packet on every channel and one MULTIFD_FLUSH record on the main stream, before the
//!   section's EOS. As in QEMU 10.0 and 11.1, the last FLUSH follows the last page; there is
//!   no SYNC without FLUSH.
//! - **Waiting**: after a sync point the source answers [`Transmit::WaitChannels`] until
//!   every job handed out was reported sent, as QEMU's `multifd_send_sync_main()` waits:
//!   the dirty sync that follows then measures a round whose bytes are all counted.
//! - **The main stream** holds no page record: the section framing and the FLUSH records,
//!   then the device state. Its configuration lists no capability for multifd, as QEMU's
//!   does not (`should_validate_capability()` in `migration/savevm.c` validates
//!   `x-ignore-shared` and `mapped-ram` only).
//! - **The bandwidth limit** counts channel bytes when they are reported sent, as QEMU counts
//!   `multifd-bytes` after its channel threads wrote them: a 100 ms window may go over by the
//!   packets in flight when it filled.

use std::collections::VecDeque;
use std::num::NonZeroU8;
use std::time::Instant;

use ramstream_codec::balloon::PageRun;
use ramstream_codec::multifd::{ChannelEncoder, WriterVersion};
use ramstream_codec::{BareRecord, Encoder, Event, Sink};
use ramstream_spec::ram::RamFlags;

use super::channel::ChannelSender;
use super::counted::Counted;
use super::options::SourceOptions;
pub(crate) use super::packet::JobKind;
pub use super::packet::{PacketJob, PacketSent};
use super::poll::Step;
use super::round::RoundKind;
use super::stats::SendStats;
use super::{Source, Stage, Transmit, RAM_SECTION_ID};
use crate::error::{Error, ErrorKind};

/// The QEMU generation a multifd source writes its channels like: 9.2 to 11.1 (SPEC.md
/// §14.7), whose SYNC packets are zeroed and whose packets carry the zero pages.
pub(crate) const WRITER: WriterVersion = WriterVersion::Qemu9_2;

/// multifd settings of a source ([`SourceOptions::multifd`]): QEMU's `multifd-channels`
/// and the uuid every channel's initial packet carries.
///
/// ```
/// use std::num::NonZeroU8;
/// use ramstream_migrate::{MultifdSendOptions, SourceOptions};
/// let multifd = MultifdSendOptions::default()
///     .with_channels(NonZeroU8::new(4).unwrap())
///     .with_uuid([7; 16]);
/// let opts = SourceOptions::default()
///     .with_multifd(Some(multifd))
///     .with_balloon(false);
/// assert_eq!(opts.multifd.unwrap().channels.get(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MultifdSendOptions {
    /// The channels (QEMU `multifd-channels`, 1 to 255; its default is 2).
    pub channels: NonZeroU8,
    /// The source's uuid (QEMU's `-uuid`; all zero when QEMU was given none): a destination
    /// refuses a channel whose uuid is not the migration's (SPEC.md §14.1, §14.6).
    pub uuid: [u8; 16],
}

impl MultifdSendOptions {
    /// These options with [`channels`](Self::channels) set to `v`.
    #[must_use]
    pub fn with_channels(mut self, v: NonZeroU8) -> Self {
        self.channels = v;
        self
    }

    /// These options with [`uuid`](Self::uuid) set to `v`.
    #[must_use]
    pub fn with_uuid(mut self, v: [u8; 16]) -> Self {
        self.uuid = v;
        self
    }
}

impl Default for MultifdSendOptions {
    /// QEMU's defaults: 2 channels, no uuid.
    fn default() -> Self {
        MultifdSendOptions {
            channels: NonZeroU8::MIN.saturating_add(1),
            uuid: [0; 16],
        }
    }
}

/// One multifd channel's figures ([`SendStats::channels`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Packets reported sent: RAM packets and SYNC packets (not the initial packet).
    pub packets: u64,
    /// SYNC packets among them.
    pub syncs: u64,
    /// Bytes reported sent.
    pub bytes: u64,
    /// Normal pages sent.
    pub normal: u64,
    /// Zero pages sent.
    pub zero: u64,
}

/// The source's multifd state: who gets the next packet, its number, the jobs not yet
/// taken and those taken but not reported.
#[derive(Debug)]
pub(crate) struct MultifdState {
    pub(crate) opts: MultifdSendOptions,
    /// The pages of one packet: 128 on x86.
    page_count: u32,
    next_channel: u8,
    packet_num: u64,
    pending: VecDeque<PacketJob>,
    in_flight: u64,
}

impl MultifdState {
    /// The state for `opts`, or the refusal of an option multifd cannot go with.
    pub(crate) fn new(opts: &SourceOptions) -> Result<Option<Self>, Error> {
        let Some(m) = opts.multifd else {
            return Ok(None);
        };
        let refuse = |with, reason| Error::new(0, ErrorKind::MultifdIncompatible { with, reason });
        if opts.xbzrle_cache_size.is_some() {
            return Err(refuse(
                "xbzrle",
                "QEMU 8.2 and later refuse the pair (\"Multifd is not compatible with \
                 xbzrle\", migrate_caps_check() in migration/options.c), and earlier ones \
                 send every page to a channel before the XBZRLE path is reached (SPEC.md \
                 §14.5); turn one off",
            ));
        }
        if opts.balloon {
            return Err(refuse(
                "the balloon extension (x-ramstream-balloon-v1)",
                "its records and MULTIFD_FLUSH are both flag 0x200 (SPEC.md §9.1); turn one \
                 off (with multifd, ballooned pages go as zero pages)",
            ));
        }
        let enc = ChannelEncoder::new(WRITER, opts.page_size.trailing_zeros())?;
        Ok(Some(MultifdState {
            opts: m,
            page_count: enc.page_count(),
            next_channel: 0,
            packet_num: 0,
            pending: VecDeque::new(),
            in_flight: 0,
        }))
    }

    fn channels(&self) -> u8 {
        self.opts.channels.get()
    }

    fn push(&mut self, channel: u8, kind: JobKind, block: usize, offsets: Vec<u64>) {
        let packet_num = self.packet_num;
        if kind != JobKind::Init {
            self.packet_num += 1;
        }
        self.pending.push_back(PacketJob {
            channel,
            kind,
            packet_num,
            block,
            offsets,
        });
    }

    /// A RAM packet for the next channel, round-robin.
    fn push_pages(&mut self, block: usize, offsets: Vec<u64>) {
        let channel = self.next_channel;
        self.next_channel = (channel + 1) % self.channels();
        self.push(channel, JobKind::Pages, block, offsets);
    }

    /// A sync point: a SYNC packet for every channel, and the MULTIFD_FLUSH record that
    /// pairs with them (SPEC.md §14.5).
    fn sync_point<'s, S: Sink<'s>>(
        &mut self,
        enc: &mut Encoder,
        out: &mut S,
        stats: &mut SendStats,
    ) -> Result<(), Error> {
        for channel in 0..self.channels() {
            self.push(channel, JobKind::Sync, 0, Vec::new());
        }
        let word = RamFlags::MULTIFD_FLUSH.bits();
        enc.event(&Event::MultifdFlush(BareRecord { word }), out)?;
        stats.multifd_syncs += 1;
        Ok(())
    }

    /// The setup's part (before the START section's EOS): every channel's initial packet,
    /// then the first sync point.
    pub(crate) fn setup<'s, S: Sink<'s>>(
        &mut self,
        enc: &mut Encoder,
        out: &mut S,
        stats: &mut SendStats,
    ) -> Result<(), Error> {
        for channel in 0..self.channels() {
            self.push(channel, JobKind::Init, 0, Vec::new());
        }
        stats.channels = vec![ChannelStats::default(); usize::from(self.channels())];
        self.sync_point(enc, out, stats)
    }
}

impl Source {
    /// multifd: the next job for a channel, after [`Transmit::Packets`], until `None`. Hand
    /// it to the [`ChannelSender`] of its [`channel`](PacketJob::channel), after that
    /// channel's earlier jobs.
    pub fn poll_packet(&mut self) -> Option<PacketJob> {
        let m = self.multifd.as_mut()?;
        let job = m.pending.pop_front()?;
        m.in_flight += 1;
        Some(job)
    }

    /// multifd: a job handed out by [`Source::poll_packet`] was written and sent, as
    /// `sent` (from its [`ChannelSender::encode`]) says: its bytes count for the bandwidth
    /// limit and the convergence decision, its pages in the figures. Refused when no job
    /// is out.
    pub fn handle_packet_sent(&mut self, sent: &PacketSent) -> Result<(), Error> {
        let ps = self.opts.page_size as u64;
        let Some(m) = self.multifd.as_mut().filter(|m| m.in_flight > 0) else {
            return Err(self.unexpected("handle_packet_sent"));
        };
        m.in_flight -= 1;
        let bytes = sent.bytes as u64;
        self.meter.sent(bytes);
        self.meter.produced(bytes);
        let s = &mut self.stats;
        s.sent = self.meter.sent;
        s.multifd_bytes += bytes;
        s.normal += u64::from(sent.normal);
        s.normal_bytes += u64::from(sent.normal) * ps;
        s.duplicate += u64::from(sent.zero);
        s.pages_visited += u64::from(sent.normal) + u64::from(sent.zero);
        if let Some(c) = s.channels.get_mut(usize::from(sent.channel)) {
            c.packets += u64::from(!sent.init);
            c.syncs += u64::from(sent.sync);
            c.bytes += bytes;
            c.normal += u64::from(sent.normal);
            c.zero += u64::from(sent.zero);
        }
        Ok(())
    }

    /// multifd: one [`ChannelSender`] per channel, by id, each to be moved to the thread
    /// (or task) that writes its channel. Empty without multifd.
    pub fn channel_senders(&self) -> Vec<ChannelSender> {
        let Some(m) = &self.multifd else {
            return Vec::new();
        };
        let blocks: Vec<String> = self.blocks.iter().map(|b| b.idstr.clone()).collect();
        (0..m.channels())
            .filter_map(|id| {
                let enc = ChannelEncoder::new(WRITER, self.opts.page_size.trailing_zeros());
                // Checked when the source was made.
                enc.ok()
                    .map(|enc| ChannelSender::new(id, m.opts.uuid, enc, blocks.clone()))
            })
            .collect()
    }

    /// multifd: jobs handed out by [`Source::poll_packet`] and not yet reported sent.
    pub fn packets_in_flight(&self) -> u64 {
        self.multifd.as_ref().map_or(0, |m| m.in_flight)
    }

    /// What a multifd source says before anything else: its jobs not yet taken, then (out
    /// of a round, after a sync point) the wait for the jobs out.
    pub(super) fn multifd_gate(&self) -> Option<Transmit> {
        let m = self.multifd.as_ref()?;
        if self.stage == Stage::Failed {
            None
        } else if !m.pending.is_empty() {
            Some(Transmit::Packets)
        } else if self.stage != Stage::Round && m.in_flight > 0 {
            Some(Transmit::WaitChannels)
        } else {
            None
        }
    }

    /// One poll of a round with multifd: opens a section if none is, deals the next pages
    /// to the channels (a packet for each at most), and at the section's end writes its EOS,
    /// preceded at the round's end by a sync point.
    pub(super) fn multifd_round<'s, S: Sink<'s>>(
        &mut self,
        now: Instant,
        out: &mut Counted<'_, S>,
    ) -> Result<Step, Error> {
        let (Some(round), Some(m)) = (self.round.as_mut(), self.multifd.as_mut()) else {
            return Err(self.error(ErrorKind::Poisoned));
        };
        let limit = self
            .opts
            .max_bandwidth
            .filter(|_| round.kind != RoundKind::Final);
        if let Some(t) = self.meter.not_before(now, limit) {
            return Ok(Step::Say(Transmit::Wait(t)));
        }
        let mut budget = self.meter.budget(limit).map_or(u64::MAX, |b| {
            PageRun::covering(0..b, self.opts.page_size).count.max(1)
        });
        if !round.part_open {
            let section_type = round.open_part();
            self.enc.reset_continue();
            self.enc.section_part(section_type, RAM_SECTION_ID, out);
        }
        let mut closes = false;
        for _ in 0..m.channels() {
            let mut offsets = Vec::with_capacity(m.page_count as usize);
            let max = budget.min(u64::from(m.page_count));
            let (block, c) = round.next_packet(max, self.opts.page_size, &mut offsets);
            budget -= offsets.len() as u64;
            if !offsets.is_empty() {
                m.push_pages(block, offsets);
            }
            if c || budget == 0 {
                closes = c;
                break;
            }
        }
        let (kind, done) = (round.kind, round.is_done());
        if closes {
            if done {
                m.sync_point(&mut self.enc, out, &mut self.stats)?;
            }
            self.enc.eos(out);
            self.enc.footer(RAM_SECTION_ID, out);
        }
        if done {
            self.end_round(now, kind);
        }
        Ok(if out.n > 0 {
            Step::Wrote
        } else {
            Step::Say(Transmit::Packets)
        })
    }
}
