//! Shared helpers for the KVM tests.

use ramstream_reference_vmm::{GuestConfig, MemoryLayout, Vm};

/// Opens /dev/kvm and creates a VM. Returns false (after printing why) when the test should be skipped;
/// panics instead when `RAMSTREAM_REQUIRE_KVM=1`.
pub fn kvm_usable() -> bool {
    match kvm_ioctls::Kvm::new().and_then(|kvm| kvm.create_vm().map(drop)) {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("RAMSTREAM_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("RAMSTREAM_REQUIRE_KVM=1 but /dev/kvm is not usable: {e}");
            }
            eprintln!("skipping: /dev/kvm not usable: {e}");
            false
        }
    }
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
