#!/usr/bin/env bash
# Start-up latency benchmark:
#   1. `edgeguard validate SPEC` on a generated spec with one Modbus source of N points;
#   2. `edgeguard acquire pipelines/demo.yaml --once --store DB --no-progress -q`.
# Uses hyperfine (--warmup 3 -N) when installed (installs it when root), else a
# Python loop; reports the median in ms.
#
# Usage: benches/validate_spec.sh [--runs N] [--points N] [--bin PATH]
#   --runs N    timed runs per command (default 30)
#   --points N  Modbus points in the generated spec (default 500)
#   --bin PATH  edgeguard binary (default ${CARGO_TARGET_DIR:-target}/release/edgeguard)
# Env: BENCH_DIR (default /tmp/edgeguard-bench) holds the spec and the DB.
# Appends one JSON line per command to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS=30 POINTS=500
while (($#)); do
  case $1 in
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --points) POINTS=${2:?--points needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$RUNS" --runs
is_uint "$POINTS" --points
((RUNS > 0)) || die "--runs must be at least 1"

need_bin
DEMO=$ROOT/pipelines/demo.yaml
[[ -f $DEMO ]] || die "missing $DEMO"
if ! command -v hyperfine >/dev/null; then
  echo "hyperfine not found (apt-get install -y hyperfine); trying to install it" >&2
  apt_install hyperfine || echo "no hyperfine: timing with a Python loop" >&2
fi

mkdir -p "$DIR"
SPEC=$DIR/modbus-$POINTS.yaml
python3 - "$SPEC" "$POINTS" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
head = """version: 1
name: validate-bench
store: {path: validate.duckdb}
sources:
  plc1:
    type: modbus
    transport: tcp
    address: 127.0.0.1:5020
    unit: 1
    interval: 1s
    points:
"""
points = "".join(f"      - {{channel: plant.p{i}, table: holding, address: {2 * i}, type: f32}}\n" for i in range(n))
with open(path, "w") as f:
    f.write(head + points)
EOF

python3 - "$RESULTS" "$RUNS" "$(git_commit)" "$POINTS" \
  "$BIN" "$SPEC" "$DEMO" "$DIR/once.duckdb" <<'EOF'
import datetime, json, shlex, shutil, statistics, subprocess, sys, tempfile, time

results, runs, commit, points = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
bin_, spec, demo, once_db = sys.argv[5:9]
ts = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
hyperfine = shutil.which("hyperfine")

def run(argv):
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"error: exit {p.returncode} from {shlex.join(argv)}\n{p.stderr.decode(errors='replace')}")

def bench(name, argv, target_ms):
    run(argv)  # fail loudly (with its stderr) before timing anything
    if hyperfine:
        with tempfile.NamedTemporaryFile(suffix=".json") as t:
            subprocess.run([hyperfine, "--warmup", "3", "--runs", str(runs), "-N",
                            "--export-json", t.name, "-n", name, shlex.join(argv)], check=True)
            times = json.load(open(t.name))["results"][0]["times"]
    else:
        for _ in range(3):
            run(argv)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run(argv)
            times.append(time.perf_counter() - t0)
    ms = [t * 1000 for t in times]
    med = statistics.median(ms)
    status = "ok" if med < target_ms else "MISSED"
    print(f"{name}: median {med:.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, {len(ms)} runs)"
          f"  target < {target_ms} ms: {status}", flush=True)
    return {"ts": ts, "commit": commit, "bench": name, "median_ms": round(med, 2),
            "min_ms": round(min(ms), 2), "max_ms": round(max(ms), 2), "runs": len(ms),
            "target_ms": target_ms, "timer": "hyperfine" if hyperfine else "python"}

rows = [
    bench(f"validate-{points}-points", [bin_, "validate", spec], 20),
    bench("acquire-once-demo", [bin_, "acquire", demo, "--once", "--store", once_db, "--no-progress", "-q"], 50),
]
rows[0]["points"] = points
with open(results, "a") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(f"appended to {results}")
EOF
