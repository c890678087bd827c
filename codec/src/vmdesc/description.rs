//! The VMDESCRIPTION JSON, as serde types.

use serde::Deserialize;

use super::error::VmdescError;
use ramstream_spec::limits::MAX_VMDESC_LEN;
use ramstream_spec::stream::SectionType;

/// Length of the trailer header: `u8 0x06`, `be32 json_len`.
pub const TRAILER_HEADER_LEN: usize = 5;

/// The whole VMDESCRIPTION: one [`DeviceDescription`] per FULL section, in stream order.
///
/// Unknown keys are ignored, so descriptions written by later QEMU versions parse too
/// (QEMU 10 adds `configuration` before `page_size`).
///
/// ```
/// use ramstream_codec::vmdesc::VmDescription;
///
/// let json = br#"{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0,
///   "vmsd_name": "timer", "version": 2, "fields": [
///   {"name": "cpu_ticks_offset", "type": "int64", "size": 8}]}]}"#;
/// let desc = VmDescription::parse(json)?;
/// assert_eq!(desc.page_size, 4096);
/// assert_eq!(desc.devices[0].vmsd.fields[0].field_type, "int64");
/// assert!(desc.device("timer", 0).is_some());
/// # Ok::<(), ramstream_codec::vmdesc::VmdescError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VmDescription {
    /// Target page size of the source (4096 on x86).
    pub page_size: u64,
    /// QEMU 10+: the description of the CONFIGURATION section (absent in 7.2).
    #[serde(default)]
    pub configuration: Option<VmsdDescription>,
    /// One entry per FULL section, in the order the sections appear in the stream.
    pub devices: Vec<DeviceDescription>,
}

/// The description of one FULL section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceDescription {
    /// The section idstr, e.g. `0000:00:02.0/vga`.
    pub name: String,
    /// The section instance id.
    pub instance_id: u32,
    /// Only for devices saved with an old-style `save_state` handler (no vmsd): the body
    /// size. Their `vmsd` then has no name and a single `buffer` field `data`.
    #[serde(default)]
    pub size: Option<u64>,
    /// The device's vmsd: name, version, fields, subsections.
    #[serde(flatten)]
    pub vmsd: VmsdDescription,
}

/// A vmsd as QEMU describes it while saving: the fields it wrote and the subsections it sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VmsdDescription {
    /// The vmsd name (absent for old-style devices and null-pointer struct placeholders).
    #[serde(default)]
    pub vmsd_name: Option<String>,
    /// The version the state was saved with.
    #[serde(default)]
    pub version: Option<u64>,
    /// The fields written, in order. Array elements appear either once with
    /// [`FieldDescription::array_len`] or once per element with [`FieldDescription::index`].
    #[serde(default)]
    pub fields: Vec<FieldDescription>,
    /// The subsections that were sent, in the order they were sent.
    #[serde(default)]
    pub subsections: Vec<VmsdDescription>,
}

/// One field (or one array, or one array element) of a vmsd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldDescription {
    /// The field name; made unique by QEMU as `name[n]` when a vmsd repeats a name.
    pub name: String,
    /// QEMU's `VMStateInfo` name (`uint32`, `int32 equal`, `buffer`, `timer`, ...), or
    /// `struct` / `vstruct`. See [`FieldKind`].
    #[serde(rename = "type")]
    pub field_type: String,
    /// Bytes written for this field; for an array with `array_len`, bytes of the first
    /// element only.
    pub size: u64,
    /// A "compressed" array: every element is described by this one entry.
    #[serde(default)]
    pub array_len: Option<u64>,
    /// One element of an array QEMU could not compress (one entry per element).
    #[serde(default)]
    pub index: Option<u64>,
    /// For `struct` fields: the nested vmsd (of the first element, for compressed arrays).
    #[serde(default, rename = "struct")]
    pub struct_desc: Option<Box<VmsdDescription>>,
    /// For fields whose `put` handler described its own vmsd inline in the field object
    /// (`vstruct`, `tmp`; also `qtailq`, `gtree`, `qlist`, which this walker does not
    /// trust): that vmsd. Empty (no `vmsd_name`) otherwise.
    #[serde(flatten)]
    pub inline: VmsdDescription,
}

/// How the walker treats a field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldKind {
    /// A big-endian unsigned integer of the given width (`uint8`..`uint64`, `uint* equal`).
    Uint(u8),
    /// A big-endian signed integer of the given width (`int8`..`int64`, `int32 equal`,
    /// `int32 le`, `int64 equal`).
    Int(u8),
    /// One byte, zero is false.
    Bool,
    /// A nested vmsd in the field's `struct` object.
    Struct,
    /// A nested vmsd described inline in the field object (`vstruct`, `tmp`).
    InlineVmsd,
    /// The one-byte null-pointer placeholder `'0'`.
    Nullptr,
    /// A counted string (`u8 len`, bytes): the configuration section's capabilities.
    Capability,
    /// Anything else: `size` opaque bytes (`buffer`, `unused_buffer`, `timer`, `float64`,
    /// `pci config`, `virtio`, `qtailq`, unknown types ...).
    Opaque,
}

