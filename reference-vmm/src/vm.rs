//! [`Vm`]: one KVM virtual machine with one vCPU running the guest program (a migration
//! source), or waiting for state to be restored into it (a migration destination).

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use ramstream_migrate::PageRun;

use crate::balloon::Balloon;
use crate::boot::{self, GuestConfig};
use crate::dirty::DirtyBitmap;
use crate::error::{Error, Result};
use crate::guest_abi::{cmd, param, status, PARAM_GPA};
use crate::memory::{GuestMemory, MemoryLayout};
use crate::state::{self, VcpuCaps, VcpuState, VmState, CAPTURED_MSRS};
use crate::vcpu::{self, RunContext, Shared, ThreadEnd};

/// Guest-physical address given to `KVM_SET_TSS_ADDR` (three pages, below 4 GiB).
const TSS_ADDR: usize = 0xFFFB_D000;
/// How long [`Vm`] waits for the guest to acknowledge a command by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the vCPU is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Not running; state can be read and written. A new VM starts here.
    Paused,
    /// The vCPU thread is running the guest.
    Running,
    /// The guest acknowledged a stop command and halted; it cannot be resumed.
    Stopped,
    /// The vCPU hit a fatal exit; the message says which.
    Failed(String),
}

enum Run {
    Paused(VcpuFd),
    Running(JoinHandle<(VcpuFd, ThreadEnd)>),
    Stopped(VcpuFd),
    Failed(VcpuFd, String),
    /// Only while a transition is in progress.
    Gone,
}

/// The guest's counters, read from its parameter block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestCounters {
    /// Main-loop iterations.
    pub heartbeat: u64,
    /// Current sweep over the working set (starts at 1).
    pub generation: u64,
    /// Next working-set index to be written.
    pub cursor: u64,
    /// Pages written since start.
    pub pages_written: u64,
    /// Pages the guest holds in its balloon.
    pub balloon_pages: u64,
}

/// The result of the guest's self-check over its working set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfCheck {
    /// Written pages whose content matched their pattern.
    pub ok_pages: u64,
    /// Never-written (or returned-by-balloon) pages that were all zero.
    pub zero_pages: u64,
    /// Pages that matched neither.
    pub bad_pages: u64,
    /// The first bad RAM page number.
    pub first_bad_page: Option<u64>,
    /// Pages skipped because they are in the balloon.
    pub ballooned_pages: u64,
}

impl SelfCheck {
    /// True when no page was bad.
    pub fn passed(&self) -> bool {
        self.bad_pages == 0
    }
}

/// Proof that a guest runs: its heartbeat advanced and its self-check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestVerification {
    /// Heartbeat when verification started.
    pub heartbeat_before: u64,
    /// Heartbeat after it had advanced.
    pub heartbeat_after: u64,
    /// The self-check's result.
    pub check: SelfCheck,
}

/// A KVM virtual machine with guest RAM from a [`MemoryLayout`] and one vCPU.
///
/// Field order matters: the vCPU (or its thread) is dropped before the VM fd, and the VM fd
/// before the memory it maps.
pub struct Vm {
    run: Run,
    /// The memory slots' registration, when still under way on its thread.
    slots: Option<JoinHandle<Result<()>>>,
    vm: Arc<VmFd>,
    _kvm: Kvm,
    mem: Arc<GuestMemory>,
    balloon: Arc<Balloon>,
    shared: Arc<Shared>,
    caps: VcpuCaps,
    dirty_logging: bool,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("layout", self.mem.layout())
            .field("dirty_logging", &self.dirty_logging)
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// Builds a source VM: memory per `layout`, the guest program loaded and configured by
    /// `config`, the vCPU at the program's entry in long mode. Paused; call [`Vm::resume`].
    pub fn new(layout: &MemoryLayout, config: &GuestConfig) -> Result<Self> {
        config.working_set(layout)?;
        let mut vm = Self::build(layout)?;
        vm.slots_ready()?;
        boot::load_guest(&vm.mem, config)?;
        let vcpu = vm.vcpu()?;
        let sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
        vcpu.set_sregs(&boot::long_mode_sregs(sregs))
            .map_err(Error::kvm("KVM_SET_SREGS"))?;
        vcpu.set_regs(&boot::entry_regs())
            .map_err(Error::kvm("KVM_SET_REGS"))?;
        Ok(vm)
    }

