#!/usr/bin/env bash
# Backtest benchmark: `edgeguard detect SPEC --from-store --since 30d` over a
# store of C channels at 1 Hz (zscore on every channel, nothing stored),
# beside DuckDB scanning the same rows in the same order (`SELECT ts,
# channel, value … ORDER BY ts`, with a row number so the sort is kept).
#
# 100 channels × 30 days at 1 Hz is 259M readings: more than this disk
# budget, so the store holds the last --hours of them (default 24: 8.64M
# readings) and the figures are per reading.
#
# Usage: benches/backtest.sh [--channels C] [--hours H] [--bin PATH]
# Env: BENCH_DIR (default /tmp/edgeguard-bench) holds the store and spec.
# Prints a table; appends one JSON line per side to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CHANNELS=100 HOURS=24
while (($#)); do
  case $1 in
    --channels) CHANNELS=${2:?--channels needs a value}; shift 2 ;;
    --hours) HOURS=${2:?--hours needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$CHANNELS" --channels
is_uint "$HOURS" --hours
((HOURS > 0 && HOURS <= 720)) || die "--hours must be 1–720 (the backtest reads the last 30 days)"
need_bin
ensure_time
ensure_venv
mkdir -p "$DIR"
SPEC=$DIR/backtest.yaml
DB=$DIR/backtest.duckdb
TF=$DIR/backtest.time

cat >"$SPEC" <<'EOF'
version: 1
name: backtest
store: {path: backtest.duckdb}
channels:
  "bt.*": {range: [-1000, 1000]}
detect:
  z: {channel: "bt.*", method: zscore, window: 10m, threshold: 6}
EOF

# The store: edgeguard makes the schema (an empty run), DuckDB fills it with
# C channels × H hours at 1 Hz ending now (the layout edgeguard writes:
# channel ids in reading_rows, the `readings` view over them).
rm -f "$DB" "$DB.wal"
(cd "$DIR" && "$BIN" acquire backtest.yaml --input /dev/null --store "$DB" --no-progress -q -o /dev/null) ||
  die "could not create the store"
"$PY" - "$DB" "$CHANNELS" "$HOURS" <<'EOF'
import sys, time, duckdb
db, channels, hours = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect(db)
con.execute("SET threads = 2")
end = int(time.time()) - 60
start = end - hours * 3600
con.execute("INSERT INTO channels SELECT i + 1, 'bt.c' || i, 'sim', NULL FROM range(?) t(i)", [channels])
con.execute(f"""INSERT INTO reading_rows (ts, channel_id, value, quality, commit_no)
    SELECT to_timestamp(s), c + 1, 50 + 10 * sin(s / 600.0 + c) + (hash(s, c) % 1000) / 1000.0, 0, 1
    FROM range({start}, {end}) a(s), range({channels}) b(c)""")
con.execute("INSERT INTO commits VALUES (1, now(), (SELECT count(*) FROM reading_rows), 0)")
con.execute("CHECKPOINT")
EOF
ROWS=$((CHANNELS * HOURS * 3600))

/usr/bin/time -o "$TF" -f '%e %M' "$BIN" detect "$SPEC" --from-store --since 30d --store "$DB" \
  --no-progress -q -o /dev/null || die "the backtest failed"
read -r EG_WALL EG_RSS <"$TF"

/usr/bin/time -o "$TF" -f '%e %M' "$PY" - "$DB" <<'EOF' || die "the DuckDB scan failed"
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET threads = 2")
con.execute("""SELECT count(*) FROM (
    SELECT ts, channel, value, row_number() OVER (ORDER BY ts) AS n FROM readings
    WHERE ts >= now() - INTERVAL 30 DAY) WHERE n % 1000003 = 0""").fetchall()
EOF
read -r DK_WALL DK_RSS <"$TF"

"$PY" - "$RESULTS" "$ROWS" "$CHANNELS" "$HOURS" "$(git_commit)" "$EG_WALL" "$EG_RSS" "$DK_WALL" "$DK_RSS" \
  "$(stat -c %s "$DB")" <<'EOF'
import datetime, json, os, sys
results, rows, channels, hours, commit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
eg_wall, eg_rss, dk_wall, dk_rss = float(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9])
db_mb = round(int(sys.argv[10]) / 2**20, 1)
ts = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
out = []
for tool, wall, rss in (("edgeguard-detect", eg_wall, eg_rss), ("duckdb-scan-ordered", dk_wall, dk_rss)):
    out.append({"ts": ts, "commit": commit, "bench": "backtest", "tool": tool, "readings": rows,
                "channels": channels, "hours": hours, "wall_s": wall,
                "readings_per_s": round(rows / wall) if wall > 0 else None,
                "ns_per_reading": round(wall / rows * 1e9, 1), "peak_rss_mb": round(rss / 1024, 1),
                "db_mb": db_mb, "cpus": os.cpu_count()})
out[0]["ratio_vs_duckdb"] = round(eg_wall / dk_wall, 2) if dk_wall > 0 else None
print(f"\nbacktest over {rows:,} readings ({channels} channels x {hours} h at 1 Hz, {db_mb} MB), commit {commit}")
print(f"{'':22}{'wall s':>9}{'readings/s':>13}{'ns/reading':>12}{'peak RSS MB':>13}")
for r in out:
    print(f"{r['tool']:22}{r['wall_s']:>9.2f}{r['readings_per_s']:>13,}{r['ns_per_reading']:>12}{r['peak_rss_mb']:>13}")
print(f"edgeguard/duckdb: {out[0]['ratio_vs_duckdb']}x")
with open(results, "a") as f:
    for r in out:
        f.write(json.dumps(r) + "\n")
print(f"appended to {results}")
EOF
