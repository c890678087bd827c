//! mapped-ram files (QEMU 9.0+, `migrate file:` with capability `mapped-ram`, SPEC.md §7.9)
//! through the command line: `inspect --json` and `extract` of the QEMU 10.0 and 11.1
//! recordings give exactly the RAM QEMU's destination held; `reencode` refuses a verbatim
//! copy and converts with `--from-ram`. With QEMU 10.0 (and 11.1) installed: a file QEMU
//! writes now extracts to what a QEMU destination loads from it, and QEMU loads the
//! `--from-ram` conversions. The QEMU parts skip with a printed reason when that QEMU is
//! missing, unless `RAMSTREAM_REQUIRE_QEMU=1`.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{extract_hashes, json_file, ok, ramstream};
use ramstream_conformance_vectors::qemu::{
    adapt_accel, linux_guest_or_skip, load_and_resave_with, version_or_skip, Qemu, QemuVersion,
};
use ramstream_conformance_vectors::{all, Vector};
use serde_json::{json, Value};

fn mapped_vectors() -> Vec<Vector> {
    let vs: Vec<Vector> = all()
        .unwrap()
        .into_iter()
        .filter(|v| v.is_mapped_ram())
        .collect();
    assert!(vs.len() >= 4, "the mapped-ram vectors are missing");
    vs
}

fn vector(name: &str) -> Vector {
    ramstream_conformance_vectors::vector(name).unwrap()
}

/// The vector's file as committed (`ramstream` decompresses `.zst`).
fn file_of(v: &Vector) -> PathBuf {
    v.dir.join(&v.manifest.stream_file)
}

/// `(idstr, sha256)` of the blocks a plain stream rebuilds to.
fn stream_hashes(bytes: &[u8]) -> Vec<(String, String)> {
    ramstream_conformance_vectors::stream_block_hashes(bytes).unwrap()
}

#[test]
fn inspect_json_shows_each_blocks_header_bitmap_and_pages() {
    for v in mapped_vectors() {
        let name = &v.manifest.name;
        let j: Value = serde_json::from_str(&ok(&ramstream(&[
            OsStr::new("inspect"),
            OsStr::new("--json"),
            file_of(&v).as_os_str(),
        ])))
        .unwrap();
        assert!(
            j["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!("mapped-ram")),
            "{name}"
        );
        assert_eq!(j["stream_len"].as_u64(), Some(v.manifest.stream_len));
        assert_eq!(j["ram"]["records"]["page"], 0, "{name}: no page records");
        assert_eq!(j["ram"]["records"]["zero"], 0, "{name}: no page records");
        let m = &j["mapped_ram"];
        let blocks = m["blocks"].as_array().expect("mapped_ram.blocks");
        let names: Vec<_> = blocks.iter().map(|b| b["idstr"].clone()).collect();
        let expected: Vec<_> = v.manifest.blocks.iter().map(|b| json!(b.idstr)).collect();
        assert_eq!(names, expected, "{name}");
        for b in blocks {
            assert_eq!((&b["version"], &b["page_size"]), (&json!(1), &json!(4096)));
            if b["ignored"] == json!(true) {
                assert_eq!(
                    (&b["bitmap_offset"], &b["pages_offset"]),
                    (&json!(0), &json!(0))
                );
                continue;
            }
            let h = b["header_offset"].as_u64().unwrap();
            assert_eq!(b["bitmap_offset"].as_u64(), Some(h + 28), "{name}");
            assert_eq!(b["pages_offset"].as_u64().unwrap() % (1 << 20), 0, "{name}");
            assert_eq!(
                b["bitmap_len"].as_u64(),
                Some(b["pages"].as_u64().unwrap().div_ceil(64) * 8)
            );
        }
        assert_eq!(
            m["pages_present"], v.manifest.query_migrate["ram"]["normal"],
            "{name}: pages present = pages the source sent"
        );
        // The human summary shows the layout too.
        let human = ok(&ramstream(&[
            OsStr::new("inspect"),
            file_of(&v).as_os_str(),
        ]));
        assert!(human.contains("mapped-ram:"), "{human}");
        eprintln!(
            "{name}: inspect --json: {} pages present",
            m["pages_present"]
        );
    }
}

#[test]
fn extract_gives_the_ram_qemus_destination_held() {
    for v in mapped_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("x");
        ok(&ramstream(&[
            OsStr::new("extract"),
            file_of(&v).as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
        ]));
        assert_eq!(
            extract_hashes(&out),
            v.block_hashes(),
            "{}: extracted blocks",
            v.manifest.name
        );
        // Each block's image, under the file name the manifest gives it.
        let files = json_file(&out.join("manifest.json"))["blocks"].clone();
        for (b, f) in v.manifest.blocks.iter().zip(files.as_array().unwrap()) {
            let f = out.join(f["file"].as_str().unwrap());
            assert_eq!(std::fs::metadata(&f).unwrap().len(), b.used_length);
        }
        eprintln!(
            "{}: extract matches QEMU's {} blocks",
            v.manifest.name,
            v.manifest.blocks.len()
        );
    }
}

