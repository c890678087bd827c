//! `ramstream send --multifd-channels N` on real KVM: the reference guest sent over N
//! multifd channels (SPEC.md §14) into a multi-file recording, read back with the codec's
//! decoders under QEMU's rules (SPEC.md §14.8) and rebuilt sync point by sync point; and
//! over loopback TCP (N+1 connections to one address) into `ramstream receive --extract`,
//! whose images must hash to the sender's digests, and into `ramstream receive`, the
//! reference receiver, which verifies and resumes the guest; and `ramstream demo
//! --multifd-channels`.
//! Skipped (saying why) where /dev/kvm is not usable, unless `RAMSTREAM_REQUIRE_KVM=1`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::live::spawn_listening;
use common::{json_file, ok, ramstream};
use ramstream_codec::extension::digest::{
    chunked_block, digest_block, DigestAlgorithm, DigestSection,
};
use ramstream_codec::multifd::{decode_channel, BlockTable, ChannelEvent, ChannelOptions};
use ramstream_codec::{decode_all, DecoderOptions, Event, PageAddr, RamBlock};
use ramstream_spec::extension::digest::DIGEST_SECTION_IDSTR;
use ramstream_spec::multifd::RECORDING_CHANNEL_SUFFIX;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
use serde_json::Value;

fn kvm_usable() -> bool {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    ramstream_conformance_vectors::qemu::kvm_or_skip(open.map(drop))
}

/// A small live guest: 64 MiB, a quarter ballooned, dirtying pages while it is sent at the
/// default bandwidth limit (so dirty iterations follow the bulk stage).
const GUEST: [&str; 4] = ["--mem", "64M", "--balloon-percent", "25"];

/// The sender's digests (SPEC.md §13), by block.
fn digests(report: &Value) -> Vec<(String, String)> {
    serde_json::from_value(report["digests"].clone()).expect("digests")
}

/// The digest of a block image by `algorithm` (`ramstream send` uses sha256-chunked unless
/// told otherwise, SPEC.md §13.7).
fn digest_of(image: &[u8], algorithm: DigestAlgorithm) -> String {
    let pages = (image.len() / PAGE) as u64;
    let read = |p: u64, buf: &mut [u8]| {
        let at = p as usize * PAGE;
        buf.copy_from_slice(&image[at..at + PAGE]);
        Ok::<_, std::convert::Infallible>(())
    };
    let sum = match algorithm {
        DigestAlgorithm::Sha256Sparse => digest_block(pages, PAGE, &[], read),
        DigestAlgorithm::Sha256Chunked => chunked_block(pages, PAGE, &[], read),
        other => panic!("no digest_of for {other:?}"),
    }
    .unwrap();
    hex::encode(sum)
}

fn channel_path(main: &Path, id: u8) -> std::path::PathBuf {
    let mut name = main.as_os_str().to_owned();
    name.push(format!("{RECORDING_CHANNEL_SUFFIX}{id}"));
    name.into()
}

