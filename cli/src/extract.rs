//! `ramstream extract`: one raw, sparse image per RAM block, and a manifest.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use ramstream_codec::RamImage;
use serde::Serialize;

use crate::input::read_stream;
use crate::DecodeArgs;

/// One entry of `manifest.json`.
#[derive(Serialize)]
struct BlockEntry {
    idstr: String,
    used_length: u64,
    file: String,
    sha256: String,
}

#[derive(Serialize)]
struct Manifest {
    blocks: Vec<BlockEntry>,
}

/// A file name for a block idstr: `/` and other unsafe characters become `_`.
pub fn file_name(idstr: &str) -> String {
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
    format!("{clean}.ram")
}

pub fn run(file: &Path, out: &Path, decode: &DecodeArgs) -> Result<()> {
    let bytes = read_stream(file)?;
    let image = ramstream_codec::transcode::rebuild(&bytes, &decode.options())
        .with_context(|| format!("{}", file.display()))?;
    if out.exists() && fs::read_dir(out)?.next().is_some() {
        bail!("{} exists and is not empty", out.display());
    }
    // Write into a scratch directory beside OUT and rename at the end, so that a failure
    // never leaves a directory that looks like a complete extract.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = out
        .file_name()
        .context("--out needs a directory name")?
        .to_string_lossy();
    let scratch = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let result = write_extract(&image, &scratch);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&scratch);
        return Err(e);
    }
    if out.exists() {
        fs::remove_dir(out)?;
    }
    fs::rename(&scratch, out).with_context(|| format!("cannot rename into {}", out.display()))?;
    eprintln!(
        "extracted {} block(s) into {}",
        image.blocks().len(),
        out.display()
    );
    Ok(())
}

fn write_extract(image: &RamImage, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let mut entries = Vec::new();
    let mut used_names = std::collections::HashSet::new();
    for (i, b) in image.blocks().iter().enumerate() {
        let mut fname = file_name(&b.idstr);
        let mut n = 1;
        while !used_names.insert(fname.clone()) {
            fname = format!("{}.{n}", file_name(&b.idstr));
            n += 1;
        }
        let path = dir.join(&fname);
        let mut f =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        f.set_len(b.used_length)?;
        for (off, page) in b.pages() {
            f.seek(SeekFrom::Start(off))?;
            f.write_all(page)?;
        }
        f.sync_all()?;
        entries.push(BlockEntry {
            idstr: b.idstr.clone(),
            used_length: b.used_length,
            file: fname,
            sha256: hex::encode(image.sha256(i)),
        });
    }
    let manifest = serde_json::to_string_pretty(&Manifest { blocks: entries })?;
    fs::write(dir.join("manifest.json"), manifest + "\n")?;
    Ok(())
}
