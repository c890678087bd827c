//! `ramstream extract`: one raw, sparse image per RAM block, the device sections verbatim,
//! and a manifest.

pub mod direct;
mod early_sync;
mod files;
mod follow_hash;

use std::fs::{self, File};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use ramstream_codec::mapped_ram::block_views;
use ramstream_codec::vmdesc::{check_splits, SplitCheck, SplitFinding, VmDescription};
use ramstream_codec::{
    apply_event, DeviceSection, Event, Events, MemSize, RamBlock, RamImage, SectionHeader,
};
use ramstream_spec::stream::SectionType;
use serde::Serialize;

use crate::input::{file_options, read_stream};
use crate::multifd::image::SharedImage;
use crate::multifd::offline::OfflineChannels;
use crate::DecodeArgs;

/// `ramstream extract`'s arguments.
#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// The stream file (`.zst`: decompressed); `-` reads standard input.
    pub file: PathBuf,
    /// The output directory (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Leave the blocks' `sha256` out of manifest.json (hashing a large guest costs about as
    /// much as writing it).
    #[arg(long)]
    pub no_sha256: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// One RAM block entry of `manifest.json`.
#[derive(Serialize)]
struct BlockEntry {
    idstr: String,
    used_length: u64,
    file: String,
    /// The sha256 of the whole image file; absent with `--no-sha256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// One device entry of `manifest.json`.
#[derive(Serialize)]
struct DeviceEntry {
    idstr: String,
    instance_id: u32,
    version_id: u32,
    section_id: u32,
    file: String,
}

#[derive(Serialize)]
struct Manifest {
    blocks: Vec<BlockEntry>,
    devices: Vec<DeviceEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vmdesc: Option<String>,
    /// The device-section splits checked against the VMDESCRIPTION (SPEC.md §5.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    vmdesc_splits: Option<SplitCheck>,
}

/// A device section kept verbatim.
pub struct DeviceState {
    pub idstr: String,
    pub instance_id: u32,
    pub version_id: u32,
    pub section_id: u32,
    /// Stream offset of the body's first byte.
    pub body_offset: u64,
    pub body: Vec<u8>,
}

/// What a decoded stream leaves behind: RAM, device state, the trailer.
pub struct Collector {
    pub image: RamImage,
    /// RAM written by several threads (a multifd migration's channels): the main stream's
    /// page records go here instead of `image`, which takes its pages at the end
    /// ([`Collector::take_shared`]).
    pub shared: Option<Arc<SharedImage>>,
    /// The first MEM_SIZE record's blocks.
    blocks: Vec<RamBlock>,
    pub devices: Vec<DeviceState>,
    pub vmdesc: Option<Vec<u8>>,
}

impl Collector {
    pub fn new(page_size: usize) -> Self {
        Collector {
            image: RamImage::new(page_size),
            shared: None,
            blocks: Vec::new(),
            devices: Vec::new(),
            vmdesc: None,
        }
    }

    /// A collector whose RAM is `shared` with other threads.
    pub fn shared(page_size: usize, shared: Arc<SharedImage>) -> Self {
        Collector {
            shared: Some(shared),
            ..Collector::new(page_size)
        }
    }

    /// Moves the shared RAM's pages into `image`, once the other threads are done.
    pub fn take_shared(&mut self) -> Result<()> {
        if let Some(s) = self.shared.take() {
            let s = Arc::into_inner(s).context("the RAM image is still shared")?;
            self.image = s.into_ram_image(&self.blocks);
        }
        Ok(())
    }

