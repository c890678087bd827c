//! Shared helpers for the KVM tests.

use ramstream_reference_vmm::{GuestConfig, MemoryLayout, Vm};

/// Opens /dev/kvm and creates a VM. Returns false (after printing why) when the test should be skipped;
/// panics instead when `RAMSTREAM_REQUIRE_KVM=1`.
pub fn kvm_usable() -> bool {
    let probe = kvm_ioctls::Kvm::new().and_then(|kvm| kvm.create_vm().map(drop));
    ramstream_conformance_vectors::qemu::kvm_or_skip(probe)
}

/// 64 MiB guest: `pc.ram` 32 MiB at 0, `ram1` 32 MiB at 4 GiB.
pub fn small_layout() -> MemoryLayout {
    MemoryLayout::with_ram_size(64 << 20).expect("64 MiB layout")
}

/// A working set of `pages` pages that straddles both regions.
pub fn straddling_config(layout: &MemoryLayout, pages: u64) -> GuestConfig {
    let low_pages = layout.regions[0].pages();
    GuestConfig {
        working_set_first: Some(low_pages - pages / 2),
        working_set_pages: pages,
        ..GuestConfig::default()
    }
}

/// Builds and starts a guest.
pub fn start(layout: &MemoryLayout, config: &GuestConfig) -> Vm {
    let mut vm = Vm::new(layout, config).expect("create VM");
    vm.resume().expect("resume");
    vm
}

/// A running guest on [`small_layout`] whose working set of `pages` straddles the two regions
/// and is rewritten as fast as the guest can (`pages_per_loop` pages per loop, no delay, no
/// initial fill), or `None` (after printing why) when KVM is not usable.
#[allow(dead_code)] // not every test file uses it
pub fn busy_guest(pages: u64, pages_per_loop: u64) -> Option<(MemoryLayout, GuestConfig, Vm)> {
    if !kvm_usable() {
        return None;
    }
    let layout = small_layout();
    let mut config = straddling_config(&layout, pages);
    config.fill_pages = false;
    config.pages_per_loop = pages_per_loop;
    config.delay_loops = 0;
    let vm = start(&layout, &config);
    Some((layout, config, vm))
}
