//! `ramstream inspect --devices`: every FULL device section's fields decoded through the
//! VMDESCRIPTION (SPEC.md §5.2), as a tree of names, types and values, or (with `--json`)
//! one object keyed `"idstr (section_id)"` like analyze-migration.py's `-d state`.

use anyhow::{bail, Context, Result};
use ramstream_codec::vmdesc::{
    decode_device, DecodedDevice, DeviceDescription, Struct, Value, VmDescription, VmsdDescription,
};
use ramstream_codec::{DeviceSection, Event, Events};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value as Json;

use crate::input::file_options;
use crate::DecodeArgs;

/// Buffers longer than this are shortened in the text output (never in JSON).
const TEXT_BUFFER_BYTES: usize = 32;

/// A stream's FULL device sections and its VMDESCRIPTION trailer's JSON, borrowed.
pub struct DeviceState<'a> {
    /// The device sections, in stream order.
    pub devices: Vec<DeviceSection<'a>>,
    /// The VMDESCRIPTION JSON, when the stream has one.
    pub vmdesc: Option<&'a [u8]>,
}

/// Decodes the whole stream, keeping the device sections and the VMDESCRIPTION.
pub fn device_state<'a>(bytes: &'a [u8], decode: &DecodeArgs) -> Result<DeviceState<'a>> {
    let mut events = Events::new(bytes, file_options(decode));
    let mut state = DeviceState {
        devices: Vec::new(),
        vmdesc: None,
    };
    while let Some((_, event)) = events.next().transpose()? {
        match event {
            Event::Device(d) => state.devices.push(d),
            Event::VmDescription(j) => state.vmdesc = Some(j),
            _ => {}
        }
    }
    Ok(state)
}

/// The VMDESCRIPTION, parsed; an error naming the cause when the stream has none.
pub fn parse_vmdesc(state: &DeviceState<'_>) -> Result<VmDescription> {
    let Some(json) = state.vmdesc else {
        bail!(
            "the stream has no VMDESCRIPTION trailer (suppress-vmdesc?): its {} device \
             sections cannot be decoded field by field",
            state.devices.len()
        );
    };
    VmDescription::parse(json).context("the VMDESCRIPTION trailer")
}

/// Pairs every device section with its description, in stream order, as
/// `check_splits` does: the first unused description of the same idstr and instance.
fn pair<'d>(
    desc: &'d VmDescription,
    devices: &[DeviceSection<'_>],
) -> Vec<Option<&'d DeviceDescription>> {
    let mut used = vec![false; desc.devices.len()];
    devices
        .iter()
        .map(|s| {
            let (i, d) = desc.devices.iter().enumerate().find(|(i, d)| {
                !used[*i] && d.name == s.header.idstr && d.instance_id == s.header.instance_id
            })?;
            used[i] = true;
            Some(d)
        })
        .collect()
}

/// `ramstream inspect --devices`: prints every device section decoded; fails (after
/// printing the others) when a section cannot be decoded, naming it.
pub fn run(bytes: &[u8], decode: &DecodeArgs, json: bool) -> Result<()> {
    let state = device_state(bytes, decode)?;
    let desc = parse_vmdesc(&state)?;
    let pairs = pair(&desc, &state.devices);
    let mut failed = Vec::new();
    let mut out = Vec::new();
    for (s, d) in state.devices.iter().zip(pairs) {
        let h = &s.header;
        let key = format!("{} ({})", h.idstr, h.section_id);
        let decoded = match d {
            Some(d) => decode_device(d, s.body).map_err(|e| e.to_string()),
            None => Err("the VMDESCRIPTION does not describe it".to_string()),
        };
        if let Err(e) = &decoded {
            failed.push(format!(
                "{} instance {} (body at {:#x}): {e}",
                h.idstr, h.instance_id, s.body_offset
            ));
        }
        if json {
            out.push((key, decoded));
            continue;
        }
        println!(
            "{key}: instance {}, version {}, {} bytes at {:#x}{}",
            h.instance_id,
            h.version_id,
            s.body.len(),
            s.body_offset,
            d.and_then(|d| d.vmsd.vmsd_name.as_deref())
                .map(|n| format!(", vmsd {n}"))
                .unwrap_or_default()
        );
        match (&decoded, d) {
            (Ok(dev), Some(d)) => print_struct(&dev.state, Some(&d.vmsd), 1),
            (Err(e), _) => println!("  cannot decode: {e}"),
            _ => {}
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&InOrder(&out))?);
    }
    if !failed.is_empty() {
        bail!(
            "{} device sections not decoded: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// The `--json` document: devices in stream order (a JSON object keeps its keys' order
/// here), each its state or `{"error": ...}`.
struct InOrder<'o, 'a>(&'o [(String, Result<DecodedDevice<'a>, String>)]);

