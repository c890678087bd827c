//! Where a main stream's sync points are (SPEC.md §14.5): every MULTIFD_FLUSH record, and
//! every `ram` EOS when the START section has no MULTIFD_FLUSH (the per-section mode).

use ramstream_codec::Event;

/// Where a multifd migration's main stream synchronises with its channels (SPEC.md §14.5).
///
/// | mode | sync points | written by |
/// |---|---|---|
/// | [`SyncMode::PerSection`] | every `ram` EOS (START, each PART, END) | QEMU 7.2–8.0; 8.1+ at machine types ≤ 8.0 |
/// | [`SyncMode::PerRound`] | every MULTIFD_FLUSH record; EOS is none | QEMU 8.1+ at machine types ≥ 8.1 |
///
/// The mode is not announced: it is known at the end of the START section, which holds a
/// MULTIFD_FLUSH before its EOS in the per-round mode only (a destination MUST take it from
/// there, not from the machine type). A MULTIFD_FLUSH is a sync point in either mode, as
/// QEMU's `ram_load_precopy()` syncs at every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// Every `ram` EOS is a sync point (`multifd-flush-after-each-section` on).
    PerSection,
    /// Every MULTIFD_FLUSH record is a sync point; EOS is not.
    PerRound,
}

/// Counts a main stream's sync points as its events go by: the sans-IO rule of SPEC.md
/// §14.5, shared by the [`Loader`](crate::Loader) (with multifd on) and by tools that walk
/// a recording (`ramstream inspect`, `extract`, `proxy`).
///
/// ```
/// use ramstream_codec::{BareRecord, Event, SectionHeader};
/// use ramstream_migrate::multifd::{SyncMode, SyncPoints};
/// use ramstream_spec::stream::SectionType;
///
/// let eos = Event::Eos(BareRecord { word: 0x10 });
/// let flush = Event::MultifdFlush(BareRecord { word: 0x200 });
/// let part = Event::SectionPart { section_type: SectionType::PART, section_id: 2 };
///
/// // QEMU 7.2: no MULTIFD_FLUSH in START, so every ram EOS is a sync point.
/// let mut s = SyncPoints::new();
/// assert_eq!(s.observe(&Event::SectionStart(SectionHeader::ram_start(2))), None);
/// assert_eq!(s.observe(&eos), Some(1));
/// assert_eq!(s.observe(&part), None);
/// assert_eq!(s.observe(&eos), Some(2));
/// assert_eq!((s.mode(), s.count()), (Some(SyncMode::PerSection), 2));
///
/// // QEMU 10.0: START = MEM_SIZE, FLUSH, EOS; the flushes are the sync points.
/// let mut s = SyncPoints::new();
/// s.observe(&Event::SectionStart(SectionHeader::ram_start(2)));
/// assert_eq!(s.observe(&flush), Some(1));
/// assert_eq!(s.observe(&eos), None);
/// assert_eq!(s.observe(&part), None);
/// assert_eq!(s.observe(&flush), Some(2));
/// assert_eq!(s.observe(&eos), None);
/// assert_eq!(s.mode(), Some(SyncMode::PerRound));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPoints {
    mode: Option<SyncMode>,
    in_start: bool,
    flush_in_start: bool,
    count: u64,
}

impl SyncPoints {
    /// No event seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next main-stream event; returns `Some(k)` when it is the stream's k-th
    /// sync point (counted from 1).
    pub fn observe(&mut self, event: &Event<'_>) -> Option<u64> {
        match event {
            Event::SectionStart(_) => {
                self.in_start = true;
                self.flush_in_start = false;
                None
            }
            Event::SectionPart { .. } => {
                self.in_start = false;
                None
            }
            Event::MultifdFlush(_) => {
                if self.in_start {
                    self.flush_in_start = true;
                }
                Some(self.next())
            }
            Event::Eos(_) => {
                if self.in_start {
                    self.in_start = false;
                    if self.mode.is_none() {
                        self.mode = Some(if self.flush_in_start {
                            SyncMode::PerRound
                        } else {
                            SyncMode::PerSection
                        });
                    }
                }
                (self.mode == Some(SyncMode::PerSection)).then(|| self.next())
            }
            _ => None,
        }
    }

    fn next(&mut self) -> u64 {
        self.count += 1;
        self.count
    }

    /// The mode, once the START section ended.
    pub fn mode(&self) -> Option<SyncMode> {
        self.mode
    }

    /// Sync points seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}
