//! The `mapped_ram` target and its seeds: small hand-built mapped-ram files (SPEC.md §7.9)
//! read with [`MappedRam::Read`].

use ramstream_codec::mapped_ram::{MappedRamFile, MappedRamSummary};
use ramstream_codec::{DecoderOptions, MappedRam, PageAddr, PageStore, RamImage};
use ramstream_spec::mapped_ram::bitmap_len;

use super::{assert_same_run, decode_in_chunks, decode_whole, fuzz_limits, split_sizes};
use crate::mapped_ram_file::{MappedRamBlockSpec, MappedRamFileSpec, PAGE};

/// Seeds for the `mapped_ram` target: tiny files (a few pages) without and with
/// x-ignore-shared.
pub fn mapped_ram_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut ram = MappedRamBlockSpec::new("pc.ram", 9, &[0, 8]);
    ram.stale = vec![3];
    let tiny = MappedRamFileSpec {
        blocks: vec![MappedRamBlockSpec::new("pc.bios", 2, &[1]), ram],
        ignore_shared: false,
        alignment: PAGE,
        file_offset: 0,
    };
    let mut shared = tiny.clone();
    shared.ignore_shared = true;
    shared.blocks[0].ignored = true;
    shared.blocks[0].mr_addr = 0xfffc_0000;
    let mut one = tiny.clone();
    one.blocks.truncate(1);
    [
        ("tiny", tiny),
        ("x-ignore-shared", shared),
        ("one-block", one),
    ]
    .into_iter()
    .map(|(n, s)| {
        let mut v = vec![0u8];
        v.extend(s.build().bytes);
        (n, v)
    })
    .collect()
}

/// Counts pages written, so [`mapped_ram`] can bound its image.
struct Bounded(RamImage, usize);

impl PageStore for Bounded {
    fn page_mut(&mut self, addr: PageAddr) -> &mut [u8] {
        self.1 += 1;
        self.0.page_mut(addr)
    }
}

/// Target `mapped_ram`: `split_seed, file…`. A mapped-ram file read with
/// [`MappedRam::Read`]: one-shot and seeded split decoding agree, [`MappedRamFile`] accepts
/// exactly what the decoder accepts, and its block views stay inside their blocks.
pub fn mapped_ram(data: &[u8]) {
    let [seed, file @ ..] = data else {
        return;
    };
    let opts = DecoderOptions::default()
        .with_mapped_ram(MappedRam::Read)
        .with_limits(fuzz_limits());
    let whole = decode_whole(file, opts.clone());
    let split = decode_in_chunks(file, opts.clone(), split_sizes(*seed));
    assert_same_run(&whole, &split, "seeded split");
    let parsed = MappedRamFile::parse(file, &opts);
    assert_eq!(
        parsed.as_ref().err(),
        whole.end.as_ref().err(),
        "MappedRamFile and the decoder disagree"
    );
    let Ok(parsed) = parsed else {
        return;
    };
    let page_size = parsed.page_size();
    let mut image = Bounded(RamImage::new(page_size), 0);
    let blocks: Vec<_> = parsed.blocks().iter().map(|b| b.block.clone()).collect();
    image.0.set_blocks(&blocks);
    for (i, b) in parsed.blocks().iter().enumerate() {
        let pages = b.block.used_length / page_size as u64;
        if b.is_ignored() {
            assert!(b.bitmap.is_empty() && b.pages.is_empty());
        } else {
            assert_eq!(b.bitmap.len() as u64, bitmap_len(pages));
            assert_eq!(b.pages.len() as u64, b.block.used_length);
        }
        let mut last = None;
        for (offset, data) in b.present_pages() {
            assert!(offset < b.block.used_length && offset % page_size as u64 == 0);
            assert!(last < Some(offset), "present pages out of order");
            assert_eq!(data.len(), page_size);
            last = Some(offset);
            if image.1 < super::MAX_RESIDENT_PAGES {
                image
                    .page_mut(PageAddr { block: i, offset })
                    .copy_from_slice(data);
            }
        }
    }
    let s = MappedRamSummary::of(parsed.blocks());
    assert_eq!(
        s.pages_present,
        s.blocks.iter().map(|b| b.pages_present).sum::<u64>()
    );
    assert!(s.blocks.iter().all(|b| b.pages_present <= b.pages));
}
