//! Tests of the vmdesc layer over recordings of real QEMU 7.2.22 (see
//! `data/vmdesc/README.md`) and hand-made negative cases.
//!
//! The decoded values are compared as JSON, which needs the `serde` feature: on in the
//! workspace (through test-support); a packaged crate runs these with `--features serde`.
#![cfg(feature = "serde")]

use ramstream_codec::vmdesc::{
    decode_device, decode_device_prefix, decode_vmsd, trailer_json, DeviceDescription,
    VmDescription, VmdescError, VmsdDescription, MAX_DEPTH, MAX_VALUES,
};

/// Tails of real streams: from the first FULL section to the end of the file.
const RECORDINGS: &[(&str, &[u8], &str, usize)] = &[
    (
        "i440fx-nodefaults",
        include_bytes!("data/vmdesc/i440fx-nodefaults.tail.bin"),
        include_str!("data/vmdesc/i440fx-nodefaults.registers.txt"),
        31,
    ),
    (
        "i440fx-devices",
        include_bytes!("data/vmdesc/i440fx-devices.tail.bin"),
        include_str!("data/vmdesc/i440fx-devices.registers.txt"),
        42,
    ),
    (
        "q35-devices",
        include_bytes!("data/vmdesc/q35-devices.tail.bin"),
        include_str!("data/vmdesc/q35-devices.registers.txt"),
        40,
    ),
];

/// One FULL section cut out of a recording by the test-local framer.
struct Section<'a> {
    section_id: u32,
    idstr: &'a str,
    instance_id: u32,
    version_id: u32,
    /// Starts at the body and runs to the end of the recording.
    rest: &'a [u8],
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// Finds the trailer from the end (test-only: `0x00`, `0x06`, be32 len reaching exactly
/// the end of the data) and parses it.
fn trailer(tail: &[u8]) -> (VmDescription, usize) {
    let start = (1..tail.len() - 5)
        .rev()
        .find(|&p| {
            tail[p] == 0x06
                && tail[p - 1] == 0
                && p + 5 + be32(&tail[p + 1..]) as usize == tail.len()
        })
        .expect("trailer");
    let (desc, used) = VmDescription::parse_trailer(&tail[start..]).unwrap();
    assert_eq!(start + used, tail.len());
    (desc, start)
}

/// Walks the FULL sections with the description, checking each footer; returns the
/// decoded section count.
fn walk_recording(
    name: &str,
    tail: &[u8],
) -> (VmDescription, Vec<(u32, String, serde_json::Value)>) {
    let (desc, trailer_at) = trailer(tail);
    let mut pos = 0;
    let mut out = Vec::new();
    let mut devices = desc.devices.iter();
    while tail[pos] == 0x04 {
        let idlen = tail[pos + 5] as usize;
        let s = Section {
            section_id: be32(&tail[pos + 1..]),
            idstr: std::str::from_utf8(&tail[pos + 6..pos + 6 + idlen]).unwrap(),
            instance_id: be32(&tail[pos + 6 + idlen..]),
            version_id: be32(&tail[pos + 10 + idlen..]),
            rest: &tail[pos + 14 + idlen..],
        };
        let dev: &DeviceDescription = devices.next().expect("a description per section");
        assert_eq!(
            (dev.name.as_str(), dev.instance_id),
            (s.idstr, s.instance_id),
            "{name}"
        );
        if let Some(v) = dev.vmsd.version {
            assert_eq!(v, u64::from(s.version_id), "{name} {}", s.idstr);
        }
        let decoded = decode_device_prefix(dev, s.rest).unwrap_or_else(|e| panic!("{name}: {e}"));
        let body = &s.rest[..decoded.consumed];
        // The footer follows the body exactly.
        let footer = &s.rest[decoded.consumed..decoded.consumed + 5];
        assert_eq!(footer[0], 0x7e, "{name} {}: footer", s.idstr);
        assert_eq!(be32(&footer[1..]), s.section_id, "{name} {}", s.idstr);
        // And the strict form accepts exactly this body.
        let strict = decode_device(dev, body).unwrap();
        assert_eq!(strict, decoded);
        out.push((
            s.section_id,
            s.idstr.to_owned(),
            serde_json::to_value(&decoded).unwrap(),
        ));
        pos += 14 + idlen + decoded.consumed + 5;
    }
    assert!(
        devices.next().is_none(),
        "{name}: described devices left over"
    );
    assert_eq!(tail[pos], 0x00, "{name}: EOF");
    assert_eq!(pos + 1, trailer_at, "{name}: trailer right after EOF");
    (desc, out)
}

