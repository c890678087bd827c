//! multifd in the commands, without QEMU (SPEC.md §14): every multifd vector recorded from
//! QEMU 7.2, 10.0 and 11.1, as a multi-file recording (`F`, `F.multifd-<id>`, §14.9), is
//! extracted equal to the destination QEMU's RAM and inspected with its per-channel counts;
//! the same connections replayed over TCP into `ramstream receive --extract` and through
//! `ramstream proxy` (their `--timeline` rounds holding the channels' pages); and every
//! refusal (compression, a channel of another migration, a duplicate id, a channel cut short
//! or closed early, the main stream without its channels) names the channel and leaves
//! nothing behind; and (on KVM) the reference sender's multifd
//! migration into `receive --multifd-channels N`, resumed. The real-QEMU runs are in
//! `tests/multifd_interop.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use common::timeline::timeline_counts;
use common::{extract_hashes, ok, ramstream};
use ramstream_conformance_vectors::Vector;
use serde_json::Value;

/// A multifd vector: its manifest, main stream and channels (by id).
struct Recording {
    v: Vector,
    main: Vec<u8>,
    channels: Vec<Vec<u8>>,
}

impl Recording {
    fn name(&self) -> &str {
        &self.v.manifest.name
    }

    fn compression(&self) -> &str {
        let m = self.v.manifest.multifd.as_ref().unwrap();
        m.compression.as_deref().unwrap_or("none")
    }

    /// Writes `F` and `F.multifd-<id>` into `dir`; returns `F`.
    fn write(&self, dir: &Path) -> PathBuf {
        let f = dir.join("vm.mig");
        std::fs::write(&f, &self.main).unwrap();
        for (id, c) in self.channels.iter().enumerate() {
            std::fs::write(channel_file(&f, id as u8), c).unwrap();
        }
        f
    }
}

fn channel_file(f: &Path, id: u8) -> PathBuf {
    PathBuf::from(format!("{}.multifd-{id}", f.display()))
}

