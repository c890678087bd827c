//! `ramstream pages` and `inspect --map` on multifd recordings (`F`, `F.multifd-<id>`,
//! SPEC.md §14.9) and mapped-ram files (SPEC.md §7.9) recorded from QEMU 7.2, 10.0 and 11.1:
//! every page's dump equals what `ramstream extract` writes, the records name their channel,
//! offset and epoch, the map counts every channel page `inspect --json` counts, two
//! different copies of a page in one epoch are both shown, and the refusals name the file.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::page_report::{parse, PageReport};
use common::{ok, ramstream};
use serde_json::Value;

const PAGE: u64 = 4096;

/// Writes vector `name` into `dir` as a recording: `vm.mig` and, for a multifd vector,
/// `vm.mig.multifd-<id>`. Returns `vm.mig`.
fn recording(name: &str, dir: &Path) -> PathBuf {
    let v = ramstream_conformance_vectors::vector(name).unwrap();
    let f = dir.join("vm.mig");
    std::fs::write(&f, v.stream().unwrap()).unwrap();
    for (id, c) in v.channels().unwrap().iter().enumerate() {
        std::fs::write(channel_file(&f, id as u8), c).unwrap();
    }
    f
}

fn channel_file(f: &Path, id: u8) -> PathBuf {
    PathBuf::from(format!("{}.multifd-{id}", f.display()))
}

fn run(args: &[&OsStr]) -> String {
    ok(&ramstream(args))
}

fn refused(args: &[&OsStr]) -> String {
    let out = ramstream(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "accepted: {args:?}");
    err
}

/// `pages` of every page of `block`.
fn all_pages(f: &Path, block: &str, pages: u64) -> Vec<PageReport> {
    let count = pages.to_string();
    let out = run(&[
        "pages".as_ref(),
        f.as_os_str(),
        "--block".as_ref(),
        block.as_ref(),
        "--count".as_ref(),
        count.as_ref(),
    ]);
    let report = parse(&out, block, PAGE);
    assert_eq!(report.len() as u64, pages);
    report
}

