//! Live-migrates one vm-memory `GuestMemoryMmap` into another over a unix socket pair. A
//! "guest" thread keeps writing pages of the source memory (vm-memory's `AtomicBitmap` marks
//! them) while the `Source` sends the bulk pass and three dirty rounds; then the guest is stopped,
//! and the last dirty pages and the RAM digest (SPEC.md §13) follow. The destination thread's
//! `Loader` refuses EOF unless its memory matches that digest; at the end both memories are
//! read back and compared.
//!
//! ```sh
//! cargo run -p ramstream-migrate --features vm-memory --example live_migrate_pair
//! ```

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use std::{error::Error, io::Read, io::Write, os::unix::net::UnixStream, thread};

use ramstream_migrate::vm_memory::{GpaRange, GuestMemoryRam};
use ramstream_migrate::{DigestPolicy, GuestRam, Loader, LoaderOptions, RamBlockLayout};
use ramstream_migrate::{Source, SourceOptions, Transmit};
use vm_memory::{bitmap::AtomicBitmap, Bytes, GuestAddress, GuestMemoryMmap};

type Mem = GuestMemoryMmap<AtomicBitmap>;
type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;
const RAM: u64 = 16 << 20;

/// The VMM's guest memory as QEMU's one RAM block, `pc.ram`, at guest-physical address 0.
fn guest_ram(mem: &Mem) -> Res<GuestMemoryRam<&Mem>> {
    let ram = GuestMemoryRam::builder(mem).map("pc.ram", [GpaRange::new(GuestAddress(0), RAM)]);
    Ok(ram.build(&[RamBlockLayout::new("pc.ram", RAM)])?)
}

/// Polls the source with the time now until it asks to stop the guest, or is done.
fn drive(source: &mut Source, ram: &GuestMemoryRam<&Mem>, out: &mut UnixStream) -> Res<Transmit> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let now = Instant::now();
        match source.poll_transmit(now, ram, &mut buf)? {
            Transmit::Send { bytes } => out.write_all(&buf).map(|()| source.handle_sent(bytes))?,
            Transmit::Wait(until) => thread::sleep(until - now),
            Transmit::SyncDirty => source.sync_dirty(now, &mut ram.dirty_log(4096))?,
            next => return Ok(next), // StopGuest or Done
        }
    }
}

/// The destination: feeds what the socket gives to the loader until the stream is done.
fn receive(mem: &Mem, mut input: UnixStream) -> Res<()> {
    let opts = LoaderOptions {
        digest: DigestPolicy::Require, // EOF only if memory matches the source's digest
        ..LoaderOptions::default()
    };
    let (mut loader, mut buf, mut pos) = (Loader::new(guest_ram(mem)?, opts), Vec::new(), 0);
    let mut chunk = vec![0; 64 << 10];
    while !loader.is_done() {
        let p = loader.handle(&buf[pos..])?;
        pos += p.consumed;
        if p.event.is_none() {
            buf.drain(..std::mem::take(&mut pos)); // keep only the part of a record
            match input.read(&mut chunk)? {
                0 => loader.finish(),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let new_mem = || Mem::from_ranges(&[(GuestAddress(0), RAM as usize)]);
    let (src, dst, stopped) = (new_mem()?, new_mem()?, AtomicBool::new(false));
    src.write_slice(&vec![0xab; 1 << 20], GuestAddress(4 << 20))?; // data before migrating
    let ((mut out, rx), ram) = (UnixStream::pair()?, guest_ram(&src)?);
    let opts = SourceOptions {
        downtime_limit: Duration::ZERO, // never converges: stops after max_iterations
        max_iterations: 3,
        ..SourceOptions::default()
    };
    let mut source = Source::new(ram.layout(), opts)?;
    thread::scope(|s| {
        let destination = s.spawn(|| receive(&dst, rx));
        let guest = s.spawn(|| {
            let mut writes = (0..20_000_000u64).take_while(|_| !stopped.load(Relaxed));
            writes.try_for_each(|i| src.write_obj(i, GuestAddress(i % 64 * 5 * 4096)))
        });
        assert_eq!(drive(&mut source, &ram, &mut out)?, Transmit::StopGuest);
        stopped.store(true, Relaxed);
        guest.join().expect("guest thread")?; // the vCPUs are stopped: no more writes
        source.handle_stopped(Instant::now(), &mut Vec::new())?; // no device state here
        assert_eq!(drive(&mut source, &ram, &mut out)?, Transmit::Done);
        drop(out); // EOF for the destination (also when an error returns early)
        destination.join().expect("destination thread")
    })?;
    let (mut a, mut b) = (vec![0; RAM as usize], vec![0; RAM as usize]);
    src.read_slice(&mut a, GuestAddress(0))?;
    dst.read_slice(&mut b, GuestAddress(0))?;
    assert!(a == b, "the destination's memory differs from the source's");
    let (stats, rounds) = (source.stats(), source.stats().rounds.len());
    println!(
        "{} bytes, {rounds} rounds, downtime {:?}",
        stats.sent, stats.downtime
    );
    Ok(())
}

#[test]
fn migrates_a_live_guest_exactly() {
    main().unwrap();
}
