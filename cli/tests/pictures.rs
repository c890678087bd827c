//! The SVG pictures: `inspect --map` on recorded streams and `send --timeline` on a real KVM
//! guest. Checked as XML documents (legend entries, one strip per block, counts equal to
//! `inspect --json`'s and the send report's), not as pixels.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok, ramstream};
use serde_json::Value;

fn stream_file(name: &str, dir: &Path) -> PathBuf {
    let v = ramstream_conformance_vectors::vector(name).unwrap();
    let p = dir.join("stream.bin");
    std::fs::write(&p, v.stream().unwrap()).unwrap();
    p
}

fn num(n: roxmltree::Node<'_, '_>, attr: &str) -> u64 {
    n.attribute(attr)
        .unwrap_or_else(|| panic!("{attr} missing"))
        .parse()
        .unwrap()
}

/// Draws the map of vector `name` and checks it against `inspect --json`.
fn check_map(name: &str, dialect: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream_file(name, tmp.path());
    let svg = tmp.path().join("map.svg");
    let args: Vec<&OsStr> = vec![
        "inspect".as_ref(),
        s.as_os_str(),
        "--json".as_ref(),
        "--dialect".as_ref(),
        dialect.as_ref(),
        "--map".as_ref(),
        svg.as_os_str(),
    ];
    let j: Value = serde_json::from_str(&ok(&ramstream(&args))).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let groups = |class: &str| -> Vec<roxmltree::Node<'_, '_>> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .collect()
    };

    // One strip per block, in MEM_SIZE order, each the block's pages.
    let blocks = j["ram"]["blocks"].as_array().unwrap();
    let strips = groups("block");
    assert_eq!(strips.len(), blocks.len(), "{name}");
    let mut total = 0;
    for (strip, b) in strips.iter().zip(blocks) {
        assert_eq!(strip.attribute("data-block"), b["idstr"].as_str());
        let pages = b["used_length"].as_u64().unwrap().div_ceil(4096);
        assert_eq!(num(*strip, "data-pages"), pages);
        let per_class: u64 = [
            "page",
            "zero",
            "xbzrle",
            "sent-more-than-once",
            "ballooned",
            "never-sent",
        ]
        .iter()
        .map(|c| num(*strip, &format!("data-{c}")))
        .sum();
        assert_eq!(per_class, pages, "{name} {}", b["idstr"]);
        // Its coloured runs cover the strip.
        let runs = strip
            .children()
            .filter(|n| n.has_tag_name("rect") && n.attribute("data-class").is_some());
        let width: f64 = runs
            .map(|r| r.attribute("width").unwrap().parse::<f64>().unwrap())
            .sum();
        assert!((width - 1000.0).abs() < 0.01, "{name}: {width}");
        total += pages;
    }

    // The legend: every class, its pages summing to all pages; the record counts are
    // inspect's.
    let entries = groups("legend-entry");
    let classes: Vec<&str> = entries
        .iter()
        .map(|e| e.attribute("data-class").unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "page",
            "zero",
            "xbzrle",
            "sent more than once",
            "ballooned",
            "never sent"
        ]
    );
    assert_eq!(
        entries.iter().map(|e| num(*e, "data-pages")).sum::<u64>(),
        total
    );
    let records = groups("legend-records")[0];
    let r = &j["ram"]["records"];
    assert_eq!(num(records, "data-page"), r["page"].as_u64().unwrap());
    assert_eq!(num(records, "data-zero"), r["zero"].as_u64().unwrap());
    assert_eq!(num(records, "data-xbzrle"), r["xbzrle"].as_u64().unwrap());
    let ballooned: u64 = j["balloon"]["ballooned_pages"]
        .as_object()
        .map_or(0, |m| m.values().map(|v| v.as_u64().unwrap()).sum());
    assert_eq!(num(records, "data-ballooned"), ballooned);
    let ballooned_class = entries
        .iter()
        .find(|e| e.attribute("data-class") == Some("ballooned"));
    assert_eq!(num(*ballooned_class.unwrap(), "data-pages"), ballooned);
    assert!(text.contains("binned"));
}

#[test]
fn map_of_a_two_block_guest() {
    check_map("multi-block", "qemu");
}

#[test]
fn map_of_an_xbzrle_migration() {
    check_map("live-xbzrle", "qemu");
}

#[test]
fn map_of_a_ballooned_stream() {
    check_map("balloon-v1", "ramstream-balloon-v1");
}

