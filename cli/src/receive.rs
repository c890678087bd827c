//! `ramstream receive`: accept one migration stream and either load it into a reference KVM
//! guest, check the digest, resume and verify the guest; or (`--extract`) be a QEMU migration
//! destination that rebuilds the RAM and keeps the device state, instead of running a guest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ramstream_codec::io::StreamReader;
use ramstream_codec::{Decoder, Event, StreamBuffer};
use ramstream_reference_receiver::{
    receive, receive_multifd, KvmDestination, ReceiveOptions, ReceiveReport,
};

use crate::addr::{Addr, Forms};
use crate::extract::direct::{Direct, Taken};
use crate::extract::Collector;
use crate::failure::{Failure, Reported};
use crate::guest::check_kvm;
use crate::listen::ListenOptions;
use crate::multifd::image::SharedImage;
use crate::multifd::incoming::{accept_main, gather_channels};
use crate::multifd::receive::{MultifdReceive, CONNECT_TIMEOUT};
use crate::multifd::recording::channel_path;
use crate::multifd::stop::{is_consequence, Stop, StoppedByAnother};
use crate::policy::check_policy;
use crate::timeline::SectionClock;
use crate::DecodeArgs;

/// `ramstream receive`'s arguments.
#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// Where the stream comes from: tcp:HOST:PORT or unix:PATH (listened on), or, into the
    /// reference guest only, file:PATH (read; file:- reads standard input). --extract takes
    /// only tcp: or unix: (extract a stream file with `ramstream extract FILE`). Required:
    /// there is no default address. tcp:127.0.0.1:PORT takes migrations from this host only;
    /// tcp:0.0.0.0:PORT or `tcp:[::]:PORT` from every network this host is on, a deliberate
    /// choice (use --tls-creds then). Port 0 picks a free port. Once a socket is bound, `ramstream:
    /// listening on ADDRESS` is printed on stderr with the address actually bound (e.g.
    /// tcp:127.0.0.1:43817), before the source connects.
    #[arg(long)]
    pub listen: Addr,
    /// QEMU mode: write the RAM images, device sections and manifest.json into this
    /// directory instead of resuming a guest (with --listen tcp:HOST:PORT or unix:PATH).
    #[arg(long)]
    pub extract: Option<PathBuf>,
    /// QEMU mode: also save the raw stream to this file.
    #[arg(long, requires = "extract")]
    pub save_stream: Option<PathBuf>,
    /// QEMU mode: draw the ram sections as they arrived (pages, bytes, bandwidth,
    /// stop-and-copy) as an SVG file; a multifd migration's channel pages and bytes count in
    /// the section during which they arrived.
    #[arg(long, requires = "extract", value_name = "SVG")]
    pub timeline: Option<PathBuf>,
    /// QEMU mode: accept machine types the conformance vectors do not cover.
    #[arg(long, requires = "extract")]
    pub allow_untested_machine: bool,
    /// QEMU mode: leave the blocks' `sha256` out of manifest.json.
    #[arg(long, requires = "extract")]
    pub no_sha256: bool,
    /// The source's multifd-channels (1 to 255). With --extract: wait for exactly N
    /// channels at the main stream's first sync point; without it, a multifd source is
    /// recognised by its channels' connections (magic 0x11223344) and its channels are those
    /// connected by that point (QEMU connects them all before writing it). Into the
    /// reference guest: accept the main stream and N channels before loading.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub multifd_channels: Option<u8>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Read buffer size (bounds the receiver's stream memory): bytes, or 64K, 1M, 1.5M, 1MiB.
    #[arg(long, default_value = "1M", value_parser = crate::size::parse_usize)]
    pub buffer_size: usize,
    /// Into the reference guest: seconds to wait for the resumed guest's heartbeat and
    /// self-check (the self-check walks the guest's working set: a large one under nested
    /// virtualisation needs more than the default).
    #[arg(long, default_value_t = 20, value_name = "SECS", conflicts_with = "extract",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub verify_timeout: u64,
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub net: ListenOptions,
}

