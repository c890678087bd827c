//! The structure-aware `roundtrip_records` target: a [`Plan`] of stream items generated
//! from the fuzz input ([`generate`]), written and checked against the decoder ([`check`]).

mod check;
mod generate;

use arbitrary::Unstructured;
use ramstream_codec::{PageAddr, RamBlock};
use ramstream_spec::stream::{Command, SectionType};
use ramstream_spec::Dialect;

/// Target `roundtrip_records`: a structure-aware stream (`arbitrary`): configuration,
/// the `ram` section with MEM_SIZE, PAGE, ZERO and XBZRLE records (deltas made by the
/// encoder from the page the destination holds to an arbitrary new page), EOS, PART/END
/// sections, device sections with arbitrary bodies, commands, EOF and a VMDESCRIPTION,
/// written with the canonical [`Encoder`](ramstream_codec::Encoder) methods. Decoding must give back
/// exactly the records written, applying them must give the modelled RAM, and re-encoding
/// the decoded events must give the same bytes.
pub fn roundtrip_records(data: &[u8]) {
    let Ok(plan) = Plan::generate(&mut Unstructured::new(data)) else {
        return;
    };
    plan.check();
}

/// One item of a generated stream, owning its bytes.
#[derive(Debug)]
enum Item {
    MemSize(Vec<RamBlock>),
    Page(PageAddr, Vec<u8>),
    Zero(PageAddr, u8),
    /// Address, the page before, the page after.
    Xbzrle(PageAddr, Vec<u8>, Vec<u8>),
    MultifdFlush,
    /// PART or END and the ram section's id (EOS and footer after its records).
    Part(SectionType),
    /// End of a ram section: EOS, footer.
    EndRam,
    Device {
        section_id: u32,
        idstr: String,
        instance_id: u32,
        version_id: u32,
        body: Vec<u8>,
    },
    Command(Command, Vec<u8>),
}

#[derive(Debug)]
struct Plan {
    page_bits: u32,
    dialect: Dialect,
    machine_type: String,
    send_page_bits: bool,
    ignore_shared: bool,
    uuid: Option<[u8; 16]>,
    ram_id: u32,
    items: Vec<Item>,
    vmdesc: Option<Vec<u8>>,
}
