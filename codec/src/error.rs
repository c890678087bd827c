//! The codec's error type: what was wrong, where, in which record and RAM block.

use core::fmt;

use ramstream_spec::multifd::{Compression, PacketFlags};
use ramstream_spec::ram::RamFlags;
use ramstream_spec::stream::{Command, SectionType};

use crate::kind::{MappedRamRegion, RecordKind};
use crate::xbzrle::XbzrleError;

/// A decoding or encoding error with its context.
///
/// `offset` is the byte offset in the stream of the record (or field) that was wrong;
/// `record` the kind of record being read; `block` the RAM block idstr where known. For a
/// multifd channel (SPEC.md §14), `offset` counts from the channel's first byte and
/// `channel` is its id once its initial packet was read.
///
/// ```
/// use ramstream_codec::{Decoder, ErrorKind};
///
/// let mut dec = Decoder::new(Default::default());
/// dec.finish();
/// let err = dec.decode(b"QEVX\0\0\0\x03").unwrap_err();
/// assert!(matches!(err.kind, ErrorKind::BadMagic { .. }));
/// assert_eq!(err.offset, 0);
/// assert_eq!(err.to_string(), "at offset 0x0 (stream header): bad magic 0x51455658, expected 0x5145564d (\"QEVM\")");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the stream where the faulty record or field starts.
    pub offset: u64,
    /// The record being read, where known.
    pub record: Option<RecordKind>,
    /// The RAM block idstr, where known.
    pub block: Option<String>,
    /// What was wrong.
    pub kind: ErrorKind,
    /// The multifd channel id, for an error in a multifd channel whose initial packet was
    /// read (SPEC.md §14); `offset` is then an offset in that channel.
    pub channel: Option<u8>,
}

