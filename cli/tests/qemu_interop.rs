//! Live interoperability with a running QEMU 7.2 over TCP: `ramstream receive` as the
//! destination, and `ramstream proxy` between two QEMUs (plain and `--reencode`).
//! Skipped with a printed reason where QEMU is missing; failures under
//! `RAMSTREAM_REQUIRE_QEMU=1` (CI).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ramstream_codec::transcode::rebuild;
use ramstream_codec::DecoderOptions;
use ramstream_conformance_vectors::qemu::{adapt_accel, load_and_resave, qemu_or_skip, Qemu};
use ramstream_conformance_vectors::{all, Vector};
use serde_json::{json, Value};

/// The source QEMUs share the guest's disk image, which QEMU locks: one scenario at a time.
static QEMU_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    QEMU_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn dirtying_guest() -> Vector {
    all()
        .unwrap()
        .into_iter()
        .find(|v| v.manifest.name == "live-xbzrle")
        .expect("live-xbzrle vector (its boot.img is the dirtying guest)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `ramstream ARGS` and waits until it says it is listening.
fn spawn_listening(args: &[String]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .expect("ramstream exited before listening")
            .unwrap();
        if line.starts_with("listening on") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("  ramstream: {l}");
        }
    });
    child
}

/// A source QEMU running the dirtying guest, with XBZRLE and a bandwidth cap.
fn source(v: &Vector, xbzrle: bool) -> Qemu {
    let mut q = Qemu::spawn(&adapt_accel(&v.manifest.source_args), &v.dir).unwrap();
    q.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "xbzrle", "state": xbzrle}]}),
    )
    .unwrap();
    q.execute(
        "migrate-set-parameters",
        json!({"max-bandwidth": 1_000_000, "downtime-limit": 1}),
    )
    .unwrap();
    // Let the boot sector start dirtying memory before migrating.
    std::thread::sleep(Duration::from_millis(1500));
    q
}

