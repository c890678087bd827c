//! The offline subcommands on recorded QEMU streams: `inspect --json` and `extract`, including
//! the device-split check against the VMDESCRIPTION (SPEC.md §5.2) and the refusals of a
//! stream that is cut short or an output directory that is in use; and the address forms each
//! option refuses, before anything is bound or run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ramstream_conformance_vectors::{all, Vector};
use serde_json::Value;

fn vector(name: &str) -> Vector {
    all()
        .unwrap()
        .into_iter()
        .find(|v| v.manifest.name == name)
        .unwrap_or_else(|| panic!("vector {name}"))
}

fn ramstream(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(args)
        .output()
        .expect("run ramstream")
}

/// The vector's uncompressed stream in `dir`.
fn stream_file(v: &Vector, dir: &Path) -> PathBuf {
    let p = dir.join("stream.bin");
    std::fs::write(&p, v.stream().unwrap()).unwrap();
    p
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn inspect_json_confirms_every_device_split_of_a_qemu_stream() {
    let v = vector("q35-noos");
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file(&v, tmp.path());
    let out = ramstream(&[Path::new("inspect"), Path::new("--json"), &s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let m = json_file(&dir.join("manifest.json"));
    let got: Vec<(String, String)> = m["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["idstr"].as_str().unwrap().into(),
                b["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = v
        .manifest
        .blocks
        .iter()
        .map(|b| (b.idstr.clone(), b.sha256.clone()))
        .collect();
    assert_eq!(got, want, "every block has QEMU's sha256");
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
        let out = ramstream(&[Path::new("inspect"), Path::new("--json"), &s]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ramstream"))
            .args(args)
            .output()
            .expect("run ramstream")
    };
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