    /// Applies one event.
    pub fn observe(&mut self, offset: u64, event: &Event<'_>) -> Result<()> {
        match event {
            Event::Configuration(cfg) => {
                if let Some(bits) = cfg.target_page_bits {
                    self.image = RamImage::new(1 << bits);
                }
            }
            Event::MemSize(ms) => {
                let same = |a: &RamBlock, b: &RamBlock| {
                    a.idstr == b.idstr && a.used_length == b.used_length
                };
                let changed = self.blocks.len() != ms.blocks.len()
                    || !self.blocks.iter().zip(&ms.blocks).all(|(a, b)| same(a, b));
                if self.shared.is_some() && !self.blocks.is_empty() && changed {
                    bail!(
                        "at offset {offset:#x}: MEM_SIZE record: the block list changes ({} blocks before, {} now); RAM received over several connections keeps one block list (save the stream and run `ramstream extract` on it)",
                        self.blocks.len(),
                        ms.blocks.len()
                    );
                }
                self.image.set_blocks(&ms.blocks);
                if self.blocks.is_empty() {
                    self.blocks = ms.blocks.clone();
                }
                if let Some(s) = &self.shared {
                    s.set_blocks(self.image.page_size(), &ms.blocks);
                }
            }
            Event::Device(d) => self.devices.push(DeviceState {
                idstr: d.header.idstr.to_string(),
                instance_id: d.header.instance_id,
                version_id: d.header.version_id,
                section_id: d.header.section_id,
                body_offset: d.body_offset,
                body: d.body.to_vec(),
            }),
            Event::VmDescription(j) => self.vmdesc = Some(j.to_vec()),
            _ => {}
        }
        match &self.shared {
            // A MULTIFD_FLUSH is the multifd side's (a sync point).
            Some(s) => s.apply(event, offset)?,
            None => {
                apply_event(&mut self.image, event, offset)?;
            }
        }
        Ok(())
    }

    /// For the MEM_SIZE of a mapped-ram file, writes every present page of each block into
    /// the image from the file regions its headers point at (SPEC.md §7.9): `input` is the
    /// stream the event was decoded from, its first byte at file offset `file_offset`.
    /// Returns how many pages (0 for a stream's MEM_SIZE).
    pub fn apply_mapped_ram(
        &mut self,
        input: &[u8],
        file_offset: u64,
        ms: &MemSize,
    ) -> Result<u64> {
        let views = block_views(input, file_offset, ms, self.image.page_size())?;
        Ok(views
            .iter()
            .enumerate()
            .map(|(i, b)| b.apply_to(&mut self.image, i))
            .sum())
    }

    /// The device sections checked against the VMDESCRIPTION, when the stream had one.
    pub fn split_check(&self) -> Option<SplitCheck> {
        let json = self.vmdesc.as_ref()?;
        let sections: Vec<DeviceSection<'_>> = self
            .devices
            .iter()
            .map(|d| DeviceSection {
                header: SectionHeader {
                    section_type: SectionType::FULL,
                    section_id: d.section_id,
                    idstr: &d.idstr,
                    instance_id: d.instance_id,
                    version_id: d.version_id,
                },
                body_offset: d.body_offset,
                body: &d.body,
            })
            .collect();
        Some(match VmDescription::parse(json) {
            Ok(desc) => check_splits(&desc, &sections),
            Err(e) => {
                let mut check = SplitCheck::default();
                check.unchecked = sections
                    .iter()
                    .map(|s| SplitFinding {
                        idstr: s.header.idstr.to_string(),
                        instance_id: s.header.instance_id,
                        body_offset: s.body_offset,
                        body_len: s.body.len(),
                        reason: format!("the VMDESCRIPTION does not parse: {e}"),
                    })
                    .collect();
                check
            }
        })
    }

