//! Device state as opaque blobs: what a FULL section carries besides RAM (SPEC.md §2.3, §5).

/// One device's migrated state, as the stream carries it: the vmstate handler's idstr,
/// instance and version, and its body verbatim. The engines never interpret a body; the VMM
/// restores (or, on the source, produces) it.
///
/// ```
/// use ramstream_migrate::DeviceBlob;
/// let blob = DeviceBlob { idstr: "timer", instance_id: 0, version_id: 2, body: &[0; 8] };
/// assert_eq!(blob.to_owned().body.len(), 8);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceBlob<'a> {
    /// The handler's idstr, e.g. `timer`, `cpu`, `0000:00:01.0/piix4_pm`.
    pub idstr: &'a str,
    /// The instance id (several devices of one kind differ by it).
    pub instance_id: u32,
    /// The handler's version.
    pub version_id: u32,
    /// The vmstate body, byte-exact, borrowed from the input.
    pub body: &'a [u8],
}

impl DeviceBlob<'_> {
    /// An owned copy, to keep after the input buffer is reused.
    pub fn to_owned(&self) -> OwnedDeviceBlob {
        OwnedDeviceBlob {
            idstr: self.idstr.to_string(),
            instance_id: self.instance_id,
            version_id: self.version_id,
            body: self.body.to_vec(),
        }
    }
}

/// A [`DeviceBlob`] that owns its idstr and body.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OwnedDeviceBlob {
    /// The handler's idstr.
    pub idstr: String,
    /// The instance id.
    pub instance_id: u32,
    /// The handler's version.
    pub version_id: u32,
    /// The vmstate body.
    pub body: Vec<u8>,
}

impl OwnedDeviceBlob {
    /// A borrowed view.
    pub fn as_blob(&self) -> DeviceBlob<'_> {
        DeviceBlob {
            idstr: &self.idstr,
            instance_id: self.instance_id,
            version_id: self.version_id,
            body: &self.body,
        }
    }
}