/// `ramstream receive`.
pub fn run(a: &ReceiveArgs) -> Result<()> {
    a.net.tls.refuse_connecting_options("receive")?;
    if a.net.tls.tls_creds.is_some() {
        a.listen.require_tcp_for_tls()?;
    }
    match &a.extract {
        Some(out) => extract(a, out),
        None => into_guest(a),
    }
}

/// Receives one stream from `listen` into a reference KVM guest, checks it and resumes it;
/// with `multifd_channels`, a multifd migration (the main stream and that many channels).
fn into_guest(a: &ReceiveArgs) -> Result<()> {
    let (listen, json, multifd_channels, net) = (&a.listen, a.json, a.multifd_channels, &a.net);
    check_kvm()?;
    let opts = ReceiveOptions {
        buffer_size: a.buffer_size,
        verify_timeout: std::time::Duration::from_secs(a.verify_timeout),
        ..Default::default()
    };
    let bar = crate::progress::Bytes::new("receiving", None, json);
    let received = match multifd_channels {
        None if matches!(listen, Addr::File(_)) => receive(
            bar.reader(listen.open_to_receive()?),
            KvmDestination::new,
            &opts,
        ),
        None => {
            let listener = net.bind(listen)?;
            let (conn, peer) = listener.accept()?;
            eprintln!("connection from {peer}");
            if let Addr::Unix(p) = listen {
                let _ = std::fs::remove_file(p);
            }
            crate::side_channels::refuse_others(listener);
            receive(bar.reader(conn), KvmDestination::new, &opts)
        }
        Some(n) => {
            if let Addr::File(_) = listen {
                bail!(
                    "--listen {listen}: a multifd migration comes over sockets ({})",
                    Forms::Socket
                );
            }
            let listener = net.bind(listen)?;
            let (main, early) = accept_main(&listener)?;
            let channels = gather_channels(&listener, early, Some(n), CONNECT_TIMEOUT)?;
            let readers = channels
                .into_iter()
                .map(|c| bar.reader(c.into_reader()))
                .collect();
            receive_multifd(
                bar.reader(main.into_reader()),
                readers,
                KvmDestination::new,
                &opts,
            )
        }
    };
    drop(bar);
    match received {
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
            let (resumed, bytes) = (e.resumed, e.bytes_received);
            let e = anyhow::Error::from(e);
            if json {
                let mut o = Failure::of(&e, None).to_json();
                o["guest_resumed"] = resumed.into();
                o["bytes_received"] = bytes.into();
                println!("{o}");
                return Err(e.context(Reported));
            }
            Err(e)
        }
    }
}

