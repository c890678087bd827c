//! A serialisable summary of a stream: what `ramstream inspect` prints and what the
//! conformance snapshots pin.

use std::collections::BTreeMap;

use crate::balloon::{BalloonMap, BalloonRecord, KolheBalloon};
use crate::event::Event;
use crate::ram::RamBlock;
use ramstream_spec::stream::SectionType;

/// Record counts of the `ram` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RecordCounts {
    /// MEM_SIZE records.
    pub mem_size: u64,
    /// PAGE records.
    pub page: u64,
    /// ZERO records.
    pub zero: u64,
    /// XBZRLE records.
    pub xbzrle: u64,
    /// EOS records.
    pub eos: u64,
    /// Page records that used CONTINUE.
    #[cfg_attr(feature = "serde", serde(rename = "continue"))]
    pub continued: u64,
    /// MULTIFD_FLUSH records.
    pub multifd_flush: u64,
    /// Balloon records.
    pub balloon: u64,
}

/// Per-block page record counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BlockCounts {
    /// PAGE records.
    pub page: u64,
    /// ZERO records.
    pub zero: u64,
    /// XBZRLE records.
    pub xbzrle: u64,
}

/// A RAM block as summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BlockSummary {
    /// The idstr.
    pub idstr: String,
    /// The used length.
    pub used_length: u64,
    /// The `mr_addr` field, when present.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub mr_addr: Option<u64>,
    /// The `page_size` field, when present.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub page_size: Option<u64>,
}

impl From<&RamBlock> for BlockSummary {
    fn from(b: &RamBlock) -> Self {
        BlockSummary {
            idstr: b.idstr.clone(),
            used_length: b.used_length,
            mr_addr: b.mr_addr,
            page_size: b.page_size,
        }
    }
}

/// The `ram` part of a summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RamSummary {
    /// The blocks of the last MEM_SIZE.
    pub blocks: Vec<BlockSummary>,
    /// `ram` sections (START + PART + END).
    pub sections: u64,
    /// PART sections.
    pub part_sections: u64,
    /// Record counts.
    pub records: RecordCounts,
    /// Page payload bytes (PAGE records).
    pub page_bytes: u64,
    /// XBZRLE delta bytes.
    pub xbzrle_bytes: u64,
    /// Per-block counts, by idstr.
    pub per_block: BTreeMap<String, BlockCounts>,
}

impl RamSummary {
    /// The counts of block `index` of the last MEM_SIZE, `None` for an index it did not
    /// list. Found by name without allocating: the name is cloned only the first time the
    /// block is counted.
    fn block_counts(&mut self, index: usize) -> Option<&mut BlockCounts> {
        let name = self.blocks.get(index)?.idstr.as_str();
        if !self.per_block.contains_key(name) {
            self.per_block
                .insert(name.to_string(), BlockCounts::default());
        }
        self.per_block.get_mut(name)
    }
}

/// A device (FULL) section as summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct DeviceSummary {
    /// The idstr.
    pub idstr: String,
    /// The instance id.
    pub instance_id: u32,
    /// The version id.
    pub version_id: u32,
    /// The section id.
    pub section_id: u32,
    /// Stream offset of the body.
    pub offset: u64,
    /// Body length.
    pub length: u64,
}

/// A command as summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CommandSummary {
    /// The command name (or hex id).
    pub command: String,
    /// Payload length.
    pub len: usize,
    /// Stream offset.
    pub offset: u64,
}

/// One balloon record as summarised (SPEC.md §9).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BalloonRecordSummary {
    /// Stream offset of the record word.
    pub offset: u64,
    /// `full-map`, `incremental`, `kolhe-2016` or `kolhe-2016 disabled`.
    pub kind: String,
    /// The block (v1 records).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub block: Option<String>,
    /// Whether the record used CONTINUE (v1 records).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "core::ops::Not::not"))]
    pub continued: bool,
    /// The bitmap size, start and limit (kolhe-2016 records).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub kolhe: Option<KolheRange>,
    /// Inflate runs (kolhe-2016: all runs).
    pub inflate_runs: u64,
    /// Pages in the inflate runs.
    pub inflate_pages: u64,
    /// Deflate runs.
    pub deflate_runs: u64,
    /// Pages in the deflate runs.
    pub deflate_pages: u64,
}

/// The header fields of a kolhe-2016 record (SPEC.md §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct KolheRange {
    /// The bitmap size in 4 KiB pages.
    pub bitmap_pages: u64,
    /// The first page covered.
    pub start: u64,
    /// The loop bound.
    pub limit: u64,
}

/// Balloon records and the balloon map they build (SPEC.md §9).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BalloonSummary {
    /// The dialect the stream was read with, when the caller set it (`ramstream inspect`
    /// does); otherwise the dialect of the first balloon record.
    pub dialect: Option<String>,
    /// The balloon records, in order.
    pub records: Vec<BalloonRecordSummary>,
    /// Ballooned target pages per block after the last record, for every block a record
    /// touched.
    pub ballooned_pages: BTreeMap<String, u64>,
    #[cfg_attr(feature = "serde", serde(skip))]
    map: BalloonMap,
}

