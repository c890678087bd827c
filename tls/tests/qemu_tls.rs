//! TLS interoperability with real QEMU 7.2, 10.0 and 11.1, each version its own tests:
//!
//! - a QEMU source (`tls-creds-x509 ... endpoint=client`, `migrate-set-parameters
//!   tls-creds`) migrating the idle no-OS guest into our [`Acceptor`]: we read the whole
//!   stream, decode it and rebuild the RAM blocks the vector's manifest lists; with an
//!   authorisation list naming the source's DN it passes (over TLS 1.3, and over TLS 1.2
//!   when the source's GnuTLS priority excludes 1.3), with one that does not it is refused;
//!   a source without `tls-creds` is refused as plaintext; a source whose `tls-hostname`
//!   our certificate does not name refuses us;
//! - our [`Connector`] sending that version's recorded golden stream to a QEMU destination
//!   (`endpoint=server`, `tls-authz` with an `authz-simple` naming our DN), which completes
//!   the incoming migration and then holds exactly the RAM the manifest lists; with an
//!   identity that is not our DN, it refuses.
//!
//! Every test makes its own certificates and temp dirs, copies the guest's disk image (QEMU
//! locks it) and listens on 127.0.0.1 port 0. Skipped with a printed reason where a QEMU
//! version is missing; a failure under `RAMSTREAM_REQUIRE_QEMU=1` (CI).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ramstream_codec::transcode::rebuild;
use ramstream_codec::{decode_all, DecoderOptions};
use ramstream_conformance_vectors::qemu::{adapt_accel, version_or_skip, Qemu, QemuVersion};
use ramstream_conformance_vectors::{all, Vector};
use ramstream_tls::{Acceptor, Authz, Connector, Credentials, Endpoint, Error, Plaintext};
use serde_json::{json, Value};
use support::{dn_of, listener, shared_dir};

const TIMEOUT: Duration = Duration::from_secs(120);

fn vector(version: QemuVersion) -> Vector {
    let name = version.vector_name("idle-noos");
    all()
        .unwrap()
        .into_iter()
        .find(|v| v.manifest.name == name)
        .unwrap_or_else(|| panic!("vector {name} missing"))
}

/// A temp dir holding a copy of the vector's `boot.img`, for QEMU to run in: QEMU locks
/// the image, so each test has its own.
fn guest_dir(v: &Vector) -> tempfile::TempDir {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::copy(v.dir.join("boot.img"), cwd.path().join("boot.img")).unwrap();
    cwd
}

/// Adds a QOM object through QMP (no command-line comma escaping for DNs).
fn object_add(q: &mut Qemu, args: Value) {
    q.execute("object-add", args).unwrap();
}

fn tls_creds(q: &mut Qemu, dir: &Path, endpoint: &str, priority: Option<&str>) {
    let mut args = json!({"qom-type": "tls-creds-x509", "id": "tls0",
                          "dir": dir.display().to_string(), "endpoint": endpoint});
    if let Some(p) = priority {
        args["priority"] = json!(p);
    }
    object_add(q, args);
}

/// What our destination thread saw.
struct Received {
    /// The handshake's outcome.
    accepted: Result<(), Error>,
    /// The stream read to its end, or the read error.
    stream: std::io::Result<Vec<u8>>,
    /// Whether the source ended with close_notify.
    close_notify: bool,
    /// The client certificate's DN.
    dn: Option<String>,
    /// The negotiated version and suite.
    negotiated: String,
}

fn receive_one(acceptor: Acceptor) -> (SocketAddr, JoinHandle<Received>) {
    let (l, addr) = listener();
    let thread = std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        match acceptor.accept(tcp) {
            Ok(mut tls) => {
                let mut stream = Vec::new();
                let stream = tls.read_to_end(&mut stream).map(|_| stream);
                Received {
                    accepted: Ok(()),
                    stream,
                    close_notify: tls.close_notify_received(),
                    dn: tls.peer_dn().map(str::to_string),
                    negotiated: tls.negotiated(),
                }
            }
            Err(e) => Received {
                accepted: Err(e),
                stream: Ok(Vec::new()),
                close_notify: false,
                dn: None,
                negotiated: String::new(),
            },
        }
    });
    (addr, thread)
}

