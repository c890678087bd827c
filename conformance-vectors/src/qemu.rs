//! Driving a real QEMU from tests: spawn, talk QMP over a unix socket, wait for migrations.
//!
//! Tests that need QEMU call [`qemu_or_skip`] (QEMU 7.2) or [`version_or_skip`] (any
//! [`QemuVersion`]): they return `None` (and print why) when that QEMU is missing, unless
//! `RAMSTREAM_REQUIRE_QEMU=1`, in which case a missing QEMU is a test failure.
//!
//! The versions are installed by `conformance-vectors/scripts/qemu-versions.sh`, which writes
//! one wrapper command per version, `qemu-7.2`, `qemu-10.0`, `qemu-11.1`, into
//! `$RAMSTREAM_QEMU_DIR/bin` (default `/opt/ramstream-qemu/bin`); QEMU 7.2 is also found as
//! Debian 12's `qemu-system-x86_64` on the `PATH`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Debian 12's QEMU 7.2 command, used for 7.2 when no wrapper is installed.
pub const QEMU: &str = "qemu-system-x86_64";

/// The variable naming the directory `scripts/qemu-versions.sh` installs into.
pub const QEMU_DIR_VAR: &str = "RAMSTREAM_QEMU_DIR";

/// The default of [`QEMU_DIR_VAR`].
pub const DEFAULT_QEMU_DIR: &str = "/opt/ramstream-qemu";

/// A QEMU release ramstream is tested against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QemuVersion {
    /// 7.2 (Debian 12).
    V7_2,
    /// 10.0 (Debian 12 backports, Debian 13).
    V10_0,
    /// 11.1 (Debian unstable).
    V11_1,
}

impl QemuVersion {
    /// Every tested version, oldest first.
    pub const ALL: [QemuVersion; 3] = [QemuVersion::V7_2, QemuVersion::V10_0, QemuVersion::V11_1];

    /// `"7.2"`, `"10.0"`, `"11.1"`.
    pub const fn label(self) -> &'static str {
        match self {
            QemuVersion::V7_2 => "7.2",
            QemuVersion::V10_0 => "10.0",
            QemuVersion::V11_1 => "11.1",
        }
    }

    /// The version a label names.
    pub fn from_label(label: &str) -> Option<QemuVersion> {
        QemuVersion::ALL.into_iter().find(|v| v.label() == label)
    }

    /// This version's newest i440FX machine type, e.g. `pc-i440fx-10.0`.
    pub fn pc_machine(self) -> String {
        format!("pc-i440fx-{}", self.label())
    }

    /// This version's newest Q35 machine type, e.g. `pc-q35-10.0`.
    pub fn q35_machine(self) -> String {
        format!("pc-q35-{}", self.label())
    }

    /// The name of this version's recording of the vector `base` (`scripts/record.py`): 7.2's
    /// carry the plain name (`idle-noos`), the others their version first (`10.0-idle-noos`).
    pub fn vector_name(self, base: &str) -> String {
        match self {
            QemuVersion::V7_2 => base.to_string(),
            v => format!("{}-{base}", v.label()),
        }
    }

    /// The command that runs this version: `$RAMSTREAM_QEMU_DIR/bin/qemu-LABEL`, or for 7.2
    /// without that wrapper, `qemu-system-x86_64` on the `PATH`.
    pub fn command(self) -> PathBuf {
        let dir = std::env::var_os(QEMU_DIR_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_QEMU_DIR));
        let wrapper = dir.join("bin").join(format!("qemu-{}", self.label()));
        if self == QemuVersion::V7_2 && !wrapper.is_file() {
            return PathBuf::from(QEMU);
        }
        wrapper
    }

    /// Whether [`QemuVersion::command`] runs and reports this version.
    pub fn installed(self) -> bool {
        Command::new(self.command())
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout)
                        .starts_with(&format!("QEMU emulator version {}.", self.label()))
            })
            .unwrap_or(false)
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QEMU {}", self.label())
    }
}

/// Returns the command running `version` if it is installed, else prints why the test is
/// skipped and returns `None`; with `RAMSTREAM_REQUIRE_QEMU=1` a missing version panics.
pub fn version_or_skip(test: &str, version: QemuVersion) -> Option<PathBuf> {
    if version.installed() {
        return Some(version.command());
    }
    let why = format!(
        "{test}: {version} is not installed at {} (run conformance-vectors/scripts/qemu-versions.sh {})",
        version.command().display(),
        version.label()
    );
    if std::env::var("RAMSTREAM_REQUIRE_QEMU").as_deref() == Ok("1") {
        panic!("{why}, and RAMSTREAM_REQUIRE_QEMU=1");
    }
    eprintln!("skipping {why}");
    None
}

/// Returns the QEMU binary name if it runs, else prints why the test is skipped and returns
/// `None`; with `RAMSTREAM_REQUIRE_QEMU=1` a missing QEMU panics instead.
pub fn qemu_or_skip(test: &str) -> Option<&'static str> {
    if QemuVersion::V7_2.installed() {
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

/// Whether a test can use KVM, given what trying it gave (`probe`: opening /dev/kvm, or
/// creating a VM). When it cannot, prints why the test is skipped and returns false; with
/// `RAMSTREAM_REQUIRE_KVM=1` (CI) it panics instead.
pub fn kvm_or_skip<E: std::fmt::Display>(probe: Result<(), E>) -> bool {
    let Err(e) = probe else {
        return true;
    };
    if std::env::var("RAMSTREAM_REQUIRE_KVM").as_deref() == Ok("1") {
        panic!("RAMSTREAM_REQUIRE_KVM=1 but /dev/kvm is not usable: {e}");
    }
    eprintln!("skipping: /dev/kvm not usable: {e}");
    false
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
    /// Spawns QEMU 7.2 with `args` in `cwd`, adding a QMP socket.
    pub fn spawn(args: &[String], cwd: &Path) -> Result<Qemu, String> {
        Qemu::spawn_version(QemuVersion::V7_2, args, cwd)
    }

    /// Spawns `version` with `args` in `cwd`, adding a QMP socket.
    pub fn spawn_version(
        version: QemuVersion,
        args: &[String],
        cwd: &Path,
    ) -> Result<Qemu, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let sock: PathBuf = dir.path().join("qmp.sock");
        let qemu = version.command();
        let child = Command::new(&qemu)
            .args(args)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
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
    load_and_resave_with(QemuVersion::V7_2, args, cwd, stream)
}

/// [`load_and_resave`] with a given QEMU version.
pub fn load_and_resave_with(
    version: QemuVersion,
    args: &[String],
    cwd: &Path,
    stream: &Path,
) -> Result<Vec<u8>, String> {
    let mut args = adapt_accel(args);
    args.push("-incoming".into());
    args.push("defer".into());
    let mut q = Qemu::spawn_version(version, &args, cwd)?;
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
