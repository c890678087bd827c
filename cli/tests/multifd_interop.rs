//! multifd against real QEMU 7.2, 10.0 and 11.1 (SPEC.md §14): a booted Linux guest (TCG,
//! 128 MiB) that keeps dirtying memory migrates live with capability multifd into
//! `ramstream receive --extract` (2 channels; 4 channels, with `zero-page-detection` legacy
//! on 10.0 and 11.1) and through `ramstream proxy` into a QEMU destination of the same
//! version; the extract (or the destination's RAM) equals the source's final RAM, block by
//! block, but for the pages a QEMU 7.2 recording leaves open (sent twice in their last epoch
//! with different contents, SPEC.md §14.5), where each side must hold one of the copies. A channel of another migration (a forged connection with another uuid) is refused
//! by name, nothing is extracted, and the QEMU source sees its migration fail.
//!
//! One guest boot per version serves every run: after a migration completes, the paused
//! source's guest-physical memory is compared with the extract's `pc.ram`, and every block
//! with what a fresh QEMU destination holds after loading the recorded connections; then
//! the source is resumed for the next run. Each version's runs also time an unthrottled
//! migration with 1, 2 and 4 channels and print it. Skipped with a printed reason where a
//! QEMU version or the Linux guest is missing; failures under `RAMSTREAM_REQUIRE_QEMU=1`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::extract_hashes;
use common::live::*;
use common::open_pages::{block_bytes, OpenPages};
use common::timeline::timeline_counts;
use ramstream_codec::{transcode, DecoderOptions, RamImage};
use ramstream_conformance_vectors::qemu::{
    linux_guest_or_skip, version_or_skip, LinuxGuest, Qemu, QemuVersion,
};
use ramstream_conformance_vectors::{stream_block_hashes, Vector};
use serde_json::{json, Value};

/// The Linux guests share nothing, but two TCG guests at once on 2 cores slow each other
/// down past the migrations' patience: one version at a time.
static QEMU_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    QEMU_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a run sets multifd up on the source (and a QEMU destination).
#[derive(Clone, Copy, Debug)]
struct Setup {
    channels: u8,
    /// `zero-page-detection` `legacy` (QEMU 9.0+): zero pages as ZERO records on the main
    /// stream instead of in the channels' packets.
    legacy_zero: bool,
}

/// Turns multifd on (`channels`) or off (0), with the zero-page detection asked for.
fn set_multifd(q: &mut Qemu, version: QemuVersion, s: Setup) {
    let on = s.channels > 0;
    q.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "multifd", "state": on}]}),
    )
    .unwrap();
    if on {
        let mut p = json!({"multifd-channels": s.channels});
        if version != QemuVersion::V7_2 {
            p["zero-page-detection"] = json!(if s.legacy_zero { "legacy" } else { "multifd" });
        }
        q.execute("migrate-set-parameters", p).unwrap();
    }
}

/// Limits the bandwidth so that precopy iterates until [`migrate`] relaxes it.
fn throttle(q: &mut Qemu, bandwidth: u64) {
    q.execute(
        "migrate-set-parameters",
        json!({"max-bandwidth": bandwidth, "downtime-limit": 1}),
    )
    .unwrap();
}

/// Guest-physical memory 0..128 MiB of a paused QEMU (`pmemsave`).
fn physical_ram(q: &mut Qemu, dir: &Path) -> Vec<u8> {
    let f = dir.join("pmem.bin");
    q.execute(
        "pmemsave",
        json!({"val": 0, "size": RAM, "filename": f.display().to_string()}),
    )
    .unwrap();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::remove_file(&f).unwrap();
    assert_eq!(bytes.len() as u64, RAM);
    bytes
}

/// The guest's RAM size (`-m 128`).
const RAM: u64 = 128 << 20;

/// Pages of `pc.ram` (an extract's `pc.ram.ram`) that differ from guest-physical memory
/// `physical`, leaving out 640 KiB to 1 MiB, where the guest sees ROM and device windows
/// rather than `pc.ram`.
fn differing_pages(extract: &Path, physical: &[u8]) -> usize {
    let ram = std::fs::read(extract.join("pc.ram.ram")).unwrap();
    assert_eq!(ram.len() as u64, RAM);
    ram.chunks(4096)
        .zip(physical.chunks(4096))
        .enumerate()
        .filter(|(i, (a, b))| !(0xa0..0x100).contains(i) && a != b)
        .count()
}

