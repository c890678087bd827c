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

use ramstream_codec::transcode;
use ramstream_codec::DecoderOptions;
use ramstream_spec::Dialect;
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

/// One recorded multifd channel of a [`MultifdManifest`].
#[derive(Clone, Debug, Deserialize)]
pub struct ChannelManifest {
    /// The channel id from its initial packet (0 to channels - 1).
    pub id: u8,
    /// The file holding what the source sent on it, relative to the vector directory
    /// (`channel-<id>.bin.zst`).
    pub file: String,
    /// Length of the (uncompressed) channel bytes.
    pub len: u64,
    /// sha256 of the (uncompressed) channel bytes, hex.
    pub sha256: String,
    /// Packets after the initial packet, SYNC packets included (counted by `record.py`).
    #[serde(default)]
    pub packets: Option<u64>,
    /// Packets with the SYNC flag.
    #[serde(default)]
    pub sync_packets: Option<u64>,
    /// Normal pages (with contents) over all packets.
    #[serde(default)]
    pub normal_pages: Option<u64>,
    /// Zero pages (QEMU 9.0+ with `zero-page-detection` `multifd`) over all packets.
    #[serde(default)]
    pub zero_pages: Option<u64>,
}

/// A multifd recording (`record.py` mode `multifd-*`): the main stream is the vector's
/// stream file, and what the source sent on each side channel is in its own file.
#[derive(Clone, Debug, Deserialize)]
pub struct MultifdManifest {
    /// The number of channels (`multifd-channels`).
    pub channels: u8,
    /// `multifd-compression`: `none`, `zstd`, ...
    #[serde(default)]
    pub compression: Option<String>,
    /// The uuid every channel's initial packet carried, hex.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The sync points of the main stream the destination waits at for the channels: RAM EOS
    /// for QEMU 7.2, `MULTIFD_FLUSH` records for 8.1+ machine types; each channel has as many
    /// SYNC packets.
    #[serde(default)]
    pub sync_points: Option<u64>,
    /// Pages a channel sent again with the same contents before the next sync point (QEMU
    /// 7.2 does this; its `normal` counter counts them once).
    #[serde(default)]
    pub duplicate_page_writes: Option<u64>,
    /// The channels, by id.
    pub channel_files: Vec<ChannelManifest>,
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
    /// A multifd recording: the stream file holds only the main stream, the pages travel in
    /// the channels ([`Vector::channel`]). Absent for every other vector.
    #[serde(default)]
    pub multifd: Option<MultifdManifest>,
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

/// The vector named `name` (its directory's name).
pub fn vector(name: &str) -> Result<Vector, LoadError> {
    all()?
        .into_iter()
        .find(|v| v.manifest.name == name)
        .ok_or_else(|| LoadError(format!("no vector named {name:?}")))
}

/// `(idstr, sha256 hex)` of every RAM block that `stream` rebuilds to with the codec's
/// default options (`transcode::rebuild`): what a QEMU destination that loaded it holds, in
/// the form of [`Vector::block_hashes`].
pub fn stream_block_hashes(stream: &[u8]) -> Result<Vec<(String, String)>, LoadError> {
    let image = transcode::rebuild(stream, &DecoderOptions::default())
        .map_err(|e| LoadError(format!("rebuilding RAM: {e}")))?;
    Ok(image
        .blocks()
        .iter()
        .enumerate()
        .map(|(i, b)| (b.idstr.clone(), hex::encode(image.sha256(i))))
        .collect())
}

impl Vector {
    /// The dialect to decode with, from the manifest ([`Dialect::Qemu`], the default, when
    /// absent).
    pub fn dialect(&self) -> Result<Dialect, LoadError> {
        self.manifest
            .dialect
            .as_deref()
            .map_or(Ok(Dialect::default()), |d| {
                d.parse()
                    .map_err(|e| LoadError(format!("{}: dialect {d:?}: {e}", self.manifest.name)))
            })
    }

    /// `(idstr, sha256 hex)` of every RAM block as a real QEMU destination held it, in
    /// manifest order.
    pub fn block_hashes(&self) -> Vec<(String, String)> {
        self.manifest
            .blocks
            .iter()
            .map(|b| (b.idstr.clone(), b.sha256.clone()))
            .collect()
    }

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

