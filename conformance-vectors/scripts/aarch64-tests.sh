#!/usr/bin/env bash
# Cross-builds ramstream-codec's tests for aarch64 and runs them under `qemu-aarch64` user
# emulation: the NEON XBZRLE and zero-page kernels against the portable ones (the proptests
# pin every available kernel to the same bytes), and `Kernel::detect() == Kernel::Neon`.
#
# rustup cannot download targets here, so the toolchain is Debian unstable's: rustc, cargo and
# libstd-rust-dev:arm64 with the aarch64 cross gcc and qemu-user, in a debootstrap root of its
# own, "$RAMSTREAM_AARCH64_DIR/sid" (default /opt/ramstream-aarch64/sid). That root starts as a
# copy of the unstable root conformance-vectors/scripts/qemu-versions.sh made for QEMU 11.1
# ("$RAMSTREAM_QEMU_DIR/sid", left untouched), or is debootstrapped when there is none; the
# package mirror is read from this machine's apt sources, never written here. The crates are
# fetched on the host into "$RAMSTREAM_AARCH64_DIR/cargo-home"; the root's cargo builds offline
# from there, with the workspace bind-mounted at /src and its target directory kept in the root.
#
# Idempotent: a second run reuses the root, the crates and the build (under a minute). Runs
# are serialised by a lock in the directory. As root (debootstrap, chroot, mounts).
#
# When the toolchain can't be set up it prints "aarch64-tests: skipped: <why>" and exits 0,
# unless RAMSTREAM_REQUIRE_AARCH64=1, when it fails. A failing test always fails.
#
# Usage: conformance-vectors/scripts/aarch64-tests.sh [`cargo test` target selection]
#   default `--lib`: the codec's unit tests, which hold the kernel tests (a few minutes);
#   `--lib --tests` adds the integration tests (about 5 more under emulation), `--doc` the
#   doc tests (run separately).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)

DIR=${RAMSTREAM_AARCH64_DIR:-/opt/ramstream-aarch64}
QEMU_ROOT=${RAMSTREAM_QEMU_DIR:-/opt/ramstream-qemu}/sid
ROOT="$DIR/sid"
TARGET=aarch64-unknown-linux-gnu
# zstd: the codec's integration tests unpack the multifd vectors with it (`--tests`).
PACKAGES=(rustc cargo libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    qemu-user zstd)
export DEBIAN_FRONTEND=noninteractive

say() { echo "aarch64-tests: $*" >&2; }
# Can't set up: skip, or fail under RAMSTREAM_REQUIRE_AARCH64=1.
unavailable() {
    if [ "${RAMSTREAM_REQUIRE_AARCH64:-0}" = 1 ]; then
        say "FAILED (RAMSTREAM_REQUIRE_AARCH64=1): $*"
        exit 1
    fi
    say "skipped: $*"
    exit 0
}

[ "$(uname -m)" = x86_64 ] || unavailable "this script sets up an x86-64 host, not $(uname -m)"
[ "$(id -u)" = 0 ] || unavailable "needs root (debootstrap, chroot, bind mounts)"
command -v cargo >/dev/null || unavailable "no host cargo to fetch the crates with"

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock 9

# Mount points made by this run, unmounted on exit (in reverse order).
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null || true
    done
    mounts=()
}
trap cleanup EXIT