/// What a fresh QEMU destination of `version`, set up for multifd `s`, holds after
/// loading the multi-file recording `saved` (main stream first, then the channels, all sent
/// at once): its RAM migrated again, without multifd, to a file, hashed per block.
fn qemu_loads_recording(
    version: QemuVersion,
    (g, v): (&LinuxGuest, &Vector),
    s: Setup,
    saved: &Path,
    dir: &Path,
) -> Loaded {
    let mut args = g.fill(&v.manifest.destination_args);
    args.extend(["-incoming".into(), "defer".into()]);
    let mut dst = Qemu::spawn_version(version, &args, dir).unwrap();
    set_multifd(&mut dst, version, s);
    let addr = qemu_incoming_on_a_free_port(&mut dst);
    let addr = addr.strip_prefix("tcp:").unwrap().to_string();
    let mut files = vec![std::fs::read(saved).unwrap()];
    for id in 0..s.channels {
        files.push(std::fs::read(format!("{}.multifd-{id}", saved.display())).unwrap());
    }
    // QEMU 7.2 takes the first connection for the main stream.
    let conns: Vec<_> = files
        .into_iter()
        .map(|b| (std::net::TcpStream::connect(&addr).unwrap(), b))
        .collect();
    let writers: Vec<_> = conns
        .into_iter()
        .map(|(mut c, b)| {
            std::thread::spawn(move || {
                c.write_all(&b).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                // Keep the connection until QEMU closes it.
                let _ = std::io::copy(&mut c, &mut std::io::sink());
            })
        })
        .collect();
    dst.wait_migration(Duration::from_secs(120)).unwrap();
    let loaded = resave(&mut dst, version, dir);
    dst.quit();
    for w in writers {
        w.join().unwrap();
    }
    loaded
}

/// A paused destination's RAM, block by block: migrated once more, without multifd, to a
/// file whose blocks are hashed.
fn resave(q: &mut Qemu, version: QemuVersion, dir: &Path) -> Loaded {
    set_multifd(
        q,
        version,
        Setup {
            channels: 0,
            legacy_zero: false,
        },
    );
    let f = dir.join("resaved.mig");
    q.execute(
        "migrate",
        json!({"uri": format!("exec:cat > '{}'", f.display())}),
    )
    .unwrap();
    q.wait_migration(Duration::from_secs(120)).unwrap();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::remove_file(&f).unwrap();
    Loaded {
        hashes: stream_block_hashes(&bytes).unwrap(),
        image: transcode::rebuild(&bytes, &DecoderOptions::default()).unwrap(),
    }
}

/// What a QEMU destination held: its blocks' hashes and the blocks.
struct Loaded {
    hashes: Vec<(String, String)>,
    image: RamImage,
}

