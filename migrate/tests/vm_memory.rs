//! `GuestRam` over vm-memory's `GuestMemoryMmap`: block-to-GPA mappings, side buffers, the
//! builder's checks, and a recorded QEMU stream loaded into split guest memory.

#![cfg(feature = "vm-memory")]

mod support;

use std::sync::Arc;

use ramstream_migrate::vm_memory::{AccessError, GpaRange, GuestMemoryRam, MappingError, Unmapped};
use ramstream_migrate::{GuestRam, Loader, PageAddr, RamBlockLayout};
use support::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const K: u64 = 1024;

fn mem(ranges: &[(u64, u64)]) -> Arc<GuestMemoryMmap> {
    let r: Vec<_> = ranges
        .iter()
        .map(|&(a, l)| (GuestAddress(a), l as usize))
        .collect();
    Arc::new(GuestMemoryMmap::from_ranges(&r).unwrap())
}

fn layout() -> Vec<RamBlockLayout> {
    vec![
        RamBlockLayout::new("pc.ram", 64 * K),
        RamBlockLayout::new("pc.bios", 16 * K),
    ]
}

#[test]
fn a_block_split_around_a_hole_lands_on_both_sides() {
    // 64 KiB of RAM: 16 KiB at GPA 0, a hole to 32 KiB, the rest from 32 KiB.
    let m = mem(&[(0, 16 * K), (32 * K, 48 * K)]);
    let gpas = GpaRange::split_around_hole(64 * K, 16 * K, 32 * K);
    let ram = GuestMemoryRam::builder(&*m)
        .map("pc.ram", gpas)
        .build(&layout())
        .unwrap();
    let page = |o: u64| PageAddr {
        block: 0,
        offset: o,
    };
    ram.write_page(page(12 * K), &[1; 4096]).unwrap();
    ram.write_page(page(16 * K), &[2; 4096]).unwrap();
    ram.write_page(page(60 * K), &[3; 4096]).unwrap();
    assert_eq!(m.read_obj::<u8>(GuestAddress(12 * K)).unwrap(), 1);
    assert_eq!(m.read_obj::<u8>(GuestAddress(32 * K)).unwrap(), 2);
    assert_eq!(m.read_obj::<u8>(GuestAddress(80 * K - 1)).unwrap(), 3);
    // A span across the hole is read in two pieces.
    let mut buf = vec![0u8; 8192];
    ram.read_page(page(12 * K), &mut buf).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 1) && buf[4096..].iter().all(|&b| b == 2));
    // Zeroing through the default path.
    ram.zero_page(page(12 * K), 8192).unwrap();
    assert_eq!(m.read_obj::<u64>(GuestAddress(32 * K)).unwrap(), 0);
    // Past the block's end: refused, nothing written.
    let e = ram.write_page(page(64 * K), &[9; 4096]).unwrap_err();
    assert!(matches!(e, AccessError::OutOfBlock { .. }), "{e}");
    assert!(ram
        .write_page(
            PageAddr {
                block: 2,
                offset: 0
            },
            &[9; 4096]
        )
        .is_err());
    assert_eq!(ram.gpa_ranges(0).unwrap().len(), 2);
}

#[test]
fn unmapped_blocks_go_to_side_buffers_or_are_refused() {
    let m = mem(&[(0, 64 * K)]);
    let pc_ram = [GpaRange::new(GuestAddress(0), 64 * K)];
    let map = || GuestMemoryRam::builder(&*m).map("pc.ram", pc_ram);
    let ram = map().build(&layout()).unwrap();
    let bios = ram.block_index("pc.bios").unwrap();
    ram.write_page(
        PageAddr {
            block: bios,
            offset: 4096,
        },
        &[7; 4096],
    )
    .unwrap();
    assert_eq!(
        ram.read_side_buffer(bios, |b| (b.len(), b[4096], b[0])),
        Some((16384, 7, 0))
    );
    assert!(ram.gpa_ranges(bios).is_none() && ram.read_side_buffer(0, |_| ()).is_none());
    // Guest memory is untouched by side-buffer writes.
    assert_eq!(m.read_obj::<u8>(GuestAddress(4096)).unwrap(), 0);
    let e = map().unmapped(Unmapped::Refuse).build(&layout());
    assert_eq!(
        e.unwrap_err(),
        MappingError::Unmapped {
            idstr: "pc.bios".into()
        }
    );
    let e = map().side_buffer_limit(8 * K).build(&layout());
    assert!(matches!(
        e.unwrap_err(),
        MappingError::SideBuffersTooLarge {
            total: 16384,
            limit: 8192
        }
    ));
}

