//! The crate's only `unsafe` code: discarding guest memory (`madvise`), memory slot
//! registration, `set_xsave` and reading the `kvm_run` exit details. Guest memory itself is
//! vm-memory's `GuestMemoryMmap`, mapped and accessed by vm-memory.
//!
//! Every block carries a `// SAFETY:` comment. Callers elsewhere in the crate see safe
//! functions that check their bounds and return an error instead of panicking.

use std::io;

use kvm_bindings::{kvm_userspace_memory_region, kvm_xsave, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::bitmap::{Bitmap, BitmapSlice};
use vm_memory::{Address, GuestMemoryRegion, GuestRegionMmap, VolatileSlice};

/// Gives the memory under `slice` back to the host (`MADV_DONTNEED`): it reads as zero
/// afterwards. The caller records the pages as dirty (vm-memory cannot see this change).
pub(crate) fn discard<B: BitmapSlice>(slice: &VolatileSlice<'_, B>) -> io::Result<()> {
    let guard = slice.ptr_guard_mut();
    // SAFETY: `slice` is a bounds-checked view into a private anonymous mapping of the VM's
    // `GuestMemoryMmap`, page aligned (the caller passes whole pages); MADV_DONTNEED only
    // replaces its contents with zero pages, which every reader (host or guest) tolerates.
    let ret = unsafe { libc::madvise(guard.as_ptr().cast(), guard.len(), libc::MADV_DONTNEED) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates or updates memory slot `slot` to map `region` at its guest-physical address.
pub(crate) fn set_memory_slot<B: Bitmap>(
    vm: &VmFd,
    slot: u32,
    region: &GuestRegionMmap<B>,
    log_dirty: bool,
) -> Result<(), kvm_ioctls::Error> {
    let region = kvm_userspace_memory_region {
        slot,
        flags: if log_dirty {
            KVM_MEM_LOG_DIRTY_PAGES
        } else {
            0
        },
        guest_phys_addr: region.start_addr().raw_value(),
        memory_size: region.len(),
        userspace_addr: region.as_ptr() as u64,
    };
    // SAFETY: the host range is the live mapping of a region of the VM's `GuestMemoryMmap`,
    // which outlives the VM fd (`Vm` drops its fd before its memory; the mapping is unmapped
    // only when the last `Arc` to the memory goes).
    unsafe { vm.set_user_memory_region(region) }
}

/// Loads an xsave area into the vCPU.
pub(crate) fn set_xsave(vcpu: &VcpuFd, xsave: &kvm_xsave) -> Result<(), kvm_ioctls::Error> {
    // SAFETY: `kvm_xsave` is the fixed 4 KiB legacy layout; we never pass a larger buffer,
    // so the kernel reads only the struct we own.
    unsafe { vcpu.set_xsave(xsave) }
}

/// `kvm_run.internal.suberror` after a `KVM_EXIT_INTERNAL_ERROR`.
pub(crate) fn internal_error_suberror(vcpu: &mut VcpuFd) -> u32 {
    let run = vcpu.get_kvm_run();
    // SAFETY: called only right after `run()` reported KVM_EXIT_INTERNAL_ERROR, so the kernel
    // filled the `internal` member of the union; it is plain integers either way.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}
