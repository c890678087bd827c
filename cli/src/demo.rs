//! `ramstream demo`: a live migration of a running KVM guest on this machine, receiver in a
//! child process, sender in this one, proven intact on arrival.
//!
//! With `--multifd-channels N` the guest goes over N+1 connections (SPEC.md §14): the
//! receiver child takes the main stream and N channels (`receive --multifd-channels N`),
//! each channel loaded on a thread of its own, and verifies and resumes the guest the same
//! way.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ramstream_reference_receiver::ReceiveReport;
use ramstream_reference_sender::{MigrationReport, SendOptions};
use serde_json::{json, Value};

use crate::addr::{Addr, LISTENING_PREFIX};
use crate::failure::{Failure, Reported};
use crate::guest::{check_kvm, migrate_guest, start_guest, GuestArgs};
use crate::send::{print_report, MultifdArgs};

/// `ramstream demo`'s arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    #[command(flatten)]
    pub multifd: MultifdArgs,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Draw the sender's rounds (pages, bytes, bandwidth, expected downtime) as an SVG file.
    #[arg(long, value_name = "SVG")]
    pub timeline: Option<std::path::PathBuf>,
}

/// One migration to a receiver child process: the sender's report, the receiver's JSON (if
/// it printed one), its stderr, whether it exited successfully, and the source's status.
pub struct Outcome {
    pub sent: Result<MigrationReport>,
    pub recv_json: Option<Value>,
    pub err: String,
    pub ok: bool,
    pub source_status: String,
}

/// Starts a receiver child process on a free port, and a guest here that migrates to it.
pub fn run_once(a: &GuestArgs, opts: &SendOptions, bar: bool) -> Result<Outcome> {
    check_kvm()?;
    let exe = std::env::current_exe().context("locating the ramstream binary")?;
    let mut args: Vec<String> = ["receive", "--listen", "tcp:127.0.0.1:0", "--json"]
        .map(String::from)
        .into();
    if let Some(n) = opts.multifd_channels {
        args.extend(["--multifd-channels".into(), n.to_string()]);
    }
    let mut child = Command::new(exe)
        .args(&args)
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
    let to: Addr = addr.parse().context("the receiver's listening line")?;
    if bar {
        eprintln!(
            "demo: {} guest, {}% ballooned, receiver pid {} on {to}",
            crate::size::human(a.mem),
            a.balloon_percent(),
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
    let (mut src, sent) = migrate_guest(vm, &to, opts, bar, None);
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
pub fn run(args: &DemoArgs) -> Result<()> {
    let (a, json_out) = (&args.guest, args.json);
    let Outcome {
        sent,
        recv_json,
        err,
        ok,
        source_status,
    } = run_once(a, &args.multifd.apply(a.send_options()), !json_out)?;
    let sent = match sent {
        Ok(r) => r,
        Err(e) => {
            let e = e.context(format!("receiver said: {}", err.trim()));
            if json_out {
                let mut o = Failure::of(&e, None).to_json();
                o["verified"] = false.into();
                o["guest_resumed"] = false.into();
                o["source_guest"] = json!(source_status);
                o["receiver"] = json!(recv_json);
                println!("{o}");
                return Err(e.context(Reported));
            }
            return Err(e);
        }
    };
    let recv: Option<ReceiveReport> = recv_json
        .as_ref()
        .filter(|v| v["status"] == "completed")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    crate::timeline::save_report(args.timeline.as_deref(), "demo", &sent, a)?;
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
        if let Some(m) = &sent.multifd {
            out["multifd"] = serde_json::to_value(m)?;
        }
        if !verified {
            out["message"] = format!("the migrated guest was not verified: {}", err.trim()).into();
        }
        println!("{out}");
        if !verified {
            return Err(anyhow!("the migrated guest was not verified").context(Reported));
        }
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
