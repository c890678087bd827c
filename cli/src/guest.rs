//! The reference KVM guest that `send`, `demo` and `bench-migrate` start and live-migrate:
//! its arguments, start-up, and the migration with a progress bar.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use ramstream_reference_sender::{
    migrate, migrate_multifd, KvmSource, MigrationReport, Phase, Progress, SendOptions,
};
use ramstream_reference_vmm::{GuestConfig, MemoryLayout, Vm};

use crate::addr::Addr;
use crate::size::{human, parse_size};

/// The guest to start and how to migrate it (shared by `send`, `demo` and `bench-migrate`).
#[derive(Args, Debug, Clone)]
pub struct GuestArgs {
    /// Guest RAM (sparse), e.g. 1G or 256M; a multiple of 4 MiB.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub mem: u64,
    /// Percent of RAM the guest gives back to its balloon before migrating [default: 50].
    /// bench-migrate: the one percentage to measure, instead of 0, 50 and 90.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub balloon_percent: Option<u8>,
    /// Pages the guest keeps rewriting (its working set).
    #[arg(long, default_value_t = 4096)]
    pub working_set: u64,
    /// Pages the guest writes per main-loop iteration.
    #[arg(long, default_value_t = 8)]
    pub pages_per_loop: u64,
    /// Spin iterations per main-loop iteration (slows the guest's writes).
    #[arg(long, default_value_t = 1000)]
    pub delay_loops: u64,
    /// Let the guest run this long (ms) before migrating.
    #[arg(long, default_value_t = 300)]
    pub warmup_ms: u64,
    /// Once the guest has written its whole working set, slow its writes to about one page a
    /// second (a near-idle guest with fixed memory contents, for benchmarks).
    #[arg(long)]
    pub quiesce: bool,
    /// Use XBZRLE after the bulk stage.
    #[arg(long)]
    pub xbzrle: bool,
    /// XBZRLE cache size (a power of two).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub xbzrle_cache_size: u64,
    /// Bandwidth limit in bytes per second; 0 = unlimited. The default, 32M (QEMU's before
    /// 2.x; 7.2 uses 128M), lets the demo guest's dirty rate force a few iterations.
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    pub max_bandwidth: u64,
    /// Largest acceptable downtime in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub downtime_limit: u64,
    /// Stop the guest after this many dirty iterations even if not converged.
    #[arg(long, default_value_t = 30)]
    pub max_iterations: u32,
}

impl GuestArgs {
    /// The percent of RAM to balloon (50 unless given).
    pub fn balloon_percent(&self) -> u8 {
        self.balloon_percent.unwrap_or(50)
    }

    /// The sender options.
    pub fn send_options(&self) -> SendOptions {
        SendOptions {
            xbzrle: self.xbzrle,
            xbzrle_cache_size: self.xbzrle_cache_size,
            max_bandwidth: (self.max_bandwidth > 0).then_some(self.max_bandwidth),
            downtime_limit: Duration::from_millis(self.downtime_limit),
            max_iterations: self.max_iterations,
            skip_ballooned: true,
            multifd_channels: None,
        }
    }
}

/// Says clearly why /dev/kvm cannot be used, if it cannot.
pub fn check_kvm() -> Result<()> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        bail!(
            "/dev/kvm is not usable ({e}): the live migration needs KVM. Load the kvm module \
             (kvm_intel / kvm_amd) and give this user read-write access to /dev/kvm \
             (e.g. add it to the `kvm` group)"
        );
    }
    Ok(())
}

/// Builds, starts and warms up the source guest; inflates its balloon.
pub fn start_guest(a: &GuestArgs) -> Result<Vm> {
    check_kvm()?;
    let layout = MemoryLayout::with_ram_size(a.mem).context("guest memory size")?;
    let avail = layout.total_pages() - layout.reserved_pages();
    let config = GuestConfig {
        working_set_first: None,
        working_set_pages: a.working_set.min(avail),
        pages_per_loop: a.pages_per_loop,
        delay_loops: a.delay_loops,
        fill_pages: false,
    };
    let mut vm = Vm::new(&layout, &config).context("creating the source guest")?;
    vm.resume().context("starting the source guest")?;
    std::thread::sleep(Duration::from_millis(a.warmup_ms));
    if a.quiesce {
        let start = std::time::Instant::now();
        // A guest with no working set has nothing to write first.
        while config.working_set_pages > 0 && vm.counters()?.generation < 2 {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the guest did not write its working set within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        vm.set_rate(1, 1_000_000)?;
        // Between its one page a second, the guest idles (its vCPU parked, no CPU).
        vm.set_idle(Duration::from_secs(1))?;
        // The main-loop iteration in flight still writes at the old rate (a whole working
        // set with --pages-per-loop as large): wait until the next one has started, so the
        // migration does not begin while the guest is still writing.
        let beat = vm.heartbeat()?;
        vm.wait_heartbeat_past(beat, Duration::from_secs(60))
            .context("waiting for the guest to take the quiesced rate")?;
    }
    if a.balloon_percent() > 0 {
        vm.balloon_inflate_percent(a.balloon_percent())
            .context("inflating the balloon")?;
    }
    Ok(vm)
}

/// Updates `pb` from a progress snapshot.
pub fn show_progress(pb: &ProgressBar, p: &Progress) {
    let msg = match p.phase {
        Phase::Bulk => "bulk stage".to_string(),
        Phase::Iterate => format!("dirty iteration {}", p.iteration),
        Phase::StopAndCopy => "stop-and-copy (guest paused)".to_string(),
        other => other.to_string(),
    };
    pb.set_message(msg);
    pb.set_length(p.round_total.max(1));
    pb.set_position(p.round_done);
    pb.set_prefix(format!("{} sent", human(p.transferred)));
    pb.tick();
}

/// Migrates a running guest to `to` (with multifd, over its channels too: see
/// [`crate::connect::open_connections`]), with a progress bar.
pub fn migrate_guest(
    vm: Vm,
    to: &Addr,
    opts: &SendOptions,
    bar: bool,
    tls: Option<&crate::tls::ClientTls>,
) -> (KvmSource, Result<MigrationReport>) {
    let mut src = KvmSource::new(vm);
    let (out, channels) = match crate::connect::open_connections(to, opts.multifd_channels, tls) {
        Ok(o) => o,
        Err(e) => {
            let r = Err(e).with_context(|| {
                format!("migration failed in connect after 0 bytes sent: cannot open {to}; source guest keeps running")
            });
            return (src, r);
        }
    };
    let pb = crate::progress::pages(bar);
    let mut round = None;
    let mut on_progress = |p: &Progress| {
        // One line per round (the bulk stage, each dirty iteration, stop-and-copy).
        if round != Some((p.phase, p.iteration)) {
            round = Some((p.phase, p.iteration));
            if bar {
                pb.println(format!(
                    "  {:<28} {:>7} pages to send, {:>10} sent so far",
                    match p.phase {
                        Phase::Iterate => format!("dirty iteration {}", p.iteration),
                        other => other.to_string(),
                    },
                    p.round_total,
                    human(p.transferred)
                ));
            }
        }
        show_progress(&pb, p)
    };
    let r = match channels {
        None => migrate(&mut src, out, opts, &mut on_progress),
        Some(c) => migrate_multifd(&mut src, out, c, opts, &mut on_progress),
    };
    pb.finish_and_clear();
    (src, r.map_err(anyhow::Error::from))
}