#[test]
fn a_channel_count_outside_1_to_8_is_refused_before_anything_starts() {
    for n in ["0", "9"] {
        let out = ramstream(&["send", "--multifd-channels", n, "file:unused.mig"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--multifd-channels") && err.contains("1..=8"),
            "{err}"
        );
    }
    assert!(!Path::new("unused.mig").exists());
}

#[test]
fn send_to_a_multi_file_recording_that_rebuilds_to_the_sent_digests() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("vm.mig");
    // An earlier recording with 4 channels at the same path: its extra channels must go.
    for id in 0..4 {
        std::fs::write(channel_path(&main, id), b"stale").unwrap();
    }
    let mut args = vec!["send", "--json", "--multifd-channels", "2"];
    args.extend(GUEST);
    let to = format!("file:{}", main.display());
    args.push(&to);
    let report: Value = serde_json::from_str(ok(&ramstream(&args)).trim()).unwrap();
    let syncs = report["multifd"]["sync_points"].as_u64().unwrap() as usize;
    assert_eq!(report["multifd"]["channels"], 2);
    assert!(!channel_path(&main, 2).exists() && !channel_path(&main, 3).exists());

    // The main stream: no page record, a MULTIFD_FLUSH per sync point, the digest.
    let stream = std::fs::read(&main).unwrap();
    let events = decode_all(&stream, DecoderOptions::default()).expect("main stream");
    let mut blocks: Vec<RamBlock> = Vec::new();
    let mut digest = None;
    let mut flushes = 0;
    for (_, e) in &events {
        match e {
            Event::MemSize(m) => blocks = m.blocks.clone(),
            Event::MultifdFlush(_) => flushes += 1,
            Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_) => panic!("a page record"),
            Event::Device(d) if d.header.idstr == DIGEST_SECTION_IDSTR => {
                digest = Some(DigestSection::decode(d.body).expect("digest section"));
            }
            _ => {}
        }
    }
    assert_eq!(flushes, syncs);
    assert!(syncs >= 3, "setup, the bulk stage, stop-and-copy");

    // Each channel under QEMU's rules, then RAM sync point by sync point.
    let table = BlockTable::new(&blocks);
    let files: Vec<Vec<u8>> = (0..2)
        .map(|id| std::fs::read(channel_path(&main, id)).unwrap())
        .collect();
    let mut image: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| vec![0; b.used_length as usize])
        .collect();
    let mut epochs = Vec::new();
    for (id, bytes) in files.iter().enumerate() {
        let events = decode_channel(bytes, ChannelOptions::default(), &table)
            .unwrap_or_else(|e| panic!("channel {id}: {e}"));
        assert!(matches!(events[0].1, ChannelEvent::Init(i) if usize::from(i.id) == id));
        let mut mine = vec![Vec::new()];
        for (_, e) in events {
            match e {
                ChannelEvent::Page { addr, data } => mine.last_mut().unwrap().push((addr, data)),
                ChannelEvent::Zero { addr } => mine.last_mut().unwrap().push((addr, &[][..])),
                ChannelEvent::Sync => mine.push(Vec::new()),
                _ => {}
            }
        }
        assert!(
            mine.pop().unwrap().is_empty(),
            "channel {id}: pages after its last SYNC"
        );
        assert_eq!(mine.len(), syncs, "channel {id}: a SYNC per MULTIFD_FLUSH");
        epochs.push(mine);
    }
    for k in 0..syncs {
        let mut seen: BTreeSet<PageAddr> = BTreeSet::new();
        for ch in &epochs {
            for &(addr, data) in &ch[k] {
                assert!(seen.insert(addr), "{addr:?} twice before sync point {k}");
                let at = addr.offset as usize;
                let page = &mut image[addr.block][at..at + PAGE];
                if data.is_empty() {
                    page.fill(0);
                } else {
                    page.copy_from_slice(data);
                }
            }
        }
    }
    let sent = digests(&report);
    let section = digest.expect("the digest section");
    assert_eq!(section.algorithm, DigestAlgorithm::Sha256Chunked);
    for (b, block) in blocks.iter().enumerate() {
        let d = digest_of(&image[b], section.algorithm);
        assert_eq!((&sent[b].0, &sent[b].1), (&block.idstr, &d), "block {b}");
        assert_eq!(hex::encode(section.blocks[b].sha256), d);
    }
}

