//! Reading a stream file, decompressing `.zst`.

use std::path::Path;

use anyhow::{Context, Result};

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
