//! Which end of a migration a set of credentials is for.

use std::fmt;

/// Which end of the migration a set of credentials is for: QEMU's `endpoint=` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The destination, which listens: reads `server-cert.pem`, `server-key.pem`,
    /// `ca-cert.pem` and, if present, `ca-crl.pem`.
    Server,
    /// The source, which connects: reads `ca-cert.pem` and, if present, `client-cert.pem`
    /// and `client-key.pem`.
    Client,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Server => "server",
            Endpoint::Client => "client",
        })
    }
}