#[test]
fn the_builder_checks_every_mapping() {
    let m = mem(&[(0, 64 * K), (1 << 20, 64 * K)]);
    let b = || GuestMemoryRam::builder(&*m);
    let r = |a: u64, l: u64| GpaRange::new(GuestAddress(a), l);
    let cases: Vec<(Result<_, MappingError>, &str)> = vec![
        (b().map("m0", [r(0, 64 * K)]).build(&layout()), "unknown"),
        (b().map("pc.ram", [r(0, 32 * K)]).build(&layout()), "length"),
        (
            b().map("pc.ram", [r(32 * K, 64 * K)]).build(&layout()),
            "not in memory",
        ),
        (
            b().map("pc.ram", [r(0, 64 * K)])
                .map("pc.bios", [r(48 * K, 16 * K)])
                .build(&layout()),
            "overlap",
        ),
        (
            b().map("pc.ram", [r(0, 64 * K)])
                .map("pc.ram", [r(0, 64 * K)])
                .build(&layout()),
            "duplicate",
        ),
    ];
    for (result, what) in cases {
        let e = result.map(|_| ()).unwrap_err();
        let ok = match what {
            "unknown" => matches!(e, MappingError::UnknownBlock { .. }),
            "length" => matches!(
                e,
                MappingError::Length {
                    mapped: 32768,
                    used_length: 65536,
                    ..
                }
            ),
            "not in memory" => matches!(e, MappingError::NotInMemory { .. }),
            "overlap" => matches!(e, MappingError::Overlap { .. }),
            _ => matches!(e, MappingError::DuplicateMapping { .. }),
        };
        assert!(ok, "{what}: {e}");
    }
    // Both blocks in guest memory, one of them in the second region.
    b().map("pc.ram", [r(0, 64 * K)])
        .map("pc.bios", [r(1 << 20, 16 * K)])
        .build(&layout())
        .unwrap();
}

#[test]
fn a_recorded_stream_loads_into_split_guest_memory() {
    for (v, stream) in vectors(&["idle-noos", "11.1-live-xbzrle"]) {
        let layout = layout_of(&v);
        // pc.ram (64 MiB) around a hole at [16 MiB, 20 MiB); pc.bios mapped below 4 GiB as
        // on real hardware; the other ROMs aside.
        let m = mem(&[(0, 16 << 20), (20 << 20, 48 << 20), (0xfffc_0000, 256 * K)]);
        let ram = GuestMemoryRam::builder(m.clone())
            .map(
                "pc.ram",
                GpaRange::split_around_hole(64 << 20, 16 << 20, 20 << 20),
            )
            .map(
                "pc.bios",
                [GpaRange::new(GuestAddress(0xfffc_0000), 256 * K)],
            )
            .build(&layout)
            .unwrap();
        let mut loader = Loader::new(ram, options_for(&v));
        drive(&mut loader, &stream, || 100_000, |_| unreachable!()).unwrap();
        let ram = loader.into_ram().unwrap();
        for (i, b) in v.manifest.blocks.iter().enumerate() {
            let mut bytes = vec![0u8; b.used_length as usize];
            ram.read_page(
                PageAddr {
                    block: i,
                    offset: 0,
                },
                &mut bytes,
            )
            .unwrap();
            assert_eq!(
                sha256_hex(&bytes),
                b.sha256,
                "{}: {}",
                v.manifest.name,
                b.idstr
            );
        }
        // The BIOS is at the reset vector, where a VMM's vCPU would find it.
        let mut top = [0u8; 16];
        m.read_slice(&mut top, GuestAddress(0xffff_fff0)).unwrap();
        assert_ne!(top, [0u8; 16]);
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
