#!/usr/bin/env bash
# Ingest benchmark: `edgeguard acquire SPEC --input DATA` on N NDJSON readings
# against DuckDB's own read_json loader (benches/baseline_duckdb.py).
#
# Usage: benches/ingest.sh [--count N] [--runs N] [--rollups] [--bin PATH]
#   --count N   readings to load (default 10000000)
#   --rollups   also time, in each run, a store that keeps rollups: [{every: 1m, keep: 1y},
#               {every: 1h, keep: forever}], and report what they cost per reading
#   --runs N    timed runs of each side; medians are reported (default 3)
#   --bin PATH  edgeguard binary (default ${CARGO_TARGET_DIR:-target}/release/edgeguard)
# Env: BENCH_DIR (default /tmp/edgeguard-bench) holds the data, spec and DBs;
#      EDGEGUARD_ARGS adds arguments to the acquire command line.
# Prints a table; appends one JSON line per side to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COUNT=10000000 RUNS=3 ROLLUPS=
while (($#)); do
  case $1 in
    --count) COUNT=${2:?--count needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --rollups) ROLLUPS="rollups: [{every: 1m, keep: 1y}, {every: 1h, keep: forever}]"; shift ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$COUNT" --count
is_uint "$RUNS" --runs
((RUNS > 0)) || die "--runs must be at least 1"
read -ra EXTRA <<<"${EDGEGUARD_ARGS:-}"

need_bin
ensure_time
ensure_venv

mkdir -p "$DIR"
DATA=$DIR/readings-$COUNT.ndjson
SPEC=$DIR/bench.yaml
SPEC_R=$DIR/bench-rollups.yaml
EG_DB=$DIR/edgeguard.duckdb
EGR_DB=$DIR/edgeguard-rollups.duckdb
DK_DB=$DIR/duckdb.duckdb
TF=$DIR/time.out

"$PY" "$BENCH_SRC/gen_readings.py" "$DATA" --count "$COUNT"
# spec FILE [STORE-SETTINGS]
spec() {
  cat >"$1" <<EOF
version: 1
name: bench
store: {path: bench.duckdb${2:+, $2}}
channels:
  "plant.*": {range: [-1000, 1000]}
EOF
}
spec "$SPEC"
[[ -z $ROLLUPS ]] || spec "$SPEC_R" "$ROLLUPS"

# timed OUT CMD...: run CMD with stdout to OUT under GNU time; sets WALL (s) and RSS (KB).
timed() {
  local out=$1; shift
  if ! /usr/bin/time -o "$TF" -f '%e %M' "$@" >"$out"; then
    cat "$TF" >&2
    die "command failed: $*"
  fi
  read -r WALL RSS < <(tail -n1 "$TF")
}

stored_rows() {
  "$PY" -c 'import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM readings").fetchone()[0])' "$1"
}

# ingest SPEC DB: one timed edgeguard run into a new store DB, checked.
ingest() {
  rm -f "$2" "$2.wal"
  timed /dev/null "$BIN" acquire "$1" --input "$DATA" --store "$2" --store-input --no-progress -q "${EXTRA[@]}"
  rows=$(stored_rows "$2") || die "could not read the readings table in $2"
  [[ $rows == "$COUNT" ]] || die "edgeguard stored $rows readings in $2, expected $COUNT"
}

EG_WALL=() EG_RSS=() EGR_WALL=() EGR_RSS=() DK_WALL=() DK_RSS=() DK_LOAD=()
for ((i = 1; i <= RUNS; i++)); do
  # With rollups, the two stores go first in turn: neither gets the
  # place in the run that the page cache or the machine's drift favours.
  for side in $( ((i % 2)) && echo plain rollups || echo rollups plain); do
    if [[ $side == plain ]]; then
      ingest "$SPEC" "$EG_DB"
      EG_WALL+=("$WALL") EG_RSS+=("$RSS")
    elif [[ -n $ROLLUPS ]]; then
      ingest "$SPEC_R" "$EGR_DB"
      EGR_WALL+=("$WALL") EGR_RSS+=("$RSS")
      echo "run $i/$RUNS: edgeguard with rollups ${EGR_WALL[-1]} s ${EGR_RSS[-1]} KB" >&2
    fi
  done

  rm -f "$DK_DB" "$DK_DB.wal"
  timed "$DIR/baseline.json" "$PY" "$BENCH_SRC/baseline_duckdb.py" "$DATA" "$DK_DB" --threads 2
  DK_WALL+=("$WALL") DK_RSS+=("$RSS")
  DK_LOAD+=("$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["wall_s"])' <"$DIR/baseline.json")")
  echo "run $i/$RUNS: edgeguard ${EG_WALL[-1]} s ${EG_RSS[-1]} KB | duckdb ${DK_WALL[-1]} s ${DK_RSS[-1]} KB" >&2
done

"$PY" - "$RESULTS" "$COUNT" "$(git_commit)" "$(stat -c %s "$EG_DB")" "$(stat -c %s "$DK_DB")" \
  "${EG_WALL[*]}" "${EG_RSS[*]}" "${DK_WALL[*]}" "${DK_RSS[*]}" "${DK_LOAD[*]}" \
  "${EGR_WALL[*]}" "${EGR_RSS[*]}" "$([[ -z $ROLLUPS ]] || stat -c %s "$EGR_DB")" <<'EOF'
import datetime, json, os, statistics, sys
import duckdb

results, count, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
eg_bytes, dk_bytes = int(sys.argv[4]), int(sys.argv[5])
walls_eg, rss_eg, walls_dk, rss_dk, load_dk, walls_egr, rss_egr = ([float(x) for x in a.split()] for a in sys.argv[6:13])
ts = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

def summary(tool, walls, rss, db_bytes):
    wall = statistics.median(walls)
    return {"ts": ts, "commit": commit, "bench": "ingest", "tool": tool, "count": count,
            "runs": len(walls), "wall_s": wall, "walls_s": walls,
            "rows_per_s": round(count / wall) if wall > 0 else None,
            "peak_rss_mb": round(max(rss) / 1024, 1), "db_mb": round(db_bytes / 2**20, 1),
            "cpus": os.cpu_count()}

eg = summary("edgeguard", walls_eg, rss_eg, eg_bytes)
dk = summary("duckdb-read_json", walls_dk, rss_dk, dk_bytes)
dk["duckdb"] = duckdb.__version__
dk["load_wall_s"] = statistics.median(load_dk)  # inside Python: without interpreter start-up
eg["ratio_vs_duckdb"] = ratio = round(eg["wall_s"] / dk["wall_s"], 3) if dk["wall_s"] > 0 else None
rows = [eg, dk]
if walls_egr:
    # Each run timed both stores back to back: the cost of the tiers is the
    # median of the runs' ratios, which the machine's drift between runs
    # does not move.
    egr = summary("edgeguard+rollups", walls_egr, rss_egr, int(sys.argv[13]))
    egr["rollups"] = "1m,1h"
    egr["ratio_vs_duckdb"] = round(egr["wall_s"] / dk["wall_s"], 3) if dk["wall_s"] > 0 else None
    egr["overhead_pct"] = round(100 * (statistics.median(r / p for r, p in zip(walls_egr, walls_eg)) - 1), 1)
    rows.insert(1, egr)

print(f"\ningest of {count:,} readings, median of {eg['runs']} runs, commit {commit}")
print(f"{'':18}{'wall s':>9}{'rows/s':>13}{'peak RSS MB':>13}{'DB MB':>9}")
for r in rows:
    rps = f"{r['rows_per_s']:,}" if r["rows_per_s"] else "-"
    print(f"{r['tool']:18}{r['wall_s']:>9.2f}{rps:>13}{r['peak_rss_mb']:>13.1f}{r['db_mb']:>9.1f}")
print(f"edgeguard/duckdb wall: {ratio}x" if ratio else "edgeguard/duckdb wall: -",
      f"(duckdb load alone, without Python start-up: {dk['load_wall_s']:.2f} s)")

ok = lambda c: "ok" if c else "MISSED"
note = "" if count >= 10_000_000 else "  (targets are set for 10M readings)"
print(f"targets: >= 1.5M rows/s {ok((eg['rows_per_s'] or 0) >= 1_500_000)}"
      f" | <= 1.2x duckdb {ok(ratio is not None and ratio <= 1.2)}"
      f" | < 150 MB RSS {ok(eg['peak_rss_mb'] < 150)}{note}")
if walls_egr:
    print(f"rollups: {egr['overhead_pct']:+.1f} % wall (median of the runs' ratios) | < 10 % {ok(egr['overhead_pct'] < 10)}")

with open(results, "a") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(f"appended to {results}")
EOF
