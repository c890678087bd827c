//! `ramstream proxy`: sit between a QEMU source and a QEMU destination, decode the stream
//! as it passes, show progress, record it, and optionally re-encode it with ramstream's own
//! ZERO detection and XBZRLE encoder.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use ramstream_codec::io::StreamReader;
use ramstream_codec::{
    apply_event, xbzrle, zero, Decoder, Encoder, Event, PageAddr, RamImage, StreamBuffer,
};
use ramstream_spec::stream::SectionType;
use serde::Serialize;

use crate::addr::{Addr, Listener};
use crate::policy::check_policy;
use crate::side_channels::SideChannels;
use crate::DecodeArgs;

/// `ramstream proxy`'s arguments.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Where the source connects: tcp:HOST:PORT or unix:PATH. Port 0 picks a free port.
    /// Once bound, `ramstream: listening on ADDRESS` is printed on stderr with the address
    /// actually bound (e.g. tcp:127.0.0.1:43817).
    #[arg(long, value_parser = Addr::parse_socket)]
    pub listen: Addr,
    /// The destination QEMU's -incoming address: tcp:HOST:PORT or unix:PATH.
    #[arg(long, value_parser = Addr::parse_socket)]
    pub forward: Addr,
    /// Record the source's stream to this file.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Forward ramstream's own encoding (ZERO detection, XBZRLE against the pages the
    /// destination holds) instead of QEMU's bytes.
    #[arg(long)]
    pub reencode: bool,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Figures the proxy reports at the end (and, with `--json`, prints as one object).
#[derive(Debug, Default, Serialize)]
pub struct ProxyReport {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub ram_sections: u64,
    pub iterations: u64,
    pub page: u64,
    pub zero: u64,
    pub xbzrle: u64,
    pub devices: u64,
    pub reencoded: bool,
    pub out_page: u64,
    pub out_zero: u64,
    pub out_xbzrle: u64,
    pub out_skipped_unchanged: u64,
    pub elapsed_ms: u128,
}

/// Re-encodes page records against a mirror of what the destination holds.
struct Reencoder {
    mirror: RamImage,
    sent: HashSet<PageAddr>,
    enc: Encoder,
    scratch: Vec<u8>,
}

impl Reencoder {
    fn new() -> Self {
        Reencoder {
            mirror: RamImage::new(4096),
            sent: HashSet::new(),
            enc: Encoder::new(12),
            scratch: vec![0; 4096],
        }
    }

    /// Writes our encoding of `event` into `out`.
    fn encode(
        &mut self,
        offset: u64,
        event: &Event<'_>,
        out: &mut Vec<u8>,
        rep: &mut ProxyReport,
    ) -> Result<()> {
        let addr = match event {
            Event::Configuration(c) => {
                if let Some(bits) = c.target_page_bits {
                    self.mirror = RamImage::new(1 << bits);
                    self.enc = Encoder::new(bits);
                    self.scratch = vec![0; 1 << bits];
                }
                self.enc.event(event, out)?;
                return Ok(());
            }
            Event::MemSize(ms) => {
                self.mirror.set_blocks(&ms.blocks);
                self.enc.event(event, out)?;
                return Ok(());
            }
            Event::Page(p) => p.addr,
            Event::Zero(z) => z.addr,
            Event::Xbzrle(x) => x.addr,
            other => {
                self.enc.event(other, out)?;
                return Ok(());
            }
        };
        let old = self.mirror.page(addr).into_owned();
        apply_event(&mut self.mirror, event, offset)?;
        let new = self.mirror.page(addr);
        let was_sent = !self.sent.insert(addr);
        if was_sent && old[..] == new[..] {
            rep.out_skipped_unchanged += 1;
        } else if zero::is_zero_page(&new) {
            self.enc.zero(addr, 0, out)?;
            rep.out_zero += 1;
        } else if was_sent {
            match xbzrle::encode(&old, &new, &mut self.scratch)? {
                xbzrle::Encoded::Delta(n) => {
                    self.enc.xbzrle(addr, &self.scratch[..n], out)?;
                    rep.out_xbzrle += 1;
                }
                xbzrle::Encoded::Unchanged => rep.out_skipped_unchanged += 1,
                xbzrle::Encoded::Overflow => {
                    self.enc.page(addr, &new, out)?;
                    rep.out_page += 1;
                }
            }
        } else {
            self.enc.page(addr, &new, out)?;
            rep.out_page += 1;
        }
        Ok(())
    }
}

