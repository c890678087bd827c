//! What a destination decides locally: decoder settings, the guest's page size, how ZERO
//! records are applied, which block lists are accepted.

use ramstream_codec::DecoderOptions;

/// How a ZERO record with fill byte 0 is applied (SPEC.md §7.4). A non-zero fill byte is
/// always written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ZeroPages {
    /// Guest RAM starts zeroed (fresh anonymous memory, as a QEMU destination's): a page the
    /// loader never wrote is still zero and the record costs nothing; a page it wrote is
    /// zeroed. This is the reference receiver's policy.
    #[default]
    SkipUnwritten,
    /// Guest RAM may hold data before the stream (firmware loaded into ROM blocks): read
    /// the page and zero it only if it is not zero, as QEMU's `ram_handle_zero` does.
    ZeroIfNonZero,
    /// Zero the page on every record.
    Always,
}

/// What the loader does with ramstream's RAM digest section (`ramstream/ram-digest`,
/// SPEC.md §13): a source's per-block digest of its memory at stop time, which a destination
/// compares with its own memory before it resumes the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DigestPolicy {
    /// Hand the section out as a [`LoaderEvent::Device`](crate::LoaderEvent::Device) like any
    /// other; the caller may check it with [`Loader::verify_digest`](crate::Loader::verify_digest).
    #[default]
    Deliver,
    /// Take the section (it is not handed out), and at EOF compare each block's digest with
    /// guest memory, pages of the stream's ballooned runs counted as zero; a difference, or a
    /// section that does not match MEM_SIZE, is refused
    /// ([`ErrorKind::Digest`](crate::ErrorKind::Digest)) instead of
    /// [`LoaderEvent::Eof`](crate::LoaderEvent::Eof). The report is
    /// [`Loader::digest_report`](crate::Loader::digest_report). A stream without the section
    /// loads as before.
    Verify,
    /// [`DigestPolicy::Verify`], and a stream that reaches EOF without the section is refused
    /// ([`DigestError::Missing`](crate::DigestError::Missing)), as SPEC.md §13.4 asks of a
    /// receiver that knows its source sends one.
    Require,
}

/// Whether the stream's pages may travel on multifd channels (SPEC.md §14), and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Multifd {
    /// One connection: a MULTIFD_FLUSH record is refused
    /// ([`ramstream_codec::ErrorKind::PagesOnMultifdChannels`]), EOS is no sync point.
    #[default]
    Off,
    /// `n` channels (QEMU's `multifd-channels`), loaded by
    /// [`ChannelLoader`](crate::multifd::ChannelLoader)s from the loader's
    /// [`Loader::multifd`](crate::Loader::multifd) session; each sync point is a
    /// [`LoaderEvent::MultifdSync`](crate::LoaderEvent::MultifdSync).
    Channels(u8),
    /// As [`Multifd::Channels`], the number told later: at the first sync point, before
    /// releasing it, call [`Loader::set_multifd_channels`](crate::Loader::set_multifd_channels)
    /// with the channels that connected (QEMU connects every channel before it writes that
    /// point; 0: none, and the stream is loaded as one connection).
    Detect,
}

/// Options of a [`Loader`](crate::Loader).
///
/// ```
/// use ramstream_migrate::{LoaderOptions, ZeroPages};
/// use ramstream_spec::Dialect;
/// let mut opts = LoaderOptions::default();
/// opts.decoder.dialect = Dialect::RamstreamBalloonV1; // balloon records, when announced
/// opts.zero_pages = ZeroPages::ZeroIfNonZero;          // ROMs prefilled by the VMM
/// assert_eq!(opts.page_size, 4096);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoaderOptions {
    /// The decoder's options: dialect, limits, MEM_SIZE fields. Mapped-ram files are refused
    /// whatever they say ([`ErrorKind::MappedRam`](crate::ErrorKind::MappedRam)).
    pub decoder: DecoderOptions,
    /// The guest's target page size in bytes (4096 on x86); a stream announcing another is
    /// refused ([`ErrorKind::PageSizeMismatch`](crate::ErrorKind::PageSizeMismatch)).
    pub page_size: usize,
    /// How ZERO records are applied.
    pub zero_pages: ZeroPages,
    /// Whether guest blocks the MEM_SIZE record does not list are accepted (and left as
    /// they are), as QEMU does; by default they are refused
    /// ([`LayoutMismatch::BlockNotSent`](crate::LayoutMismatch::BlockNotSent)).
    pub allow_unsent_blocks: bool,
    /// What to do with the RAM digest section (SPEC.md §13); by default it is handed out.
    pub digest: DigestPolicy,
    /// multifd channels (SPEC.md §14); by default off.
    pub multifd: Multifd,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        let decoder = DecoderOptions::default();
        LoaderOptions {
            page_size: 1 << decoder.default_page_bits,
            decoder,
            zero_pages: ZeroPages::default(),
            allow_unsent_blocks: false,
            digest: DigestPolicy::default(),
            multifd: Multifd::default(),
        }
    }
}