/// Migrates `src` to `uri`; after a few seconds lets it converge. Returns query-migrate.
fn migrate(src: &mut Qemu, uri: &str) -> Value {
    src.execute("migrate", json!({"uri": uri})).unwrap();
    let start = Instant::now();
    let mut relaxed = false;
    loop {
        let r = src.execute("query-migrate", json!({})).unwrap();
        match r["status"].as_str() {
            Some("completed") => return r,
            Some("failed") | Some("cancelled") => panic!("source migration failed: {r}"),
            _ => {}
        }
        if !relaxed && start.elapsed() > Duration::from_secs(4) {
            src.execute(
                "migrate-set-parameters",
                json!({"max-bandwidth": 1_000_000_000u64, "downtime-limit": 2000}),
            )
            .unwrap();
            relaxed = true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "migration never completed: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn manifest_hashes(dir: &Path) -> Vec<(String, String)> {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["idstr"].as_str().unwrap().to_string(),
                b["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hashes_of_stream(bytes: &[u8]) -> Vec<(String, String)> {
    let image = rebuild(bytes, &DecoderOptions::default()).unwrap();
    image
        .blocks()
        .iter()
        .enumerate()
        .map(|(i, b)| (b.idstr.clone(), hex::encode(image.sha256(i))))
        .collect()
}

#[test]
fn qemu_migrates_live_into_ramstream_receive() {
    if qemu_or_skip("qemu_migrates_live_into_ramstream_receive").is_none() {
        return;
    }
    let _serial = serial();
    let v = dirtying_guest();
    let tmp = tempfile::tempdir().unwrap();
    let extract = tmp.path().join("extract");
    let saved = tmp.path().join("stream.mig");
    let port = free_port();
    let mut recv = spawn_listening(&[
        "receive".into(),
        "--listen".into(),
        format!("tcp:127.0.0.1:{port}"),
        "--extract".into(),
        extract.display().to_string(),
        "--save-stream".into(),
        saved.display().to_string(),
    ]);
    let mut src = source(&v, true);
    let q = migrate(&mut src, &format!("tcp:127.0.0.1:{port}"));
    let status = recv.wait().unwrap();
    assert!(status.success(), "ramstream receive failed");
    let ours = manifest_hashes(&extract);
    // What a fresh real QEMU destination holds after loading the same bytes.
    let stream = std::fs::read(&saved).unwrap();
    let resaved = load_and_resave(&v.manifest.destination_args, &v.dir, &saved).unwrap();
    assert_eq!(
        ours,
        hashes_of_stream(&resaved),
        "extract differs from QEMU's destination"
    );
    let xbzrle_pages = q["xbzrle-cache"]["pages"].as_u64().unwrap_or(0);
    eprintln!(
        "QEMU -> ramstream receive: {} bytes, {} normal, {} duplicate, xbzrle pages {}, iterations {}",
        stream.len(),
        q["ram"]["normal"],
        q["ram"]["duplicate"],
        xbzrle_pages,
        q["ram"]["dirty-sync-count"]
    );
    src.quit();
}

fn proxy_between_two_qemus(reencode: bool) {
    let _serial = serial();
    let v = dirtying_guest();
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("recorded.mig");
    let dst_port = free_port();
    let mut dst_args = adapt_accel(&v.manifest.destination_args);
    dst_args.push("-incoming".into());
    dst_args.push(format!("tcp:127.0.0.1:{dst_port}"));
    let mut dst = Qemu::spawn(&dst_args, &v.dir).unwrap();
    let port = free_port();
    let mut args = vec![
        "proxy".to_string(),
        "--listen".into(),
        format!("tcp:127.0.0.1:{port}"),
        "--forward".into(),
        format!("tcp:127.0.0.1:{dst_port}"),
        "--record".into(),
        record.display().to_string(),
        "--json".into(),
    ];
    if reencode {
        args.push("--reencode".into());
    }
    let proxy = spawn_listening(&args);
    let mut src = source(&v, true);
    migrate(&mut src, &format!("tcp:127.0.0.1:{port}"));
    let out = proxy.wait_with_output().unwrap();
    assert!(out.status.success(), "proxy failed");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    dst.wait_migration(Duration::from_secs(60)).unwrap();
    // Both sides are stopped now (a migrated source cannot be migrated again): compare
    // the guest-physical memory each holds.
    let dump = |q: &mut Qemu| -> Vec<u8> {
        let f = tempfile::NamedTempFile::new().unwrap();
        q.execute(
            "pmemsave",
            json!({"val": 0, "size": 64u64 << 20, "filename": f.path().display().to_string()}),
        )
        .unwrap();
        std::fs::read(f.path()).unwrap()
    };
    let (a, b) = (dump(&mut src), dump(&mut dst));
    assert_eq!(a.len(), 64 << 20);
    let differing = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!(
        differing, 0,
        "{differing} guest pages differ between source and destination"
    );
    let recorded = std::fs::read(&record).unwrap();
    assert_eq!(recorded.len() as u64, report["bytes_in"].as_u64().unwrap());
    eprintln!(
        "proxy (reencode={reencode}): QEMU sent {} bytes, the destination got {} ({:.3}); {} PART iterations; in {} PAGE / {} ZERO / {} XBZRLE; out {} PAGE / {} ZERO / {} XBZRLE / {} skipped",
        report["bytes_in"], report["bytes_out"],
        report["bytes_out"].as_f64().unwrap() / report["bytes_in"].as_f64().unwrap(),
        report["iterations"], report["page"], report["zero"], report["xbzrle"],
        report["out_page"], report["out_zero"], report["out_xbzrle"], report["out_skipped_unchanged"]
    );
    if !reencode {
        assert_eq!(report["bytes_in"], report["bytes_out"]);
    }
}

#[test]
fn proxy_is_transparent_between_two_qemus() {
    if qemu_or_skip("proxy_is_transparent_between_two_qemus").is_none() {
        return;
    }
    proxy_between_two_qemus(false);
}

#[test]
fn proxy_reencodes_and_the_qemu_destination_still_matches() {
    if qemu_or_skip("proxy_reencodes_and_the_qemu_destination_still_matches").is_none() {
        return;
    }
    proxy_between_two_qemus(true);
}

#[test]
fn a_source_that_closes_early_fails_cleanly_without_an_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let extract = tmp.path().join("extract");
    let port = free_port();
    let recv = spawn_listening(&[
        "receive".into(),
        "--listen".into(),
        format!("tcp:127.0.0.1:{port}"),
        "--extract".into(),
        extract.display().to_string(),
    ]);
    // Half a stream: header, configuration, then the connection closes.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x01\0\0\0\x02\x03ram")
            .unwrap();
    }
    let out = recv.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        !extract.exists(),
        "a failed receive must not leave an extract"
    );
    let _ = PathBuf::new();
}
