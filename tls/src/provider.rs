//! The crypto provider and protocol versions every session uses.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;

/// rustls with *ring*: its default cipher suites (AES-GCM and ChaCha20-Poly1305) and key
/// exchange groups (X25519, P-256, P-384), all of which GnuTLS's `NORMAL` priority, QEMU's
/// default (`CONFIG_TLS_PRIORITY`), offers.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// TLS 1.3 and 1.2: GnuTLS 3.6+ (every QEMU we test links 3.7 or 3.8) negotiates 1.3; 1.2 is
/// kept for older GnuTLS builds.
pub(crate) const VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
