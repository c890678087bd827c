//! Guest memory as the engines see it: RAM blocks read and written by page address, shaped
//! like vm-memory's `Bytes` (`read_slice`/`write_slice` through `&self`), never a `&mut [u8]`
//! into memory that vCPUs or devices may touch.

use std::error::Error as StdError;
use std::rc::Rc;
use std::sync::Arc;

use ramstream_codec::{PageAddr, RamBlock};

/// One RAM block a VMM holds: QEMU's `RAMBlock` idstr and used length (SPEC.md §7.1).
///
/// A [`GuestRam`] lists its blocks so that a [`Loader`](crate::Loader) can check the stream's
/// MEM_SIZE record against them before it writes a byte.
///
/// ```
/// use ramstream_migrate::RamBlockLayout;
/// let b = RamBlockLayout::new("pc.ram", 64 << 20);
/// assert_eq!((b.idstr(), b.used_length()), ("pc.ram", 64 << 20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RamBlockLayout {
    idstr: String,
    used_length: u64,
}

impl RamBlockLayout {
    /// A block named `idstr` of `used_length` bytes.
    pub fn new(idstr: impl Into<String>, used_length: u64) -> Self {
        RamBlockLayout {
            idstr: idstr.into(),
            used_length,
        }
    }

    /// The block's idstr, e.g. `pc.ram`, `pc.bios`, `/rom@etc/acpi/tables`.
    pub fn idstr(&self) -> &str {
        &self.idstr
    }

    /// Its used length in bytes.
    pub fn used_length(&self) -> u64 {
        self.used_length
    }
}

impl From<&RamBlock> for RamBlockLayout {
    fn from(b: &RamBlock) -> Self {
        RamBlockLayout::new(b.idstr.clone(), b.used_length)
    }
}

/// The zeros [`GuestRam::zero_page`] writes by default, a piece at a time.
static ZEROS: [u8; 4096] = [0; 4096];

/// Guest RAM, addressed by RAM block and byte offset: what a VMM implements so that the
/// engines can load (and, later, save) it.
///
/// Every method takes `&self`, as vm-memory's `Bytes` does: guest memory is shared with
/// vCPUs and devices, so how writes are made safe (a `GuestMemoryMmap`, a lock, volatile
/// copies) is the implementor's business. `addr.block` indexes [`GuestRam::layout`] (the
/// [`Loader`](crate::Loader) translates the stream's block numbers into it), and
/// `addr.offset` is a byte offset in that block.
///
/// The [`Loader`](crate::Loader) passes whole target pages at page-aligned offsets; the
/// default [`GuestRam::zero_page`] writes in 4 KiB pieces; tools may read larger spans. No
/// call crosses the end of a block, and an implementation must refuse one that would
/// (returning an error, never writing elsewhere).
///
/// With the `vm-memory` feature, `GuestMemoryRam` implements it for any
/// `vm_memory::GuestMemory`.
///
/// A minimal implementation over plain buffers:
///
/// ```
/// use std::sync::Mutex;
/// use ramstream_codec::PageAddr;
/// use ramstream_migrate::{GuestRam, RamBlockLayout};
///
/// struct VecRam {
///     layout: Vec<RamBlockLayout>,
///     blocks: Vec<Mutex<Vec<u8>>>,
/// }
///
/// #[derive(Debug)]
/// struct OutOfRange(PageAddr);
/// impl std::fmt::Display for OutOfRange {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "{:?} is outside the blocks", self.0)
///     }
/// }
/// impl std::error::Error for OutOfRange {}
///
/// impl VecRam {
///     fn span(&self, addr: PageAddr, len: usize) -> Result<std::ops::Range<usize>, OutOfRange> {
///         let start = usize::try_from(addr.offset).map_err(|_| OutOfRange(addr))?;
///         let block = self.layout.get(addr.block).ok_or(OutOfRange(addr))?;
///         match start.checked_add(len) {
///             Some(end) if end as u64 <= block.used_length() => Ok(start..end),
///             _ => Err(OutOfRange(addr)),
///         }
///     }
/// }
///
/// impl GuestRam for VecRam {
///     type Error = OutOfRange;
///     fn layout(&self) -> &[RamBlockLayout] {
///         &self.layout
///     }
///     fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), OutOfRange> {
///         let r = self.span(addr, buf.len())?;
///         buf.copy_from_slice(&self.blocks[addr.block].lock().unwrap()[r]);
///         Ok(())
///     }
///     fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), OutOfRange> {
///         let r = self.span(addr, data.len())?;
///         self.blocks[addr.block].lock().unwrap()[r].copy_from_slice(data);
///         Ok(())
///     }
/// }
///
/// let ram = VecRam {
///     layout: vec![RamBlockLayout::new("pc.ram", 8192)],
///     blocks: vec![Mutex::new(vec![0; 8192])],
/// };
/// ram.write_page(PageAddr { block: 0, offset: 4096 }, &[7; 4096]).unwrap();
/// ram.zero_page(PageAddr { block: 0, offset: 4096 }, 4096).unwrap();
/// assert!(ram.write_page(PageAddr { block: 0, offset: 8192 }, &[7; 4096]).is_err());
/// ```
pub trait GuestRam {
    /// What a failed access says (an unmapped range, a failed write to the backing).
    type Error: StdError + Send + Sync + 'static;

