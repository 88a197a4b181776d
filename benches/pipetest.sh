#!/usr/bin/env bash
# `edgeguard test` speed (issue 15):
#   1. one test of one virtual hour over 10 channels at 1 s (36,000 readings
#      through validation, fusion, a zscore detector and an alert rule),
#      timed as a whole process: target < 50 ms;
#   2. a file of 100 such tests: target < 2 s.
# Uses hyperfine (--warmup 3 -N) when installed, else a Python loop; reports the median.
#
# Usage: benches/pipetest.sh [--runs N] [--bin PATH]
#   --runs N    timed runs per case (default 20)
#   --bin PATH  edgeguard binary (default ${CARGO_TARGET_DIR:-target}/release/edgeguard)
# Env: BENCH_DIR (default /tmp/edgeguard-bench) holds the spec and test files.
# Appends one JSON line per case to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS=20
while (($#)); do
  case $1 in
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$RUNS" --runs
((RUNS > 0)) || die "--runs must be at least 1"
need_bin

mkdir -p "$DIR/pipetest"
python3 - "$DIR/pipetest" <<'PY'
import sys
d, n = sys.argv[1], 10
spec = """version: 1
name: pipetest-bench
sources:
  plant:
    type: simulate
    interval: 1s
    signals:
""" + "".join(f"      plant.t{i}: {{shape: sine, mean: 60, amplitude: 3, period: 10m}}\n" for i in range(n)) + """
channels:
  "plant.*": {unit: degC, range: [0, 150], max_rate: 2/s, stuck: 5m, stale: 10s}
fuse:
  plant.t: {inputs: [plant.t0, plant.t1, plant.t2], method: median, window: 2s, max_spread: 2.0}
detect:
  jumps: {channel: "plant.*", method: zscore, window: 10m, threshold: 4}
alerts:
  hot:
    when: "channel == 'plant.t' and value > 95"
    for: 30s
    notify: [log]
    title: "{{ channel }} at {{ value | round(1) }}"
notifiers:
  log: {type: file, path: alerts.log}
"""
open(f"{d}/bench.yaml", "w").write(spec)
def test(name):
    s = f"  {name}:\n    interval: 1s\n    series:\n"
    s += "".join(f"      plant.t{i}: 60+0.001x1799 96x1799\n" for i in range(n))
    s += "    expect:\n      - {alert: hot, state: firing, at: 30m30s, within: 2s}\n"
    s += "      - {reading: plant.t5, at: 10m, quality: good}\n"
    return s
open(f"{d}/bench.test.yaml", "w").write("version: 1\ntests:\n" + test("one-hour"))
open(f"{d}/hundred.test.yaml", "w").write(
    "version: 1\nspec: bench.yaml\ntests:\n" + "".join(test(f"hour-{k}") for k in range(100)))
PY

if ! command -v hyperfine >/dev/null; then
  apt_install hyperfine || echo "no hyperfine: timing with a Python loop" >&2
fi

for case in "pipetest-1-test-1h-10ch bench.test.yaml 50" "pipetest-100-tests-1h-10ch hundred.test.yaml 2000"; do
  read -r name file target <<<"$case"
  python3 "$BENCH_SRC/wall_ms.py" "$name" "$target" "$RUNS" "$DIR/pipetest" -- "$BIN" test "$file" | stamp_result '{"channels": 10, "virtual_hours": 1}' >>"$RESULTS"
done
echo "appended to $RESULTS"
