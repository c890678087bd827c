//! Every refusal, one test each, with its message: plaintext at a TLS listener, a client
//! certificate from another CA, none at all, an expired or not yet valid client
//! certificate, a revoked one, an expired server certificate, a DN not in the authorisation
//! list, a wrong server name, a stalled handshake on either side; and the credential
//! errors found before any connection.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ramstream_tls::{
    Acceptor, Authz, Connector, Credentials, Endpoint, Error, Plaintext, Role, TlsStream,
};
use support::{accept_one, connect, dn_of, listener, write_dir, Ca, Valid};

/// Runs `acceptor` against a connector with `client` credentials checking `name`; returns
/// the server's result, the client's, and the client's address.
fn handshake(
    acceptor: Acceptor,
    client: &Credentials,
    name: &str,
) -> (
    Result<TlsStream, Error>,
    Result<TlsStream, Error>,
    SocketAddr,
) {
    let (l, addr) = listener();
    let server = accept_one(l, acceptor);
    let client = Connector::new(client).unwrap().connect(connect(addr), name);
    let (server, from) = server.join().unwrap();
    (server, client, from)
}

fn server_creds(dir: &Path) -> Credentials {
    Credentials::load(dir, Endpoint::Server).unwrap()
}

/// The client's view of a refusal the server made after the client's side of a TLS 1.3
/// handshake was complete: the alert, on the first read.
fn first_read_error(client: Result<TlsStream, Error>) -> String {
    let mut tls = client.expect("the client's side of the handshake completes in TLS 1.3");
    let _ = tls.write_all(b"QEVM");
    tls.read(&mut [0u8; 16]).unwrap_err().to_string()
}

/// A server with a valid CA, server certificate and the given client certificate, all in
/// one directory (the client's CA file is the server's CA unless `client_ca` differs).
fn pair(client_cert: impl FnOnce(&Ca) -> support::Issued) -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ramstream test CA");
    let server = ca.server("destination", Valid::Now);
    let client = client_cert(&ca);
    write_dir(dir.path(), &ca, Some(&server), Some(&client));
    (dir, ca)
}

#[test]
fn plaintext_qemu_stream_at_a_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    support::shared_dir(dir.path());
    let (l, addr) = listener();
    let server = accept_one(l, Acceptor::new(&server_creds(dir.path())).unwrap());
    let mut tcp = connect(addr);
    // What a QEMU source without tls-creds sends first: the file magic and version 3.
    tcp.write_all(b"QEVM\0\0\0\x03").unwrap();
    let (result, from) = server.join().unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Plaintext {
                what: Plaintext::QemuStream,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {from}: the peer sent a plaintext QEMU migration stream (file magic \"QEVM\"); is the source's migration parameter tls-creds set?"
        )
    );
}

#[test]
fn plaintext_multifd_channel_and_other_bytes_at_a_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    support::shared_dir(dir.path());
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    for (bytes, what) in [
        (
            &[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1][..],
            "a plaintext multifd channel (magic 0x11223344)",
        ),
        (
            &b"GET / HTTP/1.1\r\n"[..],
            "bytes 47 45 54 20, not a TLS handshake record",
        ),
    ] {
        let (l, addr) = listener();
        let server = accept_one(l, acceptor.clone());
        let mut tcp = connect(addr);
        tcp.write_all(bytes).unwrap();
        let (result, from) = server.join().unwrap();
        assert_eq!(
            result.unwrap_err().to_string(),
            format!(
                "TLS handshake with {from}: the peer sent {what}; is the source's migration parameter tls-creds set?"
            )
        );
    }
}

#[test]
fn client_certificate_from_another_ca() {
    let (dir, _) = pair(|_| Ca::new("some other CA").client("intruder", Valid::Now, 7));
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let (server, client, from) = handshake(acceptor, &client, "localhost");
    let err = server.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownIssuer { role: Role::Client, dn, .. } if *dn == dn_of("intruder")),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {from}: client certificate \"O=ramstream tests,CN=intruder\" is not issued by our CA (ca-cert.pem)"
        )
    );
    assert_eq!(first_read_error(client), "received fatal alert: UnknownCA");
}

#[test]
fn no_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ramstream test CA");
    write_dir(
        dir.path(),
        &ca,
        Some(&ca.server("destination", Valid::Now)),
        None,
    );
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    assert_eq!(client.own_dn(), None);
    let (server, client, from) = handshake(acceptor, &client, "localhost");
    assert_eq!(
        server.unwrap_err().to_string(),
        format!(
            "TLS handshake with {from}: the client presented no certificate, and verify_peer requires one"
        )
    );
    assert_eq!(
        first_read_error(client),
        "received fatal alert: CertificateRequired"
    );
}

