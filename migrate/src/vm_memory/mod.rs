//! [`GuestRam`] over vm-memory (feature `vm-memory`): any `vm_memory::GuestMemory`, reached
//! through a `GuestAddressSpace` (`&GuestMemoryMmap`, `Arc<GuestMemoryMmap>`,
//! `GuestMemoryAtomic<..>`), read and written with `Bytes::read_slice`/`write_slice`.
//!
//! A ramstream RAM block is QEMU's `RAMBlock`, not a guest-physical range, so the adapter
//! needs a map from blocks to guest-physical addresses (GPAs):
//!
//! - **Mapped blocks** ([`GuestMemoryRamBuilder::map`]) are laid over one or more GPA
//!   ranges, in block-offset order. QEMU's `pc.ram` is split around the PCI hole: on
//!   `pc-i440fx` with 3.5 GiB or more, the first 3 GiB are at GPA 0 and the rest at 4 GiB
//!   ([`GpaRange::split_around_hole`]); smaller guests have it whole at GPA 0.
//! - **Unmapped blocks**: QEMU migrates its ROMs (`pc.bios`, `pc.rom`,
//!   `/rom@etc/acpi/tables`, ...) as RAM blocks of their own, which a rust-vmm VMM usually
//!   does not keep in its `GuestMemoryMmap` (it loads its own firmware). By default
//!   ([`Unmapped::SideBuffer`]) each is kept in a zeroed buffer beside guest memory, up to
//!   [`GuestMemoryRamBuilder::side_buffer_limit`] bytes in all, so that a QEMU stream loads
//!   and the VMM can read them back ([`GuestMemoryRam::read_side_buffer`]);
//!   [`Unmapped::Refuse`] makes every block of the layout need a mapping instead.
//!
//! Over a `GuestMemoryMmap<AtomicBitmap>` (vm-memory's `backend-bitmap`),
//! [`GuestMemoryRam::dirty_log`] is a [`DirtyPageSource`](crate::DirtyPageSource) for the
//! [`Source`](crate::Source): the pages written through vm-memory since the last sync.
//!
//! ```
//! use std::sync::Arc;
//! use ramstream_migrate::vm_memory::{GpaRange, GuestMemoryRam};
//! use ramstream_migrate::{GuestRam, PageAddr, RamBlockLayout};
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
//!
//! let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
//! let layout = [RamBlockLayout::new("pc.ram", 1 << 20), RamBlockLayout::new("pc.bios", 1 << 16)];
//! let ram = GuestMemoryRam::builder(mem.clone())
//!     .map("pc.ram", [GpaRange::new(GuestAddress(0), 1 << 20)])
//!     .build(&layout)
//!     .unwrap();
//! ram.write_page(PageAddr { block: 0, offset: 0x3000 }, &[0xab; 4096]).unwrap();
//! assert_eq!(mem.read_obj::<u8>(GuestAddress(0x3000)).unwrap(), 0xab);
//! ram.write_page(PageAddr { block: 1, offset: 0 }, &[1; 4096]).unwrap(); // a side buffer
//! assert_eq!(ram.read_side_buffer(1, |b| b[0]), Some(1));
//! ```

mod dirty;
mod mapping;

use core::fmt;
use core::ops::Range;
use std::sync::Mutex;

use ::vm_memory::{Bytes, GuestAddress, GuestAddressSpace};

use crate::guest::{GuestRam, RamBlockLayout};
use crate::PageAddr;

pub use dirty::DirtyLog;
pub use mapping::{GpaRange, GuestMemoryRamBuilder, MappingError, Unmapped};

/// A failed access through a [`GuestMemoryRam`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AccessError {
    /// vm-memory refused the access.
    Memory(::vm_memory::GuestMemoryError),
    /// The span is not inside the block.
    OutOfBlock {
        /// The address.
        addr: PageAddr,
        /// The span's length.
        len: usize,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::Memory(e) => write!(f, "{e}"),
            AccessError::OutOfBlock { addr, len } => write!(
                f,
                "{len} bytes at offset {:#x} of block {} are outside it",
                addr.offset, addr.block
            ),
        }
    }
}

impl std::error::Error for AccessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AccessError::Memory(e) => Some(e),
            AccessError::OutOfBlock { .. } => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Backing {
    Mapped(Vec<GpaRange>),
    Side(Mutex<Vec<u8>>),
}

/// Guest RAM over vm-memory: blocks mapped to guest-physical ranges, the others in side
/// buffers. Built by [`GuestMemoryRam::builder`]; see the [module docs](self).
#[derive(Debug)]
pub struct GuestMemoryRam<AS> {
    pub(crate) mem: AS,
    pub(crate) layout: Vec<RamBlockLayout>,
    pub(crate) backing: Vec<Backing>,
}

