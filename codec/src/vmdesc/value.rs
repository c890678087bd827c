//! Decoded field values, serialised (feature `serde`) in analyze-migration.py's JSON style.

#[cfg(feature = "serde")]
use core::fmt;

#[cfg(feature = "serde")]
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One decoded field value. Byte slices borrow from the section body.
///
/// With the `serde` feature, [`Serialize`](serde::Serialize) writes what analyze-migration.py
/// prints for the same value:
///
/// | value | JSON |
/// |---|---|
/// | `Uint { bytes: 2, value: 0x1f }` | `"0x001f"` (2 × `bytes` hex digits) |
/// | `Int { bytes: 4, value: -2 }` | `"0xfffffffe (-2)"` |
/// | `Int { bytes: 4, value: 5 }` | `"0x00000005"` |
/// | `Bool(true)` | `true` |
/// | `Buffer(&[0xab, 0x01])` | `"ab 01"` |
/// | `Nullptr` | `"nullptr"` |
/// | `Capability(b"x-ignore-shared")` | `"x-ignore-shared"` |
/// | `Array(..)` | a list |
/// | `Struct(..)` | an object: fields, then subsections keyed by their vmsd name |
///
/// ```
/// use ramstream_codec::vmdesc::Value;
/// let v = Value::Int { bytes: 4, value: -2 };
/// # #[cfg(feature = "serde")]
/// assert_eq!(serde_json::to_string(&v).unwrap(), r#""0xfffffffe (-2)""#);
/// assert_eq!(v.as_i64(), Some(-2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value<'a> {
    /// A big-endian unsigned integer `bytes` wide.
    Uint {
        /// Width on the wire (1, 2, 4 or 8).
        bytes: u8,
        /// The value.
        value: u64,
    },
    /// A big-endian signed integer `bytes` wide.
    Int {
        /// Width on the wire (1, 2, 4 or 8).
        bytes: u8,
        /// The value, sign-extended.
        value: i64,
    },
    /// A `bool` field (one byte, non-zero is true as QEMU loads it).
    Bool(bool),
    /// Opaque bytes: `buffer`, `unused_buffer`, `timer`, `float64`, `pci config`,
    /// `virtio`, and any type this walker does not interpret.
    Buffer(&'a [u8]),
    /// The null-pointer placeholder of an array of pointers.
    Nullptr,
    /// A capability name (configuration section).
    Capability(&'a [u8]),
    /// An array: its elements in order.
    Array(Vec<Value<'a>>),
    /// A nested vmsd (`struct`, `vstruct`, `tmp`).
    Struct(Struct<'a>),
}

/// The decoded state of one vmsd: its fields and the subsections found after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Struct<'a> {
    /// Field name and value, in stream order. Array elements described one by one
    /// (`index`) are gathered into one [`Value::Array`].
    pub fields: Vec<(&'a str, Value<'a>)>,
    /// Subsections, in stream order.
    pub subsections: Vec<Subsection<'a>>,
}

/// A subsection found in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsection<'a> {
    /// The subsection name read from the body (its vmsd name, e.g. `cpu/async_pf_msr`).
    pub name: &'a str,
    /// The version read from the body.
    pub version: u32,
    /// Its fields and nested subsections.
    pub state: Struct<'a>,
}

impl<'a> Value<'a> {
    /// The value as `u64` if it is an integer (a negative `Int` as its two's complement
    /// bit pattern in `bytes` bytes) or a bool.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint { value, .. } => Some(value),
            Value::Int { bytes, value } => Some(unsigned_bits(bytes, value)),
            Value::Bool(b) => Some(u64::from(b)),
            _ => None,
        }
    }

    /// The value as `i64` if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Uint { value, .. } => i64::try_from(value).ok(),
            Value::Int { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The bytes of a [`Value::Buffer`] or [`Value::Capability`].
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Buffer(b) | Value::Capability(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of a [`Value::Array`].
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// The nested state of a [`Value::Struct`].
    pub fn as_struct(&self) -> Option<&Struct<'a>> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }
}

impl<'a> Struct<'a> {
    /// The first field called `name`.
    pub fn field(&self, name: &str) -> Option<&Value<'a>> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The first subsection called `name`.
    pub fn subsection(&self, name: &str) -> Option<&Struct<'a>> {
        self.subsections
            .iter()
            .find(|s| s.name == name)
            .map(|s| &s.state)
    }

    /// Follows a `/`-separated path of field and subsection names, with `[i]` selecting
    /// an array element: e.g. `env.regs[2]`, `cpu/async_pf_msr/env.async_pf_en_msr`.
    ///
    /// Field names that themselves end in `[n]` (QEMU's de-duplicated names) are tried
    /// as a whole first.
    pub fn get(&self, path: &str) -> Option<&Value<'a>> {
        let mut current = self;
        let mut rest = path;
        loop {
            // A subsection name contains '/', so try the longest matching subsection first.
            if let Some(sub) = current
                .subsections
                .iter()
                .filter(|s| rest.starts_with(s.name) && rest[s.name.len()..].starts_with('/'))
                .max_by_key(|s| s.name.len())
            {
                rest = &rest[sub.name.len() + 1..];
                current = &sub.state;
                continue;
            }
            let (segment, tail) = match rest.split_once('/') {
                Some((s, t)) => (s, Some(t)),
                None => (rest, None),
            };
            let value = lookup_segment(current, segment)?;
            match tail {
                None => return Some(value),
                Some(t) => {
                    current = value.as_struct()?;
                    rest = t;
                }
            }
        }
    }
}

