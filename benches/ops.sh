#!/usr/bin/env bash
# Operations benchmark (release binary): what running `serve` for a year costs.
#   checkpoint  `serve` with 1,000 simulated channels at 100 ms (10,000
#               readings/s) through validation, a z-score detector on every
#               channel and an alert rule, for --seconds each with
#               store.checkpoint off, 10s (the default) and 1s: CPU seconds
#               per million readings, and the cost of the default against off
#   reload      the same spec; after --seconds/2 a SIGHUP with a changed
#               threshold and one channel more: the pause (the largest gap
#               between two readings of a channel across the switch), the time
#               from the signal to the new pipeline, and every reading taken in
#               stored
#
# Usage: benches/ops.sh [checkpoint|reload|all] [--seconds N] [--bin PATH]
#   --seconds N  length of each run (default 30, at least 10)
#   --bin PATH   edgeguard binary (default ${CARGO_TARGET_DIR:-target}/release/edgeguard)
# Env: BENCH_DIR (default /tmp/edgeguard-bench); scratch goes to $BENCH_DIR/ops.
# Prints a table per case and ok/MISSED per target; appends one JSON line per
# run to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WHAT=all
RUN_SECS=30
while (($#)); do
  case $1 in
    checkpoint | reload | all) WHAT=$1; shift ;;
    --seconds) RUN_SECS=${2:?--seconds needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$RUN_SECS" --seconds
((RUN_SECS >= 10)) || die "--seconds must be at least 10"
need_bin
ensure_venv
W=$DIR/ops
mkdir -p "$W"
trap serve_cleanup EXIT

# spec FILE THRESHOLD EXTRA_CHANNELS: 1,000 (+N) sine signals at 100 ms, a
# range rule and a z-score detector on every channel, one alert rule.
spec() {
  python3 - "$@" <<'PY'
import sys
path, threshold, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "w") as f:
    f.write("version: 1\nname: ops-bench\nstore: {path: ops.duckdb, batch: 20000, flush: 1s}\n")
    f.write("sources:\n  plant:\n    type: simulate\n    interval: 100ms\n    signals:\n")
    for i in range(1000 + extra):
        f.write(f"      p.c{i:04d}: {{shape: sine, mean: 50, amplitude: 5, period: 10m, noise: 0.1}}\n")
    f.write('channels:\n  "p.*": {range: [0, 100], stale: 10s}\n')
    f.write('detect:\n  jump: {channel: "p.*", method: zscore, window: 5m, threshold: 6}\n')
    f.write(f"alerts:\n  hot:\n    when: \"value > {threshold}\"\n    for: 1m\n    repeat: 1h\n    notify: [log]\n")
    f.write("notifiers:\n  log: {type: file, path: alerts.log}\n")
PY
}

start_serve() { # spec [--set …]
  rm -f "$W/ops.duckdb" "$W/ops.duckdb.wal" "$W/alerts.log"
  serve_start "$W" "$@"
}
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

bench_checkpoint() {
  spec "$W/ops.yaml" 1000 0
  local every base=
  printf '%-12s %10s %12s %14s %8s\n' checkpoint readings/s cpu_s "cpu_s/Mreading" cost >&2
  for every in off 10s 1s; do
    start_serve ops.yaml --set "store.checkpoint=$every"
    sleep 5 # past start-up and the first commits
    local r0 c0 t0 r1 c1 t1
    r0=$(serve_metric edgeguard_readings_total); c0=$(cpu_s "$SERVE_PID"); t0=$(date +%s.%N)
    sleep "$RUN_SECS"
    r1=$(serve_metric edgeguard_readings_total); c1=$(cpu_s "$SERVE_PID"); t1=$(date +%s.%N)
    serve_stop
    local line
    line=$(python3 - "$every" "$r0" "$r1" "$c0" "$c1" "$t0" "$t1" "$(git_commit)" "${base:-}" <<'PY'
import json, sys
every, r0, r1, c0, c1, t0, t1, commit, base = sys.argv[1:10]
n, cpu, secs = float(r1) - float(r0), float(c1) - float(c0), float(t1) - float(t0)
per = cpu / n * 1e6
out = {"bench": "ops", "case": "checkpoint", "variant": every, "commit": commit, "channels": 1000,
       "seconds": round(secs, 1), "readings_per_s": round(n / secs), "cpu_s": round(cpu, 2),
       "cpu_s_per_million": round(per, 3)}
if base:
    out["cost_vs_off"] = round(per / float(base) - 1, 4)
    if every == "10s":
        out["targets"] = {"cost<5%": per / float(base) - 1 < 0.05}
print(json.dumps(out))
PY
    )
    echo "$line" >>"$RESULTS"
    local per cost
    per=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cpu_s_per_million"])' "$line")
    cost=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%+.1f%%" % (100*d["cost_vs_off"]) if "cost_vs_off" in d else "-")' "$line")
    printf '%-12s %10s %12s %14s %8s\n' "$every" \
      "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["readings_per_s"])' "$line")" \
      "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cpu_s"])' "$line")" "$per" "$cost" >&2
    [[ $every == off ]] && base=$per
    if [[ $every == 10s ]]; then
      python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["targets"]["cost<5%"] else 1)' "$line" \
        && echo "  ok      checkpoint: the default (10s) costs < 5 % ($cost)" >&2 \
        || echo "  MISSED  checkpoint: the default (10s) costs < 5 % ($cost)" >&2
    fi
  done
}

