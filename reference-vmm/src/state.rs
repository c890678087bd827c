//! vCPU and VM state as versioned byte blobs, and their capture from / restore into KVM.
//!
//! Blob format (both blobs): an 8-byte header — 4 magic bytes (`RSVC` for a vCPU, `RSVM` for
//! a VM), version byte `1`, three zero bytes — then records, each `tag: u32 LE`,
//! `len: u32 LE`, `len` payload bytes. Records appear once each, in ascending tag order when
//! written; a reader rejects unknown or repeated tags, wrong payload lengths, missing required
//! records, a non-zero reserved byte and trailing bytes. Payloads that are kernel structs are
//! byte images of the x86-64 KVM UAPI layout (`<linux/kvm.h>`, little-endian), which the
//! kernel keeps stable; the crate docs list every tag with its size.

#![forbid(unsafe_code)]

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use ramstream_migrate::PageRun;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{Error, Result};

/// Version byte of both blobs.
pub const STATE_VERSION: u8 = 1;
/// Magic of a vCPU state blob.
pub const VCPU_MAGIC: [u8; 4] = *b"RSVC";
/// Magic of a VM state blob.
pub const VM_MAGIC: [u8; 4] = *b"RSVM";

/// Record tags of the vCPU blob, in restore order.
pub mod vcpu_tag {
    /// `struct kvm_sregs`, 312 bytes.
    pub const SREGS: u32 = 1;
    /// `struct kvm_regs`, 144 bytes.
    pub const REGS: u32 = 2;
    /// `struct kvm_fpu`, 416 bytes.
    pub const FPU: u32 = 3;
    /// `struct kvm_xsave`, 4096 bytes (optional: absent without `KVM_CAP_XSAVE`).
    pub const XSAVE: u32 = 4;
    /// `struct kvm_xcrs`, 392 bytes (optional: absent without `KVM_CAP_XCRS`).
    pub const XCRS: u32 = 5;
    /// `struct kvm_lapic_state`, 1024 bytes.
    pub const LAPIC: u32 = 6;
    /// MSRs: 16 bytes each, `struct kvm_msr_entry` (index u32, reserved u32 = 0, value u64).
    pub const MSRS: u32 = 7;
    /// `struct kvm_vcpu_events`, 64 bytes.
    pub const VCPU_EVENTS: u32 = 8;
    /// `struct kvm_mp_state`, 4 bytes.
    pub const MP_STATE: u32 = 9;
    /// `struct kvm_debugregs`, 128 bytes.
    pub const DEBUG_REGS: u32 = 10;
}

/// Record tags of the VM blob.
pub mod vm_tag {
    /// `struct kvm_clock_data`, 48 bytes (only `clock` is restored).
    pub const CLOCK: u32 = 1;
    /// `struct kvm_irqchip` of the master PIC, 520 bytes.
    pub const PIC_MASTER: u32 = 2;
    /// `struct kvm_irqchip` of the slave PIC, 520 bytes.
    pub const PIC_SLAVE: u32 = 3;
    /// `struct kvm_irqchip` of the IOAPIC, 520 bytes.
    pub const IOAPIC: u32 = 4;
    /// Balloon: `u64 runs`, then per run `u64 region, u64 start, u64 count` (a
    /// [`PageRun`](ramstream_migrate::PageRun) in 4 KiB pages of the region).
    pub const BALLOON: u32 = 5;
}

const XSAVE_SIZE: usize = std::mem::size_of::<kvm_xsave>();

/// The MSRs captured, by index: TSC, EFER, STAR, LSTAR, CSTAR, FMASK, FS_BASE, GS_BASE,
/// KERNEL_GS_BASE, TSC_AUX, SYSENTER_CS/ESP/EIP, PAT, MISC_ENABLE, TSC_DEADLINE. Those the
/// host's KVM cannot read are left out.
pub const CAPTURED_MSRS: [u32; 16] = [
    0x10,
    0xC000_0080,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    0xC000_0100,
    0xC000_0101,
    0xC000_0102,
    0xC000_0103,
    0x174,
    0x175,
    0x176,
    0x277,
    0x1A0,
    0x6E0,
];

