//! Reading a stream file: mapped read-only, or decompressed when it ends in `.zst`; `-` reads
//! standard input.
//!
//! A regular file is mapped (`mmap`, read-only, private) and the decoders read the mapping
//! through a borrowed `&[u8]` ([`StreamBytes`]): no heap copy of the stream, the pages are the
//! page cache's, so memory stays bounded for files larger than RAM. Standard input, other
//! non-regular files (pipes, `<(...)`) and zstd-compressed input are read (or decompressed)
//! into a heap buffer instead.
//!
//! The limit of a mapping: a file *shrunk* by another process while it is mapped makes reads
//! past its new end fault (`SIGBUS`), which no check can prevent; a file that *changes size*
//! is reported as an error by [`StreamBytes::check_unchanged`] once the command has read it.
//! A stream file at rest, the common case, is safe.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ramstream_codec::{DecoderOptions, MappedRam};

use crate::DecodeArgs;

/// The bytes of a stream: a read-only mapping of a file, or a heap buffer (standard input,
/// pipes, decompressed `.zst`). Dereferences to `&[u8]`.
pub enum StreamBytes {
    /// A regular file, mapped read-only; the file is kept open to check its size afterwards.
    Mapped {
        /// The mapping, the whole file.
        map: memmap2::Mmap,
        /// The file mapped.
        file: File,
        /// Its path, for messages.
        path: PathBuf,
    },
    /// Bytes read into memory.
    Owned(Vec<u8>),
}

impl Deref for StreamBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StreamBytes::Mapped { map, .. } => map,
            StreamBytes::Owned(v) => v,
        }
    }
}

impl StreamBytes {
    /// Errors when a mapped file's size is no longer the size mapped: another process wrote
    /// to it while it was read, and what was read may mix old and new bytes. Call it after
    /// decoding, before reporting success. Heap buffers always pass.
    pub fn check_unchanged(&self) -> Result<()> {
        if let StreamBytes::Mapped { map, file, path } = self {
            let now = file
                .metadata()
                .with_context(|| format!("cannot stat {}", path.display()))?
                .len();
            if now != map.len() as u64 {
                bail!(
                    "{}: the file changed size while it was read ({} bytes mapped, {} now): \
                     read a copy at rest",
                    path.display(),
                    map.len(),
                    now
                );
            }
        }
        Ok(())
    }
}

/// Reads a stream file: a regular file is mapped ([`StreamBytes::Mapped`]); files ending in
/// `.zst` are zstd-decompressed (into a buffer, from their mapping); `-` is standard input
/// ([`read_stdin`]); other non-regular files (pipes) are read into a buffer.
pub fn read_stream(path: &Path) -> Result<StreamBytes> {
    if is_stdin(path) {
        return read_stdin().map(StreamBytes::Owned);
    }
    let raw = map_or_read(path)?;
    if path.extension().is_some_and(|e| e == "zst") {
        let out = zstd::stream::decode_all(&raw[..])
            .with_context(|| format!("cannot decompress {}", path.display()))?;
        raw.check_unchanged()?;
        Ok(StreamBytes::Owned(out))
    } else {
        Ok(raw)
    }
}

/// Maps `path` when it is a non-empty regular file; reads it otherwise.
fn map_or_read(path: &Path) -> Result<StreamBytes> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_file() || meta.len() == 0 {
        let mut v = Vec::new();
        (&file)
            .read_to_end(&mut v)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(StreamBytes::Owned(v));
    }
    // SAFETY: the mapping is read-only and private; the bytes may change under it only if
    // another process writes the file, and reads past a shrunk end fault (the module's
    // documented limit); a size change is reported by `check_unchanged`.
    let map = unsafe { memmap2::MmapOptions::new().map(&file) }
        .with_context(|| format!("cannot map {}", path.display()))?;
    // A hint only: the decoders read front to back, so read-ahead helps; failure is harmless.
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(StreamBytes::Mapped {
        map,
        file,
        path: path.to_path_buf(),
    })
}

/// Whether `path` names standard input: `-`.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads all of standard input; zstd-compressed input (its magic, `28 b5 2f fd`) is
/// decompressed, as a `.zst` file would be.
pub fn read_stdin() -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut raw)
        .context("cannot read standard input")?;
    if raw.starts_with(&ZSTD_MAGIC) {
        zstd::stream::decode_all(&raw[..]).context("cannot decompress standard input")
    } else {
        Ok(raw)
    }
}

/// The first bytes of a zstd frame (RFC 8878 §3.1.1). A migration stream starts with `QEVM`.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The decoder options for reading a stream *file*: those of `decode`, and mapped-ram files
/// (QEMU `migrate file:` with capability `mapped-ram`) are read, their pages taken from the
/// file regions the MEM_SIZE headers point at (SPEC.md §7.9). Commands reading a socket keep
/// `DecodeArgs::options`, which refuses mapped-ram.
pub fn file_options(decode: &DecodeArgs) -> DecoderOptions {
    decode.options().with_mapped_ram(MappedRam::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_mapped_and_one_that_grew_since_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grows.bin");
        std::fs::write(&path, b"QEVM\0\0\0\x03").unwrap();
        let s = read_stream(&path).unwrap();
        assert!(matches!(s, StreamBytes::Mapped { .. }));
        assert_eq!(&s[..], b"QEVM\0\0\0\x03");
        s.check_unchanged().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"more").unwrap();
        let e = format!("{:#}", s.check_unchanged().unwrap_err());
        assert!(e.contains("grows.bin") && e.contains("changed size"), "{e}");
        assert!(e.contains("8 bytes mapped, 12 now"), "{e}");
    }

    #[test]
    fn an_empty_file_is_read_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.bin");
        std::fs::write(&path, b"").unwrap();
        let s = read_stream(&path).unwrap();
        assert!(matches!(&s, StreamBytes::Owned(v) if v.is_empty()));
        s.check_unchanged().unwrap();
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.bin");
        let e = format!("{:#}", read_stream(&path).err().unwrap());
        assert!(e.contains("cannot read") && e.contains("absent.bin"), "{e}");
    }
}
