//! Starting the image files' writeback while the stream is still decoded: a thread syncs a
//! block's data (`fdatasync`) each time [`SYNC_EVERY`] more bytes were written to it, so the
//! final `fsync` of each file only waits for the tail. Best effort: an error here is left for
//! the final `fsync`, which reports it.

use std::fs::File;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// Bytes written to a block between two early syncs of it.
pub const SYNC_EVERY: u64 = 16 << 20;

/// The writer's handle on the syncing thread.
pub struct EarlySync {
    tx: Option<Sender<usize>>,
    thread: Option<JoinHandle<()>>,
    /// Bytes written to each block since its last sync was asked for.
    pending: Vec<u64>,
}

impl EarlySync {
    /// Starts the thread over `files` (one handle per block, in block order).
    pub fn start(files: Vec<File>) -> Result<Self> {
        let (tx, rx) = channel::<usize>();
        let blocks = files.len();
        let thread = std::thread::Builder::new()
            .name("extract-sync".into())
            .spawn(move || {
                for b in rx {
                    if let Some(f) = files.get(b) {
                        let _ = f.sync_data();
                    }
                }
            })
            .context("cannot start the writeback thread")?;
        Ok(EarlySync {
            tx: Some(tx),
            thread: Some(thread),
            pending: vec![0; blocks],
        })
    }

    /// Counts `len` bytes written to block `b`; asks for a sync past [`SYNC_EVERY`].
    pub fn wrote(&mut self, b: usize, len: u64) {
        let Some(p) = self.pending.get_mut(b) else {
            return;
        };
        *p += len;
        if *p >= SYNC_EVERY {
            *p = 0;
            if let Some(tx) = &self.tx {
                let _ = tx.send(b);
            }
        }
    }

    /// Waits for the syncs asked for.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EarlySync {
    fn drop(&mut self) {
        // Closing the channel ends the thread; an error path does not wait for it.
        self.tx = None;
    }
}
