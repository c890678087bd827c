//! Reading a stream file, decompressing `.zst`; `-` reads standard input.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use ramstream_codec::{DecoderOptions, MappedRam};

use crate::DecodeArgs;

/// Reads the whole stream file; files ending in `.zst` are zstd-decompressed; `-` is
/// standard input ([`read_stdin`]).
pub fn read_stream(path: &Path) -> Result<Vec<u8>> {
    if is_stdin(path) {
        return read_stdin();
    }
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "zst") {
        zstd::stream::decode_all(&raw[..])
            .with_context(|| format!("cannot decompress {}", path.display()))
    } else {
        Ok(raw)
    }
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
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The decoder options for reading a stream *file*: those of `decode`, and mapped-ram files
/// (QEMU `migrate file:` with capability `mapped-ram`) are read, their pages taken from the
/// file regions the MEM_SIZE headers point at (SPEC.md §7.9). Commands reading a socket keep
/// `DecodeArgs::options`, which refuses mapped-ram.
pub fn file_options(decode: &DecodeArgs) -> DecoderOptions {
    decode.options().with_mapped_ram(MappedRam::Read)
}
