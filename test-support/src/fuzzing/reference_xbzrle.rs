//! QEMU's XBZRLE decoder, the oracle the XBZRLE checks compare against.

/// A QEMU 7.2 `xbzrle_decode_buffer` transcribed literally, as the reference for
/// [`xbzrle::decode`](ramstream_codec::xbzrle::decode): returns the page length written up to, or
/// `Err` where QEMU returns -1, writing the page as QEMU does.
#[allow(clippy::result_unit_err)] // a test oracle: the error carries no information
pub fn reference_xbzrle_decode(src: &[u8], dst: &mut [u8]) -> Result<usize, ()> {
    fn uleb(input: &[u8]) -> Result<(usize, usize), ()> {
        if input[0] & 0x80 == 0 {
            Ok((usize::from(input[0]), 1))
        } else {
            if input[1] & 0x80 != 0 {
                return Err(());
            }
            Ok((
                usize::from(input[0] & 0x7f) + (usize::from(input[1]) << 7),
                2,
            ))
        }
    }
    let (slen, dlen) = (src.len(), dst.len());
    let (mut i, mut d) = (0usize, 0usize);
    while i < slen {
        if slen - i < 2 {
            return Err(());
        }
        let (count, ret) = uleb(&src[i..])?;
        if i != 0 && count == 0 {
            return Err(());
        }
        i += ret;
        d += count;
        if d > dlen {
            return Err(());
        }
        if slen - i < 2 {
            return Err(());
        }
        let (count, ret) = uleb(&src[i..])?;
        if count == 0 {
            return Err(());
        }
        i += ret;
        if d + count > dlen || i + count > slen {
            return Err(());
        }
        dst[d..d + count].copy_from_slice(&src[i..i + count]);
        d += count;
        i += count;
    }
    Ok(d)
}