#[test]
fn send_over_tcp_with_2_and_4_channels_into_receive_extract() {
    if !kvm_usable() {
        return;
    }
    for channels in ["2", "4"] {
        let dir = tempfile::tempdir().unwrap();
        let extract = dir.path().join("ram");
        let recv = spawn_listening(&[
            "receive".into(),
            "--listen".into(),
            "tcp:127.0.0.1:0".into(),
            "--extract".into(),
            extract.display().to_string(),
            "--multifd-channels".into(),
            channels.into(),
        ]);
        let mut args = vec!["send", "--json", "--multifd-channels", channels];
        args.extend(GUEST);
        args.push(&recv.addr);
        let sent = ramstream(&args);
        let done = recv.wait();
        assert!(done.status.success(), "receiver: {:?}", done.stderr);
        let report: Value = serde_json::from_str(ok(&sent).trim()).unwrap();
        let n: usize = channels.parse().unwrap();
        // The receiver saw the sender's channels, each with every sync point.
        let lines = done.stderr.join("\n");
        assert!(
            lines.contains(&format!("multifd: {n} channel(s)")),
            "{lines}"
        );
        let syncs = report["multifd"]["sync_points"].as_u64().unwrap();
        for c in report["multifd"]["per_channel"].as_array().unwrap() {
            let (id, figures) = (
                &c["id"],
                format!(
                    ": {} bytes, {} packets, {} pages, {} zero pages, {} SYNC",
                    c["bytes"], c["packets"], c["normal"], c["zero"], c["syncs"]
                ),
            );
            let prefix = format!("multifd channel {id} from ");
            assert!(
                done.stderr
                    .iter()
                    .any(|l| l.starts_with(&prefix) && l.ends_with(&figures)),
                "channel {id}{figures}: {lines}"
            );
            assert_eq!(c["syncs"].as_u64(), Some(syncs));
        }
        // The images are the source's memory at stop time.
        let manifest = json_file(&extract.join("manifest.json"));
        let images = manifest["blocks"].as_array().unwrap();
        for ((idstr, digest), b) in digests(&report).iter().zip(images) {
            assert_eq!(b["idstr"].as_str(), Some(idstr.as_str()));
            let image = std::fs::read(extract.join(b["file"].as_str().unwrap())).unwrap();
            assert_eq!(
                &digest_of(&image, DigestAlgorithm::Sha256Chunked),
                digest,
                "{channels} channels: block {idstr}"
            );
        }
    }
}

/// The sender's channel figures equal the receiver's (`channels` of its JSON report).
fn same_channels(sent: &Value, received: &Value) {
    let (ours, theirs) = (
        sent["multifd"]["per_channel"].as_array().unwrap(),
        received["channels"].as_array().unwrap(),
    );
    assert_eq!(ours.len(), theirs.len(), "{received}");
    for (o, t) in ours.iter().zip(theirs) {
        let figures = |v: &Value, keys: [&str; 5]| keys.map(|k| v[k].as_u64());
        assert_eq!(
            figures(o, ["id", "bytes", "normal", "zero", "syncs"]),
            figures(t, ["id", "bytes", "pages", "zero_pages", "syncs"]),
            "sent {o}, received {t}"
        );
        assert_eq!(o["syncs"], received["sync_points"]);
    }
}

#[test]
fn send_over_tcp_with_2_and_4_channels_into_the_reference_receiver() {
    if !kvm_usable() {
        return;
    }
    for channels in ["2", "4"] {
        let recv = spawn_listening(&[
            "receive".into(),
            "--listen".into(),
            "tcp:127.0.0.1:0".into(),
            "--multifd-channels".into(),
            channels.into(),
            "--json".into(),
        ]);
        let mut args = vec!["send", "--json", "--multifd-channels", channels];
        args.extend(GUEST);
        args.push(&recv.addr);
        let sent = ramstream(&args);
        let done = recv.wait();
        assert!(done.status.success(), "receiver: {:?}", done.stderr);
        let sent: Value = serde_json::from_str(ok(&sent).trim()).unwrap();
        let received: Value = serde_json::from_slice(&done.stdout).expect("receiver JSON");
        // The digest checked before resuming: the guest's memory arrived exact.
        assert_eq!(received["digest_verified"], true, "{received}");
        assert_eq!(received["guest_resumed"], true, "{received}");
        assert_eq!(received["verification"]["self_check_passed"], true);
        assert_eq!(received["verification"]["bad_pages"], 0);
        same_channels(&sent, &received);
        assert_eq!(received["pages"], 0, "no page record on the main stream");
    }
}

#[test]
fn demo_over_multifd_resumes_a_verified_guest() {
    if !kvm_usable() {
        return;
    }
    let out = ramstream(&["demo", "--json", "--multifd-channels", "3", "--mem", "64M"]);
    let v: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["guest_resumed"], true, "{v}");
    assert_eq!(v["multifd"]["channels"], 3);
    same_channels(&v, &v["receiver"]);
    // Half of RAM is ballooned: with multifd those pages go as zero pages.
    assert_eq!(v["ram"]["balloon_records"], 0);
    assert!(v["ram"]["duplicate"].as_u64().unwrap() >= 8192, "{v}");
}
