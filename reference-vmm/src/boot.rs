//! Loading the guest: page tables, GDT, program, parameter block, and the initial vCPU state
//! (64-bit long mode, paging with identity-mapped 2 MiB pages).

#![forbid(unsafe_code)]

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use crate::error::{Error, Result};
use crate::guest_abi::{
    param, CODE_GPA, GDT_GPA, GEN_TABLE_GPA, PAGE_SIZE, PARAM_GPA, PARAM_MAGIC, PARAM_VERSION,
    PDPT_GPA, PD_GPA, PML4_GPA, STACK_TOP,
};
use crate::memory::{GuestMemory, MemoryLayout};

const GIB: u64 = 1 << 30;
const PTE_PRESENT_RW: u64 = 0x3;
const PTE_LARGE: u64 = 0x80;
const GDT: [u64; 4] = [
    0,
    0x00AF_9B00_0000_FFFF, // 0x08: 64-bit code, DPL 0
    0x00CF_9300_0000_FFFF, // 0x10: data, DPL 0
    0x0080_8B00_0000_0067, // 0x18: 64-bit TSS (busy), base 0, limit 0x67
];

/// What the guest program does, written into its parameter block before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// First RAM page number of the working set; `None` = the first page after the guest's
    /// own pages ([`MemoryLayout::reserved_pages`]).
    pub working_set_first: Option<u64>,
    /// Working-set size in pages (0 = the guest writes nothing).
    pub working_set_pages: u64,
    /// Pages written per main-loop iteration (the write rate).
    pub pages_per_loop: u64,
    /// Spin iterations after each main-loop iteration (slows the rate down).
    pub delay_loops: u64,
    /// Fill whole pages with their tag (true) or write only header and last word (false).
    pub fill_pages: bool,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            working_set_first: None,
            working_set_pages: 2048,
            pages_per_loop: 4,
            delay_loops: 100,
            fill_pages: true,
        }
    }
}

impl GuestConfig {
    /// The working set as `(first RAM page, pages)`, checked against `layout`.
    pub fn working_set(&self, layout: &MemoryLayout) -> Result<(u64, u64)> {
        let first = self
            .working_set_first
            .unwrap_or_else(|| layout.reserved_pages());
        let end = first.checked_add(self.working_set_pages);
        if first < layout.reserved_pages() || end.is_none_or(|e| e > layout.total_pages()) {
            return Err(Error::InvalidConfig(format!(
                "working set {first}+{} must lie in RAM pages {}..{}",
                self.working_set_pages,
                layout.reserved_pages(),
                layout.total_pages()
            )));
        }
        Ok((first, self.working_set_pages))
    }
}

/// Writes page tables, GDT, program and parameter block into fresh guest memory.
pub(crate) fn load_guest(mem: &GuestMemory, config: &GuestConfig) -> Result<()> {
    let layout = mem.layout();
    let (ws_first, ws_pages) = config.working_set(layout)?;
    write_page_tables(mem)?;
    let gdt: Vec<u8> = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write_gpa(GDT_GPA, &gdt)?;
    mem.write_gpa(CODE_GPA, &crate::guest_program::assemble()?)?;

    let p = |off: u64, v: u64| mem.store_u64(PARAM_GPA + off, v);
    p(param::MAGIC, PARAM_MAGIC)?;
    p(param::VERSION, PARAM_VERSION)?;
    p(param::GENERATION, 1)?;
    p(param::WS_FIRST, ws_first)?;
    p(param::WS_COUNT, ws_pages)?;
    p(param::PAGES_PER_LOOP, config.pages_per_loop)?;
    p(param::DELAY_LOOPS, config.delay_loops)?;
    p(param::FILL, u64::from(config.fill_pages))?;
    p(param::GEN_TABLE, GEN_TABLE_GPA)?;
    p(param::TOTAL_PAGES, layout.total_pages())?;
    p(param::REGION_COUNT, layout.regions.len() as u64)?;
    for (i, r) in layout.regions.iter().enumerate() {
        p(param::REGIONS + 16 * i as u64, r.gpa)?;
        p(param::REGIONS + 16 * i as u64 + 8, r.pages())?;
    }
    p(param::RESERVED_PAGES, layout.reserved_pages())?;
    p(param::CHECK_FIRST_BAD, u64::MAX)?;
    Ok(())
}

fn write_page_tables(mem: &GuestMemory) -> Result<()> {
    let top = mem
        .layout()
        .regions
        .iter()
        .map(|r| r.gpa + r.size)
        .max()
        .unwrap_or(0);
    let pds = top.div_ceil(GIB);
    mem.store_u64(PML4_GPA, PDPT_GPA | PTE_PRESENT_RW)?;
    for i in 0..pds {
        let pd = PD_GPA + i * PAGE_SIZE as u64;
        mem.store_u64(PDPT_GPA + 8 * i, pd | PTE_PRESENT_RW)?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|j| ((i << 30) | (j << 21) | PTE_LARGE | PTE_PRESENT_RW).to_le_bytes())
            .collect();
        mem.write_gpa(pd, &entries)?;
    }
    Ok(())
}

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Long mode with paging: CR0=0x80050033, CR4=0x620, EFER=0x501, CR3 = the PML4.
pub(crate) fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    sregs.cs = segment(0x08, 0xB, true);
    let data = segment(0x10, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        limit: 0x67,
        g: 0,
        s: 0,
        db: 0,
        ..segment(0x18, 0xB, false)
    };
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x8005_0033;
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = 0x620;
    sregs.efer = 0x501;
    sregs
}

/// The program's entry point, its stack, and interrupts off.
pub(crate) fn entry_regs() -> kvm_regs {
    kvm_regs {
        rip: CODE_GPA,
        rsp: STACK_TOP,
        rflags: 0x2,
        ..Default::default()
    }
}
