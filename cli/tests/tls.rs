//! TLS on the command's endpoints (issue #16), without QEMU: a recorded QEMU stream (and a
//! recorded multifd migration, every channel TLS) sent by a TLS source into `receive
//! --tls-creds --extract` extracts equal to the QEMU destination; every refusal (plaintext
//! at a TLS listener, a client certificate of another CA, an expired one, a DN not in the
//! authorisation list, a stalled handshake, a wrong server name at `proxy --forward`, an
//! idle peer) exits non-zero, says why, and extracts or records nothing, except a stranger
//! refused while a multifd migration gathers its channels, which is logged and left out; and (on KVM)
//! `send` over TLS into `receive` over TLS resumes the guest. The certificates are made
//! here with rcgen (the tls crate's test support), each test in its own temp dir. The
//! QEMU runs are in `tests/tls_interop.rs`.

#[path = "../../tls/tests/support/mod.rs"]
mod certs;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread::JoinHandle;

use certs::{dn_of, shared_dir, write_dir, Ca, Valid};
use common::live::{spawn_listening, Finished};
use common::{extract_hashes, ramstream};
use ramstream_conformance_vectors::Vector;
use ramstream_tls::{Connector, Credentials, Endpoint, SharedTlsStream};

/// `receive --listen tcp:127.0.0.1:0 --extract DIR/extract --tls-creds CREDS EXTRA`.
fn receive_args(dir: &Path, creds: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "receive",
        "--listen",
        "tcp:127.0.0.1:0",
        "--extract",
        &dir.join("extract").display().to_string(),
        "--tls-creds",
        &creds.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A TLS connection to `addr` (`127.0.0.1:PORT`) with the client credentials in `creds`.
fn tls_connect(addr: &str, creds: &Path) -> Result<SharedTlsStream, ramstream_tls::Error> {
    let c = Credentials::load(creds, Endpoint::Client).unwrap();
    let tls = Connector::new(&c)
        .unwrap()
        .connect(TcpStream::connect(addr).unwrap(), "127.0.0.1")?;
    Ok(tls.into_shared().unwrap())
}

/// Sends `bytes` on a thread, ending with close_notify; a refused session is fine here.
fn send_on(mut s: SharedTlsStream, bytes: Vec<u8>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if s.write_all(&bytes).is_ok() {
            let _ = s.shutdown();
        }
    })
}

/// A small recorded single-stream vector (QEMU 11.1, a no-OS guest).
fn small_vector() -> Vector {
    vector("11.1-idle-noos")
}

fn vector(name: &str) -> Vector {
    ramstream_conformance_vectors::all()
        .unwrap()
        .into_iter()
        .find(|v| v.manifest.name == name)
        .unwrap()
}

/// Asserts that a run failed, naming `why` in its one error line, and extracted nothing.
fn refused(f: &Finished, dir: &Path, why: &str) {
    assert!(!f.status.success(), "stderr: {:?}", f.stderr);
    let line = f.error_line();
    assert!(line.contains(why), "{line:?} does not say {why:?}");
    let out = dir.join("extract");
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "something was extracted into {}",
        out.display()
    );
}

#[test]
fn a_tls_source_is_extracted_equal_to_the_qemu_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let v = small_vector();
    let stream = v.stream().unwrap();
    let authz = dn_of("source");
    let r = spawn_listening(&receive_args(tmp.path(), &creds, &["--tls-authz", &authz]));
    let src = tls_connect(r.tcp(), &creds).unwrap();
    let w = send_on(src, stream);
    let f = r.wait();
    w.join().unwrap();
    assert!(f.status.success(), "{:?}", f.stderr);
    assert_eq!(
        extract_hashes(&tmp.path().join("extract")),
        v.block_hashes()
    );
    assert!(
        f.stderr
            .iter()
            .any(|l| l.contains(&format!("client certificate \"{authz}\""))),
        "{:?}",
        f.stderr
    );
}