#[test]
fn expired_client_certificate() {
    let (dir, _) = pair(|ca| ca.client("source", Valid::Expired, 2));
    // Our own loading refuses it first, as QEMU's sanity check does...
    let err = Credentials::load(dir.path(), Endpoint::Client).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the certificate \"O=ramstream tests,CN=source\" expired at 2001-01-01T00:00:00Z",
            dir.path().join("client-cert.pem").display()
        )
    );
    // ...and a server refuses it when a client presents it anyway.
    let client = Credentials::load_unchecked(dir.path(), Endpoint::Client).unwrap();
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let (server, client, from) = handshake(acceptor, &client, "localhost");
    let err = server.unwrap_err();
    let Error::CertificateExpired {
        role: Role::Client,
        ref now,
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {from}: client certificate \"O=ramstream tests,CN=source\" expired at 2001-01-01T00:00:00Z (now {now})"
        )
    );
    assert_eq!(
        first_read_error(client),
        "received fatal alert: CertificateExpired"
    );
}

#[test]
fn client_certificate_not_yet_valid() {
    let (dir, _) = pair(|ca| ca.client("source", Valid::NotYet, 2));
    let client = Credentials::load_unchecked(dir.path(), Endpoint::Client).unwrap();
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let (server, _client, from) = handshake(acceptor, &client, "localhost");
    let err = server.unwrap_err();
    let Error::CertificateNotYetValid { ref now, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {from}: client certificate \"O=ramstream tests,CN=source\" is not valid before 2090-01-01T00:00:00Z (now {now})"
        )
    );
}

#[test]
fn revoked_client_certificate() {
    let (dir, ca) = pair(|ca| ca.client("source", Valid::Now, 2));
    std::fs::write(dir.path().join("ca-crl.pem"), ca.crl(&[2])).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let (server, client, from) = handshake(acceptor, &client, "localhost");
    assert_eq!(
        server.unwrap_err().to_string(),
        format!(
            "TLS handshake with {from}: client certificate \"O=ramstream tests,CN=source\" is revoked (ca-crl.pem)"
        )
    );
    assert_eq!(
        first_read_error(client),
        "received fatal alert: CertificateRevoked"
    );
}

#[test]
fn expired_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ramstream test CA");
    let server = ca.server("destination", Valid::Expired);
    write_dir(
        dir.path(),
        &ca,
        Some(&server),
        Some(&ca.client("source", Valid::Now, 2)),
    );
    assert!(matches!(
        Credentials::load(dir.path(), Endpoint::Server),
        Err(Error::CredentialExpired { .. })
    ));
    let acceptor =
        Acceptor::new(&Credentials::load_unchecked(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let (server, client, _) = handshake(acceptor, &client, "localhost");
    let err = client.unwrap_err();
    let Error::CertificateExpired {
        role: Role::Server,
        peer,
        ref now,
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {peer}: server certificate \"O=ramstream tests,CN=destination\" expired at 2001-01-01T00:00:00Z (now {now})"
        )
    );
    assert!(matches!(
        server.unwrap_err(),
        Error::PeerRefused { ref alert, .. } if alert == "CertificateExpired"
    ));
}

#[test]
fn dn_not_in_the_authorisation_list() {
    let (dir, _) = pair(|ca| ca.client("source", Valid::Now, 2));
    let acceptor = Acceptor::new(&server_creds(dir.path()))
        .unwrap()
        .with_authz(Authz::from_identities([
            dn_of("someone-else"),
            // The RFC 4514 order of the right DN: not what QEMU compares.
            "CN=source,O=ramstream tests".to_string(),
        ]))
        .unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let (server, client, from) = handshake(acceptor, &client, "localhost");
    let err = server.unwrap_err();
    assert!(matches!(&err, Error::NotAuthorised { dn, .. } if *dn == dn_of("source")));
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {from}: client certificate DN \"O=ramstream tests,CN=source\" is not in the authorisation list"
        )
    );
    assert_eq!(
        first_read_error(client),
        "received fatal alert: AccessDenied"
    );
}

#[test]
fn wrong_server_name() {
    let (dir, _) = pair(|ca| ca.client("source", Valid::Now, 2));
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let (server, client, _) = handshake(acceptor, &client, "elsewhere.example");
    let err = client.unwrap_err();
    let Error::NameMismatch { peer, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with {peer}: server certificate \"O=ramstream tests,CN=destination\" is not valid for \"elsewhere.example\" (it names: localhost, 127.0.0.1)"
        )
    );
    assert!(matches!(
        server.unwrap_err(),
        Error::PeerRefused { ref alert, .. } if alert == "BadCertificate"
    ));
    // An IP address the certificate does not name is refused the same way.
    let acceptor = Acceptor::new(&server_creds(dir.path())).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let (_, client, _) = handshake(acceptor, &client, "127.0.0.2");
    assert!(matches!(
        client.unwrap_err(),
        Error::NameMismatch { ref expected, .. } if expected == "127.0.0.2"
    ));
}

