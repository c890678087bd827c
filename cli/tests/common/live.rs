//! Running `ramstream receive` / `proxy` against live QEMUs: the listening `ramstream`
//! child, QEMU's incoming port read back, the Linux guest source and the migration loop.
//! Shared by `tests/qemu_interop.rs` and `tests/multifd_interop.rs`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ramstream_conformance_vectors::qemu::{LinuxGuest, Qemu};
use ramstream_conformance_vectors::Vector;
use serde_json::{json, Value};

/// What `ramstream receive` and `ramstream proxy` print on stderr, followed by the address
/// they bound, once they listen (cli/src/addr.rs).
pub const LISTENING: &str = "ramstream: listening on ";

/// Has a QEMU started with `-incoming defer` listen on `tcp:127.0.0.1:0` and returns the
/// address it bound, as `tcp:127.0.0.1:PORT` (QEMU 7.2's query-migrate lists it under
/// `socket-address`). No port is chosen in advance, so none can be taken in between.
pub fn qemu_incoming_on_a_free_port(q: &mut Qemu) -> String {
    q.execute("migrate-incoming", json!({"uri": "tcp:127.0.0.1:0"}))
        .unwrap();
    let r = q.execute("query-migrate", json!({})).unwrap();
    let bound = r["socket-address"]
        .as_array()
        .and_then(|a| a.first())
        .unwrap_or_else(|| panic!("query-migrate lists no socket-address: {r}"));
    assert_eq!(bound["type"], "inet", "{r}");
    let (host, port) = (
        bound["host"].as_str().unwrap(),
        bound["port"].as_str().unwrap(),
    );
    assert_ne!(port, "0", "{r}");
    format!("tcp:{host}:{port}")
}

/// A running `ramstream` whose stderr lines are echoed and kept.
pub struct Ramstream {
    pub child: Child,
    /// The address it listens on, from its listening line (`tcp:127.0.0.1:43817`).
    pub addr: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub drain: JoinHandle<()>,
}

/// How a `ramstream` run ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<String>,
}

impl Ramstream {
    /// `HOST:PORT` of the TCP address it listens on.
    pub fn tcp(&self) -> &str {
        self.addr
            .strip_prefix("tcp:")
            .unwrap_or_else(|| panic!("not listening on TCP: {}", self.addr))
    }

    pub fn wait(mut self) -> Finished {
        let mut stdout = Vec::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut stdout)
            .unwrap();
        let status = self.child.wait().unwrap();
        self.drain.join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Finished {
    /// The one `ramstream: error:` line; panics unless there is exactly one.
    pub fn error_line(&self) -> &str {
        let errors: Vec<&String> = self
            .stderr
            .iter()
            .filter(|l| l.starts_with("ramstream: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "stderr: {:?}", self.stderr);
        errors[0]
    }
}

/// Starts `ramstream ARGS` (whose listen address has port 0) and waits until it says which
/// address it bound. Its stderr is read by a thread the whole time, so the child never
/// blocks on a full pipe and every line is kept for the test's assertions.
pub fn spawn_listening(args: &[String]) -> Ramstream {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ramstream"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&kept);
    let (bound_tx, bound_rx) = mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut bound_tx = Some(bound_tx);
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {l}");
            if let Some(addr) = l.strip_prefix(LISTENING) {
                if let Some(tx) = bound_tx.take() {
                    let _ = tx.send(addr.to_string());
                }
            }
            sink.lock().unwrap().push(l);
        }
    });
    let addr = match bound_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(e) => {
            if e == RecvTimeoutError::Timeout {
                let _ = child.kill();
            }
            let status = child.wait().unwrap();
            drain.join().unwrap();
            panic!(
                "ramstream {args:?} never said it was listening ({status}); stderr: {:?}",
                kept.lock().unwrap()
            );
        }
    };
    Ramstream {
        child,
        addr,
        stderr: kept,
        drain,
    }
}

/// Turns `caps` on and caps the bandwidth at `bandwidth` bytes/s with a 1 ms downtime
/// limit, so precopy keeps iterating until [`migrate`] relaxes both.
pub fn prepare(q: &mut Qemu, caps: &[&str], bandwidth: u64) {
    let caps: Vec<Value> = caps
        .iter()
        .map(|c| json!({"capability": c, "state": true}))
        .collect();
    q.execute("migrate-set-capabilities", json!({ "capabilities": caps }))
        .unwrap();
    q.execute(
        "migrate-set-parameters",
        json!({"max-bandwidth": bandwidth, "downtime-limit": 1}),
    )
    .unwrap();
}

/// A source QEMU booting the Linux guest under TCG in `cwd` (its serial log goes there);
/// returns once the guest's init is dirtying memory.
pub fn linux_source(g: &LinuxGuest, v: &Vector, cwd: &Path, caps: &[&str], bandwidth: u64) -> Qemu {
    let mut q = Qemu::spawn_version(
        v.qemu()
            .unwrap_or_else(|| panic!("{}: not recorded from QEMU", v.manifest.name)),
        &g.fill(&v.manifest.source_args),
        cwd,
    )
    .unwrap();
    let serial = cwd.join("serial.log");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let log = std::fs::read(&serial).unwrap_or_default();
        if log.windows(18).any(|w| w == b"RAMSTREAM-DIRTYING") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Linux guest never started dirtying memory; serial log: {}",
            String::from_utf8_lossy(&log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    prepare(&mut q, caps, bandwidth);
    std::thread::sleep(Duration::from_millis(500));
    q
}

/// Migrates `src` to `uri`. Once `ready(query-migrate, elapsed)` holds, lifts the bandwidth
/// cap and downtime limit so it converges (fails after four minutes). Returns the final
/// query-migrate (status `completed`).
pub fn migrate(src: &mut Qemu, uri: &str, ready: impl Fn(&Value, Duration) -> bool) -> Value {
    src.execute("migrate", json!({"uri": uri})).unwrap();
    let start = Instant::now();
    let mut relaxed = false;
    loop {
        let r = src.execute("query-migrate", json!({})).unwrap();
        match r["status"].as_str() {
            Some("completed") => return r,
            Some("failed") | Some("cancelled") => panic!("source migration failed: {r}"),
            _ => {}
        }
        if std::env::var_os("RAMSTREAM_TRACE_MIGRATE").is_some() {
            eprintln!(
                "  {:?}: {} syncs, {} xbzrle pages, {} remaining, {} transferred",
                start.elapsed(),
                dirty_syncs(&r),
                xbzrle_pages(&r),
                r["ram"]["remaining"],
                r["ram"]["transferred"]
            );
        }
        // Relaxed only once the test's condition holds, never on a timer: a loaded machine
        // takes longer to reach it, and a migration finished before it would not test it.
        if !relaxed && ready(&r, start.elapsed()) {
            src.execute(
                "migrate-set-parameters",
                json!({"max-bandwidth": 1_000_000_000u64, "downtime-limit": 2000}),
            )
            .unwrap();
            relaxed = true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "migration never completed (ready condition met: {relaxed}): {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn xbzrle_pages(q: &Value) -> u64 {
    q["xbzrle-cache"]["pages"].as_u64().unwrap_or(0)
}

pub fn dirty_syncs(q: &Value) -> u64 {
    q["ram"]["dirty-sync-count"].as_u64().unwrap_or(0)
}
