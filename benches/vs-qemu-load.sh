#!/usr/bin/env bash
# Loader vs QEMU (issue #15): loads one recorded QEMU 7.2 stream
#   - into QEMU 7.2 itself (-incoming defer, then QMP migrate-incoming exec:cat FILE; time from
#     the command to status "completed"; destination built from the vector's manifest),
#   - with `ramstream extract FILE --out DIR`, and with `--no-sha256` (no manifest hashes),
#   - with `ramstream receive --listen tcp:127.0.0.1:0 --extract DIR` fed over loopback (and
#     with `--no-sha256`),
#   - with `ramstream inspect FILE`,
# interleaved, REPS times each, and prints medians and ratios against QEMU (wall time, CPU time,
# peak RSS). Release build of `ramstream` first. Runs alone, or from benches/vs-qemu.sh.
#
#   benches/vs-qemu-load.sh [VECTOR_DIR] [REPS]
#   VECTOR_DIR defaults to conformance-vectors/vectors/linux-stopped (a 128 MiB Linux guest).
#   RAMSTREAM_BASE_BIN=/path/to/older/ramstream adds rows for that build's extract and receive, timed in
#   the same interleaved runs (a before/after in one table).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
vector=${1:-$root/conformance-vectors/vectors/linux-stopped}
reps=${2:-5}
qemu=${RAMSTREAM_QEMU_72:-qemu-system-x86_64}
if ! command -v "$qemu" >/dev/null; then
    echo "vs-qemu-load: skipped: $qemu not found" >&2
    exit 0
fi
(cd "$root" && cargo build --release -q -p ramstream)
bin=${RAMSTREAM_BIN:-$root/target/release/ramstream}
work=$(mktemp -d)
# Not `exec python3`: the trap must outlive it to remove the work directory.
trap 'rm -rf "$work"' EXIT
stream=$work/stream.bin
if [[ -f $vector/stream.bin.zst ]]; then
    zstd -q -dc "$vector/stream.bin.zst" >"$stream"
else
    cp "$vector/stream.bin" "$stream"
fi
guests=$root/conformance-vectors/guests/build
if grep -q '{KERNEL}' "$vector/manifest.json" && [[ ! -f $guests/vmlinuz ]]; then
    echo "vs-qemu-load: $vector's destination boots the Linux test guest; build it first: python3 conformance-vectors/scripts/guests.py" >&2
    exit 1
fi
python3 - "$vector/manifest.json" "$stream" "$bin" "$qemu" "$reps" "$work" \
    "$guests" "${RAMSTREAM_BASE_BIN:-}" <<'PY'
import json, os, resource, socket, statistics, subprocess, sys, threading, time

manifest, stream, ramstream, qemu, reps, work, guests, base = sys.argv[1:]
reps = int(reps)
m = json.load(open(manifest))
size = os.path.getsize(stream)
dest_args = [a.replace("{KERNEL}", f"{guests}/vmlinuz").replace("{INITRD}", f"{guests}/initramfs.cpio.gz")
             for a in m["destination_args"]]
have_time = os.path.exists("/usr/bin/time")

def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def peak_rss(pid):
    # VmHWM of a live process, in KiB.
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

def qmp(sock, cmd, **args):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    sock.sendall(json.dumps(msg).encode() + b"\n")
    buf = sock.makefile("rb")
    while True:
        line = json.loads(buf.readline())
        if "return" in line or "error" in line:
            return line

