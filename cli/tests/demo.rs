//! The whole demo on real KVM: the built binary migrates a running guest to a receiver child
//! process and reports it verified. Skipped (with the reason printed) where /dev/kvm is not
//! usable, unless `RAMSTREAM_REQUIRE_KVM=1`.

use std::process::Command;

use ramstream_codec::balloon::PageRun;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86;
use serde_json::Value;

fn kvm_usable() -> bool {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    ramstream_conformance_vectors::qemu::kvm_or_skip(open.map(drop))
}

fn demo(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .arg("demo")
        .arg("--json")
        .args(args)
        .output()
        .expect("run ramstream demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[test]
fn demo_migrates_a_ballooned_guest_and_verifies_it() {
    if !kvm_usable() {
        return;
    }
    let v = demo(&["--mem", "256M", "--balloon-percent", "50"]);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["verified"], true);
    assert_eq!(v["guest_resumed"], true);
    let ram = &v["ram"];
    let total = ram["total"].as_u64().unwrap();
    assert_eq!(total, 256 << 20);
    // Half of RAM is ballooned and never read.
    let pages = PageRun::of_block(total, TARGET_PAGE_SIZE_X86).count;
    assert!(ram["ballooned_skipped"].as_u64().unwrap() >= pages / 2);
    assert!(ram["pages_visited"].as_u64().unwrap() <= pages);
    assert!(ram["normal"].as_u64().unwrap() > 0);
    assert!(ram["duplicate"].as_u64().unwrap() > 0);
    assert!(ram["transferred"].as_u64().unwrap() < total / 2);
    assert!(v["downtime_ms"].as_f64().unwrap() > 0.0);
    assert!(v["total_time_ms"].as_f64().unwrap() >= v["downtime_ms"].as_f64().unwrap());
    let r = &v["receiver"];
    assert_eq!(r["digest_verified"], true);
    assert_eq!(r["verification"]["self_check_passed"], true);
    assert_eq!(r["verification"]["bad_pages"], 0);
    assert!(v.get("xbzrle-cache").is_none());
}

#[test]
fn demo_with_xbzrle_and_forced_iterations() {
    if !kvm_usable() {
        return;
    }
    let v = demo(&[
        "--mem",
        "128M",
        "--balloon-percent",
        "90",
        "--xbzrle",
        "--downtime-limit",
        "0",
        "--max-iterations",
        "3",
    ]);
    assert_eq!(v["verified"], true);
    assert_eq!(v["guest_resumed"], true);
    // A zero downtime limit converges only when a sync finds nothing dirty at all.
    let iterations = v["iterations"].as_u64().unwrap();
    assert!(iterations <= 3);
    assert!(iterations == 3 || v["converged"] == true, "{v}");
    let x = &v["xbzrle-cache"];
    assert!(x["cache-size"].as_u64().unwrap() > 0);
    if iterations > 0 {
        // Dirty pages went through the cache after the bulk stage.
        assert!(x["pages"].as_u64().unwrap() + x["cache-miss"].as_u64().unwrap() > 0);
    }
    // Setup sync, one after the bulk stage and after each iteration, the final one.
    assert_eq!(
        v["ram"]["dirty-sync-count"].as_u64().unwrap(),
        iterations + 3
    );
}

#[test]
fn send_survives_a_receiver_that_hangs_up() {
    if !kvm_usable() {
        return;
    }
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 200_000];
        s.read_exact(&mut buf).unwrap();
        // Hang up in the middle of the bulk stage.
    });
    let out = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args([
            "send",
            &format!("tcp:{addr}"),
            "--mem",
            "64M",
            "--warmup-ms",
            "0",
            // 16 MiB of written pages to send, far more than the socket buffers hold, so the
            // hang-up is met in the bulk stage (untouched pages cost 9 bytes each).
            "--quiesce",
            "--working-set",
            "4096",
            "--pages-per-loop",
            "4096",
            "--delay-loops",
            "0",
        ])
        .output()
        .expect("run ramstream send");
    t.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("migration failed in bulk stage"), "{err}");
    assert!(err.contains("source guest keeps running"), "{err}");
    assert!(err.contains("source guest: Running"), "{err}");
}

#[test]
fn file_transport_round_trip_and_corrupted_digest_refused() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guest.mig");
    let uri = format!("file:{}", file.display());
    let bin = env!("CARGO_BIN_EXE_ramstream");
    let out = Command::new(bin)
        .args(["send", &uri, "--mem", "64M", "--warmup-ms", "100", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = Command::new(bin)
        .args(["receive", "--listen", &uri, "--json"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&ok.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(v["guest_resumed"], true);
    // The stream ends `… digest(32) 7e be32(id) 00`: flip a bit of the last digest byte.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 7] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let bad = Command::new(bin)
        .args(["receive", "--listen", &uri, "--json"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("RAM digest mismatch") && err.contains("refusing to resume"),
        "{err}"
    );
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&bad.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(v["guest_resumed"], false);
    // A stream cut short is refused as well.
    std::fs::write(&file, &bytes[..n / 2]).unwrap();
    let cut = Command::new(bin)
        .args(["receive", "--listen", &uri])
        .output()
        .unwrap();
    assert!(!cut.status.success());
    assert!(String::from_utf8_lossy(&cut.stderr).contains("ended early"));
}

/// `send --quiesce` starts migrating only once the guest writes at its quiesced rate (about
/// one page a second): a guest rewriting its whole working set per main-loop iteration leaves
/// next to nothing dirty after the bulk round (it left over a thousand pages when the
/// migration began while that iteration was still writing).
#[test]
fn a_quiesced_guest_has_stopped_writing_when_the_migration_starts() {
    if !kvm_usable() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_ramstream");
    let out = Command::new(bin)
        .args([
            "send",
            "file:/dev/null",
            "--mem",
            "256M",
            "--balloon-percent",
            "0",
            "--max-bandwidth",
            "0",
            "--quiesce",
            "--working-set",
            "4096",
            "--pages-per-loop",
            "4096",
            "--delay-loops",
            "0",
            "--warmup-ms",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let round = &v["rounds"][0];
    let secs = round["duration_ms"].as_f64().unwrap() / 1e3;
    let dirty = round["dirty_after"].as_u64().unwrap();
    // Each quiesced iteration (one a second) writes a working-set page and its counters'
    // page; the iteration under way when the log started adds as much.
    assert!(
        (dirty as f64) <= 2.0 * secs.ceil() + 2.0,
        "{dirty} pages dirty after a {secs:.2} s bulk round: {v}"
    );
    // The working set went once, in the bulk round (4096 pages, plus the guest's own).
    assert!(v["ram"]["normal"].as_u64().unwrap() < 4096 + 64, "{v}");
}
