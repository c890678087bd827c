//! The offline subcommands on recorded QEMU streams: `inspect --json` and `extract`, including
//! the device-split check against the VMDESCRIPTION (SPEC.md §5.2) and the refusals of a
//! stream that is cut short or an output directory that is in use; and the address forms each
//! option refuses, before anything is bound or run.

mod common;

use std::path::{Path, PathBuf};

use common::{extract_hashes, json_file, ok, ramstream};
use ramstream_conformance_vectors::Vector;
use serde_json::Value;

fn vector(name: &str) -> Vector {
    ramstream_conformance_vectors::vector(name).unwrap()
}

/// The vector's uncompressed stream in `dir`.
fn stream_file(v: &Vector, dir: &Path) -> PathBuf {
    let p = dir.join("stream.bin");
    std::fs::write(&p, v.stream().unwrap()).unwrap();
    p
}

/// What `ramstream inspect --json` says of the stream file `s`.
fn inspect_json(s: &Path) -> Value {
    let out = ok(&ramstream(&[Path::new("inspect"), Path::new("--json"), s]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn inspect_json_confirms_every_device_split_of_a_qemu_stream() {
    let v = vector("q35-noos");
    let tmp = tempfile::tempdir().unwrap();
    let j = inspect_json(&stream_file(&v, tmp.path()));
    let splits = &j["vmdesc_splits"];
    let devices = j["devices"].as_array().expect("devices listed").len();
    assert!(devices > 20, "{devices}");
    assert_eq!(
        splits["confirmed"].as_u64(),
        Some(devices as u64),
        "{splits}"
    );
    assert_eq!(splits["disagreements"], serde_json::json!([]));
    assert_eq!(splits["unchecked"], serde_json::json!([]));
}

#[test]
fn extract_writes_qemus_ram_and_a_manifest_with_the_split_check() {
    let v = vector("multi-block");
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file(&v, tmp.path());
    let dir = tmp.path().join("extract");
    let out = ramstream(&[Path::new("extract"), &s, Path::new("--out"), &dir]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("confirmed by the VMDESCRIPTION, 0 disagree"),
        "{stderr}"
    );
    assert_eq!(
        extract_hashes(&dir),
        v.block_hashes(),
        "every block has QEMU's sha256"
    );
    let m = json_file(&dir.join("manifest.json"));
    let devices = m["devices"].as_array().unwrap();
    assert_eq!(
        m["vmdesc_splits"]["confirmed"].as_u64(),
        Some(devices.len() as u64)
    );
    for d in devices {
        assert!(dir.join(d["file"].as_str().unwrap()).is_file());
    }

    // A second extract into the same, non-empty directory is refused.
    let again = ramstream(&[Path::new("extract"), &s, Path::new("--out"), &dir]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

#[test]
fn a_stream_cut_short_is_refused_and_leaves_no_extract() {
    let v = vector("idle-noos");
    let tmp = tempfile::tempdir().unwrap();
    let bytes = v.stream().unwrap();
    let cut = tmp.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let dir = tmp.path().join("extract");
    let out = ramstream(&[Path::new("extract"), &cut, Path::new("--out"), &dir]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(!dir.exists(), "no extract directory is left behind");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no scratch directory is left behind"
    );
    let out = ramstream(&[Path::new("inspect"), &cut]);
    assert!(!out.status.success());
}

/// `inspect` names the oldest QEMU that can have written a stream, from the stream alone, with
/// no option: 7.2 by its machine type; 11.1 by its machine type, with SWITCHOVER_START seen.
#[test]
fn inspect_tells_the_writer_version_of_7_2_and_11_1_streams_without_options() {
    for (name, version, because) in [
        ("idle-noos", [7, 2], "machine type pc-i440fx-7.2"),
        ("11.1-q35-noos", [11, 1], "machine type pc-q35-11.1"),
    ] {
        let v = vector(name);
        let tmp = tempfile::tempdir().unwrap();
        let s = stream_file(&v, tmp.path());
        let j = inspect_json(&s);
        assert_eq!(j["dialect"], "qemu", "{name}");
        assert_eq!(
            j["min_writer"]["version"],
            serde_json::json!(version),
            "{name}"
        );
        assert_eq!(j["min_writer"]["because"], because, "{name}");
        let human = ramstream(&[Path::new("inspect"), &s]);
        let text = String::from_utf8_lossy(&human.stdout);
        assert!(
            text.contains(&format!(
                "written by QEMU {}.{} or later ({because})",
                version[0], version[1]
            )),
            "{name}: {text}"
        );
    }
}

/// `file:` is refused where only a socket will do, saying which forms the option takes, and
/// nothing is bound, created or started.
#[test]
fn an_address_an_option_cannot_take_is_refused_with_the_forms_it_takes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("vm.mig");
    let out = tmp.path().join("out");
    let run = |args: &[&str]| ramstream(args);
    let file_addr = format!("file:{}", file.display());
    let o = run(&[
        "receive",
        "--listen",
        &file_addr,
        "--extract",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("takes tcp:HOST:PORT or unix:PATH")
            && err.contains(&format!(
                "run `ramstream extract {} --out {}`",
                file.display(),
                out.display()
            )),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
    assert!(!out.exists());
    for (option, args) in [
        (
            "--listen",
            vec![
                "proxy",
                "--listen",
                &file_addr,
                "--forward",
                "tcp:127.0.0.1:1",
            ],
        ),
        (
            "--forward",
            vec![
                "proxy",
                "--listen",
                "tcp:127.0.0.1:0",
                "--forward",
                &file_addr,
            ],
        ),
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{option}: {err}");
        assert!(
            err.contains("expected tcp:HOST:PORT or unix:PATH") && !err.contains("listening on"),
            "{option}: {err}"
        );
    }
    let o = run(&["send", "127.0.0.1:4444"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "expected tcp:HOST:PORT, unix:PATH or file:PATH (did you mean tcp:127.0.0.1:4444?)"
        ),
        "{err}"
    );
}
