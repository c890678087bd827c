#!/usr/bin/env python3
"""Re-records the golden vectors in ../vectors from real QEMU (7.2, 10.0 or 11.1).

    python3 conformance-vectors/scripts/record.py            # all QEMU 7.2 vectors
    python3 conformance-vectors/scripts/record.py --only idle-noos [--only ...]
    python3 conformance-vectors/scripts/record.py --qemu 10.0  # the same set from QEMU 10.0
    python3 conformance-vectors/scripts/record.py --list [--qemu 11.1]

Prerequisites: apt-get update && apt-get install -y qemu-system-x86 zstd
(the Linux guest's kernel and busybox are fetched with `apt-get download`, see guests.py);
for 10.0 and 11.1, scripts/qemu-versions.sh (the wrappers in $RAMSTREAM_QEMU_DIR/bin).

QEMU 7.2's vectors are named as in VECTORS_DEF (`idle-noos`); another version's carry the
version first (`10.0-idle-noos`) and use that version's machine types (`pc-i440fx-10.0`).

For every vector: build the guest, run the source QEMU, migrate it to a file (or through a
recording proxy to a real destination for postcopy-ram), then load the recording into a fresh
destination QEMU (must reach status 'completed'), make that destination migrate itself to a
second file, rebuild every RAM block from that second stream with an independent decoder
(ramdecode.py) and hash it. multifd vectors migrate over TCP through a recording relay
(multifd.py) to a real destination, whose RAM (re-migrated the same way) gives the hashes; a
fresh destination fed the recorded connections must then hold the same RAM, and so must the
main stream and the channels decoded together (multifd.py). Cross-checks (any disagreement
aborts):
  * pmemsave of the guest-physical ranges where the main RAM block(s) are mapped 1:1,
  * the recorded stream itself decoded (PAGE/ZERO/XBZRLE) onto zeroed blocks,
  * `info ramblock` block names and used lengths vs. the MEM_SIZE block list,
  * ZERO/PAGE record counts vs. the source's query-migrate duplicate/normal counters.
"""

import argparse
import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guests  # noqa: E402
import multifd  # noqa: E402
import ramdecode  # noqa: E402
from qmp import Qemu, QMPError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CV = os.path.dirname(HERE)
VECTORS = os.path.join(CV, "vectors")
COMPRESS_ABOVE = 256 * 1024
MiB = 1024 * 1024

LIVE = []  # running Qemu objects, killed at exit


def kill_all():
    for q in list(LIVE):
        try:
            q.kill()
        except Exception:
            pass
        LIVE.remove(q)


atexit.register(kill_all)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))


def start_qemu(name, args, sockdir, cwd, log):
    q = Qemu(name, args, sockdir, cwd, log)
    LIVE.append(q)
    return q


def stop_qemu(q):
    q.kill()
    if q in LIVE:
        LIVE.remove(q)


def log(msg):
    print("[record] " + msg, flush=True)


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# ----------------------------------------------------------------------------------------------
# Vector definitions

# -cpu qemu64,-kvmclock: SeaBIOS uses kvmclock when offered; KVM then rewrites the pvclock
# structure that lives in guest RAM (seen at pc.ram 0xe8c20: version 4 -> 6, flags 1 -> 0) on
# the destination after the load, so the destination's RAM would no longer be a pure function
# of the stream. Without kvmclock, block hashes equal what decoding the stream gives.
NOOS_COMMON = ["-nodefaults", "-no-user-config", "-display", "none",
               "-cpu", "qemu64,-kvmclock",
               "-drive", "file=boot.img,format=raw,if=ide"]


def noos(machine="pc-i440fx-7.2", mem=64, extra=(), machine_opts=""):
    return (["-M", "%s,accel=kvm%s" % (machine, machine_opts), "-m", str(mem)]
            + NOOS_COMMON + list(extra))


def linux(mem, mode, machine="pc-i440fx-7.2", serial="file:serial.log"):
    return ["-M", machine, "-accel", "tcg", "-m", str(mem), "-nodefaults", "-no-user-config",
            "-display", "none", "-kernel", "{KERNEL}", "-initrd", "{INITRD}",
            "-append", "console=ttyS0 quiet init_on_free=1 rsmode=%s" % mode,
            "-serial", serial]


def converge_when(min_xbzrle_pages=None, min_seconds=0, max_seconds=60,
                  params=None):
    """Live-migration controller: after the conditions are met, set `params` (to converge)."""
    params = params or {"downtime-limit": 2000, "max-bandwidth": 1024 * MiB}

    def ctl(src, elapsed, info, state):
        if state.get("done"):
            return
        xp = info.get("xbzrle-cache", {}).get("pages", 0)
        ok = elapsed >= min_seconds and (min_xbzrle_pages is None or xp >= min_xbzrle_pages)
        if ok or elapsed >= max_seconds:
            log("  converging after %.1fs (xbzrle pages %d): %s" % (elapsed, xp, params))
            src.cmd("migrate-set-parameters", **params)
            state["done"] = True
            state["converge"] = params
    return ctl


