//! The incremental stream decoder (SPEC.md §2, §11).

use ramstream_spec::config::capability;
use ramstream_spec::ram;
use ramstream_spec::stream::SectionType;

use crate::balloon::BalloonRecord;
use crate::cursor::{Cursor, PResult, Stop};
use crate::error::{Error, ErrorKind};
use crate::event::{Configuration, DeviceSection, Event};
use crate::frame::ram_record::{self, RecordContext};
use crate::frame::{self, device};
use crate::kind::RecordKind;
use crate::options::{DecoderOptions, FieldPresence};
use crate::ram::mem_size::MemSizeFields;
use crate::ram::{RamBlock, RamState};

mod zero_run;
pub use zero_run::ZeroRun;

/// What [`Decoder::decode`] found at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Status<'a> {
    /// One complete event; drop `consumed` bytes from the front of the input before the next
    /// call.
    Event {
        /// The event, borrowing from the input.
        event: Event<'a>,
        /// How many input bytes it used.
        consumed: usize,
    },
    /// The input holds only part of the next item: call again with the same bytes and at
    /// least `needed` more. Nothing was consumed and no state changed.
    NeedMore {
        /// At least this many more bytes are needed.
        needed: usize,
    },
    /// The stream is complete: after the VMDESCRIPTION trailer, or after EOF once
    /// [`Decoder::finish`] said the input ended there. Bytes offered after that are
    /// [`ErrorKind::TrailingBytes`](crate::ErrorKind::TrailingBytes).
    Done,
}

/// Where in the stream grammar the decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    AfterHeader,
    Top,
    RamRecords { section_id: u32 },
    Footer { section_id: u32 },
    AfterEof,
    Done,
}

/// The owned part of the configuration the decoder keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamConfig {
    /// The machine type.
    pub machine_type: String,
    /// Target page bits in force.
    pub page_bits: u32,
    /// Capabilities listed by the configuration.
    pub capabilities: Vec<String>,
}

/// A sans-IO, incremental decoder of a QEMU migration stream.
///
/// Feed it the unconsumed bytes; each call returns one event (borrowing the input), or asks
/// for more. Any split of the input gives the same events. Call [`Decoder::finish`] when the
/// input has ended, so short input becomes a truncation error instead of `NeedMore`.
///
/// ```
/// use ramstream_codec::{Decoder, Event, Status};
///
/// // The smallest valid stream: header, configuration, EOF.
/// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut dec = Decoder::new(Default::default());
/// let mut pos = 0;
/// let mut events = Vec::new();
/// // Feed one byte more each time, as a slow socket would.
/// let mut avail = 0;
/// loop {
///     if avail == stream.len() {
///         dec.finish();
///     }
///     match dec.decode(&stream[pos..avail]).unwrap() {
///         Status::Event { event, consumed } => {
///             events.push(format!("{:?}", event.kind()));
///             pos += consumed;
///         }
///         Status::NeedMore { .. } => avail += 1,
///         Status::Done => break,
///     }
/// }
/// assert_eq!(events, ["Header", "Configuration", "Eof"]);
/// ```
#[derive(Clone, Debug)]
pub struct Decoder {
    opts: DecoderOptions,
    state: State,
    offset: u64,
    input_complete: bool,
    poisoned: bool,
    config: Option<StreamConfig>,
    page_bits: u32,
    mr_addr: bool,
    /// The configuration announced `mapped-ram` (allowed by the options): SPEC.md §7.9.
    mapped_ram: bool,
    balloon_v1_announced: bool,
    live_ids: Vec<u32>,
    ram: RamState,
    /// (stream offset of a device body, index before which no footer can be): a resume hint
    /// so that feeding a device section byte by byte stays linear.
    scan_hint: Option<(u64, usize)>,
}

