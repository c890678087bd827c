//! `ramstream receive --extract`: be a QEMU migration destination that rebuilds the RAM and
//! keeps the device state, instead of running the guest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ramstream_codec::{Decoder, Event};
use ramstream_spec::stream::Command;

use crate::extract::Collector;
use crate::qemu::addr::{Addr, Listener};
use crate::qemu::pump::pump;
use crate::qemu::side_channels::SideChannels;
use crate::DecodeArgs;

/// Machine types whose streams the conformance vectors cover.
pub const TESTED_MACHINE_TYPES: &[&str] = &[
    "pc-i440fx-7.2",
    "pc-q35-7.2",
    "pc-i440fx-10.0",
    "pc-q35-10.0",
    "pc-i440fx-11.1",
    "pc-q35-11.1",
];

/// Refuses what ramstream cannot honour as a destination, with one clear message.
pub fn check_policy(event: &Event<'_>, offset: u64, allow_untested: bool) -> Result<()> {
    match event {
        Event::Configuration(c)
            if !allow_untested && !TESTED_MACHINE_TYPES.contains(&c.machine_type) =>
        {
            bail!(
                "at offset {offset:#x}: machine type {:?} has not been tested with ramstream (tested: {}); pass --allow-untested-machine to try anyway",
                c.machine_type,
                TESTED_MACHINE_TYPES.join(", ")
            );
        }
        Event::Command(c)
            if [
                Command::POSTCOPY_LISTEN,
                Command::POSTCOPY_RUN,
                Command::POSTCOPY_RAM_DISCARD,
                Command::PACKAGED,
            ]
            .contains(&c.command) =>
        {
            bail!(
                "at offset {offset:#x}: command {:?}: the source started the postcopy phase (capability postcopy-ram, migrate-start-postcopy); ramstream receives precopy only",
                c.command
            );
        }
        Event::MultifdFlush(_) => bail!(
            "at offset {offset:#x}: MULTIFD_FLUSH record: the source uses capability multifd, whose pages travel on other connections; ramstream takes one connection only"
        ),
        _ => {}
    }
    Ok(())
}

/// Receives one QEMU stream on `listen` and extracts it into `out`.
pub fn run(
    listen: &Addr,
    out: &Path,
    save_stream: Option<&PathBuf>,
    allow_untested: bool,
    decode: &DecodeArgs,
) -> Result<()> {
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
    let mut result = pump(&mut *conn, &mut dec, |offset, event, raw| {
        extra.check(offset)?;
        check_policy(event, offset, allow_untested)?;
        if let Some(s) = saver.as_mut() {
            s.write_all(raw)?;
        }
        bytes += raw.len() as u64;
        if matches!(event, Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_)) {
            pages += 1;
        }
        c.observe(offset, event)
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
