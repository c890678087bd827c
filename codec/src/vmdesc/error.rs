//! Errors of the vmdesc layer.

use core::fmt;

/// Where in a device section body a problem was found.
///
/// `path` names the field the walker was in, e.g. `env.regs[3]` or
/// `ports[0]/xhci-port/subsection "usb-port"`; `offset` is the byte offset from the
/// start of the section body (the byte after the FULL section header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The device's section idstr, e.g. `0000:00:07.0/xhci` (`name` in the description).
    pub device: String,
    /// The field path inside the device, `/`-separated per nesting level.
    pub path: String,
    /// Byte offset from the start of the section body.
    pub offset: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device '{}'", self.device)?;
        if !self.path.is_empty() {
            write!(f, " field '{}'", self.path)?;
        }
        write!(f, " at body offset {:#x}", self.offset)
    }
}

/// Everything that can go wrong while reading a VMDESCRIPTION trailer or walking a device
/// section body with it.
///
/// Every variant says what was expected; walker errors carry a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VmdescError {
    /// The trailer does not start with the VMDESCRIPTION byte `0x06`.
    NotATrailer {
        /// The byte found instead.
        found: u8,
    },
    /// The trailer is shorter than its header or its announced JSON length.
    TrailerTruncated {
        /// Bytes the trailer needs (5-byte header plus JSON).
        needed: u64,
        /// Bytes available.
        available: usize,
    },
    /// The trailer announces more JSON than the limit allows.
    TrailerTooLong {
        /// Announced JSON length.
        len: u32,
        /// The limit (`ramstream_spec::limits::MAX_VMDESC_LEN`).
        limit: u32,
    },
    /// The JSON text is not valid JSON (or nests deeper than serde_json's limit of 128).
    Json {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// The JSON is valid but does not have the VMDESCRIPTION shape (missing `devices`,
    /// a field without `size`, a string where a number belongs, ...).
    Schema {
        /// serde_json's message, naming the offending key.
        message: String,
    },
    /// A field of type `struct` has no `struct` object (or it has no fields but is
    /// not a one-byte null-pointer placeholder).
    BadStructDescription {
        /// Where the field starts.
        at: Location,
    },
    /// The body ends before a field does.
    Truncated {
        /// Where the field starts.
        at: Location,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the body from `at.offset`.
        available: usize,
    },
    /// The description accounts for fewer bytes than the body holds.
    TrailingBytes {
        /// The device's section idstr.
        device: String,
        /// Bytes the description accounts for.
        consumed: usize,
        /// Length of the body given.
        body_len: usize,
    },
    /// A field's `size` does not fit its type (e.g. a `uint32` of size 3, a `bool` of size 2).
    BadFieldSize {
        /// Where the field starts.
        at: Location,
        /// The field's `type`.
        field_type: String,
        /// The `size` the description gives.
        size: u64,
        /// The size the type requires.
        expected: u64,
    },
    /// A nested description (`struct`, `vstruct`, `tmp`) walked to a different number of
    /// bytes than the field's `size` says.
    SizeMismatch {
        /// Where the field starts.
        at: Location,
        /// The `size` the description gives.
        described: u64,
        /// Bytes the nested description accounted for.
        walked: u64,
    },
    /// A null-pointer placeholder is not the byte `'0'` (0x30).
    BadNullptrMarker {
        /// Where the marker is.
        at: Location,
        /// The byte found.
        found: u8,
    },
    /// The body holds a subsection (`0x05`, name with the parent's prefix) that the
    /// description does not list (or lists fewer times).
    UnknownSubsection {
        /// Where the `0x05` byte is.
        at: Location,
        /// The subsection name read from the body.
        name: String,
    },
    /// The description lists a subsection the body does not contain.
    MissingSubsection {
        /// Where the subsection was looked for (after the parent's fields).
        at: Location,
        /// The described subsection's `vmsd_name`.
        name: String,
    },
    /// A subsection's version in the body differs from the description's `version`.
    SubsectionVersionMismatch {
        /// Where the subsection header is.
        at: Location,
        /// The subsection name.
        name: String,
        /// The version the description gives.
        described: u64,
        /// The version read from the body.
        found: u32,
    },
    /// `array_len` elements of the described size cannot fit in the rest of the body.
    ArrayTooLong {
        /// Where the array starts.
        at: Location,
        /// The described `array_len`.
        array_len: u64,
        /// The described per-element `size`.
        element_size: u64,
        /// Bytes left in the body.
        available: usize,
    },
    /// Nested descriptions go deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    TooDeep {
        /// Where the nesting limit was hit.
        at: Location,
        /// The limit.
        limit: usize,
    },
    /// Decoding would produce more than [`MAX_VALUES`](super::MAX_VALUES) values
    /// (e.g. a huge `array_len` of zero-size elements).
    TooManyValues {
        /// Where the limit was hit.
        at: Location,
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for VmdescError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotATrailer { found } => {
                write!(f, "expected VMDESCRIPTION byte 0x06, found {found:#04x}")
            }
            Self::TrailerTruncated { needed, available } => write!(
                f,
                "VMDESCRIPTION trailer truncated: needs {needed} bytes, {available} available"
            ),
            Self::TrailerTooLong { len, limit } => write!(
                f,
                "VMDESCRIPTION JSON length {len} exceeds the limit of {limit} bytes"
            ),
            Self::Json {
                line,
                column,
                message,
            } => write!(
                f,
                "VMDESCRIPTION is not valid JSON at line {line} column {column}: {message}"
            ),
            Self::Schema { message } => {
                write!(f, "VMDESCRIPTION JSON has an unexpected shape: {message}")
            }
            Self::BadStructDescription { at } => {
                write!(f, "{at}: struct field without a usable 'struct' description")
            }
            Self::Truncated {
                at,
                needed,
                available,
            } => write!(
                f,
                "{at}: body truncated, field needs {needed} bytes, {available} left"
            ),
            Self::TrailingBytes {
                device,
                consumed,
                body_len,
            } => write!(
                f,
                "device '{device}': description accounts for {consumed} of {body_len} body bytes"
            ),
            Self::BadFieldSize {
                at,
                field_type,
                size,
                expected,
            } => write!(
                f,
                "{at}: field of type '{field_type}' has size {size}, expected {expected}"
            ),
            Self::SizeMismatch {
                at,
                described,
                walked,
            } => write!(
                f,
                "{at}: description says {described} bytes, its nested fields account for {walked}"
            ),
            Self::BadNullptrMarker { at, found } => write!(
                f,
                "{at}: null-pointer marker should be 0x30 ('0'), found {found:#04x}"
            ),
            Self::UnknownSubsection { at, name } => {
                write!(f, "{at}: subsection '{name}' is not in the description")
            }
            Self::MissingSubsection { at, name } => {
                write!(f, "{at}: described subsection '{name}' is not in the body")
            }
            Self::SubsectionVersionMismatch {
                at,
                name,
                described,
                found,
            } => write!(
                f,
                "{at}: subsection '{name}' has version {found}, description says {described}"
            ),
            Self::ArrayTooLong {
                at,
                array_len,
                element_size,
                available,
            } => write!(
                f,
                "{at}: array of {array_len} elements of {element_size} bytes does not fit in the {available} bytes left"
            ),
            Self::TooDeep { at, limit } => {
                write!(f, "{at}: descriptions nest deeper than {limit} levels")
            }
            Self::TooManyValues { at, limit } => {
                write!(f, "{at}: more than {limit} values")
            }
        }
    }
}

impl std::error::Error for VmdescError {}