def run_qemu(i):
    qsock = f"{work}/qmp-{i}.sock"
    p = subprocess.Popen([qemu, *dest_args, "-incoming", "defer", "-qmp", f"unix:{qsock},server=on,wait=off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(500):
        if os.path.exists(qsock) or p.poll() is not None:
            break
        time.sleep(0.01)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(qsock)
    except OSError as e:
        p.kill()
        p.wait()
        sys.exit(f"vs-qemu-load: QEMU 7.2 did not start ({e}): {p.stderr.read().decode().strip()}")
    f = s.makefile("rb")
    f.readline()
    qmp(s, "qmp_capabilities")
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    cpu_start = cpu_of(p.pid)
    qmp(s, "migrate-incoming", uri=f"exec:cat {stream}")
    while True:
        st = qmp(s, "query-migrate")["return"].get("status")
        if st in ("completed", "failed"):
            break
        time.sleep(0.0005)
    wall = time.perf_counter() - t0
    cpu = cpu_of(p.pid) - cpu_start
    rss = peak_rss(p.pid)
    qmp(s, "quit")
    p.wait()
    if st != "completed":
        sys.exit(f"QEMU load failed: {p.stderr.read().decode()}")
    return wall, cpu, rss

def cpu_of(pid):
    # utime + stime of a live process (all threads), seconds.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def timed(cmd, feed=None):
    full = (["/usr/bin/time", "-f", "%M"] if have_time else []) + cmd
    c0 = children_cpu()
    t0 = time.perf_counter()
    p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if feed:
        feed(p)
    _, err = p.communicate()
    wall = time.perf_counter() - t0
    cpu = children_cpu() - c0
    if p.returncode != 0:
        sys.exit(f"{cmd[1]} failed: {err}")
    rss = int(err.strip().splitlines()[-1]) if have_time else 0
    return wall, cpu, rss

def feeder(p):
    # Reads "listening on tcp:HOST:PORT" from stderr, then streams the file over loopback.
    line = ""
    while "listening on" not in line:
        line = p.stderr.readline()
        if not line:
            return
    host, port = line.strip().split("listening on ")[1].removeprefix("tcp:").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as c, open(stream, "rb") as f:
        while chunk := f.read(1 << 20):
            c.sendall(chunk)

def run_extract(i):
    return timed([ramstream, "extract", stream, "--out", f"{work}/x{i}"])

def run_extract_nosha(i):
    return timed([ramstream, "extract", "--no-sha256", stream, "--out", f"{work}/x{i}"])

def receive_with(exe, *extra):
    return lambda i: timed([exe, "receive", "--listen", "tcp:127.0.0.1:0", "--extract",
                            f"{work}/r{i}", *extra], feeder)

def run_inspect(i):
    return timed([ramstream, "inspect", stream])

runs = {"qemu-7.2 load": run_qemu, "ramstream extract": run_extract,
        "extract --no-sha256": run_extract_nosha,
        **({"extract (base build)": lambda i: timed([base, "extract", stream, "--out", f"{work}/x{i}"])}
           if base else {}),
        "receive --extract": receive_with(ramstream),
        "receive --no-sha256": receive_with(ramstream, "--no-sha256"),
        **({"receive (base build)": receive_with(base)} if base else {}),
        "ramstream inspect": run_inspect}
res = {k: [] for k in runs}
for i in range(reps):
    for k, f in runs.items():
        res[k].append(f(i))
        subprocess.run(["rm", "-rf", f"{work}/x{i}", f"{work}/r{i}"])
med = {k: tuple(statistics.median(r[j] for r in v) for j in range(3)) for k, v in res.items()}
q = med["qemu-7.2 load"]
print(f"Loader vs QEMU: {os.path.basename(os.path.dirname(manifest))}, stream {size/1e6:.1f} MB, "
      f"{reps} interleaved runs, medians")
print(f"{'':21} {'wall s':>8} {'x QEMU':>7} {'CPU s':>7} {'x QEMU':>7} {'RSS MiB':>8} {'x QEMU':>7} {'GB/s':>6}")
for k, (w, c, r) in med.items():
    print(f"{k:21} {w:8.3f} {w/q[0]:7.2f} {c:7.3f} {c/max(q[1],1e-3):7.2f} {r/1024:8.1f} "
          f"{r/max(q[2],1):7.2f} {size/w/1e9:6.2f}")
PY