VECTORS_DEF = [
    dict(name="idle-noos",
         description="Idle no-OS guest (boot sector doing cli;hlt), KVM, 64 MiB, pc-i440fx-7.2, "
                     "stopped and then migrated to a file; plain precopy with VMDESCRIPTION.",
         guest="noos-idle", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(), mode="stopped", settle=1.5,
         ram_map=[("pc.ram", 0)]),
    dict(name="suppress-vmdesc",
         description="Idle no-OS guest as idle-noos, but machine property suppress-vmdesc=on: "
                     "the stream ends with EOF and has no VMDESCRIPTION trailer.",
         guest="noos-idle", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(machine_opts=",suppress-vmdesc=on"), mode="stopped", settle=1.5,
         ram_map=[("pc.ram", 0)]),
    dict(name="linux-stopped",
         description="Debian 6.1 Linux kernel + busybox initramfs booted under TCG (128 MiB, "
                     "init_on_free=1), stopped once its init printed a marker, then migrated.",
         guest="linux", accel="tcg", machine="pc-i440fx-7.2",
         args=linux(128, "idle"), dest_serial=True, mode="stopped", settle=2.0,
         ram_map=[("pc.ram", 0)]),
    dict(name="live-xbzrle",
         description="Live migration of a no-OS KVM guest that keeps incrementing one byte in "
                     "each of 128 pages, with xbzrle, a 1 MB/s bandwidth cap and 1 ms downtime "
                     "limit: many PART sections with PAGE, ZERO and XBZRLE records.",
         guest="noos-dirty", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(), mode="live", settle=1.0,
         caps={"xbzrle": True},
         params={"max-bandwidth": 1000000, "downtime-limit": 1},
         controller=converge_when(min_xbzrle_pages=1500, min_seconds=5, max_seconds=60),
         ram_map=[("pc.ram", 0)]),
    dict(name="x-ignore-shared",
         description="No-OS guest (dirtying loop) whose main RAM is a shared memfd backend "
                     "(id pc.ram, share=on), stopped, migrated with capability x-ignore-shared (vapic off): "
                     "configuration capabilities subsection, MEM_SIZE with mr_addr fields, and "
                     "no pages for pc.ram (its sha256 is that of the fresh, zero-filled "
                     "destination memfd).",
         guest="noos-dirty", accel="kvm", machine="pc-i440fx-7.2",
         # vapic off: kvm-tpr-opt's post_load reads its ROM state from guest RAM, which the
         # destination does not get with x-ignore-shared (fresh zero memfd): load failed EPERM.
         args=noos(extra=["-global", "apic-common.vapic=off",
                          "-object", "memory-backend-memfd,id=pc.ram,size=64M,share=on",
                          "-machine", "memory-backend=pc.ram"]),
         mode="stopped", settle=1.5,
         caps={"x-ignore-shared": True}, dest_caps={"x-ignore-shared": True},
         shared_blocks=["pc.ram"],
         ram_map=[("pc.ram", 0)]),
    dict(name="postcopy-advised",
         description="Live precopy migration of the dirtying no-OS guest with capability "
                     "postcopy-ram on but postcopy never started (1 MB/s cap, 1 ms downtime limit); "
                     "recorded by a proxy between "
                     "the source and a real destination QEMU (return path needed): stream has "
                     "COMMAND records OPEN_RETURN_PATH, PING(1) and POSTCOPY_ADVISE.",
         guest="noos-dirty", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(), mode="live-proxy", settle=1.0,
         caps={"postcopy-ram": True}, dest_caps={"postcopy-ram": True},
         params={"max-bandwidth": 1000000, "downtime-limit": 1},
         controller=converge_when(min_seconds=4, max_seconds=30),
         ram_map=[("pc.ram", 0)]),
    dict(name="multi-block",
         description="No-OS dirtying guest with two NUMA nodes, each backed by its own "
                     "memory-backend-ram (RAM blocks m0 and m1, 32 MiB each), live migration "
                     "with a 500 kB/s bandwidth cap and 1 ms downtime limit (many PART sections), no "
                     "xbzrle.",
         guest="noos-dirty", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(extra=["-object", "memory-backend-ram,id=m0,size=32M",
                          "-object", "memory-backend-ram,id=m1,size=32M",
                          "-numa", "node,nodeid=0,memdev=m0",
                          "-numa", "node,nodeid=1,memdev=m1"]),
         mode="live", settle=1.0,
         params={"max-bandwidth": 500000, "downtime-limit": 1},
         controller=converge_when(min_seconds=4, max_seconds=30),
         ram_map=[("m0", 0), ("m1", 32 * MiB)]),
    dict(name="q35-noos",
         description="Idle no-OS guest on pc-q35-7.2 (KVM, 64 MiB), stopped then migrated.",
         guest="noos-idle", accel="kvm", machine="pc-q35-7.2",
         args=noos(machine="pc-q35-7.2"), mode="stopped", settle=1.5,
         ram_map=[("pc.ram", 0)]),
    dict(name="live-linux-xbzrle",
         description="Live migration of a Linux guest (TCG, 128 MiB) whose init keeps changing "
                     "a few bytes in every 8th page of a 2 MiB tmpfs file, with xbzrle, a 5 MB/s "
                     "bandwidth cap and 1 ms downtime limit.",
         guest="linux", accel="tcg", machine="pc-i440fx-7.2",
         args=linux(128, "dirty"), dest_serial=True, mode="live", settle=3.0,
         marker="RAMSTREAM-DIRTYING",
         caps={"xbzrle": True},
         params={"max-bandwidth": 5000000, "downtime-limit": 1},
         controller=converge_when(min_xbzrle_pages=500, min_seconds=10, max_seconds=90),
         ram_map=[("pc.ram", 0)]),
    dict(name="linux-balloon",
         description="Linux guest (TCG, 128 MiB) with a virtio-balloon device whose driver "
                     "inflated the balloon to the host's target of 96 MiB (QMP balloon) before "
                     "the guest was stopped and migrated: the 32 MiB handed back travel as "
                     "ZERO records, and the virtio-balloon device state is in the stream.",
         guest="linux", accel="tcg", machine="pc-i440fx-7.2",
         args=linux(128, "balloon") + ["-device", "virtio-balloon-pci,id=balloon0"],
         dest_serial=True, mode="stopped", settle=1.0,
         marker="RAMSTREAM-BALLOON-READY", balloon_target=96 * MiB,
         ram_map=[("pc.ram", 0)]),
]


