//! Where the pages go: the [`Destination`] trait and the real KVM guest
//! ([`KvmDestination`]). An in-memory fake for tests is `ramstream-test-support`'s
//! `FakeDestination`.

use std::time::Duration;

use ramstream_codec::balloon::PageRun;
use ramstream_codec::extension::digest::digest_block;
use ramstream_codec::PageAddr;
use ramstream_codec::PageStore;
use ramstream_reference_vmm::{BalloonRun, MemoryLayout, VcpuState, Vm, VmState};
use ramstream_spec::extension::digest::DIGEST_SHA256_LEN;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;
use serde::{Deserialize, Serialize};

/// Proof that the destination guest runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Heartbeat when verification started.
    pub heartbeat_before: u64,
    /// Heartbeat after it advanced.
    pub heartbeat_after: u64,
    /// Whether the guest's self-check passed.
    pub self_check_passed: bool,
    /// Pages the self-check found intact.
    pub ok_pages: u64,
    /// Pages the self-check found corrupted.
    pub bad_pages: u64,
    /// Pages the self-check skipped as ballooned.
    pub ballooned_pages: u64,
}

/// A destination guest that a stream is loaded into.
pub trait Destination {
    /// The layout the destination was built with.
    fn layout(&self) -> &MemoryLayout;
    /// Writes a whole page (the one copy from the network buffer into guest memory).
    fn write_page(&mut self, block: usize, page: u64, data: &[u8]) -> Result<(), String>;
    /// Reads a page.
    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), String>;
    /// Restores the vCPU and VM state blobs (the VM blob's balloon runs are discarded);
    /// returns the balloon runs.
    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<BalloonRun>, String>;
    /// The sha256-sparse digest of every block (SPEC.md §13.2), ballooned pages counted as
    /// zero without being read.
    fn block_digests(
        &self,
        ballooned: &[BalloonRun],
    ) -> Result<Vec<[u8; DIGEST_SHA256_LEN]>, String> {
        let layout = self.layout();
        (0..layout.regions.len())
            .map(|b| {
                let pages = layout.regions[b].pages();
                digest_block(pages, PAGE_SIZE, &runs_of(ballooned, b), |p, buf| {
                    self.read_page(b, p, buf)
                })
            })
            .collect()
    }
    /// Starts the guest.
    fn resume(&mut self) -> Result<(), String>;
    /// Proves that the resumed guest runs: its heartbeat advances and its self-check passes.
    fn verify(&mut self, timeout: Duration) -> Result<Verification, String>;
    /// Whether the guest was resumed.
    fn resumed(&self) -> bool;
}

/// [`PageStore`] over a [`Destination`]: the page is staged in a one-page buffer and
/// written back by [`StagedStore::commit`] (guest memory hands out no `&mut` slices).
/// Used for XBZRLE records, which decode in place onto the page the destination holds.
#[derive(Debug)]
pub struct StagedStore {
    addr: Option<PageAddr>,
    page: Vec<u8>,
}

impl Default for StagedStore {
    fn default() -> Self {
        StagedStore {
            addr: None,
            page: vec![0; PAGE_SIZE],
        }
    }
}

impl StagedStore {
    /// Loads the page at `addr` from `dest` into the stage.
    pub fn load(&mut self, dest: &impl Destination, addr: PageAddr) -> Result<(), String> {
        dest.read_page(addr.block, addr.offset / PAGE_SIZE as u64, &mut self.page)?;
        self.addr = Some(addr);
        Ok(())
    }

    /// Writes the staged page back.
    pub fn commit(&mut self, dest: &mut impl Destination) -> Result<(), String> {
        if let Some(a) = self.addr.take() {
            dest.write_page(a.block, a.offset / PAGE_SIZE as u64, &self.page)?;
        }
        Ok(())
    }
}

impl PageStore for StagedStore {
    fn page_mut(&mut self, _addr: PageAddr) -> &mut [u8] {
        &mut self.page
    }
}

/// The real destination: a reference-VMM VM built with [`Vm::new_destination`].
#[derive(Debug)]
pub struct KvmDestination {
    vm: Vm,
    resumed: bool,
}

impl KvmDestination {
    /// Builds the destination VM for `layout`.
    pub fn new(layout: &MemoryLayout) -> Result<Self, String> {
        Ok(KvmDestination {
            vm: Vm::new_destination(layout).map_err(|e| format!("destination VM: {e}"))?,
            resumed: false,
        })
    }

    /// The VM.
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

impl Destination for KvmDestination {
    fn layout(&self) -> &MemoryLayout {
        self.vm.layout()
    }

    fn write_page(&mut self, block: usize, page: u64, data: &[u8]) -> Result<(), String> {
        self.vm
            .memory()
            .write_page(block, page, data)
            .map_err(|e| e.to_string())
    }

    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), String> {
        self.vm
            .memory()
            .read_page(block, page, dst)
            .map_err(|e| e.to_string())
    }

    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<BalloonRun>, String> {
        let vm_state = VmState::from_bytes(vm).map_err(|e| format!("VM state: {e}"))?;
        let vcpu_state = VcpuState::from_bytes(vcpu).map_err(|e| format!("vCPU state: {e}"))?;
        self.vm
            .restore_vm_state(&vm_state)
            .map_err(|e| format!("restoring VM state: {e}"))?;
        self.vm
            .restore_vcpu_state(&vcpu_state)
            .map_err(|e| format!("restoring vCPU state: {e}"))?;
        Ok(vm_state.balloon)
    }

    /// Hashes the blocks in parallel, one thread per block.
    fn block_digests(
        &self,
        ballooned: &[BalloonRun],
    ) -> Result<Vec<[u8; DIGEST_SHA256_LEN]>, String> {
        let mem = self.vm.memory();
        std::thread::scope(|s| {
            let hs: Vec<_> = self
                .vm
                .layout()
                .regions
                .iter()
                .enumerate()
                .map(|(b, r)| {
                    let runs = runs_of(ballooned, b);
                    let pages = r.pages();
                    s.spawn(move || {
                        digest_block(pages, PAGE_SIZE, &runs, |p, buf| mem.read_page(b, p, buf))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| "digest thread panicked".to_string())?
                        .map_err(|e| e.to_string())
                })
                .collect()
        })
    }

    fn resume(&mut self) -> Result<(), String> {
        self.vm.resume().map_err(|e| format!("resume: {e}"))?;
        self.resumed = true;
        Ok(())
    }

    fn verify(&mut self, timeout: Duration) -> Result<Verification, String> {
        let v = self
            .vm
            .verify_guest(timeout)
            .map_err(|e| format!("verifying the guest: {e}"))?;
        Ok(Verification {
            heartbeat_before: v.heartbeat_before,
            heartbeat_after: v.heartbeat_after,
            self_check_passed: v.check.passed(),
            ok_pages: v.check.ok_pages,
            bad_pages: v.check.bad_pages,
            ballooned_pages: v.check.ballooned_pages,
        })
    }

    fn resumed(&self) -> bool {
        self.resumed
    }
}

/// The balloon runs of block `block`, in block pages.
fn runs_of(runs: &[BalloonRun], block: usize) -> Vec<PageRun> {
    runs.iter()
        .filter(|r| r.region == block)
        .map(|r| PageRun::new(r.first_page, r.page_count))
        .collect()
}
