#!/usr/bin/env python3
"""Sender vs QEMU, side by side (issue #15): run by benches/vs-qemu.sh.

In one run, interleaved, `reps` times each: QEMU (7.2, and 10.0 / 11.1 when
$RAMSTREAM_QEMU_DIR/bin has their wrappers) migrating an idle no-OS KVM guest, and
`ramstream send` migrating its reference KVM guest, with the same RAM size, the same memory
touched (non-zero pages), unthrottled, to /dev/null (QEMU: `exec:cat > /dev/null`) and over
loopback TCP to a receiver (QEMU: a second QEMU with `-incoming`; ramstream: `ramstream
receive`). Prints the medians and their ratios to QEMU 7.2 as markdown tables.

How memory is touched:
* QEMU: `-device loader,file=touch.bin,addr=16M` writes N MiB of non-zero bytes into guest RAM
  at reset; the guest is a boot sector that halts (`cli; hlt`).
* ramstream: `--working-set` N MiB of pages written by the guest (every page non-zero), then
  `--quiesce` (about one page a second).

CPU time: the migrating process, every thread (the guest's vCPUs too), over the migration:
QEMU's from /proc/PID/stat (utime + stime, clock ticks: its migration thread ends at
completion, so per-thread counters would miss it) before `migrate` and at completion;
ramstream's from its report (`cpu_ms`: the same /proc/self/stat counters, read by the sender).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "conformance-vectors", "scripts"))
from qmp import Qemu  # noqa: E402

MIB = 1 << 20
# cli; L: hlt; jmp L  (an idle CPU with interrupts off), as conformance-vectors' "idle" guest.
IDLE_BOOT = bytes.fromhex("faf4ebfd")
TOUCH_GPA = 16 * MIB


def boot_image(path):
    img = bytearray(512)
    img[:len(IDLE_BOOT)] = IDLE_BOOT
    img[510:512] = b"\x55\xaa"
    with open(path, "wb") as f:
        f.write(img)


def touch_file(path, mib):
    """`mib` MiB of non-zero bytes (a random 1 MiB repeated; every page non-zero)."""
    chunk = bytes(b | 1 for b in os.urandom(MIB))
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(chunk)


def qemu_command(version):
    d = os.environ.get("RAMSTREAM_QEMU_DIR", "/opt/ramstream-qemu")
    w = os.path.join(d, "bin", "qemu-" + version)
    if os.access(w, os.X_OK):
        return w
    if version == "7.2" and shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64"
    return None


def cpu_ns(pid):
    """CPU time of process `pid`, every thread including ended ones (QEMU's migration thread
    ends at completion), in ns: utime + stime of /proc/PID/stat (clock-tick resolution)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1e9 / os.sysconf("SC_CLK_TCK")


def machine(version):
    return "pc-i440fx-%s" % version


def qemu_args(version, mem_mib, touch, work):
    args = ["-M", "%s,accel=kvm" % machine(version), "-m", str(mem_mib),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-cpu", "qemu64,-kvmclock",
            "-drive", "file=%s,format=raw,if=ide" % os.path.join(work, "boot.img")]
    if touch:
        args += ["-device", "loader,file=%s,addr=%#x,force-raw=on"
                 % (os.path.join(work, "touch-%d.bin" % touch), TOUCH_GPA)]
    return args


def run_qemu(version, mem_mib, touch, target, work, n):
    binary = qemu_command(version)
    cls = type("Q", (Qemu,), {"BINARY": binary})
    src = cls("src%d" % n, qemu_args(version, mem_mib, touch, work), work, work,
              os.path.join(work, "src%d.log" % n))
    dst = None
    try:
        if target == "tcp":
            dst = cls("dst%d" % n, qemu_args(version, mem_mib, 0, work) + ["-incoming", "defer"],
                      work, work, os.path.join(work, "dst%d.log" % n))
            dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
            port = [int(a["port"]) for a in dst.cmd("query-migrate")["socket-address"]
                    if a.get("type") == "inet"][0]
            uri = "tcp:127.0.0.1:%d" % port
        else:
            uri = "exec:cat > /dev/null"
        time.sleep(1.0)  # SeaBIOS boots the sector, which halts
        src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        c0 = cpu_ns(src.proc.pid)
        src.cmd("migrate", uri=uri)
        info = src.wait_migration(timeout=300, poll=0.005)
        c1 = cpu_ns(src.proc.pid)
        if dst is not None:
            dst.wait_migration(timeout=60, poll=0.01, incoming=True)
        return {"total_ms": float(info["total-time"]), "downtime_ms": float(info["downtime"]),
                "bytes": int(info["ram"]["transferred"]), "cpu_ms": (c1 - c0) / 1e6}
    finally:
        src.kill()
        if dst is not None:
            dst.kill()