fn msr_error(op: &'static str, entries: &[kvm_msr_entry], done: usize) -> Error {
    Error::Msr {
        op,
        done,
        total: entries.len(),
        stopped_at: entries.get(done).map_or(u32::MAX, |e| e.index),
    }
}

/// True if KVM lets this vCPU read MSR `index` (probed once per VM; the MSR index list
/// leaves out some MSRs KVM does handle, such as PAT).
pub(crate) fn msr_readable(vcpu: &VcpuFd, index: u32) -> bool {
    Msrs::from_entries(&[kvm_msr_entry {
        index,
        ..Default::default()
    }])
    .ok()
    .and_then(|mut m| vcpu.get_msrs(&mut m).ok())
        == Some(1)
}

/// One MSR's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrValue {
    /// The MSR index.
    pub index: u32,
    /// Its value.
    pub value: u64,
}

/// Everything needed to resume vCPU 0 elsewhere. Serialize with [`VcpuState::to_bytes`].
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuState {
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// x87/SSE state.
    pub fpu: kvm_fpu,
    /// The xsave area (`struct kvm_xsave`, 4096 bytes), when the host supports
    /// `KVM_CAP_XSAVE`.
    pub xsave: Option<Vec<u8>>,
    /// Extended control registers, when the host supports `KVM_CAP_XCRS`.
    pub xcrs: Option<kvm_xcrs>,
    /// Local APIC registers.
    pub lapic: kvm_lapic_state,
    /// Model-specific registers (see [`CAPTURED_MSRS`]).
    pub msrs: Vec<MsrValue>,
    /// Pending exceptions, interrupts, NMIs and SMIs.
    pub vcpu_events: kvm_vcpu_events,
    /// Multiprocessing state (runnable, halted…).
    pub mp_state: kvm_mp_state,
    /// Debug registers.
    pub debug_regs: kvm_debugregs,
}

/// What the host supports, found once per VM.
#[derive(Debug, Clone)]
pub(crate) struct VcpuCaps {
    pub(crate) xsave: bool,
    pub(crate) xcrs: bool,
    pub(crate) msrs: Vec<u32>,
}

