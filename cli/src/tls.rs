//! TLS on ramstream's connections (issue #16), as QEMU's `tls-creds-x509`, `tls-hostname`
//! and `tls-authz` do it: the options, the server and client ends they build, and the
//! session as a [`Duplex`] so that receive, proxy and send use it like a socket.
//!
//! One `--tls-creds DIR` serves both ends (QEMU's layout: `ca-cert.pem`, `server-cert.pem`,
//! `server-key.pem`, `client-cert.pem`, `client-key.pem`). A listener (`receive --listen`,
//! `proxy --listen`) is the TLS server of every connection it accepts, multifd channels
//! included; a connecting end (`send`, `proxy --forward`) is the client of every connection
//! it opens. TLS runs over `tcp:` only: a `unix:` address with TLS is refused by name.

use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ramstream_tls::{Acceptor, Authz, Connector, Credentials, Endpoint, SharedTlsStream};

use crate::duplex::Duplex;

/// The TLS options of `receive`, `proxy` and `send`.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Speak TLS on every connection (the main stream and each multifd channel), with the
    /// x509 credentials in DIR, laid out as QEMU's `-object tls-creds-x509,dir=DIR`:
    /// ca-cert.pem, and server-cert.pem + server-key.pem (to listen) and/or client-cert.pem
    /// + client-key.pem (to connect). The peer's certificate must chain to ca-cert.pem.
    #[arg(long, value_name = "DIR")]
    pub tls_creds: Option<PathBuf>,
    /// Connecting end (send, proxy --forward): the name the destination's certificate must
    /// be valid for (QEMU's tls-hostname); default the host of the address.
    #[arg(long, value_name = "NAME", requires = "tls_creds")]
    pub tls_hostname: Option<String>,
    /// Listening end (receive, proxy --listen): allow a source whose client certificate has
    /// this DN, in QEMU's form, e.g. "O=Example,CN=source.example" (QEMU's authz-simple
    /// identity). Repeatable; with any --tls-authz or --tls-authz-file, every other DN is
    /// refused.
    #[arg(long, value_name = "DN", requires = "tls_creds")]
    pub tls_authz: Vec<String>,
    /// Listening end: allow the DNs listed in FILE, one per line (blank lines and lines
    /// starting with # are skipped).
    #[arg(long, value_name = "FILE", requires = "tls_creds")]
    pub tls_authz_file: Option<PathBuf>,
    /// Do not check the peer's certificate (QEMU's verify-peer=off): the connection is
    /// encrypted but anyone can be at the other end. Not with --tls-authz.
    #[arg(long, requires = "tls_creds")]
    pub tls_no_verify_peer: bool,
    /// Listening end: how long a connecting peer may take to complete the TLS handshake.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        requires = "tls_creds"
    )]
    pub tls_handshake_timeout: u64,
}

/// The client end of TLS: the connector and the name to check the server against.
#[derive(Clone, Debug)]
pub struct ClientTls {
    connector: Connector,
    hostname: Option<String>,
}

impl TlsArgs {
    fn credentials(&self, dir: &Path, endpoint: Endpoint) -> Result<Credentials> {
        let mut c = Credentials::load(dir, endpoint)
            .with_context(|| format!("--tls-creds {}", dir.display()))?;
        c.verify_peer = !self.tls_no_verify_peer;
        Ok(c)
    }

    /// Refuses the options only a listening end uses (`command` connects).
    pub fn refuse_listening_options(&self, command: &str) -> Result<()> {
        if !self.tls_authz.is_empty() || self.tls_authz_file.is_some() {
            bail!("{command} connects: --tls-authz and --tls-authz-file are for a listening end (receive, proxy)");
        }
        Ok(())
    }

    /// Refuses the options only a connecting end uses (`command` listens).
    pub fn refuse_connecting_options(&self, command: &str) -> Result<()> {
        if self.tls_hostname.is_some() {
            bail!(
                "{command} listens: --tls-hostname is for a connecting end (send, proxy --forward)"
            );
        }
        Ok(())
    }

    /// The server end for a listener, `None` without `--tls-creds`.
    pub fn server(&self) -> Result<Option<Acceptor>> {
        let Some(dir) = &self.tls_creds else {
            return Ok(None);
        };
        let creds = self.credentials(dir, Endpoint::Server)?;
        let mut acceptor = Acceptor::new(&creds)
            .with_context(|| format!("--tls-creds {}", dir.display()))?
            .with_handshake_timeout(Duration::from_secs(self.tls_handshake_timeout));
        let mut dns = self.tls_authz.clone();
        if let Some(f) = &self.tls_authz_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--tls-authz-file {}", f.display()))?;
            dns.extend(read_authz_lines(&text));
            if dns.is_empty() {
                bail!(
                    "--tls-authz-file {}: lists no DN; every source would be refused",
                    f.display()
                );
            }
        }
        if !dns.is_empty() {
            acceptor = acceptor
                .with_authz(Authz::from_identities(dns))
                .context("--tls-authz")?;
        }
        Ok(Some(acceptor))
    }

    /// The client end for connections, `None` without `--tls-creds`.
    pub fn client(&self) -> Result<Option<ClientTls>> {
        let Some(dir) = &self.tls_creds else {
            return Ok(None);
        };
        let creds = self.credentials(dir, Endpoint::Client)?;
        let connector =
            Connector::new(&creds).with_context(|| format!("--tls-creds {}", dir.display()))?;
        Ok(Some(ClientTls {
            connector,
            hostname: self.tls_hostname.clone(),
        }))
    }
}

/// The DNs of an authorisation file: one a line, blank lines and `#` comments skipped.
fn read_authz_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

impl ClientTls {
    /// Runs the client handshake on `tcp`, connected to `host` (as written in the address
    /// `to`): the server's certificate must be valid for `--tls-hostname`, or else for
    /// `host` (an IPv6 address without its brackets).
    pub fn connect(
        &self,
        tcp: std::net::TcpStream,
        host: &str,
        to: &dyn std::fmt::Display,
    ) -> Result<Box<dyn Duplex>> {
        let name = match &self.hostname {
            Some(n) => n.clone(),
            None => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        };
        let tls = self
            .connector
            .connect(tcp, &name)
            .with_context(|| format!("TLS to {to}"))?;
        Ok(Box::new(tls.into_shared()?))
    }
}

/// Runs the server handshake on a freshly accepted connection from `peer`, and logs the
/// session on stderr.
pub fn accept(
    acceptor: &Acceptor,
    tcp: std::net::TcpStream,
    peer: &str,
) -> Result<Box<dyn Duplex>> {
    let tls = acceptor
        .accept(tcp)
        .with_context(|| format!("refused the connection from {peer}"))?;
    eprintln!(
        "TLS from {peer}: {}, client certificate {}",
        tls.negotiated(),
        tls.peer_dn()
            .map_or("none".to_string(), |d| format!("\"{d}\""))
    );
    Ok(Box::new(tls.into_shared()?))
}

impl Duplex for SharedTlsStream {
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(self.clone()))
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown_socket(Shutdown::Both);
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown();
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
        Ok(SharedTlsStream::set_read_timeout(self, t)?)
    }
}

#[cfg(test)]
mod tests {
    use super::read_authz_lines;

    #[test]
    fn an_authz_file_holds_one_dn_a_line() {
        assert_eq!(
            read_authz_lines("# sources\nO=Example,CN=a\n\n  O=Example,CN=b  \n"),
            ["O=Example,CN=a", "O=Example,CN=b"]
        );
    }
}