impl Error {
    /// An error of `kind` at `offset` with no further context.
    pub fn new(offset: u64, kind: ErrorKind) -> Self {
        Error {
            offset,
            record: None,
            block: None,
            kind,
            channel: None,
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

    /// Adds the multifd channel id (SPEC.md §14).
    pub fn in_channel(mut self, channel: u8) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Writes the context every ramstream error starts with, the same for the codec's
    /// errors and the engines' (`ramstream-migrate`'s `Error`): `at offset 0x2b`, then the
    /// record and the block where known, as in `at offset 0x2b (ram PAGE record, block
    /// "pc.ram")`. The caller writes `: ` and what was wrong after it.
    ///
    /// ```
    /// use core::fmt;
    /// use ramstream_codec::{Error, RecordKind};
    /// struct Refusal;
    /// impl fmt::Display for Refusal {
    ///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    ///         Error::write_context(f, 0x2b, Some(RecordKind::Page), Some("pc.ram"))?;
    ///         f.write_str(": refused")
    ///     }
    /// }
    /// assert_eq!(Refusal.to_string(), "at offset 0x2b (ram PAGE record, block \"pc.ram\"): refused");
    /// ```
    pub fn write_context(
        f: &mut fmt::Formatter<'_>,
        offset: u64,
        record: Option<RecordKind>,
        block: Option<&str>,
    ) -> fmt::Result {
        write!(f, "at offset {offset:#x}")?;
        match (record, block) {
            (Some(r), Some(b)) => write!(f, " ({r}, block {b:?})"),
            (Some(r), None) => write!(f, " ({r})"),
            (None, Some(b)) => write!(f, " (block {b:?})"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(channel) = self.channel {
            write!(f, "multifd channel {channel}: ")?;
        }
        Self::write_context(f, self.offset, self.record, self.block.as_deref())?;
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for Error {}

/// What was wrong with the input. One variant per rejection class of SPEC.md §12.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended inside a record (only after [`Decoder::finish`](crate::Decoder::finish)).
    Truncated {
        /// Bytes still missing for the record, at least.
        needed: usize,
    },
    /// The stream ended before its EOF section (only after `finish`).
    EndedBeforeEof,
    /// The stream did not start with `QEVM`.
    BadMagic {
        /// The be32 found.
        found: u32,
    },
    /// The obsolete stream version 2.
    ObsoleteVersion,
    /// A stream version other than 3.
    UnsupportedVersion {
        /// The be32 found.
        found: u32,
    },
    /// The configuration section was required but not present.
    ConfigurationMissing,
    /// The machine type length exceeds the limit.
    MachineTypeTooLong {
        /// The announced length.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// A name (idstr, machine type, capability) is not UTF-8.
    NotUtf8 {
        /// What was being read.
        what: &'static str,
    },
    /// A configuration subsection this codec does not know.
    UnknownSubsection {
        /// Its name.
        name: String,
    },
    /// A configuration subsection with a version other than 1.
    SubsectionVersion {
        /// Its name.
        name: String,
        /// The version found.
        version: u32,
    },
    /// A subsection inside the configuration whose name lacks the `configuration/` prefix.
    StraySubsection {
        /// Its name.
        name: String,
    },
    /// Target page bits outside the supported range.
    BadPageBits {
        /// The value found.
        bits: u32,
    },
    /// More capabilities than the limit.
    TooManyCapabilities {
        /// The announced count.
        count: u32,
    },
    /// A capability name this codec does not know ("Received unknown capability").
    UnknownCapability {
        /// The name.
        name: String,
    },
    /// A capability this codec knows but does not support.
    UnsupportedCapability {
        /// The name.
        name: String,
    },
    /// A top-level section type byte that is not defined.
    UnknownSectionType {
        /// The byte.
        byte: u8,
    },
    /// A top-level byte that is defined but not allowed here (e.g. a SUBSECTION byte).
    UnexpectedSectionType {
        /// The section type.
        found: SectionType,
    },
    /// A PART/END/footer naming a section id no START announced.
    UnknownSectionId {
        /// The id.
        section_id: u32,
    },
    /// A section START/FULL reusing an id already in use.
    DuplicateSectionId {
        /// The id.
        section_id: u32,
    },
    /// An iterative section other than `ram` (e.g. block migration, dirty bitmaps).
    UnsupportedSection {
        /// Its idstr.
        idstr: String,
    },
    /// The `ram` section with a version other than 4, or an instance other than 0.
    RamSectionVersion {
        /// The version found.
        version: u32,
        /// The instance id found.
        instance_id: u32,
    },
    /// A section without its footer.
    MissingFooter {
        /// The section id expected in the footer.
        section_id: u32,
        /// The byte found instead of 0x7E.
        found: u8,
    },
    /// A footer with another section's id.
    FooterMismatch {
        /// The expected id.
        expected: u32,
        /// The id found.
        found: u32,
    },
    /// A command id QEMU 7.2 does not know.
    UnknownCommand {
        /// The command.
        command: Command,
        /// Its payload length.
        len: u16,
    },
    /// A command with a payload length QEMU rejects.
    CommandLength {
        /// The command.
        command: Command,
        /// The length found.
        len: u16,
    },
    /// A `ram` record word whose flags QEMU rejects ("Unknown combination of migration
    /// flags").
    UnknownFlags {
        /// The flags (the word's low bits).
        flags: RamFlags,
    },
    /// A compressed page (0x100) without the `compress` capability (removed in QEMU 9.1).
    UnexpectedCompressedPage,
    /// An RDMA hook record (0x80) on a stream that is not RDMA.
    RdmaHook,
    /// RAM was to be rebuilt from a stream with a MULTIFD_FLUSH record (QEMU 8.1+ with the
    /// `multifd` capability): its pages travel on other channels, so this stream alone cannot
    /// give the RAM (SPEC.md §8).
    PagesOnMultifdChannels,
    /// A page record with CONTINUE but no earlier page record named a block.
    ContinueWithoutBlock,
    /// A page record naming a block the MEM_SIZE list did not announce.
    UnknownBlock {
        /// The idstr.
        idstr: String,
    },
    /// A page offset not below the block's used length.
    OffsetBeyondBlock {
        /// The offset.
        offset: u64,
        /// The block's used length.
        used_length: u64,
    },
    /// A ZERO record with a non-zero fill byte, rejected by QEMU 8.2+ policy.
    NonZeroFill {
        /// The fill byte.
        fill: u8,
    },
    /// The MEM_SIZE block lengths do not add up to its total.
    MemSizeMismatch {
        /// The total announced.
        total: u64,
        /// The sum of used lengths read when the mismatch was detected.
        sum: u64,
    },
    /// A RAM block with a zero or unaligned used length.
    BadUsedLength {
        /// The length.
        used_length: u64,
    },
    /// The same idstr twice in one MEM_SIZE list.
    DuplicateBlock {
        /// The idstr.
        idstr: String,
    },
    /// More RAM blocks than the limit.
    TooManyBlocks {
        /// The limit.
        limit: usize,
    },
    /// The announced RAM total exceeds the configured limit.
    RamTotalTooLarge {
        /// The total.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// An XBZRLE record whose encoding byte is not 0x01 ("wrong compression").
    XbzrleEncoding {
        /// The byte found.
        found: u8,
    },
    /// An XBZRLE record longer than a page ("len overflow").
    XbzrleLength {
        /// The length found.
        len: u16,
        /// The page size.
        page_size: usize,
    },
    /// An XBZRLE delta that does not decode ("decode error").
    Xbzrle(XbzrleError),
    /// A record flag 0x200 whose meaning the chosen dialect gives no payload for here.
    DialectRejects {
        /// The dialect.
        dialect: ramstream_spec::Dialect,
        /// Why.
        reason: &'static str,
    },
    /// A ramstream balloon v1 record in a stream whose configuration did not announce
    /// `x-ramstream-balloon-v1` (SPEC.md §9.3).
    BalloonNotAnnounced,
    /// A balloon record word with offset bits set, or with CONTINUE where the dialect has
    /// none (kolhe-2016) (SPEC.md §9.4, §9.6).
    BalloonWord {
        /// The record word.
        word: u64,
    },
    /// A balloon record before the MEM_SIZE record: no block to name (SPEC.md §9.7).
    BalloonBeforeMemSize,
    /// A v1 record whose version byte is not the one announced (SPEC.md §9.3).
    BalloonVersion {
        /// The byte found.
        found: u8,
        /// The version the capability announced.
        expected: u8,
    },
    /// A v1 record whose kind byte is neither full map (0) nor incremental (1) (SPEC.md §9.4).
    BalloonKind {
        /// The byte found.
        found: u8,
    },
    /// More runs in one balloon record than `Limits::max_balloon_runs` (SPEC.md §9.5, §10).
    BalloonTooManyRuns {
        /// The runs announced (v1) or read so far (kolhe-2016).
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// A v1 full-map record with deflate runs (SPEC.md §9.4).
    BalloonFullMapDeflate {
        /// The deflate count found.
        count: u32,
    },
    /// A run of zero pages (SPEC.md §9.5).
    BalloonEmptyRun {
        /// Its start.
        start: u64,
    },
    /// A run ending past its block (v1) or past the bitmap (kolhe-2016) (SPEC.md §9.5, §9.6).
    BalloonRunOutOfRange {
        /// The run's first page.
        start: u64,
        /// Its page count.
        count: u64,
        /// Pages in the block or bitmap.
        pages: u64,
    },
    /// A run starting before the previous run ended: unsorted or overlapping (SPEC.md §9.5).
    BalloonRunOrder {
        /// Its start.
        start: u64,
        /// Where the previous run ended.
        previous_end: u64,
    },
    /// A run starting where the previous one ended: the two must be one run (SPEC.md §9.5).
    BalloonRunsAdjacent {
        /// Its start.
        start: u64,
    },
    /// A page both inflated and deflated by one v1 record (SPEC.md §9.5).
    BalloonInflateDeflateOverlap {
        /// The first such page.
        page: u64,
    },
    /// A kolhe-2016 record whose start is after its limit, other than the writer's "no
    /// change" header (`limit` 0, `start` at most the bitmap size) (SPEC.md §9.6).
    KolheStartAfterLimit {
        /// The start.
        start: u64,
        /// The limit.
        limit: u64,
    },
    /// A kolhe-2016 record whose limit is past the bitmap (SPEC.md §9.6).
    KolheLimitBeyondBitmap {
        /// The limit.
        limit: u64,
        /// The bitmap size in pages.
        bitmap_pages: u64,
    },
    /// A kolhe-2016 bitmap size smaller than the MEM_SIZE total in 4 KiB pages (the writer's
    /// size is `last_ram_offset()`, never less), so global page indices cannot be mapped to
    /// blocks (SPEC.md §9.6).
    KolheBitmapSize {
        /// The bitmap size in the record.
        bitmap_pages: u64,
        /// The MEM_SIZE total in 4 KiB pages.
        ram_pages: u64,
    },
    /// A kolhe-2016 terminator pair (length 0) whose start is not the bitmap size
    /// (SPEC.md §9.6).
    KolheTerminator {
        /// The start found.
        start: u64,
        /// The bitmap size.
        bitmap_pages: u64,
    },
    /// A mapped-ram header cut short by the end of the input ("Could not read whole
    /// mapped-ram migration header") (SPEC.md §7.9).
    MappedRamHeaderTruncated {
        /// Header bytes present (fewer than 28).
        got: usize,
    },
    /// A mapped-ram header with a version above 1 ("Migration mapped-ram capability version
    /// not supported") (SPEC.md §7.9).
    MappedRamVersion {
        /// The version found.
        version: u32,
    },
    /// A mapped-ram header whose page size is not the target page size (SPEC.md §7.9).
    MappedRamPageSize {
        /// The header's page size.
        page_size: u64,
        /// The target page size.
        expected: u64,
    },
    /// A mapped-ram pages region not aligned to the target page ("region has bad
    /// alignment") (SPEC.md §7.9).
    MappedRamPagesUnaligned {
        /// The header's `pages_offset`.
        pages_offset: u64,
        /// The target page size.
        page_size: u64,
    },
    /// A mapped-ram region starting before what precedes it ends: the bitmap before the end
    /// of its header (going backwards into the stream), or the pages before the end of the
    /// bitmap (overlapping) (SPEC.md §7.9).
    MappedRamRegionOrder {
        /// The region.
        region: MappedRamRegion,
        /// Its file offset.
        start: u64,
        /// The file offset where what precedes it ends.
        previous_end: u64,
    },
    /// A mapped-ram region ending past the end of the input (SPEC.md §7.9).
    MappedRamRegionBeyondEnd {
        /// The region.
        region: MappedRamRegion,
        /// The file offset where it ends.
        end: u64,
        /// The file offset where the input ends.
        input_end: u64,
    },
    /// A page record (PAGE, ZERO, XBZRLE), HOOK or 0x200 in a mapped-ram file, whose pages
    /// are at file offsets ("Unexpected RAM flags") (SPEC.md §7.9).
    MappedRamRecord {
        /// The flags that are not allowed.
        flags: RamFlags,
    },
    /// A FULL device section whose footer was not found within the limit.
    DeviceSectionUnterminated {
        /// The limit in bytes.
        limit: usize,
    },
    /// Device sections cannot be framed when section footers are off.
    DeviceSectionWithoutFooters,
    /// A VMDESCRIPTION longer than the limit.
    VmdescTooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// Bytes after the end of the stream.
    TrailingBytes {
        /// How many bytes follow.
        count: usize,
    },
    /// A multifd initial packet or packet that does not start with the multifd magic
    /// `0x11223344` ("multifd: received packet magic %x expected %x") (SPEC.md §14.1, §14.2).
    MultifdMagic {
        /// The be32 found.
        found: u32,
    },
    /// A multifd initial packet or packet with a version other than 1 ("multifd: received
    /// packet version %u expected %u") (SPEC.md §14.1, §14.2).
    MultifdVersion {
        /// The be32 found.
        found: u32,
    },
    /// A multifd channel whose uuid is not the migration's ("multifd: received uuid '%s'
    /// and expected uuid '%s' for channel %hhd"): a channel of another migration
    /// (SPEC.md §14.1, §14.6).
    MultifdUuid {
        /// The uuid the channel sent.
        found: [u8; 16],
        /// The migration's uuid.
        expected: [u8; 16],
    },
    /// A multifd channel id not below the number of channels (SPEC.md §14.1, §14.6).
    MultifdChannelId {
        /// The id found.
        id: u8,
        /// The number of channels.
        channels: u8,
    },
    /// A second multifd channel with an id already taken ("multifd: received id '%d'
    /// already setup'") (SPEC.md §14.6).
    MultifdDuplicateChannel {
        /// The id.
        id: u8,
    },
    /// A RAM packet whose `pages_alloc` exceeds the pages of one packet
    /// (`MULTIFD_PACKET_SIZE` over the page size) (SPEC.md §14.3).
    MultifdPagesAlloc {
        /// The `pages_alloc` found.
        pages_alloc: u32,
        /// The pages of one packet.
        limit: u32,
    },
    /// A RAM packet with more normal pages than `pages_alloc` (SPEC.md §14.3).
    MultifdNormalPages {
        /// The `normal_pages` found.
        normal_pages: u32,
        /// The packet's `pages_alloc`.
        pages_alloc: u32,
    },
    /// A RAM packet whose zero pages do not fit beside its normal pages in `pages_alloc`
    /// (SPEC.md §14.3).
    MultifdZeroPages {
        /// The `zero_pages` found.
        zero_pages: u32,
        /// `pages_alloc - normal_pages`.
        room: u32,
    },
    /// A RAM packet with pages whose `next_packet_size` is not its normal pages' size
    /// (SPEC.md §14.3).
    MultifdNextPacketSize {
        /// The `next_packet_size` found.
        found: u32,
        /// `normal_pages` times the page size.
        expected: u64,
    },
    /// A RAM packet with pages whose `ramblock` field has no NUL in its 256 bytes
    /// (SPEC.md §14.3).
    MultifdRamblockUnterminated,
    /// A multifd page offset that is not a multiple of the page size (SPEC.md §14.3).
    UnalignedOffset {
        /// The offset.
        offset: u64,
        /// The page size.
        page_size: usize,
    },
    /// A multifd packet compressed with a method ramstream does not decompress (QEMU's
    /// `multifd-compression` other than `none`) (SPEC.md §14.2).
    MultifdCompression {
        /// The method (the flags under the compression mask).
        method: Compression,
    },
    /// A multifd device-state packet (QEMU 10.0+, VFIO with `x-migration-multifd-transfer`):
    /// device state ramstream does not load (SPEC.md §14.4).
    MultifdDeviceState {
        /// The device's idstr (up to its NUL, lossy UTF-8).
        idstr: String,
        /// Its instance id.
        instance_id: u32,
        /// The announced length of its state.
        len: u32,
    },
    /// A multifd packet with flag bits no QEMU version up to 11.1 assigns (SPEC.md §14.2).
    MultifdUnknownFlags {
        /// The flags.
        flags: PacketFlags,
    },
    /// A multifd channel decoder configured with a packet size that is not a positive
    /// multiple of the page size, or holds more pages than
    /// `Limits::max_multifd_packet_pages` (SPEC.md §10.1, §14.3).
    MultifdPacketPages {
        /// The packet size.
        packet_size: u32,
        /// The page size.
        page_size: usize,
        /// The limit on pages per packet.
        limit: u32,
    },
    /// The decoder was used after it reported an error.
    Poisoned,
    /// An encoder was asked to write a record it cannot represent.
    Encode {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            Truncated { needed } => write!(f, "stream truncated: at least {needed} more byte(s) needed"),
            EndedBeforeEof => write!(f, "stream ended before its EOF section"),
            BadMagic { found } => write!(
                f,
                "bad magic {found:#010x}, expected {:#010x} (\"QEVM\")",
                ramstream_spec::stream::QEVM_MAGIC
            ),
            ObsoleteVersion => write!(f, "stream version 2 is obsolete (QEMU: \"SaveVM v2 format is obsolete\")"),
            UnsupportedVersion { found } => write!(f, "unsupported stream version {found}, expected 3"),
            ConfigurationMissing => write!(f, "configuration section missing"),
            MachineTypeTooLong { len, limit } => write!(f, "machine type length {len} exceeds the limit {limit}"),
            NotUtf8 { what } => write!(f, "{what} is not UTF-8"),
            UnknownSubsection { name } => write!(f, "unknown configuration subsection {name:?}"),
            SubsectionVersion { name, version } => write!(f, "configuration subsection {name:?} has version {version}, expected 1"),
            StraySubsection { name } => write!(f, "subsection {name:?} does not belong to the configuration"),
            BadPageBits { bits } => write!(f, "target page bits {bits} outside the supported range 10..=16"),
            TooManyCapabilities { count } => write!(f, "{count} capabilities exceed the limit"),
            UnknownCapability { name } => write!(f, "received unknown capability {name:?}"),
            UnsupportedCapability { name } if name == ramstream_spec::config::capability::MAPPED_RAM => write!(f, "capability {name:?} is not supported by ramstream on a stream: this is a mapped-ram file (QEMU `migrate file:` with capability mapped-ram), whose pages lie at fixed file offsets; read it with `ramstream inspect FILE` or `ramstream extract FILE` (DecoderOptions::mapped_ram)"),
            UnsupportedCapability { name } => write!(f, "capability {name:?} is not supported by ramstream"),
            UnknownSectionType { byte } => write!(f, "unknown section type {byte:#04x}"),
            UnexpectedSectionType { found } => write!(f, "section type {found} not allowed here"),
            UnknownSectionId { section_id } => write!(f, "unknown section id {section_id}"),
            DuplicateSectionId { section_id } => write!(f, "section id {section_id} started twice"),
            UnsupportedSection { idstr } => write!(f, "iterative section {idstr:?} is not supported (only \"ram\")"),
            RamSectionVersion { version, instance_id } => write!(f, "ram section version {version} instance {instance_id}, expected version 4 instance 0"),
            MissingFooter { section_id, found } => write!(f, "missing section footer for section {section_id} (found byte {found:#04x})"),
            FooterMismatch { expected, found } => write!(f, "section footer names section {found}, expected {expected}"),
            UnknownCommand { command, len } => write!(f, "unknown command {command} (len {len})"),
            CommandLength { command, len } => write!(f, "command {command} with bad length {len}"),
            UnknownFlags { flags } => write!(f, "unknown combination of migration flags: {:#x} ({flags})", flags.bits()),
            UnexpectedCompressedPage => write!(f, "unexpected compressed page (flag 0x100: the compress capability is not supported, and was removed in QEMU 9.1)"),
            RdmaHook => write!(f, "RDMA hook record (flag 0x80) on a non-RDMA stream"),
            PagesOnMultifdChannels => write!(f, "MULTIFD_FLUSH record: the source used capability multifd, whose pages travel on other channels; this stream alone does not hold the RAM"),
            ContinueWithoutBlock => write!(f, "page record with CONTINUE but no previous block"),
            UnknownBlock { idstr } => write!(f, "unknown RAM block {idstr:?}"),
            OffsetBeyondBlock { offset, used_length } => write!(f, "page offset {offset:#x} beyond block used length {used_length:#x}"),
            NonZeroFill { fill } => write!(f, "zero page with fill byte {fill:#04x} (rejected as QEMU 8.2+ does)"),
            MemSizeMismatch { total, sum } => write!(f, "MEM_SIZE block lengths add up to {sum:#x}, not the announced total {total:#x}"),
            BadUsedLength { used_length } => write!(f, "RAM block used length {used_length:#x} is zero or not page aligned"),
            DuplicateBlock { idstr } => write!(f, "RAM block {idstr:?} listed twice"),
            TooManyBlocks { limit } => write!(f, "more than {limit} RAM blocks"),
            RamTotalTooLarge { total, limit } => write!(f, "RAM total {total:#x} exceeds the limit {limit:#x}"),
            XbzrleEncoding { found } => write!(f, "XBZRLE record with encoding {found:#04x}, expected 0x01 (wrong compression)"),
            XbzrleLength { len, page_size } => write!(f, "XBZRLE length {len} exceeds the page size {page_size} (len overflow)"),
            Xbzrle(e) => write!(f, "XBZRLE decode error: {e}"),
            DialectRejects { dialect, reason } => write!(f, "dialect {dialect}: {reason}"),
            BalloonNotAnnounced => write!(f, "balloon record, but the configuration did not announce capability \"x-ramstream-balloon-v1\""),
            BalloonWord { word } => write!(f, "balloon record word {word:#x}: offset bits or flags not allowed"),
            BalloonBeforeMemSize => write!(f, "balloon record before the MEM_SIZE record"),
            BalloonVersion { found, expected } => write!(f, "balloon record version {found}, expected {expected}"),
            BalloonKind { found } => write!(f, "balloon record kind {found:#04x}, expected 0 (full map) or 1 (incremental)"),
            BalloonTooManyRuns { count, limit } => write!(f, "{count} balloon runs exceed the limit {limit}"),
            BalloonFullMapDeflate { count } => write!(f, "full-map balloon record with {count} deflate run(s)"),
            BalloonEmptyRun { start } => write!(f, "balloon run of zero pages at page {start}"),
            BalloonRunOutOfRange { start, count, pages } => write!(f, "balloon run {start}+{count} ends past the {pages} pages it may cover"),
            BalloonRunOrder { start, previous_end } => write!(f, "balloon run at page {start} starts before the previous run's end {previous_end} (unsorted or overlapping)"),
            BalloonRunsAdjacent { start } => write!(f, "balloon run at page {start} is adjacent to the previous run"),
            BalloonInflateDeflateOverlap { page } => write!(f, "page {page} is both inflated and deflated"),
            KolheStartAfterLimit { start, limit } => write!(f, "kolhe-2016 balloon start {start} after limit {limit}"),
            KolheLimitBeyondBitmap { limit, bitmap_pages } => write!(f, "kolhe-2016 balloon limit {limit} past the bitmap of {bitmap_pages} pages"),
            KolheBitmapSize { bitmap_pages, ram_pages } => write!(f, "kolhe-2016 balloon bitmap of {bitmap_pages} pages, fewer than the {ram_pages} 4 KiB pages MEM_SIZE announced"),
            KolheTerminator { start, bitmap_pages } => write!(f, "kolhe-2016 terminator pair starts at {start}, expected the bitmap size {bitmap_pages}"),
            MappedRamHeaderTruncated { got } => write!(f, "mapped-ram header cut short: {got} of {} bytes", ramstream_spec::mapped_ram::HEADER_LEN),
            MappedRamVersion { version } => write!(f, "mapped-ram header version {version}, expected at most {}", ramstream_spec::mapped_ram::HEADER_VERSION),
            MappedRamPageSize { page_size, expected } => write!(f, "mapped-ram header page size {page_size}, expected the target page size {expected}"),
            MappedRamPagesUnaligned { pages_offset, page_size } => write!(f, "mapped-ram pages region at {pages_offset:#x} is not aligned to the page size {page_size}"),
            MappedRamRegionOrder { region, start, previous_end } => write!(f, "mapped-ram {region} region at {start:#x} starts before the end of what precedes it ({previous_end:#x})"),
            MappedRamRegionBeyondEnd { region, end, input_end } => write!(f, "mapped-ram {region} region ends at {end:#x}, beyond the end of the input at {input_end:#x}"),
            MappedRamRecord { flags } => write!(f, "unexpected RAM flags in a mapped-ram file: {:#x} ({flags}); its pages are at file offsets, not records", flags.bits()),
            DeviceSectionUnterminated { limit } => write!(f, "device section footer not found within {limit} bytes"),
            DeviceSectionWithoutFooters => write!(f, "device sections cannot be framed without section footers"),
            VmdescTooLarge { len, limit } => write!(f, "VMDESCRIPTION of {len} bytes exceeds the limit {limit}"),
            TrailingBytes { count } => write!(f, "{count} byte(s) after the end of the stream"),
            MultifdMagic { found } => write!(f, "multifd packet magic {found:#010x}, expected {:#010x}", ramstream_spec::multifd::MAGIC),
            MultifdVersion { found } => write!(f, "multifd packet version {found}, expected {}", ramstream_spec::multifd::VERSION),
            MultifdUuid { found, expected } => write!(f, "multifd channel of another migration: uuid {}, expected {}", Uuid(found), Uuid(expected)),
            MultifdChannelId { id, channels } => write!(f, "multifd channel id {id} out of range: the migration has {channels} channel(s)"),
            MultifdDuplicateChannel { id } => write!(f, "a second multifd channel with id {id}"),
            MultifdPagesAlloc { pages_alloc, limit } => write!(f, "multifd packet with pages_alloc {pages_alloc}, more than the {limit} pages of a packet"),
            MultifdNormalPages { normal_pages, pages_alloc } => write!(f, "multifd packet with {normal_pages} normal pages, more than its pages_alloc {pages_alloc}"),
            MultifdZeroPages { zero_pages, room } => write!(f, "multifd packet with {zero_pages} zero pages, more than the {room} left beside its normal pages"),
            MultifdNextPacketSize { found, expected } => write!(f, "multifd packet with next_packet_size {found}, expected {expected} (its normal pages)"),
            MultifdRamblockUnterminated => write!(f, "multifd packet ramblock field without a NUL in its 256 bytes"),
            UnalignedOffset { offset, page_size } => write!(f, "page offset {offset:#x} not a multiple of the page size {page_size}"),
            MultifdCompression { method } => match method.qemu_name() {
                Some(name) => write!(f, "multifd packet compressed with {name} (multifd-compression={name}, flags {:#x}): ramstream does not decompress multifd channels; migrate with multifd-compression none", method.0),
                None => write!(f, "multifd packet with unknown compression bits {:#x}", method.0),
            },
            MultifdDeviceState { idstr, instance_id, len } => write!(f, "multifd device-state packet for {idstr:?} instance {instance_id} ({len} bytes): device state on multifd channels (QEMU 10.0+, VFIO x-migration-multifd-transfer) is not supported"),
            MultifdUnknownFlags { flags } => write!(f, "multifd packet with unknown flags {:#x} ({flags})", flags.bits()),
            MultifdPacketPages { packet_size, page_size, limit } => write!(f, "multifd packet size {packet_size} is not a positive multiple of the page size {page_size} of at most {limit} pages"),
            Poisoned => write!(f, "the decoder already failed"),
            Encode { reason } => write!(f, "cannot encode: {reason}"),
        }
    }
}

/// A uuid in its usual text form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`), as QEMU prints it.
struct Uuid<'a>(&'a [u8; 16]);

impl fmt::Display for Uuid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