#[test]
fn every_multifd_channel_is_tls_and_the_extract_equals_the_qemu_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let v = vector("11.1-multifd-2-live");
    let (main, channels) = (v.stream().unwrap(), v.channels().unwrap());
    // An authorisation file, as QEMU's authz-list-file.
    let list = tmp.path().join("authz");
    std::fs::write(&list, format!("# sources\n{}\n", dn_of("source"))).unwrap();
    let r = spawn_listening(&receive_args(
        tmp.path(),
        &creds,
        &["--tls-authz-file", list.to_str().unwrap()],
    ));
    // As QEMU: every channel's handshake completes before the main stream's first byte.
    let main_conn = tls_connect(r.tcp(), &creds).unwrap();
    // A stranger without TLS between the main stream and the channels is refused, logged,
    // and is no part of the migration.
    let mut stranger = TcpStream::connect(r.tcp()).unwrap();
    stranger.write_all(b"QEVM\0\0\0\x03").unwrap();
    let chans: Vec<_> = channels
        .iter()
        .map(|_| tls_connect(r.tcp(), &creds).unwrap())
        .collect();
    let mut writers = vec![send_on(main_conn, main)];
    for (c, bytes) in chans.into_iter().zip(channels.clone()) {
        writers.push(send_on(c, bytes));
    }
    let f = r.wait();
    for w in writers {
        w.join().unwrap();
    }
    assert!(f.status.success(), "{:?}", f.stderr);
    assert_eq!(
        extract_hashes(&tmp.path().join("extract")),
        v.block_hashes()
    );
    let sessions = f
        .stderr
        .iter()
        .filter(|l| l.starts_with("TLS from "))
        .count();
    assert_eq!(sessions, 1 + channels.len(), "{:?}", f.stderr);
    assert!(
        f.stderr
            .iter()
            .any(|l| l.starts_with("ramstream: refused the connection from")
                && l.contains("a plaintext QEMU migration stream")),
        "{:?}",
        f.stderr
    );
    drop(stranger);
}

#[test]
fn plaintext_at_a_tls_listener_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let stream = small_vector().stream().unwrap();
    let r = spawn_listening(&receive_args(tmp.path(), &creds, &[]));
    let mut plain = TcpStream::connect(r.tcp()).unwrap();
    plain.write_all(&stream[..64]).unwrap();
    let f = r.wait();
    refused(
        &f,
        tmp.path(),
        "the peer sent a plaintext QEMU migration stream (file magic \"QEVM\")",
    );
}

/// Runs a TLS source with `client` credentials (a directory trusting the right CA) into
/// `receive --tls-creds creds EXTRA`; its run.
fn refused_client(tmp: &Path, creds: &Path, client: &Path, extra: &[&str]) -> Finished {
    let stream = small_vector().stream().unwrap();
    let r = spawn_listening(&receive_args(tmp, creds, extra));
    // TLS 1.3: the client's side of the handshake ends before the server checks it.
    let w = tls_connect(r.tcp(), client).map(|s| send_on(s, stream));
    let f = r.wait();
    if let Ok(w) = w {
        w.join().unwrap();
    }
    f
}

#[test]
fn a_client_certificate_of_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let ca = shared_dir(&creds);
    let other = Ca::new("another CA");
    let client = tmp.path().join("client");
    write_dir(
        &client,
        &ca,
        None,
        Some(&other.client("source", Valid::Now, 7)),
    );
    let f = refused_client(tmp.path(), &creds, &client, &[]);
    refused(
        &f,
        tmp.path(),
        &format!(
            "client certificate \"{}\" is not issued by our CA",
            dn_of("source")
        ),
    );
}

#[test]
fn an_expired_client_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let ca = shared_dir(&creds);
    let client = tmp.path().join("client");
    let cert = ca.client("old-source", Valid::Expired, 8);
    // Credentials::load refuses to load an expired certificate of our own: write it as
    // the test's client holds it, and load it unchecked.
    write_dir(&client, &ca, None, Some(&cert));
    let r = spawn_listening(&receive_args(tmp.path(), &creds, &[]));
    let c = Credentials::load_unchecked(&client, Endpoint::Client).unwrap();
    let w = Connector::new(&c)
        .unwrap()
        .connect(TcpStream::connect(r.tcp()).unwrap(), "127.0.0.1")
        .map(|s| send_on(s.into_shared().unwrap(), vec![0; 64]));
    let f = r.wait();
    if let Ok(w) = w {
        w.join().unwrap();
    }
    refused(
        &f,
        tmp.path(),
        &format!("client certificate \"{}\" expired at", dn_of("old-source")),
    );
}

#[test]
fn a_dn_not_in_the_authorisation_list_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let f = refused_client(
        tmp.path(),
        &creds,
        &creds,
        &["--tls-authz", &dn_of("someone-else")],
    );
    refused(
        &f,
        tmp.path(),
        &format!(
            "client certificate DN \"{}\" is not in the authorisation list",
            dn_of("source")
        ),
    );
}

#[test]
fn a_stalled_handshake_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let r = spawn_listening(&receive_args(
        tmp.path(),
        &creds,
        &["--tls-handshake-timeout", "1"],
    ));
    let silent = TcpStream::connect(r.tcp()).unwrap();
    let f = r.wait();
    drop(silent);
    refused(&f, tmp.path(), "no handshake within 1s");
}

#[test]
fn an_idle_peer_is_dropped_after_the_idle_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let r = spawn_listening(&receive_args(tmp.path(), &creds, &["--idle-timeout", "1"]));
    let quiet = tls_connect(r.tcp(), &creds).unwrap();
    let f = r.wait();
    drop(quiet);
    refused(&f, tmp.path(), "sent nothing for 1 s (--idle-timeout)");
}

