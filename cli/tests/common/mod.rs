//! Helpers the command-line tests share: running the built `ramstream`, and reading what
//! `ramstream extract` wrote. The vectors and the block hashes QEMU's destinations held come
//! from `ramstream-conformance-vectors` (`vector`, `Vector::block_hashes`,
//! `stream_block_hashes`).

#![allow(dead_code)]

pub mod live;
pub mod open_pages;
pub mod page_report;
pub mod timeline;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the built `ramstream` with `args` and waits for it.
pub fn ramstream<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(args)
        .output()
        .expect("run ramstream")
}

/// The standard output of a run that must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ramstream failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSON file.
pub fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `(idstr, sha256)` of every block an extract's `manifest.json` lists, in the form of
/// `Vector::block_hashes`.
pub fn extract_hashes(dir: &Path) -> Vec<(String, String)> {
    json_file(&dir.join("manifest.json"))["blocks"]
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
