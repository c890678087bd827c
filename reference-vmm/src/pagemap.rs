//! Which pages of guest memory the host never backed, from `/proc/self/pagemap`: one 64-bit
//! entry per host page of this process, bit 63 "present in RAM" and bit 62 "swapped out"
//! (the kernel's `Documentation/admin-guide/mm/pagemap.rst`). A page of an anonymous private
//! mapping that is neither was never written (or was discarded with `MADV_DONTNEED`) and
//! reads as zero, so a sender can send it as a ZERO record without reading it, and without
//! the page fault a read would take.

#![forbid(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bit 63 of a pagemap entry: the page is present in RAM.
const PRESENT: u64 = 1 << 63;
/// Bit 62: the page is swapped out.
const SWAPPED: u64 = 1 << 62;
/// The host page size the entries count in (x86-64: 4 KiB, the target page size too).
pub(crate) const HOST_PAGE: u64 = 4096;
/// Entries read per `pread`.
const CHUNK: usize = 512;

/// This process's `/proc/self/pagemap`, open for reading.
#[derive(Debug)]
pub(crate) struct Pagemap {
    file: File,
}

impl Pagemap {
    /// Opens `/proc/self/pagemap`; `None` where there is none (no procfs, or a kernel
    /// without it): every page is then unknown.
    pub(crate) fn open() -> Option<Self> {
        File::open("/proc/self/pagemap")
            .ok()
            .map(|file| Pagemap { file })
    }

    /// Sets `unbacked[i]` for the host page at virtual address `hva + i * HOST_PAGE` that is
    /// neither present nor swapped out, and clears it for the others. `hva` must be page
    /// aligned and the pages an anonymous private mapping for "unbacked" to mean "zero".
    /// On a failed read every page is reported backed (unknown), never unbacked.
    pub(crate) fn unbacked(&self, hva: u64, unbacked: &mut [bool]) {
        let mut entries = [0u8; CHUNK * 8];
        let mut done = 0usize;
        while done < unbacked.len() {
            let n = (unbacked.len() - done).min(CHUNK);
            let page = hva / HOST_PAGE + done as u64;
            let bytes = &mut entries[..n * 8];
            if self.file.read_exact_at(bytes, page * 8).is_err() {
                unbacked.fill(false);
                return;
            }
            for (flag, e) in unbacked[done..done + n]
                .iter_mut()
                .zip(bytes.chunks_exact(8))
            {
                let mut word = [0u8; 8];
                word.copy_from_slice(e);
                *flag = u64::from_ne_bytes(word) & (PRESENT | SWAPPED) == 0;
            }
            done += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_anonymous_pages_are_unbacked_and_written_ones_are_not() {
        let Some(map) = Pagemap::open() else {
            println!("skipped: no /proc/self/pagemap here");
            return;
        };
        // A fresh zeroed allocation large enough to be a mapping of its own; one page
        // written in its first 2 MiB, nothing in the next 2 MiB (a transparent huge page
        // may back the whole first 2 MiB once one byte of it is written).
        const HUGE: u64 = 2 << 20;
        let mut buf = vec![0u8; 8 << 20];
        let base = buf.as_ptr() as u64;
        let start = base.next_multiple_of(HUGE);
        let at = (start - base) as usize;
        buf[at + 3 * HOST_PAGE as usize] = 1;
        let mut unbacked = [true; 64];
        map.unbacked(start, &mut unbacked);
        assert!(!unbacked[3], "a written page is backed");
        map.unbacked(start + HUGE, &mut unbacked);
        assert_eq!(unbacked, [true; 64], "untouched pages are unbacked");
        std::hint::black_box(&buf);
    }
}
