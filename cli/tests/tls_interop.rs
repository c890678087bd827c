//! TLS between real QEMU 7.2, 10.0 and 11.1 and the command (issue #16), each version its
//! own test, each on the idle no-OS guest (seconds): a QEMU TLS source (`tls-creds-x509
//! endpoint=client`) into `ramstream receive --tls-creds --tls-authz --extract`, the extract
//! equal to the paused source's RAM; the same with multifd 2 channels, every channel TLS; and
//! a QEMU TLS source through `ramstream proxy --tls-creds` (TLS server to the source, TLS
//! client to the destination) into a QEMU TLS destination with `authz-simple`, the two
//! guests' RAM equal. Certificates made here (the tls crate's test support). Skipped with a
//! printed reason where a QEMU version is missing; failures under `RAMSTREAM_REQUIRE_QEMU=1`.

#[path = "../../tls/tests/support/mod.rs"]
mod certs;
mod common;

use std::path::Path;
use std::time::Duration;

use certs::{dn_of, shared_dir};
use common::live::{migrate, qemu_incoming_on_a_free_port, spawn_listening};
use ramstream_conformance_vectors::qemu::{adapt_accel, version_or_skip, Qemu, QemuVersion};
use ramstream_conformance_vectors::Vector;
use serde_json::{json, Value};

fn vector(version: QemuVersion) -> Vector {
    ramstream_conformance_vectors::vector(&version.vector_name("idle-noos")).unwrap()
}

/// A temp dir holding a copy of the guest's `boot.img` (QEMU locks it).
fn guest_dir(v: &Vector) -> tempfile::TempDir {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::copy(v.dir.join("boot.img"), cwd.path().join("boot.img")).unwrap();
    cwd
}

/// Adds `tls-creds-x509` `tls0` for `endpoint` and makes it the migration's.
fn use_tls(q: &mut Qemu, creds: &Path, endpoint: &str, extra: Value) {
    q.execute(
        "object-add",
        json!({"qom-type": "tls-creds-x509", "id": "tls0",
               "dir": creds.display().to_string(), "endpoint": endpoint}),
    )
    .unwrap();
    let mut p = json!({"tls-creds": "tls0"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    q.execute("migrate-set-parameters", p).unwrap();
}

fn source(version: QemuVersion, v: &Vector, cwd: &Path, creds: &Path, channels: u8) -> Qemu {
    let mut q = Qemu::spawn_version(version, &adapt_accel(&v.manifest.source_args), cwd).unwrap();
    use_tls(&mut q, creds, "client", json!({}));
    if channels > 0 {
        q.execute(
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "multifd", "state": true}]}),
        )
        .unwrap();
        q.execute(
            "migrate-set-parameters",
            json!({"multifd-channels": channels}),
        )
        .unwrap();
    }
    q
}

/// Guest-physical memory `0..len` of a paused QEMU.
fn physical(q: &mut Qemu, dir: &Path, len: u64) -> Vec<u8> {
    let f = dir.join("pmem.bin");
    q.execute(
        "pmemsave",
        json!({"val": 0, "size": len, "filename": f.display().to_string()}),
    )
    .unwrap();
    let b = std::fs::read(&f).unwrap();
    std::fs::remove_file(&f).unwrap();
    b
}

/// Pages that differ between `a` and `b`, leaving out 640 KiB to 1 MiB (ROM and device
/// windows in guest-physical memory, not `pc.ram`).
fn differing(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len());
    a.chunks(4096)
        .zip(b.chunks(4096))
        .enumerate()
        .filter(|(i, (x, y))| !(0xa0..0x100).contains(i) && x != y)
        .count()
}

