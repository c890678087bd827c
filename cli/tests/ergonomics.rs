//! The command line's manners: `-` reads standard input (and `reencode`'s output `-` writes
//! standard output); with `--json` an error is one JSON object on stdout with where it
//! happened; errors a flag would fix name the flag; sizes take binary units; help texts
//! offer only what the command accepts.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{extract_hashes, ok, ramstream};
use ramstream_conformance_vectors::{vector, vectors_dir};
use serde_json::Value;

/// Runs `ramstream args` with `input` on its standard input.
fn ramstream_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ramstream");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread: the child may fill its stdout pipe before reading all of stdin.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for ramstream");
    writer.join().unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one JSON object a failed `--json` run printed on stdout.
fn json_failure(out: &Output) -> Value {
    assert!(!out.status.success(), "it should have failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout:?}"));
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

#[test]
fn inspect_reads_a_stream_and_a_compressed_stream_from_stdin() {
    let v = vector("multi-block").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("stream.bin");
    let bytes = v.stream().unwrap();
    std::fs::write(&file, &bytes).unwrap();
    let from_file: Value = serde_json::from_str(&ok(&ramstream(&[
        Path::new("inspect"),
        Path::new("--json"),
        &file,
    ])))
    .unwrap();
    let from_stdin: Value =
        serde_json::from_str(&ok(&ramstream_stdin(&["inspect", "--json", "-"], &bytes))).unwrap();
    let same = |mut a: Value, b: &Value| {
        a["file"] = b["file"].clone();
        assert_eq!(&a, b);
    };
    assert_eq!(from_stdin["stream_len"].as_u64(), Some(bytes.len() as u64));
    same(from_stdin, &from_file);
    // A path that is a pipe, not a regular file: read, not mapped.
    let from_pipe: Value = serde_json::from_str(&ok(&ramstream_stdin(
        &["inspect", "--json", "/dev/stdin"],
        &bytes,
    )))
    .unwrap();
    same(from_pipe, &from_file);
    let zst = std::fs::read(vectors_dir().join("multi-block/stream.bin.zst")).unwrap();
    let from_zst: Value =
        serde_json::from_str(&ok(&ramstream_stdin(&["inspect", "--json", "-"], &zst))).unwrap();
    same(from_zst, &from_file);
}

#[test]
fn extract_reads_stdin_and_rebuilds_what_qemu_held() {
    let v = vector("multi-block").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let out = ramstream_stdin(
        &["extract", "-", "--out", dir.to_str().unwrap()],
        &v.stream().unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(extract_hashes(&dir), v.block_hashes());
}

/// Every file under `dir` (relative path, bytes).
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

#[test]
fn extract_of_a_mapped_file_equals_the_extract_of_its_bytes_on_stdin_or_a_pipe() {
    let v = vector("multi-block").unwrap();
    let bytes = v.stream().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("stream.bin");
    std::fs::write(&file, &bytes).unwrap();
    let mapped = tmp.path().join("mapped");
    ok(&ramstream(&[
        Path::new("extract"),
        &file,
        Path::new("--out"),
        &mapped,
    ]));
    let want = tree(&mapped);
    assert!(want.contains_key("manifest.json"), "{:?}", want.keys());
    for (name, input) in [("stdin", "-"), ("pipe", "/dev/stdin")] {
        let dir = tmp.path().join(name);
        let out = ramstream_stdin(&["extract", input, "--out", dir.to_str().unwrap()], &bytes);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(
            tree(&dir) == want,
            "{name}: the extract differs from the mapped file's"
        );
    }
    assert_eq!(extract_hashes(&mapped), v.block_hashes());
}

#[test]
fn reencode_from_stdin_to_stdout_gives_the_same_bytes() {
    let v = vector("idle-noos").unwrap();
    let bytes = v.stream().unwrap();
    let out = ramstream_stdin(&["reencode", "-", "-"], &bytes);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == bytes,
        "verbatim re-encoding changed the stream"
    );
}

