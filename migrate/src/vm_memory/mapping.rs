//! Building a [`GuestMemoryRam`]: which guest-physical ranges each RAM block lies on, and
//! what happens to blocks that are not guest RAM.

use core::fmt;
use std::sync::Mutex;

use ::vm_memory::{GuestAddress, GuestAddressSpace, GuestMemory, Permissions};

use super::{Backing, GuestMemoryRam};
use crate::guest::RamBlockLayout;

/// A guest-physical range a block (or part of one) lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange {
    /// The first guest-physical address.
    pub start: GuestAddress,
    /// Its length in bytes.
    pub len: u64,
}

impl GpaRange {
    /// `len` bytes from `start`.
    pub const fn new(start: GuestAddress, len: u64) -> Self {
        GpaRange { start, len }
    }

    /// A block of `len` bytes laid from GPA 0 up to `hole_start`, the rest from `hole_end`:
    /// QEMU's x86 RAM around the PCI hole (`pc-i440fx`: 3 GiB below 4 GiB once the guest has
    /// 3.5 GiB or more; `q35`: 2 GiB once it has 2.75 GiB or more; the machine decides).
    ///
    /// ```
    /// use ramstream_migrate::vm_memory::GpaRange;
    /// use vm_memory::GuestAddress;
    /// let r = GpaRange::split_around_hole(4 << 30, 3 << 30, 4 << 30);
    /// assert_eq!(r, [GpaRange::new(GuestAddress(0), 3 << 30), GpaRange::new(GuestAddress(4 << 30), 1 << 30)]);
    /// assert_eq!(GpaRange::split_around_hole(1 << 30, 3 << 30, 4 << 30).len(), 1);
    /// ```
    pub fn split_around_hole(len: u64, hole_start: u64, hole_end: u64) -> Vec<GpaRange> {
        let low = len.min(hole_start);
        let mut v = vec![GpaRange::new(GuestAddress(0), low)];
        if len > low {
            v.push(GpaRange::new(GuestAddress(hole_end), len - low));
        }
        v
    }

    fn end(&self) -> Option<u64> {
        self.start.0.checked_add(self.len)
    }
}

/// What to do with a block of the layout that no [`GuestMemoryRamBuilder::map`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// Keep it in a zeroed buffer beside guest memory (QEMU's ROM blocks).
    #[default]
    SideBuffer,
    /// Refuse to build ([`MappingError::Unmapped`]).
    Refuse,
}

/// Why a [`GuestMemoryRam`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MappingError {
    /// A mapping names a block the layout does not have.
    UnknownBlock {
        /// The idstr.
        idstr: String,
    },
    /// Two mappings name one block.
    DuplicateMapping {
        /// The idstr.
        idstr: String,
    },
    /// A block's ranges do not add up to its used length.
    Length {
        /// The idstr.
        idstr: String,
        /// The ranges' total.
        mapped: u64,
        /// The block's used length.
        used_length: u64,
    },
    /// A range is not all in guest memory (or not writable).
    NotInMemory {
        /// The idstr.
        idstr: String,
        /// The range.
        range: GpaRange,
    },
    /// Two ranges (of one block or two) overlap.
    Overlap {
        /// One block's idstr.
        first: String,
        /// The other's.
        second: String,
    },
    /// A block has no mapping and [`Unmapped::Refuse`] is in force.
    Unmapped {
        /// The idstr.
        idstr: String,
    },
    /// The side buffers would take more than the limit.
    SideBuffersTooLarge {
        /// Their total.
        total: u64,
        /// The limit.
        limit: u64,
    },
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MappingError::UnknownBlock { idstr } => {
                write!(
                    f,
                    "mapping for block {idstr:?}, which the layout does not have"
                )
            }
            MappingError::DuplicateMapping { idstr } => {
                write!(f, "block {idstr:?} is mapped twice")
            }
            MappingError::Length {
                idstr,
                mapped,
                used_length,
            } => write!(
                f,
                "block {idstr:?} is {used_length:#x} bytes but its ranges cover {mapped:#x}"
            ),
            MappingError::NotInMemory { idstr, range } => write!(
                f,
                "block {idstr:?}: GPA range {:#x}+{:#x} is not writable guest memory",
                range.start.0, range.len
            ),
            MappingError::Overlap { first, second } => {
                write!(f, "blocks {first:?} and {second:?} overlap in guest memory")
            }
            MappingError::Unmapped { idstr } => {
                write!(f, "block {idstr:?} has no guest-physical mapping")
            }
            MappingError::SideBuffersTooLarge { total, limit } => write!(
                f,
                "unmapped blocks need {total:#x} bytes of side buffers, more than {limit:#x}"
            ),
        }
    }
}

