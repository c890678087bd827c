//! Builders for hand-made `ram` records (SPEC.md §6, §7, §9.4): the bytes a test or a fuzz
//! seed splices into a real stream, written byte by byte so that they can be wrong on purpose.

use ramstream_codec::balloon::PageRun;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::xbzrle::ENCODING_FLAG_XBZRLE;

/// A big-endian 64-bit word, as record words and lengths are written.
pub fn word(w: u64) -> Vec<u8> {
    w.to_be_bytes().to_vec()
}

/// A page, zero or XBZRLE record: the word (`offset | flags`, with CONTINUE when `name` is
/// `None`), the idstr unless CONTINUE, and `payload`.
pub fn record(flags: u64, offset: u64, name: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let cont = if name.is_none() {
        RamFlags::CONTINUE.bits()
    } else {
        0
    };
    let mut v = word(offset | flags | cont);
    if let Some(n) = name {
        v.push(n.len() as u8);
        v.extend_from_slice(n.as_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// An XBZRLE record carrying `delta`.
pub fn xbzrle(offset: u64, name: Option<&str>, delta: &[u8]) -> Vec<u8> {
    let mut payload = vec![ENCODING_FLAG_XBZRLE];
    payload.extend_from_slice(&(delta.len() as u16).to_be_bytes());
    payload.extend_from_slice(delta);
    record(RamFlags::XBZRLE.bits(), offset, name, &payload)
}

/// A MEM_SIZE record announcing `total` bytes in `blocks` (`idstr`, used length).
pub fn mem_size(total: u64, blocks: &[(&str, u64)]) -> Vec<u8> {
    let mut v = word(total | RamFlags::MEM_SIZE.bits());
    for (n, len) in blocks {
        v.push(n.len() as u8);
        v.extend_from_slice(n.as_bytes());
        v.extend(word(*len));
    }
    v
}

/// A ramstream balloon v1 incremental record (SPEC.md §9.4) with inflate runs only, in
/// target pages of the block (SPEC.md §9.5).
pub fn balloon_inflate(name: &str, runs: &[PageRun]) -> Vec<u8> {
    let mut v = word(RamFlags::BALLOON.bits());
    v.push(name.len() as u8);
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&[1, 1]);
    v.extend_from_slice(&(runs.len() as u32).to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    for r in runs {
        v.extend(word(r.start));
        v.extend(word(r.count));
    }
    v
}
