//! The VMDESCRIPTION trailer and a field walker for FULL device sections.
//!
//! QEMU ends a precopy stream with `0x00` (EOF) and, unless `suppress-vmdesc` is set, a
//! trailer `u8 0x06, be32 json_len, json_len bytes of JSON` that describes every FULL
//! device section it sent, in stream order: the vmsd name and version, and for every
//! field its name, type and the number of bytes it wrote. With it, the otherwise
//! unframed device state (a FULL section's body has no length) can be split and named.
//!
//! ```text
//! FULL section:  04 | be32 section_id | u8 len, idstr | be32 instance_id | be32 version_id
//!                body: fields of the vmsd, each as described, then its subsections:
//!                  05 | u8 len, name | be32 version_id | fields ... (recursively)
//!                7E | be32 section_id                            (section footer)
//! ...
//! 00                                                              (EOF)
//! 06 | be32 json_len | {"page_size": 4096, "devices": [...]}     (VMDESCRIPTION)
//! ```
//!
//! * [`VmDescription::parse`] / [`VmDescription::parse_trailer`] read the JSON into
//!   [`VmDescription`] (unknown keys ignored; QEMU 10's `configuration` key accepted).
//! * [`decode_device`] walks one section body with its [`DeviceDescription`], checks
//!   that the description accounts for the body exactly, and returns a tree of named
//!   [`Value`]s that serialises like analyze-migration.py's `-d state` output.
//!   [`decode_device_prefix`] does the same on a buffer that continues past the body
//!   (e.g. the rest of the stream) and reports how many bytes the body has, so a framing
//!   layer can find the section footer.
//! * [`check_splits`] confirms the streaming decoder's device-section splits after the
//!   fact (SPEC.md §5.2): every body must be consumed exactly by its description.
//!
//! # What the JSON says (QEMU 7.2, `migration/vmstate.c`, verified on recordings)
//!
//! * One object per field entry: `name`, `type`, `size` and optionally `array_len` or
//!   `index`. A field name that repeats within a vmsd is written `name[n]`.
//! * `size` is the number of bytes written for the entry, measured from the stream
//!   position: for a `struct` it includes the nested subsections.
//! * Arrays (more than one element) are "compressed" to one entry with `array_len` and
//!   the size of the first element, unless the element type may vary (a `field_exists`
//!   test, or a struct with subsections or with such fields): then there is one entry per
//!   element with `index`. For compressed arrays of structs the nested description is that
//!   of element 0; this walker re-checks every element against it.
//! * `type` is the `VMStateInfo` name (`uint32`, `int32 equal`, `int32 le` — "less or
//!   equal", still big-endian —, `bool`, `timer`, `buffer`, `unused_buffer`,
//!   `pci config`, `virtio`, ...), or `struct` with the nested vmsd in a `struct` object,
//!   or `vstruct`. Handlers that save a vmsd of their own while given the JSON writer
//!   (`tmp`, `vstruct`; `qtailq`/`gtree`/`qlist` once per element, producing duplicate
//!   keys) put `vmsd_name`, `version`, `fields` straight into the field object.
//!   `virtio` devices save their inner state without a description: one opaque field.
//! * A NULL element of an array of pointers is the byte `'0'`; 7.2 describes it with the
//!   element type, for structs as an empty `"struct": {}` with size 1.
//! * Devices with an old-style `save_state` handler have no `vmsd_name`, a `size` and one
//!   `buffer` field `data` (e.g. `slirp`).
//! * A subsection is listed under its parent's `subsections` only if it was sent. In the
//!   body the walker finds them as QEMU's loader does: while the next byte is `0x05` and
//!   the counted name after it starts with the parent's vmsd name, it is a subsection;
//!   it must be one the description lists (not yet seen), with the described version.
//!
//! # analyze-migration.py bugs this module fixes
//!
//! QEMU's `scripts/analyze-migration.py` (read in its 7.2 and current forms) does the same
//! job; these are the ways it goes wrong and what this module does instead:
//!
//! 1. **Trailer locator.** It reads the last 10 MiB, takes the *last NUL byte*, then the
//!    *first `{`* after it as the JSON start, and checks that the byte 5 before is `0x06`.
//!    If the be32 length has a `0x7B` byte after its last zero byte (e.g. length
//!    `0x0001_7B20`), the search lands inside the length field and fails; a JSON over
//!    10 MiB is not found at all; a stream without a trailer (`suppress-vmdesc`) makes it
//!    seek to a negative offset. Here the caller hands over the bytes right after EOF and
//!    [`VmDescription::parse_trailer`] reads `0x06`, the length and exactly that many bytes.
//! 2. **Subsections matched by position, not name.** For each described subsection it
//!    reads a `0x05` header and decodes with the *described* layout whatever name the
//!    stream has. Here the name read from the body selects the description, unknown
//!    or missing ones are errors ([`VmdescError::UnknownSubsection`],
//!    [`VmdescError::MissingSubsection`]), and the version is checked.
//! 3. **Configuration subsections ignored (7.2).** Its `ConfigurationSection` reads only
//!    the machine name, so a stream with the `configuration/capabilities` subsection
//!    (`x-ignore-shared`) fails with "Unknown section type: 5". The walker handles a
//!    `configuration` description (QEMU 10) like any vmsd, including `capability` fields.
//! 4. **Signed `uint8 equal` / `uint16 equal`.** They are mapped to its signed reader, so
//!    e.g. `num_floppies` 0xff would print as `"0xff (-1)"`. Here they are unsigned.
//! 5. **Counted lengths read as signed bytes.** Its `read8` is signed, so a subsection
//!    name or capability of 128..255 bytes gets a negative length and `file.read(-n)`
//!    swallows the rest of the file. Here lengths are `u8`.
//! 6. **`vstruct` and `tmp` dumped as bytes.** Their inline description is ignored; here
//!    they decode into named fields (e.g. the x87 registers of `cpu` through
//!    `fpreg_tmp`), checked against the entry's `size`.
//! 7. **No size cross-checks.** It never compares what it read with a struct's `size`,
//!    nor the end of a section with its footer position beyond the footer id, and it
//!    asserts (crashes) on a bad null-pointer marker. Here every nested vmsd is checked
//!    against `size` ([`VmdescError::SizeMismatch`]), the body must be consumed exactly
//!    ([`VmdescError::TrailingBytes`]), and a bad marker is
//!    [`VmdescError::BadNullptrMarker`]. Every read is bounds-checked, array lengths are
//!    checked against the bytes left before anything is allocated, nesting is limited to
//!    [`MAX_DEPTH`] and output to [`MAX_VALUES`] values.
//! 8. **7.2 null-pointer structs.** An empty `"struct": {}` makes it raise "No fields in
//!    struct"; here it is the one-byte placeholder [`Value::Nullptr`].
//! 9. **`-m` under Python 3** (not in this module's scope, noted for the CLI): its PAGE
//!    dump calls `ord()` on the ints of a `bytes` object and raises `TypeError`.
//!
//! # Example
//!
//! ```
//! use ramstream_codec::vmdesc::{decode_device, VmDescription};
//!
//! let json = br#"{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0,
//!   "vmsd_name": "timer", "version": 2, "fields": [
//!   {"name": "cpu_ticks_offset", "type": "int64", "size": 8},
//!   {"name": "unused", "type": "unused_buffer", "size": 8},
//!   {"name": "cpu_clock_offset", "type": "int64", "size": 8}]}]}"#;
//! let desc = VmDescription::parse(json)?;
//! let mut body = Vec::new();
//! body.extend_from_slice(&(-5i64).to_be_bytes());
//! body.extend_from_slice(&[0; 8]);
//! body.extend_from_slice(&0x1234i64.to_be_bytes());
//!
//! let decoded = decode_device(&desc.devices[0], &body)?;
//! assert_eq!(decoded.consumed, 24);
//! assert_eq!(decoded.state.get("cpu_clock_offset").and_then(|v| v.as_i64()), Some(0x1234));
//! # #[cfg(feature = "serde")]
//! assert_eq!(
//!     serde_json::to_string(&decoded)?,
//!     r#"{"cpu_ticks_offset":"0xfffffffffffffffb (-5)","unused":"00 00 00 00 00 00 00 00","cpu_clock_offset":"0x0000000000001234"}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod description;
mod error;
mod fields;
mod splits;
mod value;