/// A QEMU TLS source (`channels` multifd channels, 0: none) into `receive --tls-creds
/// --tls-authz --extract`: the extract's `pc.ram` equals the paused source's RAM.
fn into_receive(version: QemuVersion, channels: u8) {
    let v = vector(version);
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let extract = tmp.path().join("extract");
    let recv = spawn_listening(&[
        "receive".into(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--extract".into(),
        extract.display().to_string(),
        "--tls-creds".into(),
        creds.display().to_string(),
        "--tls-authz".into(),
        dn_of("source"),
    ]);
    let cwd = guest_dir(&v);
    let mut src = source(version, &v, cwd.path(), &creds, channels);
    let q = migrate(&mut src, &recv.addr, |_, _| true);
    let out = recv.wait();
    assert!(out.status.success(), "{version}: {:?}", out.stderr);
    let ram = std::fs::read(extract.join("pc.ram.ram")).unwrap();
    let theirs = physical(&mut src, tmp.path(), ram.len() as u64);
    src.quit();
    assert_eq!(
        differing(&ram, &theirs),
        0,
        "{version}: extract != source RAM"
    );
    let sessions = out
        .stderr
        .iter()
        .filter(|l| l.starts_with("TLS from "))
        .count();
    assert_eq!(sessions, 1 + usize::from(channels), "{:?}", out.stderr);
    eprintln!(
        "{version} TLS source ({channels} multifd channels) -> receive --tls-creds: {} bytes, {} TLS sessions, extract == source RAM ({} MiB)",
        q["ram"]["transferred"],
        sessions,
        ram.len() >> 20
    );
}

/// A QEMU TLS source through `proxy --tls-creds` into a QEMU TLS destination whose
/// `authz-simple` names the proxy's client certificate: the two guests' RAM is equal.
fn through_proxy(version: QemuVersion) {
    let v = vector(version);
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    shared_dir(&creds);
    let dst_cwd = guest_dir(&v);
    let mut args = adapt_accel(&v.manifest.destination_args);
    args.extend(["-incoming".to_string(), "defer".to_string()]);
    let mut dst = Qemu::spawn_version(version, &args, dst_cwd.path()).unwrap();
    dst.execute(
        "object-add",
        json!({"qom-type": "authz-simple", "id": "auth0", "identity": dn_of("source")}),
    )
    .unwrap();
    use_tls(&mut dst, &creds, "server", json!({"tls-authz": "auth0"}));
    let dst_addr = qemu_incoming_on_a_free_port(&mut dst);
    let proxy = spawn_listening(&[
        "proxy".into(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--forward".into(),
        dst_addr,
        "--tls-creds".into(),
        creds.display().to_string(),
        "--tls-authz".into(),
        dn_of("source"),
        "--json".into(),
    ]);
    let cwd = guest_dir(&v);
    let mut src = source(version, &v, cwd.path(), &creds, 0);
    migrate(&mut src, &proxy.addr, |_, _| true);
    let out = proxy.wait();
    assert!(out.status.success(), "{version}: proxy: {:?}", out.stderr);
    dst.wait_migration(Duration::from_secs(60)).unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let len = 64 << 20;
    let (a, b) = (
        physical(&mut src, tmp.path(), len),
        physical(&mut dst, tmp.path(), len),
    );
    src.quit();
    dst.quit();
    assert_eq!(
        differing(&a, &b),
        0,
        "{version}: source and destination differ"
    );
    assert_eq!(report["bytes_in"], report["bytes_out"]);
    eprintln!(
        "{version} TLS source -> proxy (TLS both sides) -> {version} TLS destination: {} bytes, guests' RAM equal",
        report["bytes_in"]
    );
}

fn version_runs(version: QemuVersion) {
    if version_or_skip("tls_interop", version).is_none() {
        return;
    }
    into_receive(version, 0);
    into_receive(version, 2);
    through_proxy(version);
}

#[test]
fn qemu_7_2_over_tls_into_receive_and_through_the_proxy() {
    version_runs(QemuVersion::V7_2);
}

#[test]
fn qemu_10_0_over_tls_into_receive_and_through_the_proxy() {
    version_runs(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_over_tls_into_receive_and_through_the_proxy() {
    version_runs(QemuVersion::V11_1);
}