impl Decoder {
    /// A decoder with the given options.
    pub fn new(opts: DecoderOptions) -> Self {
        let page_bits = opts.default_page_bits;
        let mr_addr = opts.mr_addr == FieldPresence::Present;
        let offset = opts.file_offset;
        Decoder {
            opts,
            state: State::Header,
            offset,
            input_complete: false,
            poisoned: false,
            config: None,
            page_bits,
            mr_addr,
            mapped_ram: false,
            balloon_v1_announced: false,
            live_ids: Vec::new(),
            ram: RamState::default(),
            scan_hint: None,
        }
    }

    /// The options in force.
    pub fn options(&self) -> &DecoderOptions {
        &self.opts
    }

    /// Says that the input has ended: bytes passed from now on are all there is.
    pub fn finish(&mut self) {
        self.input_complete = true;
    }

    /// The stream offset of the next byte to decode (a file offset when
    /// [`DecoderOptions::file_offset`] is set).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The current RAM block list (empty before MEM_SIZE).
    pub fn blocks(&self) -> &[RamBlock] {
        &self.ram.blocks
    }

    /// The target page size in force.
    pub fn page_size(&self) -> usize {
        1 << self.page_bits
    }

    /// The target page bits in force.
    pub fn page_bits(&self) -> u32 {
        self.page_bits
    }

    /// The configuration, once decoded.
    pub fn config(&self) -> Option<&StreamConfig> {
        self.config.as_ref()
    }

    /// Whether the stream announced the ramstream balloon extension v1.
    pub fn balloon_v1_announced(&self) -> bool {
        self.balloon_v1_announced
    }