/// Receives one QEMU migration on `listen` (its main stream and, with capability multifd,
/// its channels) and extracts it into `out`.
fn extract(a: &ReceiveArgs, out: &Path) -> Result<()> {
    let (listen, save_stream, allow_untested) =
        (&a.listen, a.save_stream.as_ref(), a.allow_untested_machine);
    let (multifd_channels, decode, timeline, net) =
        (a.multifd_channels, &a.decode, a.timeline.as_deref(), &a.net);
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
    let listener = net.bind(listen)?;
    let listen = listener.bound().clone();
    let (main, early) = accept_main(&listener)?;
    let stop = Stop::new();
    stop.watch(main.handle()?);
    let opts = decode.options();
    let mut page_bits = opts.default_page_bits;
    let mut dec = Decoder::new(opts.clone());
    let shared = Arc::new(SharedImage::default());
    let mut c = Collector::shared(dec.page_size(), Arc::clone(&shared));
    // The RAM goes straight into the image files until multifd channels show up at the
    // first sync point (their pages are then rebuilt in memory with the main stream's).
    let mut direct = Some(Direct::new(out, !a.no_sha256)?);
    let (started, mut clock) = (std::time::Instant::now(), SectionClock::new("receive"));
    let mut multifd = MultifdReceive::new(
        listener,
        early,
        multifd_channels,
        shared,
        Arc::clone(&stop),
        save_stream.cloned(),
        opts.limits.clone(),
    );
    if timeline.is_some() {
        multifd = multifd.with_meter(clock.channel_meter(started));
    }
    let partial = save_stream.map(|p| p.with_extension("partial"));
    let mut saver = match &partial {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut bytes = 0u64;
    let mut pages = 0u64;
    let buffer = StreamBuffer::for_limits(&opts.limits);
    let mut input = StreamReader::new(main.into_reader(), buffer);
    let mut bar = crate::progress::Bytes::new("receiving", None, false);
    let result = input.decode(&mut dec, |offset, event, raw| {
        clock.observe(&event, raw.len(), started.elapsed());
        if stop.is_stopped() {
            return Err(anyhow!(StoppedByAnother));
        }
        check_policy(&event, offset, allow_untested)?;
        if let Some(s) = saver.as_mut() {
            s.write_all(raw)?;
        }
        bytes += raw.len() as u64;
        bar.at(bytes);
        if matches!(event, Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_)) {
            pages += 1;
        }
        if let Event::Configuration(cfg) = &event {
            page_bits = cfg.target_page_bits.unwrap_or(page_bits);
        }
        multifd.observe(&event, offset, page_bits)?;
        if multifd.has_channels() {
            if let Some(d) = direct.take() {
                d.leave(&mut c)?;
            }
        }
        if let Some(d) = direct.as_mut() {
            match d.observe_copied(&mut c, offset, &event)? {
                Taken::Written => return Ok(()),
                Taken::Collector => {}
                Taken::Leave => direct = None,
            }
        }
        c.observe(offset, &event)
    });
    if let Err(e) = result {
        // A read that failed because another connection stopped the migration is not its
        // cause.
        if is_consequence(&e) || stop.is_stopped() {
            stop.consequence(e);
        } else {
            stop.fail(e);
        }
    }
    let joined = multifd.join();
    // After the channels' threads: their last pages are in the timeline.
    if let Some(t) = timeline {
        clock.timeline().save(t)?;
    }
    let (channels, failed) = match joined {
        Ok(c) if !stop.is_stopped() => (c, None),
        Ok(c) => {
            for (_, recorded) in &c {
                if let Some(p) = recorded {
                    let _ = std::fs::remove_file(p);
                }
            }
            (Vec::new(), stop.take_error())
        }
        Err(e) => (Vec::new(), Some(e)),
    };
    if let Some(e) = failed {
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
        for (ch, recorded) in &channels {
            if let Some(r) = recorded {
                std::fs::rename(r, channel_path(final_path, ch.id))?;
            }
        }
    }
    c.take_shared()?;
    let splits = match direct {
        Some(d) => d.finish(&c, out)?,
        None => c.write(out, !a.no_sha256)?,
    };
    crate::extract::report_splits(splits.as_ref());
    for (ch, _) in &channels {
        eprintln!(
            "multifd channel {} from {}: {} bytes, {} packets, {} pages, {} zero pages, {} SYNC",
            ch.id, ch.from, ch.bytes, ch.packets, ch.pages, ch.zero_pages, ch.syncs
        );
    }
    let channel_bytes: u64 = channels.iter().map(|(ch, _)| ch.bytes).sum();
    let channel_pages: u64 = channels
        .iter()
        .map(|(ch, _)| ch.pages + ch.zero_pages)
        .sum();
    eprintln!(
        "received {} bytes ({} page records{}) from {listen}; extracted {} block(s) and {} device section(s) into {}",
        bytes + channel_bytes,
        pages,
        if channels.is_empty() {
            String::new()
        } else {
            format!(
                " on the main stream, {channel_pages} pages on {} multifd channel(s)",
                channels.len()
            )
        },
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
    for c in &r.channels {
        println!(
            "  multifd channel {:<3} {} bytes, {} packets, {} pages, {} zero pages, {} SYNC",
            c.id, c.bytes, c.packets, c.pages, c.zero_pages, c.syncs
        );
    }
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
