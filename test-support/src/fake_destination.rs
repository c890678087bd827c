//! [`FakeDestination`]: an in-memory destination guest for the reference receiver.

use std::cell::{Cell, Ref, RefCell};
use std::time::Duration;

use ramstream_codec::PageAddr;
use ramstream_migrate::{GuestRam, PageRun, RamBlockLayout};
use ramstream_reference_receiver::dest::{ram_blocks, whole_pages};
use ramstream_reference_receiver::{DestError, Destination, Verification};
use ramstream_reference_vmm::{Error as VmmError, MemoryLayout, VmState};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

/// An in-memory destination for tests: dense memory, the blobs it was given, and whether it
/// was resumed.
#[derive(Debug, Clone)]
pub struct FakeDestination {
    layout: MemoryLayout,
    blocks: Vec<RamBlockLayout>,
    mem: RefCell<Vec<Vec<u8>>>,
    /// The vCPU blob restored.
    pub vcpu: Option<Vec<u8>>,
    writes: Cell<u64>,
    resumed: bool,
}

impl FakeDestination {
    /// Zeroed memory for `layout`.
    pub fn new(layout: &MemoryLayout) -> Self {
        FakeDestination {
            mem: RefCell::new(
                layout
                    .regions
                    .iter()
                    .map(|r| vec![0u8; r.pages() as usize * PAGE_SIZE])
                    .collect(),
            ),
            blocks: ram_blocks(layout),
            layout: layout.clone(),
            vcpu: None,
            writes: Cell::new(0),
            resumed: false,
        }
    }

    /// Block `b`'s memory.
    pub fn block(&self, b: usize) -> Ref<'_, [u8]> {
        Ref::map(self.mem.borrow(), |m| &m[b][..])
    }

    /// Pages written (the receiver must not write zero pages that are already zero).
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// The byte range of an access of `len` bytes at `addr`, if it is whole pages inside a
    /// block.
    fn span(&self, addr: PageAddr, len: usize) -> Result<std::ops::Range<usize>, DestError> {
        let PageRun {
            start: first,
            count,
        } = whole_pages(addr, len)?;
        let region = self
            .layout
            .regions
            .get(addr.block)
            .ok_or_else(|| VmmError::UnknownRegion(addr.block.to_string()))?;
        if first
            .checked_add(count)
            .is_none_or(|end| end > region.pages())
        {
            return Err(VmmError::PageOutOfRange {
                region: region.name.clone(),
                first,
                count,
                pages: region.pages(),
            }
            .into());
        }
        let start = first as usize * PAGE_SIZE;
        Ok(start..start + len)
    }
}

impl GuestRam for FakeDestination {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), DestError> {
        let r = self.span(addr, buf.len())?;
        buf.copy_from_slice(&self.mem.borrow()[addr.block][r]);
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        let r = self.span(addr, data.len())?;
        self.mem.borrow_mut()[addr.block][r].copy_from_slice(data);
        self.writes
            .set(self.writes.get() + (data.len() / PAGE_SIZE) as u64);
        Ok(())
    }
}

impl Destination for FakeDestination {
    fn memory_layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<(usize, PageRun)>, DestError> {
        let vm_state = VmState::from_bytes(vm)?;
        for &(block, r) in &vm_state.balloon {
            // Checked, as the KVM VM checks runs against its layout: the blob is untrusted.
            let region = self
                .layout
                .regions
                .get(block)
                .ok_or_else(|| VmmError::UnknownRegion(block.to_string()))?;
            let end = r
                .start
                .checked_add(r.count)
                .filter(|&end| end <= region.pages())
                .ok_or_else(|| VmmError::PageOutOfRange {
                    region: region.name.clone(),
                    first: r.start,
                    count: r.count,
                    pages: region.pages(),
                })?;
            self.mem.get_mut()[block][r.start as usize * PAGE_SIZE..end as usize * PAGE_SIZE]
                .fill(0);
        }
        self.vcpu = Some(vcpu.to_vec());
        Ok(vm_state.balloon)
    }

    fn resume(&mut self) -> Result<(), DestError> {
        self.resumed = true;
        Ok(())
    }

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