impl Serialize for InOrder<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, decoded) in self.0 {
            match decoded {
                Ok(dev) => map.serialize_entry(key, dev)?,
                Err(e) => map.serialize_entry(key, &serde_json::json!({ "error": e }))?,
            }
        }
        map.end()
    }
}

/// The described type of field `name` in `desc` (`?` when not described).
fn field_type<'d>(desc: Option<&'d VmsdDescription>, name: &str) -> &'d str {
    desc.and_then(|d| d.fields.iter().find(|f| f.name == name))
        .map_or("?", |f| f.field_type.as_str())
}

/// The nested description of a struct-valued field `name`.
fn nested<'d>(desc: Option<&'d VmsdDescription>, name: &str) -> Option<&'d VmsdDescription> {
    let f = desc?.fields.iter().find(|f| f.name == name)?;
    f.struct_desc
        .as_deref()
        .or((f.inline.vmsd_name.is_some()).then_some(&f.inline))
}

fn print_struct(s: &Struct<'_>, desc: Option<&VmsdDescription>, depth: usize) {
    let pad = "  ".repeat(depth);
    for (name, value) in &s.fields {
        let ty = field_type(desc, name);
        print_value(&pad, name, ty, value, nested(desc, name), depth);
    }
    for sub in &s.subsections {
        let sd = desc.and_then(|d| {
            d.subsections
                .iter()
                .find(|x| x.vmsd_name.as_deref() == Some(sub.name))
        });
        println!("{pad}subsection {} (version {}):", sub.name, sub.version);
        print_struct(&sub.state, sd, depth + 1);
    }
}

fn print_value(
    pad: &str,
    name: &str,
    ty: &str,
    value: &Value<'_>,
    desc: Option<&VmsdDescription>,
    depth: usize,
) {
    match value {
        Value::Struct(s) => {
            println!("{pad}{name}: {ty}");
            print_struct(s, desc, depth + 1);
        }
        Value::Array(items) if items.iter().any(|v| matches!(v, Value::Struct(_))) => {
            println!("{pad}{name}: {ty}[{}]", items.len());
            for (i, v) in items.iter().enumerate() {
                print_value(
                    &format!("{pad}  "),
                    &format!("[{i}]"),
                    ty,
                    v,
                    desc,
                    depth + 1,
                );
            }
        }
        Value::Array(items) => {
            let shown: Vec<String> = items.iter().map(scalar).collect();
            println!(
                "{pad}{name}: {ty}[{}] = [{}]",
                items.len(),
                shown.join(", ")
            );
        }
        v => println!("{pad}{name}: {ty} = {}", scalar(v)),
    }
}

/// A scalar as analyze-migration.py prints it, long buffers shortened.
fn scalar(v: &Value<'_>) -> String {
    if let Some(b) = v.as_bytes() {
        if b.len() > TEXT_BUFFER_BYTES {
            return format!(
                "\"{} ...\" ({} bytes)",
                hex_bytes(&b[..TEXT_BUFFER_BYTES]),
                b.len()
            );
        }
    }
    match serde_json::to_value(v) {
        Ok(Json::String(s)) => format!("\"{s}\""),
        Ok(j) => j.to_string(),
        Err(e) => format!("({e})"),
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
