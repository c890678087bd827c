//! `ramstream receive`: accept one migration stream, load it into a reference KVM guest,
//! check the digest, resume and verify the guest.

use std::io::Read;

use anyhow::{Context, Result};
use ramstream_reference_receiver::{receive, KvmDestination, ReceiveOptions, ReceiveReport};
use ramstream_reference_sender::Endpoint;

use crate::qemu::addr::{Addr, Listener};

/// Opens the endpoint and waits for the stream. A socket is bound by [`Listener`], which
/// announces the bound address on stderr (`ramstream: listening on tcp:127.0.0.1:43817`;
/// `tcp:HOST:0` picks a free port) before accepting the one connection.
fn open(listen: &Endpoint) -> Result<Box<dyn Read>> {
    let addr = match listen {
        Endpoint::Tcp(a) => Addr::Tcp(a.clone()),
        Endpoint::Unix(p) => Addr::Unix(p.clone()),
        Endpoint::File(p) => {
            return Ok(Box::new(
                std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?,
            ))
        }
    };
    let listener = Listener::bind(&addr)?;
    let (conn, _peer) = listener.accept().context("accept")?;
    if let Endpoint::Unix(p) = listen {
        let _ = std::fs::remove_file(p);
    }
    Ok(Box::new(conn))
}

/// Prints the receiver's figures.
pub fn print_report(r: &ReceiveReport) {
    println!("  bytes received      {}", r.bytes_received);
    println!(
        "  records             PAGE {}  ZERO written {}  ZERO skipped (already zero) {}  XBZRLE {}",
        r.pages, r.zero_written, r.zero_skipped, r.xbzrle
    );
    println!(
        "  ballooned pages     {} (VM state; {} balloon records agreed)",
        r.ballooned_pages, r.balloon_records
    );
    println!(
        "  RAM digest          {} ({:.1} ms)",
        if r.digest_verified {
            "verified"
        } else {
            "NOT verified"
        },
        r.digest_ms
    );
    println!("  max buffered        {} bytes", r.max_buffered);
    println!(
        "  guest resumed       {} (EOF to running {:.1} ms; self-check took {:.0} ms)",
        r.guest_resumed, r.resume_ms, r.verify_ms
    );
    let v = &r.verification;
    println!(
        "  heartbeat           {} -> {}   self-check {} (ok {} bad {} ballooned {})",
        v.heartbeat_before,
        v.heartbeat_after,
        if v.self_check_passed {
            "passed"
        } else {
            "FAILED"
        },
        v.ok_pages,
        v.bad_pages,
        v.ballooned_pages
    );
}

/// `ramstream receive`.
pub fn run(listen: &str, json: bool, buffer_size: usize) -> Result<()> {
    crate::send::check_kvm()?;
    let listen: Endpoint = listen.parse().map_err(anyhow::Error::msg)?;
    let input = open(&listen)?;
    let opts = ReceiveOptions {
        buffer_size,
        ..Default::default()
    };
    match receive(input, KvmDestination::new, &opts) {
        Ok((_dest, report)) => {
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("received and resumed:");
                print_report(&report);
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "failed",
                        "error": e.to_string(),
                        "guest_resumed": e.resumed,
                        "bytes_received": e.bytes_received,
                    })
                );
            }
            Err(e.into())
        }
    }
}
