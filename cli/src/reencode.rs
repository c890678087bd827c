//! `ramstream reencode`: decode a stream and encode it again.

use std::path::Path;

use anyhow::{Context, Result};
pub use ramstream_codec::transcode::Mode;

use crate::input::read_stream;
use crate::DecodeArgs;

pub fn run(input: &Path, output: &Path, mode: Mode, decode: &DecodeArgs) -> Result<()> {
    let bytes = read_stream(input)?;
    let out = ramstream_codec::transcode::reencode(&bytes, mode, &decode.options())
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
