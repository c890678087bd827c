"""Builds the guests used by record.py.

* no-OS guests: 512-byte boot sectors (raw disk images) assembled from the bytes below.
* Linux guest: the Debian bookworm kernel (linux-image-<ver>-amd64, fetched with
  `apt-get download`) and an initramfs (cpio newc + gzip, written by this module) holding
  busybox from Debian's busybox-static package and an /init script.
Build outputs go to conformance-vectors/guests/build/ (git-ignored).
"""

import glob
import gzip
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
GUESTS = os.path.join(os.path.dirname(HERE), "guests")
BUILD = os.path.join(GUESTS, "build")

# Real-mode boot sector code (loaded at 0000:7c00 by SeaBIOS).
BOOT_CODE = {
    # cli; L: hlt; jmp L   -- an idle CPU with interrupts off
    "idle": bytes.fromhex("fa" "f4" "ebfd"),
    # Increments one byte in each 4 KiB page of guest-physical 0x10000..0x8ffff, forever; the
    # byte offset inside the page moves by one per page and per 64 KiB segment pass, so pages
    # differ from one pass to the next by exactly one byte (ideal for XBZRLE).
    #   cli
    #   xor ax,ax ; mov ds,ax
    #   mov ax,0x1000 ; mov es,ax
    # seg: xor di,di
    # pg:  inc byte [es:di]
    #      add di,0x1001 ; jnc pg
    #      mov ax,es ; add ax,0x1000 ; cmp ax,0x9000 ; jb ok ; mov ax,0x1000
    # ok:  mov es,ax ; jmp seg
    "dirty": bytes.fromhex(
        "fa" "31c0" "8ed8" "b80010" "8ec0"
        "31ff"
        "26fe05"
        "81c70110" "73f7"
        "8cc0" "050010" "3d0090" "7203" "b80010"
        "8ec0" "ebe4"),
}


def boot_image(kind):
    code = BOOT_CODE[kind]
    img = bytearray(512)
    img[:len(code)] = code
    img[510:512] = b"\x55\xaa"
    return bytes(img)


INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs -o size=24m tmp /tmp
MODE=idle
for w in $(cat /proc/cmdline); do
  case "$w" in rsmode=*) MODE="${w#rsmode=}";; esac
done
echo "RAMSTREAM-GUEST-READY mode=$MODE"
if [ "$MODE" = balloon ]; then
  # virtio-balloon (modules, in dependency order): the host inflates it over QMP `balloon`
  ok=READY
  for m in $BALLOON_MODULES; do insmod /lib/modules/$m.ko || ok=FAILED; done
  echo "RAMSTREAM-BALLOON-$ok"
fi
if [ "$MODE" = dirty ]; then
  # 2 MiB of (compressible) text in tmpfs, then keep changing a few bytes of every 8th page
  yes "ramstream golden vector dirty page" | head -c 2097152 > /tmp/buf
  echo "RAMSTREAM-DIRTYING"
  i=0
  while true; do
    p=0
    while [ $p -lt 512 ]; do
      echo "$i.$p" | dd of=/tmp/buf bs=1 seek=$((p * 4096 + (i % 64) * 16)) conv=notrunc 2>/dev/null
      p=$((p + 8))
    done
    i=$((i + 1))
  done
