//! Real QEMU (7.2, 10.0, 11.1) loads what ramstream writes (`reencode --from-ram`) of that
//! version's own recordings and holds exactly the RAM the original stream described. Skipped, with a reason, where QEMU is missing; a
//! failure when `RAMSTREAM_REQUIRE_QEMU=1` (as in CI).

use ramstream_codec::transcode::{self, Mode};
use ramstream_codec::DecoderOptions;
use ramstream_conformance_vectors::qemu::{load_and_resave_with, version_or_skip, QemuVersion};
use ramstream_conformance_vectors::{stream_block_hashes, vector, Vector};

/// Writes `bytes` to a temp file, has a fresh QEMU load it, and returns what that QEMU holds
/// (its own re-save of the loaded state, rebuilt by our decoder) as block sha256s.
fn qemu_holds(version: QemuVersion, v: &Vector, bytes: &[u8]) -> Vec<(String, String)> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let resaved = load_and_resave_with(version, &v.manifest.destination_args, &v.dir, file.path())
        .unwrap_or_else(|e| panic!("{}: QEMU did not load our stream: {e}", v.manifest.name));
    stream_block_hashes(&resaved).unwrap()
}

fn check_from_ram(name: &str) {
    check_from_ram_with(QemuVersion::V7_2, name)
}

/// `version` loads our `--from-ram` re-encoding of its own recording of vector `base`.
fn check_from_ram_with(version: QemuVersion, base: &str) {
    let Some(_) = version_or_skip("qemu_load", version) else {
        return;
    };
    let name = &version.vector_name(base);
    let v = vector(name).unwrap();
    let original = v.stream().unwrap();
    let ours = transcode::reencode(&original, Mode::FromRam, &DecoderOptions::default()).unwrap();
    let held = qemu_holds(version, &v, &ours);
    assert_eq!(
        held,
        v.block_hashes(),
        "{name}: QEMU's RAM after loading our re-encoding"
    );
    eprintln!(
        "{name}: {version} loaded our {}-byte single-pass stream (original {} bytes); all {} blocks match",
        ours.len(),
        original.len(),
        held.len()
    );
}

#[test]
fn qemu_loads_from_ram_reencoding_of_idle_noos() {
    check_from_ram("idle-noos");
}

#[test]
fn qemu_loads_from_ram_reencoding_of_live_xbzrle() {
    check_from_ram("live-xbzrle");
}

#[test]
fn qemu_loads_from_ram_reencoding_of_multi_block() {
    check_from_ram("multi-block");
}

#[test]
fn qemu_10_0_loads_from_ram_reencodings_of_its_own_streams() {
    for base in ["idle-noos", "live-xbzrle", "multi-block", "q35-noos"] {
        check_from_ram_with(QemuVersion::V10_0, base);
    }
}

#[test]
fn qemu_11_1_loads_from_ram_reencodings_of_its_own_streams() {
    for base in ["idle-noos", "live-xbzrle", "multi-block", "q35-noos"] {
        check_from_ram_with(QemuVersion::V11_1, base);
    }
}