    /// Builds a destination VM: empty (zero) memory per `layout` and a vCPU waiting for
    /// [`Vm::restore_vcpu_state`] and [`Vm::restore_vm_state`]. Paused.
    ///
    /// Its memory can be written at once; KVM's memory slots are registered on a thread
    /// meanwhile, and [`Vm::resume`] (or turning dirty logging on) waits for them. Each
    /// `KVM_SET_USER_MEMORY_REGION` waits for an SRCU grace period, 6 to 13 ms for a 2 GiB
    /// guest under nested KVM here: a receiver that registered them in line kept its
    /// source waiting that long on a full socket at the migration's start.
    pub fn new_destination(layout: &MemoryLayout) -> Result<Self> {
        Self::build(layout)
    }

    /// Registers a slot per region of `mem` on a thread (`kvm-slots`).
    fn register_slots(vm: &Arc<VmFd>, mem: &Arc<GuestMemory>) -> Result<JoinHandle<Result<()>>> {
        let (vm, mem) = (Arc::clone(vm), Arc::clone(mem));
        std::thread::Builder::new()
            .name("kvm-slots".into())
            .spawn(move || set_memory_slots(&vm, &mem, false))
            .map_err(|e| Error::SlotThread(e.to_string()))
    }

    /// Waits until the memory slots are registered ([`Vm::new_destination`]); their error,
    /// if registering failed.
    pub fn slots_ready(&mut self) -> Result<()> {
        match self.slots.take() {
            None => Ok(()),
            Some(handle) => handle
                .join()
                .map_err(|_| Error::SlotThread("it panicked".into()))?,
        }
    }

