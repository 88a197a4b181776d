#!/usr/bin/env python3
"""Write N deterministic NDJSON sensor readings for the ingest benchmark.

    gen_readings.py OUT [--count N] [--channels C] [--seed S] [--force]

Each line looks like
  {"kind":"reading","ts":"2026-11-22T00:00:00.000Z","channel":"plant.line0.unit0.temp",
   "value":50.324,"quality":"good","source":"plc0"}
(on one line). Channels are visited round-robin, timestamps advance 1 ms per
line, values come from a seeded RNG. All values stay inside [-1000, 1000].

A sidecar OUT.meta.json records what was generated; when it matches the request
and the file size, the existing file is reused and nothing is written.
"""
import argparse
import datetime as dt
import json
import os
import random
import sys
import time

START = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)
# (kind, low, high): every value lies in [low, high).
KINDS = [
    ("temp", 20.0, 90.0), ("pres", 0.5, 12.0), ("flow", 0.0, 500.0),
    ("level", 0.0, 100.0), ("speed", 0.0, 750.0), ("power", -50.0, 950.0),
    ("vib", 0.0, 25.0), ("curr", 0.0, 400.0),
]
UNITS_PER_LINE = 25
CHUNK_BYTES = 16 << 20


def channel_table(n):
    """One (prefix, low, span, source) per channel: plant.line{L}.unit{U}.{kind}."""
    out = []
    per_line = UNITS_PER_LINE * len(KINDS)
    for j in range(n):
        kind, lo, hi = KINDS[j % len(KINDS)]
        line, unit = j // per_line, (j // len(KINDS)) % UNITS_PER_LINE
        name = f"plant.line{line}.unit{unit}.{kind}"
        out.append((f'Z","channel":"{name}","value":', lo, hi - lo, f"plc{line}"))
    return out


def generate(path, count, channels, seed):
    rng = random.Random(seed)
    chans = channel_table(channels)
    millis = [f"{m:03d}" for m in range(1000)]
    # Quality: ~0.2 % bad, ~1 % uncertain, the rest good; tails per (channel, quality).
    tails = [
        {q: f',"quality":"{q}","source":"{src}"}}\n' for q in ("good", "uncertain", "bad")}
        for (_, _, _, src) in chans
    ]
    rand = rng.random
    tmp = path + ".tmp"
    i = 0
    with open(tmp, "w", encoding="ascii", newline="\n", buffering=CHUNK_BYTES) as f:
        buf, size = [], 0
        while i < count:
            # One second (1000 lines) shares the timestamp prefix.
            sec = i // 1000
            head = '{"kind":"reading","ts":"' + (START + dt.timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S.")
            lines = []
            for k in range(i, min(count, (sec + 1) * 1000)):
                c = k % channels
                mid, lo, span, _ = chans[c]
                r = rand()
                q = "good" if r > 0.012 else ("bad" if r < 0.002 else "uncertain")
                lines.append(f"{head}{millis[k % 1000]}{mid}{lo + span * rand():.3f}{tails[c][q]}")
            i += len(lines)
            chunk = "".join(lines)
            buf.append(chunk)
            size += len(chunk)
            if size >= CHUNK_BYTES:
                f.write("".join(buf))
                buf, size = [], 0
        f.write("".join(buf))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--force", action="store_true", help="regenerate even if a matching file exists")
    a = ap.parse_args()
    if a.count < 0 or a.channels < 1:
        ap.error("--count must be >= 0 and --channels >= 1")

    meta_path = a.out + ".meta.json"
    want = {"count": a.count, "channels": a.channels, "seed": a.seed, "version": 1}
    if not a.force and os.path.exists(a.out) and os.path.exists(meta_path):
        try:
            with open(meta_path) as m:
                meta = json.load(m)
            if {k: meta.get(k) for k in want} == want and meta.get("bytes") == os.path.getsize(a.out):
                print(f"reusing {a.out} ({a.count} readings)", file=sys.stderr)
                return
        except (OSError, ValueError):
            pass

    if os.path.exists(meta_path):
        os.remove(meta_path)
    t0 = time.perf_counter()
    generate(a.out, a.count, a.channels, a.seed)
    secs = time.perf_counter() - t0
    with open(meta_path, "w") as m:
        json.dump({**want, "bytes": os.path.getsize(a.out)}, m)
    print(f"wrote {a.count} readings to {a.out} in {secs:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