/// `ramstream proxy`: runs the proxy for one migration.
pub fn run(a: &ProxyArgs) -> Result<()> {
    let (listen, forward, record, reencode, json, decode) = (
        &a.listen,
        &a.forward,
        a.record.as_ref(),
        a.reencode,
        a.json,
        &a.decode,
    );
    let started = Instant::now();
    let listener = Listener::bind(listen)?;
    let listen = listener.bound().clone();
    let (mut src, peer) = listener.accept()?;
    eprintln!("connection from {peer}");
    let extra = SideChannels::watch(listener, src.try_clone_box()?);
    let dst = forward.connect()?;
    // The return path (destination to source) is forwarded raw, in the background.
    let mut back_from = dst.try_clone_box()?;
    let mut back_to = src.try_clone_box()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
    });
    let mut dst = BufWriter::with_capacity(1 << 20, dst);
    let mut rec = match record {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut dec = Decoder::new(decode.options());
    let mut rep = ProxyReport {
        reencoded: reencode,
        ..Default::default()
    };
    let mut re = Reencoder::new();
    let mut out = Vec::with_capacity(1 << 16);
    let mut last_print = Instant::now();
    let buffer = StreamBuffer::for_limits(&dec.options().limits);
    let mut input = StreamReader::new(&mut *src, buffer);
    let mut result = input.decode(&mut dec, |offset, event, raw| {
        extra.check(offset)?;
        check_policy(&event, offset, true)?;
        rep.bytes_in += raw.len() as u64;
        if let Some(r) = rec.as_mut() {
            r.write_all(raw)?;
        }
        match &event {
            Event::SectionStart(_) => rep.ram_sections += 1,
            Event::SectionPart { section_type, .. } => {
                rep.ram_sections += 1;
                if *section_type == SectionType::PART {
                    rep.iterations += 1;
                }
            }
            Event::Page(_) => rep.page += 1,
            Event::Zero(_) => rep.zero += 1,
            Event::Xbzrle(_) => rep.xbzrle += 1,
            Event::Device(_) => rep.devices += 1,
            _ => {}
        }
        if reencode {
            out.clear();
            re.encode(offset, &event, &mut out, &mut rep)?;
            dst.write_all(&out)?;
            rep.bytes_out += out.len() as u64;
        } else {
            dst.write_all(raw)?;
            rep.bytes_out += raw.len() as u64;
        }
        if matches!(
            event,
            Event::Footer { .. } | Event::Eof | Event::VmDescription(_)
        ) {
            dst.flush().context("writing to the destination")?;
        }
        if last_print.elapsed() > Duration::from_millis(500) {
            last_print = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "proxy: iteration {}, {} ram sections, {} PAGE, {} ZERO, {} XBZRLE, {:.1} MB in, {:.1} MB/s",
                rep.iterations,
                rep.ram_sections,
                rep.page,
                rep.zero,
                rep.xbzrle,
                rep.bytes_in as f64 / 1e6,
                rep.bytes_in as f64 / 1e6 / secs
            );
        }
        Ok(())
    });
    // The source connection may end (or be shut down by the watcher) before an event shows
    // the side channel: that channel is the error then, not a short read.
    if let Err(e) = extra.check(dec.offset()) {
        result = Err(e);
    }
    result.with_context(|| {
        format!(
            "proxying {listen} to {forward}: stopped after {} bytes in",
            rep.bytes_in
        )
    })?;
    dst.flush()?;
    if let Some(mut r) = rec {
        r.flush()?;
    }
    rep.elapsed_ms = started.elapsed().as_millis();
    if json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        eprintln!(
            "proxy: done: {} bytes in, {} bytes out ({:.3} of QEMU's), {} PART iterations, {} PAGE / {} ZERO / {} XBZRLE in{}",
            rep.bytes_in,
            rep.bytes_out,
            rep.bytes_out as f64 / rep.bytes_in.max(1) as f64,
            rep.iterations,
            rep.page,
            rep.zero,
            rep.xbzrle,
            if reencode {
                format!(
                    "; out {} PAGE / {} ZERO / {} XBZRLE / {} unchanged skipped",
                    rep.out_page, rep.out_zero, rep.out_xbzrle, rep.out_skipped_unchanged
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
