//! One multifd packet as the source decides it ([`PacketJob`]) and as its channel reports
//! it written ([`PacketSent`]) (SPEC.md §14).

/// What a [`PacketJob`] asks its channel to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// The initial packet (64 bytes, SPEC.md §14.1): the channel's first job.
    Init,
    /// A SYNC packet: the channel's part of a sync point.
    Sync,
    /// A RAM packet with the pages at `offsets` of `block`.
    Pages,
}

/// One packet for one multifd channel, as the source decided it
/// ([`Source::poll_packet`](crate::Source::poll_packet)): the initial packet, a SYNC packet, or a RAM packet's page
/// addresses. Its channel's [`ChannelSender::encode`](crate::ChannelSender::encode) reads
/// the pages and writes the bytes; jobs of one channel must be encoded in the order they
/// were handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketJob {
    pub(crate) channel: u8,
    pub(crate) kind: JobKind,
    pub(crate) packet_num: u64,
    pub(crate) block: usize,
    /// Byte offsets in `block`, page aligned, in order.
    pub(crate) offsets: Vec<u64>,
}

impl PacketJob {
    /// The channel (id) whose sender must write it.
    pub fn channel(&self) -> u8 {
        self.channel
    }

    /// The `packet_num` it carries (none for the initial packet).
    pub fn packet_num(&self) -> Option<u64> {
        (self.kind != JobKind::Init).then_some(self.packet_num)
    }

    /// Whether it is the channel's initial packet.
    pub fn is_init(&self) -> bool {
        self.kind == JobKind::Init
    }

    /// Whether it is a SYNC packet.
    pub fn is_sync(&self) -> bool {
        self.kind == JobKind::Sync
    }

    /// The RAM block of its pages (its index in the source's layout), if it has pages.
    pub fn block(&self) -> Option<usize> {
        (self.kind == JobKind::Pages).then_some(self.block)
    }

    /// How many pages it carries.
    pub fn pages(&self) -> usize {
        self.offsets.len()
    }
}

/// What a channel wrote for one [`PacketJob`], as
/// [`ChannelSender::encode`](crate::ChannelSender::encode) returns it; hand it back with
/// [`Source::handle_packet_sent`](crate::Source::handle_packet_sent) once the bytes are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacketSent {
    /// The channel.
    pub channel: u8,
    /// Bytes written (header, offsets and normal pages).
    pub bytes: usize,
    /// Normal pages (contents on the wire).
    pub normal: u32,
    /// Zero pages (no bytes but their offsets).
    pub zero: u32,
    /// Whether it was a SYNC packet.
    pub sync: bool,
    /// Whether it was the channel's initial packet.
    pub init: bool,
}