    /// Writes the extract into `out` atomically: a scratch directory beside it is renamed at
    /// the end, so a failure never leaves a directory that looks complete. `hash`: the
    /// manifest has each block's sha256. Returns the device-split check it recorded.
    pub fn write(&self, out: &Path, hash: bool) -> Result<Option<SplitCheck>> {
        if out.exists() && fs::read_dir(out)?.next().is_some() {
            bail!("{} exists and is not empty", out.display());
        }
        let scratch = scratch_dir(out)?;
        let splits = match self.write_into(&scratch, hash) {
            Ok(splits) => splits,
            Err(e) => {
                let _ = fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        if out.exists() {
            fs::remove_dir(out)?;
        }
        fs::rename(&scratch, out)
            .with_context(|| format!("cannot rename into {}", out.display()))?;
        Ok(splits)
    }

    fn write_into(&self, dir: &Path, hash: bool) -> Result<Option<SplitCheck>> {
        fs::create_dir_all(dir.join("devices"))?;
        // The manifest's whole-block sha256s are hashed on a second thread while the
        // images are written: hashing is off the write path.
        let image = &self.image;
        std::thread::scope(|s| {
            let sums = hash.then(|| {
                s.spawn(move || {
                    (0..image.blocks().len())
                        .map(|i| image.sha256(i))
                        .collect::<Vec<_>>()
                })
            });
            let written = self.write_blocks(dir);
            let sums = sums.map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            self.write_rest(dir, written?, sums)
        })
    }

    /// One sparse image file per block, synced; the manifest entries without their sha256.
    fn write_blocks(&self, dir: &Path) -> Result<Vec<BlockEntry>> {
        let mut blocks = Vec::new();
        let mut used = std::collections::HashSet::new();
        for b in self.image.blocks() {
            let mut fname = file_name(&b.idstr, "ram");
            let mut n = 1;
            while !used.insert(fname.clone()) {
                fname = format!("{}.{n}", file_name(&b.idstr, "ram"));
                n += 1;
            }
            let path = dir.join(&fname);
            let f =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            f.set_len(b.used_length)?;
            write_pages(&f, b.pages())
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.sync_all()?;
            blocks.push(BlockEntry {
                idstr: b.idstr.clone(),
                used_length: b.used_length,
                file: fname,
                sha256: None,
            });
        }
        Ok(blocks)
    }

    /// The device sections, the VMDESCRIPTION and the manifest, `sums` the blocks' sha256s
    /// (`None`: the manifest has none).
    fn write_rest(
        &self,
        dir: &Path,
        mut blocks: Vec<BlockEntry>,
        sums: Option<Vec<[u8; 32]>>,
    ) -> Result<Option<SplitCheck>> {
        if let Some(sums) = sums {
            if sums.len() != blocks.len() {
                bail!("{} sha256s for {} blocks", sums.len(), blocks.len());
            }
            for (b, sum) in blocks.iter_mut().zip(sums) {
                b.sha256 = Some(hex::encode(sum));
            }
        }
        let mut devices = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let fname = format!(
                "devices/{i:03}-{}",
                file_name(&format!("{}.{}", d.idstr, d.instance_id), "bin")
            );
            fs::write(dir.join(&fname), &d.body)?;
            devices.push(DeviceEntry {
                idstr: d.idstr.clone(),
                instance_id: d.instance_id,
                version_id: d.version_id,
                section_id: d.section_id,
                file: fname,
            });
        }
        let vmdesc = match &self.vmdesc {
            Some(j) => {
                fs::write(dir.join("vmdesc.json"), j)?;
                Some("vmdesc.json".to_string())
            }
            None => None,
        };
        let mut manifest = Manifest {
            blocks,
            devices,
            vmdesc,
            vmdesc_splits: self.split_check(),
        };
        let text = serde_json::to_string_pretty(&manifest)?;
        fs::write(dir.join("manifest.json"), text + "\n")?;
        Ok(manifest.vmdesc_splits.take())
    }
}

/// Writes `pages` (ascending offsets) at their offsets in `f`, adjacent pages gathered into
/// one positional write of up to [`WRITE_RUN`] bytes: a few hundred system calls for a guest
/// instead of two per page.
fn write_pages<'a>(f: &File, pages: impl Iterator<Item = (u64, &'a [u8])>) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut run: Vec<u8> = Vec::with_capacity(WRITE_RUN);
    let mut at = 0u64;
    for (off, page) in pages {
        let adjacent = at + run.len() as u64 == off;
        if !run.is_empty() && (!adjacent || run.len() + page.len() > WRITE_RUN) {
            f.write_all_at(&run, at)?;
            run.clear();
        }
        if run.is_empty() {
            at = off;
        }
        run.extend_from_slice(page);
    }
    if !run.is_empty() {
        f.write_all_at(&run, at)?;
    }
    Ok(())
}

/// The largest single write of [`write_pages`].
const WRITE_RUN: usize = 4 << 20;

fn scratch_dir(out: &Path) -> Result<PathBuf> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = out
        .file_name()
        .context("--out needs a directory name")?
        .to_string_lossy();
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

/// A file name for an idstr: `/` and other unsafe characters become `_`.
pub fn file_name(idstr: &str, ext: &str) -> String {
    let clean: String = idstr
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}.{ext}")
}

