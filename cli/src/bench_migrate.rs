//! `ramstream bench-migrate`: the demo's migration, repeated with 0 %, 50 % and 90 % of the
//! guest's RAM ballooned, with and without the balloon map; with `--multifd`, one guest sent
//! over one connection and over 2 and 4 multifd channels, throughput against the single
//! connection's.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroU8;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use ramstream_reference_sender::{
    migrate, migrate_multifd, GuestSource, KvmSource, MigrationReport, SendOptions,
};
use serde_json::{json, Value};

use crate::connect::Writer;
use crate::demo::run_once;
use crate::guest::{start_guest, GuestArgs};

/// `ramstream bench-migrate`'s arguments.
#[derive(Args, Debug)]
pub struct BenchMigrateArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Runs per configuration; the median (by total time; with --multifd by bulk stage
    /// time) is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Benchmark multifd instead: one guest (quiesced, nothing ballooned, paused while it
    /// is sent, no bandwidth limit) sent over one connection without multifd, then over
    /// each of --channels multifd channels; throughput against the single connection.
    #[arg(long)]
    pub multifd: bool,
    /// With --multifd: the channel counts to compare (1 to 8 each).
    #[arg(long, value_delimiter = ',', default_value = "2,4",
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub channels: Vec<u8>,
    /// With --multifd: where the bytes go.
    #[arg(long, value_enum, default_value_t = BenchSink::Tcp)]
    pub sink: BenchSink,
}

/// Where `bench-migrate --multifd` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchSink {
    /// Loopback TCP, a connection per stream, each read and discarded by a thread.
    Tcp,
    /// Discarded by the writers themselves (no socket: the sender's own cost).
    Null,
}

/// One row of the balloon benchmark.
struct BenchRow {
    percent: u8,
    map: bool,
    total_ms: f64,
    downtime_ms: f64,
    bytes: u64,
    visited: u64,
    skipped: u64,
    verified: bool,
}

