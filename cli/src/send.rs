//! `ramstream send`: start a reference KVM guest and live-migrate it to a destination,
//! over one connection or, with `--multifd-channels N`, QEMU's multifd: the main stream
//! and N channels (SPEC.md §14).

use std::num::NonZeroU8;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ramstream_reference_sender::{MigrationReport, SendOptions};

use crate::addr::Addr;
use crate::guest::{migrate_guest, start_guest, GuestArgs};
use crate::tls::TlsArgs;

/// The option `--multifd-channels N` of `send` and `demo`: QEMU's capability `multifd`
/// with `multifd-channels` N.
#[derive(Args, Debug, Clone, Copy)]
pub struct MultifdArgs {
    /// Send RAM over N multifd channels (1 to 8) beside the main stream, as QEMU 9.2 to
    /// 11.1 with capability multifd do: N+1 connections to a tcp: or unix: address (the
    /// main stream first), or for file:F a multi-file recording (F, and F.multifd-0 to
    /// F.multifd-(N-1) for the channels). The balloon map is off with it (ballooned pages go
    /// as zero pages).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub multifd_channels: Option<u8>,
}

impl MultifdArgs {
    /// `opts` with these channels.
    pub fn apply(&self, opts: SendOptions) -> SendOptions {
        SendOptions {
            multifd_channels: self.multifd_channels.and_then(NonZeroU8::new),
            ..opts
        }
    }
}

/// `ramstream send`'s arguments.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Where to send the stream: tcp:HOST:PORT or unix:PATH (connected to), or file:PATH
    /// (created or truncated).
    pub to: Addr,
    #[command(flatten)]
    pub guest: GuestArgs,
    #[command(flatten)]
    pub multifd: MultifdArgs,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Draw the rounds (pages, bytes, bandwidth, expected downtime) as an SVG file.
    #[arg(long, value_name = "SVG")]
    pub timeline: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Prints the sender's figures as a table.
pub fn print_report(r: &MigrationReport) {
    let human = crate::size::human;
    println!("  status              {}", r.status);
    println!("  total time          {:.0} ms", r.total_time_ms);
    println!(
        "  downtime            {:.1} ms (of which digest {:.1} ms; expected {:.1} ms)",
        r.downtime_ms, r.digest_ms, r.expected_downtime_ms
    );
    println!(
        "  iterations          {} ({})",
        r.iterations,
        if r.converged {
            "converged"
        } else {
            "stopped at max-iterations"
        }
    );
    println!("  transferred         {}", human(r.ram.transferred));
    println!("  RAM total           {}", human(r.ram.total));
    println!(
        "  pages               normal {}  duplicate (zero) {}  xbzrle {}",
        r.ram.normal, r.ram.duplicate, r.ram.xbzrle_pages
    );
    println!(
        "  ballooned skipped   {} pages ({} never read)",
        r.ram.ballooned_skipped,
        human(r.ram.ballooned_skipped * 4096)
    );
    println!("  pages visited       {}", r.ram.pages_visited);
    println!(
        "  balloon records     {} (x-ramstream-balloon-v1 full maps)",
        r.ram.balloon_records
    );
    println!(
        "  dirty-sync-count    {}   dirty-pages-rate {} pages/s   mbps {:.1}",
        r.ram.dirty_sync_count, r.ram.dirty_pages_rate, r.ram.mbps
    );
    for it in &r.rounds {
        println!(
            "    round {:>2}: {:>7} pages {:>10} bytes {:>8.1} ms, then {:>6} dirty, expected downtime {:.1} ms",
            it.iteration, it.pages, it.bytes, it.duration_ms, it.dirty_after, it.expected_downtime_ms
        );
    }
    if let Some(m) = &r.multifd {
        println!(
            "  multifd             {} channels, uuid {}, {} sync points, {} on the channels",
            m.channels,
            m.uuid,
            m.sync_points,
            human(r.ram.multifd_bytes)
        );
        for c in &m.per_channel {
            println!(
                "    channel {}: {:>6} packets ({} SYNC) {:>10} bytes, {} normal pages, {} zero pages",
                c.id, c.packets, c.syncs, c.bytes, c.normal, c.zero
            );
        }
    }
    if let Some(x) = &r.xbzrle_cache {
        println!(
            "  xbzrle-cache        size {}  pages {}  bytes {}  cache-miss {}  overflow {}  cache-miss-rate {:.3}  encoding-rate {:.1}",
            human(x.cache_size),
            x.pages,
            x.bytes,
            x.cache_miss,
            x.overflow,
            x.cache_miss_rate,
            x.encoding_rate
        );
    }
}

/// `ramstream send`.
pub fn run(args: &SendArgs) -> Result<()> {
    let SendArgs {
        to,
        guest: a,
        multifd,
        json,
        timeline,
        tls,
    } = args;
    let opts = multifd.apply(a.send_options());
    tls.refuse_listening_options("send")?;
    let tls = tls.client()?;
    let vm = start_guest(a)?;
    let (mut src, r) = migrate_guest(vm, to, &opts, false, tls.as_ref());
    match r {
        Ok(report) => {
            crate::timeline::save_report(
                timeline.as_deref(),
                &format!("send to {to}"),
                &report,
                a,
            )?;
            if *json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("migrated to {to}:");
                print_report(&report);
            }
            Ok(())
        }
        Err(e) => {
            let hb = src.vm().heartbeat().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(100));
            let hb2 = src.vm_mut().heartbeat().unwrap_or(0);
            eprintln!(
                "source guest: {:?}, heartbeat {hb} -> {hb2}",
                src.vm_mut().status()
            );
            Err(e)
        }
    }
}