/// Extracts a stream file, or a mapped-ram file (read as such when its configuration lists
/// `mapped-ram`, SPEC.md §7.9). A plain single stream is written straight into the files
/// ([`direct`]); the others are rebuilt in memory first.
pub fn run(a: &ExtractArgs) -> Result<()> {
    let (file, out, decode) = (a.file.as_path(), a.out.as_path(), &a.decode);
    let bytes = read_stream(file)?;
    let opts = file_options(decode);
    let file_offset = opts.file_offset;
    let limits = opts.limits.clone();
    let mut events = Events::new(&bytes, opts);
    let in_file = || format!("{}", file.display());
    // A multifd recording: its channels beside it (SPEC.md §14.9).
    let shared = Arc::new(SharedImage::default());
    let mut multifd = OfflineChannels::open(file, Arc::clone(&shared), limits)?;
    let mut c = match &multifd {
        Some(_) => Collector::shared(events.decoder().page_size(), shared),
        None => Collector::new(events.decoder().page_size()),
    };
    let mut direct = match &multifd {
        Some(_) => None,
        None => Some(direct::Direct::new(out, !a.no_sha256)?),
    };
    let mut bar = crate::progress::Bytes::new("decoding", Some(bytes.len() as u64), false);
    while let Some(item) = events.next() {
        let (at, event) = item
            .with_context(in_file)
            .map_err(|e| crate::failure::retry_dialects(e, &bytes, decode))?;
        bar.at(at);
        if let Some(m) = multifd.as_mut() {
            let page_bits = events.decoder().page_bits();
            m.observe(&event, at, page_bits).with_context(in_file)?;
        } else if let Event::MultifdFlush(_) = event {
            bail!(
                "{}: at offset {at:#x}: MULTIFD_FLUSH record: a multifd migration's main stream, whose pages are in its channels; none of them is beside it ({})",
                file.display(),
                crate::multifd::recording::channel_path(file, 0).display()
            );
        }
        if let Some(d) = direct.as_mut() {
            match d
                .observe(&mut c, at, &event, &bytes, file_offset)
                .with_context(in_file)?
            {
                direct::Taken::Written => continue,
                direct::Taken::Collector => {}
                direct::Taken::Leave => direct = None,
            }
        }
        c.observe(at, &event).with_context(in_file)?;
        if let Event::MemSize(ms) = &event {
            c.apply_mapped_ram(&bytes, file_offset, ms)
                .with_context(in_file)?;
        }
    }
    let channels = match multifd {
        Some(m) => m.finish()?,
        None => Vec::new(),
    };
    bytes.check_unchanged()?;
    c.take_shared()?;
    let splits = match direct {
        Some(d) => d.finish(&c, out)?,
        None => c.write(out, !a.no_sha256)?,
    };
    report_splits(splits.as_ref());
    for ch in &channels {
        eprintln!(
            "multifd channel {}: {} bytes, {} packets, {} pages, {} zero pages, {} SYNC ({})",
            ch.id, ch.bytes, ch.packets, ch.pages, ch.zero_pages, ch.syncs, ch.from
        );
    }
    eprintln!(
        "extracted {} block(s) and {} device section(s) into {}",
        c.image.blocks().len(),
        c.devices.len(),
        out.display()
    );
    Ok(())
}

/// One line for stderr about the device splits (and one per section that disagrees): the
/// device files of an extract whose splits disagree with the VMDESCRIPTION may be cut wrong.
pub fn report_splits(check: Option<&SplitCheck>) {
    let Some(c) = check else {
        return;
    };
    eprintln!(
        "device sections: {} confirmed by the VMDESCRIPTION, {} disagree, {} unchecked",
        c.confirmed,
        c.disagreements.len(),
        c.unchecked.len()
    );
    for f in &c.disagreements {
        eprintln!(
            "warning: device section {} instance {} (body at {:#x}, {} bytes) disagrees with the VMDESCRIPTION: {}",
            f.idstr, f.instance_id, f.body_offset, f.body_len, f.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages at their offsets whatever the grouping: adjacent ones, a gap, and a run longer
    /// than one write.
    #[test]
    fn write_pages_puts_every_page_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block.ram");
        let f = File::create(&path).unwrap();
        let page = |b: u8| vec![b; 4096];
        let mut pages: Vec<(u64, Vec<u8>)> =
            vec![(0, page(1)), (4096, page(2)), (3 * 4096, page(3))];
        let long = WRITE_RUN as u64 / 4096 + 3;
        pages.extend((0..long).map(|i| (0x100_0000 + i * 4096, page(i as u8 | 0x80))));
        let end = pages.last().unwrap().0 + 4096;
        f.set_len(end).unwrap();
        write_pages(&f, pages.iter().map(|(o, p)| (*o, &p[..]))).unwrap();
        let got = fs::read(&path).unwrap();
        let mut want = vec![0u8; end as usize];
        for (o, p) in &pages {
            want[*o as usize..*o as usize + 4096].copy_from_slice(p);
        }
        assert!(got == want, "the file differs from the pages written");
    }
}