/// Polls the source's query-migrate until it leaves the active states.
fn wait_source(q: &mut Qemu) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = q.execute("query-migrate", json!({})).unwrap();
        match r["status"].as_str() {
            Some("completed") | Some("failed") | Some("cancelled") => return r,
            _ => assert!(Instant::now() < deadline, "migration never ended: {r}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The blocks (idstr, used length) the manifest lists.
fn manifest_blocks(v: &Vector) -> Vec<(String, u64)> {
    v.manifest
        .blocks
        .iter()
        .map(|b| (b.idstr.clone(), b.used_length))
        .collect()
}

/// A QEMU `version` source migrates into our acceptor over TLS; `authz` decides whether
/// its DN may. `tls_hostname` is set as the migration parameter, else QEMU checks the
/// URI's host, 127.0.0.1, against our certificate's IP address SAN. `return_path` turns
/// on the source's `return-path` capability.
fn qemu_source_into_acceptor(
    version: QemuVersion,
    authz: Option<Authz>,
    tls_hostname: Option<&str>,
    priority: Option<&str>,
    return_path: bool,
) -> (Received, Value) {
    let v = vector(version);
    let creds = tempfile::tempdir().unwrap();
    shared_dir(creds.path());
    let mut acceptor =
        Acceptor::new(&Credentials::load(creds.path(), Endpoint::Server).unwrap()).unwrap();
    if let Some(a) = authz {
        acceptor = acceptor.with_authz(a).unwrap();
    }
    let (addr, destination) = receive_one(acceptor);
    let cwd = guest_dir(&v);
    let mut src =
        Qemu::spawn_version(version, &adapt_accel(&v.manifest.source_args), cwd.path()).unwrap();
    tls_creds(&mut src, creds.path(), "client", priority);
    let mut params = json!({"tls-creds": "tls0"});
    if let Some(h) = tls_hostname {
        params["tls-hostname"] = json!(h);
    }
    src.execute("migrate-set-parameters", params).unwrap();
    if return_path {
        src.execute(
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "return-path", "state": true}]}),
        )
        .unwrap();
    }
    src.execute("migrate", json!({"uri": format!("tcp:{addr}")}))
        .unwrap();
    let status = wait_source(&mut src);
    let received = destination.join().unwrap();
    src.quit();
    (received, status)
}

/// `priority` is the source's GnuTLS priority string (`tls-creds-x509`'s `priority`),
/// QEMU's default `NORMAL` when `None`; `protocol` what the negotiated version must be.
fn check_source_into_acceptor(version: QemuVersion, priority: Option<&str>, protocol: &str) {
    if version_or_skip("qemu_tls::source_into_acceptor", version).is_none() {
        return;
    }
    let v = vector(version);
    let start = Instant::now();
    let (received, status) = qemu_source_into_acceptor(
        version,
        Some(Authz::from_identities([dn_of("source")])),
        None,
        priority,
        false,
    );
    assert_eq!(status["status"], "completed", "{status}");
    received
        .accepted
        .unwrap_or_else(|e| panic!("{version}: {e}"));
    let stream = received
        .stream
        .unwrap_or_else(|e| panic!("{version}: reading the TLS stream: {e}"));
    let dn = received.dn;
    assert_eq!(dn.as_deref(), Some(dn_of("source").as_str()));
    assert!(
        received.negotiated.starts_with(protocol),
        "{version}: {}",
        received.negotiated
    );
    let events = decode_all(&stream, DecoderOptions::default())
        .unwrap_or_else(|e| panic!("{version}: the stream received over TLS: {e}"));
    let image = rebuild(&stream, &DecoderOptions::default()).unwrap();
    let blocks: Vec<(String, u64)> = image
        .blocks()
        .iter()
        .map(|b| (b.idstr.clone(), b.used_length))
        .collect();
    assert_eq!(blocks, manifest_blocks(&v), "{version}: RAM blocks");
    eprintln!(
        "{version} source -> ramstream Acceptor over TLS ({}): {} bytes, {} events, {} RAM blocks as the manifest lists, client DN {:?}, close_notify at the end: {}, {:.1} s",
        received.negotiated,
        stream.len(),
        events.len(),
        blocks.len(),
        dn.unwrap(),
        received.close_notify,
        start.elapsed().as_secs_f64()
    );
}

