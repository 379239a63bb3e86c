#!/usr/bin/env bash
# The fuzzing tier: builds every libFuzzer target (clang, -fsanitize=fuzzer,address,undefined)
# in build/fuzz and runs each for SECONDS (default 25) on a working copy of its committed
# seed corpus, with the SMTP or TOML dictionary where one applies. Exits non-zero on the
# first crash, leak, sanitizer report or timeout; the reproducer is left in
# build/fuzz/artifacts/<target>/ — add it to tests/fuzz/corpus/<target>/ with its fix.
#
#   tests/fuzz/run.sh            CI: ~25 s per target
#   tests/fuzz/run.sh 600        a longer campaign (10 minutes per target)
#   tests/fuzz/run.sh 60 fuzz_reply fuzz_address    only these targets
#   FUZZ_JOBS=2 tests/fuzz/run.sh 600               libFuzzer -fork=2 per target
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-25}
shift || true
build=${FUZZ_BUILD_DIR:-$root/build/fuzz}
src=$root/tests/fuzz

CC=${FUZZ_CC:-clang} CXX=${FUZZ_CXX:-clang++} \
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"${JOBS:-2}"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$src"/fuzz_*.cc; do targets+=("$(basename "$f" .cc)"); done
fi

dict_for() {
    case "$1" in
    fuzz_server_fsm | fuzz_client_fsm | fuzz_reply | fuzz_address | fuzz_dot_codec) echo "$src/dict/smtp.dict" ;;
    fuzz_config) echo "$src/dict/toml.dict" ;;
    fuzz_routes) echo "$src/dict/routes.dict" ;;
    fuzz_control_protocol) echo "$src/dict/json.dict" ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    work=$build/corpus/$t
    art=$build/artifacts/$t
    mkdir -p "$work" "$art"
    seeds=$src/corpus/$t
    args=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=4096
          -artifact_prefix="$art/" -print_final_stats=1)
    d=$(dict_for "$t")
    [ -n "$d" ] && args+=(-dict="$d")
    [ -n "${FUZZ_JOBS:-}" ] && args+=(-fork="$FUZZ_JOBS" -ignore_crashes=0)
    echo "== $t: ${seconds}s"
    # First replay every committed input (regressions), then explore from them.
    if [ -d "$seeds" ] && ! "$build/$t" -runs=0 "${args[@]}" "$seeds" >"$build/$t.replay.log" 2>&1; then
        echo "FAIL $t: a committed corpus input fails (see $build/$t.replay.log)"
        tail -40 "$build/$t.replay.log"
        failed+=("$t")
        continue
    fi
    corpora=("$work")
    [ -d "$seeds" ] && corpora+=("$seeds")
    if ! "$build/$t" "${args[@]}" "${corpora[@]}" >"$build/$t.log" 2>&1; then
        echo "FAIL $t: see $build/$t.log; reproducer in $art/"
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$build/$t.log" | head -20 || true
        failed+=("$t")
        continue
    fi
    grep -E "stat::number_of_executed_units|cov:" "$build/$t.log" | tail -2 | tr '\n' ' '
    echo
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing failed: ${failed[*]}"
    exit 1
fi
echo "fuzzing ok: ${#targets[@]} targets, ${seconds}s each"
