//! `ramstream extract` writing a single stream straight into the image files, the manifest's
//! sha256s hashed alongside: each equals the sha256 of the file written, for QEMU's single-pass
//! and live (several rounds, XBZRLE) streams and for hand-made streams that rewrite an early
//! page after later ones, zero a page that held data, and change the block list; `receive
//! --extract` writes the same files; and `--no-sha256` (of both) leaves the sums out.

mod common;

use std::path::Path;

use common::{json_file, ok, ramstream};
use ramstream_codec::{Encoder, PageAddr, RamBlock, SectionHeader};
use ramstream_spec::stream::SectionType;
use sha2::{Digest, Sha256};

const PAGE: usize = 4096;

/// Runs `ramstream extract stream --out dir [extra]` and checks every block's sha256 in the
/// manifest against the file written; returns `(idstr, file bytes)` per block.
fn extract_checked(stream: &Path, dir: &Path, extra: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut args = vec!["extract".as_ref(), stream.as_os_str(), "--out".as_ref()];
    args.push(dir.as_os_str());
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    ok(&ramstream(&args));
    blocks_checked(dir, extra)
}

/// Runs `ramstream receive --listen tcp:127.0.0.1:0 --extract dir [extra]`, sends it
/// `stream` over loopback, and checks the manifest as [`extract_checked`] does.
fn receive_checked(stream: &[u8], dir: &Path, extra: &[&str]) -> Vec<(String, Vec<u8>)> {
    let out = receive(stream, dir, extra);
    assert!(out.status.success(), "{:?}", out.stderr);
    blocks_checked(dir, extra)
}

/// Runs `ramstream receive --listen tcp:127.0.0.1:0 --extract dir [extra]` and sends it
/// `stream` over loopback (the receiver may stop reading at a record it refuses).
fn receive(stream: &[u8], dir: &Path, extra: &[&str]) -> common::live::Finished {
    let mut args: Vec<String> = ["receive", "--listen", "tcp:127.0.0.1:0", "--extract"]
        .map(String::from)
        .into();
    args.push(dir.display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    let recv = common::live::spawn_listening(&args);
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(recv.tcp()).unwrap();
        let _ = s.write_all(stream);
    }
    recv.wait()
}

/// The blocks of the extract in `dir`, each file its manifest's length and (unless `extra`
/// has `--no-sha256`, which leaves them out) its manifest's sha256.
fn blocks_checked(dir: &Path, extra: &[&str]) -> Vec<(String, Vec<u8>)> {
    let m = json_file(&dir.join("manifest.json"));
    m["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let bytes = std::fs::read(dir.join(b["file"].as_str().unwrap())).unwrap();
            assert_eq!(bytes.len() as u64, b["used_length"].as_u64().unwrap());
            if extra.contains(&"--no-sha256") {
                assert!(b.get("sha256").is_none(), "{b}");
            } else {
                assert_eq!(
                    b["sha256"].as_str().unwrap(),
                    hex::encode(Sha256::digest(&bytes)),
                    "{}: the manifest's sha256 is the file's",
                    b["idstr"]
                );
            }
            (b["idstr"].as_str().unwrap().to_string(), bytes)
        })
        .collect()
}

#[test]
fn the_manifest_sha256_is_the_files_for_single_pass_and_live_qemu_streams() {
    for name in [
        "linux-stopped",
        "live-xbzrle",
        "live-linux-xbzrle",
        "11.1-live-linux-xbzrle",
        "multi-block",
    ] {
        let v = ramstream_conformance_vectors::vector(name).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("stream.bin");
        std::fs::write(&s, v.stream().unwrap()).unwrap();
        let blocks = extract_checked(&s, &tmp.path().join("x"), &[]);
        let got: Vec<(String, String)> = blocks
            .iter()
            .map(|(id, b)| (id.clone(), hex::encode(Sha256::digest(b))))
            .collect();
        assert_eq!(got, v.block_hashes(), "{name}: QEMU's RAM");
    }
}

/// A page whose bytes say which page and which round.
fn page(i: u64, round: u8) -> Vec<u8> {
    (0..PAGE / 8)
        .flat_map(|w| (i << 16 | (w as u64) << 4 | round as u64).to_le_bytes())
        .collect()
}