#[test]
fn every_device_section_of_every_recording_decodes_exactly() {
    for &(name, tail, _, sections) in RECORDINGS {
        let (desc, out) = walk_recording(name, tail);
        assert_eq!(desc.page_size, 4096);
        assert_eq!(out.len(), sections, "{name}");
    }
}

/// Parses `info registers` lines like `EAX=00000667 EBX=...` into (name, value).
fn registers(text: &str) -> Vec<(String, u64)> {
    // Segment registers print as `CS =c000 000c0000 ...`.
    text.replace(" =", "=")
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), u64::from_str_radix(v, 16).ok()?)))
        .collect::<Vec<_>>()
}

#[test]
fn cpu_registers_match_info_registers() {
    const GPRS: [&str; 8] = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI"];
    for &(name, tail, regs_txt, _) in RECORDINGS {
        let (desc, start) = trailer(tail);
        let regs = registers(regs_txt);
        let reg = |n: &str| regs.iter().find(|(k, _)| k == n).map(|(_, v)| *v).unwrap();
        // Section "cpu" is the third FULL section in all recordings but q35 (iommu first):
        // find it by walking.
        let mut pos = 0;
        for dev in &desc.devices {
            let idlen = tail[pos + 5] as usize;
            let body = &tail[pos + 14 + idlen..start];
            let decoded = decode_device_prefix(dev, body).unwrap();
            if dev.name == "cpu" {
                let s = &decoded.state;
                for (i, r) in GPRS.iter().enumerate() {
                    let v = s.get(&format!("env.regs[{i}]")).unwrap().as_u64().unwrap();
                    assert_eq!(v, reg(r), "{name} {r}");
                }
                assert_eq!(
                    s.get("env.eip").unwrap().as_u64(),
                    Some(reg("EIP")),
                    "{name}"
                );
                assert_eq!(
                    s.get("env.eflags").unwrap().as_u64(),
                    Some(reg("EFL")),
                    "{name}"
                );
                let cs = s.get("env.segs[1]").unwrap().as_struct().unwrap();
                assert_eq!(
                    cs.get("selector").unwrap().as_u64(),
                    Some(reg("CS")),
                    "{name}"
                );
                assert_eq!(
                    s.get("env.cr[0]").unwrap().as_u64(),
                    Some(reg("CR0")),
                    "{name}"
                );
                // The x87 control word goes through a `tmp` field's inline vmsd.
                assert_eq!(
                    s.get("env.fpuc").unwrap().as_u64(),
                    Some(reg("FCW")),
                    "{name}"
                );
                assert_eq!(
                    s.get("env.mxcsr").unwrap().as_u64(),
                    Some(reg("MXCSR")),
                    "{name}"
                );
                let fpregs = s.get("env.fpregs").unwrap().as_array().unwrap();
                assert_eq!(fpregs.len(), 8);
                let tmp = fpregs[0].as_struct().unwrap().get("tmp").unwrap();
                assert!(tmp.as_struct().unwrap().get("tmp_exp").is_some());
                // A subsection field, addressed through the subsection name.
                assert!(s.get("cpu/tsc_khz/env.tsc_khz").is_some(), "{name}");
                break;
            }
            pos += 14 + idlen + decoded.consumed + 5;
        }
    }
}