    /// The RAM blocks this memory holds. A [`Loader`](crate::Loader) reads it when the
    /// stream's MEM_SIZE record arrives and refuses a stream whose blocks differ.
    fn layout(&self) -> &[RamBlockLayout];

    /// Reads `buf.len()` bytes at `addr` into `buf`.
    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `data` at `addr`: the one copy from the network buffer into guest memory.
    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), Self::Error>;

    /// Marks which pages read as zero for certain without being read: sets `zero[i]` for
    /// the page of `page_size` bytes at `addr.offset + i * page_size` (all in `addr.block`;
    /// the caller keeps the span inside the block), and clears it where unknown. The
    /// default knows nothing (all `false`).
    ///
    /// A source engine sends a known-zero page as a ZERO record without reading it, so a
    /// VMM whose memory the host allocates on first touch pays nothing for pages its guest
    /// never wrote: e.g. an anonymous private mapping whose page is neither present nor
    /// swapped out (`/proc/self/pagemap`), or a memfd hole (`SEEK_HOLE`). A page the guest
    /// writes after this answer is in the next dirty sync, as for a page read.
    fn known_zero_pages(
        &self,
        addr: PageAddr,
        page_size: usize,
        zero: &mut [bool],
    ) -> Result<(), Self::Error> {
        let _ = (addr, page_size);
        zero.fill(false);
        Ok(())
    }

    /// Zeroes `len` bytes at `addr`. The default writes zeros through
    /// [`GuestRam::write_page`] in 4 KiB pieces; an implementation may discard the range
    /// instead (`madvise(MADV_DONTNEED)` on anonymous memory reads back as zeros).
    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), Self::Error> {
        write_zeros(self, addr, len)
    }
}

/// Zeroes `len` bytes at `addr` through [`GuestRam::write_page`], 4 KiB at a time: the
/// default [`GuestRam::zero_page`], and the fallback of implementations that can discard
/// only some of their memory.
pub(crate) fn write_zeros<R: GuestRam + ?Sized>(
    ram: &R,
    addr: PageAddr,
    len: usize,
) -> Result<(), R::Error> {
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(ZEROS.len());
        ram.write_page(
            PageAddr::new(addr.block, addr.offset + done as u64),
            &ZEROS[..n],
        )?;
        done += n;
    }
    Ok(())
}

macro_rules! forward_guest_ram {
    ($($ty:ty),*) => {$(
        impl<T: GuestRam + ?Sized> GuestRam for $ty {
            type Error = T::Error;
            fn layout(&self) -> &[RamBlockLayout] {
                (**self).layout()
            }
            fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), Self::Error> {
                (**self).read_page(addr, buf)
            }
            fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), Self::Error> {
                (**self).write_page(addr, data)
            }
            fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), Self::Error> {
                (**self).zero_page(addr, len)
            }
            fn known_zero_pages(
                &self,
                addr: PageAddr,
                page_size: usize,
                zero: &mut [bool],
            ) -> Result<(), Self::Error> {
                (**self).known_zero_pages(addr, page_size, zero)
            }
        }
    )*};
}

forward_guest_ram!(&T, Box<T>, Rc<T>, Arc<T>);
