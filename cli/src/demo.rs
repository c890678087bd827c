//! `ramstream demo`: a live migration of a running KVM guest on this machine, receiver in a
//! child process, sender in this one, proven intact on arrival.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ramstream_reference_receiver::ReceiveReport;
use ramstream_reference_sender::{Endpoint, MigrationReport, SendOptions};
use serde_json::{json, Value};

use crate::qemu::addr::LISTENING_PREFIX;
use crate::send::{check_kvm, migrate_guest, print_report, start_guest, GuestArgs};

/// One migration to a receiver child process: the sender's report, the receiver's JSON (if
/// it printed one), its stderr, whether it exited successfully, and the source's status.
struct Outcome {
    sent: Result<MigrationReport>,
    recv_json: Option<Value>,
    err: String,
    ok: bool,
    source_status: String,
}

fn run_once(a: &GuestArgs, opts: &SendOptions, bar: bool) -> Result<Outcome> {
    check_kvm()?;
    let exe = std::env::current_exe().context("locating the ramstream binary")?;
    let mut child = Command::new(exe)
        .args(["receive", "--listen", "tcp:127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the receiver")?;
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    // The receiver's stderr is read in the background: the listening line is handed over,
    // the rest is kept (and the pipe never fills up while the migration runs).
    let (bound_tx, bound_rx) = mpsc::channel();
    let errors = std::thread::spawn(move || {
        let mut bound_tx = Some(bound_tx);
        let mut kept = String::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                if let Some(tx) = bound_tx.take() {
                    let _ = tx.send(addr.to_string());
                    continue;
                }
            }
            kept.push_str(&line);
            kept.push('\n');
        }
        kept
    });
    let addr = match bound_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr,
        Err(e) => {
            if matches!(e, RecvTimeoutError::Timeout) {
                let _ = child.kill();
            }
            let status = child.wait().context("waiting for the receiver")?;
            let err = errors.join().unwrap_or_default();
            bail!(
                "the receiver did not start listening ({status}): {}",
                err.trim()
            );
        }
    };
    let to: Endpoint = addr.parse().map_err(anyhow::Error::msg)?;
    if bar {
        eprintln!(
            "demo: {} MiB guest, {}% ballooned, receiver pid {} on {to}",
            a.mem >> 20,
            a.balloon_percent,
            child.id()
        );
    }
    let vm = match start_guest(a) {
        Ok(vm) => vm,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let (mut src, sent) = migrate_guest(vm, &to, opts, bar);
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .context("reading the receiver's report")?;
    let status = child.wait().context("waiting for the receiver")?;
    let err = errors.join().unwrap_or_default();
    let recv_json: Option<Value> = rest
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    let source_status = format!("{:?}", src.vm_mut().status());
    Ok(Outcome {
        sent,
        recv_json,
        err,
        ok: status.success(),
        source_status,
    })
}

/// `ramstream demo`.
pub fn run(a: &GuestArgs, json_out: bool) -> Result<()> {
    let Outcome {
        sent,
        recv_json,
        err,
        ok,
        source_status,
    } = run_once(a, &a.send_options(), !json_out)?;
    let sent = match sent {
        Ok(r) => r,
        Err(e) => {
            if json_out {
                println!(
                    "{}",
                    json!({"status": "failed", "error": format!("{e:#}"), "verified": false,
                           "guest_resumed": false, "source_guest": source_status,
                           "receiver": recv_json})
                );
            }
            return Err(e.context(format!("receiver said: {}", err.trim())));
        }
    };
    let recv: Option<ReceiveReport> = recv_json
        .as_ref()
        .filter(|v| v["status"] == "completed")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let verified = ok
        && recv
            .as_ref()
            .is_some_and(|r| r.digest_verified && r.verification.self_check_passed);
    let resumed = recv.as_ref().is_some_and(|r| r.guest_resumed);
    if json_out {
        let ram = serde_json::to_value(&sent.ram)?;
        let mut out = json!({
            "status": if verified { "completed" } else { "failed" },
            "verified": verified,
            "guest_resumed": resumed,
            "total_time_ms": sent.total_time_ms,
            "downtime_ms": sent.downtime_ms,
            "digest_ms": sent.digest_ms,
            "expected_downtime_ms": sent.expected_downtime_ms,
            "iterations": sent.iterations,
            "converged": sent.converged,
            "ram": ram,
            "rounds": sent.rounds,
            "digests": sent.digests,
            "source_guest": source_status,
            "receiver": recv_json,
        });
        if let Some(x) = &sent.xbzrle_cache {
            out["xbzrle-cache"] = serde_json::to_value(x)?;
        }
        println!("{out}");
    } else {
        println!("ramstream demo: live migration of a running KVM guest");
        println!("sender (this process, source guest now {source_status}):");
        print_report(&sent);
        println!("receiver (child process):");
        match &recv {
            Some(r) => crate::receive::print_report(r),
            None => println!("  {}", err.trim()),
        }
        println!(
            "result: {}",
            if verified {
                "VERIFIED: digest matched, guest resumed, heartbeat advanced, self-check passed"
            } else {
                "FAILED"
            }
        );
    }
    if !verified {
        bail!("the migrated guest was not verified: {}", err.trim());
    }
    Ok(())
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
pub fn bench(a: &GuestArgs, json_out: bool, repeat: usize) -> Result<()> {
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