impl BalloonSummary {
    /// Whether there is nothing to show: no dialect set and no record.
    pub fn is_empty(&self) -> bool {
        self.dialect.is_none() && self.records.is_empty()
    }

    /// The balloon map after the records seen so far.
    pub fn map(&self) -> &BalloonMap {
        &self.map
    }

    fn observe(&mut self, offset: u64, rec: &BalloonRecord<'_>) {
        if self.dialect.is_none() {
            self.dialect = Some(
                match rec {
                    BalloonRecord::Kolhe(_) => ramstream_spec::Dialect::Kolhe2016,
                    BalloonRecord::V1(_) => ramstream_spec::Dialect::RamstreamBalloonV1,
                }
                .name()
                .to_string(),
            );
        }
        let mut s = BalloonRecordSummary {
            offset,
            kind: rec.kind_name().to_string(),
            block: None,
            continued: false,
            kolhe: None,
            inflate_runs: 0,
            inflate_pages: 0,
            deflate_runs: 0,
            deflate_pages: 0,
        };
        match rec {
            BalloonRecord::V1(v) => {
                s.block = self.map.idstr(v.block).map(str::to_string);
                s.continued = v.continued;
                s.inflate_runs = v.inflate.len() as u64;
                s.inflate_pages = v.inflate.pages();
                s.deflate_runs = v.deflate.len() as u64;
                s.deflate_pages = v.deflate.pages();
            }
            BalloonRecord::Kolhe(KolheBalloon::Bitmap(k)) => {
                s.kolhe = Some(KolheRange {
                    bitmap_pages: k.bitmap_pages,
                    start: k.start,
                    limit: k.limit,
                });
                s.inflate_runs = k.runs.len() as u64;
                s.inflate_pages = k.runs.pages();
            }
            BalloonRecord::Kolhe(KolheBalloon::Disabled) => {}
        }
        self.records.push(s);
        // The decoder checked the record against the same block list; a map error can only
        // mean the summary saw no MEM_SIZE, and then there is nothing to count.
        if let Ok(touched) = self.map.apply(rec) {
            let mut blocks: Vec<usize> = touched.iter().map(|r| r.block).collect();
            if let BalloonRecord::V1(v) = rec {
                blocks.push(v.block);
            }
            for b in blocks {
                if let Some(name) = self.map.idstr(b) {
                    self.ballooned_pages.insert(name.to_string(), 0);
                }
            }
        }
        for i in 0..self.map.block_count() {
            let Some(name) = self.map.idstr(i) else {
                continue;
            };
            if let Some(n) = self.ballooned_pages.get_mut(name) {
                *n = self.map.ballooned_pages(i);
            }
        }
    }
}

/// A stream summary built from events.
///
/// ```
/// use ramstream_codec::{decode_all, DecoderOptions, summary::StreamSummary};
/// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut s = StreamSummary::default();
/// for (offset, ev) in decode_all(stream, DecoderOptions::default()).unwrap() {
///     s.observe(offset, &ev);
/// }
/// assert_eq!(s.machine_type.as_deref(), Some("pc-i440fx-7.2"));
/// assert!(s.eof);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StreamSummary {
    /// The stream version (3).
    pub stream_version: Option<u32>,
    /// The machine type.
    pub machine_type: Option<String>,
    /// Capabilities listed by the configuration.
    pub capabilities: Vec<String>,
    /// Target page bits from the configuration, when present.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub target_page_bits: Option<u32>,
    /// Commands, in order.
    pub commands: Vec<CommandSummary>,
    /// The `ram` section.
    pub ram: RamSummary,
    /// Device sections, in order.
    pub devices: Vec<DeviceSummary>,
    /// Whether the EOF section was seen.
    pub eof: bool,
    /// Length of the VMDESCRIPTION JSON, when present.
    pub vmdesc_len: Option<u64>,
    /// Total bytes decoded.
    pub stream_len: u64,
    /// Balloon records (SPEC.md §9); left out of the JSON when empty.
    #[cfg_attr(
        feature = "serde",
        serde(skip_serializing_if = "BalloonSummary::is_empty")
    )]
    pub balloon: BalloonSummary,
}

/// The oldest QEMU version that can have written a stream, and the evidence (SPEC.md §8.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WriterEvidence {
    /// (major, minor).
    pub version: (u16, u16),
    /// What in the stream shows it, e.g. `command SWITCHOVER_START at 0x9354e`.
    pub because: String,
}

