//! Live interoperability with a running QEMU 7.2 over TCP: `ramstream receive` as the
//! destination (a no-OS guest under KVM, a booted Linux guest under TCG, with and without
//! XBZRLE), `ramstream proxy` between two QEMUs (plain and `--reencode`, carrying XBZRLE), and
//! the receiver's refusals (compress, postcopy, mapped-ram, untested machine types). multifd
//! migrations, accepted since issue 14, are in `tests/multifd_interop.rs`.
//! Skipped with a printed reason where QEMU (or the Linux guest) is missing; failures under
//! `RAMSTREAM_REQUIRE_QEMU=1` (CI).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::extract_hashes;
use common::live::*;
use ramstream_codec::summary::StreamSummary;
use ramstream_codec::{Decoder, DecoderOptions, Encoder, Event, Status};
use ramstream_conformance_vectors::qemu::{
    adapt_accel, linux_guest_or_skip, load_and_resave_with, qemu_or_skip, version_or_skip, Qemu,
    QemuVersion,
};
use ramstream_conformance_vectors::{stream_block_hashes, Vector};
use serde_json::{json, Value};

/// The source QEMUs share the guest's disk image, which QEMU locks: one scenario at a time.
static QEMU_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    QEMU_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn vector(name: &str) -> Vector {
    ramstream_conformance_vectors::vector(name).unwrap()
}

/// The no-OS guest that keeps incrementing one byte in each of 128 pages (its boot.img).
fn dirtying_guest() -> Vector {
    vector("live-xbzrle")
}

/// `version`'s recording of the vector `base` (its machine types and arguments).
fn vector_of(version: QemuVersion, base: &str) -> Vector {
    vector(&version.vector_name(base))
}

/// The QEMU version that recorded `v`, which runs its arguments.
fn version_of(v: &Vector) -> QemuVersion {
    v.qemu()
        .unwrap_or_else(|| panic!("{}: not recorded from QEMU", v.manifest.name))
}

