//! `ramstream bench-migrate`: the demo's migration, repeated with 0 %, 50 % and 90 % of the
//! guest's RAM ballooned, with and without the balloon map.

use anyhow::{anyhow, Context, Result};
use clap::Args;
use ramstream_reference_sender::SendOptions;
use serde_json::{json, Value};

use crate::demo::run_once;
use crate::guest::GuestArgs;

/// `ramstream bench-migrate`'s arguments.
#[derive(Args, Debug)]
pub struct BenchMigrateArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Runs per configuration; the median (by total time) is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
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
    let (a, json_out, repeat) = (&args.guest, args.json, args.repeat);
    let mut rows = Vec::new();
    for percent in [0u8, 50, 90] {
        for map in [true, false] {
            let mut runs = Vec::new();
            for _ in 0..repeat.max(1) {
                let args = GuestArgs {
                    balloon_percent: percent,
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
