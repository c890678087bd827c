//! Reading a stream file, decompressing `.zst`.

use std::path::Path;

use anyhow::{Context, Result};
use ramstream_codec::{DecoderOptions, MappedRam};

use crate::DecodeArgs;

/// Reads the whole stream file; files ending in `.zst` are zstd-decompressed.
pub fn read_stream(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "zst") {
        zstd::stream::decode_all(&raw[..])
            .with_context(|| format!("cannot decompress {}", path.display()))
    } else {
        Ok(raw)
    }
}

/// The decoder options for reading a stream *file*: those of `decode`, and mapped-ram files
/// (QEMU `migrate file:` with capability `mapped-ram`) are read, their pages taken from the
/// file regions the MEM_SIZE headers point at (SPEC.md §7.9). Commands reading a socket keep
/// `DecodeArgs::options`, which refuses mapped-ram.
pub fn file_options(decode: &DecodeArgs) -> DecoderOptions {
    DecoderOptions {
        mapped_ram: MappedRam::Read,
        ..decode.options()
    }
}