/// `ramstream bench-migrate`: the same guest with 0 %, 50 % and 90 % of RAM ballooned, each
/// sent with the balloon map (ballooned runs skipped) and without it (every page read).
pub fn run(args: &BenchMigrateArgs) -> Result<()> {
    if args.multifd {
        return run_multifd(args);
    }
    let (a, json_out, repeat) = (&args.guest, args.json, args.repeat);
    let mut rows = Vec::new();
    let percents = match a.balloon_percent {
        Some(p) => vec![p],
        None => vec![0u8, 50, 90],
    };
    for percent in percents {
        for map in [true, false] {
            let mut runs = Vec::new();
            for _ in 0..repeat.max(1) {
                let args = GuestArgs {
                    balloon_percent: Some(percent),
                    ..a.clone()
                };
                let opts = SendOptions {
                    skip_ballooned: map,
                    ..a.send_options()
                };
                let o = run_once(&args, &opts, false)?;
                let r = o
                    .sent
                    .with_context(|| format!("{percent}% ballooned: {}", o.err.trim()))?;
                let verified = o.ok
                    && o.recv_json
                        .as_ref()
                        .is_some_and(|v| v["digest_verified"] == true);
                eprintln!(
                "bench: {percent:>2}% ballooned, {}: {:.0} ms, downtime {:.1} ms, {} bytes, {} pages visited, verified {verified}",
                if map { "balloon map" } else { "no map" },
                r.total_time_ms,
                r.downtime_ms,
                r.ram.transferred,
                r.ram.pages_visited
            );
                runs.push(BenchRow {
                    percent,
                    map,
                    total_ms: r.total_time_ms,
                    downtime_ms: r.downtime_ms,
                    bytes: r.ram.transferred,
                    visited: r.ram.pages_visited,
                    skipped: r.ram.ballooned_skipped,
                    verified,
                });
            }
            // The run with the median total time represents the configuration.
            runs.sort_by(|x, y| x.total_ms.total_cmp(&y.total_ms));
            let verified = runs.iter().all(|r| r.verified);
            let mut m = runs.swap_remove(runs.len() / 2);
            m.verified = verified;
            rows.push(m);
        }
    }
    let base = rows
        .iter()
        .find(|r| r.percent == 0 && r.map)
        .map(|r| (r.total_ms, r.downtime_ms, r.bytes as f64, r.visited as f64))
        .ok_or_else(|| anyhow!("no baseline"))?;
    let nomap = |p: u8| rows.iter().find(|r| r.percent == p && !r.map);
    if json_out {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| {
                let nm = nomap(r.percent);
                json!({
                    "balloon_percent": r.percent, "balloon_map": r.map,
                    "total_time_ms": r.total_ms, "downtime_ms": r.downtime_ms,
                    "bytes_sent": r.bytes, "pages_visited": r.visited,
                    "ballooned_skipped": r.skipped, "verified": r.verified,
                    "vs_0pct": {"total_time": r.total_ms / base.0, "downtime": r.downtime_ms / base.1,
                                "bytes": r.bytes as f64 / base.2, "pages_visited": r.visited as f64 / base.3},
                    "vs_no_map": nm.map(|n| json!({"total_time": r.total_ms / n.total_ms,
                        "downtime": r.downtime_ms / n.downtime_ms, "bytes": r.bytes as f64 / n.bytes as f64,
                        "pages_visited": r.visited as f64 / n.visited as f64})),
                })
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    println!(
        "| ballooned | sender | total ms | downtime ms | bytes sent | pages visited | total vs 0% | downtime vs 0% | bytes vs 0% | visited vs 0% | total vs no map | bytes vs no map | visited vs no map | verified |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let nm = nomap(r.percent).filter(|_| r.map);
        let vs = |a: f64, b: Option<f64>| b.map_or("–".to_string(), |b| format!("{:.2}", a / b));
        println!(
            "| {}% | {} | {:.0} | {:.1} | {} | {} | {:.2} | {:.2} | {:.3} | {:.3} | {} | {} | {} | {} |",
            r.percent,
            if r.map { "balloon map" } else { "no map" },
            r.total_ms,
            r.downtime_ms,
            r.bytes,
            r.visited,
            r.total_ms / base.0,
            r.downtime_ms / base.1,
            r.bytes as f64 / base.2,
            r.visited as f64 / base.3,
            vs(r.total_ms, nm.map(|n| n.total_ms)),
            vs(r.bytes as f64, nm.map(|n| n.bytes as f64)),
            vs(r.visited as f64, nm.map(|n| n.visited as f64)),
            r.verified
        );
    }
    Ok(())
}

/// One run of the multifd benchmark.
struct MultifdRow {
    /// `None`: one connection, no multifd.
    channels: Option<u8>,
    total_ms: f64,
    downtime_ms: f64,
    digest_ms: f64,
    /// The bulk stage: every page once.
    bulk_ms: f64,
    bulk_pages: u64,
    bytes: u64,
    /// Bytes the sink received (the TCP readers'; the sender's count with the null sink).
    received: u64,
}

impl MultifdRow {
    /// Guest RAM covered per second in the bulk stage, GiB/s.
    fn ram_gib_s(&self) -> f64 {
        self.bulk_pages as f64 * 4096.0 / (1u64 << 30) as f64 / (self.bulk_ms / 1e3)
    }

    /// Bytes on the wire per second over the migration without the digest, MiB/s.
    fn wire_mib_s(&self) -> f64 {
        self.bytes as f64 / 1048576.0 / ((self.total_ms - self.digest_ms) / 1e3)
    }
}

/// Connections to a loopback listener whose every accepted connection is read to its end
/// and discarded by a thread: the main stream's and `channels` more. The handle gives the
/// bytes read in all.
fn tcp_sink(channels: usize) -> Result<(Writer, Vec<Writer>, JoinHandle<io::Result<u64>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the benchmark sink")?;
    let addr = listener.local_addr()?;
    let readers = std::thread::spawn(move || -> io::Result<u64> {
        let threads = (0..=channels)
            .map(|_| {
                let (mut s, _) = listener.accept()?;
                Ok(std::thread::spawn(move || -> io::Result<u64> {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut n = 0;
                    loop {
                        match s.read(&mut buf)? {
                            0 => return Ok(n),
                            k => n += k as u64,
                        }
                    }
                }))
            })
            .collect::<io::Result<Vec<_>>>()?;
        threads.into_iter().try_fold(0, |sum, t| {
            Ok(sum
                + t.join()
                    .map_err(|_| io::Error::other("a reader panicked"))??)
        })
    });
    let connect = || -> Result<Writer> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    };
    let main = connect()?;
    let others = (0..channels).map(|_| connect()).collect::<Result<_>>()?;
    Ok((main, others, readers))
}

/// Sends `src` once, over one connection (`channels` None) or multifd.
fn send_once(
    src: &mut KvmSource,
    opts: &SendOptions,
    sink: BenchSink,
) -> Result<(MigrationReport, u64)> {
    let n = opts.multifd_channels.map_or(0, |n| usize::from(n.get()));
    let (main, channels, readers) = match sink {
        BenchSink::Tcp => {
            let (m, c, r) = tcp_sink(n)?;
            (m, c, Some(r))
        }
        BenchSink::Null => {
            let null = || -> Writer { Box::new(io::sink()) };
            (null(), (0..n).map(|_| null()).collect(), None)
        }
    };
    let r = match opts.multifd_channels {
        None => migrate(src, main, opts, &mut |_| {}),
        Some(_) => migrate_multifd(src, main, channels, opts, &mut |_| {}),
    }?;
    let received = match readers {
        Some(t) => t
            .join()
            .map_err(|_| anyhow!("the sink's reader panicked"))?
            .context("the sink's readers")?,
        None => r.ram.transferred,
    };
    Ok((r, received))
}

/// `ramstream bench-migrate --multifd`.
fn run_multifd(args: &BenchMigrateArgs) -> Result<()> {
    if let Some(p @ 1..) = args.guest.balloon_percent {
        bail!("--balloon-percent {p}: bench-migrate --multifd sends a guest with nothing ballooned (the balloon map is off with multifd); leave --balloon-percent out or give 0");
    }
    let a = GuestArgs {
        balloon_percent: Some(0),
        quiesce: true,
        max_bandwidth: 0,
        xbzrle: false,
        ..args.guest.clone()
    };
    let mut src = KvmSource::new(start_guest(&a)?);
    // Paused: the quiesced vCPU's spinning would take a core from the sender.
    src.pause()?;
    let configs: Vec<Option<u8>> = std::iter::once(None)
        .chain(args.channels.iter().map(|&c| Some(c)))
        .collect();
    // Rounds over every configuration, so that other load on the machine falls on each alike.
    let mut runs: Vec<Vec<MultifdRow>> = configs.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.repeat.max(1) {
        for (&channels, runs) in configs.iter().zip(&mut runs) {
            let opts = SendOptions {
                multifd_channels: channels.and_then(NonZeroU8::new),
                ..a.send_options()
            };
            let (r, received) = send_once(&mut src, &opts, args.sink)?;
            let bulk = r.rounds.first();
            let row = MultifdRow {
                channels,
                total_ms: r.total_time_ms,
                downtime_ms: r.downtime_ms,
                digest_ms: r.digest_ms,
                bulk_ms: bulk.map_or(0.0, |b| b.duration_ms),
                bulk_pages: bulk.map_or(0, |b| b.pages),
                bytes: r.ram.transferred,
                received,
            };
            eprintln!(
                "bench: {:>10}: {:.0} ms, bulk stage {:.0} ms ({:.2} GiB/s of RAM), {} bytes, {:.0} MiB/s",
                label(channels),
                row.total_ms,
                row.bulk_ms,
                row.ram_gib_s(),
                row.bytes,
                row.wire_mib_s()
            );
            if row.received != row.bytes {
                return Err(anyhow!(
                    "{}: {} bytes sent, {} received",
                    label(channels),
                    row.bytes,
                    row.received
                ));
            }
            runs.push(row);
        }
    }
    // The run with the median bulk stage (the throughput compared) represents each.
    let rows: Vec<MultifdRow> = runs
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|x, y| x.bulk_ms.total_cmp(&y.bulk_ms));
            runs.swap_remove(runs.len() / 2)
        })
        .collect();
    let base = rows
        .first()
        .map(|r| (r.total_ms, r.ram_gib_s(), r.wire_mib_s()))
        .ok_or_else(|| anyhow!("no baseline"))?;
    if args.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "multifd_channels": r.channels, "total_time_ms": r.total_ms,
                    "downtime_ms": r.downtime_ms, "digest_ms": r.digest_ms,
                    "bulk_ms": r.bulk_ms, "bulk_pages": r.bulk_pages, "bytes_sent": r.bytes,
                    "ram_gib_per_s": r.ram_gib_s(), "wire_mib_per_s": r.wire_mib_s(),
                    "vs_one_connection": {"total_time": r.total_ms / base.0,
                        "ram_throughput": r.ram_gib_s() / base.1,
                        "wire_throughput": r.wire_mib_s() / base.2},
                })
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    println!(
        "| sender | total ms | bulk stage ms | RAM GiB/s (bulk) | wire MiB/s | bytes sent | total vs 1 | RAM throughput vs 1 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {} | {:.2} | {:.2} |",
            label(r.channels),
            r.total_ms,
            r.bulk_ms,
            r.ram_gib_s(),
            r.wire_mib_s(),
            r.bytes,
            r.total_ms / base.0,
            r.ram_gib_s() / base.1
        );
    }
    Ok(())
}

fn label(channels: Option<u8>) -> String {
    channels.map_or("1 (plain)".into(), |c| format!("{c} multifd"))
}
