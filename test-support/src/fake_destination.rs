//! [`FakeDestination`]: an in-memory destination guest for the reference receiver, over
//! [`DenseRam`] or any other guest memory a test brings.

use std::cell::{Cell, Ref, RefCell};
use std::time::Duration;

use ramstream_codec::PageAddr;
use ramstream_migrate::{GuestRam, PageRun, RamBlockLayout};
use ramstream_reference_receiver::dest::{ram_blocks, whole_pages};
use ramstream_reference_receiver::{DestError, Destination, Verification};
use ramstream_reference_vmm::{Error as VmmError, MemoryLayout, VmState};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

/// A destination for tests: the reference machine's side (the blobs restored, whether it was
/// resumed, a verification that passes) around guest memory `M`, by default dense vectors
/// ([`DenseRam`]). A test with memory of its own (guard pages, injected faults) passes it to
/// [`FakeDestination::with_ram`].
#[derive(Debug, Clone)]
pub struct FakeDestination<M = DenseRam> {
    layout: MemoryLayout,
    ram: M,
    /// The vCPU blob restored.
    pub vcpu: Option<Vec<u8>>,
    resumed: bool,
}

impl FakeDestination {
    /// Zeroed dense memory for `layout`.
    pub fn new(layout: &MemoryLayout) -> Self {
        FakeDestination::with_ram(layout, DenseRam::new(layout))
    }

    /// Block `b`'s memory.
    pub fn block(&self, b: usize) -> Ref<'_, [u8]> {
        self.ram.block(b)
    }

    /// Pages written (the receiver must not write zero pages that are already zero).
    pub fn writes(&self) -> u64 {
        self.ram.writes()
    }
}

impl<M> FakeDestination<M> {
    /// A destination for `layout` over `ram`, which holds one RAM block per region of the
    /// layout, in order ([`ram_blocks`]).
    pub fn with_ram(layout: &MemoryLayout, ram: M) -> Self {
        FakeDestination {
            layout: layout.clone(),
            ram,
            vcpu: None,
            resumed: false,
        }
    }

    /// The guest memory.
    pub fn ram(&self) -> &M {
        &self.ram
    }
}

impl<M: GuestRam<Error = DestError>> GuestRam for FakeDestination<M> {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        self.ram.layout()
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), DestError> {
        self.ram.read_page(addr, buf)
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        self.ram.write_page(addr, data)
    }

    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), DestError> {
        self.ram.zero_page(addr, len)
    }
}

impl<M: GuestRam<Error = DestError>> Destination for FakeDestination<M> {
    fn memory_layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// Zeroes the VM state's balloon runs (their pages read as zero, as a KVM destination's
    /// discarded ones do), each checked against the layout first: the blob is untrusted.
    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<(usize, PageRun)>, DestError> {
        let vm_state = VmState::from_bytes(vm)?;
        for &(block, run) in &vm_state.balloon {
            let region = self
                .layout
                .regions
                .get(block)
                .ok_or_else(|| VmmError::UnknownRegion(block.to_string()))?;
            // `end` saturates: a run whose end overflows is past the region too.
            if run.end() > region.pages() {
                return Err(VmmError::PageOutOfRange {
                    region: region.name.clone(),
                    first: run.start,
                    count: run.count,
                    pages: region.pages(),
                }
                .into());
            }
            let bytes = run.byte_range(PAGE_SIZE);
            if run.count > 0 {
                let len = (bytes.end - bytes.start) as usize;
                self.ram.zero_page(run.first_addr(block, PAGE_SIZE), len)?;
            }
        }
        self.vcpu = Some(vcpu.to_vec());
        Ok(vm_state.balloon)
    }

    fn resume(&mut self) -> Result<(), DestError> {
        self.resumed = true;
        Ok(())
    }

    /// A guest that runs: its heartbeat advanced and its self-check passed.
    fn verify(&mut self, _timeout: Duration) -> Result<Verification, DestError> {
        Ok(Verification {
            heartbeat_before: 0,
            heartbeat_after: 1,
            self_check_passed: true,
            ..Default::default()
        })
    }

    fn resumed(&self) -> bool {
        self.resumed
    }
}

/// Dense in-memory guest RAM, one vector per region of a layout, counting the pages written.
/// Accesses must be whole pages at page-aligned offsets inside a block, as the reference
/// VMM's are ([`whole_pages`]).
#[derive(Debug, Clone)]
pub struct DenseRam {
    blocks: Vec<RamBlockLayout>,
    mem: RefCell<Vec<Vec<u8>>>,
    writes: Cell<u64>,
}

impl DenseRam {
    /// Zeroed memory for every region of `layout`.
    pub fn new(layout: &MemoryLayout) -> Self {
        DenseRam {
            mem: RefCell::new(
                layout
                    .regions
                    .iter()
                    .map(|r| vec![0u8; r.run().byte_range(PAGE_SIZE).end as usize])
                    .collect(),
            ),
            blocks: ram_blocks(layout),
            writes: Cell::new(0),
        }
    }

    /// Block `b`'s memory.
    pub fn block(&self, b: usize) -> Ref<'_, [u8]> {
        Ref::map(self.mem.borrow(), |m| &m[b][..])
    }

    /// Pages written through [`GuestRam::write_page`].
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// The bytes of an access of `len` bytes at `addr`, if it is whole pages inside a block,
    /// and how many pages they are.
    fn span(&self, addr: PageAddr, len: usize) -> Result<(std::ops::Range<usize>, u64), DestError> {
        let run = whole_pages(addr, len)?;
        let block = self
            .blocks
            .get(addr.block)
            .ok_or_else(|| VmmError::UnknownRegion(addr.block.to_string()))?;
        let pages = PageRun::of_block(block.used_length(), PAGE_SIZE).count;
        let bytes = run.byte_range(PAGE_SIZE);
        if run.end() > pages {
            return Err(VmmError::PageOutOfRange {
                region: block.idstr().to_string(),
                first: run.start,
                count: run.count,
                pages,
            }
            .into());
        }
        Ok((bytes.start as usize..bytes.end as usize, run.count))
    }
}

impl GuestRam for DenseRam {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), DestError> {
        let (r, _) = self.span(addr, buf.len())?;
        buf.copy_from_slice(&self.mem.borrow()[addr.block][r]);
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        let (r, pages) = self.span(addr, data.len())?;
        self.mem.borrow_mut()[addr.block][r].copy_from_slice(data);
        self.writes.set(self.writes.get() + pages);
        Ok(())
    }

    /// Zeroes the pages; not counted as writes.
    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), DestError> {
        let (r, _) = self.span(addr, len)?;
        self.mem.borrow_mut()[addr.block][r].fill(0);
        Ok(())
    }
}