impl VcpuState {
    /// Reads the state of a vCPU that is not running.
    pub(crate) fn capture(vcpu: &VcpuFd, caps: &VcpuCaps) -> Result<Self> {
        let k = Error::kvm;
        let entries: Vec<kvm_msr_entry> = caps
            .msrs
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs =
            Msrs::from_entries(&entries).map_err(|_| msr_error("KVM_GET_MSRS", &entries, 0))?;
        let read = vcpu.get_msrs(&mut msrs).map_err(k("KVM_GET_MSRS"))?;
        if read != entries.len() {
            return Err(msr_error("KVM_GET_MSRS", &entries, read));
        }
        Ok(Self {
            sregs: vcpu.get_sregs().map_err(k("KVM_GET_SREGS"))?,
            regs: vcpu.get_regs().map_err(k("KVM_GET_REGS"))?,
            fpu: vcpu.get_fpu().map_err(k("KVM_GET_FPU"))?,
            xsave: if caps.xsave {
                Some(
                    vcpu.get_xsave()
                        .map_err(k("KVM_GET_XSAVE"))?
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                None
            },
            xcrs: if caps.xcrs {
                Some(vcpu.get_xcrs().map_err(k("KVM_GET_XCRS"))?)
            } else {
                None
            },
            lapic: vcpu.get_lapic().map_err(k("KVM_GET_LAPIC"))?,
            msrs: msrs
                .as_slice()
                .iter()
                .map(|e| MsrValue {
                    index: e.index,
                    value: e.data,
                })
                .collect(),
            vcpu_events: vcpu.get_vcpu_events().map_err(k("KVM_GET_VCPU_EVENTS"))?,
            mp_state: vcpu.get_mp_state().map_err(k("KVM_GET_MP_STATE"))?,
            debug_regs: vcpu.get_debug_regs().map_err(k("KVM_GET_DEBUGREGS"))?,
        })
    }

    /// Loads the state into a vCPU that is not running, in the order sregs, regs, fpu, xsave,
    /// xcrs, lapic, msrs, vcpu_events, mp_state, debug_regs.
    pub(crate) fn restore(&self, vcpu: &VcpuFd) -> Result<()> {
        let k = Error::kvm;
        vcpu.set_sregs(&self.sregs).map_err(k("KVM_SET_SREGS"))?;
        vcpu.set_regs(&self.regs).map_err(k("KVM_SET_REGS"))?;
        vcpu.set_fpu(&self.fpu).map_err(k("KVM_SET_FPU"))?;
        if let Some(bytes) = &self.xsave {
            let xsave = kvm_xsave::read_from_bytes(bytes).map_err(|_| Error::StateFormat {
                blob: "vcpu",
                offset: 0,
                detail: format!(
                    "xsave area is {} bytes, expected {}",
                    bytes.len(),
                    XSAVE_SIZE
                ),
            })?;
            crate::sys::set_xsave(vcpu, &xsave).map_err(k("KVM_SET_XSAVE"))?;
        }
        if let Some(xcrs) = &self.xcrs {
            vcpu.set_xcrs(xcrs).map_err(k("KVM_SET_XCRS"))?;
        }
        vcpu.set_lapic(&self.lapic).map_err(k("KVM_SET_LAPIC"))?;
        let entries: Vec<kvm_msr_entry> = self
            .msrs
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                data: m.value,
                ..Default::default()
            })
            .collect();
        let msrs =
            Msrs::from_entries(&entries).map_err(|_| msr_error("KVM_SET_MSRS", &entries, 0))?;
        let written = vcpu.set_msrs(&msrs).map_err(k("KVM_SET_MSRS"))?;
        if written != entries.len() {
            return Err(msr_error("KVM_SET_MSRS", &entries, written));
        }
        vcpu.set_vcpu_events(&self.vcpu_events)
            .map_err(k("KVM_SET_VCPU_EVENTS"))?;
        vcpu.set_mp_state(self.mp_state)
            .map_err(k("KVM_SET_MP_STATE"))?;
        vcpu.set_debug_regs(&self.debug_regs)
            .map_err(k("KVM_SET_DEBUGREGS"))?;
        Ok(())
    }

    /// The versioned blob (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(VCPU_MAGIC);
        w.record(vcpu_tag::SREGS, self.sregs.as_bytes());
        w.record(vcpu_tag::REGS, self.regs.as_bytes());
        w.record(vcpu_tag::FPU, &fpu_to_bytes(&self.fpu));
        if let Some(x) = &self.xsave {
            w.record(vcpu_tag::XSAVE, x);
        }
        if let Some(x) = &self.xcrs {
            w.record(vcpu_tag::XCRS, x.as_bytes());
        }
        w.record(vcpu_tag::LAPIC, self.lapic.as_bytes());
        let msrs: Vec<u8> = self
            .msrs
            .iter()
            .flat_map(|m| {
                let mut e = [0u8; 16];
                e[..4].copy_from_slice(&m.index.to_le_bytes());
                e[8..].copy_from_slice(&m.value.to_le_bytes());
                e
            })
            .collect();
        w.record(vcpu_tag::MSRS, &msrs);
        w.record(vcpu_tag::VCPU_EVENTS, self.vcpu_events.as_bytes());
        w.record(vcpu_tag::MP_STATE, self.mp_state.as_bytes());
        w.record(vcpu_tag::DEBUG_REGS, self.debug_regs.as_bytes());
        w.finish()
    }

    /// Parses a blob written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const BLOB: &str = "vcpu";
        let recs = parse(BLOB, VCPU_MAGIC, bytes, vcpu_tag::DEBUG_REGS)?;
        let msrs_rec = recs.required(vcpu_tag::MSRS)?;
        if !msrs_rec.payload.len().is_multiple_of(16) {
            return Err(recs.bad(msrs_rec.offset, "MSR record length is not a multiple of 16"));
        }
        let msrs = msrs_rec
            .payload
            .chunks_exact(16)
            .map(|e| MsrValue {
                index: le_u32(&e[..4]),
                value: le_u64(&e[8..]),
            })
            .collect();
        let fpu_rec = recs.required(vcpu_tag::FPU)?;
        Ok(Self {
            sregs: recs.pod(vcpu_tag::SREGS)?,
            regs: recs.pod(vcpu_tag::REGS)?,
            fpu: fpu_from_bytes(fpu_rec.payload)
                .ok_or_else(|| recs.bad(fpu_rec.offset, "FPU record is not 416 bytes"))?,
            xsave: match recs.get(vcpu_tag::XSAVE) {
                Some(r) if r.payload.len() == XSAVE_SIZE => Some(r.payload.to_vec()),
                Some(r) => return Err(recs.bad(r.offset, "xsave record is not 4096 bytes")),
                None => None,
            },
            xcrs: recs.optional_pod(vcpu_tag::XCRS)?,
            lapic: recs.pod(vcpu_tag::LAPIC)?,
            msrs,
            vcpu_events: recs.pod(vcpu_tag::VCPU_EVENTS)?,
            mp_state: recs.pod(vcpu_tag::MP_STATE)?,
            debug_regs: recs.pod(vcpu_tag::DEBUG_REGS)?,
        })
    }
}