/// A stream of one `ram` section: the header and configuration, START with MEM_SIZE of
/// `blocks`, what `round1` encodes, then a PART with what `round2` encodes, then EOF.
fn stream(
    blocks: &[RamBlock],
    round1: impl FnOnce(&mut Encoder, &mut Vec<u8>),
    round2: impl FnOnce(&mut Encoder, &mut Vec<u8>),
) -> Vec<u8> {
    let mut s = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2".to_vec();
    let mut e = Encoder::new(12);
    let header = SectionHeader {
        section_type: SectionType::START,
        section_id: 2,
        idstr: "ram",
        instance_id: 0,
        version_id: 4,
    };
    e.section_header(&header, &mut s).unwrap();
    e.mem_size(blocks, &mut s).unwrap();
    round1(&mut e, &mut s);
    e.eos(&mut s);
    e.footer(2, &mut s);
    e.section_part(SectionType::END, 2, &mut s);
    round2(&mut e, &mut s);
    e.eos(&mut s);
    e.footer(2, &mut s);
    e.eof(&mut s);
    s
}

fn block(idstr: &str, pages: u64) -> RamBlock {
    RamBlock {
        idstr: idstr.into(),
        used_length: pages * PAGE as u64,
        page_size: None,
        mr_addr: None,
    }
}

/// 24 MiB of pages (three hash checkpoints), some never written, then a second round that
/// rewrites early pages after later ones, zeroes pages that held data, fills one and
/// "zeroes" one that never held data.
fn rewriting_stream() -> (Vec<u8>, Vec<u8>) {
    let pages = 6144u64;
    let mut want = vec![0u8; pages as usize * PAGE];
    let put = |want: &mut Vec<u8>, i: u64, p: &[u8]| {
        want[i as usize * PAGE..(i as usize + 1) * PAGE].copy_from_slice(p);
    };
    let round1: Vec<(u64, Vec<u8>)> = (0..pages)
        .filter(|i| !(100..200).contains(i))
        .map(|i| (i, page(i, 1)))
        .collect();
    let round2: Vec<(u64, Vec<u8>)> = [1u64, 5000, 2, 3000, 6143]
        .iter()
        .map(|&i| (i, page(i, 2)))
        .collect();
    for (i, p) in round1.iter().chain(&round2) {
        put(&mut want, *i, p);
    }
    // Round two's ZERO records: 7 and 4000 held data; 150 never did; 8 is filled with 0x5a.
    for i in [7u64, 4000, 150] {
        put(&mut want, i, &[0u8; PAGE]);
    }
    put(&mut want, 8, &[0x5a; PAGE]);
    let at = |i: u64| PageAddr::new(0, i * PAGE as u64);
    let s = stream(
        &[block("pc.ram", pages)],
        |e, s| {
            for i in 100..200 {
                e.zero(at(i), 0, s).unwrap();
            }
            for (i, p) in &round1 {
                e.page(at(*i), p, s).unwrap();
            }
        },
        |e, s| {
            for (i, p) in &round2 {
                e.page(at(*i), p, s).unwrap();
            }
            for i in [7u64, 4000, 150] {
                e.zero(at(i), 0, s).unwrap();
            }
            e.zero(at(8), 0x5a, s).unwrap();
        },
    );
    (s, want)
}

#[test]
fn rewrites_and_zeroes_after_later_pages_land_in_the_file_and_its_sha256() {
    let (s, want) = rewriting_stream();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stream.bin");
    std::fs::write(&path, &s).unwrap();
    let blocks = extract_checked(&path, &tmp.path().join("x"), &[]);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].0, "pc.ram");
    assert!(blocks[0].1 == want, "the image file is the final RAM");
    let nosha = extract_checked(&path, &tmp.path().join("y"), &["--no-sha256"]);
    assert!(nosha[0].1 == want, "--no-sha256 writes the same image");
}

/// A stream whose second MEM_SIZE adds a block before the one written to, and the two
/// blocks' final RAM: `extra` holds page 3, `pc.ram` keeps page 1 (page 2 was zeroed).
fn changed_block_list_stream() -> (Vec<u8>, [Vec<u8>; 2]) {
    let at = |b: usize, i: u64| PageAddr::new(b, i * PAGE as u64);
    let p1 = page(1, 1);
    let p2 = page(2, 2);
    let p3 = page(3, 3);
    let s = stream(
        &[block("pc.ram", 16)],
        |e, s| {
            e.page(at(0, 1), &p1, s).unwrap();
            e.page(at(0, 2), &p2, s).unwrap();
        },
        |e, s| {
            e.mem_size(&[block("extra", 4), block("pc.ram", 16)], s)
                .unwrap();
            e.page(at(0, 3), &p3, s).unwrap();
            e.zero(at(1, 2), 0, s).unwrap();
        },
    );
    let mut extra = vec![0u8; 4 * PAGE];
    extra[3 * PAGE..].copy_from_slice(&p3);
    let mut ram = vec![0u8; 16 * PAGE];
    ram[PAGE..2 * PAGE].copy_from_slice(&p1);
    (s, [extra, ram])
}

