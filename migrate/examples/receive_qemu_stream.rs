//! Receives a stream recorded from QEMU into a vm-memory `GuestMemoryMmap` (`pc.ram` at
//! guest-physical address 0, split around the PCI hole if large; the ROM blocks `pc.bios`,
//! `pc.rom`, ... in side buffers) and prints each block's sha256.
//!
//! ```sh
//! cargo run -p ramstream-migrate --features vm-memory --example receive_qemu_stream [STREAM[.zst]]
//! ```
//! Without an argument it receives the `idle-noos` golden vector (QEMU 7.2, pc-i440fx).

use std::error::Error;
use std::sync::Arc;

use ramstream_migrate::vm_memory::{GpaRange, GuestMemoryRam};
use ramstream_migrate::{GuestRam, Loader, LoaderEvent, LoaderOptions, OwnedDeviceBlob};
use ramstream_migrate::{PageAddr, RamBlockLayout};
use sha2::{Digest, Sha256};
use vm_memory::GuestMemoryMmap;

type Ram = GuestMemoryRam<Arc<GuestMemoryMmap>>;
const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../conformance-vectors/vectors/idle-noos/stream.bin.zst"
);

/// The VMM's guest memory for the stream's blocks: `pc.ram` in a `GuestMemoryMmap` at GPA 0
/// (split around the PCI hole from 3 GiB, as `pc-i440fx` does), the ROM blocks aside.
fn guest_ram(blocks: &[RamBlockLayout]) -> Result<Ram, Box<dyn Error>> {
    let pc_ram = blocks.iter().find(|b| b.idstr() == "pc.ram");
    let len = pc_ram.ok_or("no pc.ram")?.used_length();
    let gpas = GpaRange::split_around_hole(len, 3 << 30, 4 << 30);
    let ranges: Vec<_> = gpas.iter().map(|r| (r.start, r.len as usize)).collect();
    let mem = Arc::new(GuestMemoryMmap::from_ranges(&ranges)?);
    let ram = GuestMemoryRam::builder(mem).map("pc.ram", gpas);
    Ok(ram.build(blocks)?) // every other block in a side buffer
}

/// Loads `stream` as it would arrive from a socket: any `Read` does.
fn receive(stream: &[u8]) -> Result<(Ram, Vec<OwnedDeviceBlob>), Box<dyn Error>> {
    let (mut loader, mut devices) = (Loader::without_ram(LoaderOptions::default()), Vec::new());
    loader.receive_from(stream, |loader, event| {
        match event {
            LoaderEvent::RamNeeded(blocks) => loader.provide_ram(guest_ram(&blocks)?)?,
            LoaderEvent::Device(d) => devices.push(d.to_owned()), // for the devices
            _ => {}
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    Ok((loader.into_ram().ok_or("the stream had no RAM")?, devices))
}

/// Each block's idstr and sha256, read back through `GuestRam`.
fn block_digests(ram: &impl GuestRam) -> Result<Vec<(String, String)>, Box<dyn Error>> {
    let mut digests = Vec::new();
    for (block, b) in ram.layout().iter().enumerate() {
        let mut bytes = vec![0u8; b.used_length() as usize];
        ram.read_page(PageAddr { block, offset: 0 }, &mut bytes)?;
        digests.push((b.idstr().to_string(), hex::encode(Sha256::digest(&bytes))));
    }
    Ok(digests)
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args().nth(1).unwrap_or(VECTOR.into());
    let raw = std::fs::read(path)?;
    let stream = zstd::decode_all(&raw[..]).unwrap_or(raw); // zstd-compressed or plain
    let (ram, devices) = receive(&stream)?;
    for (idstr, sha256) in block_digests(&ram)? {
        println!("{sha256}  {idstr}");
    }
    println!("{} device sections", devices.len());
    Ok(())
}

#[test]
fn receives_qemus_ram_exactly() {
    for name in ["idle-noos", "11.1-q35-noos", "10.0-live-xbzrle"] {
        let all = ramstream_conformance_vectors::all().unwrap();
        let v = all
            .iter()
            .find(|v| v.manifest.name == name)
            .expect("vector");
        let (ram, devices) = receive(&v.stream().unwrap()).unwrap();
        let want: Vec<_> = v
            .manifest
            .blocks
            .iter()
            .map(|b| (b.idstr.clone(), b.sha256.clone()))
            .collect();
        assert_eq!(block_digests(&ram).unwrap(), want, "{name}");
        assert!(
            devices.len() > 10,
            "{name}: {} device sections",
            devices.len()
        );
        assert!(
            ram.gpa_ranges(0).is_some() && ram.gpa_ranges(2).is_none(),
            "pc.ram mapped, pc.bios aside"
        );
    }
}