impl<AS: GuestAddressSpace> GuestMemoryRam<AS> {
    /// A builder over `mem` (`&GuestMemoryMmap`, `Arc<GuestMemoryMmap>`,
    /// `GuestMemoryAtomic<..>`, any `GuestAddressSpace`).
    pub fn builder(mem: AS) -> GuestMemoryRamBuilder<AS> {
        GuestMemoryRamBuilder::new(mem)
    }

    /// The guest memory.
    pub fn memory(&self) -> &AS {
        &self.mem
    }

    /// Gives the guest memory back.
    pub fn into_memory(self) -> AS {
        self.mem
    }

    /// The GPA ranges of block `block`, `None` for a side-buffer block.
    pub fn gpa_ranges(&self, block: usize) -> Option<&[GpaRange]> {
        match self.backing.get(block)? {
            Backing::Mapped(r) => Some(r),
            Backing::Side(_) => None,
        }
    }

    /// Runs `f` over the side buffer of block `block`; `None` for a mapped block.
    pub fn read_side_buffer<T>(&self, block: usize, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
        match self.backing.get(block)? {
            Backing::Side(m) => Some(f(&m.lock().unwrap_or_else(|p| p.into_inner()))),
            Backing::Mapped(_) => None,
        }
    }

    /// The index of the block named `idstr`.
    pub fn block_index(&self, idstr: &str) -> Option<usize> {
        self.layout.iter().position(|b| b.idstr() == idstr)
    }

    /// Checks that `len` bytes at `addr` are inside the block.
    fn span(&self, addr: PageAddr, len: usize) -> Result<(&Backing, Range<u64>), AccessError> {
        let out = AccessError::OutOfBlock { addr, len };
        let block = self
            .layout
            .get(addr.block)
            .ok_or(AccessError::OutOfBlock { addr, len })?;
        let end = addr
            .offset
            .checked_add(len as u64)
            .ok_or(AccessError::OutOfBlock { addr, len })?;
        if end > block.used_length() {
            return Err(out);
        }
        Ok((&self.backing[addr.block], addr.offset..end))
    }

    /// Calls `f(gpa, piece)` for the pieces of block bytes `span` over `ranges`, where
    /// `piece` indexes the caller's buffer.
    fn pieces(
        ranges: &[GpaRange],
        span: Range<u64>,
        mut f: impl FnMut(GuestAddress, Range<usize>) -> Result<(), AccessError>,
    ) -> Result<(), AccessError> {
        let mut base = 0u64;
        let mut cur = span.start;
        for r in ranges {
            if cur >= span.end {
                break;
            }
            let r_end = base + r.len;
            if cur < r_end {
                let n = (span.end.min(r_end) - cur) as usize;
                let at = (cur - span.start) as usize;
                f(GuestAddress(r.start.0 + (cur - base)), at..at + n)?;
                cur += n as u64;
            }
            base = r_end;
        }
        Ok(())
    }
}

impl<AS: GuestAddressSpace> GuestRam for GuestMemoryRam<AS> {
    type Error = AccessError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.layout
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        match self.span(addr, buf.len())? {
            (Backing::Mapped(ranges), span) => {
                let mem = self.mem.memory();
                Self::pieces(ranges, span, |gpa, piece| {
                    mem.read_slice(&mut buf[piece], gpa)
                        .map_err(AccessError::Memory)
                })
            }
            (Backing::Side(m), span) => {
                let side = m.lock().unwrap_or_else(|p| p.into_inner());
                buf.copy_from_slice(&side[span.start as usize..span.end as usize]);
                Ok(())
            }
        }
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), AccessError> {
        match self.span(addr, data.len())? {
            (Backing::Mapped(ranges), span) => {
                let mem = self.mem.memory();
                Self::pieces(ranges, span, |gpa, piece| {
                    mem.write_slice(&data[piece], gpa)
                        .map_err(AccessError::Memory)
                })
            }
            (Backing::Side(m), span) => {
                let mut side = m.lock().unwrap_or_else(|p| p.into_inner());
                side[span.start as usize..span.end as usize].copy_from_slice(data);
                Ok(())
            }
        }
    }

    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), AccessError> {
        match self.span(addr, len)? {
            (Backing::Side(m), span) => {
                let mut side = m.lock().unwrap_or_else(|p| p.into_inner());
                side[span.start as usize..span.end as usize].fill(0);
                Ok(())
            }
            (Backing::Mapped(_), _) => crate::guest::write_zeros(self, addr, len),
        }
    }
}
