#!/usr/bin/env bash
# Sender vs QEMU, side by side (issue #15): builds `ramstream` (release) and runs
# benches/vs_qemu.py, which migrates a 2 GiB guest with QEMU 7.2 (and 10.0 / 11.1 when
# $RAMSTREAM_QEMU_DIR/bin has them) and with `ramstream send`, interleaved, 5 times each,
# 0 / 16 / 512 MiB touched, to /dev/null and over loopback TCP, and prints the medians and
# their ratios to QEMU 7.2. Then runs benches/vs-qemu-load.sh (the receiving side) if present.
#
# Usage: benches/vs-qemu.sh [--quick] [vs_qemu.py options: --reps N --mem MiB --touch 0,16,512
#        --targets null,tcp --versions 7.2,10.0,11.1 --balloon 90]
#   --quick  1 repetition, a 256 MiB guest, /dev/null only (a smoke run).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export RAMSTREAM_QEMU_DIR=${RAMSTREAM_QEMU_DIR:-/opt/ramstream-qemu}
cargo build --release -q -p ramstream
exe=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/ramstream
python3 "$root/benches/vs_qemu.py" --exe "$exe" "$@"

# The loader side takes a vector and a repetition count, not vs_qemu.py's options: pass
# --reps on (1 with --quick).
reps=5
prev=
for a in "$@"; do
    case "$prev" in --reps) reps=$a ;; esac
    case "$a" in --quick) reps=1 ;; --reps=*) reps=${a#--reps=} ;; esac
    prev=$a
done
bash "$root/benches/vs-qemu-load.sh" "$root/conformance-vectors/vectors/linux-stopped" "$reps"
