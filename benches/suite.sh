#!/usr/bin/env bash
# Suite bench: wall time of `wschat-check run scenarios/` (release) against the embedded reference
# server (zero pacing). Uses hyperfine when installed (`apt-get install hyperfine`), else 10 timed runs.
# Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
cargo build --release -q
BIN=target/release/wschat-check
echo "nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg)"
if command -v hyperfine >/dev/null 2>&1; then
  hyperfine --warmup 2 --runs "$RUNS" -N "$BIN run scenarios/ --color never"
else
  python3 - "$BIN" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
binary, runs = sys.argv[1], int(sys.argv[2])
times = []
for i in range(runs + 2):
    t = time.perf_counter()
    p = subprocess.run([binary, "run", "scenarios/", "--color", "never"], capture_output=True, timeout=300)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"run {i} failed ({p.returncode}): {p.stdout.decode()[-2000:]}")
    if i >= 2:  # two warm-up runs
        times.append(dt)
print(f"wall time over {runs} runs: mean {statistics.mean(times):.3f} s, median {statistics.median(times):.3f} s, "
      f"min {min(times):.3f} s, max {max(times):.3f} s")
PY
fi