# Unmounts everything mounted under DIR (left by an interrupted run), so that removing DIR
# can't reach into /dev or the workspace.
unmount_under() {
    local m
    for m in $(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
}

# mount_in ROOT: /proc and /dev for the chroot's tools (dpkg scripts, qemu-aarch64).
mount_in() {
    local r=$1
    mkdir -p "$r/proc" "$r/dev"
    mountpoint -q "$r/proc" || { mount -t proc proc "$r/proc" && mounts+=("$r/proc"); }
    mountpoint -q "$r/dev" || { mount --bind /dev "$r/dev" && mounts+=("$r/dev"); }
}

# The Debian mirror this machine's apt uses, or nothing (debian-mirror.sh).
. conformance-vectors/scripts/debian-mirror.sh
mirror() { debian_mirror; }

# The root is ready when it has the tools and the marker naming the packages it was made with.
root_ready() {
    [ -f "$ROOT/.ramstream-aarch64" ] && [ "$(cat "$ROOT/.ramstream-aarch64")" = "${PACKAGES[*]}" ] \
        && [ -x "$ROOT/usr/bin/cargo" ] && [ -x "$ROOT/usr/bin/aarch64-linux-gnu-gcc" ] \
        && [ -x "$ROOT/usr/bin/qemu-aarch64" ] && [ -d "$ROOT/usr/lib/rustlib/$TARGET/lib" ]
}

setup_root() {
    local new="$ROOT.new" m
    unmount_under "$new"
    rm -rf --one-file-system "$new"
    if [ -x "$QEMU_ROOT/usr/bin/apt-get" ]; then
        say "copying the Debian unstable root $QEMU_ROOT to $ROOT"
        cp -a "$QEMU_ROOT" "$new"
    else
        say "no Debian unstable root at $QEMU_ROOT: debootstrapping one into $ROOT (a few minutes)"
        command -v debootstrap >/dev/null \
            || { apt-get update -q && apt-get install -y -q debootstrap; } >&2 \
            || return 1
        m=$(mirror)
        [ -n "$m" ] || { say "no Debian mirror found in this machine's apt sources"; return 1; }
        debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
            sid "$new" "$m" >&2 || return 1
    fi
    cp -L /etc/resolv.conf "$new/etc/resolv.conf"
    mount_in "$new"
    say "installing ${PACKAGES[*]} in the root"
    # Unstable's Release files can be past their Valid-Until on a mirror snapshot.
    chroot "$new" /bin/sh -ec "
        dpkg --add-architecture arm64
        apt-get -q -o Acquire::Check-Valid-Until=false update
        apt-get -q -y -o Acquire::Check-Valid-Until=false -o Dpkg::Use-Pty=0 install \
            --no-install-recommends \
            ${PACKAGES[*]}
        apt-get clean" >&2 || return 1
    cleanup
    echo "${PACKAGES[*]}" >"$new/.ramstream-aarch64"
    unmount_under "$ROOT"
    rm -rf --one-file-system "$ROOT"
    mv "$new" "$ROOT"
}

start=$SECONDS
if ! root_ready; then
    setup_root || unavailable "could not set up the aarch64 toolchain root in $ROOT (see above)"
    root_ready || unavailable "the root $ROOT lacks cargo, the aarch64 cross gcc, qemu-aarch64 or the aarch64 std"
fi
say "root ready in $((SECONDS - start)) s: $(chroot "$ROOT" rustc --version)"

# The crates, fetched by the host's cargo (which reaches the registry) for the root's offline
# cargo.
export CARGO_HOME_AARCH64="$DIR/cargo-home"
CARGO_HOME="$CARGO_HOME_AARCH64" cargo fetch --locked -q --manifest-path "$REPO/Cargo.toml" \
    || unavailable "could not fetch the crates into $CARGO_HOME_AARCH64"

mount_in "$ROOT"
mkdir -p "$ROOT/src" "$ROOT/cargo-home" "$ROOT/build"
mountpoint -q "$ROOT/src" && umount "$ROOT/src"
mount --bind "$REPO" "$ROOT/src" && mounts+=("$ROOT/src")
mountpoint -q "$ROOT/cargo-home" && umount "$ROOT/cargo-home"
mount --bind "$CARGO_HOME_AARCH64" "$ROOT/cargo-home" && mounts+=("$ROOT/cargo-home")

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--lib)
# The doc tests need their own run (`--doc` can't be mixed with other target selections).
runs=()
if [[ " ${args[*]} " == *" --doc "* ]]; then
    rest=()
    for a in "${args[@]}"; do [ "$a" = --doc ] || rest+=("$a"); done
    [ ${#rest[@]} -gt 0 ] && runs+=("${rest[*]}")
    runs+=(--doc)
else
    runs+=("${args[*]}")
fi

for run in "${runs[@]}"; do
    say "cargo test -p ramstream-codec --target $TARGET $run (under qemu-aarch64)"
    # shellcheck disable=SC2086 # $run is a list of arguments
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        CARGO_HOME=/cargo-home CARGO_TARGET_DIR=/build/target CARGO_TERM_COLOR=never \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
        RUST_BACKTRACE=1 \
        /bin/sh -c "cd /src && exec cargo test --offline --locked -p ramstream-codec --target $TARGET $run"
done
say "done in $((SECONDS - start)) s"
