//! `ramstream inspect --vmdesc`: the VMDESCRIPTION trailer (SPEC.md §5.2), summarised per
//! device, or (with `--json`) its JSON exactly as the stream carries it, like
//! analyze-migration.py's `-d desc`.

use anyhow::{Context, Result};
use ramstream_codec::vmdesc::VmsdDescription;

use crate::inspect_devices::{device_state, parse_vmdesc};
use crate::DecodeArgs;

/// `ramstream inspect --vmdesc`.
pub fn run(bytes: &[u8], decode: &DecodeArgs, json: bool) -> Result<()> {
    let state = device_state(bytes, decode)?;
    let desc = parse_vmdesc(&state)?;
    if json {
        let raw = state.vmdesc.unwrap_or_default();
        // Checked to be one JSON document, then printed verbatim.
        serde_json::from_slice::<serde_json::Value>(raw).context("the VMDESCRIPTION trailer")?;
        println!("{}", String::from_utf8_lossy(raw));
        return Ok(());
    }
    println!(
        "VMDESCRIPTION: {} bytes, page size {}, {} devices{}",
        state.vmdesc.map_or(0, <[u8]>::len),
        desc.page_size,
        desc.devices.len(),
        if desc.configuration.is_some() {
            ", configuration described"
        } else {
            ""
        }
    );
    for d in &desc.devices {
        let v = &d.vmsd;
        println!(
            "  {:<36} inst {:<3} vmsd {} v{}: {} fields{}{}",
            d.name,
            d.instance_id,
            v.vmsd_name.as_deref().unwrap_or("(none)"),
            v.version.map_or("?".into(), |x| x.to_string()),
            count_fields(v),
            d.size.map(|s| format!(", size {s}")).unwrap_or_default(),
            if v.subsections.is_empty() {
                String::new()
            } else {
                format!(", subsections {}", subsection_names(v).join(" "))
            }
        );
    }
    Ok(())
}

/// Field entries of `v` and of everything nested in it.
fn count_fields(v: &VmsdDescription) -> usize {
    v.fields
        .iter()
        .map(|f| 1 + f.struct_desc.as_deref().map_or(0, count_fields) + count_fields(&f.inline))
        .sum::<usize>()
        + v.subsections.iter().map(count_fields).sum::<usize>()
}

fn subsection_names(v: &VmsdDescription) -> Vec<&str> {
    v.subsections
        .iter()
        .map(|s| s.vmsd_name.as_deref().unwrap_or("?"))
        .collect()
}
