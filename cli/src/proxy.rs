//! `ramstream proxy`: sit between a QEMU source and a QEMU destination, decode the stream
//! as it passes, show progress, record it, and optionally re-encode it with ramstream's own
//! ZERO detection and XBZRLE encoder. A multifd migration's channels (SPEC.md §14) are
//! forwarded each on its own connection, in the order the source opened them, and decoded
//! as they pass.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ramstream_codec::io::StreamReader;
use ramstream_codec::{
    apply_event, xbzrle, zero, Decoder, Encoder, Event, PageAddr, RamImage, StreamBuffer,
};
use ramstream_migrate::multifd::{SyncMode, SyncPoints};
use ramstream_spec::stream::SectionType;
use serde::Serialize;

use crate::addr::{Addr, Duplex, Listener};
use crate::listen::ListenOptions;
use crate::multifd::incoming::{Conn, Kind};
use crate::multifd::recording::{channel_path, Tee};
use crate::multifd::stop::{is_consequence, Stop, StoppedByAnother};
use crate::multifd::tap::{ChannelCounts, ChannelTap, MainFacts};
use crate::policy::check_policy;
use crate::timeline::{ChannelMeter, SectionClock};
use crate::tls::ClientTls;
use crate::DecodeArgs;

/// `ramstream proxy`'s arguments.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Where the source connects: tcp:HOST:PORT or unix:PATH. Required: there is no
    /// default address; tcp:0.0.0.0:PORT (every network) is a deliberate choice. Port 0
    /// picks a free port.
    /// Once bound, `ramstream: listening on ADDRESS` is printed on stderr with the address
    /// actually bound (e.g. tcp:127.0.0.1:43817).
    #[arg(long, value_parser = Addr::parse_socket)]
    pub listen: Addr,
    /// The destination QEMU's -incoming address: tcp:HOST:PORT or unix:PATH.
    #[arg(long, value_parser = Addr::parse_socket)]
    pub forward: Addr,
    /// Record the source's stream to this file (a multifd migration's channels beside it,
    /// as `FILE.multifd-<id>`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Forward ramstream's own encoding (ZERO detection, XBZRLE against the pages the
    /// destination holds) instead of QEMU's bytes.
    #[arg(long)]
    pub reencode: bool,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Draw the ram sections as they passed (pages, bytes, bandwidth, stop-and-copy) as an
    /// SVG file; a multifd migration's channel pages and bytes count in the section during
    /// which they passed.
    #[arg(long, value_name = "SVG")]
    pub timeline: Option<PathBuf>,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// The idle timeout of the source's connections; with --tls-creds, TLS on both sides
    /// (the proxy is the source's TLS server and the destination's TLS client).
    #[command(flatten)]
    pub net: ListenOptions,
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
    /// A multifd migration's channels (absent without multifd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multifd: Option<MultifdReport>,
}

