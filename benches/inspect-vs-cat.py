#!/usr/bin/env python3
"""Reading path (issue #15): `ramstream inspect FILE` against `cat FILE > /dev/null`, 7
interleaved runs each, medians and GB/s; with two binaries, a before/after in one run.

    benches/inspect-vs-cat.py BIN [OTHER_BIN] FILE...   (release builds; *.mig files are
    decoded with --dialect ramstream-balloon-v1, as `ramstream send file:` writes them; a
    multifd recording's channel files beside FILE are counted in its size and cat too)
"""
import subprocess, sys, time, os, statistics
args = sys.argv[1:]
bins = [a for a in args[:2] if os.access(a, os.X_OK) and not a.endswith((".bin", ".mig"))]
base, new = (bins + bins)[:2]
files = args[len(bins):]
for f in files:
    d = ["--dialect", "ramstream-balloon-v1"] if f.endswith(".mig") else []
    # A multifd recording's channel files beside it (F.multifd-0, ...) are read too.
    parts = [f]
    while os.path.isfile(f"{f}.multifd-{len(parts) - 1}"):
        parts.append(f"{f}.multifd-{len(parts) - 1}")
    size = sum(os.path.getsize(p) for p in parts)
    t = {"cat": [], "base": [], "new": []}
    for _ in range(7):
        for k, cmd in (("cat", ["cat", *parts]), ("base", [base, "inspect", *d, f]), ("new", [new, "inspect", *d, f])):
            s = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True); t[k].append(time.perf_counter() - s)
    m = {k: statistics.median(v) for k, v in t.items()}
    print(f"{os.path.basename(f)} {size/1e6:.1f} MB: " + "  ".join(f"{k} {m[k]*1e3:.0f} ms {size/m[k]/1e9:.2f} GB/s" for k in m)
          + f"  | new/cat {m['new']/m['cat']:.2f}x  base/cat {m['base']/m['cat']:.2f}x")