/// The QEMU version a versioned machine type belongs to: `pc-i440fx-10.0` and `pc-q35-10.0`
/// are 10.0's (any `NAME-MAJOR.MINOR`); `None` for unversioned names.
pub fn machine_type_version(machine_type: &str) -> Option<(u16, u16)> {
    let (_, v) = machine_type.rsplit_once('-')?;
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

impl StreamSummary {
    /// The oldest QEMU version that can have written this stream, from what it holds: the
    /// machine type's version, command `SWITCHOVER_START` (10.0), a MULTIFD_FLUSH record
    /// (8.1), capability `mapped-ram` (9.0). `None` when nothing versioned was seen. The
    /// writer may be newer: QEMU 11.1 at machine type `pc-i440fx-7.2` writes what 7.2 does.
    ///
    /// ```
    /// use ramstream_codec::summary::StreamSummary;
    /// let mut s = StreamSummary::default();
    /// s.machine_type = Some("pc-q35-10.0".into());
    /// assert_eq!(s.min_writer_version().unwrap().version, (10, 0));
    /// ```
    pub fn min_writer_version(&self) -> Option<WriterEvidence> {
        use ramstream_spec::config::capability;
        use ramstream_spec::stream::Command;
        let mut found: Vec<WriterEvidence> = Vec::new();
        if let Some(mt) = &self.machine_type {
            if let Some(version) = machine_type_version(mt) {
                found.push(WriterEvidence {
                    version,
                    because: format!("machine type {mt}"),
                });
            }
        }
        let switchover = format!("{:?}", Command::SWITCHOVER_START);
        if let Some(c) = self.commands.iter().find(|c| c.command == switchover) {
            found.push(WriterEvidence {
                version: (10, 0),
                because: format!("command {} at {:#x}", c.command, c.offset),
            });
        }
        if self.ram.records.multifd_flush > 0 {
            found.push(WriterEvidence {
                version: (8, 1),
                because: "MULTIFD_FLUSH records".to_string(),
            });
        }
        if self
            .capabilities
            .iter()
            .any(|c| c == capability::MAPPED_RAM)
        {
            found.push(WriterEvidence {
                version: (9, 0),
                because: format!("capability {}", capability::MAPPED_RAM),
            });
        }
        // The newest evidence wins; on a tie, the first found (the machine type).
        found.into_iter().rev().max_by_key(|e| e.version)
    }

    /// Counts one event that started at stream `offset`.
    pub fn observe(&mut self, offset: u64, ev: &Event<'_>) {
        match ev {
            Event::Header { version } => self.stream_version = Some(*version),
            Event::Configuration(c) => {
                self.machine_type = Some(c.machine_type.to_string());
                self.capabilities = c
                    .capabilities
                    .iter()
                    .flatten()
                    .map(|s| s.to_string())
                    .collect();
                self.target_page_bits = c.target_page_bits;
            }
            Event::Command(c) => self.commands.push(CommandSummary {
                command: format!("{:?}", c.command),
                len: c.payload.len(),
                offset,
            }),
            Event::SectionStart(_) => self.ram.sections += 1,
            Event::SectionPart { section_type, .. } => {
                self.ram.sections += 1;
                if *section_type == SectionType::PART {
                    self.ram.part_sections += 1;
                }
            }
            Event::MemSize(ms) => {
                self.ram.records.mem_size += 1;
                self.ram.blocks = ms.blocks.iter().map(BlockSummary::from).collect();
                let bits = self
                    .target_page_bits
                    .unwrap_or(ramstream_spec::ram::TARGET_PAGE_BITS_X86);
                self.balloon.map = BalloonMap::new(&ms.blocks, bits);
            }
            Event::Page(p) => {
                self.ram.records.page += 1;
                self.ram.page_bytes += p.data.len() as u64;
                self.ram.records.continued += p.continued as u64;
                if let Some(c) = self.ram.block_counts(p.addr.block) {
                    c.page += 1;
                }
            }
            Event::Zero(z) => {
                self.ram.records.zero += 1;
                self.ram.records.continued += z.continued as u64;
                if let Some(c) = self.ram.block_counts(z.addr.block) {
                    c.zero += 1;
                }
            }
            Event::Xbzrle(x) => {
                self.ram.records.xbzrle += 1;
                self.ram.xbzrle_bytes += x.delta.len() as u64;
                self.ram.records.continued += x.continued as u64;
                if let Some(c) = self.ram.block_counts(x.addr.block) {
                    c.xbzrle += 1;
                }
            }
            Event::Eos(_) => self.ram.records.eos += 1,
            Event::MultifdFlush(_) => self.ram.records.multifd_flush += 1,
            Event::Balloon(b) => {
                self.ram.records.balloon += 1;
                self.balloon.observe(offset, b);
            }
            Event::Footer { .. } => {}
            Event::Device(d) => self.devices.push(DeviceSummary {
                idstr: d.header.idstr.to_string(),
                instance_id: d.header.instance_id,
                version_id: d.header.version_id,
                section_id: d.header.section_id,
                offset: d.body_offset,
                length: d.body.len() as u64,
            }),
            Event::Eof => self.eof = true,
            Event::VmDescription(j) => self.vmdesc_len = Some(j.len() as u64),
        }
    }
}