    /// Whether the whole stream has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes the next event from the front of `input`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Status<'a>, Error> {
        if self.poisoned {
            return Err(Error::new(self.offset, ErrorKind::Poisoned));
        }
        if self.state == State::Done {
            if input.is_empty() {
                if !self.input_complete {
                    // More bytes may still arrive (and would be trailing bytes): only
                    // `finish` says there are none.
                    return Ok(Status::NeedMore { needed: 1 });
                }
                return Ok(Status::Done);
            }
            return self.fail(Error::new(
                self.offset,
                ErrorKind::TrailingBytes { count: input.len() },
            ));
        }
        if input.is_empty() && self.input_complete {
            return match self.state {
                State::AfterEof => {
                    self.state = State::Done;
                    Ok(Status::Done)
                }
                State::Header => self.fail(
                    Error::new(self.offset, ErrorKind::Truncated { needed: 8 })
                        .in_record(RecordKind::Header),
                ),
                _ => self.fail(Error::new(self.offset, ErrorKind::EndedBeforeEof)),
            };
        }
        let mut c = Cursor::new(input, self.offset);
        match self.step(&mut c) {
            Ok(event) => {
                let consumed = c.pos();
                self.apply(&event);
                self.offset += consumed as u64;
                Ok(Status::Event { event, consumed })
            }
            Err(Stop::Incomplete(needed)) => {
                if self.input_complete {
                    let kind = self.expected_kind(input);
                    self.fail(
                        Error::new(self.offset, ErrorKind::Truncated { needed }).in_record(kind),
                    )
                } else {
                    Ok(Status::NeedMore { needed })
                }
            }
            Err(Stop::Fail(e)) => self.fail(*e),
        }
    }

    fn fail<T>(&mut self, e: Error) -> Result<T, Error> {
        self.poisoned = true;
        Err(e)
    }

    /// The record kind the decoder was reading, for truncation errors.
    fn expected_kind(&self, input: &[u8]) -> RecordKind {
        match self.state {
            State::Header => RecordKind::Header,
            State::RamRecords { .. } => RecordKind::RamRecord,
            State::Footer { .. } => RecordKind::Footer,
            State::AfterEof | State::Done => RecordKind::VmDescription,
            State::AfterHeader | State::Top => match input.first().map(|b| SectionType(*b)) {
                Some(SectionType::CONFIGURATION) => RecordKind::Configuration,
                Some(SectionType::COMMAND) => RecordKind::Command,
                Some(SectionType::FULL) => RecordKind::Device,
                _ => RecordKind::SectionHeader,
            },
        }
    }

    fn step<'a>(&mut self, c: &mut Cursor<'a>) -> PResult<Event<'a>> {
        match self.state {
            State::Header => frame::header::parse(c),
            State::AfterHeader => {
                let b = c.peek_u8()?;
                if b == SectionType::CONFIGURATION.0 {
                    c.u8()?;
                    return frame::configuration::parse(c, &self.opts, self.input_complete);
                }
                if self.opts.require_configuration {
                    return Err(Error::new(c.offset(), ErrorKind::ConfigurationMissing)
                        .in_record(RecordKind::Configuration)
                        .into());
                }
                self.top(c)
            }
            State::Top => self.top(c),
            State::RamRecords { .. } => {
                let cx = RecordContext {
                    ram: &self.ram,
                    opts: &self.opts,
                    page_bits: self.page_bits,
                    mem_size_fields: MemSizeFields {
                        page_size: self.opts.block_page_size == FieldPresence::Present,
                        mr_addr: self.mr_addr,
                        mapped_ram: self.mapped_ram,
                        input_complete: self.input_complete,
                    },
                    balloon_v1_announced: self.balloon_v1_announced,
                };
                ram_record::parse(c, &cx)
            }
            State::Footer { section_id } => {
                let id = frame::section::parse_footer(c, section_id)?;
                Ok(Event::Footer { section_id: id })
            }
            State::AfterEof => {
                let at = c.offset();
                let b = c.u8()?;
                if b != SectionType::VMDESCRIPTION.0 {
                    let count = c.rest().len() + 1;
                    return Err(Error::new(at, ErrorKind::TrailingBytes { count }).into());
                }
                let len = c.u32()?;
                if len > self.opts.limits.max_vmdesc_len {
                    return Err(Error::new(
                        at,
                        ErrorKind::VmdescTooLarge {
                            len,
                            limit: self.opts.limits.max_vmdesc_len,
                        },
                    )
                    .in_record(RecordKind::VmDescription)
                    .into());
                }
                Ok(Event::VmDescription(c.take(len as usize)?))
            }
            State::Done => unreachable!("handled in decode"),
        }
    }

    fn top<'a>(&mut self, c: &mut Cursor<'a>) -> PResult<Event<'a>> {
        let at = c.offset();
        let st = SectionType(c.u8()?);
        let header_err = |k: ErrorKind| Error::new(at, k).in_record(RecordKind::SectionHeader);
        match st {
            SectionType::START => {
                let h = frame::section::parse_full_header(c, st)?;
                if self.live_ids.contains(&h.section_id) {
                    return Err(header_err(ErrorKind::DuplicateSectionId {
                        section_id: h.section_id,
                    })
                    .into());
                }
                if h.idstr != ram::SECTION_IDSTR {
                    return Err(header_err(ErrorKind::UnsupportedSection {
                        idstr: h.idstr.into(),
                    })
                    .into());
                }
                if h.version_id != ram::SECTION_VERSION || h.instance_id != ram::SECTION_INSTANCE_ID
                {
                    return Err(header_err(ErrorKind::RamSectionVersion {
                        version: h.version_id,
                        instance_id: h.instance_id,
                    })
                    .into());
                }
                Ok(Event::SectionStart(h))
            }
            SectionType::PART | SectionType::END => {
                let section_id = c.u32()?;
                if !self.live_ids.contains(&section_id) {
                    return Err(header_err(ErrorKind::UnknownSectionId { section_id }).into());
                }
                Ok(Event::SectionPart {
                    section_type: st,
                    section_id,
                })
            }
            SectionType::FULL => {
                let header = frame::section::parse_full_header(c, st)?;
                if !self.opts.section_footers {
                    return Err(header_err(ErrorKind::DeviceSectionWithoutFooters).into());
                }
                let body_offset = c.offset();
                let from = match self.scan_hint {
                    Some((o, i)) if o == body_offset => i,
                    _ => 0,
                };
                let ctx = device::ScanContext {
                    live_ids: &self.live_ids,
                    input_complete: self.input_complete,
                    max_vmdesc_len: self.opts.limits.max_vmdesc_len,
                };
                let limit = self.opts.limits.max_device_section_len;
                match device::scan(c.rest(), header.section_id, from, limit, &ctx) {
                    device::Scan::Found(len) => {
                        let body = c.take(len)?;
                        Ok(Event::Device(DeviceSection {
                            header,
                            body_offset,
                            body,
                        }))
                    }
                    device::Scan::NeedMore { needed, resume } => {
                        self.scan_hint = Some((body_offset, resume));
                        Err(Stop::Incomplete(needed))
                    }
                    device::Scan::TooLong => Err(Error::new(
                        at,
                        ErrorKind::DeviceSectionUnterminated { limit },
                    )
                    .in_record(RecordKind::Device)
                    .into()),
                }
            }
            SectionType::EOF => Ok(Event::Eof),
            SectionType::COMMAND => frame::command::parse(c, at, self.opts.dialect),
            SectionType::SUBSECTION
            | SectionType::VMDESCRIPTION
            | SectionType::CONFIGURATION
            | SectionType::FOOTER => {
                Err(header_err(ErrorKind::UnexpectedSectionType { found: st }).into())
            }
            SectionType(byte) => Err(header_err(ErrorKind::UnknownSectionType { byte }).into()),
        }
    }

    /// Applies a decoded event to the decoder state.
    fn apply(&mut self, event: &Event<'_>) {
        self.state = match (self.state, event) {
            (_, Event::Header { .. }) => State::AfterHeader,
            (_, Event::Configuration(cfg)) => {
                self.apply_config(cfg);
                State::Top
            }
            (_, Event::Command(_)) => State::Top,
            (_, Event::SectionStart(h)) => {
                // Only `ram` may START, and QEMU keeps one load section id per handler: a
                // new START replaces the old id (SPEC.md §2.3), so the list stays bounded.
                self.live_ids.clear();
                self.live_ids.push(h.section_id);
                State::RamRecords {
                    section_id: h.section_id,
                }
            }
            (_, Event::SectionPart { section_id, .. }) => State::RamRecords {
                section_id: *section_id,
            },
            (s, Event::MemSize(ms)) => {
                self.ram.set_blocks(ms.blocks.clone());
                s
            }
            (s, Event::Page(p)) => {
                self.ram.last_block = Some(p.addr.block);
                s
            }
            (s, Event::Zero(z)) => {
                self.ram.last_block = Some(z.addr.block);
                s
            }
            (s, Event::Xbzrle(x)) => {
                self.ram.last_block = Some(x.addr.block);
                s
            }
            (State::RamRecords { section_id }, Event::Eos(_)) => {
                if self.opts.section_footers {
                    State::Footer { section_id }
                } else {
                    State::Top
                }
            }
            (s, Event::Balloon(BalloonRecord::V1(v))) => {
                // v1 records name their block like page records and share CONTINUE state.
                self.ram.last_block = Some(v.block);
                s
            }
            (s, Event::Eos(_) | Event::MultifdFlush(_) | Event::Balloon(_)) => s,
            (_, Event::Footer { .. }) => State::Top,
            (_, Event::Device(d)) => {
                self.scan_hint = None;
                State::Footer {
                    section_id: d.header.section_id,
                }
            }
            (_, Event::Eof) => State::AfterEof,
            (_, Event::VmDescription(_)) => State::Done,
        };
    }

    fn apply_config(&mut self, cfg: &Configuration<'_>) {
        if let Some(bits) = cfg.target_page_bits {
            self.page_bits = bits;
        }
        if self.opts.mr_addr == FieldPresence::Auto {
            self.mr_addr = cfg.has_capability(capability::X_IGNORE_SHARED);
        }
        self.balloon_v1_announced = cfg.has_capability(capability::RAMSTREAM_BALLOON_V1);
        self.mapped_ram = cfg.has_capability(capability::MAPPED_RAM);
        self.config = Some(StreamConfig {
            machine_type: cfg.machine_type.to_string(),
            page_bits: self.page_bits,
            capabilities: cfg
                .capabilities
                .iter()
                .flatten()
                .map(|s| s.to_string())
                .collect(),
        });
    }
}
