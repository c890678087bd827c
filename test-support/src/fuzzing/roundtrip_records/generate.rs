//! Generating a [`Plan`] from the fuzz input, with a model of the destination's RAM to make
//! XBZRLE deltas against.

use std::collections::BTreeMap;

use arbitrary::{Result as AResult, Unstructured};
use ramstream_codec::{PageAddr, RamBlock};
use ramstream_spec::ram::{TARGET_PAGE_BITS_MAX, TARGET_PAGE_BITS_MIN};
use ramstream_spec::stream::{Command, SectionType};
use ramstream_spec::Dialect;

use super::{Item, Plan};
use crate::fuzzing::pages::arbitrary_page;

fn some_bytes(u: &mut Unstructured<'_>, max: usize) -> AResult<Vec<u8>> {
    let n = u.int_in_range(0..=max)?.min(u.len());
    Ok(u.bytes(n)?.to_vec())
}

fn printable(u: &mut Unstructured<'_>, max: usize) -> AResult<String> {
    let n = u.int_in_range(1..=max)?;
    (0..n)
        .map(|_| u.int_in_range(0x20u8..=0x7e).map(char::from))
        .collect()
}

impl Plan {
    pub(super) fn generate(u: &mut Unstructured<'_>) -> AResult<Plan> {
        let page_bits = if u.ratio(1, 4)? {
            u.int_in_range(TARGET_PAGE_BITS_MIN..=TARGET_PAGE_BITS_MAX)?
        } else {
            12
        };
        let ps = 1u64 << page_bits;
        let dialect = if u.arbitrary()? {
            Dialect::Qemu
        } else {
            Dialect::Qemu7_2
        };
        let machine_type = {
            let n = u.int_in_range(0..=40)?;
            let s: String = (0..n)
                .map(|_| u.arbitrary::<char>())
                .collect::<AResult<_>>()?;
            s.chars().take(256).collect::<String>()
        };
        let machine_type = if machine_type.len() > 256 {
            machine_type.chars().take(64).collect()
        } else {
            machine_type
        };
        let send_page_bits = page_bits != 12 || u.arbitrary()?;
        let ignore_shared = u.ratio(1, 4)?;
        let uuid = if u.arbitrary()? {
            Some(u.arbitrary()?)
        } else {
            None
        };
        let ram_id: u32 = u.arbitrary()?;
        let gen_blocks = |u: &mut Unstructured<'_>| -> AResult<Vec<RamBlock>> {
            let n = u.int_in_range(1..=4)?;
            let mut v: Vec<RamBlock> = Vec::new();
            for i in 0..n {
                let mut idstr = printable(u, 24)?;
                if v.iter().any(|b| b.idstr == idstr) {
                    idstr.push_str(&i.to_string());
                }
                if v.iter().any(|b| b.idstr == idstr) {
                    continue;
                }
                v.push(RamBlock {
                    idstr,
                    used_length: ps * u.int_in_range(1..=32u64)?,
                    page_size: None,
                    mr_addr: if ignore_shared {
                        Some(u.arbitrary()?)
                    } else {
                        None
                    },
                });
            }
            Ok(v)
        };
        let mut items = Vec::new();
        let mut blocks = gen_blocks(u)?;
        items.push(Item::MemSize(blocks.clone()));
        // The model of the destination's RAM, to make XBZRLE deltas against.
        let mut model: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
        let mut in_ram = true;
        let mut next_device_id = ram_id.wrapping_add(1);
        while !u.is_empty() && items.len() < 256 {
            if !in_ram {
                match u.int_in_range(0..=3)? {
                    0 | 1 => {
                        let t = if u.arbitrary()? {
                            SectionType::PART
                        } else {
                            SectionType::END
                        };
                        items.push(Item::Part(t));
                        in_ram = true;
                    }
                    2 => {
                        let mut body = some_bytes(u, 200)?;
                        let section_id = next_device_id;
                        next_device_id = next_device_id.wrapping_add(1);
                        strip_footers(&mut body, section_id);
                        items.push(Item::Device {
                            section_id,
                            idstr: printable(u, 40)?,
                            instance_id: u.int_in_range(0..=0xffff)?,
                            version_id: u.int_in_range(0..=0xffff)?,
                            body,
                        });
                    }
                    _ => {
                        let (cmd, payload) = match u.int_in_range(0..=3)? {
                            0 => (Command::PING, u.bytes(4)?.to_vec()),
                            1 => (Command::OPEN_RETURN_PATH, vec![]),
                            2 => (Command::POSTCOPY_RAM_DISCARD, some_bytes(u, 64)?),
                            _ => (Command::POSTCOPY_ADVISE, u.bytes(16)?.to_vec()),
                        };
                        items.push(Item::Command(cmd, payload));
                    }
                }
                continue;
            }
            let pick_addr = |u: &mut Unstructured<'_>, blocks: &[RamBlock]| -> AResult<PageAddr> {
                let block = u.choose_index(blocks.len())?;
                let pages = blocks[block].used_length / ps;
                Ok(PageAddr {
                    block,
                    offset: u.int_in_range(0..=pages - 1)? * ps,
                })
            };
            match u.int_in_range(0..=9)? {
                0..=2 => {
                    let addr = pick_addr(u, &blocks)?;
                    let page = arbitrary_page(u, ps as usize)?;
                    model.insert(
                        (blocks[addr.block].idstr.clone(), addr.offset),
                        page.clone(),
                    );
                    items.push(Item::Page(addr, page));
                }
                3 | 4 => {
                    let addr = pick_addr(u, &blocks)?;
                    let fill = if u.ratio(1, 4)? { u.arbitrary()? } else { 0 };
                    model.insert(
                        (blocks[addr.block].idstr.clone(), addr.offset),
                        vec![fill; ps as usize],
                    );
                    items.push(Item::Zero(addr, fill));
                }
                5..=7 => {
                    let addr = pick_addr(u, &blocks)?;
                    let key = (blocks[addr.block].idstr.clone(), addr.offset);
                    let old = model
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| vec![0; ps as usize]);
                    let mut new = old.clone();
                    for _ in 0..u.int_in_range(1..=8)? {
                        let at = u.int_in_range(0..=ps as usize - 1)?;
                        let run = u.int_in_range(1..=100usize)?.min(ps as usize - at);
                        let v: u8 = u.arbitrary()?;
                        new[at..at + run].fill(v);
                    }
                    model.insert(key, new.clone());
                    items.push(Item::Xbzrle(addr, old, new));
                }
                8 => {
                    if u.ratio(1, 3)? {
                        let keep = blocks.clone();
                        blocks = gen_blocks(u)?;
                        if u.arbitrary()? {
                            // Re-announce with the old names, possibly other lengths.
                            for (b, k) in blocks.iter_mut().zip(keep) {
                                b.idstr = k.idstr;
                            }
                            let mut seen = std::collections::HashSet::new();
                            blocks.retain(|b| seen.insert(b.idstr.clone()));
                        }
                        // As RamImage does: same idstr keeps its pages below the new length.
                        model.retain(|(name, off), _| {
                            blocks
                                .iter()
                                .any(|b| &b.idstr == name && *off < b.used_length)
                        });
                        items.push(Item::MemSize(blocks.clone()));
                    } else if dialect == Dialect::Qemu {
                        items.push(Item::MultifdFlush);
                    }
                }
                _ => {
                    items.push(Item::EndRam);
                    in_ram = false;
                }
            }
        }
        if in_ram {
            items.push(Item::EndRam);
        }
        let vmdesc = if u.arbitrary()? {
            let mut j = b"{".to_vec();
            j.extend_from_slice(&some_bytes(u, 64)?);
            Some(j)
        } else {
            None
        };
        Ok(Plan {
            page_bits,
            dialect,
            machine_type,
            send_page_bits,
            ignore_shared,
            uuid,
            ram_id,
            items,
            vmdesc,
        })
    }
}

/// Makes sure `body ++ footer(id)` has its first `7E be32(id)` at the footer, so the
/// device framing finds the body's real end.
fn strip_footers(body: &mut [u8], id: u32) {
    let footer = {
        let mut f = vec![SectionType::FOOTER.0];
        f.extend_from_slice(&id.to_be_bytes());
        f
    };
    loop {
        let mut all = body.to_vec();
        all.extend_from_slice(&footer);
        match all.windows(footer.len()).position(|w| w == footer) {
            Some(p) if p < body.len() => body[p] = 0x7f,
            _ => return,
        }
    }
}