#[test]
fn timeline_of_a_send_has_a_bar_per_round_and_the_downtime_limit() {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if !ramstream_conformance_vectors::qemu::kvm_or_skip(open.map(drop)) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let uri = format!("file:{}", tmp.path().join("guest.mig").display());
    let svg = tmp.path().join("t.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(["send", &uri, "--mem", "64M", "--warmup-ms", "100", "--json"])
        .args(["--downtime-limit", "250", "--timeline"])
        .arg(&svg)
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    let rounds = report["rounds"].as_array().unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let panels: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("panel"))
        .collect();
    let series: Vec<&str> = panels
        .iter()
        .map(|p| p.attribute("data-series").unwrap())
        .collect();
    assert_eq!(series, ["pages", "bytes", "bandwidth", "expected-downtime"]);
    for p in &panels {
        let bars: Vec<f64> = p
            .children()
            .filter(|n| n.attribute("class") == Some("round"))
            .map(|n| n.attribute("data-value").unwrap().parse().unwrap())
            .collect();
        // Rounds under 1 ms have no bandwidth bar (their rate would be noise).
        let timed = rounds
            .iter()
            .filter(|r| r["duration_ms"].as_f64().unwrap() >= 1.0)
            .count();
        match p.attribute("data-series") {
            Some("bandwidth") => assert_eq!(bars.len(), timed),
            _ => assert_eq!(bars.len(), rounds.len()),
        }
        if p.attribute("data-series") == Some("pages") {
            let pages: Vec<f64> = rounds
                .iter()
                .map(|r| r["pages"].as_f64().unwrap())
                .collect();
            assert_eq!(bars, pages);
        }
        assert_eq!(
            p.children()
                .filter(|n| n.attribute("class") == Some("stop-copy"))
                .count(),
            1
        );
    }
    let limit = panels[3]
        .children()
        .find(|n| n.attribute("class") == Some("limit"))
        .expect("limit line");
    assert!(limit.has_tag_name("line"));
    assert!(text.contains("downtime limit: 250 ms"));
    let legend = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("legend"))
        .unwrap();
    let pages: u64 = rounds.iter().map(|r| r["pages"].as_u64().unwrap()).sum();
    assert_eq!(num(legend, "data-pages"), pages);
    assert_eq!(num(legend, "data-rounds"), rounds.len() as u64);
}

#[test]
fn timeline_of_a_receive_has_a_bar_per_ram_section_of_the_saved_stream() {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if !ramstream_conformance_vectors::qemu::kvm_or_skip(open.map(drop)) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (svg, saved) = (tmp.path().join("r.svg"), tmp.path().join("saved.mig"));
    let bin = env!("CARGO_BIN_EXE_ramstream");
    // receive --extract speaks QEMU's capabilities only: multifd turns the reference
    // sender's balloon capability off.
    let mut rx = Command::new(bin)
        .args(["receive", "--listen", "tcp:127.0.0.1:0"])
        .arg("--extract")
        .arg(tmp.path().join("x"))
        .arg("--save-stream")
        .arg(&saved)
        .arg("--timeline")
        .arg(&svg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(rx.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("ramstream: listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let sent = Command::new(bin)
        .args(["send", &addr, "--mem", "64M", "--warmup-ms", "100"])
        .args(["--balloon-percent", "0", "--multifd-channels", "2"])
        .output()
        .unwrap();
    ok(&sent);
    assert!(rx.wait().unwrap().success());
    let j: Value = serde_json::from_str(&ok(&ramstream(&[
        OsStr::new("inspect"),
        saved.as_os_str(),
        OsStr::new("--json"),
    ])))
    .unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let legend = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("legend"))
        .unwrap();
    assert_eq!(
        num(legend, "data-rounds"),
        j["ram"]["sections"].as_u64().unwrap()
    );
    let main_pages = ["page", "zero", "xbzrle"]
        .iter()
        .map(|k| j["ram"]["records"][k].as_u64().unwrap())
        .sum::<u64>();
    // The pages and bytes of the multifd channels (recorded beside the saved stream) count
    // in the rounds too.
    let channels = j["multifd"]["channels"].as_array().unwrap();
    let sum = |f: &dyn Fn(&Value) -> u64| channels.iter().map(f).sum::<u64>();
    let channel_pages = sum(&|c| c["pages"].as_u64().unwrap() + c["zero_pages"].as_u64().unwrap());
    let channel_bytes = sum(&|c| c["bytes"].as_u64().unwrap());
    assert!(channel_pages > 0, "{}", j["multifd"]);
    assert_eq!(num(legend, "data-pages"), main_pages + channel_pages);
    assert_eq!(num(legend, "data-multifd-pages"), channel_pages);
    assert_eq!(num(legend, "data-multifd-bytes"), channel_bytes);
    assert!(num(legend, "data-bytes") <= j["stream_len"].as_u64().unwrap() + channel_bytes);
    assert!(text.contains("not observed: a ram section does not carry it"));
    assert!(text.contains("downtime limit: not known here"));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("stop-copy"))
            .count(),
        4
    );
}
