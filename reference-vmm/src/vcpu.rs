//! The vCPU thread: runs the guest until asked to pause, handles port I/O exits, and turns
//! fatal exits into typed errors.
//!
//! Pausing: the controller sets a flag and sends [`kick_signal`] to the thread until it has
//! returned; the signal makes `KVM_RUN` fail with `EINTR` and the loop sees the flag. A kick
//! that lands just before `KVM_RUN` is lost, which is why the kick is repeated.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuExit, VcpuFd};
use libc::{c_int, c_void, siginfo_t};
use ramstream_migrate::PageRun;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::balloon::Balloon;
use crate::error::{Error, Result};
use crate::guest_abi::{param, port, PARAM_GPA};
use crate::memory::GuestMemory;

/// The real-time signal (offset from `SIGRTMIN`) used to kick vCPU threads out of `KVM_RUN`.
pub const KICK_SIGNAL_OFFSET: c_int = 5;

/// The kick signal number.
pub fn kick_signal() -> c_int {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {}

/// Installs the (empty) kick handler once per process.
pub(crate) fn install_kick_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), i32>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno()))
        .map_err(|errno| {
            Error::VcpuThread(format!("installing the kick signal handler: errno {errno}"))
        })
}

/// Counters the vCPU thread keeps, readable while it runs.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) pause: AtomicBool,
    pub(crate) exits: AtomicU64,
    pub(crate) balloon_reports: AtomicU64,
    pub(crate) checks_done: AtomicU64,
}

/// How the vCPU thread ended.
#[derive(Debug)]
pub(crate) enum ThreadEnd {
    /// Asked to pause.
    Paused,
    /// The guest acknowledged `STOP`.
    Stopped,
    /// A fatal exit or a failed ioctl.
    Failed(Error),
}

pub(crate) struct RunContext {
    pub(crate) mem: Arc<GuestMemory>,
    pub(crate) balloon: Arc<Balloon>,
    pub(crate) shared: Arc<Shared>,
}

/// Starts the vCPU thread; it hands the vCPU back when it ends.
pub(crate) fn spawn(vcpu: VcpuFd, ctx: RunContext) -> Result<JoinHandle<(VcpuFd, ThreadEnd)>> {
    install_kick_handler()?;
    std::thread::Builder::new()
        .name("ramstream-vcpu0".into())
        .spawn(move || run(vcpu, &ctx))
        .map_err(|e| Error::VcpuThread(e.to_string()))
}