/// What the channels of a multifd migration carried through the proxy.
#[derive(Debug, Default, Serialize)]
pub struct MultifdReport {
    /// The main stream's sync points (SPEC.md §14.5).
    pub sync_points: u64,
    /// Bytes on all channels.
    pub bytes: u64,
    /// Per channel, in the order the source connected them.
    pub channels: Vec<ChannelCounts>,
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

/// The acceptor's counting of the migration's connections: at the main stream's first sync
/// point the main thread asks it to take in every connection already waiting
/// ([`Counting::count_now`]); later ones are refused (SPEC.md §14.6).
#[derive(Default)]
struct Counting {
    /// (counts asked for, counts served, whether the connections were counted)
    state: Mutex<(u64, u64, bool)>,
    served: std::sync::Condvar,
}

impl Counting {
    /// Asks the acceptor to take in every waiting connection, and waits until it has.
    fn count_now(&self, timeout: Duration) -> bool {
        let mut s = lock(&self.state);
        s.0 += 1;
        let asked = s.0;
        let deadline = Instant::now() + timeout;
        while s.1 < asked {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .served
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.2 = true;
        true
    }

    /// The acceptor found no connection waiting: every count asked for so far is served.
    fn served(&self) {
        let mut s = lock(&self.state);
        if s.1 < s.0 {
            s.1 = s.0;
            self.served.notify_all();
        }
    }

    /// Whether the connections were counted (a new one is then refused).
    fn is_closed(&self) -> bool {
        lock(&self.state).2
    }
}

/// A multifd channel being forwarded: its counts as they grow, and its thread.
struct Forward {
    counts: Arc<Mutex<ChannelCounts>>,
    thread: JoinHandle<()>,
    recorded: Option<PathBuf>,
}

/// What the acceptor hands the main thread: the main stream and its destination connection.
type MainPair = Result<(Conn, Box<dyn Duplex>)>;

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
    let client = a.net.tls.client()?;
    if client.is_some() {
        forward.require_tcp_for_tls()?;
    }
    let listener = a.net.bind(listen)?;
    let listen = listener.bound().clone();
    let stop = Stop::new();
    let facts = MainFacts::new();
    let forwards: Arc<Mutex<Vec<Forward>>> = Arc::default();
    let (main_tx, main_rx) = mpsc::channel::<MainPair>();
    let counting = Arc::new(Counting::default());
    let mut clock = SectionClock::new(&format!("proxy {listen} -> {forward}"));
    let meter = clock.channel_meter(started);
    {
        let (stop, facts, forwards, forward) = (
            Arc::clone(&stop),
            Arc::clone(&facts),
            Arc::clone(&forwards),
            forward.clone(),
        );
        let record = record.cloned();
        let counting = Arc::clone(&counting);
        std::thread::spawn(move || {
            let to = Destination {
                addr: &forward,
                tls: client.as_ref(),
            };
            accept_all(
                &listener, &to, reencode, record, &stop, &facts, &forwards, &counting, &meter,
                main_tx,
            )
        });
    }
    let (src, dst) = main_rx
        .recv()
        .map_err(|_| anyhow!("the proxy's acceptor ended"))??;
    // The return path (destination to source) is forwarded raw, in the background.
    let mut back_from = dst.try_clone_box()?;
    let mut back_to = src.handle()?;
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
    let mut sync = SyncPoints::new();
    let limits = dec.options().limits.clone();
    let mut page_bits = dec.options().default_page_bits;
    let buffer = StreamBuffer::for_limits(&limits);
    let mut input = StreamReader::new(src.into_reader(), buffer);
    let mut bar = crate::progress::Bytes::new("proxy", None, json);
    let result = input.decode(&mut dec, |offset, event, raw| {
        if stop.is_stopped() {
            return Err(anyhow!(StoppedByAnother));
        }
        check_policy(&event, offset, true)?;
        clock.observe(&event, raw.len(), started.elapsed());
        rep.bytes_in += raw.len() as u64;
        if let Some(r) = rec.as_mut() {
            r.write_all(raw)?;
        }
        match &event {
            Event::Configuration(c) => {
                page_bits = c.target_page_bits.unwrap_or(page_bits);
                if let Some(uuid) = c.uuid {
                    facts.set_uuid(uuid);
                }
            }
            Event::MemSize(ms) => facts.set_blocks(page_bits, &ms.blocks, &limits),
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
        if let Some(k) = sync.observe(&event) {
            // QEMU has connected every channel by its first sync point: take them all in
            // now, so that the proxy waits for each of them at the end.
            if k == 1 && !counting.count_now(Duration::from_secs(10)) {
                bail!("at offset {offset:#x}: the connections waiting at the main stream's first sync point were not taken in within 10 s");
            }
            if let Event::MultifdFlush(_) = event {
                if reencode {
                    bail!("at offset {offset:#x}: MULTIFD_FLUSH record: --reencode does not re-encode a multifd migration (its pages are on the channels); run the proxy without it");
                }
            }
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
        bar.at(rep.bytes_in);
        if bar.is_drawn() && last_print.elapsed() > Duration::from_millis(500) {
            last_print = Instant::now();
            bar.say(format!(
                "proxy: iteration {}, {} ram sections, {} PAGE, {} ZERO, {} XBZRLE{}",
                rep.iterations,
                rep.ram_sections,
                rep.page,
                rep.zero,
                rep.xbzrle,
                channel_progress(&forwards)
            ));
        }
        Ok(())
    });
    let result = result.and_then(|()| {
        dst.flush().context("writing to the destination")?;
        if let Some(r) = rec.as_mut() {
            r.flush()?;
        }
        Ok(())
    });
    if let Err(e) = result {
        if is_consequence(&e) || stop.is_stopped() {
            stop.consequence(e);
        } else {
            stop.fail(e);
        }
    }
    // The channels end when the source closes them, after the main stream.
    let forwards = std::mem::take(&mut *lock(&forwards));
    let mut channels = Vec::new();
    let mut recorded = Vec::new();
    for f in forwards {
        let _ = f.thread.join();
        let counts = lock(&f.counts).clone();
        recorded.push((counts.id, f.recorded));
        channels.push(counts);
    }
    // After the channels' threads: their last pages are in the timeline.
    if let Some(t) = &a.timeline {
        clock.timeline().save(t)?;
    }
    if !stop.is_stopped() && channels.is_empty() && sync.mode() == Some(SyncMode::PerRound) {
        stop.fail(anyhow!(
            "the main stream has MULTIFD_FLUSH records (the source uses capability multifd), but no multifd channel connected"
        ));
    }
    if !stop.is_stopped() && !channels.is_empty() {
        if let Some(c) = channels.iter().find(|c| c.syncs < sync.count()) {
            stop.fail(anyhow!(
                "multifd channel {} sent {} SYNC packet(s); the main stream has {} sync points",
                c.id.map_or("?".into(), |i| i.to_string()),
                c.syncs,
                sync.count()
            ));
        }
    }
    if let Some(e) = stop.take_error() {
        for (_, p) in &recorded {
            if let Some(p) = p {
                let _ = std::fs::remove_file(p);
            }
        }
        return Err(e.context(format!(
            "proxying {listen} to {forward}: stopped after {} bytes in",
            rep.bytes_in
        )));
    }
    if let Some(main) = record {
        for (id, p) in &recorded {
            if let (Some(id), Some(p)) = (id, p) {
                std::fs::rename(p, channel_path(main, *id))?;
            }
        }
    }
    if !channels.is_empty() {
        rep.multifd = Some(MultifdReport {
            sync_points: sync.count(),
            bytes: channels.iter().map(|c| c.bytes).sum(),
            channels,
        });
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
        if let Some(m) = &rep.multifd {
            for c in &m.channels {
                eprintln!(
                    "proxy: multifd channel {}: {} bytes, {} packets, {} pages, {} zero pages, {} SYNC (main stream: {} sync points)",
                    c.id.map_or("?".into(), |i| i.to_string()),
                    c.bytes,
                    c.packets,
                    c.pages,
                    c.zero_pages,
                    c.syncs,
                    m.sync_points
                );
            }
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The channels' figures for a progress line.
fn channel_progress(forwards: &Mutex<Vec<Forward>>) -> String {
    let f = lock(forwards);
    if f.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = f
        .iter()
        .map(|f| {
            let c = lock(&f.counts);
            format!(
                "{}: {:.1} MB {} pages",
                c.id.map_or("?".into(), |i| i.to_string()),
                c.bytes as f64 / 1e6,
                c.pages + c.zero_pages
            )
        })
        .collect();
    format!("; multifd channels {}", parts.join(", "))
}

/// Accepts the source's connections in order and opens one to the destination for each,
/// before accepting the next (so the destination sees the source's order: QEMU 7.2 takes
/// the first for the main stream). The main stream goes to the main thread; each channel is
/// forwarded and decoded on a thread of its own.
#[allow(clippy::too_many_arguments)]
fn accept_all(
    listener: &Listener,
    forward: &Destination<'_>,
    reencode: bool,
    record: Option<PathBuf>,
    stop: &Arc<Stop>,
    facts: &Arc<MainFacts>,
    forwards: &Mutex<Vec<Forward>>,
    counting: &Counting,
    meter: &ChannelMeter,
    main_tx: mpsc::Sender<MainPair>,
) {
    let mut main_tx = Some(main_tx);
    let mut index = 0usize;
    loop {
        let (src, peer) = match listener.try_accept() {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Every connection that was waiting is taken in.
                counting.served();
                if stop.is_stopped() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) => {
                stop.fail(e);
                return;
            }
        };
        eprintln!("connection from {peer}");
        if counting.is_closed() {
            stop.fail(anyhow!(
                "a connection from {peer} after the migration's connections were counted at the main stream's first sync point (QEMU connects every channel before it)"
            ));
            return;
        }
        let pair = forward.addr.connect_tls(forward.tls).and_then(|dst| {
            stop.watch(src.try_clone_box()?);
            stop.watch(dst.try_clone_box()?);
            let conn = Conn::classify(src, peer.clone(), None)?;
            Ok((conn, dst))
        });
        let (conn, dst) = match pair {
            Ok(p) => p,
            Err(e) => {
                match main_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => stop.fail(e),
                }
                return;
            }
        };
        match conn.kind {
            Kind::Main => match main_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Ok((conn, dst)));
                }
                None => stop.fail(anyhow!(
                    "a second migration stream (QEVM) from {peer} while one is being forwarded"
                )),
            },
            Kind::Channel if reencode => stop.fail(anyhow!(
                "a multifd channel from {peer}: --reencode does not re-encode a multifd migration (its pages are on the channels); run the proxy without it"
            )),
            Kind::Channel => {
                let counts = Arc::new(Mutex::new(ChannelCounts::default()));
                let recorded = record.as_ref().map(|f| {
                    let mut name = f.as_os_str().to_owned();
                    name.push(format!(".partial-conn{index}"));
                    PathBuf::from(name)
                });
                let (stop, facts, shared, rec, meter) = (
                    Arc::clone(stop),
                    Arc::clone(facts),
                    Arc::clone(&counts),
                    recorded.clone(),
                    meter.another_channel(),
                );
                let thread = std::thread::spawn(move || {
                    if let Err(e) = forward_channel(conn, dst, rec, &facts, &shared, meter) {
                        stop.fail(e.context(format!("multifd channel from {peer}")));
                    }
                });
                lock(forwards).push(Forward {
                    counts,
                    thread,
                    recorded,
                });
                index += 1;
            }
        }
    }
}

/// Where the proxy forwards: the destination's address, and TLS to it.
struct Destination<'a> {
    addr: &'a Addr,
    tls: Option<&'a ClientTls>,
}

