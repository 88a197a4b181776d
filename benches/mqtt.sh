#!/usr/bin/env bash
# MQTT benchmark of the release binary: messages/s from a local mosquitto
# into the store, beside mosquitto_sub writing the same topic to a file in
# the same run.
#
# Usage: benches/mqtt.sh [--count N] [--qos 0|1|both] [--bin PATH]
#   --count N   messages per run (default 300000)
#
# Both consumers first make a persistent session; then N messages are
# published while they are offline (the broker queues them), and both start
# together and drain the backlog: a publisher cannot outrun them, so this
# measures the consumers. Each one's rate is N / (time of its last message -
# time of its first): edgeguard's from the arrival times in the store,
# mosquitto_sub's from the times it prints (-F %U). The broker runs with no
# in-flight or queue limit (acks after commit need a window; README "MQTT").
# Needs mosquitto and mosquitto-clients (installed with apt when missing).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COUNT=300000 QOS=both
while (($#)); do
  case $1 in
    --count) COUNT=${2:?--count needs a value}; shift 2 ;;
    --qos) QOS=${2:?--qos needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$COUNT" --count
need_bin
ensure_venv
command -v mosquitto_sub >/dev/null || apt_install mosquitto-clients || die "mosquitto_sub is needed: apt-get install -y mosquitto-clients"
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ -x $MOSQ ]] || apt_install mosquitto || die "mosquitto is needed"
mkdir -p "$DIR/mqtt"
W=$DIR/mqtt

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

run() {
  local qos=$1 port
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser root\nmax_queued_messages 0\nmax_inflight_messages 0\nqueue_qos0_messages true\nlog_dest none\n' "$port" >"$W/broker.conf"
  "$MOSQ" -c "$W/broker.conf" & PIDS+=($!)
  sleep 0.5
  rm -f "$W/eg.duckdb" "$W/eg.duckdb.wal" "$W/sub.txt"
  cat >"$W/bench.yaml" <<YAML
version: 1
name: bench
store: {path: eg.duckdb}
sources:
  broker:
    type: mqtt
    url: mqtt://127.0.0.1:$port
    client_id: edgeguard-bench
    qos: $qos
    clean_session: false
    topics:
      - {filter: "bench/#", channel: bench.seq}
YAML
  local sub_args=(-p "$port" -t 'bench/#' -q "$qos" -c -i bench-sub -F '%U')
  # Sessions first (both subscribe, then go away).
  (cd "$W" && exec "$BIN" acquire bench.yaml --no-progress --no-store -o /dev/null 2>/dev/null) & local eg=$!
  timeout 1.5 mosquitto_sub "${sub_args[@]}" >/dev/null || true
  kill -TERM "$eg"; wait "$eg" || true
  "$PY" "$BENCH_SRC/mqtt_pub.py" "$port" bench/x "$COUNT" "$qos"
  # Both drain the backlog together.
  (cd "$W" && exec "$BIN" acquire bench.yaml --no-progress --format ndjson -o /dev/null 2>"$W/eg.err") & eg=$!
  PIDS+=($eg)
  mosquitto_sub "${sub_args[@]}" >"$W/sub.txt" & local sub=$!
  PIDS+=($sub)
  # Wait until both have everything (or stop growing).
  local last=-1 now
  for _ in $(seq 120); do
    now=$(wc -l <"$W/sub.txt")
    [[ $now -ge $COUNT && $now == "$last" ]] && break
    last=$now
    sleep 1
  done
  sleep 2
  kill -TERM "$eg"; wait "$eg" || true
  kill "$sub" 2>/dev/null || true; wait "$sub" 2>/dev/null || true
  "$PY" - "$W" "$COUNT" "$qos" "$(git_commit)" <<'PY' | tee -a "$RESULTS"
import json, sys, duckdb
w, count, qos, commit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
con = duckdb.connect(f"{w}/eg.duckdb", read_only=True)
n, distinct, first, last = con.execute(
    "SELECT count(*), count(DISTINCT value), epoch(min(ts)), epoch(max(ts)) FROM readings WHERE channel = 'bench.seq'").fetchone()
times = [float(l) for l in open(f"{w}/sub.txt") if l.strip()]
eg_rate = distinct / (last - first) if n > 1 else 0
sub_rate = len(times) / (times[-1] - times[0]) if len(times) > 1 else 0
print(json.dumps({"bench": "mqtt", "commit": commit, "qos": qos, "messages": count,
                  "edgeguard_stored": n, "edgeguard_distinct": distinct, "edgeguard_msg_s": round(eg_rate),
                  "mosquitto_sub_received": len(times), "mosquitto_sub_msg_s": round(sub_rate),
                  "ratio_sub_over_edgeguard": round(sub_rate / eg_rate, 2) if eg_rate else None}))
PY
  kill "${PIDS[0]}" 2>/dev/null || true
  wait 2>/dev/null || true
  PIDS=()
}

case $QOS in
  0) run 0 ;;
  1) run 1 ;;
  both) run 0; run 1 ;;
  *) die "--qos is 0, 1 or both" ;;
esac