fn extract(f: &Path, out: &Path) {
    run(&[
        "extract".as_ref(),
        f.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
}

fn inspect_json(f: &Path) -> Value {
    serde_json::from_str(&run(&[
        "inspect".as_ref(),
        "--json".as_ref(),
        f.as_os_str(),
    ]))
    .unwrap()
}

/// The map of `f`: the SVG text.
fn map(f: &Path, svg: &Path) -> String {
    run(&[
        "inspect".as_ref(),
        f.as_os_str(),
        "--map".as_ref(),
        svg.as_os_str(),
    ]);
    std::fs::read_to_string(svg).unwrap()
}

fn num(n: roxmltree::Node<'_, '_>, attr: &str) -> u64 {
    n.attribute(attr)
        .unwrap_or_else(|| panic!("{attr} missing"))
        .parse()
        .unwrap()
}

/// Every page of pc.ram, as `pages` dumps it, equals the extract; every channel page is
/// listed with its channel, offset and epoch; and the records `pages` lists for pc.ram are
/// the writes the map counts for it.
#[test]
fn every_page_of_a_multifd_recording_dumps_as_extract_writes_it() {
    for name in ["multifd-2-live", "10.0-multifd-4", "11.1-multifd-2-live"] {
        let tmp = tempfile::tempdir().unwrap();
        let f = recording(name, tmp.path());
        let out = tmp.path().join("x");
        extract(&f, &out);
        let image = std::fs::read(out.join("pc.ram.ram")).unwrap();
        let pages = image.len() as u64 / PAGE;
        let report = all_pages(&f, "pc.ram", pages);
        let mut records = 0u64;
        let mut channel_records = 0u64;
        for p in &report {
            let at = (p.page * PAGE) as usize;
            assert_eq!(
                p.bytes,
                image[at..at + PAGE as usize],
                "{name}: page {}: {:?} {:?}",
                p.page,
                p.records,
                p.notes
            );
            for r in &p.records {
                assert!(r.contains(" epoch "), "{name}: {r}");
                if r.starts_with("channel ") {
                    channel_records += 1;
                    assert!(r.contains("(packet at 0x"), "{name}: {r}");
                    assert!(
                        r.contains(" PAGE") || r.contains(" zero page"),
                        "{name}: {r}"
                    );
                }
            }
            records += p.records.len() as u64;
            // None of these recordings holds two different copies in one epoch.
            assert!(
                !p.notes.iter().any(|n| n.contains("copies differ")),
                "{name}: page {}",
                p.page
            );
        }
        assert!(channel_records > 0, "{name}");
        let text = map(&f, &tmp.path().join("m.svg"));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let strip = doc
            .descendants()
            .find(|n| n.attribute("data-block") == Some("pc.ram"))
            .unwrap();
        assert_eq!(num(strip, "data-writes"), records, "{name}");
    }
}

/// The map of a multifd recording counts every page each channel carried, as `inspect
/// --json` counts them, and every record; its classes cover every page.
#[test]
fn the_map_of_a_multifd_recording_counts_every_channel_page() {
    for name in ["multifd-2-live", "10.0-multifd-4", "11.1-multifd-2-live"] {
        let tmp = tempfile::tempdir().unwrap();
        let f = recording(name, tmp.path());
        let j = inspect_json(&f);
        let text = map(&f, &tmp.path().join("m.svg"));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let by_class = |c: &str| doc.descendants().find(|n| n.attribute("class") == Some(c));
        let chans = j["multifd"]["channels"].as_array().unwrap();
        let sum = |k: &str| -> u64 { chans.iter().map(|c| c[k].as_u64().unwrap_or(0)).sum() };
        let other = by_class("legend-other").unwrap();
        assert_eq!(num(other, "data-channel-page"), sum("pages"), "{name}");
        assert_eq!(num(other, "data-channel-zero"), sum("zero_pages"), "{name}");
        let r = &j["ram"]["records"];
        let main: u64 = ["page", "zero", "xbzrle"]
            .iter()
            .map(|k| r[k].as_u64().unwrap())
            .sum();
        let strips: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("block"))
            .collect();
        let writes: u64 = strips.iter().map(|s| num(*s, "data-writes")).sum();
        assert_eq!(
            writes,
            main + sum("pages") + sum("zero_pages"),
            "{name}: every record and channel page lands in a block"
        );
        let classes = [
            "page",
            "zero",
            "xbzrle",
            "sent-more-than-once",
            "ballooned",
            "never-sent",
        ];
        for s in &strips {
            let per_class: u64 = classes.iter().map(|c| num(*s, &format!("data-{c}"))).sum();
            assert_eq!(per_class, num(*s, "data-pages"), "{name}");
        }
        // Every page of these guests was sent: by a record or a channel.
        let never: u64 = strips.iter().map(|s| num(*s, "data-never-sent")).sum();
        assert_eq!(never, 0, "{name}");
    }
}

/// Two channels carrying different copies of a page in one epoch (QEMU 7.2 can, SPEC.md
/// §14.5): `pages` lists both and says a destination may keep either.
#[test]
fn two_different_copies_in_one_epoch_are_both_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let f = recording("multifd-2-live", tmp.path());
    let report = all_pages(&f, "pc.ram", 16384);
    // A page two channels both carry in one epoch (identical copies in the recording).
    let (page, epoch, second) = report
        .iter()
        .find_map(|p| {
            let ch: Vec<(&str, &str, &str)> = p
                .records
                .iter()
                .filter(|r| r.starts_with("channel "))
                .map(|r| {
                    let w: Vec<&str> = r.split_whitespace().collect();
                    let e = w.iter().position(|x| *x == "epoch").unwrap();
                    (w[1], w[e + 1], w[2])
                })
                .collect();
            ch.iter().enumerate().find_map(|(i, a)| {
                ch[i + 1..]
                    .iter()
                    .find(|b| b.1 == a.1 && b.0 != a.0)
                    .map(|b| (p.page, a.1.to_string(), (b.0.to_string(), b.2.to_string())))
            })
        })
        .expect("a page on two channels in one epoch");
    assert!(!report[page as usize]
        .notes
        .iter()
        .any(|n| n.contains("copies differ")));
    // Change the second copy's first byte in its channel file.
    let path = channel_file(&f, second.0.parse().unwrap());
    let at = u64::from_str_radix(second.1.trim_start_matches("0x"), 16).unwrap() as usize;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let offset = format!("{:#x}", page * PAGE);
    let out = run(&[
        "pages".as_ref(),
        f.as_os_str(),
        "--block".as_ref(),
        "pc.ram".as_ref(),
        "--offset".as_ref(),
        offset.as_ref(),
    ]);
    let p = &parse(&out, "pc.ram", PAGE)[0];
    let want = format!("same epoch {epoch}, copies differ: a destination may keep either");
    assert!(p.notes.contains(&want), "{out}");
    let in_epoch = p
        .records
        .iter()
        .filter(|r| r.contains(&format!(" epoch {epoch} ")))
        .count();
    assert!(in_epoch >= 2, "{out}");
    // The dump is still extract's.
    let x = tmp.path().join("x");
    extract(&f, &x);
    let image = std::fs::read(x.join("pc.ram.ram")).unwrap();
    let at = (page * PAGE) as usize;
    assert_eq!(p.bytes, image[at..at + PAGE as usize]);
    // `--json` says the same: channel records with their epoch, the open epoch, the bytes
    // extract writes, and the other copy when the open epoch is the page's last.
    let out = run(&[
        "pages".as_ref(),
        f.as_os_str(),
        "--block".as_ref(),
        "pc.ram".as_ref(),
        "--offset".as_ref(),
        offset.as_ref(),
        "--json".as_ref(),
    ]);
    let j: Value = serde_json::from_str(&out).unwrap();
    let jp = &j["pages"][0];
    let e: u64 = epoch.parse().unwrap();
    assert!(
        jp["differing_epochs"]
            .as_array()
            .unwrap()
            .contains(&e.into()),
        "{jp}"
    );
    let channel_records = jp["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "channel" && r["epoch"] == e)
        .count();
    assert_eq!(channel_records, in_epoch, "{jp}");
    assert_eq!(
        hex::decode(jp["data"].as_str().unwrap()).unwrap(),
        image[at..at + PAGE as usize]
    );
    let last_epoch = jp["records"].as_array().unwrap().last().unwrap()["epoch"].clone();
    let others = jp["other_copies"].as_array().unwrap();
    if last_epoch == e {
        assert_eq!(others.len(), 1, "{jp}");
        assert_ne!(others[0]["data"], jp["data"]);
    } else {
        assert!(others.is_empty(), "{jp}");
    }
}

/// A mapped-ram file: a present page is listed at its file offset (the block's pages
/// region plus its offset) and dumps as extract writes it; a clear one is "not present:
/// zero"; the map's PAGE class is the bitmap's present pages.
#[test]
fn a_mapped_ram_file_shows_its_pages_at_their_file_offsets() {
    for name in ["11.1-mapped-ram-noos", "10.0-mapped-ram-linux-multifd"] {
        let tmp = tempfile::tempdir().unwrap();
        let f = recording(name, tmp.path());
        let j = inspect_json(&f);
        let block = &j["mapped_ram"]["blocks"][0];
        assert_eq!(block["idstr"], "pc.ram");
        let pages_offset = block["pages_offset"].as_u64().unwrap();
        let out = tmp.path().join("x");
        extract(&f, &out);
        let image = std::fs::read(out.join("pc.ram.ram")).unwrap();
        let report = all_pages(&f, "pc.ram", image.len() as u64 / PAGE);
        let mut present = 0;
        for p in &report {
            let at = (p.page * PAGE) as usize;
            match p.records.as_slice() {
                [] => {
                    assert!(p.notes[0].starts_with("not present: zero"), "{name}");
                    assert!(image[at..at + PAGE as usize].iter().all(|b| *b == 0));
                }
                [r] => {
                    present += 1;
                    let want = format!("file {:#012x} PAGE", pages_offset + p.page * PAGE);
                    assert!(
                        r.split_whitespace().collect::<Vec<_>>().join(" ") == want,
                        "{name}: {r}"
                    );
                    assert_eq!(p.bytes, image[at..at + PAGE as usize], "{name}");
                }
                more => panic!("{name}: page {}: {more:?}", p.page),
            }
        }
        assert_eq!(present, block["pages_present"].as_u64().unwrap(), "{name}");
        let text = map(&f, &tmp.path().join("m.svg"));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let other = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("legend-other"))
            .unwrap();
        let all_present = j["mapped_ram"]["pages_present"].as_u64().unwrap();
        assert_eq!(num(other, "data-mapped-present"), all_present, "{name}");
        let strip = doc
            .descendants()
            .find(|n| n.attribute("data-block") == Some("pc.ram"))
            .unwrap();
        assert_eq!(num(strip, "data-page"), present, "{name}");
        assert_eq!(
            num(strip, "data-zero") + present,
            num(strip, "data-pages"),
            "{name}"
        );
    }
}