#[test]
fn analyze_migration_style_json() {
    let (_, out) = walk_recording("i440fx-nodefaults", RECORDINGS[0].1);
    let (_, _, timer) = &out[0];
    let obj = timer.as_object().unwrap();
    assert_eq!(obj.len(), 3);
    for (k, v) in obj {
        let s = v.as_str().unwrap();
        if k == "unused" {
            assert_eq!(s, "00 00 00 00 00 00 00 00");
        } else {
            assert!(s.starts_with("0x") && s.len() >= 18, "{k}: {s}");
        }
    }
    // Subsections appear as nested objects keyed by their vmsd name.
    let (_, _, cpu) = out.iter().find(|(_, n, _)| n == "cpu").unwrap();
    let cpu = cpu.as_object().unwrap();
    assert!(
        cpu.keys().any(|k| k.starts_with("cpu/")),
        "{:?}",
        cpu.keys()
    );
    // uint8 equal stays unsigned; bool is a JSON bool.
    let (_, _, fdc) = out.iter().find(|(_, n, _)| n == "fdc").unwrap();
    assert_eq!(fdc["state"]["num_floppies"], "0x02");
    // Arrays described element by element (`index`) become one list.
    let (_, _, ide) = out.iter().find(|(_, n, _)| n.ends_with("/ide")).unwrap();
    assert_eq!(ide["bmdma"].as_array().unwrap().len(), 2);
    assert_eq!(
        ide["parent_obj"]["config[0]"].as_str().unwrap().len(),
        256 * 3 - 1
    );
}

// ---------------------------------------------------------------------------------------
// Negative tests.

fn timer_desc() -> (VmDescription, Vec<u8>) {
    let (desc, _) = trailer(RECORDINGS[0].1);
    let tail = RECORDINGS[0].1;
    let idlen = tail[5] as usize;
    let decoded = decode_device_prefix(&desc.devices[0], &tail[14 + idlen..]).unwrap();
    let body = tail[14 + idlen..14 + idlen + decoded.consumed].to_vec();
    (desc, body)
}