/// Checks that the extract in `dir` (block hashes `ours`) holds what the QEMU destination
/// `qemu` holds, given recording `recording`: equal hashes; where a block differs, every
/// page must be equal but the recording's open pages (`common::open_pages`), where each
/// side must hold one of the copies. Returns how many open pages the two sides resolved
/// differently.
fn same_as_qemu(
    label: &str,
    dir: &Path,
    ours: &[(String, String)],
    qemu: &Loaded,
    recording: &Path,
) -> usize {
    if ours == qemu.hashes.as_slice() {
        return 0;
    }
    let names: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    let theirs: Vec<&String> = qemu.hashes.iter().map(|(n, _)| n).collect();
    assert_eq!(names, theirs, "{label}: the blocks differ");
    let open = OpenPages::of_recording(recording);
    let manifest = common::json_file(&dir.join("manifest.json"));
    let mut differing = 0;
    let mut errors = Vec::new();
    for (((name, a), (_, b)), entry) in ours
        .iter()
        .zip(&qemu.hashes)
        .zip(manifest["blocks"].as_array().unwrap())
    {
        if a == b {
            continue;
        }
        let file = dir.join(entry["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        match open.compare(name, &bytes, &block_bytes(&qemu.image, name)) {
            Ok(n) => differing += n,
            Err(e) => errors.push(e),
        }
    }
    assert!(
        errors.is_empty(),
        "{label}: extract differs from what QEMU loads ({} page(s) the recording leaves open, {} written twice in one epoch): {}",
        open.len(),
        open.repeated,
        errors.join("; ")
    );
    eprintln!(
        "{label}: {differing} page(s) written twice with different contents in their last epoch hold the other copy than QEMU's (both are the stream's)"
    );
    differing
}

/// The `multifd channel N from PEER: B bytes, K packets, P pages, Z zero pages, S SYNC`
/// lines `receive --extract` printed.
fn channel_lines(stderr: &[String]) -> Vec<String> {
    stderr
        .iter()
        .filter(|l| l.starts_with("multifd channel ") && l.ends_with(" SYNC"))
        .cloned()
        .collect()
}

/// Checks a `--timeline` SVG of a multifd migration: the bars of its pages panel (one per
/// `ram` section) add up to the main stream's page records and the channels' pages, and the
/// legend counts the channels' pages and bytes apart. How many bars hold pages, for the
/// summary.
fn check_timeline(label: &str, svg: &Path, main_pages: u64, channels: &[Value]) -> usize {
    let t = timeline_counts(svg);
    let bars = t.bars;
    let sum = |f: &dyn Fn(&Value) -> u64| channels.iter().map(f).sum::<u64>();
    let channel_pages = sum(&|c| c["pages"].as_u64().unwrap() + c["zero_pages"].as_u64().unwrap());
    let channel_bytes = sum(&|c| c["bytes"].as_u64().unwrap());
    let total: u64 = bars.iter().sum();
    assert_eq!(
        total,
        main_pages + channel_pages,
        "{label}: timeline pages {bars:?}; main stream {main_pages}, channels {channel_pages}"
    );
    assert!(total > main_pages, "{label}: {bars:?}");
    assert_eq!(t.multifd_pages, Some(channel_pages), "{label}");
    assert_eq!(t.multifd_bytes, Some(channel_bytes), "{label}");
    bars.iter().filter(|b| **b > 0).count()
}

/// One live migration of the running source `src` into `ramstream receive --extract`,
/// throttled so that it does dirty rounds; checks the extract (and the recording's
/// extract) against the source's final RAM; resumes the source. Returns a line for the
/// summary.
fn into_receive(
    label: &str,
    version: QemuVersion,
    guest: (&LinuxGuest, &Vector),
    src: &mut Qemu,
    s: Setup,
    extra: &[&str],
) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let extract = tmp.path().join("extract");
    let saved = tmp.path().join("saved.mig");
    let svg = tmp.path().join("t.svg");
    let mut args = vec![
        "receive".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--extract".into(),
        extract.display().to_string(),
        "--save-stream".into(),
        saved.display().to_string(),
        "--timeline".into(),
        svg.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let recv = spawn_listening(&args);
    set_multifd(src, version, s);
    throttle(src, 20_000_000);
    let t = Instant::now();
    let q = migrate(src, &recv.addr, |q, t| {
        dirty_syncs(q) >= 3 || t > Duration::from_secs(15)
    });
    let took = t.elapsed();
    let out = recv.wait();
    assert!(
        out.status.success(),
        "{label}: ramstream receive failed: {:?}",
        out.stderr
    );
    assert!(dirty_syncs(&q) > 1, "{label}: precopy did not iterate: {q}");
    // The source's final RAM as the existing interop tests take it: every block as a real
    // QEMU destination holds it after loading the same bytes (here the recorded main stream
    // and channels, replayed). The source's own guest-physical memory is compared too, for
    // the report only: under TCG a live source's final memory can differ in a few pages
    // from what it sent (its QEMU destination differs from it the same way, see the proxy).
    let physical = physical_ram(src, tmp.path());
    let from_source = differing_pages(&extract, &physical);
    let ours = extract_hashes(&extract);
    let source = qemu_loads_recording(version, guest, s, &saved, tmp.path());
    let open_differing = same_as_qemu(label, &extract, &ours, &source, &saved);
    let lines = channel_lines(&out.stderr);
    assert_eq!(
        lines.len(),
        usize::from(s.channels),
        "{label}: {:?}",
        out.stderr
    );
    // The multi-file recording reads back: the same RAM, the same channels.
    let again = tmp.path().join("again");
    let o = common::ramstream(&[Path::new("extract"), &saved, Path::new("--out"), &again]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_as_qemu(
        &format!("{label} (the recording's extract)"),
        &again,
        &extract_hashes(&again),
        &source,
        &saved,
    );
    let j: Value = serde_json::from_str(&common::ok(&common::ramstream(&[
        Path::new("inspect"),
        Path::new("--json"),
        &saved,
    ])))
    .unwrap();
    let m = &j["multifd"];
    let zero_on_main = j["ram"]["records"]["zero"].as_u64().unwrap_or(0);
    let per: Vec<String> = m["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "ch{} {} B {} pages {} zero {} SYNC",
                c["id"], c["bytes"], c["pages"], c["zero_pages"], c["syncs"]
            )
        })
        .collect();
    for c in m["channels"].as_array().unwrap() {
        assert_eq!(c["syncs"], m["sync_points"], "{label}: {m}");
    }
    let main_pages = ["page", "zero", "xbzrle"]
        .iter()
        .map(|k| j["ram"]["records"][k].as_u64().unwrap_or(0))
        .sum::<u64>();
    let sections_with_pages =
        check_timeline(label, &svg, main_pages, m["channels"].as_array().unwrap());
    if s.legacy_zero || version == QemuVersion::V7_2 {
        assert!(
            zero_on_main > 0,
            "{label}: no ZERO record on the main stream"
        );
    } else {
        assert_eq!(
            zero_on_main, 0,
            "{label}: ZERO records with zero-page-detection multifd"
        );
    }
    let summary = format!(
        "{label}: {:.1} s, {} dirty syncs, {} sync points ({}), main stream {} B with {} ZERO; {}; timeline: pages in {sections_with_pages} ram section(s); QEMU: {} normal, {} duplicate, multifd-bytes {}; {} blocks equal to what QEMU loads but for {} page(s) QEMU 7.2 wrote twice in one epoch (pc.ram pages differing from the source's memory: {})",
        took.as_secs_f64(),
        dirty_syncs(&q),
        m["sync_points"],
        m["sync_mode"].as_str().unwrap_or("?"),
        j["stream_len"],
        zero_on_main,
        per.join(", "),
        q["ram"]["normal"],
        q["ram"]["duplicate"],
        q["ram"]["multifd-bytes"],
        ours.len(),
        open_differing,
        from_source
    );
    eprintln!("{summary}");
    src.execute("cont", json!({})).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    summary
}

