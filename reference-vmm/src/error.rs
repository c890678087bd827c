//! The crate's error type.

#![forbid(unsafe_code)]

use std::io;

/// Everything that can go wrong in the reference VMM, with the context needed to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/kvm` could not be opened (absent, no permission, or not usable).
    #[error("/dev/kvm not usable: {0}")]
    KvmUnavailable(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// The operation, named after its ioctl.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be mapped or advised.
    #[error("guest memory {op} for region {region:?} failed: {source}")]
    Memory {
        /// `mmap` or `madvise`.
        op: &'static str,
        /// The region's name.
        region: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// vm-memory refused an access to a region's memory.
    #[error("guest memory {op} in region {region:?} failed: {source}")]
    Access {
        /// `read` or `write`.
        op: &'static str,
        /// The region's name.
        region: String,
        /// What vm-memory (through `ramstream-migrate`'s adapter) reported.
        #[source]
        source: ramstream_migrate::vm_memory::AccessError,
    },
    /// A memory layout is not usable (overlap, misalignment, too large, empty…).
    #[error("invalid memory layout: {0}")]
    InvalidLayout(String),
    /// A guest configuration is not usable (working set outside RAM, zero rate…).
    #[error("invalid guest configuration: {0}")]
    InvalidConfig(String),
    /// No region with this name or index exists.
    #[error("unknown memory region {0:?}")]
    UnknownRegion(String),
    /// A page range does not fit in its region.
    #[error("pages {first}..{first}+{count} are outside region {region:?} ({pages} pages)")]
    PageOutOfRange {
        /// The region's name.
        region: String,
        /// The first page asked for.
        first: u64,
        /// How many pages were asked for.
        count: u64,
        /// The region's size in pages.
        pages: u64,
    },
    /// A page address that is not the start of a page.
    #[error("offset {offset:#x} in region {region:?} is not the start of a page")]
    Unaligned {
        /// The region's name.
        region: String,
        /// The byte offset asked for.
        offset: u64,
    },
    /// A caller's buffer has the wrong size.
    #[error("buffer is {actual} bytes, expected {expected}")]
    BufferSize {
        /// The size needed.
        expected: usize,
        /// The size given.
        actual: usize,
    },
    /// The guest program could not be assembled (a bug in this crate).
    #[error("assembling the guest program failed: {0}")]
    Assemble(String),
    /// The operation needs a paused vCPU, but it is running.
    #[error("the vCPU is running; pause it first")]
    Running,
    /// The operation needs a running vCPU, but it is paused or has stopped.
    #[error("the vCPU is not running")]
    NotRunning,
    /// The vCPU cannot be resumed: the guest stopped, or a fatal exit ended it.
    #[error("the vCPU cannot be resumed: {0}")]
    NotResumable(String),
    /// KVM could not emulate a guest instruction (`KVM_EXIT_INTERNAL_ERROR`).
    #[error("guest internal error (suberror {suberror}) at rip {rip:#x}")]
    GuestInternalError {
        /// `kvm_run.internal.suberror` (1 = emulation failure).
        suberror: u32,
        /// The guest instruction pointer, or `u64::MAX` when it could not be read.
        rip: u64,
    },
    /// The guest triple-faulted (`KVM_EXIT_SHUTDOWN`).
    #[error("guest shut down (triple fault) at rip {rip:#x}")]
    GuestShutdown {
        /// The guest instruction pointer, or `u64::MAX` when it could not be read.
        rip: u64,
    },
    /// KVM refused to enter the guest (`KVM_EXIT_FAIL_ENTRY`).
    #[error("VM entry failed: hardware reason {reason:#x}")]
    FailEntry {
        /// `hardware_entry_failure_reason`.
        reason: u64,
    },
    /// KVM read or wrote fewer MSRs than asked (it stops at the first one it refuses).
    #[error("{op} handled {done} of {total} MSRs (stopped at index {stopped_at:#x})")]
    Msr {
        /// `KVM_GET_MSRS` or `KVM_SET_MSRS`.
        op: &'static str,
        /// MSRs handled.
        done: usize,
        /// MSRs asked for.
        total: usize,
        /// The MSR KVM refused, or `u32::MAX` if the list itself was unusable.
        stopped_at: u32,
    },
    /// The guest caused an exit this VMM does not handle.
    #[error("unexpected vCPU exit: {0}")]
    UnexpectedExit(String),
    /// The guest reported an error through its error port.
    #[error("guest program reported error code {code:#x}")]
    GuestReported {
        /// The value the guest wrote to the error port.
        code: u32,
    },
    /// A guest command was not acknowledged in time (the guest is paused, stuck or dead).
    #[error("guest did not acknowledge command {command} within {waited_ms} ms")]
    CommandTimeout {
        /// The command's name.
        command: &'static str,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The guest rejected a command (bad range, reserved pages…).
    #[error("guest rejected command {command} with status {status}")]
    CommandRejected {
        /// The command's name.
        command: &'static str,
        /// The guest's status code (see the crate docs).
        status: u64,
    },
    /// A state blob is malformed.
    #[error("{blob} state blob: {detail} at byte {offset}")]
    StateFormat {
        /// Which blob: `"vcpu"` or `"vm"`.
        blob: &'static str,
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong.
        detail: String,
    },
    /// The vCPU thread panicked or could not be started.
    #[error("vCPU thread failed: {0}")]
    VcpuThread(String),
    /// The thread registering the memory slots panicked or could not be started.
    #[error("memory slot thread failed: {0}")]
    SlotThread(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { op, source }
    }
}