fn recordings() -> Vec<Recording> {
    let mut out: Vec<_> = ramstream_conformance_vectors::all()
        .unwrap()
        .into_iter()
        .filter(Vector::is_multifd)
        .map(|v| Recording {
            main: v.stream().unwrap(),
            channels: v.channels().unwrap(),
            v,
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    assert!(out.len() >= 12);
    out
}

fn recording(name: &str) -> Recording {
    recordings().into_iter().find(|r| r.name() == name).unwrap()
}

fn extract(f: &Path, out: &Path) -> std::process::Output {
    ramstream(&[Path::new("extract"), f, Path::new("--out"), out])
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn extract_of_every_multifd_recording_equals_the_qemu_destination() {
    for r in recordings() {
        let tmp = tempfile::tempdir().unwrap();
        let f = r.write(tmp.path());
        let dir = tmp.path().join("extract");
        let out = extract(&f, &dir);
        if r.compression() != "none" {
            let err = stderr(&out);
            assert!(!out.status.success(), "{}: {err}", r.name());
            assert!(
                err.contains("multifd channel ") && err.contains("zstd"),
                "{}: {err}",
                r.name()
            );
            assert!(
                !dir.exists(),
                "{}: a refused extract left {dir:?}",
                r.name()
            );
            eprintln!("{}: {}", r.name(), err.trim());
            continue;
        }
        assert!(out.status.success(), "{}: {}", r.name(), stderr(&out));
        assert_eq!(
            extract_hashes(&dir),
            r.v.block_hashes(),
            "{}: extract differs from QEMU's destination",
            r.name()
        );
        let m = r.v.manifest.multifd.as_ref().unwrap();
        let err = stderr(&out);
        for c in &m.channel_files {
            let line = format!("multifd channel {}: {} bytes, ", c.id, c.len);
            assert!(err.contains(&line), "{}: {line:?} not in {err}", r.name());
        }
        eprintln!(
            "{}: extract equal to QEMU's ({} channels)",
            r.name(),
            m.channels
        );
    }
}

#[test]
fn inspect_of_a_multifd_recording_counts_every_channel() {
    for r in recordings() {
        if r.compression() != "none" {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let f = r.write(tmp.path());
        let j: Value = serde_json::from_str(&ok(&ramstream(&[
            Path::new("inspect"),
            Path::new("--json"),
            &f,
        ])))
        .unwrap();
        let m = r.v.manifest.multifd.as_ref().unwrap();
        let mf = &j["multifd"];
        assert_eq!(mf["sync_points"].as_u64(), m.sync_points, "{}", r.name());
        assert_eq!(
            mf["uuid"].as_str().map(str::to_string),
            m.uuid.as_ref().map(|u| u.replace('-', "")),
            "{}",
            r.name()
        );
        let chans = mf["channels"].as_array().unwrap();
        assert_eq!(chans.len(), m.channel_files.len());
        for (c, want) in chans.iter().zip(&m.channel_files) {
            assert_eq!(c["id"].as_u64(), Some(u64::from(want.id)));
            assert_eq!(c["bytes"].as_u64(), Some(want.len), "{}", r.name());
            assert_eq!(c["syncs"].as_u64(), want.sync_packets, "{}", r.name());
            assert_eq!(c["pages"].as_u64(), want.normal_pages, "{}", r.name());
            assert_eq!(
                c["zero_pages"].as_u64(),
                Some(want.zero_pages.unwrap_or(0)),
                "{}",
                r.name()
            );
            assert_eq!(c["packets"].as_u64(), want.packets, "{}", r.name());
        }
        // The human summary has a line per channel.
        let text = ok(&ramstream(&[Path::new("inspect"), &f]));
        assert!(
            text.contains(&format!("multifd: {} channels", m.channels)),
            "{text}"
        );
    }
}

/// Runs `extract` on the recording of `name` after `edit` changed its files; the error.
fn refused_extract(name: &str, edit: impl FnOnce(&Path)) -> String {
    let r = recording(name);
    let tmp = tempfile::tempdir().unwrap();
    let f = r.write(tmp.path());
    edit(&f);
    let dir = tmp.path().join("extract");
    let out = extract(&f, &dir);
    assert!(!out.status.success(), "extract succeeded: {}", stderr(&out));
    assert!(!dir.exists(), "a refused extract left {dir:?}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.contains("extract"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    stderr(&out)
}

#[test]
fn a_recording_with_a_bad_channel_is_refused_naming_it() {
    // Another migration's uuid in channel 1.
    let e = refused_extract("10.0-multifd-4", |f| {
        let p = channel_file(f, 1);
        let mut b = std::fs::read(&p).unwrap();
        b[8] ^= 0xff;
        std::fs::write(&p, b).unwrap();
    });
    assert!(
        e.contains("multifd channel 1: at offset 0x8") && e.contains("another migration"),
        "{e}"
    );
    // Channel 0's file again as channel 1.
    let e = refused_extract("11.1-multifd-4", |f| {
        std::fs::copy(channel_file(f, 0), channel_file(f, 1)).unwrap();
    });
    assert!(e.contains("multifd channel 0") && e.contains("0x18"), "{e}");
    // Channel 2 cut inside a packet.
    let e = refused_extract("multifd-4", |f| {
        let p = channel_file(f, 2);
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 700]).unwrap();
    });
    assert!(
        e.contains("multifd channel 2:") && e.contains("truncated"),
        "{e}"
    );
    // A channel file missing: the main stream's sync points wait for a channel that is not
    // there (QEMU 7.2's main stream has no MULTIFD_FLUSH to tell).
    let e = refused_extract("10.0-multifd-4", |f| {
        std::fs::remove_file(channel_file(f, 0)).unwrap();
        std::fs::remove_file(channel_file(f, 1)).unwrap();
        std::fs::remove_file(channel_file(f, 2)).unwrap();
        std::fs::remove_file(channel_file(f, 3)).unwrap();
    });
    assert!(
        e.contains("MULTIFD_FLUSH") && e.contains("vm.mig.multifd-0"),
        "{e}"
    );
    eprintln!("{e}");
}

// ---------------------------------------------------------------------------------------
// The recorded connections replayed over TCP, as a QEMU source sends them.

/// Connects to `addr` and sends the main stream, then connects every channel and sends
/// them all at once, each on its own thread (as QEMU does). Returns the writers' threads.
fn replay(addr: &str, main: Vec<u8>, channels: Vec<Vec<u8>>) -> Vec<JoinHandle<()>> {
    let mut conns = vec![(TcpStream::connect(addr).unwrap(), main)];
    for c in channels {
        conns.push((TcpStream::connect(addr).unwrap(), c));
    }
    conns
        .into_iter()
        .map(|(mut s, bytes)| {
            std::thread::spawn(move || {
                // A receiver that refused the migration closes the connection: fine here.
                let _ = s.write_all(&bytes);
            })
        })
        .collect()
}

/// Runs `ramstream args` (listening on port 0), replays `main` and `channels` into it, and
/// returns its exit status and standard error once it and the writers are done.
fn run_with_replay(
    args: &[String],
    main: Vec<u8>,
    channels: Vec<Vec<u8>>,
) -> (std::process::ExitStatus, String) {
    let (mut child, addr, drain) = listening(args);
    let writers = replay(&addr, main, channels);
    let status = child.wait().unwrap();
    let err = drain.join().unwrap();
    for w in writers {
        w.join().unwrap();
    }
    (status, err)
}

/// [`run_with_replay`] of a recording.
fn run_replayed(args: &[String], r: &Recording) -> (std::process::ExitStatus, String) {
    run_with_replay(args, r.main.clone(), r.channels.clone())
}

/// `ramstream ARGS` that listens on port 0: the child and the address it bound.
fn listening(args: &[String]) -> (std::process::Child, String, JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        let mut tx = Some(tx);
        loop {
            let n = err.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(line) = all
                .lines()
                .find_map(|l| l.strip_prefix("ramstream: listening on tcp:"))
            {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line.to_string());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("ramstream listens");
    (child, addr, drain)
}

fn receive_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "receive".into(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--extract".into(),
        dir.join("extract").display().to_string(),
        "--save-stream".into(),
        dir.join("saved.mig").display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn receive_extract_of_replayed_multifd_connections_equals_the_qemu_destination() {
    for name in [
        "multifd-2-live",
        "10.0-multifd-4",
        "11.1-multifd-4-zero-legacy",
        "11.1-multifd-2-live",
    ] {
        let r = recording(name);
        let tmp = tempfile::tempdir().unwrap();
        let extra: &[&str] = if name == "10.0-multifd-4" {
            &["--multifd-channels", "4"]
        } else {
            &[]
        };
        let (status, err) = run_replayed(&receive_args(tmp.path(), extra), &r);
        assert!(status.success(), "{name}: {err}");
        assert_eq!(
            extract_hashes(&tmp.path().join("extract")),
            r.v.block_hashes(),
            "{name}"
        );
        // The recording: the main stream and every channel, byte for byte.
        let saved = tmp.path().join("saved.mig");
        assert_eq!(std::fs::read(&saved).unwrap(), r.main, "{name}");
        for (id, c) in r.channels.iter().enumerate() {
            assert_eq!(
                &std::fs::read(channel_file(&saved, id as u8)).unwrap(),
                c,
                "{name} channel {id}"
            );
        }
        assert!(
            err.contains(&format!("on {} multifd channel(s)", r.channels.len())),
            "{err}"
        );
        // And the recording extracts the same.
        let again = tmp.path().join("again");
        ok(&extract(&saved, &again));
        assert_eq!(extract_hashes(&again), r.v.block_hashes(), "{name}");
    }
}

/// `receive --extract --timeline` of a replayed multifd migration: the channels' pages and
/// bytes are in the rounds (the ram sections), so the bars add up to every page the receive
/// reports, the main stream's and the channels', not to the main stream's few.
#[test]
fn receive_timeline_of_a_multifd_migration_counts_the_channel_pages_in_its_rounds() {
    // 7.2 (a sync point at every section's EOS), 11.1 (one per pass, MULTIFD_FLUSH), and
    // 10.0 with its zero pages on the channels, with --multifd-channels.
    for (name, extra) in [
        ("multifd-2-live", &[][..]),
        ("11.1-multifd-2-live", &[][..]),
        ("10.0-multifd-4", &["--multifd-channels", "4"][..]),
    ] {
        let r = recording(name);
        let tmp = tempfile::tempdir().unwrap();
        let svg = tmp.path().join("t.svg");
        let mut args = receive_args(tmp.path(), extra);
        args.extend(["--timeline".to_string(), svg.display().to_string()]);
        let (status, err) = run_replayed(&args, &r);
        assert!(status.success(), "{name}: {err}");
        // "received B bytes (N page records on the main stream, M pages on K multifd
        // channel(s)) from ..."
        let line = err
            .lines()
            .find(|l| l.starts_with("received "))
            .unwrap_or_else(|| panic!("{name}: no summary: {err}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let main_pages: u64 = words[3].trim_start_matches('(').parse().unwrap();
        let channel_pages: u64 = words[10].parse().unwrap();
        assert_eq!(words[11..13], ["pages", "on"], "{name}: {line}");
        // "multifd channel ID from PEER: B bytes, ..."
        let channel_bytes: u64 = err
            .lines()
            .filter(|l| l.starts_with("multifd channel ") && l.contains(" bytes, "))
            .map(|l| {
                let after = l.split(": ").nth(1).unwrap();
                after
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        let want: u64 =
            r.v.manifest
                .multifd
                .as_ref()
                .unwrap()
                .channel_files
                .iter()
                .map(|c| c.normal_pages.unwrap_or(0) + c.zero_pages.unwrap_or(0))
                .sum();
        assert_eq!(channel_pages, want, "{name}: {line}");
        let t = timeline_counts(&svg);
        let bars: u64 = t.bars.iter().sum();
        assert_eq!(bars, main_pages + channel_pages, "{name}: {t:?}; {line}");
        assert!(bars > main_pages, "{name}: {t:?}; {line}");
        assert_eq!(t.pages, bars, "{name}");
        assert_eq!(t.multifd_pages, Some(channel_pages), "{name}: {t:?}");
        assert_eq!(t.multifd_bytes, Some(channel_bytes), "{name}: {t:?}");
        assert_eq!(
            channel_bytes,
            r.channels.iter().map(|c| c.len() as u64).sum::<u64>(),
            "{name}"
        );
        assert!(t.bytes > channel_bytes, "{name}: {t:?}");
        eprintln!(
            "{name}: {} rounds, {bars} pages ({main_pages} main stream, {channel_pages} channels), {} bytes",
            t.bars.len(),
            t.bytes
        );
    }
}

/// Replays `main` and `channels` into `receive --extract ARGS`; its stderr, after checking
/// that it failed and left nothing behind.
fn receive_refuses(main: Vec<u8>, channels: Vec<Vec<u8>>, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (status, err) = run_with_replay(&receive_args(tmp.path(), extra), main, channels);
    assert!(!status.success(), "receive succeeded: {err}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "a refused receive left {left:?}: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("ramstream: error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"))
        .to_string();
    assert!(line.contains("nothing was extracted"), "{line}");
    line
}

#[test]
fn receive_refuses_a_bad_channel_naming_it_and_extracts_nothing() {
    let r = recording("11.1-multifd-2-live");
    // A channel of another migration.
    let mut chans = r.channels.clone();
    chans[1][8..24].copy_from_slice(&[0x42; 16]);
    let e = receive_refuses(r.main.clone(), chans, &[]);
    // The recording's main stream carries no uuid: the first channel admitted fixes the
    // migration's, so either channel may be the one named.
    assert!(
        e.contains(": at offset 0x8: multifd channel of another migration"),
        "{e}"
    );
    eprintln!("wrong uuid: {e}");
    // A channel that closes early (after a third of its bytes, inside a packet or not).
    let mut chans = r.channels.clone();
    let cut = chans[0].len() / 3;
    chans[0].truncate(cut);
    let e = receive_refuses(r.main.clone(), chans, &[]);
    assert!(e.contains("multifd channel 0"), "{e}");
    eprintln!("closed early: {e}");
    // Compression, refused by name.
    let z = recording("10.0-multifd-2-zstd");
    let e = receive_refuses(z.main.clone(), z.channels.clone(), &[]);
    assert!(e.contains("zstd") && e.contains("multifd channel"), "{e}");
    eprintln!("zstd: {e}");
    // More channels than --multifd-channels.
    let e = receive_refuses(
        r.main.clone(),
        r.channels.clone(),
        &["--multifd-channels", "1"],
    );
    assert!(
        e.contains("2 multifd channels connected; the migration has 1"),
        "{e}"
    );
    eprintln!("too many: {e}");
}

/// A destination that accepts connections and keeps every byte of each, in the order they
/// connected.
fn sink() -> (String, JoinHandle<Vec<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || {
        let mut readers = Vec::new();
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // Accept until the first connection ended and no new one came for a while.
        let mut idle = std::time::Instant::now();
        loop {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    idle = std::time::Instant::now();
                    readers.push(std::thread::spawn(move || {
                        let mut v = Vec::new();
                        let _ = s.read_to_end(&mut v);
                        v
                    }));
                }
                Err(_) => {
                    let done = readers
                        .first()
                        .is_some_and(|r: &JoinHandle<_>| r.is_finished());
                    if (done && idle.elapsed() > std::time::Duration::from_millis(500))
                        || std::time::Instant::now() > deadline
                    {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    (format!("tcp:{addr}"), t)
}

#[test]
fn proxy_forwards_replayed_multifd_connections_in_order_and_counts_each_channel() {
    for name in ["multifd-4", "11.1-multifd-2-live"] {
        let r = recording(name);
        let tmp = tempfile::tempdir().unwrap();
        let (dst, received) = sink();
        let rec = tmp.path().join("rec.mig");
        let svg = tmp.path().join("t.svg");
        let (mut child, addr, drain) = listening(&[
            "proxy".into(),
            "--listen".into(),
            "tcp:127.0.0.1:0".into(),
            "--forward".into(),
            dst,
            "--record".into(),
            rec.display().to_string(),
            "--json".into(),
            "--timeline".into(),
            svg.display().to_string(),
        ]);
        // Channels connect one after the other, after the main stream, as from QEMU.
        let writers = replay(&addr, r.main.clone(), r.channels.clone());
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = child.wait().unwrap();
        let err = drain.join().unwrap();
        for w in writers {
            w.join().unwrap();
        }
        assert!(status.success(), "{name}: {err}");
        let got = received.join().unwrap();
        // The destination got the main stream first, then the channels, each unchanged.
        assert_eq!(got.len(), 1 + r.channels.len(), "{name}");
        assert_eq!(got[0], r.main, "{name}: main stream");
        let mut chans: Vec<_> = got[1..].to_vec();
        chans.sort_by_key(|c| c[24]);
        assert_eq!(chans, r.channels, "{name}: channels");
        let j: Value = serde_json::from_str(&stdout).unwrap();
        let m = r.v.manifest.multifd.as_ref().unwrap();
        assert_eq!(j["multifd"]["sync_points"].as_u64(), m.sync_points);
        let mut per: Vec<&Value> = j["multifd"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        per.sort_by_key(|c| c["id"].as_u64());
        for (c, want) in per.iter().zip(&m.channel_files) {
            assert_eq!(c["bytes"].as_u64(), Some(want.len), "{name}");
            assert_eq!(c["pages"].as_u64(), want.normal_pages, "{name}");
            assert_eq!(c["syncs"].as_u64(), want.sync_packets, "{name}");
        }
        // --timeline: the rounds hold the channels' pages and bytes too.
        let main_pages: u64 = ["page", "zero", "xbzrle"]
            .iter()
            .map(|k| j[k].as_u64().unwrap())
            .sum();
        let channel_pages: u64 = per
            .iter()
            .map(|c| c["pages"].as_u64().unwrap() + c["zero_pages"].as_u64().unwrap())
            .sum();
        let t = timeline_counts(&svg);
        let bars: u64 = t.bars.iter().sum();
        assert_eq!(bars, main_pages + channel_pages, "{name}: {t:?}");
        assert!(bars > main_pages, "{name}: {t:?}");
        assert_eq!(t.multifd_pages, Some(channel_pages), "{name}: {t:?}");
        assert_eq!(
            t.multifd_bytes,
            j["multifd"]["bytes"].as_u64(),
            "{name}: {t:?}"
        );
        // The recording is a multi-file one that extracts to QEMU's RAM.
        let out = tmp.path().join("extract");
        ok(&extract(&rec, &out));
        assert_eq!(extract_hashes(&out), r.v.block_hashes(), "{name}");
        eprintln!(
            "{name}: proxy forwarded main + {} channels: {}",
            r.channels.len(),
            j["multifd"]
        );
    }
}

/// The reference sender's multifd migration of a running KVM guest (`send
/// --multifd-channels 2`) into `receive --multifd-channels 2`, the reference receiver's
/// `receive_multifd`: the digest is verified and the guest resumes. Skipped where /dev/kvm
/// is not usable, unless `RAMSTREAM_REQUIRE_KVM=1`.
#[test]
fn send_over_multifd_into_receive_resumes_the_guest() {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if !ramstream_conformance_vectors::qemu::kvm_or_skip(open.map(drop)) {
        return;
    }
    let (mut child, addr, drain) = listening(&[
        "receive".into(),
        "--listen".into(),
        "tcp:127.0.0.1:0".into(),
        "--multifd-channels".into(),
        "2".into(),
        "--json".into(),
    ]);
    let send = ramstream(&["send", "--multifd-channels", "2", &format!("tcp:{addr}")]);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let err = drain.join().unwrap();
    assert!(send.status.success(), "send: {}", stderr(&send));
    assert!(status.success(), "receive: {err}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["digest_verified"], true, "{report}");
    assert_eq!(report["guest_resumed"], true, "{report}");
    let chans = report["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 2, "{report}");
    for c in chans {
        assert_eq!(c["syncs"], report["sync_points"], "{report}");
    }
    eprintln!("reference sender over multifd: {report}");
}
