//! `ramstream extract` of a plain single stream, and `receive --extract` of one: RAM goes
//! straight into the output files ([`FileImage`]) while the stream is decoded, in a scratch
//! directory beside `--out` that is renamed at the end (removed on failure). A stream file's
//! page bodies are written from the mapped input ([`Direct::observe`]); a socket's are copied
//! into the pending write, since its buffer is reused ([`Direct::observe_copied`]).
//!
//! Not on this path, and rebuilt in memory as before ([`Collector`]): multifd migrations (the
//! channels' pages are applied by other threads, [`crate::multifd`]; a receive leaves the
//! files when channels show up at the first sync point), mapped-ram files (their pages are
//! read from file regions when the MEM_SIZE arrives), and a stream whose second MEM_SIZE
//! changes the block list (the pages written so far are read back into memory first).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ramstream_codec::mapped_ram::block_views;
use ramstream_codec::{Error, ErrorKind, Event, PageStore, RecordKind};
use ramstream_migrate::GuestRam;

use super::files::FileImage;
use super::{scratch_dir, BlockEntry, Collector};

/// The direct path's state: the scratch directory, and the files once a MEM_SIZE named them.
pub struct Direct<'a> {
    scratch: PathBuf,
    hash: bool,
    files: Option<FileImage<'a>>,
    /// Renamed into place: the scratch directory is no longer removed on drop.
    done: bool,
}

/// What [`Direct::observe`] did with an event.
pub enum Taken {
    /// The event was RAM and is written: the collector must not see it.
    Written,
    /// The collector takes the event too (MEM_SIZE) or alone (everything else).
    Collector,
    /// The stream does not fit the direct path (mapped-ram, a changed block list): the
    /// pages so far are in the collector's image; drop this and go on in memory.
    Leave,
}

impl<'a> Direct<'a> {
    /// Refuses a non-empty `out` and makes the scratch directory; `hash`: the manifest
    /// carries each block's sha256.
    pub fn new(out: &Path, hash: bool) -> Result<Self> {
        if out.exists() && fs::read_dir(out)?.next().is_some() {
            bail!("{} exists and is not empty", out.display());
        }
        let scratch = scratch_dir(out)?;
        fs::create_dir_all(scratch.join("devices"))
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        Ok(Direct {
            scratch,
            hash,
            files: None,
            done: false,
        })
    }

    /// Applies `event` (at stream offset `at`) to the files when it is RAM. `input` is the
    /// whole stream and `file_offset` its first byte's offset in the file (mapped-ram).
    pub fn observe(
        &mut self,
        c: &mut Collector,
        at: u64,
        event: &Event<'a>,
        input: &[u8],
        file_offset: u64,
    ) -> Result<Taken> {
        match event {
            Event::Page(p) => {
                self.files()?
                    .page(p.addr, p.data)
                    .map_err(|e| in_record(e, at, RecordKind::Page))?;
                Ok(Taken::Written)
            }
            Event::MemSize(ms)
                if self.files.is_none()
                    && !block_views(input, file_offset, ms, c.image.page_size())?.is_empty() =>
            {
                Ok(Taken::Leave)
            }
            _ => self.observe_rest(c, at, event),
        }
    }

    /// [`Direct::observe`] for an input read from a socket, whose buffer is reused after each
    /// record: page bodies are copied into the pending write. A socket carries no
    /// mapped-ram regions.
    pub fn observe_copied(
        &mut self,
        c: &mut Collector,
        at: u64,
        event: &Event<'_>,
    ) -> Result<Taken> {
        match event {
            Event::Page(p) => {
                self.files()?
                    .page_copied(p.addr, p.data)
                    .map_err(|e| in_record(e, at, RecordKind::Page))?;
                Ok(Taken::Written)
            }
            _ => self.observe_rest(c, at, event),
        }
    }

    /// Every event but PAGE: a MEM_SIZE makes the files (or, changing the block list, leaves
    /// them), ZERO and XBZRLE records are written.
    fn observe_rest(&mut self, c: &mut Collector, at: u64, event: &Event<'_>) -> Result<Taken> {
        match event {
            Event::MemSize(ms) => {
                match self.files.take() {
                    Some(f) if f.same_blocks(&ms.blocks) => self.files = Some(f),
                    Some(f) => {
                        read_back_into(f, c)?;
                        return Ok(Taken::Leave);
                    }
                    None => {
                        self.files = Some(FileImage::create(
                            &self.scratch,
                            c.image.page_size(),
                            &ms.blocks,
                            self.hash,
                        )?);
                    }
                }
                Ok(Taken::Collector)
            }
            Event::Zero(z) => {
                self.files()?
                    .fill(z.addr, z.fill)
                    .map_err(|e| in_record(e, at, RecordKind::Zero))?;
                Ok(Taken::Written)
            }
            Event::Xbzrle(x) => {
                self.files()?.xbzrle(x.addr, x.delta, at)?;
                Ok(Taken::Written)
            }
            Event::MultifdFlush(_) => Err(Error::new(at, ErrorKind::PagesOnMultifdChannels)
                .in_record(RecordKind::MultifdFlush)
                .into()),
            _ => Ok(Taken::Collector),
        }
    }

    /// Gives up the files: the pages written so far go into the collector's RAM (its
    /// shared image when it has one), which takes the stream from here on; the scratch
    /// directory is removed.
    pub fn leave(mut self, c: &mut Collector) -> Result<()> {
        match self.files.take() {
            Some(f) => read_back_into(f, c),
            None => Ok(()),
        }
    }

    fn files(&mut self) -> Result<&mut FileImage<'a>> {
        // The decoder refuses a page record before any MEM_SIZE (no block is known).
        self.files
            .as_mut()
            .context("a page record before the MEM_SIZE record")
    }

    /// Syncs the image files, writes the device sections, the VMDESCRIPTION and the manifest
    /// beside them, and renames the directory to `out`. Returns the split check recorded.
    pub fn finish(
        mut self,
        c: &Collector,
        out: &Path,
    ) -> Result<Option<ramstream_codec::vmdesc::SplitCheck>> {
        let (blocks, sums) = match self.files.take() {
            Some(f) => f.finish()?,
            None => (Vec::new(), self.hash.then(Vec::new)),
        };
        let entries = blocks
            .into_iter()
            .map(|b| BlockEntry {
                idstr: b.idstr,
                used_length: b.used_length,
                file: b.fname,
                sha256: None,
            })
            .collect();
        let splits = c.write_rest(&self.scratch, entries, sums)?;
        if out.exists() {
            fs::remove_dir(out)?;
        }
        fs::rename(&self.scratch, out)
            .with_context(|| format!("cannot rename into {}", out.display()))?;
        self.done = true;
        Ok(splits)
    }
}

/// The pages `f` holds, read back into `c`'s RAM: its shared image when it has one (the
/// channels of a multifd migration write there), else its own.
fn read_back_into(f: FileImage<'_>, c: &mut Collector) -> Result<()> {
    match &c.shared {
        Some(shared) => f.read_back(|addr, page| Ok(shared.write_page(addr, page)?)),
        None => {
            let image = &mut c.image;
            f.read_back(|addr, page| {
                image.page_mut(addr).copy_from_slice(page);
                Ok(())
            })
        }
    }
}

/// `e` with the record it happened in.
fn in_record(e: anyhow::Error, at: u64, kind: RecordKind) -> anyhow::Error {
    e.context(format!("at offset {at:#x}: {kind:?} record"))
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.files = None;
            let _ = fs::remove_dir_all(&self.scratch);
        }
    }
}