/// Our acceptor refuses a QEMU source whose DN its authz list lacks. Under TLS 1.3 the
/// client sends its certificate in its last flight and is done, so a QEMU source without
/// a return path never reads our refusal: a small guest's whole stream fits in the
/// socket buffers and QEMU may report `completed` before the refusal reaches it. With
/// the `return-path` capability QEMU reads from us until we close, so it must fail.
fn check_source_refused_by_authz(version: QemuVersion) {
    if version_or_skip("qemu_tls::source_refused_by_authz", version).is_none() {
        return;
    }
    let (received, status) = qemu_source_into_acceptor(
        version,
        Some(Authz::from_identities([dn_of("another-source")])),
        Some("localhost"),
        None,
        true,
    );
    let err = received.accepted.unwrap_err();
    assert!(
        matches!(&err, Error::NotAuthorised { dn, .. } if *dn == dn_of("source")),
        "{version}: {err:?}"
    );
    assert_eq!(status["status"], "failed", "{version}: {status}");
    eprintln!(
        "{version} source refused: {err}; QEMU: {}",
        status["error-desc"].as_str().unwrap_or("?")
    );
}

fn check_plaintext_source_refused(version: QemuVersion) {
    if version_or_skip("qemu_tls::plaintext_source_refused", version).is_none() {
        return;
    }
    let v = vector(version);
    let creds = tempfile::tempdir().unwrap();
    shared_dir(creds.path());
    let acceptor =
        Acceptor::new(&Credentials::load(creds.path(), Endpoint::Server).unwrap()).unwrap();
    let (addr, destination) = receive_one(acceptor);
    let cwd = guest_dir(&v);
    let mut src =
        Qemu::spawn_version(version, &adapt_accel(&v.manifest.source_args), cwd.path()).unwrap();
    // Without a return path QEMU never reads from us, and may finish writing a small
    // guest into the socket buffers before our refusal reaches it (see
    // check_source_refused_by_authz).
    src.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "return-path", "state": true}]}),
    )
    .unwrap();
    src.execute("migrate", json!({"uri": format!("tcp:{addr}")}))
        .unwrap();
    let received = destination.join().unwrap();
    let status = wait_source(&mut src);
    src.quit();
    let err = received.accepted.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Plaintext {
                what: Plaintext::QemuStream,
                ..
            }
        ),
        "{version}: {err:?}"
    );
    assert_eq!(status["status"], "failed", "{version}: {status}");
    eprintln!("{version} plaintext source refused: {err}");
}

/// A QEMU source whose `tls-hostname` our certificate does not name completes the
/// handshake, then checks the name (`qcrypto_tls_session_check_certificate`), fails and
/// closes without sending anything: no alert, so our side sees the session end before any
/// data.
fn check_source_refuses_wrong_server_name(version: QemuVersion) {
    if version_or_skip("qemu_tls::source_refuses_wrong_server_name", version).is_none() {
        return;
    }
    let (received, status) =
        qemu_source_into_acceptor(version, None, Some("elsewhere.example"), None, false);
    assert_eq!(status["status"], "failed", "{version}: {status}");
    let desc = status["error-desc"].as_str().unwrap_or("");
    assert!(
        desc.contains("Certificate does not match the hostname elsewhere.example"),
        "{version}: {status}"
    );
    // The handshake may be cut short, or complete and the session end before any data.
    let ours = match received.accepted {
        Err(e) => e.to_string(),
        Ok(()) => {
            let err = received.stream.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
            err.to_string()
        }
    };
    eprintln!("{version} source refused our server certificate: QEMU: {desc:?}; ours: {ours}");
}

