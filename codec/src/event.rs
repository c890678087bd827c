//! The typed events the decoder returns and the encoder writes: one [`Event`] over the
//! record families' own types (`ram` records, balloon records), and the top-level stream's
//! items (configuration, commands, section headers, device sections).

use ramstream_spec::ram::{self, RamFlags};
use ramstream_spec::stream::{Command, SectionType};

use crate::balloon::BalloonRecord;
use crate::kind::RecordKind;
use crate::ram::{BareRecord, MemSize, PageRecord, XbzrleDelta, ZeroPage};

/// The configuration section (SPEC.md §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration<'a> {
    /// The machine type name, e.g. `pc-i440fx-7.2`.
    pub machine_type: &'a str,
    /// `configuration/target-page-bits`, when present.
    pub target_page_bits: Option<u32>,
    /// `configuration/capabilities`, when present (`Some(vec![])` if present and empty).
    pub capabilities: Option<Vec<&'a str>>,
    /// `configuration/uuid`, when present.
    pub uuid: Option<[u8; 16]>,
}

impl Configuration<'_> {
    /// Whether the capabilities subsection lists `name`.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .as_ref()
            .is_some_and(|c| c.contains(&name))
    }
}

/// A command section (SPEC.md §2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRecord<'a> {
    /// The command id.
    pub command: Command,
    /// Its payload, borrowed.
    pub payload: &'a [u8],
}

/// A START or FULL section header (SPEC.md §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader<'a> {
    /// START or FULL.
    pub section_type: SectionType,
    /// The source's section id.
    pub section_id: u32,
    /// The handler's idstr, e.g. `ram`, `timer`, `0000:00:01.0/piix4_pm`.
    pub idstr: &'a str,
    /// The instance id.
    pub instance_id: u32,
    /// The handler's version.
    pub version_id: u32,
}

impl SectionHeader<'static> {
    /// The START header of the `ram` section with `section_id`: idstr `ram`, instance 0,
    /// version 4 (SPEC.md §6), the spec crate's constants.
    ///
    /// ```
    /// use ramstream_codec::SectionHeader;
    /// let h = SectionHeader::ram_start(2);
    /// assert_eq!((h.idstr, h.instance_id, h.version_id), ("ram", 0, 4));
    /// ```
    pub const fn ram_start(section_id: u32) -> Self {
        SectionHeader {
            section_type: SectionType::START,
            section_id,
            idstr: ram::SECTION_IDSTR,
            instance_id: ram::SECTION_INSTANCE_ID,
            version_id: ram::SECTION_VERSION,
        }
    }
}

/// A FULL device section: header and its verbatim body (SPEC.md §2.3, §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSection<'a> {
    /// The section header.
    pub header: SectionHeader<'a>,
    /// The stream offset of the body's first byte.
    pub body_offset: u64,
    /// The vmstate body, borrowed, byte-exact.
    pub body: &'a [u8],
}

/// One decoded item of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The stream header (`QEVM`, version 3).
    Header {
        /// The version (3).
        version: u32,
    },
    /// The configuration section.
    Configuration(Configuration<'a>),
    /// A command section.
    Command(CommandRecord<'a>),
    /// A START section header of the `ram` section.
    SectionStart(SectionHeader<'a>),
    /// A PART or END section header.
    SectionPart {
        /// PART or END.
        section_type: SectionType,
        /// The section id.
        section_id: u32,
    },
    /// A MEM_SIZE record.
    MemSize(MemSize),
    /// A PAGE record.
    Page(PageRecord<'a>),
    /// A ZERO record.
    Zero(ZeroPage),
    /// An XBZRLE record.
    Xbzrle(XbzrleDelta<'a>),
    /// An EOS record.
    Eos(BareRecord),
    /// A MULTIFD_FLUSH record (dialect qemu-8.1+).
    MultifdFlush(BareRecord),
    /// A balloon record (dialects kolhe-2016 and ramstream-balloon-v1).
    Balloon(BalloonRecord<'a>),
    /// A section footer.
    Footer {
        /// The section id it names.
        section_id: u32,
    },
    /// A FULL device section with its body (its footer follows as a [`Event::Footer`]).
    Device(DeviceSection<'a>),
    /// The EOF section.
    Eof,
    /// The VMDESCRIPTION trailer's JSON, borrowed.
    VmDescription(&'a [u8]),
}

impl Event<'_> {
    /// The record kind of this event.
    pub fn kind(&self) -> RecordKind {
        match self {
            Event::Header { .. } => RecordKind::Header,
            Event::Configuration(_) => RecordKind::Configuration,
            Event::Command(_) => RecordKind::Command,
            Event::SectionStart(_) | Event::SectionPart { .. } => RecordKind::SectionHeader,
            Event::MemSize(_) => RecordKind::MemSize,
            Event::Page(_) => RecordKind::Page,
            Event::Zero(_) => RecordKind::Zero,
            Event::Xbzrle(_) => RecordKind::Xbzrle,
            Event::Eos(_) => RecordKind::Eos,
            Event::MultifdFlush(_) => RecordKind::MultifdFlush,
            Event::Balloon(_) => RecordKind::Balloon,
            Event::Footer { .. } => RecordKind::Footer,
            Event::Device(_) => RecordKind::Device,
            Event::Eof => RecordKind::Eof,
            Event::VmDescription(_) => RecordKind::VmDescription,
        }
    }

    /// The flags of a `ram` record event, `None` for other events.
    pub fn ram_flags(&self) -> Option<RamFlags> {
        let cont = |c: bool| {
            if c {
                RamFlags::CONTINUE
            } else {
                RamFlags::NONE
            }
        };
        Some(match self {
            Event::Page(p) => RamFlags::PAGE | cont(p.continued),
            Event::Zero(z) => RamFlags::ZERO | cont(z.continued),
            Event::Xbzrle(x) => RamFlags::XBZRLE | cont(x.continued),
            Event::Eos(_) => RamFlags::EOS,
            Event::Balloon(BalloonRecord::V1(v)) => RamFlags::X200 | cont(v.continued),
            Event::MultifdFlush(_) | Event::Balloon(_) => RamFlags::X200,
            Event::MemSize(_) => RamFlags::MEM_SIZE,
            _ => return None,
        })
    }
}