/// One live migration of `src` through `ramstream proxy` into a QEMU destination of the same
/// version, both with multifd `s`; the destination's RAM must equal the source's.
fn through_proxy(
    label: &str,
    version: QemuVersion,
    g: &LinuxGuest,
    v: &Vector,
    src: &mut Qemu,
    s: Setup,
) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut dst_args = g.fill(&v.manifest.destination_args);
    dst_args.push("-incoming".into());
    dst_args.push("defer".into());
    let mut dst = Qemu::spawn_version(version, &dst_args, tmp.path()).unwrap();
    set_multifd(&mut dst, version, s);
    let dst_addr = qemu_incoming_on_a_free_port(&mut dst);
    let rec = tmp.path().join("rec.mig");
    let svg = tmp.path().join("t.svg");
    let proxy = spawn_listening(&[
        "proxy".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--forward".into(),
        dst_addr,
        "--record".into(),
        rec.display().to_string(),
        "--json".into(),
        "--timeline".into(),
        svg.display().to_string(),
    ]);
    set_multifd(src, version, s);
    throttle(src, 20_000_000);
    let t = Instant::now();
    let q = migrate(src, &proxy.addr, |q, t| {
        dirty_syncs(q) >= 3 || t > Duration::from_secs(15)
    });
    let took = t.elapsed();
    let out = proxy.wait();
    assert!(
        out.status.success(),
        "{label}: proxy failed: {:?}",
        out.stderr
    );
    dst.wait_migration(Duration::from_secs(60)).unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a, b) = (
        physical_ram(src, tmp.path()),
        physical_ram(&mut dst, tmp.path()),
    );
    let differing = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| x != y)
        .count();
    // The source's and the destination's guest-physical memory are compared for the report
    // (see `into_receive`); every block of the destination must equal ramstream's extract of
    // the bytes the proxy forwarded.
    let dest = resave(&mut dst, version, tmp.path());
    let out_dir = tmp.path().join("extract");
    let o = common::ramstream(&[Path::new("extract"), &rec, Path::new("--out"), &out_dir]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let open_differing = same_as_qemu(
        &format!("{label} (the recording's extract)"),
        &out_dir,
        &extract_hashes(&out_dir),
        &dest,
        &rec,
    );
    let m = &report["multifd"];
    let chans = m["channels"].as_array().unwrap();
    assert_eq!(chans.len(), usize::from(s.channels), "{label}: {report}");
    let per: Vec<String> = chans
        .iter()
        .map(|c| {
            assert_eq!(c["syncs"], m["sync_points"], "{label}: {report}");
            format!(
                "ch{} {} B {} pages {} zero {} SYNC",
                c["id"], c["bytes"], c["pages"], c["zero_pages"], c["syncs"]
            )
        })
        .collect();
    let main_pages = ["page", "zero", "xbzrle"]
        .iter()
        .map(|k| report[k].as_u64().unwrap())
        .sum::<u64>();
    let sections_with_pages = check_timeline(label, &svg, main_pages, chans);
    let summary = format!(
        "{label}: {:.1} s, {} dirty syncs, main {} B, {} sync points; {}; timeline: pages in {sections_with_pages} ram section(s); the destination's {} blocks equal to the recording's extract but for {} page(s) written twice in one epoch (guest pages differing between the source and destination QEMUs: {})",
        took.as_secs_f64(),
        dirty_syncs(&q),
        report["bytes_in"],
        m["sync_points"],
        per.join(", "),
        dest.hashes.len(),
        open_differing,
        differing
    );
    eprintln!("{summary}");
    dst.quit();
    src.execute("cont", json!({})).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    summary
}

