//! Driving a real QEMU from tests: spawn, talk QMP over a unix socket, wait for migrations.
//!
//! Tests that need QEMU call [`qemu_or_skip`]: it returns `None` (and prints why) when
//! `qemu-system-x86_64` is missing, unless `RAMSTREAM_REQUIRE_QEMU=1`, in which case a
//! missing QEMU is a test failure.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The QEMU binary tests use.
pub const QEMU: &str = "qemu-system-x86_64";

/// Returns the QEMU binary name if it runs, else prints why the test is skipped and returns
/// `None`; with `RAMSTREAM_REQUIRE_QEMU=1` a missing QEMU panics instead.
pub fn qemu_or_skip(test: &str) -> Option<&'static str> {
    let ok = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(QEMU);
    }
    let why = format!("{test}: {QEMU} is not installed (apt-get install -y qemu-system-x86)");
    if std::env::var("RAMSTREAM_REQUIRE_QEMU").as_deref() == Ok("1") {
        panic!("{why}, and RAMSTREAM_REQUIRE_QEMU=1");
    }
    eprintln!("skipping {why}");
    None
}

/// Whether /dev/kvm can be opened.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Replaces `accel=kvm` / `-accel kvm` with TCG when /dev/kvm is not usable.
pub fn adapt_accel(args: &[String]) -> Vec<String> {
    if kvm_usable() {
        return args.to_vec();
    }
    args.iter()
        .map(|a| a.replace("accel=kvm", "accel=tcg"))
        .map(|a| if a == "kvm" { "tcg".to_string() } else { a })
        .collect()
}

/// A running QEMU with a QMP connection; killed on drop.
pub struct Qemu {
    child: Child,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    _dir: tempfile::TempDir,
}

impl Qemu {
    /// Spawns QEMU with `args` in `cwd`, adding a QMP socket and `-display none`.
    pub fn spawn(args: &[String], cwd: &Path) -> Result<Qemu, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let sock: PathBuf = dir.path().join("qmp.sock");
        let child = Command::new(QEMU)
            .args(args)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(format!("QMP socket never appeared: {e}")),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut q = Qemu {
            child,
            reader: BufReader::new(stream),
            writer,
            _dir: dir,
        };
        q.read_msg()?; // greeting
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read_msg(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("QEMU closed QMP: {}", self.stderr_tail()));
        }
        serde_json::from_str(&line).map_err(|e| format!("bad QMP line {line:?}: {e}"))
    }

    /// Runs a QMP command and returns its `return` value.
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let msg = json!({"execute": cmd, "arguments": args});
        writeln!(self.writer, "{msg}").map_err(|e| e.to_string())?;
        loop {
            let v = self.read_msg()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("{cmd}: {e}"));
            }
        }
    }

    /// Polls `query-migrate` until the status is `completed` or `failed`.
    pub fn wait_migration(&mut self, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.execute("query-migrate", json!({}))?;
            match r.get("status").and_then(|s| s.as_str()) {
                Some("completed") => return Ok(r),
                Some("failed") | Some("cancelled") => {
                    return Err(format!("migration {r}: {}", self.stderr_tail()))
                }
                _ if Instant::now() > deadline => return Err(format!("timed out: {r}")),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn stderr_tail(&mut self) -> String {
        let _ = self.child.kill();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut s);
        }
        s.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    }

    /// Asks QEMU to quit and waits for it.
    pub fn quit(mut self) {
        let _ = self.execute("quit", json!({}));
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loads `stream` into a fresh QEMU started with `args` in `cwd`, then has that QEMU save
/// its state to a file and returns those bytes: what a real destination holds after loading.
pub fn load_and_resave(args: &[String], cwd: &Path, stream: &Path) -> Result<Vec<u8>, String> {
    let mut args = adapt_accel(args);
    args.push("-incoming".into());
    args.push("defer".into());
    let mut q = Qemu::spawn(&args, cwd)?;
    q.execute(
        "migrate-incoming",
        json!({"uri": format!("exec:cat '{}'", stream.display())}),
    )?;
    q.wait_migration(Duration::from_secs(120))?;
    let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    q.execute(
        "migrate",
        json!({"uri": format!("exec:cat > '{}'", out.path().display())}),
    )?;
    q.wait_migration(Duration::from_secs(120))?;
    q.quit();
    std::fs::read(out.path()).map_err(|e| e.to_string())
}

/// The Linux guest's kernel and initramfs (built by `scripts/guests.py` into `guests/build/`).
pub struct LinuxGuest {
    /// The Debian kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The busybox initramfs whose /init dirties memory with `rsmode=dirty`.
    pub initrd: PathBuf,
}

impl LinuxGuest {
    /// `args` with `{KERNEL}` and `{INITRD}` (as in the vectors' manifests) filled in.
    pub fn fill(&self, args: &[String]) -> Vec<String> {
        args.iter()
            .map(|a| {
                a.replace("{KERNEL}", &self.kernel.display().to_string())
                    .replace("{INITRD}", &self.initrd.display().to_string())
            })
            .collect()
    }
}

/// Returns the Linux guest, building it with `python3 scripts/guests.py` (about 5 s: two
/// `apt-get download`s) when `guests/build/` lacks it. If it cannot be had, prints why the
/// test is skipped and returns `None`; with `RAMSTREAM_REQUIRE_QEMU=1` that panics instead.
pub fn linux_guest_or_skip(test: &str) -> Option<LinuxGuest> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = root.join("guests").join("build");
    let guest = LinuxGuest {
        kernel: build.join("vmlinuz"),
        initrd: build.join("initramfs.cpio.gz"),
    };
    let present = |g: &LinuxGuest| g.kernel.is_file() && g.initrd.is_file();
    if present(&guest) {
        return Some(guest);
    }
    let built = Command::new("python3")
        .arg(root.join("scripts").join("guests.py"))
        .stdin(Stdio::null())
        .output();
    let why = match built {
        Ok(o) if o.status.success() && present(&guest) => return Some(guest),
        Ok(o) => format!(
            "building the Linux guest failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => format!("cannot run python3 to build the Linux guest: {e}"),
    };
    let why = format!("{test}: {why} (run python3 conformance-vectors/scripts/guests.py)");
    if std::env::var("RAMSTREAM_REQUIRE_QEMU").as_deref() == Ok("1") {
        panic!("{why}, and RAMSTREAM_REQUIRE_QEMU=1");
    }
    eprintln!("skipping {why}");
    None
}