    fn build(layout: &MemoryLayout) -> Result<Self> {
        let k = Error::kvm;
        let kvm = Kvm::new().map_err(Error::KvmUnavailable)?;
        let vm = kvm.create_vm().map_err(k("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDR)
            .map_err(k("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip().map_err(k("KVM_CREATE_IRQCHIP"))?;
        let vm = Arc::new(vm);
        let mem = Arc::new(GuestMemory::new(layout)?);
        let slots = Self::register_slots(&vm, &mem)?;
        let vcpu = vm.create_vcpu(0).map_err(k("KVM_CREATE_VCPU"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(k("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(k("KVM_SET_CPUID2"))?;
        let caps = VcpuCaps {
            xsave: vm.check_extension(Cap::Xsave),
            xcrs: vm.check_extension(Cap::Xcrs),
            msrs: CAPTURED_MSRS
                .iter()
                .copied()
                .filter(|&m| state::msr_readable(&vcpu, m))
                .collect(),
        };
        let balloon = Arc::new(Balloon::new(layout));
        Ok(Self {
            run: Run::Paused(vcpu),
            slots: Some(slots),
            vm,
            _kvm: kvm,
            mem,
            balloon,
            shared: Arc::new(Shared::default()),
            caps,
            dirty_logging: false,
        })
    }

    /// Guest RAM, for reading and writing pages (shared with the vCPU thread).
    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.mem
    }

    /// The memory layout (send it to the destination to build an identical VM).
    pub fn layout(&self) -> &MemoryLayout {
        self.mem.layout()
    }

    /// Where the vCPU is. A vCPU thread that ended on its own (guest stop, fatal exit) is
    /// collected here.
    pub fn status(&mut self) -> RunStatus {
        let _ = self.reap();
        match &self.run {
            Run::Paused(_) => RunStatus::Paused,
            Run::Running(_) => RunStatus::Running,
            Run::Stopped(_) => RunStatus::Stopped,
            Run::Failed(_, m) => RunStatus::Failed(m.clone()),
            Run::Gone => RunStatus::Failed("vCPU lost".into()),
        }
    }

    /// VM exits handled so far (port I/O, signals…).
    pub fn exit_count(&self) -> u64 {
        self.shared.exits.load(Ordering::Relaxed)
    }

    fn vcpu(&self) -> Result<&VcpuFd> {
        match &self.run {
            Run::Paused(v) | Run::Stopped(v) | Run::Failed(v, _) => Ok(v),
            Run::Running(_) => Err(Error::Running),
            Run::Gone => Err(Error::NotRunning),
        }
    }

    /// Starts (or restarts) the vCPU thread. Does nothing if it is running; fails with
    /// [`Error::NotResumable`] after the guest stopped or the vCPU failed.
    pub fn resume(&mut self) -> Result<()> {
        if matches!(self.run, Run::Paused(_)) {
            self.slots_ready()?;
        }
        match std::mem::replace(&mut self.run, Run::Gone) {
            Run::Paused(vcpu) => {
                self.shared.pause.store(false, Ordering::Release);
                let ctx = RunContext {
                    mem: Arc::clone(&self.mem),
                    balloon: Arc::clone(&self.balloon),
                    shared: Arc::clone(&self.shared),
                };
                self.run = Run::Running(vcpu::spawn(vcpu, ctx)?);
                Ok(())
            }
            other => {
                let result = match &other {
                    Run::Running(_) => Ok(()),
                    Run::Stopped(_) => Err(Error::NotResumable("the guest stopped".into())),
                    Run::Failed(_, why) => Err(Error::NotResumable(why.clone())),
                    Run::Paused(_) | Run::Gone => Err(Error::NotResumable("vCPU lost".into())),
                };
                self.run = other;
                result
            }
        }
    }

    /// Stops the vCPU thread and waits until it has left the guest. Does nothing unless it
    /// is running. If the thread had already ended on a fatal exit, returns that error.
    pub fn pause(&mut self) -> Result<()> {
        if !matches!(self.run, Run::Running(_)) {
            return Ok(());
        }
        let Run::Running(handle) = std::mem::replace(&mut self.run, Run::Gone) else {
            return Ok(());
        };
        self.shared.pause.store(true, Ordering::Release);
        vcpu::kick_until_finished(&handle);
        self.finish_thread(handle)
    }

    fn finish_thread(&mut self, handle: JoinHandle<(VcpuFd, ThreadEnd)>) -> Result<()> {
        let (vcpu, end) = handle
            .join()
            .map_err(|_| Error::VcpuThread("vCPU thread panicked".into()))?;
        match end {
            ThreadEnd::Paused => {
                self.run = Run::Paused(vcpu);
                Ok(())
            }
            ThreadEnd::Stopped => {
                self.run = Run::Stopped(vcpu);
                Ok(())
            }
            ThreadEnd::Failed(e) => {
                self.run = Run::Failed(vcpu, e.to_string());
                Err(e)
            }
        }
    }

    /// If the vCPU thread ended on its own, collects it (and its error).
    fn reap(&mut self) -> Result<()> {
        if matches!(&self.run, Run::Running(h) if h.is_finished()) {
            if let Run::Running(h) = std::mem::replace(&mut self.run, Run::Gone) {
                self.finish_thread(h)?;
            }
        }
        match &self.run {
            Run::Running(_) => Ok(()),
            _ => Err(Error::NotRunning),
        }
    }

    fn param(&self, offset: u64) -> Result<u64> {
        self.mem.load_u64(PARAM_GPA + offset)
    }

    /// The guest's counters. Readable in any state.
    pub fn counters(&self) -> Result<GuestCounters> {
        Ok(GuestCounters {
            heartbeat: self.param(param::HEARTBEAT)?,
            generation: self.param(param::GENERATION)?,
            cursor: self.param(param::CURSOR)?,
            pages_written: self.param(param::PAGES_WRITTEN)?,
            balloon_pages: self.param(param::BALLOON_PAGES)?,
        })
    }

    /// The heartbeat counter.
    pub fn heartbeat(&self) -> Result<u64> {
        self.param(param::HEARTBEAT)
    }

    /// Changes the write rate while the guest runs (or before it starts).
    pub fn set_rate(&self, pages_per_loop: u64, delay_loops: u64) -> Result<()> {
        self.mem
            .store_u64(PARAM_GPA + param::PAGES_PER_LOOP, pages_per_loop)?;
        self.mem
            .store_u64(PARAM_GPA + param::DELAY_LOOPS, delay_loops)
    }

    /// Makes the guest idle for `idle` after each main-loop iteration instead of spinning its
    /// delay loop (`Duration::ZERO`: spin again): the vCPU thread parks meanwhile, so a
    /// quiesced guest costs no CPU. Commands, pauses and stops still take effect at once.
    pub fn set_idle(&self, idle: Duration) -> Result<()> {
        let us = u64::try_from(idle.as_micros()).unwrap_or(u64::MAX);
        self.mem.store_u64(PARAM_GPA + param::IDLE_US, us)?;
        self.wake();
        Ok(())
    }

    /// Unparks the vCPU thread if it idles (it then reads the parameter block again).
    fn wake(&self) {
        if let Run::Running(handle) = &self.run {
            handle.thread().unpark();
        }
    }

    /// Waits until the heartbeat exceeds `value`; returns the heartbeat seen.
    pub fn wait_heartbeat_past(&mut self, value: u64, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        loop {
            let hb = self.heartbeat()?;
            if hb > value {
                return Ok(hb);
            }
            self.reap()?;
            if start.elapsed() > timeout {
                return Err(Error::CommandTimeout {
                    command: "heartbeat",
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Posts a command in the guest's mailbox and waits for its acknowledgement.
    fn command(
        &mut self,
        name: &'static str,
        code: u64,
        arg0: u64,
        arg1: u64,
        timeout: Duration,
    ) -> Result<()> {
        self.reap()?;
        let seq = self.param(param::CMD_ACK)?.wrapping_add(1);
        let p = |off: u64, v: u64| self.mem.store_u64(PARAM_GPA + off, v);
        p(param::CMD, code)?;
        p(param::CMD_ARG0, arg0)?;
        p(param::CMD_ARG1, arg1)?;
        p(param::CMD_SEQ, seq)?;
        self.wake();
        let start = Instant::now();
        while self.param(param::CMD_ACK)? != seq {
            self.reap()?;
            if start.elapsed() > timeout {
                return Err(Error::CommandTimeout {
                    command: name,
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        match self.param(param::CMD_STATUS)? {
            status::OK => Ok(()),
            s => Err(Error::CommandRejected {
                command: name,
                status: s,
            }),
        }
    }

    /// Asks the guest to verify every page of its working set; waits for the result.
    pub fn self_check(&mut self) -> Result<SelfCheck> {
        self.self_check_within(DEFAULT_COMMAND_TIMEOUT)
    }

    /// [`Vm::self_check`], waiting at most `timeout` for the guest's answer (the check walks
    /// the working set: a large one under nested virtualisation outlasts the default).
    pub fn self_check_within(&mut self, timeout: Duration) -> Result<SelfCheck> {
        self.command("self-check", cmd::SELF_CHECK, 0, 0, timeout)?;
        let first_bad = self.param(param::CHECK_FIRST_BAD)?;
        Ok(SelfCheck {
            ok_pages: self.param(param::CHECK_OK)?,
            zero_pages: self.param(param::CHECK_ZERO)?,
            bad_pages: self.param(param::CHECK_BAD)?,
            first_bad_page: (first_bad != u64::MAX).then_some(first_bad),
            ballooned_pages: self.param(param::CHECK_BALLOONED)?,
        })
    }

    /// Proves the guest runs: waits for the heartbeat to advance, then runs the self-check,
    /// each for at most `timeout`.
    pub fn verify_guest(&mut self, timeout: Duration) -> Result<GuestVerification> {
        let before = self.heartbeat()?;
        let after = self.wait_heartbeat_past(before, timeout)?;
        Ok(GuestVerification {
            heartbeat_before: before,
            heartbeat_after: after,
            check: self.self_check_within(timeout)?,
        })
    }

    /// Asks the guest to stop; waits until it halted. The VM is then [`RunStatus::Stopped`].
    pub fn stop_guest(&mut self) -> Result<()> {
        self.command("stop", cmd::STOP, 0, 0, DEFAULT_COMMAND_TIMEOUT)?;
        let start = Instant::now();
        while self.reap().is_ok() {
            if start.elapsed() > DEFAULT_COMMAND_TIMEOUT {
                return Err(Error::CommandTimeout {
                    command: "stop",
                    waited_ms: DEFAULT_COMMAND_TIMEOUT.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        match self.status() {
            RunStatus::Stopped => Ok(()),
            _ => self.reap(),
        }
    }

    /// Balloon inflate: asks the guest to give back the RAM pages of `ram` (a run of RAM
    /// page numbers, see [`MemoryLayout`]). When this returns, the guest no longer uses them
    /// and the host has discarded them.
    pub fn balloon_inflate(&mut self, ram: PageRun) -> Result<()> {
        Balloon::split(self.layout(), ram)?;
        self.command(
            "balloon-inflate",
            cmd::INFLATE,
            ram.start,
            ram.count,
            DEFAULT_COMMAND_TIMEOUT,
        )
    }

    /// Balloon deflate: the guest takes the RAM pages of `ram` back; they read as zero until
    /// it writes them.
    pub fn balloon_deflate(&mut self, ram: PageRun) -> Result<()> {
        Balloon::split(self.layout(), ram)?;
        self.command(
            "balloon-deflate",
            cmd::DEFLATE,
            ram.start,
            ram.count,
            DEFAULT_COMMAND_TIMEOUT,
        )
    }

    /// Inflates the balloon to `percent` of RAM, taking the highest RAM pages first (those of
    /// the last region), never the guest's own pages. Returns the ballooned runs as
    /// [`Vm::balloon_runs`] does.
    pub fn balloon_inflate_percent(&mut self, percent: u8) -> Result<Vec<Vec<PageRun>>> {
        let layout = self.layout();
        let total = layout.total_pages();
        let target =
            (total * u64::from(percent.min(100)) / 100).min(total - layout.reserved_pages());
        if target > 0 {
            self.balloon_inflate(PageRun::new(total - target, target))?;
        }
        Ok(self.balloon_runs())
    }

    /// Deflates every ballooned run.
    pub fn balloon_deflate_all(&mut self) -> Result<()> {
        for (region, runs) in self.balloon_runs().into_iter().enumerate() {
            for run in runs {
                let ram = self.layout().ram_run(region, run)?;
                self.balloon_deflate(ram)?;
            }
        }
        Ok(())
    }

    /// The pages currently in the balloon: one list of runs per region (indexed by region, as
    /// the [`MemoryLayout`]'s regions are), each sorted, in 4 KiB pages counted from the
    /// region's start.
    pub fn balloon_runs(&self) -> Vec<Vec<PageRun>> {
        self.balloon.runs()
    }

    /// Turns on `KVM_MEM_LOG_DIRTY_PAGES` for every slot and forgets earlier VMM writes; the
    /// next [`Vm::dirty_log`] reports pages changed from now on.
    pub fn start_dirty_log(&mut self) -> Result<()> {
        self.set_dirty_logging(true)?;
        for region in 0..self.layout().regions.len() {
            self.mem.take_vmm_dirty(region)?;
        }
        Ok(())
    }

    /// Turns dirty logging off again.
    pub fn stop_dirty_log(&mut self) -> Result<()> {
        self.set_dirty_logging(false)
    }

    /// True while dirty logging is on.
    pub fn dirty_logging(&self) -> bool {
        self.dirty_logging
    }

    fn set_dirty_logging(&mut self, on: bool) -> Result<()> {
        self.slots_ready()?;
        set_memory_slots(&self.vm, &self.mem, on)?;
        self.dirty_logging = on;
        Ok(())
    }

    /// Gets and clears the dirty pages of `region` since the previous call: KVM's log for
    /// the guest's writes, merged with pages the VMM wrote or discarded itself.
    pub fn dirty_log(&self, region: usize) -> Result<DirtyBitmap> {
        let spec = self
            .layout()
            .regions
            .get(region)
            .ok_or_else(|| Error::UnknownRegion(region.to_string()))?;
        let kvm_bits = self
            .vm
            .get_dirty_log(region as u32, spec.size as usize)
            .map_err(Error::kvm("KVM_GET_DIRTY_LOG"))?;
        let mut bitmap = DirtyBitmap::new(region, spec.pages(), kvm_bits);
        bitmap.merge_words(&self.mem.take_vmm_dirty(region)?);
        Ok(bitmap)
    }

    /// [`Vm::dirty_log`] for every region, in layout order.
    pub fn dirty_logs(&self) -> Result<Vec<DirtyBitmap>> {
        (0..self.layout().regions.len())
            .map(|r| self.dirty_log(r))
            .collect()
    }

    /// Captures the vCPU state. The vCPU must not be running.
    pub fn save_vcpu_state(&self) -> Result<VcpuState> {
        VcpuState::capture(self.vcpu()?, &self.caps)
    }

    /// Loads a vCPU state. The vCPU must not be running.
    pub fn restore_vcpu_state(&self, state: &VcpuState) -> Result<()> {
        state.restore(self.vcpu()?)
    }

    /// Captures VM-wide state (clock, interrupt controllers, balloon). The vCPU must not be
    /// running, so that the balloon cannot change underneath.
    pub fn save_vm_state(&self) -> Result<VmState> {
        self.vcpu()?;
        let runs = self.balloon.runs().into_iter().enumerate();
        let flat = runs.flat_map(|(region, runs)| runs.into_iter().map(move |r| (region, r)));
        VmState::capture(&self.vm, flat.collect())
    }

    /// Loads VM-wide state: clock, interrupt controllers, and the balloon's runs (whose pages
    /// are discarded). The vCPU must not be running.
    pub fn restore_vm_state(&self, state: &VmState) -> Result<()> {
        self.vcpu()?;
        for &(region, run) in &state.balloon {
            Balloon::split(self.layout(), self.layout().ram_run(region, run)?)?;
        }
        state.restore(&self.vm)?;
        self.balloon.restore(&self.mem, &state.balloon)
    }
}

/// Creates or updates a memory slot per region of `mem`, slot `i` for region `i`, with
/// dirty logging `log_dirty`.
fn set_memory_slots(vm: &VmFd, mem: &GuestMemory, log_dirty: bool) -> Result<()> {
    for slot in 0..mem.layout().regions.len() {
        crate::sys::set_memory_slot(vm, slot as u32, mem.mmap_region(slot)?, log_dirty)
            .map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Errors are moot now: the threads are gone either way.
        let _ = self.pause();
        let _ = self.slots_ready();
    }
}