/// A second MEM_SIZE that adds a block: the pages written so far are kept (the extract goes
/// on in memory), the new block is there, and the sums are the files'.
#[test]
fn a_changed_block_list_keeps_the_pages_written() {
    let (s, [extra, ram]) = changed_block_list_stream();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stream.bin");
    std::fs::write(&path, &s).unwrap();
    let blocks = extract_checked(&path, &tmp.path().join("x"), &[]);
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["extra", "pc.ram"]);
    assert!(blocks[0].1 == extra, "extra holds the page written after");
    assert!(blocks[1].1 == ram, "pc.ram keeps page 1; page 2 was zeroed");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "no scratch directory is left beside the extract"
    );
}

/// `receive --extract --no-sha256` (fed a QEMU stream over loopback, no QEMU needed): the
/// manifest has no sums, the images are QEMU's RAM.
#[test]
fn receive_extract_no_sha256_leaves_the_sums_out() {
    let v = ramstream_conformance_vectors::vector("multi-block").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let blocks = receive_checked(
        &v.stream().unwrap(),
        &tmp.path().join("x"),
        &["--no-sha256"],
    );
    let got: Vec<(String, String)> = blocks
        .iter()
        .map(|(id, b)| (id.clone(), hex::encode(Sha256::digest(b))))
        .collect();
    assert_eq!(got, v.block_hashes(), "QEMU's RAM");
}

/// `receive --extract` (page bodies copied out of the socket's buffer into the pending
/// write) writes the files `extract` (bodies written from the mapped file) writes, with the
/// same sums: QEMU's single-pass, live and multi-block streams and the rewriting stream.
#[test]
fn receive_extract_writes_what_extract_writes() {
    let mut streams: Vec<(String, Vec<u8>)> = ["linux-stopped", "live-xbzrle", "multi-block"]
        .iter()
        .map(|n| {
            let v = ramstream_conformance_vectors::vector(n).unwrap();
            (n.to_string(), v.stream().unwrap())
        })
        .collect();
    streams.push(("rewriting".into(), rewriting_stream().0));
    for (name, s) in streams {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("stream.bin");
        std::fs::write(&path, &s).unwrap();
        let want = extract_checked(&path, &tmp.path().join("x"), &[]);
        let got = receive_checked(&s, &tmp.path().join("r"), &[]);
        assert_eq!(
            got.iter().map(|b| &b.0).collect::<Vec<_>>(),
            want.iter().map(|b| &b.0).collect::<Vec<_>>(),
            "{name}: the blocks"
        );
        for ((id, g), (_, w)) in got.iter().zip(&want) {
            assert!(g == w, "{name}: block {id} differs from extract's");
        }
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            3,
            "{name}: no scratch directory is left beside the extracts"
        );
    }
}

/// A block list that changes mid-stream is refused by `receive --extract` (its RAM may be
/// shared with multifd channels, which keep the first list), naming the record, and leaves
/// no files; `extract` of the same stream takes it (above).
#[test]
fn receive_extract_refuses_a_changed_block_list() {
    let (s, _) = changed_block_list_stream();
    let tmp = tempfile::tempdir().unwrap();
    let out = receive(&s, &tmp.path().join("r"), &[]);
    let stderr = out.stderr.join("\n");
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("MEM_SIZE") && stderr.contains("block list changes"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "neither the output nor a scratch directory is left"
    );
}

/// A stream cut in the middle of its pages fails, naming the offset, and leaves neither the
/// output directory nor the scratch directory the pages were being written into.
#[test]
fn a_stream_cut_among_its_pages_leaves_no_files() {
    let (s, _) = rewriting_stream();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stream.bin");
    std::fs::write(&path, &s[..s.len() / 2]).unwrap();
    let dir = tmp.path().join("x");
    let out = ramstream(&[
        "extract".as_ref(),
        path.as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("stream.bin") && stderr.contains("offset"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["stream.bin"], "only the stream is left");
}