#[test]
fn with_json_a_decoding_error_is_one_object_with_its_offset_and_record() {
    let v = vector("idle-noos").unwrap();
    let bytes = v.stream().unwrap();
    // The stream header's version word says 4 instead of 3.
    let mut bad = bytes.clone();
    bad[7] = 4;
    let j = json_failure(&ramstream_stdin(&["inspect", "--json", "-"], &bad));
    assert_eq!(j["offset"], 4, "{j}");
    assert!(j["message"].as_str().unwrap().contains("version"), "{j}");
    // Cut inside a record: the error says where.
    let cut = &bytes[..bytes.len() / 2];
    let j = json_failure(&ramstream_stdin(&["inspect", "--json", "-"], cut));
    assert!(j["offset"].as_u64().is_some(), "{j}");
    assert!(j["message"].as_str().unwrap().contains("truncated"), "{j}");
    // The object on stdout, and the same error as text on stderr for whoever watches.
    let out = ramstream_stdin(&["inspect", "--json", "-"], cut);
    let text = stderr(&out);
    assert!(
        text.contains("ramstream: error:") && text.contains("truncated"),
        "{text}"
    );
    // Without --json: text on stderr, nothing on stdout.
    let out = ramstream_stdin(&["inspect", "-"], cut);
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("ramstream: error:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flag_0x200_under_qemu_7_2_names_the_dialect_flag() {
    // QEMU 10.0 writes MULTIFD_FLUSH (flag 0x200) in a multifd migration's main stream.
    let v = vector("10.0-multifd-4").unwrap();
    let out = ramstream_stdin(
        &["inspect", "--json", "--dialect", "qemu-7.2", "-"],
        &v.stream().unwrap(),
    );
    let j = json_failure(&out);
    assert!(j["record"].as_str().is_some(), "{j}");
    let hint = j["hint"].as_str().unwrap_or_else(|| panic!("no hint: {j}"));
    assert!(
        hint.contains("0x200") && hint.contains("--dialect qemu"),
        "{hint}"
    );
    let out = ramstream_stdin(
        &["inspect", "--dialect", "qemu-7.2", "-"],
        &v.stream().unwrap(),
    );
    assert!(
        stderr(&out).contains("hint: flag 0x200"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn balloon_streams_under_the_wrong_dialect_name_the_dialect_flag() {
    for name in ["balloon-v1", "balloon-kolhe-2016"] {
        let v = vector(name).unwrap();
        let want = v.dialect().unwrap();
        let out = ramstream_stdin(&["inspect", "--json", "-"], &v.stream().unwrap());
        let j = json_failure(&out);
        let hint = j["hint"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no hint: {j}"));
        assert!(hint.contains("--dialect"), "{name}: {hint}");
        assert!(
            hint.contains(&format!("`--dialect {want}`")),
            "{name}: {hint} should name {want}"
        );
        // With that dialect it decodes.
        ok(&ramstream_stdin(
            &["inspect", "--dialect", want.name(), "-"],
            &v.stream().unwrap(),
        ));
    }
}

#[test]
fn sizes_take_binary_units_and_a_bad_one_says_what_is_accepted() {
    for bad in ["1.5X", "1GB", "lots"] {
        let out = ramstream(&["send", "tcp:127.0.0.1:9", "--mem", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let e = stderr(&out);
        assert!(e.contains("--mem") && e.contains(bad), "{e}");
        assert!(e.contains("512M, 1.5G, 1GiB, 1T"), "{e}");
    }
}

#[test]
fn help_texts_offer_only_what_is_accepted() {
    let receive = ok(&ramstream(&["receive", "--help"]));
    assert!(receive.contains("file:- reads standard input"), "{receive}");
    assert!(
        receive.contains("--extract takes only tcp: or unix:"),
        "{receive}"
    );
    let bench = ok(&ramstream(&["bench-migrate", "--help"]));
    assert!(!bench.contains("ignored"), "{bench}");
    assert!(bench.contains("the one percentage to measure"), "{bench}");
    // The multifd bench refuses a ballooned guest by name instead of ignoring the flag.
    let out = ramstream(&["bench-migrate", "--multifd", "--balloon-percent", "50"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--balloon-percent 50"),
        "{}",
        stderr(&out)
    );
    let help = ok(&ramstream(&["inspect", "--help"]));
    assert!(help.contains("`-` reads standard input"), "{help}");
}

#[test]
fn verify_timeout_is_for_the_reference_guest_and_positive() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("x");
    let out_dir = out_dir.to_str().unwrap();
    let base = ["receive", "--listen", "tcp:127.0.0.1:0"];
    let with_extract =
        ramstream(&[&base[..], &["--extract", out_dir, "--verify-timeout", "60"]].concat());
    assert_eq!(with_extract.status.code(), Some(2));
    let e = stderr(&with_extract);
    assert!(
        e.contains("--verify-timeout") && e.contains("--extract"),
        "{e}"
    );
    let zero = ramstream(&[&base[..], &["--verify-timeout", "0"]].concat());
    assert_eq!(zero.status.code(), Some(2));
    assert!(
        stderr(&zero).contains("--verify-timeout"),
        "{}",
        stderr(&zero)
    );
    assert!(!Path::new(out_dir).exists());
    let help = ok(&ramstream(&["receive", "--help"]));
    assert!(help.contains("--verify-timeout <SECS>"), "{help}");
}