fi
while true; do sleep 1000; done
"""


# The virtio-balloon driver and what it needs, in load order (Debian builds them as modules).
BALLOON_MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                   "virtio_pci", "virtio_balloon"]


def _run(cmd, cwd=None):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _apt_download(pkg, dldir):
    os.makedirs(dldir, exist_ok=True)
    debs = glob.glob(os.path.join(dldir, pkg + "_*.deb"))
    if not debs:
        _run(["apt-get", "download", pkg], cwd=dldir)
        debs = glob.glob(os.path.join(dldir, pkg + "_*.deb"))
    if len(debs) != 1:
        raise RuntimeError("expected one .deb for %s, got %s" % (pkg, debs))
    return debs[0]


def _kernel_package():
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise RuntimeError("cannot find the kernel package linux-image-amd64 depends on")


def _cpio_newc(entries):
    """entries: list of (name, mode, data(bytes) or None, rdevmajor, rdevminor)."""
    out = bytearray()
    ino = 1

    def pad4():
        while len(out) % 4:
            out.append(0)

    for name, mode, data, rmaj, rmin in entries + [("TRAILER!!!", 0, b"", 0, 0)]:
        data = data or b""
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0))
        out += hdr.encode() + nb
        pad4()
        out += data
        pad4()
        ino += 1
    return bytes(out)


def linux_guest():
    """Returns (kernel_path, initrd_path, kernel_version_string)."""
    os.makedirs(BUILD, exist_ok=True)
    dl = os.path.join(BUILD, "dl")
    kernel = os.path.join(BUILD, "vmlinuz")
    initrd = os.path.join(BUILD, "initramfs.cpio.gz")
    kver_file = os.path.join(BUILD, "kernel-package.txt")
    mods = os.path.join(BUILD, "modules")
    have_mods = all(os.path.exists(os.path.join(mods, m + ".ko")) for m in BALLOON_MODULES)
    if not (os.path.exists(kernel) and os.path.exists(kver_file) and have_mods):
        pkg = _kernel_package()
        deb = _apt_download(pkg, dl)
        x = os.path.join(dl, "kernel-x")
        shutil.rmtree(x, ignore_errors=True)
        _run(["dpkg-deb", "-x", deb, x])
        vm = glob.glob(os.path.join(x, "boot", "vmlinuz-*"))
        if len(vm) != 1:
            raise RuntimeError("no vmlinuz in %s" % deb)
        shutil.copyfile(vm[0], kernel)
        os.makedirs(mods, exist_ok=True)
        for m in BALLOON_MODULES:
            found = glob.glob(os.path.join(x, "lib", "modules", "*", "kernel", "**", m + ".ko"),
                              recursive=True)
            if len(found) != 1:
                raise RuntimeError("module %s not found (or not once) in %s" % (m, deb))
            shutil.copyfile(found[0], os.path.join(mods, m + ".ko"))
        shutil.rmtree(x)
        with open(kver_file, "w") as f:
            f.write(os.path.basename(deb) + "\n")
    busybox = os.path.join(BUILD, "busybox")
    if not os.path.exists(busybox):
        deb = _apt_download("busybox-static", dl)
        x = os.path.join(dl, "bb-x")
        shutil.rmtree(x, ignore_errors=True)
        _run(["dpkg-deb", "-x", deb, x])
        shutil.copyfile(os.path.join(x, "bin", "busybox"), busybox)
        shutil.rmtree(x)
    with open(busybox, "rb") as f:
        bb = f.read()
    entries = [
        ("bin", 0o40755, None, 0, 0),
        ("dev", 0o40755, None, 0, 0),
        ("dev/console", 0o20600, None, 5, 1),
        ("proc", 0o40755, None, 0, 0),
        ("sys", 0o40755, None, 0, 0),
        ("tmp", 0o41777, None, 0, 0),
        ("bin/busybox", 0o100755, bb, 0, 0),
        ("init", 0o100755,
         INIT_SCRIPT.replace("$BALLOON_MODULES", " ".join(BALLOON_MODULES)).encode(), 0, 0),
        ("lib", 0o40755, None, 0, 0),
        ("lib/modules", 0o40755, None, 0, 0),
    ]
    for m in BALLOON_MODULES:
        with open(os.path.join(mods, m + ".ko"), "rb") as f:
            entries.append(("lib/modules/%s.ko" % m, 0o100644, f.read(), 0, 0))
    data = gzip.compress(_cpio_newc(entries), compresslevel=6, mtime=0)
    with open(initrd, "wb") as f:
        f.write(data)
    with open(kver_file) as f:
        kver = f.read().strip()
    return kernel, initrd, kver


if __name__ == "__main__":
    # `python3 conformance-vectors/scripts/guests.py`: build the Linux guest (kernel and
    # initramfs) into guests/build/, as CI does before `cargo test`.
    k, i, pkg = linux_guest()
    print("linux guest: %s\n  kernel %s\n  initrd %s" % (pkg, k, i))
