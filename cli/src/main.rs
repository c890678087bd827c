//! `ramstream`: inspect, extract and re-encode QEMU migration streams; send, receive and
//! demo a live migration.

mod demo;
mod extract;
mod input;
mod inspect;
mod receive;
mod reencode;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ramstream_spec::Dialect;

/// Read, write and live-migrate guest memory in QEMU's migration stream format.
#[derive(Parser, Debug)]
#[command(name = "ramstream", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Decoder settings shared by the commands that read a stream.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// What flag 0x200 means: qemu-7.2 (error), qemu-8.1+ (MULTIFD_FLUSH), kolhe-2016,
    /// ramstream-balloon-v1.
    #[arg(long, default_value = "qemu-7.2")]
    pub dialect: Dialect,
    /// Reject ZERO records with a non-zero fill byte, as QEMU 8.2+ does.
    #[arg(long)]
    pub strict_zero_fill: bool,
}

impl DecodeArgs {
    /// The decoder options these arguments select.
    pub fn options(&self) -> ramstream_codec::DecoderOptions {
        let mut o = ramstream_codec::DecoderOptions::with_dialect(self.dialect);
        if self.strict_zero_fill {
            o.zero_fill = ramstream_codec::ZeroFill::RejectNonZero;
        }
        o
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Summarise a stream file (`.zst` files are decompressed).
    Inspect {
        /// The stream file.
        file: PathBuf,
        /// Print one JSON object instead of the human summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// Rebuild every RAM block and write one raw (sparse) image per block plus manifest.json.
    Extract {
        /// The stream file.
        file: PathBuf,
        /// The output directory (created; must be empty or absent).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// Decode a stream and encode it again.
    Reencode {
        /// The input stream.
        input: PathBuf,
        /// The output stream.
        output: PathBuf,
        /// Re-derive every XBZRLE record with ramstream's encoder.
        #[arg(long, conflicts_with = "from_ram")]
        recompute_xbzrle: bool,
        /// Write a fresh single-pass `ram` section from the final RAM (ZERO for zero pages,
        /// PAGE otherwise), device sections verbatim.
        #[arg(long)]
        from_ram: bool,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// Start a reference KVM guest and live-migrate it to tcp:HOST:PORT, unix:PATH or file:PATH.
    Send {
        /// Where to send the stream.
        to: String,
        #[command(flatten)]
        guest: send::GuestArgs,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Receive one migration stream into a reference KVM guest, check it and resume it.
    Receive {
        /// tcp:HOST:PORT (port 0 picks one; the bound address is printed), unix:PATH or file:PATH.
        #[arg(long)]
        listen: String,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Read buffer size in bytes (bounds the receiver's stream memory).
        #[arg(long, default_value_t = 1 << 20)]
        buffer_size: usize,
    },
    /// Live-migrate a running KVM guest on this machine and prove it arrived intact.
    Demo {
        #[command(flatten)]
        guest: send::GuestArgs,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: migrate the guest with 0 %, 50 % and 90 % ballooned, with and without the
    /// balloon map (`--balloon-percent` is ignored).
    BenchMigrate {
        #[command(flatten)]
        guest: send::GuestArgs,
        /// Print JSON instead of a Markdown table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { file, json, decode } => inspect::run(&file, json, &decode),
        Command::Extract { file, out, decode } => extract::run(&file, &out, &decode),
        Command::Reencode {
            input,
            output,
            recompute_xbzrle,
            from_ram,
            decode,
        } => {
            let mode = if from_ram {
                reencode::Mode::FromRam
            } else if recompute_xbzrle {
                reencode::Mode::RecomputeXbzrle
            } else {
                reencode::Mode::Verbatim
            };
            reencode::run(&input, &output, mode, &decode)
        }
        Command::Send { to, guest, json } => send::run(&to, &guest, json),
        Command::Receive {
            listen,
            json,
            buffer_size,
        } => receive::run(&listen, json, buffer_size),
        Command::Demo { guest, json } => demo::run(&guest, json),
        Command::BenchMigrate { guest, json } => demo::bench(&guest, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ramstream: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