pub use description::{
    trailer_json, DeviceDescription, FieldDescription, FieldKind, VmDescription, VmsdDescription,
    TRAILER_HEADER_LEN,
};
pub use error::{Location, VmdescError};
pub use splits::{check_splits, SplitCheck, SplitFinding};
pub use value::{Struct, Subsection, Value};

/// Deepest nesting of vmsds (structs, subsections) the walker follows:
/// [`ramstream_spec::limits::MAX_VMDESC_DEPTH`].
pub const MAX_DEPTH: usize = ramstream_spec::limits::MAX_VMDESC_DEPTH;

/// Most values one device section may decode into (array elements count one each):
/// [`ramstream_spec::limits::MAX_VMDESC_VALUES`].
pub const MAX_VALUES: usize = ramstream_spec::limits::MAX_VMDESC_VALUES;

/// A decoded device section body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedDevice<'a> {
    /// Body bytes the description accounts for.
    pub consumed: usize,
    /// The device's fields and subsections.
    pub state: Struct<'a>,
}

#[cfg(feature = "serde")]
impl serde::Serialize for DecodedDevice<'_> {
    /// Serialises the state only, as analyze-migration.py prints a device.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.state, serializer)
    }
}

/// Decodes a FULL section body (the bytes between the section header and its footer)
/// with the device's description. The body must be consumed exactly.
///
/// Errors: any [`VmdescError`] of the walker, or [`VmdescError::TrailingBytes`] when the
/// description ends before the body does.
pub fn decode_device<'a>(
    desc: &'a DeviceDescription,
    body: &'a [u8],
) -> Result<DecodedDevice<'a>, VmdescError> {
    let decoded = decode_device_prefix(desc, body)?;
    if decoded.consumed != body.len() {
        return Err(VmdescError::TrailingBytes {
            device: desc.name.clone(),
            consumed: decoded.consumed,
            body_len: body.len(),
        });
    }
    Ok(decoded)
}

