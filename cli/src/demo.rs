//! `ramstream demo`: a live migration of a running KVM guest on this machine, receiver in a
//! child process, sender in this one, proven intact on arrival.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use ramstream_reference_receiver::ReceiveReport;
use ramstream_reference_sender::Endpoint;
use serde_json::{json, Value};

use crate::send::{check_kvm, migrate_guest, print_report, start_guest, GuestArgs};

/// `ramstream demo`.
pub fn run(a: &GuestArgs, json_out: bool) -> Result<()> {
    check_kvm()?;
    let exe = std::env::current_exe().context("locating the ramstream binary")?;
    let mut child = Command::new(exe)
        .args(["receive", "--listen", "tcp:127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the receiver")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .context("reading the receiver's port")?;
    let Some(addr) = line.trim().strip_prefix("listening ") else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        bail!("the receiver did not start: {}{}", line.trim(), err.trim());
    };
    let to: Endpoint = addr.parse().map_err(anyhow::Error::msg)?;
    if !json_out {
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
    let (mut src, sent) = migrate_guest(vm, &to, &a.send_options(), !json_out);
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .context("reading the receiver's report")?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().context("waiting for the receiver")?;
    let recv_json: Option<Value> = rest
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    let source_status = format!("{:?}", src.vm_mut().status());
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
    let verified = status.success()
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
