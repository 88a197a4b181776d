#!/usr/bin/env bash
# The whole chain from NDJSON into the store: channel validation, one fusion
# group per 3 channels and three detectors per channel (zscore, ewma, rate)
# over 1,000 channels; and the cost of each stage and detector. The isolation
# forest has its own script (benches/iforest.sh): 1,000 forests do not fit
# in any cache.
#
# Usage: benches/chain.sh [--count N] [--runs N] [--bin PATH]
#   --count N   readings (default 10000000; the ingest benchmark's file is reused)
#   --runs N    rounds of all the runs below; medians are reported (default 3)
#
# Runs, each on the same file with every record stored (--store-input):
#   acquire (validation only) · fuse · detect with one detector · detect with all three
# and reports readings/s, and ns per reading for fusion and for each detector
# (the difference to the run without it, over the readings). One more run
# of all three detectors stores nothing: what the chain costs without the
# store (the output goes to /dev/null, which edgeguard does not format for).
# Stored, the fusion figure is mostly the writer's cost of the fused rows
# (the store is the bottleneck); `fusion_stage_cpu` is the stage's own: the
# CPU time (user + system) `fuse` adds to `acquire`, both storing nothing.
# Each round runs every configuration once, so the machine's drift between
# rounds touches all of them alike; a figure is the median of the rounds.
#
# Targets (issue 17): >= 1,000,000 readings/s with everything stored, and
# fusion <= 300 ns per input reading.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COUNT=10000000 RUNS=3
while (($#)); do
  case $1 in
    --count) COUNT=${2:?--count needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$COUNT" --count
is_uint "$RUNS" --runs
((RUNS > 0)) || die "--runs must be at least 1"
need_bin
ensure_time
ensure_venv
mkdir -p "$DIR"
DATA=$DIR/readings-$COUNT.ndjson
"$PY" "$BENCH_SRC/gen_readings.py" "$DATA" --count "$COUNT"

# The channel names gen_readings.py uses: plant.line{L}.unit{U}.{kind}.
"$PY" - "$DIR/chain.yaml" <<'EOF'
import sys
kinds = ["temp", "pres", "flow", "level", "speed", "power", "vib", "curr"]
names = [f"plant.line{j // 200}.unit{(j // 8) % 25}.{kinds[j % 8]}" for j in range(1000)]
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nname: chain\nstore: {path: chain.duckdb}\n")
    f.write('channels:\n  "plant.*": {range: [-1000, 1000]}\n')
    f.write("fuse:\n")
    for g in range(333):
        ins = ", ".join(names[3 * g: 3 * g + 3])
        f.write(f"  fused.g{g}: {{inputs: [{ins}], method: median, window: 2s, max_spread: 500}}\n")
    f.write("detect:\n")
    f.write('  z: {channel: "plant.*", method: zscore, window: 1m, threshold: 6}\n')
    f.write('  e: {channel: "plant.*", method: ewma, alpha: 0.05, threshold: 6}\n')
    f.write('  r: {channel: "plant.*", method: rate, max_rate: 10000/s}\n')
EOF

declare -A WALL CPU
run() { # name command args...; stores as "${STORE[@]}" says
  local name=$1; shift
  rm -f "$DIR/chain.duckdb" "$DIR/chain.duckdb.wal"
  (cd "$DIR" && /usr/bin/time -o "$DIR/chain.time" -f '%e %M %U %S' "$BIN" "$@" chain.yaml --input "$DATA" \
    "${STORE[@]}" --no-progress -q -o /dev/null) || die "$name failed"
  read -r wall rss user sys <"$DIR/chain.time"
  WALL[$name]+="$wall "
  CPU[$name]+="$user+$sys "
  echo "round $round/$RUNS $name: $wall s, peak RSS $((rss / 1024)) MB" >&2
}
for ((round = 1; round <= RUNS; round++)); do
  STORE=(--store chain.duckdb --store-input)
  run validate acquire
  run fuse fuse
  for d in z e r; do
    run "detect_$d" detect --set "detect.$([[ $d == z ]] && echo e || echo z).channel=none.*" \
      --set "detect.$([[ $d == r ]] && echo e || echo r).channel=none.*"
  done
  run all detect
  STORE=(--no-store)
  run no_store detect
  run validate_no_store acquire
  run fuse_no_store fuse
done

"$PY" - "$COUNT" "$(git_commit)" "${WALL[validate]}" "${WALL[fuse]}" "${WALL[detect_z]}" "${WALL[detect_e]}" \
  "${WALL[detect_r]}" "${WALL[all]}" "${WALL[no_store]}" "${CPU[validate_no_store]}" "${CPU[fuse_no_store]}" \
  <<'EOF' | tee -a "$RESULTS"
import json, statistics, sys
n, commit = int(sys.argv[1]), sys.argv[2]
walls = [[float(w) for w in arg.split()] for arg in sys.argv[3:10]]
validate, fuse, dz, de, dr, every, bare = map(statistics.median, walls)
# CPU seconds as user+sys, one per round.
cpu = lambda run: sum(map(float, run.split("+")))
cpu_validate, cpu_fuse = (statistics.median(cpu(r) for r in arg.split()) for arg in sys.argv[10:12])
ns = lambda a, b: round((a - b) / n * 1e9)
print(json.dumps({"bench": "chain", "commit": commit, "readings": n, "runs": len(walls[0]),
                  "readings_per_s_all": round(n / every), "readings_per_s_no_store": round(n / bare),
                  "walls_all_s": walls[5],
                  "wall_s": {"validate": validate, "fuse": fuse,
                  "zscore": dz, "ewma": de, "rate": dr, "all": every, "all_no_store": bare},
                  "ns_per_reading": {"fusion": ns(fuse, validate), "zscore": ns(dz, fuse), "ewma": ns(de, fuse),
                                     "rate": ns(dr, fuse), "three_detectors": ns(every, fuse),
                                     "fusion_stage_cpu": ns(cpu_fuse, cpu_validate)},
                  "targets": {"readings_per_s>=1M": n / every >= 1e6, "fusion<=300ns": ns(fuse, validate) <= 300,
                              "fusion_stage_cpu<=300ns": ns(cpu_fuse, cpu_validate) <= 300}}))
EOF
