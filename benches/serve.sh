#!/usr/bin/env bash
# serve under load (release binary):
#   channels  GET /api/v1/channels (1,000 channels, latest values) with wrk while
#             1,000 simulated signals at 100 ms feed 10,000 readings/s into the
#             store; reports requests/s, p99 latency, and whether every reading
#             was taken in (readings counted ≈ 10,000/s × run time, all stored).
#   metrics   GET /metrics (1,000 channel gauges, process and disk figures)
#             from one client back to back under the same 10,000 readings/s:
#             p99 latency (target < 20 ms), and the body passes promtool
#   sse       100 concurrent /api/v1/stream clients on the demo pipeline: the
#             largest delay between a record's timestamp and its arrival at a
#             client, and serve's peak RSS.
#
# Usage: benches/serve.sh [channels|metrics|sse|all] [--seconds N] [--bin PATH]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WHAT=all
SECONDS_RUN=20
while (($#)); do
  case $1 in
    channels | metrics | sse | all) WHAT=$1; shift ;;
    --seconds) SECONDS_RUN=${2:?--seconds needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$SECONDS_RUN" --seconds
need_bin
command -v wrk >/dev/null || apt_install wrk || die "wrk is needed: apt-get install -y wrk"
mkdir -p "$DIR"
trap serve_cleanup EXIT

start_serve() { # spec
  rm -f "$DIR/serve.duckdb" "$DIR/serve.duckdb.wal"
  serve_start "$DIR" "$1" --store serve.duckdb
}

# serve-1000.yaml: 1,000 sine signals at 100 ms (10,000 readings/s).
spec_1000() {
  python3 - "$DIR/serve-1000.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nname: serve-bench\nsources:\n  plant:\n    type: simulate\n    interval: 100ms\n    signals:\n")
    for i in range(1000):
        f.write(f"      p.c{i:04d}: {{shape: sine, mean: 50, amplitude: 5, period: 10m, noise: 0.1}}\n")
PY
}

bench_channels() {
  spec_1000
  start_serve serve-1000.yaml
  sleep 3
  local t0 r0 wrk_out rps p99 t1 r1 expected
  t0=$(date +%s.%N); r0=$(serve_metric edgeguard_readings_total)
  wrk_out=$(wrk -t2 -c32 -d"${SECONDS_RUN}s" --latency "http://127.0.0.1:$PORT/api/v1/channels")
  t1=$(date +%s.%N); r1=$(serve_metric edgeguard_readings_total)
  echo "$wrk_out" >&2
  serve_stop
  rps=$(echo "$wrk_out" | awk '/Requests\/sec/ { print $2 }')
  p99=$(echo "$wrk_out" | awk '$1 == "99%" { print $2 }')
  local summary; summary=$(tail -1 "$DIR/serve.err")
  echo "$summary" >&2
  python3 - "$rps" "$p99" "$r0" "$r1" "$t0" "$t1" "$(git_commit)" "$summary" <<'PY' | tee -a "$RESULTS"
import json, re, sys
rps, p99, r0, r1, t0, t1, commit, summary = sys.argv[1:9]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
m = re.match(r"([\d.]+)(us|ms|s)", p99)
p99_ms = float(m.group(1)) * unit[m.group(2)]
rate = (float(r1) - float(r0)) / (float(t1) - float(t0))
read = re.search(r"serve: (\d+) readings", summary); stored = re.search(r"(\d+) stored", summary)
print(json.dumps({"bench": "serve_channels", "commit": commit, "channels": 1000, "requests_per_s": float(rps),
                  "p99_ms": p99_ms, "ingest_readings_per_s": round(rate),
                  "readings": int(read.group(1)) if read else None, "stored": int(stored.group(1)) if stored else None,
                  "targets": {"requests_per_s>=5000": float(rps) >= 5000, "p99_ms<20": p99_ms < 20,
                              "ingest>=9900/s": rate >= 9900}}))
PY
}

bench_metrics() {
  spec_1000
  start_serve serve-1000.yaml
  sleep 3
  local wrk_out p99 rps series promtool_ok=null
  wrk_out=$(wrk -t1 -c1 -d"${SECONDS_RUN}s" --latency "http://127.0.0.1:$PORT/metrics")
  echo "$wrk_out" >&2
  series=$(curl -s "http://127.0.0.1:$PORT/metrics" | grep -c '^edgeguard_channel_value{')
  if command -v promtool >/dev/null; then
    curl -s "http://127.0.0.1:$PORT/metrics" | promtool check metrics >/dev/null 2>&1 && promtool_ok=true || promtool_ok=false
  fi
  serve_stop
  rps=$(echo "$wrk_out" | awk '/Requests\/sec/ { print $2 }')
  p99=$(echo "$wrk_out" | awk '$1 == "99%" { print $2 }')
  python3 - "$rps" "$p99" "$series" "$promtool_ok" "$(git_commit)" <<'PY' | tee -a "$RESULTS"
import json, re, sys
rps, p99, series, promtool_ok, commit = sys.argv[1:6]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
m = re.match(r"([\d.]+)(us|ms|s)", p99)
p99_ms = float(m.group(1)) * unit[m.group(2)]
print(json.dumps({"bench": "serve_metrics", "commit": commit, "channels": 1000, "ingest_readings_per_s": 10000,
                  "requests_per_s": float(rps), "p99_ms": p99_ms, "channel_series": int(series),
                  "promtool_ok": json.loads(promtool_ok),
                  "targets": {"p99_ms<20": p99_ms < 20, "all_1000_channels": int(series) == 1000}}))
PY
}

bench_sse() {
  start_serve "$ROOT/pipelines/demo.yaml"
  python3 - "$PORT" "$SECONDS_RUN" "$SERVE_PID" "$(git_commit)" <<'PY' | tee -a "$RESULTS"
import json, socket, sys, threading, time, datetime
port, secs, pid, commit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
worst, counts, lock = [0.0] * 100, [0] * 100, threading.Lock()
def client(i):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    s.settimeout(2)
    buf, end = b"", time.time() + secs
    while time.time() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"data: {"):
                rec = json.loads(line[6:])
                ts = datetime.datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()
                worst[i] = max(worst[i], time.time() - ts)
                counts[i] += 1
    s.close()
threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
[t.start() for t in threads]
peak = 0
end = time.time() + secs
while time.time() < end:
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS"):
                peak = max(peak, int(l.split()[1]))
    time.sleep(0.5)
[t.join() for t in threads]
print(json.dumps({"bench": "serve_sse", "commit": commit, "clients": 100, "seconds": secs,
                  "records_per_client_min": min(counts), "records_per_client_max": max(counts),
                  "worst_delay_s": round(max(worst), 3), "peak_rss_mb": peak // 1024,
                  "targets": {"delay<1s": max(worst) < 1.0, "rss<200MB": peak < 200 * 1024, "every_client_got_records": min(counts) > 0}}))
PY
  serve_stop
}

case $WHAT in
  channels) bench_channels ;;
  metrics) bench_metrics ;;
  sse) bench_sse ;;
  all) bench_channels; bench_metrics; bench_sse ;;
esac
