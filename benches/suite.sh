#!/usr/bin/env bash
# Suite bench: wall time of `wschat-check run scenarios/` (release) against the embedded reference
# server (zero pacing; the suite's `embedded:` deadlines), at the default --jobs unless JOBS is set.
# Uses hyperfine when installed (`apt-get install hyperfine`), else RUNS timed runs after 2 warm-ups.
# Then one run with a JSON report: the 10 longest scenarios and the sum of all scenario durations.
# Not run in CI. Other runs on the machine change the figure: the load average is printed with it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
JOBS=${JOBS:-}
cargo build --release -q
BIN=target/release/wschat-check
ARGS=(run scenarios/ --color never)
if [ -n "$JOBS" ]; then ARGS+=(-j "$JOBS"); fi
echo "nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg); $BIN ${ARGS[*]}"
if command -v hyperfine >/dev/null 2>&1; then
  hyperfine --warmup 2 --runs "$RUNS" -N "$BIN ${ARGS[*]}"
else
  python3 - "$RUNS" "$BIN" "${ARGS[@]}" <<'PY'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for i in range(runs + 2):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=300)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"run {i} failed ({p.returncode}): {p.stdout.decode()[-2000:]}")
    if i >= 2:  # two warm-up runs
        times.append(dt)
print(f"wall time over {runs} runs: mean {statistics.mean(times):.3f} s, median {statistics.median(times):.3f} s, "
      f"min {min(times):.3f} s, max {max(times):.3f} s")
PY
fi
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
REPORT=$(mktemp -t wschat-suite-XXXXXX.json)
trap 'rm -f "$REPORT"' EXIT
"$BIN" "${ARGS[@]}" --report-json "$REPORT" >/dev/null
python3 - "$REPORT" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
scenarios = sorted(report["scenarios"], key=lambda s: -s["duration"])
total = sum(s["duration"] for s in scenarios)
print(f"{len(scenarios)} scenarios, jobs {report['run']['jobs']}, sum of scenario durations {total / 1000:.2f} s; "
      "the 10 longest (ms):")
for s in scenarios[:10]:
    print(f"  {s['duration']:8.1f}  {s['name']}")
PY
