#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other, one process each.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs `cargo +nightly` and cargo-fuzz; without them it says so and exits 0 (CI runs the
# committed corpus through `cargo test` anyway). A crash, leak, timeout or OOM fails the
# script with the reproducer's path and its bytes in hex; copy the reproducer into
# fuzz/regressions/<target>/ once fixed so `cargo test` replays it forever.
#
# New inputs go to fuzz/target/work-corpus/<target>/ (not committed); the committed seeds in
# fuzz/corpus/<target>/ are read only. Builds are optimised with debug assertions and
# overflow checks on (`-O -a`): an arithmetic overflow is a finding, not a silent wrap.
set -euo pipefail

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo +nightly or cargo-fuzz missing; skipping fuzzing" >&2
    exit 0
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p target
if ! cargo +nightly fuzz build -O -a >target/fuzz-build.log 2>&1; then
    cat target/fuzz-build.log
    exit 1
fi

status=0
for t in "${targets[@]}"; do
    work="target/work-corpus/$t"
    art="artifacts/$t"
    mkdir -p "$work" "$art" "corpus/$t"
    log="target/fuzz-$t.log"
    echo "== $t: ${secs}s"
    before=$(ls -1 "$art" | wc -l)
    # The byte-stream targets get the format's tokens (written by make-seeds).
    case "$t" in
        stream_split | differential_split | ram_records | configuration | balloon_runs)
            dict=(-dict=data/stream.dict) ;;
        *) dict=() ;;
    esac
    if cargo +nightly fuzz run -O -a "$t" "$work" "corpus/$t" -- "${dict[@]}" \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$art/" >"$log" 2>&1; then
        grep -E '^Done' "$log" || true
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
    else
        status=1
        echo "!! $t FAILED (full log: fuzz/$log):"
        grep -E -A2 'panicked|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" | cut -c1-300 | head -20 || true
        new=$(( $(ls -1 "$art" | wc -l) - before ))
        for f in $(ls -1t "$art" | head -n "$new"); do
            echo "reproducer: fuzz/$art/$f"
            echo "reproduce:  cargo +nightly fuzz run -O -a $t fuzz/$art/$f"
            echo "input ($(wc -c <"$art/$f") bytes, hex, first 1 KiB):"
            { od -An -tx1 -v "$art/$f" | head -64; } || true
        done
    fi
done
exit $status
