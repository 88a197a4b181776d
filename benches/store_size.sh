#!/usr/bin/env bash
# Store size per channel-year: C channels at 1 Hz for H hours ending now,
# through `edgeguard acquire --input` (the writer computes the rollups as it
# commits), with `store.retention: 30d` and
# `store.rollups: [{every: 1m, keep: 1y}, {every: 1h, keep: forever}]`.
#
# Each part (raw `reading_rows`, each rollup tier's rows of `rollup_rows`)
# is copied into a DuckDB file of its own with the store's table definition
# (its primary key too), checkpointed, and measured; an empty file with the
# same definition is subtracted. Bytes per row times the rows a channel keeps
# gives a channel-year: 30 d of raw readings (2,592,000), a year of 1 m
# buckets (525,600) and a year of 1 h buckets (8,760). The 1 h tier of a few
# hours has too few rows to measure (DuckDB allocates 256 KiB blocks), so it
# is counted at the 1 m tier's bytes per row: the rows have the same shape.
#
# Usage: benches/store_size.sh [--channels C] [--hours H] [--bin PATH]
# Env: BENCH_DIR (default /tmp/edgeguard-bench) holds the data, spec and store.
# Prints a table; appends one JSON line to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CHANNELS=50 HOURS=12
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
((CHANNELS > 0)) || die "--channels must be at least 1"
((HOURS > 0 && HOURS <= 720)) || die "--hours must be 1–720 (the raw readings are kept 30 days)"
need_bin
ensure_venv
mkdir -p "$DIR"
SPEC=$DIR/size.yaml
DB=$DIR/size.duckdb
DATA=$DIR/size-$CHANNELS-$HOURS.ndjson

cat >"$SPEC" <<'EOF'
version: 1
name: size
store:
  path: size.duckdb
  retention: 30d
  rollups: [{every: 1m, keep: 1y}, {every: 1h, keep: forever}]
channels:
  "sz.*": {range: [-1000, 1000]}
EOF

# C channels at 1 Hz for H hours ending a minute ago, in time order; values
# a slow sine with noise, to 3 decimals (what a sensor gives).
python3 - "$DATA" "$CHANNELS" "$HOURS" <<'EOF'
import datetime as dt, math, random, sys, time
out, channels, hours = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
end = int(time.time()) - 60
rng = random.Random(7)
with open(out, "w") as f:
    for s in range(end - hours * 3600, end):
        t = dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for c in range(channels):
            v = 50 + 10 * math.sin(s / 600 + c) + rng.gauss(0, 0.5)
            f.write(f'{{"kind":"reading","ts":"{t}","channel":"sz.c{c}","value":{v:.3f},"quality":"good","source":"sim"}}\n')
EOF

rm -f "$DB" "$DB.wal"
(cd "$DIR" && "$BIN" acquire size.yaml --input "$DATA" --store "$DB" --store-input --no-progress -q -o /dev/null) ||
  die "could not fill the store"

"$PY" - "$DB" "$DIR" "$CHANNELS" "$HOURS" <<'EOF' | stamp_result >>"$RESULTS"
import json, os, sys
import duckdb

db, scratch, channels, hours = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
src = duckdb.connect(db, read_only=True)
ddl = dict(src.execute("SELECT table_name, sql FROM duckdb_tables() WHERE table_name IN ('reading_rows', 'rollup_rows')").fetchall())

def size(table, where, part):
    """Bytes the rows of `table` matching `where` take in a file of their own, beyond an empty one."""
    sizes = []
    for rows in (False, True):
        path = os.path.join(scratch, f"size-part-{part}.duckdb")
        for p in (path, path + ".wal"):
            if os.path.exists(p):
                os.remove(p)
        con = duckdb.connect(path)
        con.execute(ddl[table])
        if rows:
            con.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
            con.execute(f"INSERT INTO {table} SELECT * FROM src.{table} WHERE {where}")  # in the order stored
            con.execute("DETACH src")
        con.execute("CHECKPOINT")
        con.close()
        sizes.append(os.path.getsize(path))
        os.remove(path)
    return sizes[1] - sizes[0]

parts = {
    "raw": ("reading_rows", "true"),
    "1m": ("rollup_rows", "every_us = 60000000"),
    "1h": ("rollup_rows", "every_us = 3600000000"),
}
src.close()
measured = {}
for name, (table, where) in parts.items():
    con = duckdb.connect(db, read_only=True)
    n = con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
    con.close()
    b = size(table, where, name)
    measured[name] = {"rows": n, "bytes": b, "bytes_per_row": round(b / n, 2) if n else None}

year_rows = {"raw": 30 * 86400, "1m": 365 * 1440, "1h": 365 * 24}
per_row = {"raw": measured["raw"]["bytes_per_row"], "1m": measured["1m"]["bytes_per_row"],
           "1h": measured["1m"]["bytes_per_row"]}
per_channel_year = {k: round(year_rows[k] * per_row[k]) for k in year_rows}
total = sum(per_channel_year.values())

print(f"store size over {channels} channels x {hours} h at 1 Hz (raw kept 30 d, 1m kept 1 y, 1h forever)", file=sys.stderr)
print(f"{'part':6}{'rows':>12}{'bytes':>14}{'B/row':>9}{'rows/ch-yr':>12}{'MB/ch-yr':>10}", file=sys.stderr)
for k in year_rows:
    m = measured[k]
    print(f"{k:6}{m['rows']:>12,}{m['bytes']:>14,}{per_row[k]:>9}{year_rows[k]:>12,}{per_channel_year[k] / 2**20:>10.2f}",
          file=sys.stderr)
print(f"one channel-year: {total / 2**20:.2f} MB (1h tier at the 1m tier's bytes per row)", file=sys.stderr)
print(json.dumps({"bench": "store-size", "channels": channels, "hours": hours, "measured": measured,
                  "bytes_per_channel_year": total, "mb_per_channel_year": round(total / 2**20, 2),
                  "parts_bytes_per_channel_year": per_channel_year, "retention": "30d",
                  "rollups": "1m keep 1y, 1h keep forever"}))
EOF
echo "appended to $RESULTS" >&2
