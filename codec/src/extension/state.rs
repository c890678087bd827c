//! The reference machine's state sections (SPEC.md §13.6): `ramstream/vcpu`, `ramstream/vm`
//! and `ramstream/memory-layout`, each body a be32 length and then the blob.
//!
//! | field | size | value |
//! |---|---|---|
//! | length | be32 | `n` |
//! | blob | n | opaque to the codec (the reference VMM's `RSVC` / `RSVM` blobs, layout JSON) |
//!
//! The prefix lets a receiver detect a body split at a false footer (SPEC.md §5.2) instead of
//! misreading it.
//!
//! ```
//! use ramstream_codec::extension::state::{decode_state_body, encode_state_body};
//! let mut body = Vec::new();
//! encode_state_body(b"RSVC", &mut body).unwrap();
//! assert_eq!(body, b"\0\0\0\x04RSVC");
//! assert_eq!(decode_state_body(&body), Ok(&b"RSVC"[..]));
//! assert!(decode_state_body(&body[..7]).is_err());
//! ```

use bytes::BufMut;

use super::error::ExtensionError;

/// Bytes of the length prefix.
const PREFIX_LEN: usize = 4;

/// Writes `blob` as a state section body into `out`: be32 length, then the blob. Fails,
/// writing nothing, if the blob does not fit a be32 length.
pub fn encode_state_body(blob: &[u8], out: &mut impl BufMut) -> Result<(), ExtensionError> {
    let len =
        u32::try_from(blob.len()).map_err(|_| ExtensionError::StateTooLong { len: blob.len() })?;
    out.put_u32(len);
    out.put_slice(blob);
    Ok(())
}

/// The blob of a state section body, borrowed from `body`; an error unless the body is
/// exactly the prefix and as many bytes as it announces.
pub fn decode_state_body(body: &[u8]) -> Result<&[u8], ExtensionError> {
    let (prefix, blob) =
        body.split_first_chunk::<PREFIX_LEN>()
            .ok_or(ExtensionError::Truncated {
                field: "length prefix",
                at: 0,
                needed: PREFIX_LEN,
                available: body.len(),
            })?;
    let prefix = u32::from_be_bytes(*prefix);
    if usize::try_from(prefix).ok() != Some(blob.len()) {
        return Err(ExtensionError::StateLength {
            prefix,
            available: blob.len(),
        });
    }
    Ok(blob)
}