fn one_device(json_fields: &str) -> VmDescription {
    VmDescription::parse(
        format!(
            r#"{{"page_size": 4096, "devices": [{{"name": "dev", "instance_id": 0,
            "vmsd_name": "dev", "version": 1, {json_fields}}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn truncated_body_at_every_offset() {
    let (desc, body) = timer_desc();
    assert_eq!(body.len(), 24);
    for cut in 0..body.len() {
        let err = decode_device(&desc.devices[0], &body[..cut]).unwrap_err();
        let VmdescError::Truncated {
            at,
            needed,
            available,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(at.device, "timer");
        assert_eq!(at.offset, cut / 8 * 8);
        assert_eq!(needed, 8);
        assert_eq!(available, cut % 8);
        assert_eq!(
            at.path,
            ["cpu_ticks_offset", "unused", "cpu_clock_offset"][cut / 8]
        );
    }
}

#[test]
fn trailing_bytes() {
    let (desc, mut body) = timer_desc();
    body.push(0x7e);
    assert_eq!(
        decode_device(&desc.devices[0], &body).unwrap_err(),
        VmdescError::TrailingBytes {
            device: "timer".into(),
            consumed: 24,
            body_len: 25
        }
    );
    // The prefix form stops at the footer.
    assert_eq!(
        decode_device_prefix(&desc.devices[0], &body)
            .unwrap()
            .consumed,
        24
    );
}

#[test]
fn bogus_sizes() {
    let desc = one_device(r#""fields": [{"name": "a", "type": "uint32", "size": 3}]"#);
    let err = decode_device(&desc.devices[0], &[0; 3]).unwrap_err();
    assert!(
        matches!(&err, VmdescError::BadFieldSize { at, size: 3, expected: 4, .. } if at.path == "a"),
        "{err:?}"
    );
    let desc = one_device(r#""fields": [{"name": "b", "type": "bool", "size": 2}]"#);
    assert!(matches!(
        decode_device(&desc.devices[0], &[0; 2]).unwrap_err(),
        VmdescError::BadFieldSize { expected: 1, .. }
    ));
    // A struct whose fields account for fewer bytes than its size.
    let desc = one_device(
        r#""fields": [{"name": "s", "type": "struct", "size": 5, "struct": {"vmsd_name": "s",
        "version": 1, "fields": [{"name": "x", "type": "uint32", "size": 4}]}}]"#,
    );
    let err = decode_device(&desc.devices[0], &[0; 5]).unwrap_err();
    assert!(
        matches!(&err, VmdescError::SizeMismatch { described: 5, walked: 4, at } if at.path == "s"),
        "{err:?}"
    );
    // A huge buffer size is a truncation, not an allocation.
    let desc = one_device(
        r#""fields": [{"name": "buf", "type": "buffer", "size": 18446744073709551615}]"#,
    );
    assert!(matches!(
        decode_device(&desc.devices[0], &[0; 8]).unwrap_err(),
        VmdescError::Truncated {
            needed: u64::MAX,
            available: 8,
            ..
        }
    ));
    // A struct field without its struct object.
    let desc = one_device(r#""fields": [{"name": "s", "type": "struct", "size": 4}]"#);
    assert!(matches!(
        decode_device(&desc.devices[0], &[0; 4]).unwrap_err(),
        VmdescError::BadStructDescription { .. }
    ));
}

const SUB_DESC: &str = r#""fields": [{"name": "a", "type": "uint8", "size": 1}],
    "subsections": [{"vmsd_name": "dev/one", "version": 2, "fields": [
      {"name": "b", "type": "uint16", "size": 2}]}]"#;

fn sub(name: &str, version: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x05, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn subsections_by_name() {
    let desc = one_device(SUB_DESC);
    let dev = &desc.devices[0];
    let mut body = vec![7];
    body.extend(sub("dev/one", 2, &[0x12, 0x34]));
    let ok = decode_device(dev, &body).unwrap();
    assert_eq!(ok.state.get("dev/one/b").unwrap().as_u64(), Some(0x1234));
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"a":"0x07","dev/one":{"b":"0x1234"}}"#
    );

    // Unknown subsection name with the parent's prefix.
    let mut bad = vec![7];
    bad.extend(sub("dev/two", 2, &[0x12, 0x34]));
    let err = decode_device(dev, &bad).unwrap_err();
    assert_eq!(
        err,
        VmdescError::UnknownSubsection {
            at: ramstream_codec::vmdesc::Location {
                device: "dev".into(),
                path: String::new(),
                offset: 1
            },
            name: "dev/two".into()
        }
    );
    // The same subsection twice.
    let mut twice = body.clone();
    twice.extend(sub("dev/one", 2, &[0, 0]));
    assert!(matches!(
        decode_device(dev, &twice).unwrap_err(),
        VmdescError::UnknownSubsection { .. }
    ));
    // Missing.
    let err = decode_device(dev, &[7]).unwrap_err();
    assert!(
        matches!(&err, VmdescError::MissingSubsection { name, at } if name == "dev/one" && at.offset == 1),
        "{err:?}"
    );
    // Version differs from the description.
    let mut v3 = vec![7];
    v3.extend(sub("dev/one", 3, &[0x12, 0x34]));
    assert!(matches!(
        decode_device(dev, &v3).unwrap_err(),
        VmdescError::SubsectionVersionMismatch {
            described: 2,
            found: 3,
            ..
        }
    ));
    // A 0x05 whose name lacks the parent prefix is not a subsection (QEMU's loader rule):
    // the walker stops there, so the strict form reports trailing bytes.
    let mut other = vec![7];
    other.extend(sub("xyz/one", 2, &[0x12, 0x34]));
    assert!(matches!(
        decode_device(dev, &other).unwrap_err(),
        VmdescError::MissingSubsection { .. }
    ));
    // Truncated inside the subsection header.
    assert!(matches!(
        decode_device(dev, &body[..body.len() - 4]).unwrap_err(),
        VmdescError::Truncated { .. }
    ));
}

#[test]
fn malformed_json() {
    assert!(matches!(
        VmDescription::parse(b"{\"page_size\": 4096, \"devices\": [").unwrap_err(),
        VmdescError::Json { line: 1, .. }
    ));
    assert!(matches!(
        VmDescription::parse(b"{\"page_size\": 4096}").unwrap_err(),
        VmdescError::Schema { message } if message.contains("devices")
    ));
    assert!(matches!(
        VmDescription::parse(br#"{"page_size": 4096, "devices": [{"name": "x", "instance_id": 0,
            "fields": [{"name": "a", "type": "uint8"}]}]}"#)
        .unwrap_err(),
        VmdescError::Schema { message } if message.contains("size")
    ));
    // Nesting beyond serde_json's recursion limit is a JSON error, not a stack overflow.
    let deep = "[".repeat(10_000);
    assert!(matches!(
        VmDescription::parse(deep.as_bytes()).unwrap_err(),
        VmdescError::Json { .. }
    ));
}