/// VM-wide state: KVM clock, interrupt controllers, balloon. Serialize with
/// [`VmState::to_bytes`].
#[derive(Debug, Clone)]
pub struct VmState {
    /// The KVM clock.
    pub clock: kvm_clock_data,
    /// Master PIC, slave PIC and IOAPIC, in that order.
    pub irqchips: [kvm_irqchip; 3],
    /// The balloon device: pages the guest has given back, as `(region, run)` pairs in the
    /// blob's order (the run in 4 KiB pages counted from the region's start). Only the shape
    /// is checked when parsing: the region and run may lie outside the layout.
    pub balloon: Vec<(usize, PageRun)>,
}

const CHIPS: [(u32, u32); 3] = [
    (KVM_IRQCHIP_PIC_MASTER, vm_tag::PIC_MASTER),
    (KVM_IRQCHIP_PIC_SLAVE, vm_tag::PIC_SLAVE),
    (KVM_IRQCHIP_IOAPIC, vm_tag::IOAPIC),
];

impl VmState {
    /// Reads the VM's clock and interrupt controllers; the balloon runs come from the caller.
    pub(crate) fn capture(vm: &VmFd, balloon: Vec<(usize, PageRun)>) -> Result<Self> {
        let mut irqchips = [kvm_irqchip::default(); 3];
        for (chip, (id, _)) in irqchips.iter_mut().zip(CHIPS) {
            chip.chip_id = id;
            vm.get_irqchip(chip)
                .map_err(Error::kvm("KVM_GET_IRQCHIP"))?;
        }
        Ok(Self {
            clock: vm.get_clock().map_err(Error::kvm("KVM_GET_CLOCK"))?,
            irqchips,
            balloon,
        })
    }

    /// Sets the clock (its `clock` value only) and the interrupt controllers.
    pub(crate) fn restore(&self, vm: &VmFd) -> Result<()> {
        for chip in &self.irqchips {
            vm.set_irqchip(chip)
                .map_err(Error::kvm("KVM_SET_IRQCHIP"))?;
        }
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        vm.set_clock(&clock).map_err(Error::kvm("KVM_SET_CLOCK"))
    }

