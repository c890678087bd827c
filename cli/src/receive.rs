//! `ramstream receive`: accept one migration stream and either load it into a reference KVM
//! guest, check the digest, resume and verify the guest; or (`--extract`) be a QEMU migration
//! destination that rebuilds the RAM and keeps the device state, instead of running a guest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ramstream_codec::io::StreamReader;
use ramstream_codec::{Decoder, Event, StreamBuffer};
use ramstream_reference_receiver::{receive, KvmDestination, ReceiveOptions, ReceiveReport};

use crate::addr::{Addr, Forms, Listener};
use crate::extract::Collector;
use crate::guest::check_kvm;
use crate::policy::check_policy;
use crate::side_channels::SideChannels;
use crate::DecodeArgs;

/// `ramstream receive`'s arguments.
#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// Where the stream comes from: tcp:HOST:PORT or unix:PATH (listened on), or file:PATH
    /// (read; not with --extract, which takes a socket: extract a stream file with
    /// `ramstream extract`). Port 0 picks a free port. Once a socket is bound, `ramstream:
    /// listening on ADDRESS` is printed on stderr with the address actually bound (e.g.
    /// tcp:127.0.0.1:43817), before the source connects.
    #[arg(long)]
    pub listen: Addr,
    /// QEMU mode: write the RAM images, device sections and manifest.json into this
    /// directory instead of resuming a guest.
    #[arg(long)]
    pub extract: Option<PathBuf>,
    /// QEMU mode: also save the raw stream to this file.
    #[arg(long, requires = "extract")]
    pub save_stream: Option<PathBuf>,
    /// QEMU mode: accept machine types the conformance vectors do not cover.
    #[arg(long, requires = "extract")]
    pub allow_untested_machine: bool,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Read buffer size in bytes (bounds the receiver's stream memory).
    #[arg(long, default_value_t = 1 << 20)]
    pub buffer_size: usize,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// `ramstream receive`.
pub fn run(a: &ReceiveArgs) -> Result<()> {
    match &a.extract {
        Some(out) => extract(
            &a.listen,
            out,
            a.save_stream.as_ref(),
            a.allow_untested_machine,
            &a.decode,
        ),
        None => into_guest(&a.listen, a.json, a.buffer_size),
    }
}

/// Receives one stream from `listen` into a reference KVM guest, checks it and resumes it.
fn into_guest(listen: &Addr, json: bool, buffer_size: usize) -> Result<()> {
    check_kvm()?;
    let input = listen.open_to_receive()?;
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

/// Receives one QEMU stream on `listen` and extracts it into `out`.
fn extract(
    listen: &Addr,
    out: &Path,
    save_stream: Option<&PathBuf>,
    allow_untested: bool,
    decode: &DecodeArgs,
) -> Result<()> {
    if let Addr::File(file) = listen {
        bail!(
            "--listen {listen}: receive --extract listens on a socket for a QEMU source and takes {}; to extract a stream file, run `ramstream extract {} --out {}`",
            Forms::Socket,
            file.display(),
            out.display()
        );
    }
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!("{} exists and is not empty", out.display());
    }
    let listener = Listener::bind(listen)?;
    let listen = listener.bound().clone();
    let (mut conn, peer) = listener.accept()?;
    eprintln!("connection from {peer}");
    let extra = SideChannels::watch(listener, conn.try_clone_box()?);
    let mut dec = Decoder::new(decode.options());
    let mut c = Collector::new(dec.page_size());
    let partial = save_stream.map(|p| p.with_extension("partial"));
    let mut saver = match &partial {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut bytes = 0u64;
    let mut pages = 0u64;
    let buffer = StreamBuffer::for_limits(&dec.options().limits);
    let mut input = StreamReader::new(&mut *conn, buffer);
    let mut result = input.decode(&mut dec, |offset, event, raw| {
        extra.check(offset)?;
        check_policy(&event, offset, allow_untested)?;
        if let Some(s) = saver.as_mut() {
            s.write_all(raw)?;
        }
        bytes += raw.len() as u64;
        if matches!(event, Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_)) {
            pages += 1;
        }
        c.observe(offset, &event)
    });
    // The main connection may end (or be shut down by the watcher) before an event shows
    // the extra connection: that connection is the error then, not a short read.
    if let Err(e) = extra.check(dec.offset()) {
        result = Err(e);
    }
    if let Err(e) = result {
        if let Some(p) = &partial {
            let _ = std::fs::remove_file(p);
        }
        return Err(e.context(format!(
            "receiving from {listen}: stopped after {bytes} bytes; nothing was extracted"
        )));
    }
    if let (Some(mut s), Some(p), Some(final_path)) = (saver, partial, save_stream) {
        s.flush()?;
        std::fs::rename(&p, final_path)?;
    }
    let splits = c.write(out)?;
    crate::extract::report_splits(splits.as_ref());
    eprintln!(
        "received {bytes} bytes ({pages} page records) from {listen}; extracted {} block(s) and {} device section(s) into {}",
        c.image.blocks().len(),
        c.devices.len(),
        out.display()
    );
    Ok(())
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
