//! `ramstream reencode`: decode a stream and encode it again.

use std::path::Path;

use anyhow::{Context, Result};
pub use ramstream_codec::transcode::Mode;

use crate::input::{file_options, read_stream};
use crate::DecodeArgs;

pub fn run(input: &Path, output: &Path, mode: Mode, decode: &DecodeArgs) -> Result<()> {
    let bytes = read_stream(input)?;
    // A mapped-ram file converts with --from-ram into an ordinary stream (SPEC.md §7.9).
    let out = ramstream_codec::transcode::reencode(&bytes, mode, &file_options(decode))
        .with_context(|| format!("{}", input.display()))?;
    let tmp = output.with_extension("partial");
    std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output)?;
    eprintln!(
        "wrote {} bytes to {} ({} bytes in)",
        out.len(),
        output.display(),
        bytes.len()
    );
    Ok(())
}