#[test]
fn a_wrong_server_name_is_refused_by_the_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    // The destination: a TLS server whose certificate names localhost and 127.0.0.1.
    let (l, dst) = certs::listener();
    let acceptor =
        ramstream_tls::Acceptor::new(&Credentials::load(&creds, Endpoint::Server).unwrap())
            .unwrap();
    let destination = certs::accept_one(l, acceptor);
    let record = tmp.path().join("rec.mig");
    let stream = small_vector().stream().unwrap();
    let r = spawn_listening(&[
        "proxy".into(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--forward".into(),
        format!("tcp:{dst}"),
        "--record".into(),
        record.display().to_string(),
        "--tls-creds".into(),
        creds.display().to_string(),
        "--tls-hostname".into(),
        "wrong.example".into(),
    ]);
    let w = send_on(tls_connect(r.tcp(), &creds).unwrap(), stream);
    let f = r.wait();
    w.join().unwrap();
    let (at_destination, _) = destination.join().unwrap();
    assert!(at_destination.is_err());
    refused(
        &f,
        tmp.path(),
        "is not valid for \"wrong.example\" (it names: localhost, 127.0.0.1)",
    );
    assert!(!record.exists());
}

#[test]
fn tls_over_a_unix_socket_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let sock = format!("unix:{}", tmp.path().join("s.sock").display());
    let out = ramstream(&[
        "receive",
        "--listen",
        &sock,
        "--extract",
        tmp.path().join("extract").to_str().unwrap(),
        "--tls-creds",
        creds.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{sock}: TLS (--tls-creds) runs over tcp:HOST:PORT only"
        )),
        "{err}"
    );
}

/// `send` over TLS (the reference guest under KVM, two multifd channels) into `receive`
/// over TLS with an authorisation list: the digest is verified and the guest resumes.
/// Skipped where /dev/kvm is not usable, unless `RAMSTREAM_REQUIRE_KVM=1`.
#[test]
fn send_over_tls_into_receive_over_tls_resumes_the_guest() {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if !ramstream_conformance_vectors::qemu::kvm_or_skip(open.map(drop)) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let creds = creds.display().to_string();
    let r = spawn_listening(&[
        "receive".into(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--multifd-channels".into(),
        "2".into(),
        "--json".into(),
        "--tls-creds".into(),
        creds.clone(),
        "--tls-authz".into(),
        dn_of("source"),
    ]);
    let send = ramstream(&[
        "send",
        "--multifd-channels",
        "2",
        "--tls-creds",
        &creds,
        &r.addr.clone(),
    ]);
    let mut f = r.wait();
    assert!(
        send.status.success(),
        "send: {}",
        String::from_utf8_lossy(&send.stderr)
    );
    assert!(f.status.success(), "receive: {:?}", f.stderr);
    let mut stdout = String::new();
    f.stdout.as_slice().read_to_string(&mut stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["digest_verified"], true, "{report}");
    assert_eq!(report["guest_resumed"], true, "{report}");
    let sessions = f
        .stderr
        .iter()
        .filter(|l| l.starts_with("TLS from "))
        .count();
    assert_eq!(sessions, 3, "{:?}", f.stderr);
    f.stderr.clear();
}

/// `--tls-no-verify-peer` (QEMU's verify-peer=off): a source without a client certificate
/// is served (encrypted, unauthenticated); with an authorisation list it is refused, as
/// there is no verified DN to check.
#[test]
fn without_peer_verification_a_source_needs_no_certificate_and_no_authz_is_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let ca = shared_dir(&creds);
    let anonymous = tmp.path().join("anonymous");
    write_dir(&anonymous, &ca, None, None);
    let v = small_vector();
    let stream = v.stream().unwrap();
    let r = spawn_listening(&receive_args(tmp.path(), &creds, &["--tls-no-verify-peer"]));
    let w = send_on(tls_connect(r.tcp(), &anonymous).unwrap(), stream);
    let f = r.wait();
    w.join().unwrap();
    assert!(f.status.success(), "{:?}", f.stderr);
    assert_eq!(
        extract_hashes(&tmp.path().join("extract")),
        v.block_hashes()
    );
    assert!(
        f.stderr
            .iter()
            .any(|l| l.starts_with("TLS from ") && l.ends_with("client certificate none")),
        "{:?}",
        f.stderr
    );

    let out = ramstream(&receive_args(
        &tmp.path().join("second"),
        &creds,
        &["--tls-no-verify-peer", "--tls-authz", &dn_of("source")],
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-authz: an authorisation list needs verify_peer"),
        "{err}"
    );
}
