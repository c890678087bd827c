//! Noticing a source that opens more than one connection (QEMU's multifd side channels),
//! which a single-connection receiver or proxy cannot serve.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use ramstream_spec::stream::MULTIFD_CHANNEL_MAGIC;

use crate::addr::{Duplex, Listener};

/// Watches the listener after the first connection. QEMU's multifd capability opens more
/// connections to the same address; the first such connection is described (by its multifd
/// magic when it has one) and the main connection is shut down, so a read blocked on it
/// returns and the caller reports the side channel instead of a short stream.
pub struct SideChannels {
    found: Arc<Mutex<Option<String>>>,
}

impl SideChannels {
    /// Starts watching `listener` in the background; `main` is shut down when a second
    /// connection arrives.
    pub fn watch(listener: Listener, main: Box<dyn Duplex>) -> SideChannels {
        let found = Arc::new(Mutex::new(None));
        let report = Arc::clone(&found);
        std::thread::spawn(move || {
            let Ok((mut extra, peer)) = listener.accept() else {
                return;
            };
            // QEMU writes a channel's magic as soon as it connects.
            let _ = extra.set_read_timeout(Some(Duration::from_secs(5)));
            let mut word = [0u8; 4];
            let what = match extra.read_exact(&mut word) {
                Ok(()) if u32::from_be_bytes(word) == MULTIFD_CHANNEL_MAGIC => format!(
                    "a second connection from {peer} is a multifd channel (magic {MULTIFD_CHANNEL_MAGIC:#010x}): the source uses capability multifd, whose pages travel on other connections; ramstream takes one connection only (turn multifd off)"
                ),
                Ok(()) => format!(
                    "a second connection from {peer} (first bytes {}): ramstream takes one connection only",
                    hex(&word)
                ),
                Err(_) => format!(
                    "a second connection from {peer}: ramstream takes one connection only (is capability multifd on?)"
                ),
            };
            *report.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
            main.shutdown_both();
        });
        SideChannels { found }
    }

    /// Fails, naming the stream offset, once a second connection has been seen.
    pub fn check(&self, offset: u64) -> Result<()> {
        match self
            .found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
        {
            Some(what) => bail!("at offset {offset:#x}: {what}"),
            None => Ok(()),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