/// Forwards one channel to `dst` as it arrives, decoding it on the way; its counts go to
/// `counts` and, stamped with each read, to the timeline's `meter`.
fn forward_channel(
    conn: Conn,
    mut dst: Box<dyn Duplex>,
    record: Option<PathBuf>,
    facts: &Arc<MainFacts>,
    counts: &Mutex<ChannelCounts>,
    mut meter: ChannelMeter,
) -> Result<()> {
    let mut back_from = dst.try_clone_box()?;
    let mut back_to = conn.handle()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
    });
    let reader = conn.into_reader();
    let mut input: Box<dyn Read + Send> = match &record {
        Some(p) => Box::new(Tee::new(reader, p)?),
        None => Box::new(reader),
    };
    let mut tap = ChannelTap::new(Arc::clone(facts));
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the channel"),
        };
        if n == 0 {
            break;
        }
        let read_at = Instant::now();
        dst.write_all(&buf[..n])
            .context("writing the channel to the destination")?;
        let r = tap.feed(&buf[..n]);
        *lock(counts) = tap.counts.clone();
        let c = &tap.counts;
        meter.reached(read_at, c.bytes, c.pages + c.zero_pages);
        r?;
    }
    dst.flush()?;
    dst.shutdown_write();
    let finished_at = Instant::now();
    let r = tap.finish();
    *lock(counts) = tap.counts.clone();
    let c = &tap.counts;
    meter.reached(finished_at, c.bytes, c.pages + c.zero_pages);
    r?;
    Ok(())
}
