//! ramstream reference VMM (work in progress).
pub mod balloon;
pub mod boot;
pub mod dirty;
pub mod error;
pub mod guest_abi;
pub mod guest_program;
pub mod memory;
pub mod state;
mod sys;
pub mod vcpu;
pub mod vm;

pub use balloon::BalloonRun;
pub use boot::GuestConfig;
pub use dirty::DirtyBitmap;
pub use error::{Error, Result};
pub use memory::{GuestMemory, MemoryLayout, RegionSpec};
pub use state::{MsrValue, VcpuState, VmState};
pub use vm::{GuestCounters, GuestVerification, RunStatus, SelfCheck, Vm};
