//! QEMU's `tls-creds-x509` directory layout, loaded for one endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

pub use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::provider;
use crate::validity;

/// The CA certificate(s) both endpoints verify their peer against (required).
pub const CA_CERT: &str = "ca-cert.pem";
/// Certificate revocation list of the CA (optional, server endpoint only, as in QEMU).
pub const CA_CRL: &str = "ca-crl.pem";
/// The server's certificate, or chain leaf first (required for a server endpoint).
pub const SERVER_CERT: &str = "server-cert.pem";
/// The server's private key (required for a server endpoint).
pub const SERVER_KEY: &str = "server-key.pem";
/// The client's certificate, or chain leaf first (optional for a client endpoint: without
/// it the client presents none, and a destination with `verify-peer` refuses it).
pub const CLIENT_CERT: &str = "client-cert.pem";
/// The client's private key (optional, with [`CLIENT_CERT`]).
pub const CLIENT_KEY: &str = "client-key.pem";
/// Finite-field Diffie-Hellman parameters of a QEMU server endpoint. Not read: rustls uses
/// ECDHE only, which QEMU's default GnuTLS priority `NORMAL` also offers and prefers.
pub const DH_PARAMS: &str = "dh-params.pem";

/// Credentials read from a directory laid out as QEMU's `tls-creds-x509` object expects,
/// for one [`Endpoint`]. One directory holding all the files serves both endpoints.
///
/// [`Credentials::load`] checks what QEMU's `sanity-check=on` (its default) checks that
/// matters before a handshake: every certificate read is within its validity period.
/// [`Credentials::load_unchecked`] skips that, as `sanity-check=off` does.
///
/// `verify_peer` is QEMU's `verify-peer` property, on by default: a server then requires a
/// client certificate issued by the CA, and a client checks the server's certificate and
/// name. Off, nothing about the peer's certificate is checked (and an authorisation list
/// cannot be used).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Whether the peer's certificate is verified (QEMU's `verify-peer`, default `true`).
    pub verify_peer: bool,
    dir: PathBuf,
    endpoint: Endpoint,
    ca: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    own: Option<Arc<CertifiedKey>>,
    own_dn: Option<String>,
}

impl Credentials {
    /// Reads the files `endpoint` needs from `dir` and checks that every certificate is
    /// within its validity period.
    ///
    /// ```
    /// use ramstream_tls::{Credentials, Endpoint, Error};
    /// let dir = tempfile::tempdir().unwrap();
    /// match Credentials::load(dir.path(), Endpoint::Server) {
    ///     Err(Error::ReadFile { file, .. }) => assert!(file.ends_with("ca-cert.pem")),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn load(dir: impl AsRef<Path>, endpoint: Endpoint) -> Result<Credentials, Error> {
        Credentials::read(dir.as_ref(), endpoint, true)
    }

    /// As [`Credentials::load`] without the validity checks (QEMU's `sanity-check=off`):
    /// an expired certificate of ours is then presented and refused by the peer.
    pub fn load_unchecked(dir: impl AsRef<Path>, endpoint: Endpoint) -> Result<Credentials, Error> {
        Credentials::read(dir.as_ref(), endpoint, false)
    }

    fn read(dir: &Path, endpoint: Endpoint, sanity_check: bool) -> Result<Credentials, Error> {
        let ca_file = dir.join(CA_CERT);
        let ca = read_certificates(&ca_file)?;
        let crls = match endpoint {
            Endpoint::Server => read_crls_if_present(&dir.join(CA_CRL))?,
            Endpoint::Client => Vec::new(),
        };
        let (cert_name, key_name) = match endpoint {
            Endpoint::Server => (SERVER_CERT, SERVER_KEY),
            Endpoint::Client => (CLIENT_CERT, CLIENT_KEY),
        };
        let (cert_file, key_file) = (dir.join(cert_name), dir.join(key_name));
        let required = endpoint == Endpoint::Server || cert_file.exists() || key_file.exists();
        let mut own = None;
        let mut own_dn = None;
        if required {
            let chain = read_certificates(&cert_file)?;
            let key = read_key(&key_file)?;
            if sanity_check {
                for cert in &chain {
                    validity::check_own(&cert_file, cert)?;
                }
            }
            own_dn = crate::dn::subject(&chain[0]);
            let certified =
                CertifiedKey::from_der(chain, key, &provider::provider()).map_err(|e| {
                    let detail = match e {
                        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                            format!("{key_name} is not the private key of {cert_name}")
                        }
                        e => format!("{key_name} cannot sign for {cert_name}: {e}"),
                    };
                    Error::Config {
                        dir: dir.to_path_buf(),
                        detail,
                    }
                })?;
            own = Some(Arc::new(certified));
        }
        if sanity_check {
            for cert in &ca {
                validity::check_own(&ca_file, cert)?;
            }
        }
        Ok(Credentials {
            verify_peer: true,
            dir: dir.to_path_buf(),
            endpoint,
            ca,
            crls,
            own,
            own_dn,
        })
    }

    /// The directory the files were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The endpoint they were read for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The subject DN of our own certificate in QEMU's format (what a QEMU destination's
    /// `authz-simple` identity must say for this client); `None` for a client without one.
    pub fn own_dn(&self) -> Option<&str> {
        self.own_dn.as_deref()
    }

    pub(crate) fn ca(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    pub(crate) fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    pub(crate) fn own(&self) -> Option<&Arc<CertifiedKey>> {
        self.own.as_ref()
    }
}

fn read(file: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(file).map_err(|source| Error::ReadFile {
        file: file.to_path_buf(),
        source,
    })
}

fn bad(file: &Path, detail: impl Into<String>) -> Error {
    Error::BadFile {
        file: file.to_path_buf(),
        detail: detail.into(),
    }
}

/// Every `CERTIFICATE` of a PEM file, in order; at least one.
fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(file, format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(file, "holds no PEM CERTIFICATE"));
    }
    for cert in &certs {
        if crate::dn::subject(cert).is_none() {
            return Err(bad(
                file,
                "holds a CERTIFICATE that is not an X.509 certificate",
            ));
        }
    }
    Ok(certs)
}

fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read(file)?;
    if pem.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(bad(
            file,
            "the private key is encrypted (QEMU's passwordid): decrypt it first",
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        bad(
            file,
            format!("holds no PKCS#8, PKCS#1 or SEC1 PEM private key: {e}"),
        )
    })
}

fn read_crls_if_present(file: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    if !file.exists() {
        return Ok(Vec::new());
    }
    let pem = read(file)?;
    CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(file, format!("not a PEM file: {e}")))
}
