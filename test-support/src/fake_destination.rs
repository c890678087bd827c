//! [`FakeDestination`]: an in-memory destination guest for the reference receiver.

use std::time::Duration;

use ramstream_reference_receiver::{Destination, Verification};
use ramstream_reference_vmm::{BalloonRun, MemoryLayout, VmState};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

/// An in-memory destination for tests: dense memory, the blobs it was given, and whether it
/// was resumed.
#[derive(Debug, Clone)]
pub struct FakeDestination {
    layout: MemoryLayout,
    mem: Vec<Vec<u8>>,
    /// The vCPU blob restored.
    pub vcpu: Option<Vec<u8>>,
    /// Pages written (the receiver must not write zero pages that are already zero).
    pub writes: u64,
    resumed: bool,
}

impl FakeDestination {
    /// Zeroed memory for `layout`.
    pub fn new(layout: &MemoryLayout) -> Self {
        FakeDestination {
            mem: layout
                .regions
                .iter()
                .map(|r| vec![0u8; r.pages() as usize * PAGE_SIZE])
                .collect(),
            layout: layout.clone(),
            vcpu: None,
            writes: 0,
            resumed: false,
        }
    }

    /// Block `b`'s memory.
    pub fn block(&self, b: usize) -> &[u8] {
        &self.mem[b]
    }
}

impl Destination for FakeDestination {
    fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn write_page(&mut self, block: usize, page: u64, data: &[u8]) -> Result<(), String> {
        let p = page as usize * PAGE_SIZE;
        self.mem
            .get_mut(block)
            .and_then(|m| m.get_mut(p..p + PAGE_SIZE))
            .ok_or_else(|| format!("page {page} of block {block} out of range"))?
            .copy_from_slice(data);
        self.writes += 1;
        Ok(())
    }

    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), String> {
        let p = page as usize * PAGE_SIZE;
        dst.copy_from_slice(
            self.mem
                .get(block)
                .and_then(|m| m.get(p..p + PAGE_SIZE))
                .ok_or_else(|| format!("page {page} of block {block} out of range"))?,
        );
        Ok(())
    }

    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<BalloonRun>, String> {
        let vm_state = VmState::from_bytes(vm).map_err(|e| format!("VM state: {e}"))?;
        for r in &vm_state.balloon {
            let m = self
                .mem
                .get_mut(r.region)
                .ok_or_else(|| format!("balloon run in unknown region {}", r.region))?;
            // Checked, as the KVM VM checks runs against its layout: the blob is untrusted.
            let end = r
                .first_page
                .checked_add(r.page_count)
                .filter(|&end| end <= (m.len() / PAGE_SIZE) as u64)
                .ok_or_else(|| "balloon run out of range".to_string())?;
            m[r.first_page as usize * PAGE_SIZE..end as usize * PAGE_SIZE].fill(0);
        }
        self.vcpu = Some(vcpu.to_vec());
        Ok(vm_state.balloon)
    }

    fn resume(&mut self) -> Result<(), String> {
        self.resumed = true;
        Ok(())
    }

    fn verify(&mut self, _timeout: Duration) -> Result<Verification, String> {
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