/// A block `x-ignore-shared` leaves out of a mapped-ram file is not in the file: `pages`
/// says so rather than "zero", and the map draws it as never sent.
#[test]
fn a_block_left_out_of_a_mapped_ram_file_is_not_called_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let f = recording("11.1-mapped-ram-x-ignore-shared", tmp.path());
    let out = run(&[
        "pages".as_ref(),
        f.as_os_str(),
        "--block".as_ref(),
        "pc.ram".as_ref(),
    ]);
    let p = &parse(&out, "pc.ram", PAGE)[0];
    assert!(p.records.is_empty(), "{out}");
    assert!(
        p.notes[0].starts_with("not in the file: x-ignore-shared"),
        "{out}"
    );
    let text = map(&f, &tmp.path().join("m.svg"));
    let doc = roxmltree::Document::parse(&text).unwrap();
    let strip = doc
        .descendants()
        .find(|n| n.attribute("data-block") == Some("pc.ram"))
        .unwrap();
    assert_eq!(num(strip, "data-never-sent"), num(strip, "data-pages"));
}

/// The refusals name the file: a channel file missing between two others, a channel
/// file cut short, another channel's file in its place, another migration's channel.
#[test]
fn a_recording_with_a_missing_or_bad_channel_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let f = recording("10.0-multifd-4", tmp.path());
    let pages: [&OsStr; 4] = [
        "pages".as_ref(),
        f.as_os_str(),
        "--block".as_ref(),
        "pc.ram".as_ref(),
    ];
    let svg = tmp.path().join("m.svg");
    let map: [&OsStr; 4] = [
        "inspect".as_ref(),
        f.as_os_str(),
        "--map".as_ref(),
        svg.as_os_str(),
    ];
    let one = channel_file(&f, 1);
    let saved = std::fs::read(&one).unwrap();

    std::fs::remove_file(&one).unwrap();
    // `extract` and `inspect` too: they read the channels up to the gap, and once gave an
    // image (and counts) without channels 2 and 3.
    let out = tmp.path().join("out");
    let extract: [&OsStr; 4] = [
        "extract".as_ref(),
        f.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    let inspect: [&OsStr; 2] = ["inspect".as_ref(), f.as_os_str()];
    for args in [&pages[..], &map, &extract, &inspect] {
        let e = refused(args);
        assert!(
            e.contains("vm.mig.multifd-1 is missing") && e.contains("vm.mig.multifd-2"),
            "{e}"
        );
    }
    assert!(!out.exists(), "extract left {}", out.display());
    // Every reader refuses the other damages too, naming the file.
    let all = |check: &dyn Fn(&str) -> bool| {
        for args in [&extract[..], &inspect] {
            let e = refused(args);
            assert!(e.contains("vm.mig.multifd-1") && check(&e), "{args:?}: {e}");
            assert!(!out.exists(), "extract left {}", out.display());
        }
    };

    std::fs::write(&one, &saved[..saved.len() - 100]).unwrap();
    for args in [&pages, &map] {
        let e = refused(args);
        assert!(
            e.contains("vm.mig.multifd-1: multifd channel 1") && e.contains("truncated"),
            "{e}"
        );
    }
    all(&|e| e.contains("truncated"));

    std::fs::copy(channel_file(&f, 0), &one).unwrap();
    for args in [&pages, &map] {
        let e = refused(args);
        assert!(
            e.contains("vm.mig.multifd-1: multifd channel 1: its initial packet names channel 0"),
            "{e}"
        );
    }
    all(&|e| e.contains("a second multifd channel with id 0"));

    let mut other = saved.clone();
    other[8] ^= 0xff;
    std::fs::write(&one, other).unwrap();
    for args in [&pages, &map] {
        let e = refused(args);
        assert!(
            e.contains("vm.mig.multifd-1: multifd channel 1: its initial packet's uuid")
                && e.contains("another migration"),
            "{e}"
        );
    }
    all(&|e| e.contains("another migration"));
}
