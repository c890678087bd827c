//! `ramstream pages` on recorded QEMU streams: the records that wrote a page, and its bytes
//! after them (XBZRLE deltas applied) equal to what `ramstream extract` rebuilds.

mod common;

use std::path::{Path, PathBuf};

use common::page_report::undump;
use common::{ok, ramstream};

fn stream_file(name: &str, dir: &Path) -> PathBuf {
    let v = ramstream_conformance_vectors::vector(name).unwrap();
    let p = dir.join("stream.bin");
    std::fs::write(&p, v.stream().unwrap()).unwrap();
    p
}

/// `pc.ram` as `ramstream extract` rebuilds it from stream file `s` (into `dir`/x).
fn extracted_pc_ram(s: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("x");
    ok(&ramstream(&[
        "extract".as_ref(),
        s.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]));
    std::fs::read(out.join("pc.ram.ram")).unwrap()
}

#[test]
fn an_xbzrle_page_dumps_as_extract_rebuilds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("live-xbzrle", tmp.path());
    let image = extracted_pc_ram(&s, tmp.path());
    // Pages 16 and 17 of pc.ram got XBZRLE deltas in this recording.
    let out = ok(&ramstream(&[
        "pages".as_ref(),
        s.as_os_str(),
        "--block".as_ref(),
        "pc.ram".as_ref(),
        "--offset".as_ref(),
        "0x10000".as_ref(),
        "--count".as_ref(),
        "2".as_ref(),
    ]));
    let lines: Vec<&str> = out.lines().collect();
    for page in [16u64, 17] {
        let head = lines
            .iter()
            .position(|l| {
                l.starts_with(&format!("pc.ram page {page} (offset {:#x}):", page * 4096))
            })
            .unwrap_or_else(|| panic!("{out}"));
        let records: Vec<&str> = lines[head + 1..]
            .iter()
            .take_while(|l| l.trim_start().starts_with("0x"))
            .copied()
            .collect();
        assert!(records.iter().any(|r| r.contains("XBZRLE")), "{out}");
        assert!(records
            .iter()
            .filter(|r| r.contains("XBZRLE"))
            .all(|r| r.contains("-byte delta")));
        let dump: Vec<&str> = lines[head + 1 + records.len()..]
            .iter()
            .take_while(|l| !l.starts_with("pc.ram page"))
            .copied()
            .collect();
        let base = page * 4096;
        let bytes = undump(&dump, base);
        assert_eq!(bytes.len(), 4096);
        assert_eq!(
            bytes,
            image[base as usize..base as usize + 4096],
            "page {page}"
        );
    }
}

#[test]
fn a_page_sent_twice_lists_both_records_in_stream_order() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("multi-block", tmp.path());
    let out = ok(&ramstream(&[
        "pages".as_ref(),
        s.as_os_str(),
        "--block".as_ref(),
        "m0".as_ref(),
    ]));
    let offsets: Vec<u64> = out
        .lines()
        .filter(|l| l.contains(" PAGE ") || l.contains(" ZERO "))
        .map(|l| {
            u64::from_str_radix(
                l.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap()
        })
        .collect();
    assert!(
        out.starts_with("m0 page 0 (offset 0x0): 2 records"),
        "{out}"
    );
    assert_eq!(offsets.len(), 2);
    assert!(offsets[0] < offsets[1]);
}

#[test]
fn an_unknown_block_or_a_range_past_its_end_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("multi-block", tmp.path());
    let run = |args: &[&str]| {
        let mut a: Vec<&std::ffi::OsStr> = vec!["pages".as_ref(), s.as_os_str()];
        a.extend(args.iter().map(std::ffi::OsStr::new));
        let out = ramstream(&a);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--block", "pc.ram"]);
    assert!(
        e.contains("no RAM block \"pc.ram\"") && e.contains("m0, m1"),
        "{e}"
    );
    let e = run(&["--block", "m1", "--offset", "0x1fff000", "--count", "2"]);
    assert!(e.contains("beyond block m1 (8192 pages)"), "{e}");
}

#[test]
fn a_multifd_main_stream_without_its_channels_is_refused_naming_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("11.1-multifd-4", tmp.path());
    for args in [
        vec!["pages", "--block", "pc.ram"],
        vec!["inspect", "--map", "m.svg"],
    ] {
        let mut a: Vec<&std::ffi::OsStr> = vec![args[0].as_ref(), s.as_os_str()];
        a.extend(args[1..].iter().map(std::ffi::OsStr::new));
        let out = ramstream(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("MULTIFD_FLUSH record") && err.contains("stream.bin.multifd-0"),
            "{args:?}: {err}"
        );
    }
}

/// A reader that closes the pipe after one line (`ramstream pages … | head -1`) ends the
/// command quietly, as it ends `cat`: no panic on the write that follows. The dump of
/// pc.bios's 64 pages (about 1 MB of text) is far larger than a pipe holds, so the command
/// is still writing when the pipe closes.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("live-xbzrle", tmp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(["pages".as_ref(), s.as_os_str()])
        .args(["--block", "pc.bios", "--count", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    // The reader is dropped here: the pipe is closed with most of the dump unwritten.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}

#[test]
fn json_gives_the_records_and_the_bytes_extract_rebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("live-xbzrle", tmp.path());
    let image = extracted_pc_ram(&s, tmp.path());
    let args = |offset: &str, count: &str| {
        ramstream(&[
            "pages".as_ref(),
            s.as_os_str(),
            "--block".as_ref(),
            "pc.ram".as_ref(),
            "--offset".as_ref(),
            offset.as_ref(),
            "--count".as_ref(),
            count.as_ref(),
            "--json".as_ref(),
        ])
    };
    let out = ok(&args("0x10000", "2"));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["block"], "pc.ram");
    assert_eq!(r["page_size"], 4096);
    let pages = r["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2);
    for (p, page) in pages.iter().zip(16u64..) {
        assert_eq!(p["page"], page);
        assert_eq!(p["offset"], page * 4096);
        let records = p["records"].as_array().unwrap();
        // Main-stream records in stream order, the XBZRLE ones with their delta size.
        let offsets: Vec<u64> = records
            .iter()
            .map(|r| r["offset"].as_u64().unwrap())
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{records:?}");
        assert!(records.iter().all(|r| r["source"] == "main"));
        let x: Vec<_> = records.iter().filter(|r| r["kind"] == "XBZRLE").collect();
        assert!(!x.is_empty(), "{records:?}");
        assert!(x.iter().all(|r| r["delta_bytes"].as_u64().unwrap() > 0));
        let data = hex::decode(p["data"].as_str().unwrap()).unwrap();
        let base = page as usize * 4096;
        assert_eq!(data, image[base..base + 4096], "page {page}");
        assert!(p["never"].is_null());
    }
    // An error is a JSON object on stdout, naming the flag's value.
    let bad = args("0x10000000000", "1");
    assert!(!bad.status.success());
    let e: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&bad.stdout).trim()).unwrap();
    assert_eq!(e["status"], "failed");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("beyond block pc.ram"),
        "{e}"
    );
}
