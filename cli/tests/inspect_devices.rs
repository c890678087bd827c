//! `ramstream inspect --devices` and `--vmdesc` on recorded QEMU streams: device fields
//! decoded through the VMDESCRIPTION, checked against the section bodies' own bytes.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{ok, ramstream};
use serde_json::Value;

/// The vector's uncompressed stream in `dir`.
fn stream_file(name: &str, dir: &Path) -> PathBuf {
    let v = ramstream_conformance_vectors::vector(name).unwrap();
    let p = dir.join("stream.bin");
    std::fs::write(&p, v.stream().unwrap()).unwrap();
    p
}

fn inspect(s: &Path, flags: &[&str]) -> String {
    let mut args: Vec<&OsStr> = vec!["inspect".as_ref(), s.as_os_str()];
    args.extend(flags.iter().map(OsStr::new));
    ok(&ramstream(&args))
}

#[test]
fn devices_json_decodes_every_section_in_stream_order_with_its_real_values() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("multi-block", tmp.path());
    let bytes = std::fs::read(&s).unwrap();
    let summary: Value = serde_json::from_str(&inspect(&s, &["--json"])).unwrap();
    let out = inspect(&s, &["--devices", "--json"]);
    let state: Value = serde_json::from_str(&out).unwrap();
    let devices = summary["devices"].as_array().unwrap();
    let keys: Vec<String> = devices
        .iter()
        .map(|d| format!("{} ({})", d["idstr"].as_str().unwrap(), d["section_id"]))
        .collect();
    assert_eq!(state.as_object().unwrap().len(), devices.len());
    // Keys in stream order, as analyze-migration.py prints them.
    let mut at = 0;
    for k in &keys {
        let found = out[at..]
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k}"));
        at += found;
    }
    // timer: cpu_ticks_offset, 8 unused bytes, cpu_clock_offset: the body's last 8 bytes.
    let timer = devices.iter().find(|d| d["idstr"] == "timer").unwrap();
    let off = timer["offset"].as_u64().unwrap() as usize;
    let len = timer["length"].as_u64().unwrap() as usize;
    let clock = u64::from_be_bytes(bytes[off + len - 8..off + len].try_into().unwrap());
    let key = format!("timer ({})", timer["section_id"]);
    assert_eq!(
        state[&key]["cpu_clock_offset"].as_str().unwrap(),
        format!("{clock:#018x}")
    );
    assert_eq!(state[&key]["unused"], "00 00 00 00 00 00 00 00");
    // cpu: env.eip decodes to a real x86 address; a subsection appears by name.
    let cpu = devices.iter().find(|d| d["idstr"] == "cpu").unwrap();
    let cpu = &state[format!("cpu ({})", cpu["section_id"])];
    assert_eq!(cpu["env.regs"].as_array().unwrap().len(), 16);
    assert!(cpu["cpu/tsc_khz"].is_object(), "{cpu}");
}

#[test]
fn devices_text_names_types_values_and_subsections() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("multi-block", tmp.path());
    let out = inspect(&s, &["--devices"]);
    assert!(
        out.contains("timer (0): instance 0, version 2, 24 bytes at"),
        "{out}"
    );
    assert!(out.contains("  unused: unused_buffer = \"00 00 00 00 00 00 00 00\""));
    assert!(out.contains("  env.regs: uint64[16] = ["));
    assert!(out.contains("subsection kvmclock/clock_is_reliable (version 1):"));
    // A long buffer is shortened in text, with its length.
    assert!(out.contains("(256 bytes)"), "{out}");
}

#[test]
fn vmdesc_prints_the_trailer_verbatim_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("q35-noos", tmp.path());
    let summary: Value = serde_json::from_str(&inspect(&s, &["--json"])).unwrap();
    let raw = inspect(&s, &["--vmdesc", "--json"]);
    assert_eq!(
        raw.trim_end().len() as u64,
        summary["vmdesc_len"].as_u64().unwrap()
    );
    let desc: Value = serde_json::from_str(&raw).unwrap();
    let n = desc["devices"].as_array().unwrap().len();
    assert_eq!(n, summary["devices"].as_array().unwrap().len());
    let text = inspect(&s, &["--vmdesc"]);
    assert!(
        text.starts_with(&format!(
            "VMDESCRIPTION: {} bytes, page size 4096, {n} devices",
            raw.trim_end().len()
        )),
        "{text}"
    );
    assert_eq!(text.lines().count(), n + 1);
}

#[test]
fn devices_without_a_vmdescription_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file("10.0-suppress-vmdesc", tmp.path());
    let out = ramstream(&["inspect".as_ref(), s.as_os_str(), "--devices".as_ref()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no VMDESCRIPTION trailer"), "{err}");
}