/// Like [`decode_device`], but `input` may continue after the body (e.g. with the
/// section footer `7E be32 section_id`); `consumed` says where the body ends.
///
/// The end of the body is where the description's fields end and no further subsection
/// follows, decided exactly as QEMU's loader decides it.
pub fn decode_device_prefix<'a>(
    desc: &'a DeviceDescription,
    input: &'a [u8],
) -> Result<DecodedDevice<'a>, VmdescError> {
    decode_vmsd(&desc.name, &desc.vmsd, input)
}

/// Walks any described vmsd at the start of `input` and reports where it ends: e.g. QEMU
/// 10's [`VmDescription::configuration`] over the CONFIGURATION section payload (the
/// bytes after the `0x07` byte), which has no footer and ends where the next section
/// starts. `name` labels errors.
///
/// ```
/// use ramstream_codec::vmdesc::{decode_vmsd, VmsdDescription};
///
/// let desc: VmsdDescription = serde_json::from_str(r#"{"vmsd_name": "configuration",
///   "version": 1, "fields": [{"name": "len", "type": "uint32", "size": 4},
///   {"name": "name", "type": "buffer", "size": 3}]}"#)?;
/// let decoded = decode_vmsd("configuration", &desc, b"\0\0\0\x03pc1\x01")?;
/// assert_eq!(decoded.consumed, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_vmsd<'a>(
    name: &'a str,
    desc: &'a VmsdDescription,
    input: &'a [u8],
) -> Result<DecodedDevice<'a>, VmdescError> {
    let mut walker = fields::Walker::new(name, input);
    let state = walker.vmsd(desc, 0)?;
    Ok(DecodedDevice {
        consumed: walker.position(),
        state,
    })
}