impl std::error::Error for MappingError {}

/// Builds a [`GuestMemoryRam`].
#[derive(Debug)]
pub struct GuestMemoryRamBuilder<AS> {
    mem: AS,
    maps: Vec<(String, Vec<GpaRange>)>,
    unmapped: Unmapped,
    side_limit: u64,
}

impl<AS: GuestAddressSpace> GuestMemoryRamBuilder<AS> {
    pub(crate) fn new(mem: AS) -> Self {
        GuestMemoryRamBuilder {
            mem,
            maps: Vec::new(),
            unmapped: Unmapped::default(),
            side_limit: Self::DEFAULT_SIDE_BUFFER_LIMIT,
        }
    }

    /// The default limit on side buffers: 64 MiB, far above QEMU's ROM blocks (a few
    /// hundred KiB on `pc`).
    pub const DEFAULT_SIDE_BUFFER_LIMIT: u64 = 64 << 20;

    /// Lays block `idstr` over `ranges`, in block-offset order.
    pub fn map(
        mut self,
        idstr: impl Into<String>,
        ranges: impl IntoIterator<Item = GpaRange>,
    ) -> Self {
        self.maps.push((idstr.into(), ranges.into_iter().collect()));
        self
    }

    /// What to do with blocks no mapping names (default [`Unmapped::SideBuffer`]).
    pub fn unmapped(mut self, policy: Unmapped) -> Self {
        self.unmapped = policy;
        self
    }

    /// The most bytes all side buffers together may take (a layout from an untrusted
    /// stream must not size host allocations freely).
    pub fn side_buffer_limit(mut self, bytes: u64) -> Self {
        self.side_limit = bytes;
        self
    }

    /// Builds the adapter for `layout` (the VMM's blocks, or the stream's from
    /// [`LoaderEvent::RamNeeded`](crate::LoaderEvent::RamNeeded)), checking every mapping.
    pub fn build(self, layout: &[RamBlockLayout]) -> Result<GuestMemoryRam<AS>, MappingError> {
        for (i, (idstr, _)) in self.maps.iter().enumerate() {
            if !layout.iter().any(|b| b.idstr() == idstr) {
                return Err(MappingError::UnknownBlock {
                    idstr: idstr.clone(),
                });
            }
            if self.maps[..i].iter().any(|(o, _)| o == idstr) {
                return Err(MappingError::DuplicateMapping {
                    idstr: idstr.clone(),
                });
            }
        }
        let mem = self.mem.memory();
        let mut placed: Vec<(&str, GpaRange)> = Vec::new();
        let mut side_total = 0u64;
        let mut backing = Vec::with_capacity(layout.len());
        for b in layout {
            let idstr = b.idstr();
            let Some((_, ranges)) = self.maps.iter().find(|(m, _)| m == idstr) else {
                if self.unmapped == Unmapped::Refuse {
                    return Err(MappingError::Unmapped {
                        idstr: idstr.into(),
                    });
                }
                side_total = side_total.saturating_add(b.used_length());
                if side_total > self.side_limit {
                    return Err(MappingError::SideBuffersTooLarge {
                        total: side_total,
                        limit: self.side_limit,
                    });
                }
                backing.push(Backing::Side(Mutex::new(vec![0; b.used_length() as usize])));
                continue;
            };
            let mapped = ranges.iter().fold(0u64, |a, r| a.saturating_add(r.len));
            if mapped != b.used_length() {
                return Err(MappingError::Length {
                    idstr: idstr.into(),
                    mapped,
                    used_length: b.used_length(),
                });
            }
            for r in ranges {
                let fits = r.end().is_some()
                    && usize::try_from(r.len).is_ok_and(|len| {
                        GuestMemory::check_range(&*mem, r.start, len, Permissions::ReadWrite)
                    });
                if !fits {
                    return Err(MappingError::NotInMemory {
                        idstr: idstr.into(),
                        range: *r,
                    });
                }
                if let Some((other, _)) = placed.iter().find(|(_, o)| {
                    r.len > 0
                        && o.len > 0
                        && r.start.0 < o.start.0 + o.len
                        && o.start.0 < r.start.0 + r.len
                }) {
                    return Err(MappingError::Overlap {
                        first: (*other).into(),
                        second: idstr.into(),
                    });
                }
                placed.push((idstr, *r));
            }
            backing.push(Backing::Mapped(ranges.clone()));
        }
        drop(mem);
        Ok(GuestMemoryRam {
            mem: self.mem,
            layout: layout.to_vec(),
            backing,
        })
    }
}
