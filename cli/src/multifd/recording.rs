//! Multi-file recordings of multifd migrations (SPEC.md §14.9): the main stream in `F`, each
//! channel's bytes in `F.multifd-<id>`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ramstream_spec::multifd::RECORDING_CHANNEL_SUFFIX;

use crate::input::{read_stream, StreamBytes, ZSTD_MAGIC};

/// `F.multifd-<id>`: where a recording `F` keeps channel `id`.
pub fn channel_path(main: &Path, id: u8) -> PathBuf {
    let mut name = main.as_os_str().to_owned();
    name.push(format!("{RECORDING_CHANNEL_SUFFIX}{id}"));
    PathBuf::from(name)
}

/// The channel files beside recording `main`: ids 0, 1, … up to the first missing one. A
/// gap is refused by name (`F.multifd-1` missing, `F.multifd-2` there): the channels after
/// it would be left out, and the image rebuilt without their pages.
pub fn channel_files(main: &Path) -> Result<Vec<(u8, PathBuf)>> {
    let files: Vec<(u8, PathBuf)> = (0..=u8::MAX)
        .map(|id| (id, channel_path(main, id)))
        .take_while(|(_, p)| p.is_file())
        .collect();
    let n = files.len();
    if let Some(later) = (n + 1..=usize::from(u8::MAX))
        .map(|id| channel_path(main, id as u8))
        .find(|p| p.is_file())
    {
        bail!(
            "{} is missing, but {} is there: a multifd recording needs every channel file",
            channel_path(main, n as u8).display(),
            later.display()
        );
    }
    Ok(files)
}

/// Reads a channel file: mapped like a stream file ([`read_stream`]), or decompressed when
/// it is zstd (as the vectors keep them).
pub fn read_channel(path: &Path) -> Result<StreamBytes> {
    let raw = read_stream(path)?;
    if raw.starts_with(&ZSTD_MAGIC) {
        let out = zstd::stream::decode_all(&raw[..])
            .with_context(|| format!("cannot decompress {}", path.display()))?;
        return Ok(StreamBytes::Owned(out));
    }
    Ok(raw)
}

/// A reader that writes every byte it reads into a file: a channel recorded exactly as
/// received, while it is decoded.
pub struct Tee<R> {
    inner: R,
    out: BufWriter<File>,
}

impl<R: Read> Tee<R> {
    /// Reads `inner`, recording into a new file at `path`.
    pub fn new(inner: R, path: &Path) -> Result<Tee<R>> {
        let out =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Tee {
            inner,
            out: BufWriter::with_capacity(1 << 20, out),
        })
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        if n == 0 {
            self.out.flush()?;
        }
        Ok(n)
    }
}