/// An unthrottled migration of `src` into `receive --extract` with `channels` (0: without
/// multifd); the wall time until ramstream had written its extract, QEMU's total-time, and
/// how many pages of the extract's `pc.ram` differ from the source's memory.
fn timed(version: QemuVersion, src: &mut Qemu, channels: u8) -> (Duration, u64, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let recv = spawn_listening(&[
        "receive".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--extract".into(),
        tmp.path().join("extract").display().to_string(),
    ]);
    set_multifd(
        src,
        version,
        Setup {
            channels,
            legacy_zero: false,
        },
    );
    src.execute(
        "migrate-set-parameters",
        json!({"max-bandwidth": 10_000_000_000u64, "downtime-limit": 300}),
    )
    .unwrap();
    let t = Instant::now();
    let q = migrate(src, &recv.addr, |_, _| true);
    let out = recv.wait();
    let took = t.elapsed();
    assert!(out.status.success(), "{:?}", out.stderr);
    let physical = physical_ram(src, tmp.path());
    let differing = differing_pages(&tmp.path().join("extract"), &physical);
    src.execute("cont", json!({})).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (took, q["total-time"].as_u64().unwrap_or(0), differing)
}

/// Every run for one QEMU version, on one booted guest.
fn version_runs(version: QemuVersion) {
    let test = format!("qemu_{}_multifd", version.label());
    if version_or_skip(&test, version).is_none() {
        return;
    }
    let _serial = serial();
    let Some(g) = linux_guest_or_skip(&test) else {
        return;
    };
    let v =
        ramstream_conformance_vectors::vector(&version.vector_name("live-linux-xbzrle")).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut src = linux_source(&g, &v, cwd.path(), &[], 20_000_000);
    let booted = started.elapsed();
    let label = |what: &str| format!("{version} {what}");
    let mut summary = Vec::new();
    summary.push(into_receive(
        &label("multifd 2 channels -> receive"),
        version,
        (&g, &v),
        &mut src,
        Setup {
            channels: 2,
            legacy_zero: false,
        },
        &[],
    ));
    let legacy = version != QemuVersion::V7_2;
    summary.push(into_receive(
        &label(if legacy {
            "multifd 4 channels, zero-page-detection legacy -> receive --multifd-channels 4"
        } else {
            "multifd 4 channels -> receive --multifd-channels 4"
        }),
        version,
        (&g, &v),
        &mut src,
        Setup {
            channels: 4,
            legacy_zero: legacy,
        },
        &["--multifd-channels", "4"],
    ));
    summary.push(through_proxy(
        &label("multifd 2 channels -> proxy -> QEMU"),
        version,
        &g,
        &v,
        &mut src,
        Setup {
            channels: 2,
            legacy_zero: false,
        },
    ));
    let times: Vec<String> = [0u8, 2, 4]
        .into_iter()
        .map(|n| {
            let (wall, qemu_ms, differing) = timed(version, &mut src, n);
            format!(
                "{} channel(s): {:.2} s (QEMU total-time {qemu_ms} ms; pc.ram pages differing from the source's memory: {differing})",
                if n == 0 { 1 } else { n },
                wall.as_secs_f64()
            )
        })
        .collect();
    summary.push(format!(
        "{version} unthrottled into receive --extract, same guest: {}",
        times.join("; ")
    ));
    src.quit();
    eprintln!(
        "\n{version}: boot {:.1} s, all runs {:.1} s\n  {}",
        booted.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        summary.join("\n  ")
    );
}

