"""Median wall time of a whole process, for the benchmark scripts.

    python3 benches/wall_ms.py NAME TARGET_MS RUNS CWD -- ARGV...

Runs ARGV once (it must exit 0: its output is shown when it does not), then
times it RUNS times with hyperfine (--warmup 3 -N) when installed, else
with a Python loop after 3 warm-up runs, and prints on stdout one JSON
object: median, min and max in ms, runs, the target and whether the median
is under it; a line for people goes to stderr.
"""
import json, shlex, shutil, statistics, subprocess, sys, tempfile, time


def run(argv, cwd):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    if p.returncode != 0:
        sys.exit(f"error: exit {p.returncode} from {shlex.join(argv)}\n"
                 f"{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")


def main():
    name, target_ms, runs, cwd = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if sys.argv[5] != "--":
        sys.exit("usage: wall_ms.py NAME TARGET_MS RUNS CWD -- ARGV...")
    argv = sys.argv[6:]
    run(argv, cwd)  # fail loudly before timing anything
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        with tempfile.NamedTemporaryFile(suffix=".json") as t:
            subprocess.run([hyperfine, "--warmup", "3", "--runs", str(runs), "-N", "--export-json", t.name,
                            "-n", name, shlex.join(argv)], check=True, cwd=cwd, stdout=sys.stderr)
            times = json.load(open(t.name))["results"][0]["times"]
    else:
        for _ in range(3):
            run(argv, cwd)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run(argv, cwd)
            times.append(time.perf_counter() - t0)
    ms = [t * 1000 for t in times]
    med = statistics.median(ms)
    ok = med < target_ms
    print(f"{name}: median {med:.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, {len(ms)} runs)"
          f"  target < {target_ms:g} ms: {'ok' if ok else 'MISSED'}", file=sys.stderr, flush=True)
    print(json.dumps({"bench": name, "median_ms": round(med, 2), "min_ms": round(min(ms), 2),
                      "max_ms": round(max(ms), 2), "runs": len(ms), "target_ms": target_ms,
                      "timer": "hyperfine" if hyperfine else "python", "ok": ok}))


main()
