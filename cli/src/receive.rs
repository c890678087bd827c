//! `ramstream receive`: accept one migration stream, load it into a reference KVM guest,
//! check the digest, resume and verify the guest.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use anyhow::{Context, Result};
use ramstream_reference_receiver::{receive, KvmDestination, ReceiveOptions, ReceiveReport};
use ramstream_reference_sender::Endpoint;

/// Opens the endpoint, prints `listening <uri>` on stdout, and waits for the stream.
fn open(listen: &Endpoint) -> Result<Box<dyn Read>> {
    let mut out = std::io::stdout();
    Ok(match listen {
        Endpoint::Tcp(addr) => {
            let l = TcpListener::bind(addr).with_context(|| format!("bind tcp:{addr}"))?;
            writeln!(out, "listening tcp:{}", l.local_addr()?)?;
            out.flush()?;
            Box::new(l.accept().context("accept")?.0)
        }
        Endpoint::Unix(p) => {
            let l = UnixListener::bind(p).with_context(|| format!("bind unix:{}", p.display()))?;
            writeln!(out, "listening unix:{}", p.display())?;
            out.flush()?;
            let s = l.accept().context("accept")?.0;
            let _ = std::fs::remove_file(p);
            Box::new(s)
        }
        Endpoint::File(p) => {
            writeln!(out, "reading file:{}", p.display())?;
            out.flush()?;
            Box::new(std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?)
        }
    })
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
