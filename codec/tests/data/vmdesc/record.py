#!/usr/bin/env python3
"""Re-make the vmdesc test data from a real QEMU (see README.md).

Starts qemu-system-x86_64 with one of the configurations below, optionally lets
the guest run for a moment, records `info registers`, migrates to a file with
`exec:cat > FILE`, and cuts the recording: everything from the first FULL
section (type 0x04) to the end of the file (device sections, EOF byte 0x00 and
the VMDESCRIPTION trailer) is written to NAME.tail.bin. The RAM sections before
it are walked with a minimal parser for QEMU 7.2 precopy records (MEM_SIZE,
ZERO, PAGE, EOS, CONTINUE) and dropped.

Usage: record.py NAME [OUTDIR]      (Python standard library only)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    # pc-i440fx-7.2, no default devices, never run (-S).
    "i440fx-nodefaults": dict(
        args=["-M", "pc-i440fx-7.2,accel=kvm", "-m", "32", "-nodefaults"], run=0.0),
    # pc-i440fx-7.2 with default devices (VGA, e1000 NIC, IDE CD, floppy) plus more.
    "i440fx-devices": dict(
        args=["-M", "pc-i440fx-7.2,accel=kvm", "-m", "32",
              "-device", "virtio-net-pci",
              "-device", "virtio-balloon-pci", "-device", "qemu-xhci",
              "-device", "usb-tablet", "-device", "rtl8139", "-device", "i6300esb"],
        run=1.0),
    # pc-q35-7.2 with default devices plus more, after running SeaBIOS briefly.
    "q35-devices": dict(
        args=["-M", "pc-q35-7.2,accel=kvm", "-m", "32",
              "-device", "virtio-balloon-pci", "-device", "e1000e",
              "-device", "usb-ehci", "-device", "usb-kbd",
              "-device", "intel-iommu"],
        run=1.0),
}


class Qmp:
    def __init__(self, path):
        for _ in range(100):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("no QMP socket")
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **arguments):
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(reply["error"])


def ram_section_end(data, pos):
    """Skip one 7.2 'ram' section body starting at pos; return the offset after EOS."""
    while True:
        w = int.from_bytes(data[pos:pos + 8], "big")
        pos += 8
        flags, addr = w & 0xFFF, w & ~0xFFF
        if flags & 0x04:  # MEM_SIZE
            total = addr
            while total > 0:
                n = data[pos]
                pos += 1 + n
                total -= int.from_bytes(data[pos:pos + 8], "big")
                pos += 8
        elif flags & 0x02 or flags & 0x08:  # ZERO or PAGE
            if not flags & 0x20:
                pos += 1 + data[pos]
            pos += 1 if flags & 0x02 else 4096
        elif flags & 0x10:  # EOS
            return pos
        else:
            raise RuntimeError("unexpected ram flags %#x at %#x" % (flags, pos - 8))


def first_full_section(data):
    assert data[:8] == b"QEVM\x00\x00\x00\x03"
    pos = 8
    assert data[pos] == 0x07  # CONFIGURATION, no subsections expected here
    pos += 1 + 4 + int.from_bytes(data[pos + 1:pos + 5], "big")
    while True:
        t = data[pos]
        if t == 0x04:
            return pos
        if t == 0x01:
            n = data[pos + 5]
            pos += 1 + 4 + 1 + n + 8
        elif t in (0x02, 0x03):
            pos += 5
        else:
            raise RuntimeError("unexpected section type %#x at %#x" % (t, pos))
        pos = ram_section_end(data, pos)
        assert data[pos] == 0x7E
        pos += 5


def main():
    name = sys.argv[1]
    outdir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    cfg = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        mig = os.path.join(tmp, "stream.mig")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", *cfg["args"], "-display", "none", "-S",
             "-qmp", "unix:%s,server=on,wait=off" % sock])
        try:
            q = Qmp(sock)
            if cfg["run"]:
                q.cmd("cont")
                time.sleep(cfg["run"])
                q.cmd("stop")
            regs = q.cmd("human-monitor-command", **{"command-line": "info registers"})
            q.cmd("migrate", uri="exec:cat > %s" % mig)
            while q.cmd("query-migrate").get("status") not in ("completed", "failed"):
                time.sleep(0.05)
            status = q.cmd("query-migrate")["status"]
            q.cmd("quit")
        finally:
            try:
                qemu.wait(timeout=10)
            except subprocess.TimeoutExpired:
                qemu.kill()
        if status != "completed":
            raise RuntimeError("migration " + status)
        data = open(mig, "rb").read()
    start = first_full_section(data)
    with open(os.path.join(outdir, name + ".tail.bin"), "wb") as f:
        f.write(data[start:])
    with open(os.path.join(outdir, name + ".registers.txt"), "w") as f:
        f.write(regs.replace("\r\n", "\n"))
    print("%s: stream %d bytes, tail %d bytes from offset %#x" % (name, len(data), len(data) - start, start))


if __name__ == "__main__":
    main()
