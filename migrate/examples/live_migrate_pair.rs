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
use std::{error::Error, os::unix::net::UnixStream, thread};

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

/// The destination: loads what the socket gives until the stream is done.
fn receive(mem: &Mem, input: UnixStream) -> Res<()> {
    // EOF only if memory matches the source's digest
    let opts = LoaderOptions::default().with_digest(DigestPolicy::Require);
    let mut loader = Loader::new(guest_ram(mem)?, opts);
    loader.receive_from(input, |_, _| Ok(())) // no device state to restore here
}

fn main() -> Res<()> {
    let new_mem = || Mem::from_ranges(&[(GuestAddress(0), RAM as usize)]);
    let (src, dst, stopped) = (new_mem()?, new_mem()?, AtomicBool::new(false));
    src.write_slice(&vec![0xab; 1 << 20], GuestAddress(4 << 20))?; // data before migrating
    let ((mut out, rx), ram) = (UnixStream::pair()?, guest_ram(&src)?);
    let opts = SourceOptions::default()
        .with_downtime_limit(Duration::ZERO) // never converges: stops after max_iterations
        .with_max_iterations(3);
    let (mut source, dirty) = (Source::new(ram.layout(), opts)?, &mut ram.dirty_log(4096));
    thread::scope(|s| {
        let destination = s.spawn(|| receive(&dst, rx));
        let guest = s.spawn(|| {
            let mut writes = (0..20_000_000u64).take_while(|_| !stopped.load(Relaxed));
            writes.try_for_each(|i| src.write_obj(i, GuestAddress(i % 64 * 5 * 4096)))
        });
        // Bytes go out, Waits sleep, dirty syncs read the AtomicBitmap, time is Instant::now().
        assert_eq!(source.send_to(&ram, dirty, &mut out)?, Transmit::StopGuest);
        stopped.store(true, Relaxed);
        guest.join().expect("guest thread")?; // the vCPUs are stopped: no more writes
        source.handle_stopped(Instant::now(), &mut Vec::new())?; // no device state here
        assert_eq!(source.send_to(&ram, dirty, &mut out)?, Transmit::Done);
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