/// A QEMU `version` destination with TLS and `authz-simple` naming `identity`, listening on
/// a free port; returns it and the port's address.
fn qemu_tls_destination(
    version: QemuVersion,
    v: &Vector,
    creds: &Path,
    cwd: &Path,
    identity: &str,
) -> (Qemu, SocketAddr) {
    let mut args = adapt_accel(&v.manifest.destination_args);
    args.push("-incoming".into());
    args.push("defer".into());
    let mut dst = Qemu::spawn_version(version, &args, cwd).unwrap();
    tls_creds(&mut dst, creds, "server", None);
    object_add(
        &mut dst,
        json!({"qom-type": "authz-simple", "id": "auth0", "identity": identity}),
    );
    dst.execute(
        "migrate-set-parameters",
        json!({"tls-creds": "tls0", "tls-authz": "auth0"}),
    )
    .unwrap();
    dst.execute("migrate-incoming", json!({"uri": "tcp:127.0.0.1:0"}))
        .unwrap();
    let r = dst.execute("query-migrate", json!({})).unwrap();
    let bound = &r["socket-address"][0];
    let port: u16 = bound["port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("query-migrate lists no socket-address: {r}"));
    assert_ne!(port, 0, "{r}");
    (dst, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Has `dst` save what it loaded to a file and returns its blocks' sha256s.
fn held_by(dst: &mut Qemu) -> Vec<(String, String)> {
    let out = tempfile::NamedTempFile::new().unwrap();
    // The server credentials would apply to this outgoing migration too: save in plain.
    dst.execute("migrate-set-parameters", json!({"tls-creds": ""}))
        .unwrap();
    dst.execute(
        "migrate",
        json!({"uri": format!("exec:cat > '{}'", out.path().display())}),
    )
    .unwrap();
    dst.wait_migration(TIMEOUT).unwrap();
    let saved = std::fs::read(out.path()).unwrap();
    let image = rebuild(&saved, &DecoderOptions::default()).unwrap();
    image
        .blocks()
        .iter()
        .enumerate()
        .map(|(i, b)| (b.idstr.clone(), hex::encode(image.sha256(i))))
        .collect()
}

fn check_connector_into_qemu(version: QemuVersion) {
    if version_or_skip("qemu_tls::connector_into_qemu", version).is_none() {
        return;
    }
    let v = vector(version);
    let stream = v.stream().unwrap();
    let creds = tempfile::tempdir().unwrap();
    shared_dir(creds.path());
    let client = Credentials::load(creds.path(), Endpoint::Client).unwrap();
    let our_dn = client.own_dn().unwrap().to_string();
    let cwd = guest_dir(&v);
    let (mut dst, addr) = qemu_tls_destination(version, &v, creds.path(), cwd.path(), &our_dn);
    let start = Instant::now();
    let mut tls = Connector::new(&client)
        .unwrap()
        .connect(TcpStream::connect(addr).unwrap(), "localhost")
        .unwrap_or_else(|e| panic!("{version}: {e}"));
    assert_eq!(tls.peer_dn(), Some(dn_of("destination").as_str()));
    let negotiated = tls.negotiated();
    tls.write_all(&stream).unwrap();
    tls.shutdown().unwrap();
    let status = dst
        .wait_migration(TIMEOUT)
        .unwrap_or_else(|e| panic!("{version} destination: {e}"));
    let took = start.elapsed();
    assert_eq!(status["status"], "completed");
    let held = held_by(&mut dst);
    dst.quit();
    let expected: Vec<(String, String)> = v
        .manifest
        .blocks
        .iter()
        .map(|b| (b.idstr.clone(), b.sha256.clone()))
        .collect();
    assert_eq!(held, expected, "{version}: the RAM QEMU loaded");
    eprintln!(
        "ramstream Connector -> {version} destination over TLS ({negotiated}), authz-simple identity {our_dn:?}: {} bytes, completed in {:.2} s; all {} blocks as the manifest lists",
        stream.len(),
        took.as_secs_f64(),
        held.len()
    );
}

fn check_connector_refused_by_qemu_authz(version: QemuVersion) {
    if version_or_skip("qemu_tls::connector_refused_by_qemu_authz", version).is_none() {
        return;
    }
    let v = vector(version);
    let stream = v.stream().unwrap();
    let creds = tempfile::tempdir().unwrap();
    shared_dir(creds.path());
    let client = Credentials::load(creds.path(), Endpoint::Client).unwrap();
    let cwd = guest_dir(&v);
    // The right names in RFC 4514's order: not what QEMU compares.
    let (mut dst, addr) = qemu_tls_destination(
        version,
        &v,
        creds.path(),
        cwd.path(),
        "CN=source,O=ramstream tests",
    );
    let outcome = Connector::new(&client)
        .unwrap()
        .connect(TcpStream::connect(addr).unwrap(), "localhost")
        .map_err(|e| e.to_string())
        .and_then(|mut tls| {
            tls.write_all(&stream)
                .and_then(|_| tls.shutdown())
                .and_then(|_| tls.read(&mut [0u8; 1]))
                .map_err(|e| e.to_string())
        });
    let r = dst.execute("query-migrate", json!({})).unwrap();
    dst.quit();
    assert_ne!(r["status"], "completed", "{version}: {r}");
    eprintln!("{version} destination refused our DN: our side saw {outcome:?}; query-migrate {r}");
    assert!(
        !matches!(outcome, Ok(n) if n > 0),
        "{version}: the destination answered"
    );
}

#[test]
fn qemu_7_2_source_into_acceptor() {
    check_source_into_acceptor(QemuVersion::V7_2, None, "TLSv1_3");
}

#[test]
fn qemu_7_2_source_into_acceptor_over_tls_1_2() {
    check_source_into_acceptor(QemuVersion::V7_2, Some("NORMAL:-VERS-TLS1.3"), "TLSv1_2");
}

#[test]
fn qemu_10_0_source_into_acceptor() {
    check_source_into_acceptor(QemuVersion::V10_0, None, "TLSv1_3");
}

#[test]
fn qemu_10_0_source_into_acceptor_over_tls_1_2() {
    check_source_into_acceptor(QemuVersion::V10_0, Some("NORMAL:-VERS-TLS1.3"), "TLSv1_2");
}

#[test]
fn qemu_11_1_source_into_acceptor() {
    check_source_into_acceptor(QemuVersion::V11_1, None, "TLSv1_3");
}

#[test]
fn qemu_11_1_source_into_acceptor_over_tls_1_2() {
    check_source_into_acceptor(QemuVersion::V11_1, Some("NORMAL:-VERS-TLS1.3"), "TLSv1_2");
}

#[test]
fn qemu_7_2_source_refused_by_authz() {
    check_source_refused_by_authz(QemuVersion::V7_2);
}

#[test]
fn qemu_10_0_source_refused_by_authz() {
    check_source_refused_by_authz(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_source_refused_by_authz() {
    check_source_refused_by_authz(QemuVersion::V11_1);
}

#[test]
fn qemu_7_2_source_refuses_wrong_server_name() {
    check_source_refuses_wrong_server_name(QemuVersion::V7_2);
}

#[test]
fn qemu_10_0_source_refuses_wrong_server_name() {
    check_source_refuses_wrong_server_name(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_source_refuses_wrong_server_name() {
    check_source_refuses_wrong_server_name(QemuVersion::V11_1);
}

#[test]
fn qemu_7_2_plaintext_source_refused() {
    check_plaintext_source_refused(QemuVersion::V7_2);
}

#[test]
fn qemu_10_0_plaintext_source_refused() {
    check_plaintext_source_refused(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_plaintext_source_refused() {
    check_plaintext_source_refused(QemuVersion::V11_1);
}

#[test]
fn connector_into_qemu_7_2() {
    check_connector_into_qemu(QemuVersion::V7_2);
}

#[test]
fn connector_into_qemu_10_0() {
    check_connector_into_qemu(QemuVersion::V10_0);
}

#[test]
fn connector_into_qemu_11_1() {
    check_connector_into_qemu(QemuVersion::V11_1);
}

#[test]
fn connector_refused_by_qemu_7_2_authz() {
    check_connector_refused_by_qemu_authz(QemuVersion::V7_2);
}

#[test]
fn connector_refused_by_qemu_10_0_authz() {
    check_connector_refused_by_qemu_authz(QemuVersion::V10_0);
}

#[test]
fn connector_refused_by_qemu_11_1_authz() {
    check_connector_refused_by_qemu_authz(QemuVersion::V11_1);
}