def run_ramstream(exe, mem_mib, touch, balloon, target, work, n):
    ws_pages = touch * MIB // 4096
    send = [exe, "send", None, "--mem", "%dM" % mem_mib, "--balloon-percent", str(balloon),
            "--max-bandwidth", "0", "--quiesce", "--working-set", str(ws_pages),
            "--pages-per-loop", "4096", "--delay-loops", "0", "--warmup-ms", "0", "--json"]
    recv = None
    try:
        if target == "tcp":
            # The resumed guest's self-check walks its working set (slow under nested KVM).
            recv = subprocess.Popen([exe, "receive", "--listen", "tcp:127.0.0.1:0", "--json",
                                     "--verify-timeout", "300"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = recv.stderr.readline()
            m = re.search(r"listening on (tcp:\S+)", line)
            if not m:
                raise RuntimeError("ramstream receive said %r" % line)
            send[2] = m.group(1)
        else:
            send[2] = "file:/dev/null"
        out = subprocess.run(send, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=600)
        if out.returncode != 0:
            raise RuntimeError("ramstream send failed: %s" % out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        res = {"total_ms": r["total_time_ms"], "downtime_ms": r["downtime_ms"],
               "bytes": r["ram"]["transferred"], "cpu_ms": r.get("cpu_ms", 0.0)}
        if recv is not None:
            _, err = recv.communicate(timeout=300)
            if recv.returncode != 0:
                # The sender's figures stand (the stream was sent); the receiver's failure
                # after it is reported with them.
                last = (err.strip().splitlines() or ["?"])[-1]
                res["receiver_failed"] = "rc %d: %s" % (recv.returncode, last)
        return res
    finally:
        if recv is not None and recv.poll() is None:
            recv.kill()
            recv.wait()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", required=True, help="the release ramstream binary")
    ap.add_argument("--before-exe",
                    help="also run this ramstream binary (e.g. an older build), as ramstream-before")
    ap.add_argument("--quick", action="store_true", help="1 repetition, 256 MiB, /dev/null")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mem", type=int, default=2048, help="guest RAM in MiB")
    ap.add_argument("--touch", default="0,16,512", help="MiB touched, comma-separated")
    ap.add_argument("--targets", default="null,tcp")
    ap.add_argument("--versions", default="7.2,10.0,11.1")
    ap.add_argument("--balloon", type=int, default=90,
                    help="also send ramstream with this %% ballooned (0: no balloon rows)")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.mem, a.touch, a.targets, a.balloon = 1, 256, "0,16", "null", 0
    touches = [int(x) for x in a.touch.split(",") if int(x) * 2 <= a.mem]
    versions = [v for v in a.versions.split(",") if qemu_command(v)]
    if "7.2" not in versions:
        sys.exit("vs-qemu: QEMU 7.2 (qemu-system-x86_64) is not installed: it is the baseline")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        sys.exit("vs-qemu: /dev/kvm is not usable; both sides need KVM")
    work = tempfile.mkdtemp(prefix="vs-qemu-")
    boot_image(os.path.join(work, "boot.img"))
    for t in touches:
        if t:
            touch_file(os.path.join(work, "touch-%d.bin" % t), t)
    configs = []  # (target, touch, balloon, impl)
    for target in a.targets.split(","):
        for t in touches:
            for v in versions:
                configs.append((target, t, 0, "qemu-" + v))
            if a.before_exe:
                configs.append((target, t, 0, "ramstream-before"))
            configs.append((target, t, 0, "ramstream"))
        if a.balloon:
            bt = touches[1] if len(touches) > 1 else 0
            if a.before_exe:
                configs.append((target, bt, a.balloon, "ramstream-before"))
            configs.append((target, bt, a.balloon, "ramstream"))
    results = {c: [] for c in configs}
    failures = []
    n = 0
    try:
        for rep in range(a.reps):
            for c in configs:
                target, t, balloon, impl = c
                n += 1
                try:
                    if impl.startswith("ramstream"):
                        exe = a.before_exe if impl == "ramstream-before" else a.exe
                        r = run_ramstream(exe, a.mem, t, balloon, target, work, n)
                    else:
                        r = run_qemu(impl[5:], a.mem, t, target, work, n)
                except Exception as e:  # one failed run is reported, the others go on
                    failures.append("%s: %s" % (c, str(e).strip().splitlines()[-1]))
                    print("rep %d %s FAILED: %s" % (rep + 1, c, e), file=sys.stderr, flush=True)
                    continue
                results[c].append(r)
                if "receiver_failed" in r:
                    failures.append("%s: receiver after the send: %s" % (c, r["receiver_failed"]))
                print("rep %d %-5s touched %4d MiB balloon %2d%% %-10s total %8.1f ms "
                      "downtime %7.1f ms bytes %11d cpu %8.1f ms"
                      % (rep + 1, target, t, balloon, impl, r["total_ms"], r["downtime_ms"],
                         r["bytes"], r["cpu_ms"]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = ("total_ms", "downtime_ms", "bytes", "cpu_ms")
    med = {c: {k: median([r[k] for r in rs]) for k in keys} for c, rs in results.items()}
    print("\n## Sender vs QEMU: %d MiB guest, %d repetition(s), medians; "
          "ratio = ramstream / QEMU 7.2 (below 1: ramstream better)\n" % (a.mem, a.reps))
    for target in a.targets.split(","):
        where = ("to /dev/null (QEMU `exec:cat > /dev/null`, ramstream `file:/dev/null`)"
                 if target == "null" else "over loopback TCP to a receiver")
        print("### %s\n" % where)
        print("| touched MiB | balloon | sender | total ms | downtime ms | bytes | CPU ms "
              "| total vs 7.2 | downtime vs 7.2 | bytes vs 7.2 | CPU vs 7.2 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in configs:
            if c[0] != target:
                continue
            _, t, balloon, impl = c
            m = med[c]
            if not results[c]:
                continue
            base = med.get((target, t, 0, "qemu-7.2"))

            def ratio(k):
                if not base or not base[k]:
                    return "–"
                return "%.2f" % (m[k] / base[k])
            print("| %d | %d%% | %s | %.1f | %.1f | %d | %.1f | %s | %s | %s | %s |"
                  % (t, balloon, impl, m["total_ms"], m["downtime_ms"], m["bytes"],
                     m["cpu_ms"], ratio("total_ms"), ratio("downtime_ms"), ratio("bytes"),
                     ratio("cpu_ms")))
        print()
    print_targets(a, med, results)
    for f in failures:
        print("- failed run: %s" % f)
    if a.balloon:
        print("Balloon rows: QEMU has no balloon without a guest driver, so their baseline is "
              "QEMU with the same touched memory and nothing ballooned (all other pages zero).")


# Issue #15's targets, as (what, target, touched MiB, balloon %, the largest ratio that meets it).
TARGETS = (
    ("total, idle (0 MiB touched)", 0, 0, 0.2),
    ("total, 16 MiB touched", 16, 0, 0.2),
    ("total, 90 % ballooned, 16 MiB touched", 16, 90, 0.2),
    ("total, 512 MiB touched", 512, 0, 1.0),
)


def print_targets(a, med, results):
    """One line per issue #15 target and target: ramstream's median over QEMU 7.2's, met or not
    (downtime: every row at most QEMU's)."""
    print("### Targets (issue #15): ratio = ramstream / QEMU 7.2, medians of this run\n")
    print("| target | what | ratio | needed | met |")
    print("|---|---|---|---|---|")
    for target in a.targets.split(","):
        for what, t, balloon, limit in TARGETS:
            mine = (target, t, balloon, "ramstream")
            base = med.get((target, t, 0, "qemu-7.2"))
            if not results.get(mine) or not base or not base["total_ms"]:
                continue
            r = med[mine]["total_ms"] / base["total_ms"]
            print("| %s | %s | %.2f | <= %.2f | %s |"
                  % (target, what, r, limit, "yes" if r <= limit else "NO"))
        rows = [(c, m) for c, m in med.items()
                if c[0] == target and c[3] == "ramstream" and results[c]]
        worst = None
        for c, m in rows:
            base = med.get((target, c[1], 0, "qemu-7.2"))
            if base and base["downtime_ms"]:
                d = m["downtime_ms"] / base["downtime_ms"]
                worst = d if worst is None else max(worst, d)
        if worst is not None:
            print("| %s | downtime, worst row | %.2f | <= 1.00 | %s |"
                  % (target, worst, "yes" if worst <= 1.0 else "NO"))
    print()

if __name__ == "__main__":
    main()