#[test]
fn absurd_array_len() {
    let desc = one_device(
        r#""fields": [{"name": "a", "array_len": 4611686018427387904, "type": "uint64", "size": 8}]"#,
    );
    let err = decode_device(&desc.devices[0], &[0; 64]).unwrap_err();
    assert!(
        matches!(&err, VmdescError::ArrayTooLong { array_len: 4611686018427387904, element_size: 8, available: 64, at } if at.path == "a"),
        "{err:?}"
    );
    // Zero-size elements cannot be checked against the body: the value limit applies.
    let desc = one_device(
        r#""fields": [{"name": "e", "array_len": 1000000000, "type": "struct", "size": 0,
           "struct": {"vmsd_name": "e", "version": 1, "fields": []}}]"#,
    );
    assert!(matches!(
        decode_device(&desc.devices[0], &[]).unwrap_err(),
        VmdescError::TooManyValues {
            limit: MAX_VALUES,
            ..
        }
    ));
}

#[test]
fn nesting_limit() {
    let mut s = String::from(r#"{"vmsd_name": "leaf", "version": 1, "fields": []}"#);
    for _ in 0..MAX_DEPTH + 1 {
        s = format!(
            r#"{{"vmsd_name": "n", "version": 1, "fields": [{{"name": "f", "type": "struct", "size": 0, "struct": {s}}}]}}"#
        );
    }
    let desc: VmsdDescription = serde_json::from_str(&s).unwrap();
    assert!(matches!(
        decode_vmsd("deep", &desc, &[]).unwrap_err(),
        VmdescError::TooDeep {
            limit: MAX_DEPTH,
            ..
        }
    ));
}

#[test]
fn nullptr_placeholders() {
    // 7.2 form: an empty struct object of size 1; later form: type "nullptr".
    let desc = one_device(
        r#""fields": [{"name": "p", "index": 0, "type": "struct", "struct": {}, "size": 1},
           {"name": "p", "index": 1, "type": "nullptr", "size": 1}]"#,
    );
    let ok = decode_device(&desc.devices[0], b"00").unwrap();
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"p":["nullptr","nullptr"]}"#
    );
    let err = decode_device(&desc.devices[0], b"0\x00").unwrap_err();
    assert!(
        matches!(&err, VmdescError::BadNullptrMarker { found: 0, at } if at.offset == 1 && at.path == "p[1]"),
        "{err:?}"
    );
}

#[test]
fn signed_and_unsigned_formatting() {
    let desc = one_device(
        r#""fields": [{"name": "u", "type": "uint8 equal", "size": 1},
           {"name": "w", "type": "uint16 equal", "size": 2},
           {"name": "i", "type": "int16", "size": 2},
           {"name": "le", "type": "int32 le", "size": 4},
           {"name": "b", "type": "bool", "size": 1}]"#,
    );
    let ok = decode_device(
        &desc.devices[0],
        &[0xff, 0xff, 0xfe, 0xff, 0xfe, 0, 0, 0, 9, 2],
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"u":"0xff","w":"0xfffe","i":"0xfffe (-2)","le":"0x00000009","b":true}"#
    );
}