/// `ramstream receive --listen tcp:127.0.0.1:0 --extract DIR [--save-stream F] [EXTRA]`.
fn receive(extract: &Path, save: Option<&Path>, extra: &[&str]) -> Ramstream {
    let mut args = vec![
        "receive".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--extract".into(),
        extract.display().to_string(),
    ];
    if let Some(f) = save {
        args.push("--save-stream".into());
        args.push(f.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_listening(&args)
}

/// Counts the records of a stream.
fn summarise(bytes: &[u8]) -> StreamSummary {
    let mut dec = Decoder::new(DecoderOptions::default());
    dec.finish();
    let mut summary = StreamSummary::default();
    let mut pos = 0;
    loop {
        let at = dec.offset();
        match dec.decode(&bytes[pos..]).unwrap() {
            Status::Event { event, consumed } => {
                summary.observe(at, &event);
                pos += consumed;
            }
            Status::Done => return summary,
            Status::NeedMore { .. } => unreachable!("finished decoder"),
        }
    }
}

/// A source QEMU running the dirtying no-OS guest (KVM where usable).
fn source(v: &Vector, caps: &[&str], bandwidth: u64) -> Qemu {
    source_as(v, &v.manifest.source_args, caps, bandwidth)
}

/// As [`source`], with other QEMU arguments.
fn source_as(v: &Vector, args: &[String], caps: &[&str], bandwidth: u64) -> Qemu {
    let mut q = Qemu::spawn_version(version_of(v), &adapt_accel(args), &v.dir).unwrap();
    prepare(&mut q, caps, bandwidth);
    // SeaBIOS takes about two seconds to reach the boot sector: wait until its loop has
    // incremented the bytes it dirties (guest-physical 0x10000..0x90000).
    let f = tempfile::NamedTempFile::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        q.execute(
            "pmemsave",
            json!({"val": 0x10000, "size": 0x80000, "filename": f.path().display().to_string()}),
        )
        .unwrap();
        if std::fs::read(f.path()).unwrap().iter().any(|&b| b != 0) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "the no-OS guest never started dirtying memory"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Receives a live migration from `src` into `ramstream receive`, checks the receiver's
/// extract against what a fresh QEMU destination (`dst_args`) holds after loading the saved
/// stream, and returns (final query-migrate, the saved stream's summary).
fn receive_live(
    label: &str,
    version: QemuVersion,
    src: &mut Qemu,
    dst_args: &[String],
    dst_cwd: &Path,
    ready: impl Fn(&Value, Duration) -> bool,
) -> (Value, StreamSummary) {
    let tmp = tempfile::tempdir().unwrap();
    let extract = tmp.path().join("extract");
    let saved = tmp.path().join("stream.mig");
    let recv = receive(&extract, Some(&saved), &[]);
    let q = migrate(src, &recv.addr, ready);
    assert_eq!(q["status"], "completed");
    let out = recv.wait();
    assert!(
        out.status.success(),
        "ramstream receive failed: {:?}",
        out.stderr
    );
    let ours = extract_hashes(&extract);
    // What a fresh real QEMU destination holds after loading the same bytes.
    let stream = std::fs::read(&saved).unwrap();
    let resaved = load_and_resave_with(version, dst_args, dst_cwd, &saved).unwrap();
    let theirs = stream_block_hashes(&resaved).unwrap();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs, "extract differs from QEMU's destination");
    let sum = summarise(&stream);
    let r = &sum.ram.records;
    eprintln!(
        "{label}: QEMU status {}, {} bytes received; {} PAGE / {} ZERO / {} XBZRLE records, {} PART sections; QEMU: {} normal, {} duplicate, {} xbzrle pages, {} dirty syncs; {} blocks identical to QEMU's destination",
        q["status"],
        stream.len(),
        r.page,
        r.zero,
        r.xbzrle,
        sum.ram.part_sections,
        q["ram"]["normal"],
        q["ram"]["duplicate"],
        xbzrle_pages(&q),
        dirty_syncs(&q),
        ours.len()
    );
    assert_eq!(r.page, q["ram"]["normal"].as_u64().unwrap());
    assert_eq!(r.zero, q["ram"]["duplicate"].as_u64().unwrap());
    (q, sum)
}

#[test]
fn qemu_migrates_live_into_ramstream_receive() {
    if qemu_or_skip("qemu_migrates_live_into_ramstream_receive").is_none() {
        return;
    }
    let _serial = serial();
    let v = dirtying_guest();
    let mut src = source(&v, &["xbzrle"], 1_000_000);
    receive_live(
        "no-OS guest, xbzrle",
        QemuVersion::V7_2,
        &mut src,
        &v.manifest.destination_args,
        &v.dir,
        |_, t| t > Duration::from_secs(4),
    );
    src.quit();
}

/// A booted Linux guest (TCG, 128 MiB) whose init keeps changing bytes of a tmpfs file,
/// migrated live into `ramstream receive` at 10 MB/s until QEMU has synced the dirty bitmap
/// four times (and, with xbzrle, sent XBZRLE pages).
fn linux_guest_into_receive(test: &str, xbzrle: bool) {
    linux_guest_into_receive_from(test, QemuVersion::V7_2, xbzrle)
}

/// [`linux_guest_into_receive`] with a source of the given QEMU version.
fn linux_guest_into_receive_from(test: &str, version: QemuVersion, xbzrle: bool) {
    if version_or_skip(test, version).is_none() {
        return;
    }
    let _serial = serial();
    let Some(g) = linux_guest_or_skip(test) else {
        return;
    };
    let v = vector_of(version, "live-linux-xbzrle");
    let cwd = tempfile::tempdir().unwrap();
    let caps: &[&str] = if xbzrle { &["xbzrle"] } else { &[] };
    let mut src = linux_source(&g, &v, cwd.path(), caps, 10_000_000);
    let (q, sum) = receive_live(
        &format!("{version} Linux guest, xbzrle {xbzrle}"),
        version,
        &mut src,
        &g.fill(&v.manifest.destination_args),
        cwd.path(),
        |q, _| dirty_syncs(q) >= 4 && (!xbzrle || xbzrle_pages(q) >= 200),
    );
    assert!(dirty_syncs(&q) > 1, "precopy did not iterate: {q}");
    assert!(sum.ram.part_sections > 1);
    if xbzrle {
        assert!(
            sum.ram.records.xbzrle > 0,
            "no XBZRLE records in the stream"
        );
        assert!(sum.ram.records.xbzrle <= xbzrle_pages(&q));
    } else {
        assert_eq!(sum.ram.records.xbzrle, 0);
    }
    src.quit();
}

#[test]
fn linux_guest_migrates_into_receive_without_xbzrle() {
    linux_guest_into_receive("linux_guest_migrates_into_receive_without_xbzrle", false);
}

#[test]
fn linux_guest_migrates_into_receive_with_xbzrle() {
    linux_guest_into_receive("linux_guest_migrates_into_receive_with_xbzrle", true);
}

fn proxy_between_two_qemus(reencode: bool) {
    proxy_between(dirtying_guest(), QemuVersion::V7_2, reencode);
}

/// QEMU (the version that recorded `v`, running `v`'s guest) → `ramstream proxy` → QEMU
/// `dst_version` (started with `v`'s destination arguments, so the same machine type).
fn proxy_between(v: Vector, dst_version: QemuVersion, reencode: bool) {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("recorded.mig");
    let mut dst_args = adapt_accel(&v.manifest.destination_args);
    dst_args.push("-incoming".into());
    dst_args.push("defer".into());
    let mut dst = Qemu::spawn_version(dst_version, &dst_args, &v.dir).unwrap();
    let dst_addr = qemu_incoming_on_a_free_port(&mut dst);
    let mut args = vec![
        "proxy".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--forward".into(),
        dst_addr,
        "--record".into(),
        record.display().to_string(),
        "--json".into(),
        "--timeline".into(),
        tmp.path().join("t.svg").display().to_string(),
    ];
    if reencode {
        args.push("--reencode".into());
    }
    let proxy = spawn_listening(&args);
    let mut src = source(&v, &["xbzrle"], 1_000_000);
    // Precopy iterates at 1 MB/s until QEMU has sent 500 pages as XBZRLE deltas.
    let q = migrate(&mut src, &proxy.addr, |q, _| xbzrle_pages(q) >= 500);
    let out = proxy.wait();
    assert!(out.status.success(), "proxy failed: {:?}", out.stderr);
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
        "proxy {} -> {dst_version} (reencode={reencode}): QEMU sent {} bytes, the destination got {} ({:.3}); {} PART iterations, {} dirty syncs; in {} PAGE / {} ZERO / {} XBZRLE; out {} PAGE / {} ZERO / {} XBZRLE / {} skipped",
        version_of(&v), report["bytes_in"], report["bytes_out"],
        report["bytes_out"].as_f64().unwrap() / report["bytes_in"].as_f64().unwrap(),
        report["iterations"], dirty_syncs(&q), report["page"], report["zero"], report["xbzrle"],
        report["out_page"], report["out_zero"], report["out_xbzrle"], report["out_skipped_unchanged"]
    );
    // --timeline: a bar per ram section the proxy counted, their pages its records.
    let svg = std::fs::read_to_string(tmp.path().join("t.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let legend = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("legend"))
        .unwrap();
    let attr = |k: &str| legend.attribute(k).unwrap().parse::<u64>().unwrap();
    assert_eq!(
        attr("data-rounds"),
        report["ram_sections"].as_u64().unwrap()
    );
    let records = ["page", "zero", "xbzrle"].map(|k| report[k].as_u64().unwrap());
    assert_eq!(attr("data-pages"), records.iter().sum::<u64>());
    // QEMU's stream carried XBZRLE deltas, and the proxy saw every one of them.
    assert!(report["xbzrle"].as_u64().unwrap() > 0, "no XBZRLE records");
    // QEMU's xbzrle-cache pages count cache hits, including unchanged pages it sends nothing
    // for (SPEC.md §7.7): at least one per record.
    assert!(report["xbzrle"].as_u64().unwrap() <= xbzrle_pages(&q));
    if reencode {
        assert!(
            report["out_xbzrle"].as_u64().unwrap() > 0,
            "the re-encoder wrote no XBZRLE records"
        );
    } else {
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

/// Checks that a refused receive exited non-zero with one error line holding every one of
/// `expect`, and left no extract, no manifest and no saved stream behind. Returns the line.
fn assert_refused(out: &Finished, tmp: &Path, expect: &[&str]) -> String {
    assert!(!out.status.success(), "receive succeeded: {:?}", out.stderr);
    let line = out.error_line().to_string();
    for e in expect {
        assert!(line.contains(e), "{line:?} does not mention {e:?}");
    }
    assert!(
        !tmp.join("extract").join("manifest.json").exists(),
        "a failed receive left a manifest"
    );
    assert!(
        !tmp.join("extract").exists(),
        "a failed receive left an extract directory"
    );
    assert!(
        !tmp.join("stream.mig").exists(),
        "a failed receive left a stream"
    );
    line
}

/// Migrates the dirtying no-OS guest with `caps` into `ramstream receive`, runs `during`
/// once the migration is under way, and returns how the receiver ended. The source is
/// killed afterwards whatever its state.
fn refused_by_receive(
    args: &[String],
    caps: &[&str],
    extra: &[&str],
    during: impl Fn(&mut Qemu),
) -> (Finished, tempfile::TempDir) {
    let _serial = serial();
    let v = dirtying_guest();
    let tmp = tempfile::tempdir().unwrap();
    let recv = receive(
        &tmp.path().join("extract"),
        Some(&tmp.path().join("stream.mig")),
        extra,
    );
    let mut src = source_as(&v, args, caps, 1_000_000);
    src.execute("migrate", json!({ "uri": recv.addr })).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    during(&mut src);
    let out = recv.wait();
    eprintln!(
        "source after the receiver stopped: {}",
        src.execute("query-migrate", json!({})).unwrap()["status"]
    );
    (out, tmp)
}

#[test]
fn compress_is_refused_by_name() {
    if qemu_or_skip("compress_is_refused_by_name").is_none() {
        return;
    }
    let v = dirtying_guest();
    let (out, tmp) = refused_by_receive(&v.manifest.source_args, &["compress"], &[], |_| {});
    let line = assert_refused(
        &out,
        tmp.path(),
        &["at offset 0x", "compress capability", "flag 0x100"],
    );
    eprintln!("compress: {line}");
}

#[test]
fn postcopy_is_refused_once_it_starts() {
    if qemu_or_skip("postcopy_is_refused_once_it_starts").is_none() {
        return;
    }
    let v = dirtying_guest();
    let (out, tmp) = refused_by_receive(&v.manifest.source_args, &["postcopy-ram"], &[], |q| {
        q.execute("migrate-start-postcopy", json!({})).unwrap();
    });
    let line = assert_refused(
        &out,
        tmp.path(),
        &["at offset 0x", "postcopy-ram", "migrate-start-postcopy"],
    );
    eprintln!("postcopy: {line}");
}

/// A machine type the vectors do not cover: refused, unless --allow-untested-machine.
fn untested_machine_args(v: &Vector) -> Vec<String> {
    v.manifest
        .source_args
        .iter()
        .map(|a| a.replace("pc-i440fx-7.2", "pc-i440fx-7.1"))
        .collect()
}

#[test]
fn an_untested_machine_type_is_refused_unless_allowed() {
    if qemu_or_skip("an_untested_machine_type_is_refused_unless_allowed").is_none() {
        return;
    }
    let v = dirtying_guest();
    let args = untested_machine_args(&v);
    let (out, tmp) = refused_by_receive(&args, &[], &[], |_| {});
    let line = assert_refused(
        &out,
        tmp.path(),
        &[
            "at offset 0x8:",
            "\"pc-i440fx-7.1\"",
            "--allow-untested-machine",
        ],
    );
    eprintln!("untested machine: {line}");

    // Allowed: the same machine type migrates through, stopped and without a cap.
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let extract = tmp.path().join("extract");
    let recv = receive(&extract, None, &["--allow-untested-machine"]);
    let mut src = Qemu::spawn(&adapt_accel(&args), &v.dir).unwrap();
    src.execute("stop", json!({})).unwrap();
    let q = migrate(&mut src, &recv.addr, |_, _| true);
    assert_eq!(q["status"], "completed");
    let out = recv.wait();
    assert!(out.status.success(), "{:?}", out.stderr);
    assert!(extract_hashes(&extract).iter().any(|(b, _)| b == "pc.ram"));
    src.quit();
}

/// `mapped-ram` does not exist in QEMU 7.2: a stream announcing it in the configuration's
/// capabilities subsection (as QEMU 9.0+ writes it), sent over TCP.
#[test]
fn mapped_ram_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = receive(
        &tmp.path().join("extract"),
        Some(&tmp.path().join("stream.mig")),
        &[],
    );
    let mut bytes = Vec::new();
    let mut enc = Encoder::new(12);
    enc.header(&mut bytes);
    enc.event(
        &Event::Configuration(ramstream_codec::Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: Some(vec!["mapped-ram"]),
            uuid: None,
        }),
        &mut bytes,
    )
    .unwrap();
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(recv.tcp()).unwrap();
        s.write_all(&bytes).unwrap();
    }
    let out = recv.wait();
    let line = assert_refused(
        &out,
        tmp.path(),
        &[
            "at offset 0x",
            "configuration",
            "\"mapped-ram\"",
            "not supported",
        ],
    );
    eprintln!("mapped-ram: {line}");
}

#[test]
fn a_source_that_closes_early_fails_cleanly_without_an_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = receive(
        &tmp.path().join("extract"),
        Some(&tmp.path().join("stream.mig")),
        &[],
    );
    // Half a stream: header, configuration, then the connection closes.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(recv.tcp()).unwrap();
        s.write_all(b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x01\0\0\0\x02\x03ram")
            .unwrap();
    }
    let out = recv.wait();
    let line = assert_refused(&out, tmp.path(), &["nothing was extracted"]);
    eprintln!("early close: {line}");
}

/// The listening line names the address actually bound, before anything connects: the port
/// the kernel picked for `tcp:HOST:0` (proxy), the path for `unix:PATH` (receive).
#[test]
fn the_listening_line_names_the_bound_address() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("nowhere.sock");
    let proxy = spawn_listening(&[
        "proxy".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--forward".into(),
        format!("unix:{}", nowhere.display()),
    ]);
    let bound: std::net::SocketAddr = proxy.tcp().parse().unwrap();
    assert_eq!(bound.ip().to_string(), "127.0.0.1");
    assert_ne!(bound.port(), 0);
    drop(std::net::TcpStream::connect(bound).unwrap());
    let out = proxy.wait();
    assert!(!out.status.success());
    assert!(
        out.error_line().contains("cannot connect to unix:"),
        "{:?}",
        out.stderr
    );

    let sock = tmp.path().join("receive.sock");
    let recv = spawn_listening(&[
        "receive".to_string(),
        "--listen".into(),
        format!("unix:{}", sock.display()),
        "--extract".into(),
        tmp.path().join("extract").display().to_string(),
    ]);
    assert_eq!(recv.addr, format!("unix:{}", sock.display()));
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"QEVM\0\0\0\x03").unwrap();
    }
    let out = recv.wait();
    assert_refused(&out, tmp.path(), &["nothing was extracted", "unix:"]);
}