# mapped-ram (QEMU 9.0+): `migrate file:PATH` with capability mapped-ram, the format of libvirt's
# parallel save images. Each MEM_SIZE block entry is followed by a 28-byte header and the
# block's bitmap and pages sit at fixed (1 MiB aligned) file offsets, so the source writes to a
# file (mode "stopped-file") and the destination loads it with `migrate-incoming file:PATH` and
# the same capabilities and parameters (dest_caps, dest_params). QEMU 7.2 does not know the
# capability: `min_version` keeps these from --qemu 7.2 (and x-ignore-shared + mapped-ram, broken
# before 11.0, from 10.0).
MAPPED_RAM_DEF = [
    dict(name="mapped-ram-noos",
         description="Idle no-OS guest (KVM, 64 MiB, pc-i440fx-7.2), stopped, then migrated with "
                     "capability mapped-ram to a file (migrate file:PATH): every MEM_SIZE block "
                     "entry is followed by its 28-byte mapped-ram header, the block's pages sit "
                     "at 1 MiB aligned file offsets behind a bitmap, and no page record appears.",
         guest="noos-idle", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(), mode="stopped-file", settle=1.5, min_version="10.0",
         caps={"mapped-ram": True}, dest_caps={"mapped-ram": True},
         ram_map=[("pc.ram", 0)]),
    dict(name="mapped-ram-linux-multifd",
         description="Debian 6.1 Linux kernel + busybox initramfs booted under TCG (128 MiB, "
                     "init_on_free=1), stopped once its init printed a marker, then migrated "
                     "with capabilities mapped-ram and multifd (2 channels, which pwrite the "
                     "pages into the file) to a file: the same layout as without multifd.",
         guest="linux", accel="tcg", machine="pc-i440fx-7.2",
         args=linux(128, "idle"), dest_serial=True, mode="stopped-file", settle=2.0,
         min_version="10.0",
         caps={"mapped-ram": True, "multifd": True},
         dest_caps={"mapped-ram": True, "multifd": True},
         params={"multifd-channels": 2}, dest_params={"multifd-channels": 2},
         ram_map=[("pc.ram", 0)]),
    dict(name="mapped-ram-x-ignore-shared",
         description="No-OS guest (dirtying loop) whose main RAM is a shared file backend (a "
                     "fresh unlinked file in /dev/shm, id pc.ram, share=on), stopped, migrated "
                     "with capabilities mapped-ram and x-ignore-shared (vapic off) to a file: "
                     "MEM_SIZE with mr_addr fields, and pc.ram's header has bitmap_offset = "
                     "pages_offset = 0 and no regions (QEMU 11.0+; broken before). Its sha256 is "
                     "that of the fresh, zero-filled destination file.",
         guest="noos-dirty", accel="kvm", machine="pc-i440fx-7.2",
         args=noos(extra=["-global", "apic-common.vapic=off",
                          "-object", "memory-backend-file,id=pc.ram,size=64M,"
                                     "mem-path=/dev/shm,share=on",
                          "-machine", "memory-backend=pc.ram"]),
         mode="stopped-file", settle=1.5, min_version="11.0",
         caps={"mapped-ram": True, "x-ignore-shared": True},
         dest_caps={"mapped-ram": True, "x-ignore-shared": True},
         shared_blocks=["pc.ram"],
         ram_map=[("pc.ram", 0)]),
]
VECTORS_DEF += MAPPED_RAM_DEF


# multifd: capability multifd and parameter multifd-channels N on both sides; the source
# migrates to `tcp:` through a recording relay (multifd.py) to a real destination QEMU
# (`-incoming defer`, then `migrate-incoming tcp:127.0.0.1:0`). The relay saves what the source
# sent on each of its N + 1 connections: the main stream (stream.bin.zst) and channel K
# (channel-K.bin.zst). Afterwards a fresh destination is fed the recorded connections (replay)
# and must hold the same RAM. Modes "multifd-stopped" (source stopped first) and
# "multifd-live". `optional`: skip the vector if this QEMU refuses its parameters (a build
# without zstd).
def multifd_def(name, description, channels, guest="noos-idle", mode="multifd-stopped",
                extra_params=None, dest_extra=None, **kw):
    d = dict(name=name, description=description, guest=guest,
             accel="tcg" if guest == "linux" else "kvm", machine="pc-i440fx-7.2",
             args=noos(), mode=mode, settle=1.5,
             caps={"multifd": True}, dest_caps={"multifd": True},
             params=dict({"multifd-channels": channels}, **(extra_params or {})),
             dest_params=dict({"multifd-channels": channels}, **(dest_extra or {})),
             ram_map=[("pc.ram", 0)])
    d.update(kw)
    return d


RELAYED = ("recorded by a TCP relay between the source and a real destination QEMU: the main "
           "stream is stream.bin.zst, what the source sent on channel K is channel-K.bin.zst.")

MULTIFD_DEF = [
    multifd_def("multifd-2-live",
                "Live multifd migration (capability multifd, 2 channels) of the no-OS KVM guest "
                "that keeps incrementing one byte in each of 128 pages, with max-bandwidth "
                "1 MB/s and downtime-limit 1 ms so that it keeps doing dirty rounds until the "
                "script lets it converge (the cap did not hold the channels to 1 MB/s); "
                + RELAYED,
                2, guest="noos-dirty", mode="multifd-live", settle=1.0,
                extra_params={"max-bandwidth": 1000000, "downtime-limit": 1},
                controller=converge_when(min_seconds=2, max_seconds=30)),
    multifd_def("multifd-4",
                "Idle no-OS guest (KVM, 64 MiB, pc-i440fx-7.2), stopped, then migrated with "
                "capability multifd and 4 channels; " + RELAYED,
                4),
    multifd_def("multifd-4-zero-legacy",
                "Idle no-OS guest (KVM, 64 MiB, pc-i440fx-7.2), stopped, then migrated with "
                "capability multifd, 4 channels and zero-page-detection=legacy (zero pages as "
                "ZERO records on the main stream instead of in the channels' packets); "
                + RELAYED,
                4, min_version="9.0",
                extra_params={"zero-page-detection": "legacy"},
                dest_extra={"zero-page-detection": "legacy"}),
    multifd_def("multifd-2-zstd",
                "Idle no-OS guest (KVM, 64 MiB, pc-i440fx-7.2), stopped, then migrated with "
                "capability multifd, 2 channels and multifd-compression=zstd (the channels carry "
                "one zstd stream each instead of pages); " + RELAYED,
                2, optional=True,
                extra_params={"multifd-compression": "zstd"},
                dest_extra={"multifd-compression": "zstd"}),
    multifd_def("multifd-2-live-linux",
                "Live multifd migration (2 channels) of a Linux guest (TCG, 128 MiB) whose init "
                "keeps changing a few bytes in every 8th page of a 2 MiB tmpfs file, with "
                "max-bandwidth 5 MB/s and downtime-limit 1 ms so that it keeps doing dirty "
                "rounds until the script lets it converge; " + RELAYED,
                2, guest="linux", mode="multifd-live", settle=3.0, min_version="11.1",
                args=linux(128, "dirty"), dest_serial=True, marker="RAMSTREAM-DIRTYING",
                extra_params={"max-bandwidth": 5000000, "downtime-limit": 1},
                controller=converge_when(min_seconds=10, max_seconds=90)),
]
VECTORS_DEF += MULTIFD_DEF


