//! Golden vectors recorded from real QEMU (and hand-built ones for dialects no QEMU ships),
//! with their manifests. The tests in `tests/` check ramstream against every vector.
//!
//! ```
//! let vectors = ramstream_conformance_vectors::all().unwrap();
//! assert!(vectors.iter().any(|v| v.manifest.name == "idle-noos"));
//! ```

pub mod qemu;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A RAM block as a fresh real QEMU destination holds it after loading the stream.
#[derive(Clone, Debug, Deserialize)]
pub struct BlockManifest {
    /// The block idstr.
    pub idstr: String,
    /// Its used length.
    pub used_length: u64,
    /// sha256 of its contents, hex.
    pub sha256: String,
}

/// A vector's `manifest.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    /// Short name (the directory name).
    pub name: String,
    /// What the vector exercises.
    pub description: String,
    /// The QEMU version that recorded it (absent for hand-built vectors).
    #[serde(default)]
    pub qemu_version: Option<String>,
    /// The machine type.
    #[serde(default)]
    pub machine_type: Option<String>,
    /// The accelerator the source ran with.
    #[serde(default)]
    pub accel: Option<String>,
    /// The source QEMU's arguments.
    #[serde(default)]
    pub source_args: Vec<String>,
    /// Arguments (without `-incoming`) with which a fresh QEMU accepts the stream.
    #[serde(default)]
    pub destination_args: Vec<String>,
    /// Migration capabilities set on the source.
    #[serde(default)]
    pub capabilities: BTreeMap<String, bool>,
    /// Migration parameters set on the source.
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The stream file name, relative to the vector directory (default `stream.bin`).
    #[serde(default = "default_stream_file")]
    pub stream_file: String,
    /// Length of the (uncompressed) stream.
    pub stream_len: u64,
    /// sha256 of the (uncompressed) stream, hex.
    pub stream_sha256: String,
    /// Whether the stream ends with a VMDESCRIPTION.
    #[serde(default)]
    pub has_vmdesc: Option<bool>,
    /// Every RAM block with QEMU's sha256 (empty for hand-built vectors).
    #[serde(default)]
    pub blocks: Vec<BlockManifest>,
    /// The dialect to decode with (default `qemu-7.2`).
    #[serde(default)]
    pub dialect: Option<String>,
    /// Whether the vector was built by hand rather than recorded from QEMU.
    #[serde(default)]
    pub hand_built: bool,
    /// The source's final `query-migrate` figures.
    #[serde(default)]
    pub query_migrate: serde_json::Value,
    /// The oldest QEMU version that records this vector (`record.py` skips it for older
    /// ones), e.g. `"10.0"` for mapped-ram.
    #[serde(default)]
    pub min_version: Option<String>,
    /// How a destination loads the stream: absent for `exec:cat stream.bin`, `"file"` for
    /// `migrate-incoming file:PATH` of the decompressed stream (mapped-ram needs a seekable
    /// file).
    #[serde(default)]
    pub incoming: Option<String>,
    /// Capabilities the destination needs set before `migrate-incoming` (mapped-ram
    /// vectors; the others say so in the README).
    #[serde(default)]
    pub destination_capabilities: BTreeMap<String, bool>,
    /// Parameters the destination needs set before `migrate-incoming`.
    #[serde(default)]
    pub destination_parameters: serde_json::Map<String, serde_json::Value>,
}

fn default_stream_file() -> String {
    "stream.bin".into()
}

/// A vector: its directory and manifest.
#[derive(Clone, Debug)]
pub struct Vector {
    /// The vector's directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// An error loading a vector.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// The directory holding the vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Every vector, sorted by name.
pub fn all() -> Result<Vec<Vector>, LoadError> {
    let dir = vectors_dir();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| LoadError(format!("cannot read {}: {e}", dir.display())))?;
    for e in entries {
        let e = e.map_err(|e| LoadError(e.to_string()))?;
        let path = e.path().join("manifest.json");
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
        out.push(Vector {
            dir: e.path(),
            manifest,
        });
    }
    out.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    Ok(out)
}

impl Vector {
    /// The QEMU version that recorded this vector (from the manifest's `qemu_version`), `None`
    /// for hand-built vectors.
    pub fn qemu(&self) -> Option<qemu::QemuVersion> {
        let v = self.manifest.qemu_version.as_deref()?;
        qemu::QemuVersion::ALL
            .into_iter()
            .find(|q| v.starts_with(&format!("{}.", q.label())))
    }

    /// Whether the vector is a mapped-ram file (QEMU `migrate file:` with capability
    /// `mapped-ram`, SPEC.md §7.9) rather than a stream.
    pub fn is_mapped_ram(&self) -> bool {
        self.manifest.capabilities.get("mapped-ram") == Some(&true)
    }

    /// The uncompressed stream, checked against the manifest's length and sha256.
    pub fn stream(&self) -> Result<Vec<u8>, LoadError> {
        let path = self.dir.join(&self.manifest.stream_file);
        let raw =
            std::fs::read(&path).map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
        let bytes = if self.manifest.stream_file.ends_with(".zst") {
            zstd::stream::decode_all(&raw[..])
                .map_err(|e| LoadError(format!("{}: {e}", path.display())))?
        } else {
            raw
        };
        if bytes.len() as u64 != self.manifest.stream_len {
            return Err(LoadError(format!(
                "{}: {} bytes, manifest says {}",
                self.manifest.name,
                bytes.len(),
                self.manifest.stream_len
            )));
        }
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != self.manifest.stream_sha256 {
            return Err(LoadError(format!(
                "{}: sha256 {sha}, manifest says {}",
                self.manifest.name, self.manifest.stream_sha256
            )));
        }
        Ok(bytes)
    }
}