#[test]
fn stalled_handshake_times_out_at_the_acceptor() {
    let dir = tempfile::tempdir().unwrap();
    support::shared_dir(dir.path());
    let timeout = Duration::from_millis(300);
    let acceptor = Acceptor::new(&server_creds(dir.path()))
        .unwrap()
        .with_handshake_timeout(timeout);
    // One peer sends nothing at all, the other the first byte of a TLS record and no more.
    for first in [&[][..], &[0x16][..]] {
        let (l, addr) = listener();
        let server = accept_one(l, acceptor.clone());
        let start = Instant::now();
        let mut stalled = connect(addr);
        stalled.write_all(first).unwrap();
        let (result, from) = server.join().unwrap();
        let took = start.elapsed();
        assert_eq!(
            result.unwrap_err().to_string(),
            format!("TLS handshake with {from}: no handshake within 300ms")
        );
        assert!(took >= timeout && took < Duration::from_secs(5), "{took:?}");
        drop(stalled);
    }
}

#[test]
fn stalled_handshake_times_out_at_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    support::shared_dir(dir.path());
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let connector = Connector::new(&client)
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(300));
    // A server that accepts the connection and never answers the ClientHello.
    let (l, addr) = listener();
    let tcp = TcpStream::connect(addr).unwrap();
    let (silent, _) = l.accept().unwrap();
    let err = connector.connect(tcp, "localhost").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("TLS handshake with {addr}: no handshake within 300ms")
    );
    drop(silent);
}

#[test]
fn credential_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // No files at all: the CA certificate is the first one read.
    let err = Credentials::load(dir.path(), Endpoint::Client).unwrap_err();
    assert!(
        matches!(&err, Error::ReadFile { file, source } if file.ends_with("ca-cert.pem") && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    // A server needs its certificate and key.
    let ca = Ca::new("ramstream test CA");
    write_dir(dir.path(), &ca, None, None);
    let err = Credentials::load(dir.path(), Endpoint::Server).unwrap_err();
    assert!(
        matches!(&err, Error::ReadFile { file, .. } if file.ends_with("server-cert.pem")),
        "{err:?}"
    );
    // A key that belongs to another certificate.
    let a = ca.server("destination", Valid::Now);
    let b = ca.server("destination", Valid::Now);
    std::fs::write(dir.path().join("server-cert.pem"), &a.cert_pem).unwrap();
    std::fs::write(dir.path().join("server-key.pem"), &b.key_pem).unwrap();
    let err = Credentials::load(dir.path(), Endpoint::Server).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: server-key.pem is not the private key of server-cert.pem",
            dir.path().display()
        )
    );
    // Not PEM.
    std::fs::write(dir.path().join("server-key.pem"), "not a key").unwrap();
    let err = Credentials::load(dir.path(), Endpoint::Server).unwrap_err();
    assert!(matches!(err, Error::BadFile { .. }), "{err:?}");
    // Server credentials given to a connector.
    std::fs::write(dir.path().join("server-key.pem"), &a.key_pem).unwrap();
    let server = Credentials::load(dir.path(), Endpoint::Server).unwrap();
    assert_eq!(
        Connector::new(&server).unwrap_err().to_string(),
        format!(
            "{}: credentials loaded for a server endpoint, a client endpoint needs its own",
            dir.path().display()
        )
    );
    // An authorisation list without peer verification.
    let mut unverified = server.clone();
    unverified.verify_peer = false;
    assert!(matches!(
        Acceptor::new(&unverified)
            .unwrap()
            .with_authz(Authz::from_identities(["O=x"])),
        Err(Error::AuthzWithoutVerifyPeer)
    ));
}

/// `verify_peer` off on both sides: a client without a certificate, and a server
/// certificate from a CA the client does not know, still connect.
#[test]
fn verify_peer_off_checks_nothing_about_the_peer() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ramstream test CA");
    write_dir(
        server_dir.path(),
        &ca,
        Some(&ca.server("destination", Valid::Now)),
        None,
    );
    write_dir(client_dir.path(), &Ca::new("unrelated CA"), None, None);
    let mut server = server_creds(server_dir.path());
    server.verify_peer = false;
    let mut client = Credentials::load(client_dir.path(), Endpoint::Client).unwrap();
    client.verify_peer = false;
    let (server, client, _) = handshake(Acceptor::new(&server).unwrap(), &client, "anything");
    assert_eq!(server.unwrap().peer_dn(), None);
    assert_eq!(
        client.unwrap().peer_dn(),
        Some(dn_of("destination").as_str())
    );
}
