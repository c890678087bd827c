//! The crate's only `unsafe` code: anonymous memory mappings, raw copies in and out of guest
//! memory, memory slot registration, `set_xsave` and reading the `kvm_run` exit details.
//!
//! Every block carries a `// SAFETY:` comment. Callers elsewhere in the crate see safe
//! functions that check their bounds and return an error instead of panicking.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use kvm_bindings::{kvm_userspace_memory_region, kvm_xsave, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{VcpuFd, VmFd};

/// An offset/length pair that does not fit in a [`Mapping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfBounds;

/// An anonymous, private, `MAP_NORESERVE` mapping: guest RAM that costs nothing until touched.
///
/// The guest writes this memory concurrently with the host's copies, as in every VMM; the
/// host side only ever uses raw copies and atomic word accesses, never Rust references.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mapping` owns its mapping exclusively; all accesses go through raw pointer copies
// or atomics, which are sound from any thread (the memory lives until `Drop`).
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access never creates Rust references into the mapping.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of zeroed anonymous memory.
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: an anonymous mapping at a kernel-chosen address touches no existing memory;
        // the result is checked against MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { ptr, len })
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The host virtual address of the first byte (for `KVM_SET_USER_MEMORY_REGION`).
    pub(crate) fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the mapping.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, dst.len())?;
        // SAFETY: the range was bounds-checked above; `dst` is a distinct Rust buffer, so the
        // ranges cannot overlap. Concurrent guest writes may make the copy torn, which callers
        // handle by dirty tracking (a torn page is dirty and copied again).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(())
    }

    /// Copies `src` into the mapping at `offset`.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, src.len())?;
        // SAFETY: bounds-checked above; `src` is a distinct Rust buffer, so no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
        Ok(())
    }

    fn atomic(&self, offset: usize) -> Result<&AtomicU64, OutOfBounds> {
        self.check(offset, 8)?;
        if !offset.is_multiple_of(8) {
            return Err(OutOfBounds);
        }
        // SAFETY: the word is in bounds and 8-byte aligned (the mapping is page aligned), it
        // lives as long as `self`, and every host access to guest words goes through atomics.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast::<u64>()) })
    }

    /// Atomically loads the little-endian u64 at an 8-byte aligned `offset`.
    pub(crate) fn load_u64(&self, offset: usize) -> Result<u64, OutOfBounds> {
        Ok(self.atomic(offset)?.load(Ordering::Acquire))
    }

    /// Atomically stores a u64 at an 8-byte aligned `offset`.
    pub(crate) fn store_u64(&self, offset: usize, value: u64) -> Result<(), OutOfBounds> {
        self.atomic(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Gives `len` bytes at `offset` back to the host (`MADV_DONTNEED`); they read as zero.
    pub(crate) fn discard(&self, offset: usize, len: usize) -> Result<io::Result<()>, OutOfBounds> {
        self.check(offset, len)?;
        // SAFETY: the range is inside our private anonymous mapping; MADV_DONTNEED only
        // replaces its contents with zero pages, which every reader tolerates.
        let ret = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(offset).cast(),
                len,
                libc::MADV_DONTNEED,
            )
        };
        Ok(if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping; memory slots using it are deleted with the VM fd, which
        // the VM drops before its memory (field order in `Vm`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Creates or updates memory slot `slot` to map `mapping` at guest-physical `gpa`.
pub(crate) fn set_memory_slot(
    vm: &VmFd,
    slot: u32,
    gpa: u64,
    mapping: &Mapping,
    log_dirty: bool,
) -> Result<(), kvm_ioctls::Error> {
    let region = kvm_userspace_memory_region {
        slot,
        flags: if log_dirty {
            KVM_MEM_LOG_DIRTY_PAGES
        } else {
            0
        },
        guest_phys_addr: gpa,
        memory_size: mapping.len() as u64,
        userspace_addr: mapping.host_addr(),
    };
    // SAFETY: the host range is a live mapping owned by the VM's guest memory, which outlives
    // the VM fd (see `Drop for Mapping`).
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
