# Shared helpers for the benchmark scripts; sourced, not run.
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_SRC/.." && pwd)
DIR=${BENCH_DIR:-/tmp/edgeguard-bench}
VENV=$BENCH_SRC/.venv
PY=$VENV/bin/python
RESULTS=$BENCH_SRC/results.ndjson
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/edgeguard

die() { echo "error: $*" >&2; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]] || die "$2 needs a whole number, got '$1'"; }

# The release binary must exist; it is never built from here.
need_bin() {
  [[ -x $BIN ]] || die "no edgeguard binary at $BIN
  build it first:  (cd $ROOT && cargo build --release)
  or point to one: --bin PATH"
}

# apt-get install, refreshing the package lists once if the first try fails.
apt_install() {
  ((EUID == 0)) || return 1
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

ensure_time() {
  [[ -x /usr/bin/time ]] && return 0
  echo "/usr/bin/time is missing: apt-get install -y time" >&2
  apt_install time || true
  [[ -x /usr/bin/time ]] || die "GNU time is needed: apt-get install -y time (as root)"
}

# benches/.venv with duckdb==2.0.0 (the DuckDB the Rust crate embeds); reused when present.
ensure_venv() {
  "$PY" -c 'import sys, duckdb; sys.exit(duckdb.__version__ != "2.0.0")' 2>/dev/null && return 0
  echo "setting up $VENV with duckdb==2.0.0" >&2
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --disable-pip-version-check duckdb==2.0.0
}

git_commit() { git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One `serve` at a time, on $PORT (chosen here when unset). serve_start WORKDIR
# ARG… runs `edgeguard serve ARG… --listen 127.0.0.1:$PORT` in WORKDIR, stderr
# to WORKDIR/serve.err, and waits (20 s at most) for /readyz; serve_stop sends
# SIGTERM and waits for the exit; serve_metric NAME sums the /metrics series
# that start with NAME. A script that starts serve sets `trap serve_cleanup EXIT`.
PORT=${PORT:-}
SERVE_PID=
serve_start() {
  local wd=$1; shift
  [[ -n $PORT ]] || PORT=$(free_port)
  (cd "$wd" && exec "$BIN" serve "$@" --listen "127.0.0.1:$PORT") 2>"$wd/serve.err" &
  SERVE_PID=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
  done
  die "serve did not get ready: $(cat "$wd/serve.err")"
}
serve_stop() {
  kill -TERM "$SERVE_PID"
  wait "$SERVE_PID" || true
  SERVE_PID=
}
serve_metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
serve_cleanup() { [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true; }

# stamp_result [JSON]: the JSON object on stdin with ts, commit and the
# fields of JSON added, on one line (what a script appends to $RESULTS).
stamp_result() {
  python3 -c 'import json, sys, datetime
d = json.loads(sys.stdin.read())
d.update(ts=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), commit=sys.argv[1], **json.loads(sys.argv[2]))
print(json.dumps(d))' "$(git_commit)" "${1:-{\}}"
}