    /// The versioned blob (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(VM_MAGIC);
        w.record(vm_tag::CLOCK, self.clock.as_bytes());
        for (chip, (_, tag)) in self.irqchips.iter().zip(CHIPS) {
            w.record(tag, chip.as_bytes());
        }
        let mut b = (self.balloon.len() as u64).to_le_bytes().to_vec();
        for &(region, r) in &self.balloon {
            b.extend_from_slice(&(region as u64).to_le_bytes());
            b.extend_from_slice(&r.start.to_le_bytes());
            b.extend_from_slice(&r.count.to_le_bytes());
        }
        w.record(vm_tag::BALLOON, &b);
        w.finish()
    }

    /// Parses a blob written by [`Self::to_bytes`]. Balloon runs are checked for shape only;
    /// the VM checks them against its layout when restoring.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let recs = parse("vm", VM_MAGIC, bytes, vm_tag::BALLOON)?;
        let mut irqchips = [kvm_irqchip::default(); 3];
        for (chip, (id, tag)) in irqchips.iter_mut().zip(CHIPS) {
            *chip = recs.pod(tag)?;
            if chip.chip_id != id {
                return Err(recs.bad(
                    recs.required(tag)?.offset,
                    "irqchip record names the wrong chip",
                ));
            }
        }
        let b = recs.required(vm_tag::BALLOON)?;
        let n = b.payload.get(..8).map(le_u64);
        let balloon = match n {
            Some(n) if Some(b.payload.len() as u64 - 8) == n.checked_mul(24) => b.payload[8..]
                .chunks_exact(24)
                .map(|c| {
                    let region = le_u64(&c[..8]) as usize;
                    (region, PageRun::new(le_u64(&c[8..16]), le_u64(&c[16..])))
                })
                .collect(),
            _ => {
                return Err(recs.bad(
                    b.offset,
                    "balloon record length does not match its run count",
                ))
            }
        };
        Ok(Self {
            clock: recs.pod(vm_tag::CLOCK)?,
            irqchips,
            balloon,
        })
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// `struct kvm_fpu` in its UAPI layout (kvm-bindings gives it no byte view).
fn fpu_to_bytes(f: &kvm_fpu) -> Vec<u8> {
    let mut b = Vec::with_capacity(416);
    f.fpr.iter().for_each(|r| b.extend_from_slice(r));
    b.extend_from_slice(&f.fcw.to_le_bytes());
    b.extend_from_slice(&f.fsw.to_le_bytes());
    b.push(f.ftwx);
    b.push(f.pad1);
    b.extend_from_slice(&f.last_opcode.to_le_bytes());
    b.extend_from_slice(&f.last_ip.to_le_bytes());
    b.extend_from_slice(&f.last_dp.to_le_bytes());
    f.xmm.iter().for_each(|r| b.extend_from_slice(r));
    b.extend_from_slice(&f.mxcsr.to_le_bytes());
    b.extend_from_slice(&f.pad2.to_le_bytes());
    b
}