// ---------------------------------------------------------------------------------------
// Every QEMU version in use: 10.0 and 11.1 both ways (7.2's scenarios are above), and a host
// upgrade (7.2 source, newer destination at the old machine type) through the proxy.

/// A Linux guest on QEMU `version` migrates live (xbzrle) into `ramstream receive`.
fn linux_receive_from(version: QemuVersion) {
    let test = format!("qemu_{}_linux_guest_into_receive", version.label());
    linux_guest_into_receive_from(&test, version, true);
}

/// `ramstream proxy` between two QEMU `version`s, plain and re-encoding.
fn proxy_for(version: QemuVersion) {
    let test = format!("qemu_{}_proxy", version.label());
    if version_or_skip(&test, version).is_none() {
        return;
    }
    for reencode in [false, true] {
        proxy_between(vector_of(version, "live-xbzrle"), version, reencode);
    }
}

/// Host upgrade: a QEMU 7.2 source and a QEMU `to` destination, both `-M pc-i440fx-7.2`
/// (the destination supports the old machine type), `ramstream proxy` in between.
fn host_upgrade_to(to: QemuVersion) {
    let test = format!("host_upgrade_7_2_to_{}", to.label());
    if qemu_or_skip(&test).is_none() || version_or_skip(&test, to).is_none() {
        return;
    }
    for reencode in [false, true] {
        proxy_between(dirtying_guest(), to, reencode);
    }
}

#[test]
fn qemu_10_0_linux_guest_migrates_into_receive_with_xbzrle() {
    linux_receive_from(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_linux_guest_migrates_into_receive_with_xbzrle() {
    linux_receive_from(QemuVersion::V11_1);
}

#[test]
fn qemu_10_0_proxy_between_two_qemus_plain_and_reencoding() {
    proxy_for(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_proxy_between_two_qemus_plain_and_reencoding() {
    proxy_for(QemuVersion::V11_1);
}

#[test]
fn host_upgrade_7_2_to_10_0_through_the_proxy() {
    host_upgrade_to(QemuVersion::V10_0);
}

#[test]
fn host_upgrade_7_2_to_11_1_through_the_proxy() {
    host_upgrade_to(QemuVersion::V11_1);
}
