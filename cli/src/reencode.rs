//! `ramstream reencode`: decode a stream and encode it again.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ramstream_codec::transcode::Mode;

use crate::input::{file_options, read_stream};
use crate::DecodeArgs;

/// `ramstream reencode`'s arguments.
#[derive(Args, Debug)]
pub struct ReencodeArgs {
    /// The input stream (`.zst`: decompressed); `-` reads standard input.
    pub input: PathBuf,
    /// The output stream; `-` writes standard output.
    pub output: PathBuf,
    /// Re-derive every XBZRLE record with ramstream's encoder.
    #[arg(long, conflicts_with = "from_ram")]
    pub recompute_xbzrle: bool,
    /// Write a fresh single-pass `ram` section from the final RAM (ZERO for zero pages,
    /// PAGE otherwise), device sections verbatim.
    #[arg(long)]
    pub from_ram: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// `ramstream reencode`.
pub fn run(a: &ReencodeArgs) -> Result<()> {
    let (input, output, decode) = (&a.input, &a.output, &a.decode);
    let mode = if a.from_ram {
        Mode::FromRam
    } else if a.recompute_xbzrle {
        Mode::RecomputeXbzrle
    } else {
        Mode::Verbatim
    };
    let bytes = read_stream(input)?;
    let bar = crate::progress::Bytes::new("re-encoding", None, false);
    // A mapped-ram file converts with --from-ram into an ordinary stream (SPEC.md §7.9).
    let out = ramstream_codec::transcode::reencode(&bytes, mode, &file_options(decode))
        .with_context(|| format!("{}", input.display()))
        .map_err(|e| crate::failure::retry_dialects(e, &bytes, decode))?;
    drop(bar);
    bytes.check_unchanged()?;
    if crate::input::is_stdin(output) {
        std::io::stdout()
            .write_all(&out)
            .context("cannot write standard output")?;
    } else {
        let tmp = output.with_extension("partial");
        std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, output)?;
    }
    eprintln!(
        "wrote {} bytes to {} ({} bytes in)",
        out.len(),
        output.display(),
        bytes.len()
    );
    Ok(())
}