fn fpu_from_bytes(b: &[u8]) -> Option<kvm_fpu> {
    if b.len() != 416 {
        return None;
    }
    let mut f = kvm_fpu::default();
    for (i, r) in f.fpr.iter_mut().enumerate() {
        r.copy_from_slice(&b[i * 16..i * 16 + 16]);
    }
    f.fcw = u16::from_le_bytes([b[128], b[129]]);
    f.fsw = u16::from_le_bytes([b[130], b[131]]);
    f.ftwx = b[132];
    f.pad1 = b[133];
    f.last_opcode = u16::from_le_bytes([b[134], b[135]]);
    f.last_ip = le_u64(&b[136..]);
    f.last_dp = le_u64(&b[144..]);
    for (i, r) in f.xmm.iter_mut().enumerate() {
        r.copy_from_slice(&b[152 + i * 16..168 + i * 16]);
    }
    f.mxcsr = le_u32(&b[408..]);
    f.pad2 = le_u32(&b[412..]);
    Some(f)
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(magic: [u8; 4]) -> Self {
        let mut v = magic.to_vec();
        v.extend_from_slice(&[STATE_VERSION, 0, 0, 0]);
        Self(v)
    }

    fn record(&mut self, tag: u32, payload: &[u8]) {
        self.0.extend_from_slice(&tag.to_le_bytes());
        self.0
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.0.extend_from_slice(payload);
    }

    fn finish(self) -> Vec<u8> {
        self.0
    }
}

struct Record<'a> {
    offset: usize,
    payload: &'a [u8],
}

struct Records<'a> {
    blob: &'static str,
    /// Indexed by tag; tag 0 is unused.
    by_tag: Vec<Option<Record<'a>>>,
    end: usize,
}

fn parse<'a>(
    blob: &'static str,
    magic: [u8; 4],
    bytes: &'a [u8],
    max_tag: u32,
) -> Result<Records<'a>> {
    let bad = |offset: usize, detail: String| Error::StateFormat {
        blob,
        offset,
        detail,
    };
    if bytes.len() < 8 || bytes[..4] != magic {
        return Err(bad(
            0,
            format!("missing magic {:?}", String::from_utf8_lossy(&magic)),
        ));
    }
    if bytes[4] != STATE_VERSION {
        return Err(bad(4, format!("unsupported version {}", bytes[4])));
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(bad(5, "reserved header bytes are not zero".into()));
    }
    let mut by_tag: Vec<Option<Record<'a>>> = (0..=max_tag).map(|_| None).collect();
    let mut pos = 8;
    while pos < bytes.len() {
        let header = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| bad(pos, "truncated record header".into()))?;
        let tag = le_u32(&header[..4]);
        let len = le_u32(&header[4..]) as usize;
        let payload = bytes
            .get(pos + 8..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| bad(pos, format!("record {tag} claims {len} bytes past the end")))?;
        let slot = by_tag
            .get_mut(tag as usize)
            .filter(|_| tag != 0)
            .ok_or_else(|| bad(pos, format!("unknown record tag {tag}")))?;
        if slot.is_some() {
            return Err(bad(pos, format!("record tag {tag} repeated")));
        }
        *slot = Some(Record {
            offset: pos,
            payload,
        });
        pos += 8 + len;
    }
    Ok(Records {
        blob,
        by_tag,
        end: bytes.len(),
    })
}

impl<'a> Records<'a> {
    fn bad(&self, offset: usize, detail: &str) -> Error {
        Error::StateFormat {
            blob: self.blob,
            offset,
            detail: detail.into(),
        }
    }

