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
}

impl Default for LoaderOptions {
    fn default() -> Self {
        let decoder = DecoderOptions::default();
        LoaderOptions {
            page_size: 1 << decoder.default_page_bits,
            decoder,
            zero_pages: ZeroPages::default(),
            allow_unsent_blocks: false,
        }
    }
}
