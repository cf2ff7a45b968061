#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time and prints, per target: executions, time,
# and new crashes. Not run in CI (see docs/FUZZING.md).
#
#   scripts/fuzz.sh [SECONDS]          # default 120 s per target
#
# Environment:
#   FUZZ_TARGETS     space-separated targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER   address | none (default: address; none runs about twice as fast)
#   FUZZ_NICE        nice level for builds and runs (default 15: the machine is shared)
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10)
#   FUZZ_RSS_MB      memory limit in MiB before an input counts as an out-of-memory (default 2048)
#   FUZZ_NO_BUILD    set: run the binaries already in fuzz/target (built with the same sanitizer)
#
# Only a stable toolchain exists here; cargo-fuzz needs nightly-only flags (-Z, sanitizer coverage),
# which RUSTC_BOOTSTRAP=1 unlocks on stable.
#
# The seed corpora (fuzz/corpus/<target>/) stay as committed: libFuzzer writes the inputs it finds
# into its first corpus folder, and that is fuzz/work/corpus/<target>/ (git-ignored). Crashes land in
# fuzz/artifacts/<target>/; minimise one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s none <target> fuzz/artifacts/<target>/crash-...
# and keep it under fuzz/regressions/<target>/, which this script replays first.
set -euo pipefail

secs="${1:-120}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 [SECONDS]   (SECONDS: a positive integer, default 120)" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-address}"
nice_level="${FUZZ_NICE:-15}"
timeout_s="${FUZZ_TIMEOUT:-10}"
rss_mb="${FUZZ_RSS_MB:-2048}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it (cargo install cargo-fuzz --locked)" >&2
    nice -n "$nice_level" cargo install cargo-fuzz --locked
fi

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found in fuzz/" >&2
    exit 2
fi

fuzz() { nice -n "$nice_level" cargo fuzz "$@"; }
count_findings() {
    find "fuzz/artifacts/$1" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) 2>/dev/null | wc -l
}

# One build for all targets (debug assertions on: overflow checks are part of the invariants). The
# binaries are then run directly, so the fuzzing time is not spent on a rebuild when a source file
# changes meanwhile, and every target runs the same build.
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    fuzz build -s "$sanitizer" --debug-assertions
fi
bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"

logs="fuzz/work/logs"
mkdir -p "$logs"
summary=()
failed=0
for t in "${targets[@]}"; do
    # Known regressions first: a fixed one passes quietly, an open one is reported, not fatal.
    regress="fuzz/regressions/$t"
    open_regressions=0
    if [ -d "$regress" ]; then
        for r in "$regress"/*; do
            [ -f "$r" ] || continue
            if ! nice -n "$nice_level" "$bin_dir/$t" -artifact_prefix="$logs/$t.regression-" \
                -timeout="$timeout_s" -rss_limit_mb="$rss_mb" "$r" >"$logs/$t.regression.log" 2>&1; then
                echo "open regression (still fails): $r" >&2
                open_regressions=$((open_regressions + 1))
            fi
        done
    fi

    dict=()
    case "$t" in
        scenario_loader) dict=(-dict=fuzz/dict/scenario.dict) ;;
        rules_loader) dict=(-dict=fuzz/dict/rules.dict) ;;
        server_*) dict=(-dict=fuzz/dict/client.dict) ;;
    esac
    work="fuzz/work/corpus/$t"
    seeds="fuzz/corpus/$t"
    mkdir -p "$work" "fuzz/artifacts/$t"
    before=$(count_findings "$t")
    log="$logs/$t.log"
    echo "== $t: fuzzing for ${secs}s (log: $log)" >&2
    start=$(date +%s)
    status=0
    nice -n "$nice_level" "$bin_dir/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$secs" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" -max_len=65536 \
        -print_final_stats=1 "${dict[@]}" "$work" "$seeds" >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    after=$(count_findings "$t")
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    fi
    new=$((after - before))
    line=$(printf '%-20s runs=%-10s time=%5ss  new_crashes=%s  open_regressions=%s' \
        "$t" "${runs:-?}" "$elapsed" "$new" "$open_regressions")
    if [ "$new" -gt 0 ] || [ "$status" -ne 0 ]; then
        failed=1
        line="$line  FAILED (exit $status; see $log and fuzz/artifacts/$t/)"
        grep -m 3 -E "panicked at|^==[0-9]+==ERROR|SUMMARY:" "$log" >&2 || true
    fi
    summary+=("$line")
done

echo
echo "fuzz summary (${secs}s per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
exit "$failed"