    fn get(&self, tag: u32) -> Option<&Record<'a>> {
        self.by_tag.get(tag as usize).and_then(Option::as_ref)
    }

    fn required(&self, tag: u32) -> Result<&Record<'a>> {
        self.get(tag).ok_or_else(|| Error::StateFormat {
            blob: self.blob,
            offset: self.end,
            detail: format!("required record {tag} missing"),
        })
    }

    fn optional_pod<T: FromBytes + Immutable>(&self, tag: u32) -> Result<Option<T>> {
        self.get(tag)
            .map(|r| {
                T::read_from_bytes(r.payload).map_err(|_| Error::StateFormat {
                    blob: self.blob,
                    offset: r.offset,
                    detail: format!(
                        "record {tag} is {} bytes, expected {}",
                        r.payload.len(),
                        std::mem::size_of::<T>()
                    ),
                })
            })
            .transpose()
    }

    fn pod<T: FromBytes + Immutable>(&self, tag: u32) -> Result<T> {
        self.required(tag)?;
        self.optional_pod(tag)?
            .ok_or_else(|| self.bad(self.end, "record missing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VcpuState {
        let mut s = VcpuState {
            sregs: kvm_sregs {
                cr0: 0x8005_0033,
                efer: 0x501,
                ..Default::default()
            },
            regs: kvm_regs {
                rip: 0x4_0000,
                rax: 7,
                ..Default::default()
            },
            fpu: kvm_fpu {
                fcw: 0x37F,
                mxcsr: 0x1F80,
                last_ip: 9,
                ..Default::default()
            },
            xsave: Some(vec![0x5A; XSAVE_SIZE]),
            xcrs: None,
            lapic: kvm_lapic_state::default(),
            msrs: vec![MsrValue {
                index: 0xC000_0080,
                value: 0x501,
            }],
            vcpu_events: kvm_vcpu_events::default(),
            mp_state: kvm_mp_state { mp_state: 0 },
            debug_regs: kvm_debugregs::default(),
        };
        s.fpu.xmm[15][3] = 0xAB;
        s.lapic.regs[0x20] = 5;
        s
    }

    #[test]
    fn documented_record_sizes_hold() {
        use std::mem::size_of;
        assert_eq!(size_of::<kvm_sregs>(), 312);
        assert_eq!(size_of::<kvm_regs>(), 144);
        assert_eq!(fpu_to_bytes(&kvm_fpu::default()).len(), 416);
        assert_eq!(XSAVE_SIZE, 4096);
        assert_eq!(size_of::<kvm_xcrs>(), 392);
        assert_eq!(size_of::<kvm_lapic_state>(), 1024);
        assert_eq!(size_of::<kvm_msr_entry>(), 16);
        assert_eq!(size_of::<kvm_vcpu_events>(), 64);
        assert_eq!(size_of::<kvm_mp_state>(), 4);
        assert_eq!(size_of::<kvm_debugregs>(), 128);
        assert_eq!(size_of::<kvm_clock_data>(), 48);
        assert_eq!(size_of::<kvm_irqchip>(), 520);
    }

    #[test]
    fn vcpu_blob_round_trips_and_is_canonical() {
        let s = sample();
        let b = s.to_bytes();
        assert_eq!(&b[..5], b"RSVC\x01");
        let back = VcpuState::from_bytes(&b).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.to_bytes(), b);
    }

    #[test]
    fn vcpu_blob_rejects_every_truncation_and_corruption() {
        let b = sample().to_bytes();
        for cut in 0..b.len() {
            assert!(
                VcpuState::from_bytes(&b[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        let mut v = b.clone();
        v[4] = 2;
        assert!(VcpuState::from_bytes(&v).is_err());
        let mut v = b.clone();
        v.extend_from_slice(&99u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            VcpuState::from_bytes(&v),
            Err(Error::StateFormat { .. })
        ));
        let mut v = b.clone();
        v[8..12].copy_from_slice(&vcpu_tag::REGS.to_le_bytes()); // sregs record retagged as a 2nd regs
        assert!(VcpuState::from_bytes(&v).is_err());
    }

    #[test]
    fn vm_blob_round_trips() {
        let mut irqchips = [kvm_irqchip::default(); 3];
        for (c, (id, _)) in irqchips.iter_mut().zip(CHIPS) {
            c.chip_id = id;
        }
        let s = VmState {
            clock: kvm_clock_data {
                clock: 123_456,
                ..Default::default()
            },
            irqchips,
            balloon: vec![(1, PageRun::new(10, 20))],
        };
        let b = s.to_bytes();
        let back = VmState::from_bytes(&b).unwrap();
        assert_eq!(back.clock.clock, 123_456);
        assert_eq!(back.balloon, s.balloon);
        assert_eq!(back.to_bytes(), b);
        for cut in 0..b.len() {
            assert!(
                VmState::from_bytes(&b[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
    }
}
