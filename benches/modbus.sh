#!/usr/bin/env bash
# Modbus benchmarks of the release binary.
#
# Usage: benches/modbus.sh [client|fleet|all] [--seconds N] [--bin PATH]
#
#   client  One TCP connection to a local libmodbus server, 125-register
#           reads back to back for N seconds: edgeguard's requests/s beside
#           pymodbus's own async client on the same server in the same run.
#   fleet   100 devices × 100 registers polled at 1 Hz into the store for N
#           seconds (default 60): CPU time per poll cycle, steady RSS (VmRSS
#           sampled every 5 s after the first 10 s: median), of it the
#           anonymous memory (heap; the rest is clean pages of the executable,
#           mostly DuckDB's code), and peak RSS.
#
# Needs libmodbus-dev and gcc (installed with apt when missing, as root) and
# benches/.venv with pymodbus (created when missing).
# Appends one JSON line per measurement to benches/results.ndjson.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WHAT=all SECONDS_=""
while (($#)); do
  case $1 in
    client | fleet | all) WHAT=$1; shift ;;
    --seconds) SECONDS_=${2:?--seconds needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -z $SECONDS_ ]] || is_uint "$SECONDS_" --seconds

need_bin
ensure_time
"$PY" -c 'import pymodbus' 2>/dev/null || { ensure_venv; "$PY" -m pip install -q --disable-pip-version-check pymodbus==3.16.1; }
mkdir -p "$DIR"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT


# start_peer READY_FILE CMD...: starts CMD in the background, waits for "ready".
start_peer() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q ready "$log" 2>/dev/null && return 0; sleep 0.1; done
  die "peer did not start: $* ($(cat "$log"))"
}

record() { echo "$1" >>"$RESULTS"; }

bench_client() {
  local secs=${SECONDS_:-10}
  if [[ ! -f /usr/include/modbus/modbus.h ]]; then
    echo "installing libmodbus-dev" >&2
    apt_install libmodbus-dev gcc || die "libmodbus-dev is needed: apt-get install -y libmodbus-dev gcc"
  fi
  gcc -O2 -o "$DIR/modbus_server" "$BENCH_SRC/peers/modbus_server.c" -I/usr/include/modbus -lmodbus
  local port spec
  port=$(free_port)
  start_peer "$DIR/server.log" "$DIR/modbus_server" "$port"

  # 125 registers in one request; a deadband keeps the constant values from
  # being printed again, so the client, not stdout, is what is timed.
  spec=$DIR/client.yaml
  {
    printf 'version: 1\nname: bench\nsources:\n  plc:\n    type: modbus\n    address: 127.0.0.1:%s\n    interval: 1us\n    timeout: 1s\n    points:\n' "$port"
    for i in $(seq 0 124); do printf '      - {channel: r.%s, table: holding, address: %s, deadband: 0.5}\n' "$i" "$i"; done
  } >"$spec"
  "$BIN" acquire "$spec" --duration "${secs}s" --no-store 2>"$DIR/eg.err" >/dev/null
  local eg_req
  eg_req=$(grep -o 'plc: [0-9]* requests' "$DIR/eg.err" | grep -o '[0-9]*' | head -1)
  [[ -n $eg_req ]] || die "no request count in: $(cat "$DIR/eg.err")"

  local py_req
  py_req=$("$PY" - "$port" "$secs" <<'EOF'
import asyncio, sys, time
from pymodbus.client import AsyncModbusTcpClient
async def main(port, secs):
    c = AsyncModbusTcpClient("127.0.0.1", port=port)
    await c.connect()
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        r = await c.read_holding_registers(0, count=125, device_id=1)
        assert not r.isError() and len(r.registers) == 125
        n += 1
    c.close()
    print(n)
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
EOF
)
  "$PY" - "$eg_req" "$py_req" "$secs" "$(git_commit)" <<'EOF' | tee -a "$RESULTS"
import json, sys
eg, py, secs, commit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(json.dumps({"bench": "modbus_client", "commit": commit, "seconds": secs, "registers": 125,
                  "edgeguard_req_s": round(eg / secs), "pymodbus_async_req_s": round(py / secs),
                  "ratio": round(eg / py, 2)}))
EOF
}

bench_fleet() {
  local secs=${SECONDS_:-60} port spec
  port=$(free_port)
  start_peer "$DIR/fleet-server.log" "$PY" "$ROOT/tests/peers/modbus_peer.py" server --tcp "$port" --holding-size 100
  spec=$DIR/fleet.yaml
  {
    printf 'version: 1\nname: fleet\nstore: {path: fleet.duckdb}\nsources:\n'
    for d in $(seq 0 99); do
      printf '  dev%s:\n    type: modbus\n    address: 127.0.0.1:%s\n    interval: 1s\n    points:\n' "$d" "$port"
      for i in $(seq 0 99); do printf '      - {channel: d%s.r%s, table: holding, address: %s}\n' "$d" "$i" "$i"; done
    done
  } >"$spec"
  rm -f "$DIR/fleet.duckdb" "$DIR/fleet.duckdb.wal"
  /usr/bin/time -o "$DIR/fleet.time" -f '%U %S %M %e' \
    "$BIN" acquire "$spec" --duration "${secs}s" --format ndjson -o /dev/null 2>"$DIR/fleet.err" &
  local timer=$! eg="" samples=() anon=()
  sleep 1
  eg=$(pgrep -P "$timer" edgeguard || true)
  sleep 9
  while kill -0 "$eg" 2>/dev/null; do
    samples+=("$(awk '/^VmRSS/ {print $2}' "/proc/$eg/status" 2>/dev/null || true)")
    anon+=("$(awk '/^Anonymous/ {print $2}' "/proc/$eg/smaps_rollup" 2>/dev/null || true)")
    sleep 5
  done
  wait "$timer"
  read -r user sys rss wall <"$DIR/fleet.time"
  local steady steady_anon
  median() { grep -E '^[0-9]+$' | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
  steady=$(printf '%s\n' "${samples[@]}" | median)
  steady_anon=$(printf '%s\n' "${anon[@]}" | median)
  local readings
  readings=$(grep -o '^acquire: [0-9]* readings' "$DIR/fleet.err" | grep -o '[0-9]*' || echo 0)
  "$PY" - "$user" "$sys" "$rss" "$wall" "$secs" "$readings" "$(git_commit)" "$steady" "$steady_anon" <<'EOF' | tee -a "$RESULTS"
import json, sys
user, sys_, rss, wall, secs, readings, commit, steady, anon = (float(sys.argv[1]), float(sys.argv[2]),
    int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7], int(sys.argv[8]),
    int(sys.argv[9]))
cpu = user + sys_
print(json.dumps({"bench": "modbus_fleet", "commit": commit, "devices": 100, "registers": 100, "seconds": secs,
                  "readings": readings, "cpu_s": round(cpu, 2), "cpu_ms_per_cycle": round(cpu / secs * 1000, 1),
                  "core_percent": round(cpu / wall * 100, 2), "steady_rss_mb": round(steady / 1024, 1),
                  "steady_anonymous_mb": round(anon / 1024, 1),
                  "peak_rss_mb": round(rss / 1024, 1)}))
EOF
}

case $WHAT in
  client) bench_client ;;
  fleet) bench_fleet ;;
  all) bench_client; bench_fleet ;;
esac