#[test]
fn reencode_refuses_a_verbatim_copy_and_converts_from_ram() {
    let v = vector("10.0-mapped-ram-noos");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.bin");
    let r = ramstream(&[
        OsStr::new("reencode"),
        file_of(&v).as_os_str(),
        out.as_os_str(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("mapped-ram") && err.contains("--from-ram"),
        "{err}"
    );
    ok(&ramstream(&[
        OsStr::new("reencode"),
        OsStr::new("--from-ram"),
        file_of(&v).as_os_str(),
        out.as_os_str(),
    ]));
    let bytes = std::fs::read(&out).unwrap();
    // An ordinary stream: the default decoder (which refuses mapped-ram) reads it.
    assert_eq!(stream_hashes(&bytes), v.block_hashes());
}

fn caps(names: &[&str], on: bool) -> Value {
    json!({"capabilities": names
        .iter()
        .map(|n| json!({"capability": n, "state": on}))
        .collect::<Vec<_>>()})
}

/// Has a fresh `version` destination load the mapped-ram `file` (capabilities `caps_on`,
/// `multifd-channels` 2 when multifd is among them), then save itself as a plain stream:
/// the RAM it holds, as block hashes.
fn qemu_loads_mapped_ram_file(
    version: QemuVersion,
    v: &Vector,
    args: &[String],
    file: &Path,
    caps_on: &[&str],
) -> Vec<(String, String)> {
    let mut args = adapt_accel(args);
    args.extend(["-incoming".into(), "defer".into()]);
    let mut q = Qemu::spawn_version(version, &args, &v.dir).unwrap();
    q.execute("migrate-set-capabilities", caps(caps_on, true))
        .unwrap();
    if caps_on.contains(&"multifd") {
        q.execute("migrate-set-parameters", json!({"multifd-channels": 2}))
            .unwrap();
    }
    q.execute(
        "migrate-incoming",
        json!({"uri": format!("file:{}", file.display())}),
    )
    .unwrap();
    q.wait_migration(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{version} did not load the mapped-ram file: {e}"));
    q.execute("migrate-set-capabilities", caps(caps_on, false))
        .unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    q.execute(
        "migrate",
        json!({"uri": format!("exec:cat > '{}'", out.path().display())}),
    )
    .unwrap();
    q.wait_migration(Duration::from_secs(300)).unwrap();
    q.quit();
    stream_hashes(&std::fs::read(out.path()).unwrap())
}

/// QEMU writes a mapped-ram file now (no-OS guest, with multifd, 2 channels): ramstream
/// extracts exactly what a QEMU destination loads from it, and QEMU loads the `--from-ram`
/// conversion into the same RAM.
fn fresh_file_round_trip(version: QemuVersion) {
    let v = vector(&version.vector_name("mapped-ram-noos"));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fresh.bin");
    let on = ["mapped-ram", "multifd"];
    {
        let mut src =
            Qemu::spawn_version(version, &adapt_accel(&v.manifest.source_args), &v.dir).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        src.execute("migrate-set-capabilities", caps(&on, true))
            .unwrap();
        src.execute("migrate-set-parameters", json!({"multifd-channels": 2}))
            .unwrap();
        src.execute("stop", json!({})).unwrap();
        src.execute(
            "migrate",
            json!({"uri": format!("file:{}", file.display())}),
        )
        .unwrap();
        src.wait_migration(Duration::from_secs(120)).unwrap();
        src.quit();
    }
    let out = tmp.path().join("x");
    ok(&ramstream(&[
        OsStr::new("extract"),
        file.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]));
    let ours = extract_hashes(&out);
    let qemus = qemu_loads_mapped_ram_file(version, &v, &v.manifest.destination_args, &file, &on);
    assert_eq!(ours, qemus, "{version}: extract of a fresh mapped-ram file");

    let conv = tmp.path().join("conv.bin");
    ok(&ramstream(&[
        OsStr::new("reencode"),
        OsStr::new("--from-ram"),
        file.as_os_str(),
        conv.as_os_str(),
    ]));
    let held = load_and_resave_with(version, &v.manifest.destination_args, &v.dir, &conv)
        .unwrap_or_else(|e| panic!("{version} did not load the --from-ram conversion: {e}"));
    assert_eq!(
        stream_hashes(&held),
        ours,
        "{version}: RAM after the conversion"
    );
    eprintln!(
        "{version}: fresh {}-byte mapped-ram file: extract = destination's RAM ({} blocks); \
         its {}-byte --from-ram stream loads into the same RAM",
        std::fs::metadata(&file).unwrap().len(),
        ours.len(),
        std::fs::metadata(&conv).unwrap().len()
    );
}

/// `version` loads the `--from-ram` conversion of its own mapped-ram recordings into the
/// RAM the manifest says its destination held.
fn recordings_convert(version: QemuVersion) {
    for base in ["mapped-ram-noos", "mapped-ram-linux-multifd"] {
        let v = vector(&version.vector_name(base));
        let mut args = v.manifest.destination_args.clone();
        if args.iter().any(|a| a.contains("{KERNEL}")) {
            let Some(guest) = linux_guest_or_skip("mapped_ram") else {
                continue;
            };
            args = guest.fill(&args);
        }
        let tmp = tempfile::tempdir().unwrap();
        let conv = tmp.path().join("conv.bin");
        ok(&ramstream(&[
            OsStr::new("reencode"),
            OsStr::new("--from-ram"),
            file_of(&v).as_os_str(),
            conv.as_os_str(),
        ]));
        let held = load_and_resave_with(version, &args, &v.dir, &conv)
            .unwrap_or_else(|e| panic!("{}: {version} did not load it: {e}", v.manifest.name));
        assert_eq!(
            stream_hashes(&held),
            v.block_hashes(),
            "{}",
            v.manifest.name
        );
        eprintln!(
            "{}: {version} loaded the {}-byte --from-ram stream into the recorded RAM",
            v.manifest.name,
            std::fs::metadata(&conv).unwrap().len()
        );
    }
}

#[test]
fn qemu_10_0_mapped_ram_files_through_ramstream() {
    let Some(_) = version_or_skip("mapped_ram", QemuVersion::V10_0) else {
        return;
    };
    fresh_file_round_trip(QemuVersion::V10_0);
    recordings_convert(QemuVersion::V10_0);
}

#[test]
fn qemu_11_1_mapped_ram_files_through_ramstream() {
    let Some(_) = version_or_skip("mapped_ram", QemuVersion::V11_1) else {
        return;
    };
    fresh_file_round_trip(QemuVersion::V11_1);
    recordings_convert(QemuVersion::V11_1);
}
