#!/usr/bin/env bash
# Installs the QEMU versions ramstream is tested against, beside Debian 12's own QEMU 7.2, and
# writes one wrapper command per version into "$RAMSTREAM_QEMU_DIR/bin" (default
# /opt/ramstream-qemu/bin):
#
#   qemu-7.2   Debian 12's qemu-system-x86_64 (apt-get install qemu-system-x86)
#   qemu-10.0  Debian's bookworm-backports build (1:10.0.x), unpacked with `dpkg -x` into a
#              private prefix; it runs on bookworm's own libraries
#   qemu-11.1  Debian unstable's build (1:11.1.x), which needs newer libraries: a minimal
#              debootstrap root; the wrapper runs that root's QEMU with the root's own dynamic
#              loader and libraries, so paths (sockets, files, kernels) are the host's
#
# Each wrapper behaves like qemu-system-x86_64 (same arguments; firmware and modules of its own
# version). The tests find them through RAMSTREAM_QEMU_DIR (conformance-vectors/src/qemu.rs).
#
# Idempotent: a version whose wrapper already answers `--version` with the expected version is
# left alone. The package mirror is read from this machine's apt sources, never written here.
#
# Usage: conformance-vectors/scripts/qemu-versions.sh [7.2] [10.0] [11.1]   (default: all three)
set -euo pipefail

DIR=${RAMSTREAM_QEMU_DIR:-/opt/ramstream-qemu}
BIN="$DIR/bin"
export DEBIAN_FRONTEND=noninteractive
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(7.2 10.0 11.1)
mkdir -p "$BIN"

say() { echo "qemu-versions: $*" >&2; }

# The Debian mirror this machine's apt uses (debian-mirror.sh); none is an error here.
. "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"
mirror() {
    local uri
    uri=$(debian_mirror)
    [ -n "$uri" ] || { say "no Debian mirror found in this machine's apt sources"; exit 1; }
    echo "$uri"
}

# `--version` of a wrapper, or nothing.
version_of() { "$1" --version 2>/dev/null | head -n 1 | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p'; }

wrapper_ok() { # wrapper expected-major.minor
    local v
    [ -x "$1" ] || return 1
    v=$(version_of "$1")
    case "$v" in "$2".*) return 0 ;; *) return 1 ;; esac
}

install_7_2() {
    if ! command -v qemu-system-x86_64 >/dev/null || ! dpkg -s qemu-system-x86 >/dev/null 2>&1; then
        apt-get update -q
        # Not qemu-utils: the image's newer qemu-utils conflicts with Debian's QEMU 7.2.
        apt-get install -y -q qemu-system-x86
    fi
    cat >"$BIN/qemu-7.2" <<'EOF'
#!/bin/sh
exec /usr/bin/qemu-system-x86_64 "$@"
EOF
    chmod +x "$BIN/qemu-7.2"
}

install_10_0() {
    local prefix="$DIR/10.0" tmp m
    if wrapper_ok "$BIN/qemu-10.0" 10.0; then return; fi
    m=$(mirror)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $m bookworm-backports main" \
        >"$tmp/sources.list"
    local apt=(apt-get -q -o "Dir::Etc::SourceList=$tmp/sources.list"
        -o "Dir::Etc::SourceParts=$tmp/none" -o "Dir::State::Lists=$tmp/lists"
        -o "Dir::Cache=$tmp/cache" -o "APT::Get::List-Cleanup=0")
    say "downloading QEMU 10.0 from bookworm-backports"
    "${apt[@]}" update
    (cd "$tmp/debs" && "${apt[@]}" download qemu-system-x86 qemu-system-common qemu-system-data)
    rm -rf "$prefix.new"
    mkdir -p "$prefix.new"
    for d in "$tmp"/debs/*.deb; do dpkg -x "$d" "$prefix.new"; done
    rm -rf "$prefix"
    mv "$prefix.new" "$prefix"
    cat >"$BIN/qemu-10.0" <<EOF
#!/bin/sh
# QEMU 10.0 (Debian bookworm-backports), unpacked into $prefix; bookworm's own libraries.
QEMU_MODULE_DIR="$prefix/usr/lib/x86_64-linux-gnu/qemu" exec "$prefix/usr/bin/qemu-system-x86_64" \\
    -L "$prefix/usr/share/qemu" -L /usr/share/qemu -L /usr/share/seabios "\$@"
EOF
    chmod +x "$BIN/qemu-10.0"
}

install_11_1() {
    local root="$DIR/sid" m
    if wrapper_ok "$BIN/qemu-11.1" 11.1; then return; fi
    command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
    m=$(mirror)
    if [ ! -x "$root/usr/bin/qemu-system-x86_64" ]; then
        say "debootstrapping Debian unstable with QEMU into $root (a few minutes)"
        rm -rf "$root.new"
        debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
            --include=qemu-system-x86,qemu-system-data,seabios,ipxe-qemu sid "$root.new" "$m" >&2
        rm -rf "$root"
        mv "$root.new" "$root"
    fi
    local ld="$root/usr/lib64/ld-linux-x86-64.so.2"
    [ -e "$ld" ] || ld="$root/lib64/ld-linux-x86-64.so.2"
    cat >"$BIN/qemu-11.1" <<EOF
#!/bin/sh
# QEMU 11.1 (Debian unstable) from the debootstrap root $root, run with that root's dynamic
# loader and libraries so that every path it is given is the host's.
QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu" exec "$ld" \\
    --library-path "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \\
    "$root/usr/bin/qemu-system-x86_64" \\
    -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" -L "$root/usr/lib/ipxe/qemu" "\$@"
EOF
    chmod +x "$BIN/qemu-11.1"
}

for v in "${versions[@]}"; do
    case "$v" in
    7.2) install_7_2 ;;
    10.0) install_10_0 ;;
    11.1) install_11_1 ;;
    *) say "unknown version $v (expected 7.2, 10.0 or 11.1)"; exit 2 ;;
    esac
    w="$BIN/qemu-$v"
    if ! wrapper_ok "$w" "$v"; then
        say "$w does not run QEMU $v: $("$w" --version 2>&1 | head -n 3)"
        exit 1
    fi
    say "$w: $("$w" --version | head -n 1)"
done
