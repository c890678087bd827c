//! `ramstream`: inspect, extract and re-encode QEMU migration streams; send, receive and
//! demo a live migration.

mod demo;
mod extract;
mod input;
mod inspect;
mod qemu;
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
    /// What flag 0x200 means: qemu (any QEMU 7.2 to 11.1: MULTIFD_FLUSH, the default, right
    /// for every stream real QEMU writes), qemu-7.2 / qemu-8.1+ (only what a 7.2 / 8.1-9.2
    /// destination loads), or an out-of-tree balloon dialect: kolhe-2016, ramstream-balloon-v1.
    #[arg(long, default_value = "qemu")]
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
    /// Sit between a QEMU source and a QEMU destination, decoding the stream as it passes.
    Proxy {
        /// Where the source connects: tcp:HOST:PORT or unix:PATH. Port 0 picks a free port.
        /// Once bound, `ramstream: listening on ADDRESS` is printed on stderr with the address
        /// actually bound (e.g. tcp:127.0.0.1:43817).
        #[arg(long)]
        listen: qemu::addr::Addr,
        /// The destination QEMU's -incoming address.
        #[arg(long)]
        forward: qemu::addr::Addr,
        /// Record the source's stream to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Forward ramstream's own encoding (ZERO detection, XBZRLE against the pages the
        /// destination holds) instead of QEMU's bytes.
        #[arg(long)]
        reencode: bool,
        /// Print the final report as JSON on stdout.
        #[arg(long)]
        json: bool,
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
    /// Receive one migration stream: into a reference KVM guest, checked and resumed; or,
    /// with --extract, as a QEMU destination that rebuilds every RAM block and keeps the
    /// device state verbatim.
    Receive {
        /// tcp:HOST:PORT, unix:PATH or file:PATH. Port 0 picks a free port. Once a socket is
        /// bound, `ramstream: listening on ADDRESS` is printed on stderr with the address
        /// actually bound (e.g. tcp:127.0.0.1:43817), before the source connects.
        #[arg(long)]
        listen: String,
        /// QEMU mode: write the RAM images, device sections and manifest.json into this
        /// directory instead of resuming a guest.
        #[arg(long)]
        extract: Option<PathBuf>,
        /// QEMU mode: also save the raw stream to this file.
        #[arg(long, requires = "extract")]
        save_stream: Option<PathBuf>,
        /// QEMU mode: accept machine types the conformance vectors do not cover.
        #[arg(long, requires = "extract")]
        allow_untested_machine: bool,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Read buffer size in bytes (bounds the receiver's stream memory).
        #[arg(long, default_value_t = 1 << 20)]
        buffer_size: usize,
        #[command(flatten)]
        decode: DecodeArgs,
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
        /// Runs per configuration; the median (by total time) is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
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
        Command::Proxy {
            listen,
            forward,
            record,
            reencode,
            json,
            decode,
        } => qemu::proxy::run(&listen, &forward, record.as_ref(), reencode, json, &decode),
        Command::Send { to, guest, json } => send::run(&to, &guest, json),
        Command::Receive {
            listen,
            extract: Some(dir),
            save_stream,
            allow_untested_machine,
            decode,
            ..
        } => listen
            .parse::<qemu::addr::Addr>()
            .map_err(anyhow::Error::msg)
            .and_then(|addr| {
                qemu::receive::run(
                    &addr,
                    &dir,
                    save_stream.as_ref(),
                    allow_untested_machine,
                    &decode,
                )
            }),
        Command::Receive {
            listen,
            json,
            buffer_size,
            ..
        } => receive::run(&listen, json, buffer_size),
        Command::Demo { guest, json } => demo::run(&guest, json),
        Command::BenchMigrate {
            guest,
            json,
            repeat,
        } => demo::bench(&guest, json, repeat),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ramstream: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
