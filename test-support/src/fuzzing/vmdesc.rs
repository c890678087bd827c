//! The `vmdesc` target: VMDESCRIPTION JSON, and device bodies decoded with a real one.

/// Target `vmdesc`: `mode, …` with `real_json` a real VMDESCRIPTION (the fuzz target embeds
/// one from a vector). Mode bit 0 clear: the rest is JSON for [`VmDescription::parse`](ramstream_codec::vmdesc::VmDescription::parse)
/// (and [`VmDescription::parse_trailer`](ramstream_codec::vmdesc::VmDescription::parse_trailer) on the same bytes); whatever parses is walked
/// over the input. Set: the next byte picks a device of `real_json` and the rest is its
/// body for [`decode_device`](ramstream_codec::vmdesc::decode_device).
pub fn vmdesc(real_json: &[u8], data: &[u8]) {
    use ramstream_codec::vmdesc::{
        decode_device, decode_device_prefix, decode_vmsd, VmDescription,
    };
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode & 1 == 0 {
        let _ = VmDescription::parse_trailer(rest);
        let Ok(desc) = VmDescription::parse(rest) else {
            return;
        };
        for d in desc.devices.iter().take(8) {
            if let Ok(v) = decode_device_prefix(d, rest) {
                assert!(v.consumed <= rest.len());
                let _ = serde_json::to_string(&v);
            }
        }
        if let Some(c) = &desc.configuration {
            if let Ok(v) = decode_vmsd("configuration", c, rest) {
                assert!(v.consumed <= rest.len());
            }
        }
        return;
    }
    let desc = VmDescription::parse(real_json).expect("the real vmdesc parses");
    let [pick, body @ ..] = rest else {
        return;
    };
    if desc.devices.is_empty() {
        return;
    }
    let d = &desc.devices[usize::from(*pick) % desc.devices.len()];
    match decode_device(d, body) {
        Ok(v) => {
            assert_eq!(v.consumed, body.len());
            let _ = serde_json::to_string(&v);
        }
        Err(_) => {
            if let Ok(v) = decode_device_prefix(d, body) {
                assert!(v.consumed <= body.len());
            }
        }
    }
}