# ----------------------------------------------------------------------------------------------
# Helpers

def sha256(b):
    return hashlib.sha256(b).hexdigest()


def subst(args, values):
    out = []
    for a in args:
        for k, v in values.items():
            a = a.replace("{%s}" % k, v)
        out.append(a)
    return out


def dest_args_of(v):
    args = list(v["args"])
    if v.get("dest_serial"):
        i = args.index("-serial")
        args[i + 1] = "null"
    return args + ["-S"]


def caps_list(caps):
    return [{"capability": k, "state": bool(s)} for k, s in caps.items()]


def parse_ramblock(text):
    # Block Name, PSize (2 words), Offset, Used, Total; 10.0+ add HVA and RO columns.
    blocks = []
    for line in text.splitlines():
        f = line.split()
        if len(f) in (6, 8) and f[0] != "Block" and f[3].startswith("0x"):
            blocks.append((f[0], int(f[4], 16)))
    return blocks


def wait_marker(path, marker, q, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if q.proc.poll() is not None:
            raise QMPError("guest QEMU exited:\n" + q.log_text())
        if os.path.exists(path):
            with open(path, "rb") as f:
                if marker.encode() in f.read():
                    return
        time.sleep(0.2)
    raise QMPError("guest marker %r not seen in %ds" % (marker, timeout))


class Proxy:
    """Unix-socket proxy: records everything the source sends, forwards both ways."""

    def __init__(self, listen_path, target_path, record_path):
        self.listen_path = listen_path
        self.target_path = target_path
        self.record = open(record_path, "wb")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(listen_path)
        self.srv.listen(1)
        self.done = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pump(self, a, b, rec):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                if rec:
                    self.record.write(data)
                b.sendall(data)
        except OSError as e:
            if rec:
                self.error = e
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _run(self):
        try:
            s, _ = self.srv.accept()
            d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            d.connect(self.target_path)
            t1 = threading.Thread(target=self._pump, args=(s, d, True), daemon=True)
            t2 = threading.Thread(target=self._pump, args=(d, s, False), daemon=True)
            t1.start()
            t2.start()
            t1.join()
            self.record.close()
            self.done.set()
            t2.join(timeout=30)
            s.close()
            d.close()
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.done.set()

    def wait(self, timeout=60):
        if not self.done.wait(timeout):
            raise CheckFailed("proxy: source stream did not end")
        if self.error:
            raise CheckFailed("proxy error: %s" % self.error)
        self.srv.close()


def incoming_port(q):
    """The TCP port a destination listens on after `migrate-incoming tcp:127.0.0.1:0`."""
    addrs = q.cmd("query-migrate").get("socket-address", [])
    ports = [int(a["port"]) for a in addrs if a.get("type") == "inet"]
    check(len(ports) == 1, "destination listens on %s" % addrs)
    return ports[0]


def write_zst(raw_path, out, data):
    subprocess.run(["zstd", "-q", "-19", "-f", raw_path, "-o", out], check=True)
    back = subprocess.run(["zstd", "-dc", out], check=True, stdout=subprocess.PIPE).stdout
    check(back == data, "zstd round trip of %s" % out)


def resave_destination(dst, v, work, tag):
    """A destination that completed its incoming migration: checks it is paused, reads `info
    ramblock`, makes it migrate itself (stopped, capabilities off) to a plain file and rebuilds
    every RAM block from that with ramdecode.py (every page exactly once), and checks
    `pmemsave` of the 1:1-mapped ranges of the main RAM against it. Returns (StreamInfo,
    [(block, used length)], {(block, lo, hi): bytes}, the QEMU log)."""
    st = dst.cmd("query-status")
    check(not st["running"], "%s is running after load: %s" % (tag, st))
    ramblocks = parse_ramblock(dst.hmp("info ramblock"))
    dest_caps = v.get("dest_caps", {})
    if dest_caps:
        dst.cmd("migrate-set-capabilities",
                capabilities=caps_list({k: False for k in dest_caps}))
    verify_path = os.path.join(work, "verify-%s.bin" % tag)
    dst.cmd("migrate", uri="exec:cat > %s" % verify_path)
    dst.wait_migration(timeout=300)
    # pmemsave cross-check of the main RAM
    pm = {}
    for blk, gpa in v["ram_map"]:
        size = dict(ramblocks)[blk]
        ranges = []
        for a, b in ((gpa, gpa + size),):
            for lo, hi in ((a, min(b, 0xa0000)), (max(a, 0x100000), b)):
                if hi > lo:
                    ranges.append((lo, hi))
        for lo, hi in ranges:
            path = os.path.join(work, "pmem-%s-%s-%x.bin" % (tag, blk, lo))
            dst.cmd("pmemsave", val=lo, size=hi - lo, filename=path)
            with open(path, "rb") as f:
                pm[(blk, lo - gpa, hi - gpa)] = f.read()
            os.unlink(path)
    dlog = dst.log_text()
    with open(verify_path, "rb") as f:
        vstream = f.read()
    os.unlink(verify_path)
    ver = ramdecode.decode(vstream)
    check(ver.counts["XBZRLE"] == 0 and not ver.config_caps, "verify stream not plain")
    # every page of every block exactly once
    for b in ver.block_order:
        check(len(ver.received[b]) == len(ver.blocks[b]) // ramdecode.PAGE,
              "verify stream does not cover block %s" % b)
    # info ramblock vs MEM_SIZE list
    check([(b, len(ver.blocks[b])) for b in ver.block_order] == ramblocks,
          "info ramblock %s != MEM_SIZE list %s"
          % (ramblocks, [(b, len(ver.blocks[b])) for b in ver.block_order]))
    for (blk, lo, hi), data in pm.items():
        check(ver.blocks[blk][lo:hi] == data,
              "pmemsave of %s [0x%x,0x%x) disagrees with the re-migrated stream" % (blk, lo, hi))
    return ver, ramblocks, pm, dlog


def wait_noos_dirtying(q, work, timeout=60):
    """Waits until the dirtying boot sector runs: its last page (GPA 0x8f000) is non-zero."""
    path = os.path.join(work, "probe.bin")
    deadline = time.time() + timeout
    while True:
        q.cmd("pmemsave", val=0x8F000, size=4096, filename=path)
        with open(path, "rb") as f:
            if any(f.read()):
                os.unlink(path)
                return
        check(time.time() < deadline, "the dirtying guest did not start in %ds" % timeout)
        time.sleep(0.2)


def run_migration(q, uri, v, state):
    q.cmd("migrate", uri=uri)
    t0 = time.time()
    ctl = v.get("controller")
    while True:
        if q.proc.poll() is not None:
            raise QMPError("source exited:\n" + q.log_text())
        info = q.cmd("query-migrate")
        st = info.get("status")
        if st == "completed":
            return info
        if st in ("failed", "cancelled"):
            raise QMPError("source migration %s: %s\n%s" % (st, info, q.log_text()))
        if ctl:
            ctl(q, time.time() - t0, info, state)
        if time.time() - t0 > 600:
            raise QMPError("source migration timed out: %s" % info)
        time.sleep(0.25)


# ----------------------------------------------------------------------------------------------
# Recording one vector

def record(v, scratch, linux_files):
    name = v["name"]
    vdir = os.path.join(VECTORS, name)
    os.makedirs(vdir, exist_ok=True)
    for f in os.listdir(vdir):
        os.unlink(os.path.join(vdir, f))
    work = tempfile.mkdtemp(prefix=name[:12] + "-", dir=scratch)
    srcdir = os.path.join(work, "src")
    dstdir = os.path.join(work, "dst")
    os.makedirs(srcdir)
    os.makedirs(dstdir)
    values = {}
    if v["guest"].startswith("noos-"):
        img = guests.boot_image(v["guest"][5:])
        for d in (vdir, srcdir, dstdir):
            with open(os.path.join(d, "boot.img"), "wb") as f:
                f.write(img)
    else:
        values = {"KERNEL": linux_files[0], "INITRD": linux_files[1]}
    caps = v.get("caps", {})
    params = v.get("params", {})
    dest_caps = v.get("dest_caps", {})
    stream_path = os.path.join(work, "stream.bin")

    # --- source ---
    log("%s: starting source" % name)
    src = start_qemu("src", subst(v["args"], values), work, srcdir,
                     os.path.join(work, "src.log"))
    if v["guest"] == "linux":
        wait_marker(os.path.join(srcdir, "serial.log"), v.get("marker", "RAMSTREAM-GUEST-READY"),
                    src)
    if v["mode"] == "multifd-live" and v["guest"] == "noos-dirty":
        # a multifd migration of this small guest can be over before SeaBIOS has booted it:
        # wait until its loop has written the last of its 128 pages
        wait_noos_dirtying(src, work)
    time.sleep(v.get("settle", 1.0))
    if v.get("balloon_target"):
        target = v["balloon_target"]
        src.cmd("balloon", value=target)
        deadline = time.time() + 240
        while True:
            actual = src.cmd("query-balloon")["actual"]
            if actual <= target:
                break
            check(time.time() < deadline,
                  "the balloon reached %d bytes, not the target %d" % (actual, target))
            time.sleep(1)
        log("%s: balloon inflated: guest RAM %d MiB" % (name, actual // MiB))
    if caps:
        src.cmd("migrate-set-capabilities", capabilities=caps_list(caps))
    if params:
        try:
            src.cmd("migrate-set-parameters", **params)
        except QMPError as e:
            if not v.get("optional"):
                raise
            # e.g. multifd-compression=zstd in a QEMU built without zstd
            log("%s: SKIPPED, this QEMU refuses its parameters: %s" % (name, e))
            stop_qemu(src)
            shutil.rmtree(vdir)
            return {"skipped": str(e)}
    state = {}
    proxy = None
    pdst = None
    mf = None  # multifd: the recorded connections
    if v["mode"] == "stopped":
        src.cmd("stop")
        info = run_migration(src, "exec:cat > %s" % stream_path, v, state)
    elif v["mode"] == "stopped-file":
        # mapped-ram needs a seekable channel: QEMU writes the file itself
        src.cmd("stop")
        info = run_migration(src, "file:%s" % stream_path, v, state)
    elif v["mode"] == "live":
        info = run_migration(src, "exec:cat > %s" % stream_path, v, state)
    elif v["mode"] in ("multifd-stopped", "multifd-live"):
        pdst = start_qemu("pdst", subst(dest_args_of(v), values) + ["-incoming", "defer"],
                          work, dstdir, os.path.join(work, "pdst.log"))
        pdst.cmd("migrate-set-capabilities", capabilities=caps_list(dest_caps))
        pdst.cmd("migrate-set-parameters", **v["dest_params"])
        pdst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
        nconn = params["multifd-channels"] + 1
        relay = multifd.Relay(("127.0.0.1", incoming_port(pdst)), nconn)
        log("%s: relay on port %d, %d connections to the destination" % (name, relay.port, nconn))
        if v["mode"] == "multifd-stopped":
            src.cmd("stop")
        try:
            info = run_migration(src, "tcp:127.0.0.1:%d" % relay.port, v, state)
            conns = relay.wait()
        finally:
            relay.close()
        pinfo = pdst.wait_migration(timeout=120)
        check(pinfo["status"] == "completed", "relayed destination: %s" % pinfo)
        main, channels, inits = multifd.classify(conns)
        check(len(channels) == params["multifd-channels"],
              "%d channels recorded, %d configured" % (len(channels), params["multifd-channels"]))
        with open(stream_path, "wb") as f:
            f.write(main)
        for k, data in channels.items():
            with open(os.path.join(work, "channel-%d.bin" % k), "wb") as f:
                f.write(data)
        mf = {"conns": [(c["index"], "main" if bytes(c["sent"][:4]) == multifd.QEVM
                         else "channel %d" % c["sent"][24], len(c["sent"]), c["returned"])
                        for c in conns],
              "inits": inits, "channels": channels}
        log("%s: relayed connections (index, kind, bytes from source, bytes back): %s"
            % (name, mf["conns"]))
        # the destination that received the live migration: what it holds
        pdst_view = resave_destination(pdst, v, work, "pdst")
        stop_qemu(pdst)
    elif v["mode"] == "live-proxy":
        dsock = os.path.join(work, "pdst.sock")
        psock = os.path.join(work, "proxy.sock")
        pdst = start_qemu("pdst", subst(dest_args_of(v), values) + ["-incoming", "defer"],
                          work, dstdir, os.path.join(work, "pdst.log"))
        if dest_caps:
            pdst.cmd("migrate-set-capabilities", capabilities=caps_list(dest_caps))
        pdst.cmd("migrate-incoming", uri="unix:" + dsock)
        proxy = Proxy(psock, dsock, stream_path)
        info = run_migration(src, "unix:" + psock, v, state)
        proxy.wait()
        pdst.wait_migration(timeout=60)
        stop_qemu(pdst)
    else:
        raise ValueError(v["mode"])
    stop_qemu(src)
    qm = {"ram": info["ram"]}
    if "xbzrle-cache" in info:
        qm["xbzrle-cache"] = info["xbzrle-cache"]
    with open(stream_path, "rb") as f:
        stream = f.read()
    log("%s: recorded %d bytes; source query-migrate ram: %s" % (name, len(stream), info["ram"]))

    # --- decode the recorded stream itself ---
    if mf:
        # main stream and channels together, each channel's packets at the main stream's
        # sync points (multifd.py)
        sync_on = "EOS" if Qemu.VERSION == "7.2" else "FLUSH"
        rec, mstats = multifd.rebuild(stream, mf["channels"], sync_on)
        mf["summaries"] = [multifd.channel_summary(mf["channels"][k])
                           for k in sorted(mf["channels"])]
        log("%s: channels: %s; %d sync points (%s); %d duplicate page writes %s"
            % (name, json.dumps(mf["summaries"]), mstats["sync_points"], sync_on,
               mstats["duplicate_writes"], mstats["duplicates"]))
        check(rec.counts["PAGE"] == 0 and rec.counts["XBZRLE"] == 0,
              "page records on a multifd main stream")
        check(rec.counts["ZERO"] + mstats["zero"] == info["ram"]["duplicate"],
              "ZERO records %d + channel zero pages %d != source duplicate %d"
              % (rec.counts["ZERO"], mstats["zero"], info["ram"]["duplicate"]))
        # (a page sent again with the same contents within one segment is counted once by
        # QEMU 7.2's `normal`)
        check(mstats["normal"] - mstats["duplicate_writes"] == info["ram"]["normal"],
              "channel normal pages %d (%d sent twice) != source normal %d"
              % (mstats["normal"], mstats["duplicate_writes"], info["ram"]["normal"]))
        check(sync_on != "FLUSH" or rec.counts["MULTIFD_FLUSH"] > 0, "no MULTIFD_FLUSH record")
        if params.get("zero-page-detection") == "legacy" or Qemu.VERSION == "7.2":
            check(mstats["zero"] == 0, "zero pages in the channels with legacy detection")
        else:
            check(rec.counts["ZERO"] == 0, "ZERO records with multifd zero-page detection")
        comp = params.get("multifd-compression", "none")
        check(all(s["compression"] in ([comp], []) for s in mf["summaries"]),
              "channel compression %s, expected %s" % (mf["summaries"], comp))
        chan_bytes = sum(len(b) for b in mf["channels"].values())
        # the source's multifd-bytes: every channel byte (7.2: but the 64-byte initial packets)
        init_bytes = multifd.INIT_LEN * len(mf["channels"]) if Qemu.VERSION == "7.2" else 0
        check(info["ram"]["multifd-bytes"] == chan_bytes - init_bytes,
              "source multifd-bytes %d, the channels carried %d"
              % (info["ram"]["multifd-bytes"], chan_bytes))
        if comp == "none":
            # the channels carry the pages: at least 4 KiB per normal page
            check(chan_bytes >= info["ram"]["normal"] * ramdecode.PAGE,
                  "channels carry %d bytes for %d normal pages" % (chan_bytes,
                                                                  info["ram"]["normal"]))
    else:
        rec = ramdecode.decode(stream)
    log("%s: stream: %s" % (name, json.dumps(rec.summary())))
    mapped = caps.get("mapped-ram", False)
    if mapped:
        # no page records: a page with data has its bitmap bit set, a zero page has it clear
        check(rec.counts["ZERO"] + rec.counts["PAGE"] + rec.counts["XBZRLE"] == 0,
              "page records in a mapped-ram file")
        present = sum(m["present"] for m in rec.mapped_ram.values())
        absent = sum(len(rec.blocks[b]) // ramdecode.PAGE - rec.mapped_ram[b]["present"]
                     for b in rec.block_order
                     if b not in v.get("shared_blocks", []))
        check(present == info["ram"]["normal"],
              "mapped-ram pages present %d != source normal %d" % (present, info["ram"]["normal"]))
        check(absent == info["ram"]["duplicate"],
              "mapped-ram pages absent %d != source duplicate %d"
              % (absent, info["ram"]["duplicate"]))
    elif not mf:
        check(rec.counts["ZERO"] == info["ram"]["duplicate"],
              "ZERO records %d != source duplicate %d"
              % (rec.counts["ZERO"], info["ram"]["duplicate"]))
        check(rec.counts["PAGE"] == info["ram"]["normal"],
              "PAGE records %d != source normal %d" % (rec.counts["PAGE"], info["ram"]["normal"]))
    if caps.get("xbzrle"):
        check(rec.counts["XBZRLE"] > 0 and info["xbzrle-cache"]["pages"] > 0,
              "no XBZRLE records")
    expect_vmdesc = "suppress-vmdesc=on" not in " ".join(v["args"])
    check(rec.has_vmdesc == expect_vmdesc, "has_vmdesc %s, expected %s"
          % (rec.has_vmdesc, expect_vmdesc))

    # --- fresh destination loads the stream; it then migrates itself to a second file ---
    log("%s: loading into a fresh destination" % name)
    dargs = dest_args_of(v)
    dst = start_qemu("dst", subst(dargs, values) + ["-incoming", "defer"], work, vdir,
                     os.path.join(work, "dst.log"))
    if dest_caps:
        dst.cmd("migrate-set-capabilities", capabilities=caps_list(dest_caps))
    if v.get("dest_params"):
        dst.cmd("migrate-set-parameters", **v["dest_params"])
    if v["mode"] == "stopped-file":
        dst.cmd("migrate-incoming", uri="file:%s" % stream_path)
    elif mf:
        # replay the recorded connections: main stream first, then the channels by id
        dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
        multifd.replay(incoming_port(dst),
                       [stream] + [mf["channels"][k] for k in sorted(mf["channels"])])
    else:
        dst.cmd("migrate-incoming", uri="exec:cat %s" % stream_path)
    dst.wait_migration(timeout=300)
    ver, ramblocks, pm, dlog = resave_destination(dst, v, work, "dst")
    stop_qemu(dst)

    check(rec.block_order == ver.block_order, "block order differs")
    if caps.get("x-ignore-shared"):
        check(all("mr_addr" in f for f in rec.mem_size_fields.values()), "no mr_addr fields")
    checks = ["destination reached 'completed' and stayed paused",
              "re-migrated stream covers every page of every block",
              "info ramblock matches MEM_SIZE",
              "pmemsave of %s agrees" % ", ".join("%s[0x%x,0x%x)" % k for k in pm)]
    if mf:
        pver = pdst_view[0]
        check(pver.block_order == ver.block_order
              and all(pver.blocks[b] == ver.blocks[b] for b in ver.block_order),
              "the relayed destination and the replayed one hold different RAM")
        checks.append("the destination of the relayed migration and a fresh one fed the "
                      "recorded connections hold the same RAM")
        ver = pver  # the manifest's hashes: the relayed migration's destination
    # recorded stream decode
    shared = v.get("shared_blocks", [])
    for b in rec.block_order:
        npages = len(rec.blocks[b]) // ramdecode.PAGE
        if b in shared:
            check(len(rec.received[b]) == 0, "shared block %s has pages in stream" % b)
            continue
        if not mapped:
            # (a mapped-ram file holds only the non-zero pages; the others are zero)
            check(len(rec.received[b]) == npages, "recorded stream does not cover block %s" % b)
        check(rec.blocks[b] == ver.blocks[b],
              "recorded stream decode of %s disagrees with the destination" % b)
    checks.append("decoding the recorded stream%s gives the same blocks"
                  % (" and channels (pages applied at the sync points)" if mf else "") +
                  (" (except x-ignore-shared %s)" % shared if shared else ""))
    log("%s: cross-checks OK: %s" % (name, "; ".join(checks)))

    # --- write outputs ---
    stream_file = "stream.bin"
    if mf:
        stream_file = "stream.bin.zst"
        write_zst(stream_path, os.path.join(vdir, stream_file), stream)
        mf["files"] = []
        for k in sorted(mf["channels"]):
            data = mf["channels"][k]
            raw = os.path.join(work, "channel-%d.bin" % k)
            fname = "channel-%d.bin.zst" % k
            write_zst(raw, os.path.join(vdir, fname), data)
            mf["files"].append((k, fname, data))
    elif len(stream) > COMPRESS_ABOVE:
        stream_file = "stream.bin.zst"
        write_zst(stream_path, os.path.join(vdir, stream_file), stream)
    else:
        shutil.copyfile(stream_path, os.path.join(vdir, stream_file))
    version = subprocess.run([Qemu.BINARY, "--version"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.splitlines()[0]
    version = version.replace("QEMU emulator version ", "").strip()
    description = v["description"]
    if state.get("converge"):
        description += (" Converged after the script set %s."
                        % ", ".join("%s=%s" % kv for kv in state["converge"].items()))
    elif v.get("controller"):
        description += " Converged on its own (parameters never changed)."
    manifest = {
        "name": name,
        "description": description,
        "qemu_version": version,
        "machine_type": v["machine"],
        "accel": v["accel"],
        "source_args": v["args"],
        "destination_args": dargs,
        "capabilities": caps,
        "parameters": params,
        "stream_file": stream_file,
        "stream_len": len(stream),
        "stream_sha256": sha256(stream),
        "has_vmdesc": rec.has_vmdesc,
        "blocks": [{"idstr": b, "used_length": len(ver.blocks[b]),
                    "sha256": sha256(ver.blocks[b])} for b in ver.block_order],
        "query_migrate": qm,
    }
    if v.get("min_version"):
        manifest["min_version"] = v["min_version"]
    if v["mode"] == "stopped-file":
        # how a destination loads it: decompressed to a file, `migrate-incoming file:PATH`
        manifest["incoming"] = "file"
        manifest["destination_capabilities"] = dest_caps
        manifest["destination_parameters"] = v.get("dest_params", {})
    if mf:
        manifest["destination_capabilities"] = dest_caps
        manifest["destination_parameters"] = v.get("dest_params", {})
        summaries = {s["id"]: s for s in mf["summaries"]}
        manifest["multifd"] = {
            "channels": len(mf["files"]),
            "compression": params.get("multifd-compression", "none"),
            "uuid": mf["inits"][0]["uuid"],
            "sync_points": mstats["sync_points"],
            "duplicate_page_writes": mstats["duplicate_writes"],
            "channel_files": [dict({"id": k, "file": fname, "len": len(data),
                                    "sha256": sha256(data)},
                                   **{key: summaries[k][key] for key in
                                      ("packets", "sync_packets", "normal_pages", "zero_pages")})
                              for k, fname, data in mf["files"]],
        }
    with open(os.path.join(vdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    summ = rec.summary()
    summ["stream_len"] = len(stream)
    summ["file_size"] = os.path.getsize(os.path.join(vdir, stream_file))
    if mf:
        summ["multifd"] = manifest["multifd"]
        summ["channel_file_sizes"] = [os.path.getsize(os.path.join(vdir, f))
                                      for _, f, _ in mf["files"]]
        summ["source_ram"] = info["ram"]
    summ["converge"] = state.get("converge")
    summ["dest_log"] = dlog.strip()
    return summ


QEMU_VERSIONS = ("7.2", "10.0", "11.1")


def version_tuple(label):
    """"10.0" -> (10, 0), for comparing QEMU versions."""
    return tuple(int(x) for x in label.split("."))


def qemu_command(version):
    """The wrapper scripts/qemu-versions.sh wrote, or Debian's 7.2 on the PATH."""
    d = os.environ.get("RAMSTREAM_QEMU_DIR", "/opt/ramstream-qemu")
    w = os.path.join(d, "bin", "qemu-" + version)
    if os.access(w, os.X_OK):
        return w
    if version == "7.2":
        return "qemu-system-x86_64"
    sys.exit("QEMU %s is not installed at %s: run conformance-vectors/scripts/qemu-versions.sh %s"
             % (version, w, version))


def for_version(v, version):
    """A vector definition rewritten for another QEMU version: its machine types and name."""
    if version == "7.2":
        return v

    def sub(x):
        if isinstance(x, str):
            # Since QEMU 8.2 x-ignore-shared skips only shared blocks backed by a named file
            # (migration/ram.c ramblock_is_ignored: qemu_ram_is_named_file), not memfd: use a
            # shared file backend, a fresh unlinked file in /dev/shm for each QEMU.
            x = x.replace("memory-backend-memfd,id=pc.ram,size=64M,share=on",
                          "memory-backend-file,id=pc.ram,size=64M,mem-path=/dev/shm,share=on")
            return x.replace("-7.2", "-" + version)
        if isinstance(x, list):
            return [sub(i) for i in x]
        return x
    w = dict(v)
    w["name"] = "%s-%s" % (version, v["name"])
    w["machine"] = sub(v["machine"])
    w["args"] = sub(v["args"])
    w["description"] = v["description"].replace("pc-i440fx-7.2", "pc-i440fx-" + version) \
        .replace("pc-q35-7.2", "pc-q35-" + version) \
        .replace("shared memfd backend", "shared file backend (a fresh unlinked file in /dev/shm)") \
        .replace("zero-filled destination memfd", "zero-filled destination file") \
        + " Recorded from QEMU %s." % version
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="record only this vector (repeatable)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--qemu", default="7.2", choices=QEMU_VERSIONS,
                    help="the QEMU version to record from (default 7.2)")
    a = ap.parse_args()
    global VECTORS_DEF
    VECTORS_DEF = [for_version(v, a.qemu) for v in VECTORS_DEF
                   if (a.qemu == "7.2" or not v.get("only_7_2"))
                   and version_tuple(a.qemu) >= version_tuple(v.get("min_version", "7.2"))]
    Qemu.BINARY = qemu_command(a.qemu)
    Qemu.VERSION = a.qemu
    names = [v["name"] for v in VECTORS_DEF]
    if a.list:
        print("\n".join(names))
        return 0
    sel = VECTORS_DEF
    if a.only:
        for n in a.only:
            if n not in names:
                ap.error("unknown vector %s (have: %s)" % (n, ", ".join(names)))
        sel = [v for v in VECTORS_DEF if v["name"] in a.only]
    for tool in (Qemu.BINARY, "zstd"):
        if not shutil.which(tool):
            sys.exit("missing %s: apt-get update && apt-get install -y qemu-system-x86 zstd"
                     % tool)
    scratch = tempfile.mkdtemp(prefix="rsrec-")
    if not a.keep:
        atexit.register(shutil.rmtree, scratch, True)
    linux_files = None
    if any(v["guest"] == "linux" for v in sel):
        k, i, pkg = guests.linux_guest()
        linux_files = (k, i)
        log("linux guest: %s" % pkg)
    results = {}
    for v in sel:
        results[v["name"]] = record(v, scratch, linux_files)
        kill_all()
    log("summary:")
    for n, s in results.items():
        log("  %s: %s" % (n, json.dumps(s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
