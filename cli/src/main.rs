//! `ramstream`: inspect, extract and re-encode QEMU migration streams; send, receive and
//! demo a live migration.

// One file per subcommand: its arguments and its `run`.
mod bench_migrate;
mod demo;
mod extract;
mod inspect;
mod pages;
mod proxy;
mod receive;
mod reencode;
mod send;

// What the subcommands share.
mod addr;
mod connect;
mod duplex;
mod failure;
mod guest;
mod hex_dump;
mod idle;
mod input;
mod inspect_devices;
mod inspect_vmdesc;
mod listen;
mod map;
mod map_classes;
mod multifd;
mod page_writes;
mod policy;
mod progress;
mod side_channels;
mod size;
mod timeline;
mod tls;

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
        let mut o = ramstream_codec::DecoderOptions::default().with_dialect(self.dialect);
        if self.strict_zero_fill {
            o.zero_fill = ramstream_codec::ZeroFill::RejectNonZero;
        }
        o
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Summarise a stream file (`.zst` files are decompressed).
    Inspect(inspect::InspectArgs),
    /// Rebuild every RAM block and write one raw (sparse) image per block plus manifest.json.
    Extract(extract::ExtractArgs),
    /// Show the records that wrote some pages of one RAM block and hex-dump the pages.
    Pages(pages::PagesArgs),
    /// Decode a stream and encode it again.
    Reencode(reencode::ReencodeArgs),
    /// Sit between a QEMU source and a QEMU destination, decoding the stream as it passes.
    Proxy(proxy::ProxyArgs),
    /// Start a reference KVM guest and live-migrate it to tcp:HOST:PORT, unix:PATH or file:PATH.
    Send(send::SendArgs),
    /// Receive one migration stream: into a reference KVM guest, checked and resumed; or,
    /// with --extract, as a QEMU destination that rebuilds every RAM block and keeps the
    /// device state verbatim.
    Receive(receive::ReceiveArgs),
    /// Live-migrate a running KVM guest on this machine and prove it arrived intact.
    Demo(demo::DemoArgs),
    /// Benchmark: migrate the guest with 0 %, 50 % and 90 % ballooned (or only
    /// --balloon-percent), with and without the balloon map.
    BenchMigrate(bench_migrate::BenchMigrateArgs),
}

impl Command {
    /// Whether the command prints JSON (`--json`): then its error is a JSON object too.
    fn json(&self) -> bool {
        match self {
            Command::Inspect(a) => a.json,
            Command::Proxy(a) => a.json,
            Command::Send(a) => a.json,
            Command::Receive(a) => a.json,
            Command::Demo(a) => a.json,
            Command::BenchMigrate(a) => a.json,
            Command::Pages(a) => a.json,
            Command::Extract(_) | Command::Reencode(_) => false,
        }
    }

    /// The dialect the command decodes with, if it decodes.
    fn dialect(&self) -> Option<Dialect> {
        match self {
            Command::Inspect(a) => Some(a.decode.dialect),
            Command::Extract(a) => Some(a.decode.dialect),
            Command::Reencode(a) => Some(a.decode.dialect),
            Command::Pages(a) => Some(a.decode.dialect),
            Command::Proxy(a) => Some(a.decode.dialect),
            Command::Receive(a) => Some(a.decode.dialect),
            Command::Send(_) | Command::Demo(_) | Command::BenchMigrate(_) => None,
        }
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Pages(a) => pages::run(a),
        Command::Reencode(a) => reencode::run(a),
        Command::Proxy(a) => proxy::run(a),
        Command::Send(a) => send::run(a),
        Command::Receive(a) => receive::run(a),
        Command::Demo(a) => demo::run(a),
        Command::BenchMigrate(a) => bench_migrate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let f = failure::Failure::of(&e, cli.command.dialect());
            // A command that printed its own JSON object for the error marked it `Reported`.
            if cli.command.json() && e.downcast_ref::<failure::Reported>().is_none() {
                println!("{}", f.to_json());
            }
            eprintln!("ramstream: error: {f}");
            ExitCode::FAILURE
        }
    }
}

/// Restores the default action of SIGPIPE, which the Rust runtime sets to "ignore": a reader
/// that closes the pipe early (`ramstream pages … | head`) then ends the command quietly, as
/// it ends `cat`, instead of every print failing with EPIPE and panicking.
fn restore_sigpipe() {
    // SAFETY: `signal` with `SIG_DFL` installs no handler of ours; it runs first in `main`,
    // before any thread is spawned, and only changes what a write to a closed pipe does.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