#[test]
fn qemu_7_2_multifd_into_receive_and_through_the_proxy() {
    version_runs(QemuVersion::V7_2);
}

#[test]
fn qemu_10_0_multifd_into_receive_and_through_the_proxy() {
    version_runs(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_multifd_into_receive_and_through_the_proxy() {
    version_runs(QemuVersion::V11_1);
}

/// A channel of another migration: before QEMU migrates, a forged multifd connection (the
/// initial packet of another uuid) reaches `receive --extract`. The source sends its uuid in
/// the main stream (`-uuid`, capability `validate-uuid`), so the forged channel is refused
/// by name whichever connects first; nothing is extracted and the source's migration fails.
#[test]
fn a_forged_channel_of_another_migration_is_refused_and_the_source_fails() {
    let version = QemuVersion::V11_1;
    let test = "a_forged_channel_of_another_migration_is_refused_and_the_source_fails";
    if version_or_skip(test, version).is_none() {
        return;
    }
    let _serial = serial();
    let Some(g) = linux_guest_or_skip(test) else {
        return;
    };
    let v =
        ramstream_conformance_vectors::vector(&version.vector_name("live-linux-xbzrle")).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut args = v.manifest.source_args.clone();
    args.extend([
        "-uuid".into(),
        "11111111-2222-3333-4444-555555555555".into(),
    ]);
    let mut v2 = v.clone();
    v2.manifest.source_args = args;
    let mut src = linux_source(&g, &v2, cwd.path(), &["validate-uuid"], 20_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let recv = spawn_listening(&[
        "receive".to_string(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--extract".into(),
        tmp.path().join("extract").display().to_string(),
        "--save-stream".into(),
        tmp.path().join("saved.mig").display().to_string(),
    ]);
    let mut forged = std::net::TcpStream::connect(recv.tcp()).unwrap();
    let mut init = [0u8; 64];
    init[..8].copy_from_slice(b"\x11\x22\x33\x44\0\0\0\x01");
    init[8..24].copy_from_slice(&[0x99; 16]);
    forged.write_all(&init).unwrap();
    set_multifd(
        &mut src,
        version,
        Setup {
            channels: 2,
            legacy_zero: false,
        },
    );
    src.execute("migrate", json!({"uri": recv.addr})).unwrap();
    let out = recv.wait();
    assert!(
        !out.status.success(),
        "receive took a forged channel: {:?}",
        out.stderr
    );
    let line = out.error_line().to_string();
    for want in [
        "nothing was extracted",
        "at offset 0x8",
        "multifd channel of another migration: uuid 99999999-",
        "expected 11111111-2222-3333-4444-555555555555",
    ] {
        assert!(line.contains(want), "{line:?} does not say {want:?}");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused receive left {left:?}");
    // The source sees its connections closed: its migration fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let q = src.execute("query-migrate", json!({})).unwrap();
        let s = q["status"].as_str().unwrap_or("").to_string();
        if s == "failed" || s == "completed" || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, "failed", "the source's migration did not fail");
    eprintln!("forged channel: {line}; the source's migration: {status}");
    drop(forged);
    src.quit();
}
