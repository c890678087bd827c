//! The engine's error type: what was refused, where in the stream, in which record and RAM
//! block. One enum for the crate, shaped like the codec's.

use core::fmt;
use std::error::Error as StdError;

use ramstream_codec::balloon::BalloonMapError;

use crate::digest_report::DigestError;
use ramstream_codec::{PageAddr, RecordKind};

/// A refused stream or a failed guest access, with its context.
///
/// `offset` is the stream offset of the record that was refused (for errors outside any
/// record, the offset the loader had reached); `record` the record kind; `block` the RAM
/// block's idstr where known. The loader is unusable after returning one.
///
/// ```
/// use ramstream_migrate::{Error, ErrorKind};
/// let e = Error::new(0x2b, ErrorKind::PageOfBallooned { page: 16 })
///     .in_record(ramstream_codec::RecordKind::Page)
///     .in_block("pc.ram");
/// assert_eq!(
///     e.to_string(),
///     "at offset 0x2b (ram PAGE record, block \"pc.ram\"): page 16 is ballooned: a sender must \
///      deflate a page before sending it (SPEC.md §9.7)"
/// );
/// ```
#[derive(Debug)]
pub struct Error {
    /// Stream offset of the refused record (or where the loader stood).
    pub offset: u64,
    /// The record being handled, where known.
    pub record: Option<RecordKind>,
    /// The RAM block idstr, where known.
    pub block: Option<String>,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// An error of `kind` at `offset` with no further context.
    pub fn new(offset: u64, kind: ErrorKind) -> Self {
        Error {
            offset,
            record: None,
            block: None,
            kind,
        }
    }

    /// Adds the record kind.
    pub fn in_record(mut self, record: RecordKind) -> Self {
        self.record = Some(record);
        self
    }

    /// Adds the RAM block idstr.
    pub fn in_block(mut self, block: impl Into<String>) -> Self {
        self.block = Some(block.into());
        self
    }

    /// Marks the error as one of multifd channel `channel` (SPEC.md §14): `offset` is then
    /// an offset in that channel's bytes ([`ErrorKind::Channel`]).
    pub fn in_channel(mut self, channel: u8) -> Self {
        if !matches!(self.kind, ErrorKind::Channel { .. }) {
            self.kind = ErrorKind::Channel {
                channel,
                kind: Box::new(self.kind),
            };
        }
        self
    }

    /// The multifd channel the error is about, if it is one's.
    pub fn channel(&self) -> Option<u8> {
        match &self.kind {
            ErrorKind::Channel { channel, .. } => Some(*channel),
            _ => None,
        }
    }

    /// What was wrong, without the channel wrapper of [`ErrorKind::Channel`].
    pub fn inner_kind(&self) -> &ErrorKind {
        match &self.kind {
            ErrorKind::Channel { kind, .. } => kind,
            k => k,
        }
    }

    /// The codec's kind, when the stream (or a multifd channel) itself was malformed or
    /// refused by the decoder.
    pub fn stream_kind(&self) -> Option<&ramstream_codec::ErrorKind> {
        match self.inner_kind() {
            ErrorKind::Stream(k) => Some(k),
            _ => None,
        }
    }
}

