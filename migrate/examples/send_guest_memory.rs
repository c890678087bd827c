//! Sends a vm-memory `GuestMemoryMmap` with a dirty bitmap (`AtomicBitmap`) through three
//! precopy rounds (the bulk pass and two dirty iterations, a "guest" writing pages between
//! them) and stop-and-copy, into a stream file that `ramstream inspect` reads.
//!
//! ```sh
//! cargo run -p ramstream-migrate --features vm-memory --example send_guest_memory [FILE]
//! ```

use std::error::Error;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ramstream_migrate::vm_memory::{GpaRange, GuestMemoryRam};
use ramstream_migrate::{RamBlockLayout, SendStats, Source, SourceOptions, Transmit};
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

type Mem = GuestMemoryMmap<AtomicBitmap>;
const RAM: u64 = 16 << 20;

/// Live-migrates `mem` into `out` while the guest writes 64 pages per round.
fn send(mem: Arc<Mem>, out: &mut impl Write) -> Result<SendStats, Box<dyn Error>> {
    let layout = [RamBlockLayout::new("pc.ram", RAM)];
    let ram = GuestMemoryRam::builder(mem.clone())
        .map("pc.ram", [GpaRange::new(GuestAddress(0), RAM)])
        .build(&layout)?;
    let opts = SourceOptions::default()
        .with_downtime_limit(Duration::ZERO) // never converges: stops after max_iterations
        .with_max_iterations(2);
    let mut source = Source::new(&layout, opts)?;
    let (mut buf, mut round) = (Vec::new(), 0u64);
    loop {
        buf.clear();
        let now = Instant::now();
        match source.poll_transmit(now, &ram, &mut buf)? {
            Transmit::Send { bytes } => {
                out.write_all(&buf)?;
                source.handle_sent(bytes);
            }
            Transmit::Wait(until) => std::thread::sleep(until - now),
            Transmit::SyncDirty => {
                // The guest at work: its writes through vm-memory mark the pages dirty.
                for p in 0..64 {
                    mem.write_obj(round << 32 | p, GuestAddress(p * 3 * 4096 + round * 8))?;
                }
                round += 1;
                source.sync_dirty(now, &mut ram.dirty_log(4096))?;
            }
            // The guest is stopped; it has no device state to save here.
            Transmit::StopGuest => source.handle_stopped(now, &mut Vec::new())?,
            Transmit::Done => return Ok(source.stats().clone()),
            _ => {}
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let default = std::env::temp_dir().join("send_guest_memory.bin");
    let path = std::env::args().nth(1).map_or(default, Into::into);
    let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), RAM as usize)])?);
    mem.write_slice(&vec![0xab; 1 << 20], GuestAddress(4 << 20))?; // data before migrating
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let stats = send(mem, &mut file)?;
    file.flush()?;
    let pages: Vec<u64> = stats.rounds.iter().map(|r| r.pages).collect();
    println!("{} bytes, rounds of {pages:?} pages", stats.produced);
    Ok(())
}

#[test]
fn sends_three_rounds_that_decode() {
    let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap());
    mem.write_slice(&vec![0xab; 1 << 20], GuestAddress(4 << 20))
        .unwrap();
    let path = std::env::temp_dir().join(format!("send_guest_memory.{}.bin", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    let stats = send(mem, &mut file).unwrap();
    drop(file);
    let stream = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let pages: Vec<u64> = stats.rounds.iter().map(|r| r.pages).collect();
    assert_eq!(
        pages,
        [4096, 64, 64],
        "the bulk pass, then the pages the bitmap saw"
    );
    assert_eq!(stats.produced, stream.len() as u64);
    let events = ramstream_codec::decode_all(&stream, Default::default()).unwrap();
    let parts = events
        .iter()
        .filter(|(_, e)| matches!(e, ramstream_codec::Event::SectionPart { .. }))
        .count();
    assert_eq!(parts, 4, "three PART sections and the END");
    assert!(matches!(
        events.last(),
        Some((_, ramstream_codec::Event::Eof))
    ));
}
