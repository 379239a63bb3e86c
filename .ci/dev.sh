#!/usr/bin/env bash
# The README's two quick-start commands.
#   bash .ci/dev.sh run    install deps, build (release), start esad in the foreground on its
#                          embedded defaults (state and control socket under ./var/)
#   bash .ci/dev.sh test   install deps, build Debug + ASan/UBSan, run every test tier, build
#                          Release once (the build users and packagers run), then the fuzzing
#                          tier (clang/libFuzzer, separate build in build/fuzz, FUZZ_SECONDS
#                          per target, default 25)
# `test` makes warnings errors (ESAD_WERROR=ON), for development and CI; `run`, like a plain
# `cmake -DCMAKE_BUILD_TYPE=Release` by users and packagers, does not.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
case "${1:-}" in
run)
    bash .ci/deps.sh build
    cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DESAD_TESTS=OFF >/dev/null
    cmake --build build/release -j"$jobs"
    echo "esad: control socket var/run/esad.sock — try: build/release/esactl status"
    exec build/release/esad --foreground
    ;;
test)
    bash .ci/deps.sh test
    cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Debug -DESAD_SANITIZE=ON -DESAD_WERROR=ON \
          -DESAD_ROCKSDB=ON >/dev/null
    cmake --build build/test -j"$jobs"
    # The optimiser sees code paths (and warns about them) that Debug does not.
    cmake -S . -B build/release-check -DCMAKE_BUILD_TYPE=Release -DESAD_WERROR=ON \
          -DESAD_ROCKSDB=ON -DESAD_TESTS=OFF >/dev/null
    cmake --build build/release-check -j"$jobs"
    cd build/test
    ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" --timeout 600
    cd ../..
    JOBS=$jobs bash tests/fuzz/run.sh "${FUZZ_SECONDS:-25}"
    ;;
*)
    echo "usage: bash .ci/dev.sh run|test" >&2
    exit 2
    ;;
esac