    /// Whether the vector is a multifd recording (its stream file is the main stream only;
    /// the pages are in the channels, [`Vector::channel`]).
    pub fn is_multifd(&self) -> bool {
        self.manifest.multifd.is_some()
    }

    /// The uncompressed stream, checked against the manifest's length and sha256. For a
    /// multifd recording, the main stream.
    pub fn stream(&self) -> Result<Vec<u8>, LoadError> {
        self.read_checked(
            &self.manifest.stream_file,
            self.manifest.stream_len,
            &self.manifest.stream_sha256,
        )
    }

    /// The uncompressed bytes the source sent on multifd channel `id` (its initial packet
    /// and its packets), checked against the manifest's length and sha256. An error if the
    /// vector is not a multifd recording or has no such channel.
    pub fn channel(&self, id: u8) -> Result<Vec<u8>, LoadError> {
        let m =
            self.manifest.multifd.as_ref().ok_or_else(|| {
                LoadError(format!("{}: not a multifd recording", self.manifest.name))
            })?;
        let c = m.channel_files.iter().find(|c| c.id == id).ok_or_else(|| {
            LoadError(format!(
                "{}: no multifd channel {id} (has {})",
                self.manifest.name, m.channels
            ))
        })?;
        self.read_checked(&c.file, c.len, &c.sha256)
    }

    /// Every multifd channel's bytes, by id (empty for other vectors).
    pub fn channels(&self) -> Result<Vec<Vec<u8>>, LoadError> {
        let Some(m) = self.manifest.multifd.as_ref() else {
            return Ok(Vec::new());
        };
        (0..m.channels).map(|id| self.channel(id)).collect()
    }

    /// A file of the vector, decompressed if it ends in `.zst`, checked against `len` and
    /// `sha256`.
    fn read_checked(&self, file: &str, len: u64, sha256: &str) -> Result<Vec<u8>, LoadError> {
        let path = self.dir.join(file);
        let raw =
            std::fs::read(&path).map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
        let bytes = if file.ends_with(".zst") {
            zstd::stream::decode_all(&raw[..])
                .map_err(|e| LoadError(format!("{}: {e}", path.display())))?
        } else {
            raw
        };
        if bytes.len() as u64 != len {
            return Err(LoadError(format!(
                "{} {file}: {} bytes, manifest says {len}",
                self.manifest.name,
                bytes.len(),
            )));
        }
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != sha256 {
            return Err(LoadError(format!(
                "{} {file}: sha256 {sha}, manifest says {sha256}",
                self.manifest.name
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every multifd recording's files load and are what the manifest says: the main stream
    /// starts with the QEMU file magic, each channel with the multifd initial packet (magic
    /// 0x11223344, version 1, the manifest's uuid, its own id), as set in the capabilities and
    /// parameters.
    #[test]
    fn multifd_recordings_have_their_channels() {
        let mut vectors = 0;
        for v in all().unwrap() {
            let Some(m) = &v.manifest.multifd else {
                assert!(v.channel(0).is_err(), "{}", v.manifest.name);
                continue;
            };
            let name = &v.manifest.name;
            assert_eq!(
                v.manifest.capabilities.get("multifd"),
                Some(&true),
                "{name}"
            );
            assert_eq!(
                v.manifest.parameters["multifd-channels"].as_u64(),
                Some(u64::from(m.channels)),
                "{name}"
            );
            assert_eq!(m.channel_files.len(), usize::from(m.channels), "{name}");
            assert!(v.stream().unwrap().starts_with(b"QEVM"), "{name}");
            let channels = v.channels().unwrap();
            assert_eq!(channels.len(), usize::from(m.channels), "{name}");
            for (id, c) in channels.iter().enumerate() {
                assert_eq!(
                    &c[..8],
                    &[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1],
                    "{name} {id}"
                );
                if let Some(uuid) = &m.uuid {
                    assert_eq!(&hex::encode(&c[8..24]), uuid, "{name} {id}");
                }
                assert_eq!(usize::from(c[24]), id, "{name}");
            }
            assert!(v.channel(m.channels).is_err(), "{name}");
            vectors += 1;
        }
        assert!(vectors >= 11, "{vectors} multifd vectors");
    }
}