impl From<ramstream_codec::Error> for Error {
    fn from(e: ramstream_codec::Error) -> Self {
        Error {
            offset: e.offset,
            record: e.record,
            block: e.block,
            kind: ErrorKind::Stream(e.kind),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(channel) = self.channel() {
            write!(f, "multifd channel {channel}: ")?;
        }
        ramstream_codec::Error::write_context(f, self.offset, self.record, self.block.as_deref())?;
        write!(f, ": {}", self.inner_kind())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self.inner_kind() {
            ErrorKind::Guest { source, .. } => Some(&**source),
            ErrorKind::Balloon(e) => Some(e),
            ErrorKind::DirtyLog(e) | ErrorKind::DeviceState(e) => Some(&**e),
            ErrorKind::XbzrleCache(e) => Some(e),
            ErrorKind::Extension(e) => Some(e),
            ErrorKind::Digest(DigestError::Section(e)) => Some(e),
            ErrorKind::Multifd(e) => Some(e),
            _ => None,
        }
    }
}

/// What was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The decoder refused the stream (malformed, truncated after
    /// [`Loader::finish`](crate::Loader::finish), an XBZRLE delta that does not decode, a
    /// page beyond its block, ...). Rebuilding RAM from a stream with a MULTIFD_FLUSH record
    /// is [`ramstream_codec::ErrorKind::PagesOnMultifdChannels`]: its pages travel on other
    /// channels (SPEC.md §8).
    Stream(ramstream_codec::ErrorKind),
    /// The stream's target page size is not the guest's
    /// ([`LoaderOptions::page_size`](crate::LoaderOptions::page_size)).
    PageSizeMismatch {
        /// The stream's target page size.
        stream: u64,
        /// The guest's.
        guest: u64,
    },
    /// The MEM_SIZE record's blocks are not the guest's. Nothing was written for it.
    Layout(LayoutMismatch),
    /// A PAGE, ZERO or XBZRLE record for a page the stream's own balloon records hold
    /// (SPEC.md §9.7). Nothing was written for it.
    PageOfBallooned {
        /// The page index in the block.
        page: u64,
    },
    /// A balloon record the stream's block list cannot take (SPEC.md §9.8).
    Balloon(BalloonMapError),
    /// A mapped-ram file (SPEC.md §7.9): its pages lie at file offsets, not in records, so a
    /// streaming loader cannot rebuild RAM from it.
    MappedRam,
    /// A deferred loader ([`Loader::without_ram`](crate::Loader::without_ram)) was fed past
    /// [`LoaderEvent::RamNeeded`](crate::LoaderEvent::RamNeeded) without
    /// [`Loader::provide_ram`](crate::Loader::provide_ram).
    RamNotProvided,
    /// Guest memory refused an access at `addr` (the guest's block numbering).
    Guest {
        /// The address, in the guest's block numbering.
        addr: PageAddr,
        /// The implementation's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The RAM digest section (SPEC.md §13) was refused: malformed, not matching MEM_SIZE,
    /// missing where required, or guest memory differs from the source's.
    Digest(DigestError),
    /// The engine (loader or source) was used after it returned an error.
    Poisoned,
    /// The digest worker thread (`DigestWorker`, feature `io`)
    /// ended early or panicked.
    DigestWorker {
        /// What happened to it.
        reason: &'static str,
    },
    /// The source's page size is not a power of two.
    InvalidPageSize {
        /// The page size asked for.
        page_size: usize,
    },
    /// A block given to the source is not a whole number of pages.
    BlockNotWholePages {
        /// The block index.
        block: usize,
        /// Its used length.
        used_length: u64,
        /// The page size.
        page_size: usize,
    },
    /// The source's XBZRLE cache size is not usable.
    XbzrleCache(ramstream_codec::cache::CacheConfigError),
    /// A block index the source does not have.
    NoSuchBlock {
        /// The index.
        block: usize,
    },
    /// A dirty or ballooned run handed to the source leaves its block.
    RunOutOfRange {
        /// The block index.
        block: usize,
        /// The run.
        run: ramstream_codec::balloon::PageRun,
        /// The block's pages.
        pages: u64,
    },
    /// The caller's [`DirtyPageSource`](crate::DirtyPageSource) failed.
    DirtyLog(Box<dyn StdError + Send + Sync>),
    /// The caller's [`DeviceStateSource`](crate::DeviceStateSource) failed.
    DeviceState(Box<dyn StdError + Send + Sync>),
    /// Digests handed to the source for another number of blocks than it has.
    DigestCount {
        /// The source's blocks.
        expected: usize,
        /// The digests given.
        found: usize,
    },
    /// An extension section's body (SPEC.md §13) could not be written.
    Extension(ramstream_codec::extension::ExtensionError),
    /// A multifd sync rule across the main stream and the channels was broken (SPEC.md
    /// §14.5, §14.8), or the multifd engines were misused.
    Multifd(crate::multifd::MultifdError),
    /// An error on multifd channel `channel` (SPEC.md §14): the [`Error::offset`] is an
    /// offset in that channel's bytes. Printed `multifd channel N: at offset …: …`.
    Channel {
        /// The channel id (from its initial packet).
        channel: u8,
        /// What was wrong.
        kind: Box<ErrorKind>,
    },
    /// A source was asked for multifd together with an option it cannot go with
    /// ([`SourceOptions::multifd`](crate::SourceOptions::multifd)): `xbzrle` (QEMU 8.2+
    /// refuses the pair, `migrate_caps_check()` in `migration/options.c`: "Multifd is not
    /// compatible with xbzrle"), or the balloon extension (its records and MULTIFD_FLUSH
    /// share flag 0x200, SPEC.md §9.1).
    MultifdIncompatible {
        /// The other option, by its QEMU or ramstream name.
        with: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A source method was called in a phase where it has no meaning (e.g.
    /// `handle_stopped` before [`Transmit::StopGuest`](crate::Transmit::StopGuest)).
    UnexpectedCall {
        /// The method.
        call: &'static str,
        /// The source's phase.
        phase: crate::Phase,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Stream(k) => write!(f, "{k}"),
            ErrorKind::PageSizeMismatch { stream, guest } => {
                write!(f, "target page size {stream} is not the guest's {guest}")
            }
            ErrorKind::Layout(m) => write!(f, "MEM_SIZE does not match the guest: {m}"),
            ErrorKind::PageOfBallooned { page } => write!(
                f,
                "page {page} is ballooned: a sender must deflate a page before sending it \
                 (SPEC.md §9.7)"
            ),
            ErrorKind::Balloon(e) => write!(f, "balloon record: {e}"),
            ErrorKind::MappedRam => f.write_str(
                "a mapped-ram file keeps its pages at file offsets, not in records; a \
                 streaming loader cannot rebuild its RAM (SPEC.md §7.9)",
            ),
            ErrorKind::RamNotProvided => f.write_str(
                "guest RAM was needed (MEM_SIZE) but Loader::provide_ram was not called",
            ),
            ErrorKind::Guest { addr, source } => write!(
                f,
                "guest memory at block {} offset {:#x}: {source}",
                addr.block, addr.offset
            ),
            ErrorKind::Digest(e) => write!(f, "{e}"),
            ErrorKind::Poisoned => f.write_str("the engine was used after an error"),
            ErrorKind::DigestWorker { reason } => write!(f, "the digest worker: {reason}"),
            ErrorKind::InvalidPageSize { page_size } => {
                write!(f, "page size {page_size} is not a power of two")
            }
            ErrorKind::BlockNotWholePages {
                block,
                used_length,
                page_size,
            } => write!(
                f,
                "block {block} is {used_length:#x} bytes, not a whole number of {page_size}-byte \
                 pages"
            ),
            ErrorKind::XbzrleCache(e) => write!(f, "{e}"),
            ErrorKind::NoSuchBlock { block } => write!(f, "there is no block {block}"),
            ErrorKind::RunOutOfRange { block, run, pages } => write!(
                f,
                "pages {}..{} of block {block} are past its {pages} pages",
                run.start,
                run.start.saturating_add(run.count)
            ),
            ErrorKind::DirtyLog(e) => write!(f, "dirty log: {e}"),
            ErrorKind::DeviceState(e) => write!(f, "device state: {e}"),
            ErrorKind::DigestCount { expected, found } => {
                write!(f, "{found} block digests given for {expected} blocks")
            }
            ErrorKind::Extension(e) => write!(f, "extension section: {e}"),
            ErrorKind::Multifd(e) => write!(f, "{e}"),
            ErrorKind::Channel { channel, kind } => write!(f, "multifd channel {channel}: {kind}"),
            ErrorKind::MultifdIncompatible { with, reason } => {
                write!(
                    f,
                    "capability multifd is not compatible with {with}: {reason}"
                )
            }
            ErrorKind::UnexpectedCall { call, phase } => {
                write!(f, "{call} has no meaning in phase {phase}")
            }
        }
    }
}

/// How a MEM_SIZE record differs from the guest's blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutMismatch {
    /// The stream lists a block the guest does not have ("Unknown ramblock").
    UnknownBlock {
        /// The idstr.
        idstr: String,
        /// Its used length in the stream.
        used_length: u64,
    },
    /// A block with another used length than the guest's ("Length mismatch").
    LengthMismatch {
        /// The idstr.
        idstr: String,
        /// The stream's used length.
        stream: u64,
        /// The guest's.
        guest: u64,
    },
    /// A guest block the stream does not list (allowed, as QEMU does, with
    /// [`LoaderOptions::allow_unsent_blocks`](crate::LoaderOptions::allow_unsent_blocks)).
    BlockNotSent {
        /// The idstr.
        idstr: String,
    },
    /// A later MEM_SIZE record lists other blocks than the first.
    Changed,
}

impl fmt::Display for LayoutMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutMismatch::UnknownBlock { idstr, used_length } => write!(
                f,
                "block {idstr:?} ({used_length:#x} bytes) is not in the guest"
            ),
            LayoutMismatch::LengthMismatch {
                idstr,
                stream,
                guest,
            } => write!(
                f,
                "block {idstr:?} is {stream:#x} bytes in the stream, {guest:#x} in the guest"
            ),
            LayoutMismatch::BlockNotSent { idstr } => {
                write!(f, "guest block {idstr:?} is not in the stream")
            }
            LayoutMismatch::Changed => {
                f.write_str("a later MEM_SIZE lists other blocks than the first")
            }
        }
    }
}
