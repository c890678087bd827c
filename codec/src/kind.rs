//! What an event or an error concerns: the kind of record, and the region of a mapped-ram
//! file. Nothing here knows a record's layout: [`Error`](crate::Error) names these, and so do
//! the record families that [`Error`](crate::Error) serves.

use core::fmt;

/// The kind of record an event or error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// The 8-byte stream header.
    Header,
    /// The configuration section.
    Configuration,
    /// A command section.
    Command,
    /// A section header (START, PART, END or FULL).
    SectionHeader,
    /// A section footer.
    Footer,
    /// A `ram` MEM_SIZE record.
    MemSize,
    /// A `ram` PAGE record.
    Page,
    /// A `ram` ZERO record.
    Zero,
    /// A `ram` XBZRLE record.
    Xbzrle,
    /// A `ram` EOS record.
    Eos,
    /// A `ram` record word not yet classified.
    RamRecord,
    /// A `ram` MULTIFD_FLUSH record (QEMU 8.1+ dialect).
    MultifdFlush,
    /// A `ram` balloon record (kolhe-2016 or ramstream-balloon-v1 dialect).
    Balloon,
    /// A FULL device section.
    Device,
    /// The EOF section.
    Eof,
    /// The VMDESCRIPTION trailer.
    VmDescription,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Header => "stream header",
            RecordKind::Configuration => "configuration section",
            RecordKind::Command => "command",
            RecordKind::SectionHeader => "section header",
            RecordKind::Footer => "section footer",
            RecordKind::MemSize => "ram MEM_SIZE record",
            RecordKind::Page => "ram PAGE record",
            RecordKind::Zero => "ram ZERO record",
            RecordKind::Xbzrle => "ram XBZRLE record",
            RecordKind::Eos => "ram EOS record",
            RecordKind::RamRecord => "ram record",
            RecordKind::MultifdFlush => "ram MULTIFD_FLUSH record",
            RecordKind::Balloon => "ram BALLOON record",
            RecordKind::Device => "device section",
            RecordKind::Eof => "EOF section",
            RecordKind::VmDescription => "VMDESCRIPTION trailer",
        })
    }
}

/// One region a mapped-ram header places in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MappedRamRegion {
    /// The block's bitmap: one bit per target page, set where the page has data.
    Bitmap,
    /// The block's pages: page `i` at `pages_offset + i * page_size`.
    Pages,
}

impl fmt::Display for MappedRamRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappedRamRegion::Bitmap => "bitmap",
            MappedRamRegion::Pages => "pages",
        })
    }
}
