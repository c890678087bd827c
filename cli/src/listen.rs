//! The options of a listening end (`receive --listen`, `proxy --listen`): TLS and the idle
//! timeout, and binding a listener with them.
//!
//! What one accepted connection may hold in memory is bounded by the reader, not the peer:
//! the decoder's stream buffer (`receive --buffer-size`, `StreamBuffer::for_limits`), and
//! with TLS one record being decrypted plus 16 KiB of plaintext and one socket read of
//! ciphertext (`ramstream_tls::SharedTlsStream`).

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::addr::{Addr, Listener};
use crate::idle::DEFAULT_IDLE_TIMEOUT_SECS;
use crate::tls::TlsArgs;

/// TLS and the idle timeout of a listening end.
#[derive(Args, Debug, Clone)]
pub struct ListenOptions {
    /// Drop (and fail the migration of) a connected peer that sends nothing for SECS
    /// seconds; 0 waits forever.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ListenOptions {
    /// The idle timeout, `None` for 0.
    pub fn idle(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }

    /// Binds `addr` (see [`Listener::bind`]) with these options. The credentials are loaded
    /// first, so that a bad `--tls-creds` fails before anything listens.
    pub fn bind(&self, addr: &Addr) -> Result<Listener> {
        let acceptor = self.tls.server()?;
        if acceptor.is_some() {
            addr.require_tcp_for_tls()?;
        }
        Ok(Listener::bind(addr)?
            .with_tls(acceptor)?
            .with_idle_timeout(self.idle()))
    }
}