/// Kicks the thread until it has returned (it must have been asked to pause or stop).
pub(crate) fn kick_until_finished<T>(handle: &JoinHandle<T>) {
    while !handle.is_finished() {
        // A finished but unjoined thread still has a valid pthread handle; ESRCH is harmless.
        let _ = handle.kill(kick_signal());
        // A vCPU parked by the guest's idle port wakes from this.
        handle.thread().unpark();
        for _ in 0..50 {
            if handle.is_finished() {
                return;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

fn rip(vcpu: &VcpuFd) -> u64 {
    vcpu.get_regs().map(|r| r.rip).unwrap_or(u64::MAX)
}

/// Re-enters KVM with `immediate_exit` set so that it finishes the last port I/O (an `out`
/// only retires, moving RIP past it, on the next `KVM_RUN`) and returns at once with `EINTR`.
/// Without this, state saved now would replay the `out` on the destination.
fn complete_pending_io(vcpu: &mut VcpuFd) {
    vcpu.set_kvm_immediate_exit(1);
    // EINTR is the expected result; anything else will show on the next run.
    let _ = vcpu.run();
    vcpu.set_kvm_immediate_exit(0);
}

fn run(mut vcpu: VcpuFd, ctx: &RunContext) -> (VcpuFd, ThreadEnd) {
    loop {
        if ctx.shared.pause.load(Ordering::Acquire) {
            complete_pending_io(&mut vcpu);
            return (vcpu, ThreadEnd::Paused);
        }
        let step = match vcpu.run() {
            Ok(exit) => {
                ctx.shared.exits.fetch_add(1, Ordering::Relaxed);
                handle_exit(exit, ctx)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Continue,
            Err(source) => Step::End(ThreadEnd::Failed(Error::Kvm {
                op: "KVM_RUN",
                source,
            })),
        };
        match step {
            Step::Continue => {}
            Step::End(ThreadEnd::Stopped) => {
                complete_pending_io(&mut vcpu);
                return (vcpu, ThreadEnd::Stopped);
            }
            Step::End(end) => return (vcpu, end),
            Step::InternalError => {
                let suberror = crate::sys::internal_error_suberror(&mut vcpu);
                let rip = rip(&vcpu);
                return (
                    vcpu,
                    ThreadEnd::Failed(Error::GuestInternalError { suberror, rip }),
                );
            }
            Step::Shutdown => {
                let rip = rip(&vcpu);
                return (vcpu, ThreadEnd::Failed(Error::GuestShutdown { rip }));
            }
        }
    }
}

enum Step {
    Continue,
    End(ThreadEnd),
    InternalError,
    Shutdown,
}

fn handle_exit(exit: VcpuExit<'_>, ctx: &RunContext) -> Step {
    match exit {
        VcpuExit::IoOut(p, data) => {
            let mut value = [0u8; 4];
            let n = data.len().min(4);
            value[..n].copy_from_slice(&data[..n]);
            match handle_port(p, u32::from_le_bytes(value), ctx) {
                Ok(step) => step,
                Err(e) => Step::End(ThreadEnd::Failed(e)),
            }
        }
        VcpuExit::Hlt => Step::End(ThreadEnd::Stopped),
        VcpuExit::Intr => Step::Continue,
        VcpuExit::InternalError => Step::InternalError,
        VcpuExit::Shutdown => Step::Shutdown,
        VcpuExit::FailEntry(reason, _) => Step::End(ThreadEnd::Failed(Error::FailEntry { reason })),
        other => Step::End(ThreadEnd::Failed(Error::UnexpectedExit(format!(
            "{other:?}"
        )))),
    }
}

/// The guest is idle (`port::IDLE`): parks this thread for `param::IDLE_US` microseconds,
/// ending early when a pause is asked or a command posted (both unpark the thread). Parked,
/// the vCPU costs no CPU, where the guest's delay loop would spin a core.
fn idle(ctx: &RunContext) -> Result<()> {
    let start = Instant::now();
    loop {
        // Read again at each wake: the VMM may have shortened or ended the idling.
        let us = ctx.mem.load_u64(PARAM_GPA + param::IDLE_US)?;
        let pending = ctx.mem.load_u64(PARAM_GPA + param::CMD_SEQ)?
            != ctx.mem.load_u64(PARAM_GPA + param::CMD_ACK)?;
        let left = Duration::from_micros(us).saturating_sub(start.elapsed());
        if ctx.shared.pause.load(Ordering::Acquire) || pending || left.is_zero() {
            return Ok(());
        }
        std::thread::park_timeout(left);
    }
}

fn handle_port(p: u16, value: u32, ctx: &RunContext) -> Result<Step> {
    let report = || -> Result<(u64, u64)> {
        Ok((
            ctx.mem.load_u64(PARAM_GPA + param::REPORT_FIRST)?,
            ctx.mem.load_u64(PARAM_GPA + param::REPORT_COUNT)?,
        ))
    };
    match p {
        port::STOPPED => return Ok(Step::End(ThreadEnd::Stopped)),
        port::BALLOON_INFLATE => {
            let (first, count) = report()?;
            ctx.balloon.inflate(&ctx.mem, PageRun::new(first, count))?;
            ctx.shared.balloon_reports.fetch_add(1, Ordering::Relaxed);
        }
        port::BALLOON_DEFLATE => {
            let (first, count) = report()?;
            ctx.balloon.deflate(&ctx.mem, PageRun::new(first, count))?;
            ctx.shared.balloon_reports.fetch_add(1, Ordering::Relaxed);
        }
        port::CHECK_DONE => {
            ctx.shared.checks_done.fetch_add(1, Ordering::Relaxed);
        }
        port::IDLE => idle(ctx)?,
        port::ERROR => return Err(Error::GuestReported { code: value }),
        other => {
            return Err(Error::UnexpectedExit(format!(
                "out to unknown port {other:#x}"
            )))
        }
    }
    Ok(Step::Continue)
}