impl FieldKind {
    /// Classifies a QEMU field type name.
    ///
    /// ```
    /// use ramstream_codec::vmdesc::FieldKind;
    /// assert_eq!(FieldKind::of("uint16 equal"), FieldKind::Uint(2));
    /// assert_eq!(FieldKind::of("int32 le"), FieldKind::Int(4));
    /// assert_eq!(FieldKind::of("pci config"), FieldKind::Opaque);
    /// ```
    pub fn of(field_type: &str) -> Self {
        match field_type {
            "uint8" | "uint8 equal" => Self::Uint(1),
            "uint16" | "uint16 equal" => Self::Uint(2),
            "uint32" | "uint32 equal" => Self::Uint(4),
            "uint64" | "uint64 equal" => Self::Uint(8),
            "int8" | "int8 equal" => Self::Int(1),
            "int16" | "int16 equal" => Self::Int(2),
            // "int32 le" is "less or equal" (a load-time check), still big-endian.
            "int32" | "int32 equal" | "int32 le" => Self::Int(4),
            "int64" | "int64 equal" => Self::Int(8),
            "bool" => Self::Bool,
            "struct" => Self::Struct,
            "vstruct" | "tmp" => Self::InlineVmsd,
            "nullptr" => Self::Nullptr,
            "capability" => Self::Capability,
            _ => Self::Opaque,
        }
    }
}

impl VmDescription {
    /// Parses the VMDESCRIPTION JSON text (the bytes after the trailer header).
    ///
    /// Duplicate keys in one object are accepted, the last one wins: QEMU writes them
    /// for `qtailq` fields (one inline vmsd per element into the same object).
    pub fn parse(json: &[u8]) -> Result<Self, VmdescError> {
        // Two steps: serde_json::Value tolerates duplicate keys and enforces serde_json's
        // nesting limit; the typed step then reports shape errors by key.
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| VmdescError::Json {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        serde_json::from_value(value).map_err(|e| VmdescError::Schema {
            message: e.to_string(),
        })
    }

    /// Reads the trailer `u8 0x06, be32 json_len, json` at the start of `input` (the bytes
    /// right after the EOF byte) and parses the JSON. Returns the description and the
    /// number of bytes the trailer occupies.
    ///
    /// This takes the JSON from its real position, unlike analyze-migration.py's search
    /// for the last NUL byte (see the [module docs](super)).
    ///
    /// ```
    /// use ramstream_codec::vmdesc::VmDescription;
    ///
    /// let json = br#"{"page_size": 4096, "devices": []}"#;
    /// let mut trailer = vec![0x06];
    /// trailer.extend_from_slice(&(json.len() as u32).to_be_bytes());
    /// trailer.extend_from_slice(json);
    /// let (desc, used) = VmDescription::parse_trailer(&trailer)?;
    /// assert_eq!(used, trailer.len());
    /// assert!(desc.devices.is_empty());
    /// # Ok::<(), ramstream_codec::vmdesc::VmdescError>(())
    /// ```
    pub fn parse_trailer(input: &[u8]) -> Result<(Self, usize), VmdescError> {
        let json = trailer_json(input)?;
        Ok((Self::parse(json)?, TRAILER_HEADER_LEN + json.len()))
    }

    /// The description of the section `(name, instance_id)`, if there is one.
    pub fn device(&self, name: &str, instance_id: u32) -> Option<&DeviceDescription> {
        self.devices
            .iter()
            .find(|d| d.name == name && d.instance_id == instance_id)
    }
}

/// Returns the JSON bytes of the trailer `u8 0x06, be32 json_len, json` at the start of
/// `input`, without parsing them. Bytes after the JSON are ignored.
pub fn trailer_json(input: &[u8]) -> Result<&[u8], VmdescError> {
    let Some((&kind, rest)) = input.split_first() else {
        return Err(VmdescError::TrailerTruncated {
            needed: TRAILER_HEADER_LEN as u64,
            available: 0,
        });
    };
    if kind != SectionType::VMDESCRIPTION.0 {
        return Err(VmdescError::NotATrailer { found: kind });
    }
    let Some((len, json)) = rest.split_first_chunk::<4>() else {
        return Err(VmdescError::TrailerTruncated {
            needed: TRAILER_HEADER_LEN as u64,
            available: input.len(),
        });
    };
    let len = u32::from_be_bytes(*len);
    if len > MAX_VMDESC_LEN {
        return Err(VmdescError::TrailerTooLong {
            len,
            limit: MAX_VMDESC_LEN,
        });
    }
    json.get(..len as usize)
        .ok_or(VmdescError::TrailerTruncated {
            needed: TRAILER_HEADER_LEN as u64 + u64::from(len),
            available: input.len(),
        })
}
