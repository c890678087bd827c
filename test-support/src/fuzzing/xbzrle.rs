//! The XBZRLE targets: decoding hostile deltas, and encoding then decoding page pairs.

use arbitrary::{Result as AResult, Unstructured};
use ramstream_codec::xbzrle::{self, Encoded, Kernel};

use super::pages::{arbitrary_page, pattern_page};
use super::reference_xbzrle_decode;

/// The page length a selector byte picks: 4096, 1024, 65536 or a short `1..=64`.
fn page_len(sel: u8) -> usize {
    match sel & 3 {
        0 => 4096,
        1 => 1024,
        2 if sel & 4 != 0 => 65536,
        _ => 1 + usize::from(sel >> 2) % 64,
    }
}

/// Target `xbzrle_decode`: `page_sel, page_seed, delta…`. The delta is applied to a page
/// (length from `page_sel`, contents from `page_seed`) and must behave exactly as QEMU
/// 7.2's decoder does: same acceptance, same bytes written (also when it fails part-way),
/// [`xbzrle::validate`] agreeing with [`xbzrle::decode`], and only literal runs written.
pub fn xbzrle_decode(data: &[u8]) {
    let [sel, seed, delta @ ..] = data else {
        return;
    };
    let old = pattern_page(page_len(*sel), *seed);
    let mut ours = old.clone();
    let mut theirs = old.clone();
    let r = xbzrle::decode(delta, &mut ours);
    let q = reference_xbzrle_decode(delta, &mut theirs);
    assert_eq!(r.is_ok(), q.is_ok(), "decode {r:?}, QEMU {q:?}");
    assert!(ours == theirs, "decode wrote other bytes than QEMU");
    assert_eq!(xbzrle::validate(delta, old.len()), r, "validate disagrees");
    if let Ok(len) = u16::try_from(delta.len()) {
        let mut page = old.clone();
        let rec = xbzrle::decode_record(1, delta, &mut page);
        let hdr = xbzrle::check_record_header(1, len, old.len());
        assert_eq!(rec, hdr.and(r), "decode_record disagrees");
    }
}

/// Target `roundtrip_xbzrle`: arbitrary old and new pages → [`xbzrle::encode`] (every
/// kernel, same output) → [`xbzrle::decode`] gives the new page back, and QEMU's decoder
/// accepts the delta.
pub fn roundtrip_xbzrle(data: &[u8]) {
    let _ = roundtrip_xbzrle_inner(&mut Unstructured::new(data));
}

fn roundtrip_xbzrle_inner(u: &mut Unstructured<'_>) -> AResult<()> {
    let len = page_len(u.arbitrary()?);
    let old = arbitrary_page(u, len)?;
    let mut new = old.clone();
    for _ in 0..u.int_in_range(0..=24)? {
        let at = u.int_in_range(0..=len - 1)?;
        let run = u.int_in_range(1..=300usize)?.min(len - at);
        let fill: u8 = u.arbitrary()?;
        let flip = u.arbitrary::<bool>()?;
        for (i, b) in new[at..at + run].iter_mut().enumerate() {
            *b = if flip { *b ^ (i as u8 | 1) } else { fill };
        }
    }
    let out_len = if u.arbitrary::<bool>()? {
        len
    } else {
        u.int_in_range(0..=len)?
    };
    let mut reference = vec![0u8; out_len];
    let want = xbzrle::encode_with(Kernel::Naive, &old, &new, &mut reference).unwrap();
    for k in Kernel::ALL {
        let mut out = vec![0u8; out_len];
        let got = xbzrle::encode_with(k, &old, &new, &mut out).unwrap();
        assert_eq!(got, want, "kernel {k:?} disagrees with Naive");
        if let Encoded::Delta(n) = got {
            assert_eq!(out[..n], reference[..n], "kernel {k:?} bytes differ");
        }
    }
    match want {
        Encoded::Unchanged => assert!(old == new, "Unchanged for a changed page"),
        Encoded::Delta(n) => {
            assert!((2..=out_len).contains(&n));
            assert!(old != new, "a delta for an unchanged page");
            let mut page = old.clone();
            xbzrle::decode(&reference[..n], &mut page).expect("own delta rejected");
            assert!(page == new, "delta does not give the new page");
            let mut q = old.clone();
            reference_xbzrle_decode(&reference[..n], &mut q).expect("QEMU rejects the delta");
            assert!(q == new, "QEMU's decoder gives another page");
        }
        Encoded::Overflow => assert!(old != new || out_len < 2, "overflow of an unchanged page"),
    }
    Ok(())
}