fn lookup_segment<'s, 'a>(s: &'s Struct<'a>, segment: &str) -> Option<&'s Value<'a>> {
    if let Some(v) = s.field(segment) {
        return Some(v);
    }
    let (name, index) = segment.strip_suffix(']')?.rsplit_once('[')?;
    let index: usize = index.parse().ok()?;
    s.field(name)?.as_array()?.get(index)
}

fn unsigned_bits(bytes: u8, value: i64) -> u64 {
    let bits = u32::from(bytes) * 8;
    if bits >= 64 {
        value as u64
    } else {
        (value as u64) & ((1u64 << bits) - 1)
    }
}

/// Hex like analyze-migration.py's `"0x%0*x"` with 2 × `bytes` digits.
#[cfg(feature = "serde")]
struct Hex(u8, u64);

#[cfg(feature = "serde")]
impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:0width$x}", self.1, width = usize::from(self.0) * 2)
    }
}

/// Bytes as `"xx xx ..."`.
#[cfg(feature = "serde")]
struct SpacedHex<'a>(&'a [u8]);

#[cfg(feature = "serde")]
impl fmt::Display for SpacedHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Uint { bytes, value } => serializer.collect_str(&Hex(*bytes, *value)),
            Value::Int { bytes, value } if *value < 0 => serializer.collect_str(&format_args!(
                "{} ({value})",
                Hex(*bytes, unsigned_bits(*bytes, *value))
            )),
            Value::Int { bytes, value } => serializer.collect_str(&Hex(*bytes, *value as u64)),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Buffer(b) => serializer.collect_str(&SpacedHex(b)),
            Value::Nullptr => serializer.serialize_str("nullptr"),
            Value::Capability(b) => serializer.serialize_str(&String::from_utf8_lossy(b)),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Struct(s) => s.serialize(serializer),
        }
    }
}

/// A field name the description repeats (QEMU 11 lists the elements of some arrays of
/// structs as entries of one name, without `index`): its values, written as one list with
/// arrays flattened, as analyze-migration.py gathers them, instead of duplicate JSON keys.
#[cfg(feature = "serde")]
struct Repeated<'s, 'a>(Vec<&'s Value<'a>>);

#[cfg(feature = "serde")]
impl Serialize for Repeated<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for v in &self.0 {
            match v {
                Value::Array(items) => {
                    for item in items {
                        seq.serialize_element(item)?;
                    }
                }
                v => seq.serialize_element(v)?,
            }
        }
        seq.end()
    }
}

#[cfg(feature = "serde")]
impl Serialize for Struct<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Each name once, where it first occurs, with every value of that name.
        let mut order: Vec<&str> = Vec::new();
        let mut values: std::collections::HashMap<&str, Vec<&Value<'_>>> =
            std::collections::HashMap::new();
        for (name, value) in &self.fields {
            let slot = values.entry(name).or_default();
            if slot.is_empty() {
                order.push(name);
            }
            slot.push(value);
        }
        let mut map = serializer.serialize_map(None)?;
        for name in order {
            match values.remove(name).unwrap_or_default().as_slice() {
                [one] => map.serialize_entry(name, one)?,
                many => map.serialize_entry(name, &Repeated(many.to_vec()))?,
            }
        }
        for sub in &self.subsections {
            map.serialize_entry(sub.name, &sub.state)?;
        }
        map.end()
    }
}
