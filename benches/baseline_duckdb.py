#!/usr/bin/env python3
"""Baseline: load an NDJSON readings file with DuckDB's own read_json.

    baseline_duckdb.py DATA DB [--threads 2]

Creates a fresh DB (removing DB and DB.wal first) with the same `readings`
table shape edgeguard uses, loads DATA with INSERT ... SELECT FROM read_json,
CHECKPOINTs, and prints one JSON line on stdout:
  {"tool": "duckdb-read_json", "duckdb": "...", "rows": N, "wall_s": S, "rows_per_s": R}
Wall time covers connect, create, load, checkpoint and close.
"""
import argparse
import json
import os
import time

import duckdb

SCHEMA = (
    "CREATE TABLE readings (ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, value DOUBLE, "
    "quality VARCHAR NOT NULL, flags VARCHAR, source VARCHAR, unit VARCHAR)"
)
COLUMNS = (
    "{kind: 'VARCHAR', ts: 'TIMESTAMPTZ', channel: 'VARCHAR', value: 'DOUBLE', "
    "quality: 'VARCHAR', source: 'VARCHAR'}"
)


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("db")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not os.path.isfile(a.data):
        ap.error(f"no such data file: {a.data}")
    for p in (a.db, a.db + ".wal"):
        if os.path.exists(p):
            os.remove(p)

    t0 = time.perf_counter()
    con = duckdb.connect(a.db)
    con.execute(f"SET threads={a.threads}")
    con.execute(SCHEMA)
    con.execute(
        "INSERT INTO readings SELECT ts, channel, value, quality, NULL, source, NULL "
        f"FROM read_json({sql_str(a.data)}, format='newline_delimited', columns={COLUMNS})"
    )
    con.execute("CHECKPOINT")
    rows = con.execute("SELECT count(*) FROM readings").fetchone()[0]
    con.close()
    wall = time.perf_counter() - t0

    print(json.dumps({
        "tool": "duckdb-read_json", "duckdb": duckdb.__version__, "rows": rows,
        "wall_s": round(wall, 4), "rows_per_s": round(rows / wall) if wall > 0 else None,
    }))


if __name__ == "__main__":
    main()
