#!/usr/bin/env bash
# The isolation forest's cost per reading: NDJSON readings of CHANNELS
# channels (a noisy sine each) through `detect` with one `iforest` detector
# (100 trees) on every channel, against the same run with no detector.
#
# Usage: benches/iforest.sh [--channels N] [--count N] [--bin PATH]
#   --channels N  channels, each with its own forest (default 1000)
#   --count N     readings (default 10000000)
#
# ns per reading = (wall with the forest − wall without) / readings;
# readings/s is the whole run with the forest. With many channels the
# forests (~0.25 MB each at 100 trees) leave the CPU caches and every tree
# walk waits on memory; --channels 10 shows the cached case.
#
# Targets (issue 17), at the defaults: peak RSS < 300 MB and
# >= 200,000 readings/s.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CHANNELS=1000
COUNT=10000000
while (($#)); do
  case $1 in
    --channels) CHANNELS=${2:?--channels needs a value}; shift 2 ;;
    --count) COUNT=${2:?--count needs a value}; shift 2 ;;
    --bin) BIN=${2:?--bin needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_uint "$CHANNELS" --channels
is_uint "$COUNT" --count
need_bin
ensure_time
mkdir -p "$DIR"
DATA=$DIR/iforest-$CHANNELS-$COUNT.ndjson
if [[ ! -s $DATA ]]; then
  python3 - "$DATA" "$CHANNELS" "$COUNT" <<'PY'
import math, random, sys
path, channels, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(1)
t0 = 1767225600
with open(path, "w") as f:
    for i in range(count):
        c, k = i % channels, i // channels
        v = 50 + 5 * math.sin(k / 60) + random.gauss(0, 0.2)
        f.write('{"ts":%d,"channel":"m.c%d","value":%.3f}\n' % (t0 + k, c, v))
PY
fi
cat >"$DIR/iforest.yaml" <<'YAML'
version: 1
name: iforest
detect:
  forest: {channel: "m.*", method: iforest}
YAML
run() { # name extra-args...
  local name=$1; shift
  (cd "$DIR" && /usr/bin/time -o "$DIR/iforest.time" -f '%e %M' "$BIN" detect iforest.yaml --input "$DATA" \
    --no-store --no-progress -q -o /dev/null "$@") || die "$name failed"
  read -r wall rss <"$DIR/iforest.time"
  echo "$name: $wall s, peak RSS $((rss / 1024)) MB" >&2
  echo "$wall $rss"
}
read -r base _ < <(run without --set 'detect.forest.channel=none.*')
read -r with rss < <(run iforest)
python3 - "$COUNT" "$CHANNELS" "$(git_commit)" "$base" "$with" "$rss" <<'PY' | tee -a "$RESULTS"
import json, sys
n, ch, commit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base, wall, rss = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
print(json.dumps({"bench": "iforest", "commit": commit, "readings": n, "channels": ch, "trees": 100,
                  "wall_s": {"without": base, "iforest": wall}, "peak_rss_mb": rss // 1024,
                  "readings_per_s": round(n / wall), "ns_per_reading": round((wall - base) / n * 1e9),
                  "targets": {"rss<300MB": rss // 1024 < 300, "readings_per_s>=200k": n / wall >= 2e5}}))
PY