#[test]
fn trailer_position_not_searched() {
    // A JSON length of 0x7b20 puts a '{' byte after the last NUL of the length field,
    // where analyze-migration.py's "last NUL, then first {" locator would start reading.
    let head = r#"{"page_size": 4096, "devices": []"#;
    let json = format!("{head}{}}}", " ".repeat(0x7b20 - head.len() - 1));
    assert_eq!(json.len(), 0x7b20);
    let mut stream = vec![0x00, 0x06];
    stream.extend_from_slice(&(json.len() as u32).to_be_bytes());
    stream.extend_from_slice(json.as_bytes());
    let nul = stream.iter().rposition(|&b| b == 0).unwrap();
    let brace = nul + stream[nul..].iter().position(|&b| b == b'{').unwrap();
    assert_eq!(brace, 4, "the naive locator lands inside the length field");
    let (desc, used) = VmDescription::parse_trailer(&stream[1..]).unwrap();
    assert_eq!(used, stream.len() - 1);
    assert!(desc.devices.is_empty());

    assert_eq!(
        trailer_json(&[0x00]).unwrap_err(),
        VmdescError::NotATrailer { found: 0 }
    );
    assert_eq!(
        trailer_json(&[0x06, 0, 0, 0, 9, b'{']).unwrap_err(),
        VmdescError::TrailerTruncated {
            needed: 14,
            available: 6
        }
    );
    assert!(matches!(
        trailer_json(&[0x06, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
        VmdescError::TrailerTooLong { .. }
    ));
}

#[test]
fn qemu_10_configuration_and_duplicate_keys() {
    let json = br#"{"configuration": {"vmsd_name": "configuration", "version": 1, "fields": [
        {"name": "len", "type": "uint32", "size": 4}, {"name": "name", "type": "buffer", "size": 3}],
        "subsections": [{"vmsd_name": "configuration/capabilities", "version": 1, "fields": [
          {"name": "caps_count", "type": "uint32", "size": 4},
          {"name": "capabilities", "array_len": 2, "type": "capability", "size": 16}]}]},
      "page_size": 4096, "devices": [{"name": "q", "instance_id": 0, "vmsd_name": "q",
        "version": 1, "fields": [{"name": "l", "type": "qtailq", "vmsd_name": "e",
        "version": 1, "fields": [], "vmsd_name": "e", "version": 1, "fields": [], "size": 3}]}]}"#;
    let desc = VmDescription::parse(json).unwrap();
    let config = desc.configuration.as_ref().unwrap();
    let mut payload = vec![0, 0, 0, 3, b'p', b'c', b'1'];
    payload.extend(sub("configuration/capabilities", 1, &[0, 0, 0, 2]));
    payload.push(15);
    payload.extend_from_slice(b"x-ignore-shared");
    payload.push(10);
    payload.extend_from_slice(b"mapped-ram");
    payload.push(0x01); // next section
    let decoded = decode_vmsd("configuration", config, &payload).unwrap();
    assert_eq!(decoded.consumed, payload.len() - 1);
    assert_eq!(
        serde_json::to_value(&decoded).unwrap()["configuration/capabilities"]["capabilities"],
        serde_json::json!(["x-ignore-shared", "mapped-ram"])
    );
    // The qtailq field is taken as `size` opaque bytes.
    let q = decode_device(&desc.devices[0], &[1, 0, 0]).unwrap();
    assert_eq!(q.state.get("l").unwrap().as_bytes(), Some(&[1u8, 0, 0][..]));
}

#[test]
fn no_panic_on_truncated_or_corrupted_bodies() {
    let tail = RECORDINGS[0].1;
    let (desc, _) = trailer(tail);
    let mut pos = 0;
    for dev in &desc.devices {
        let idlen = tail[pos + 5] as usize;
        let start = pos + 14 + idlen;
        let consumed = decode_device_prefix(dev, &tail[start..]).unwrap().consumed;
        let body = &tail[start..start + consumed];
        for cut in 0..body.len() {
            assert!(
                decode_device(dev, &body[..cut]).is_err(),
                "{} cut {cut}",
                dev.name
            );
        }
        let mut corrupt = body.to_vec();
        for i in 0..corrupt.len() {
            corrupt[i] ^= 0xff;
            let _ = decode_device(dev, &corrupt);
            let _ = decode_device_prefix(dev, &corrupt);
            corrupt[i] ^= 0xff;
        }
        pos = start + consumed + 5;
    }
}

#[test]
fn repeated_field_names_serialise_as_one_list_not_duplicate_keys() {
    // QEMU 11.1 lists the elements of some arrays of structs (e.g. ide `bus`) as entries of
    // one name without `index`; analyze-migration.py gathers them into one list.
    let desc = one_device(
        r#""fields": [{"name": "bus", "type": "struct", "size": 1,
             "struct": {"vmsd_name": "b", "version": 1, "fields": [{"name": "cmd", "type": "uint8", "size": 1}]}},
           {"name": "bus", "type": "struct", "size": 1,
             "struct": {"vmsd_name": "b", "version": 1, "fields": [{"name": "cmd", "type": "uint8", "size": 1}]}},
           {"name": "r", "type": "uint8", "size": 1, "array_len": 2},
           {"name": "r", "type": "uint8", "size": 1},
           {"name": "z", "type": "uint8", "size": 1}]"#,
    );
    let ok = decode_device(&desc.devices[0], &[8, 0, 1, 2, 3, 9]).unwrap();
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"bus":[{"cmd":"0x08"},{"cmd":"0x00"}],"r":["0x01","0x02","0x03"],"z":"0x09"}"#
    );
}
