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

python3 "$BENCH_SRC/wall_ms.py" "validate-$POINTS-points" 20 "$RUNS" "$DIR" -- "$BIN" validate "$SPEC" | stamp_result "{\"points\": $POINTS}" >>"$RESULTS"
python3 "$BENCH_SRC/wall_ms.py" acquire-once-demo 50 "$RUNS" "$DIR" -- \
  "$BIN" acquire "$DEMO" --once --store "$DIR/once.duckdb" --no-progress -q | stamp_result >>"$RESULTS"
echo "appended to $RESULTS"