bench_reload() {
  spec "$W/ops.yaml" 1000 0
  start_serve ops.yaml
  sleep $((RUN_SECS / 2))
  spec "$W/ops.yaml" 60 1
  local t_hup t_ok
  t_hup=$(date +%s.%N)
  kill -HUP "$SERVE_PID"
  for _ in $(seq 600); do
    [[ $(serve_metric 'edgeguard_reloads_total{result="ok"}') == 1 ]] && break
    sleep 0.01
  done
  t_ok=$(date +%s.%N)
  [[ $(serve_metric 'edgeguard_reloads_total{result="ok"}') == 1 ]] || die "reload: the new spec was not taken: $(tail -5 "$W/serve.err")"
  sleep $((RUN_SECS / 2))
  serve_stop
  local summary; summary=$(grep 'serve: .* readings' "$W/serve.err" | tail -1)
  "$PY" - "$W/ops.duckdb" "$t_hup" "$t_ok" "$(git_commit)" "$summary" <<'PY' | tee -a "$RESULTS"
import json, re, sys, duckdb
db, t_hup, t_ok, commit, summary = sys.argv[1:6]
c = duckdb.connect(db, read_only=True)
# The largest gap between two readings of one channel across the switch.
gap, = c.execute("""
    SELECT max(d) FROM (
      SELECT (epoch_us(ts) - epoch_us(lag(ts) OVER (PARTITION BY channel ORDER BY ts))) / 1e6 AS d
      FROM readings WHERE channel LIKE 'p.c%' AND epoch(ts) BETWEEN ? - 5 AND ? + 5)""",
    [float(t_hup), float(t_hup)]).fetchone()
stored, = c.execute("SELECT count(*) FROM readings").fetchone()
new, = c.execute("SELECT count(*) FROM readings WHERE channel = 'p.c1000'").fetchone()
read = re.search(r"serve: (\d+) readings", summary)
read = int(read.group(1)) if read else None
print(json.dumps({"bench": "ops", "case": "reload", "commit": commit, "channels": 1000, "readings_per_s": 10000,
                  "pause_s": round(gap, 3), "signal_to_switch_s": round(float(t_ok) - float(t_hup), 3),
                  "readings": read, "stored": stored, "new_channel_readings": new,
                  "targets": {"pause<1s": gap < 1.0, "nothing_lost": read == stored, "new_channel_read": new > 0}}))
PY
  local line; line=$(tail -1 "$RESULTS")
  python3 - "$line" <<'PY' >&2
import json, sys
d = json.loads(sys.argv[1])
print(f"reload: pause {d['pause_s']} s, signal to switch {d['signal_to_switch_s']} s, "
      f"{d['readings']} readings taken in, {d['stored']} stored, new channel: {d['new_channel_readings']} readings")
for k, v in d["targets"].items():
    print(f"  {'ok    ' if v else 'MISSED'}  reload: {k}")
PY
}

case $WHAT in
  checkpoint) bench_checkpoint ;;
  reload) bench_reload ;;
  all) bench_checkpoint; bench_reload ;;
esac
