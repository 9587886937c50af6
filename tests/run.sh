#!/usr/bin/env bash
# tests/run.sh — one command from a fresh clone: installs what is missing,
# builds, and runs the whole test suite with CTest: every test on the normal
# build, then every test again on an AddressSanitizer + UBSan build
# (build-asan/, the pytest suites running its gradflow; Open MPI's own leaks
# are suppressed by tests/lsan.supp, ours are not), then a short libFuzzer run of the option/INI prolog and the
# --weights loader (tests/fuzz/run.sh; GF_FUZZ_SECONDS a target, default 20,
# 0 to skip).  Arguments go to both ctest runs (e.g. -R core).
set -euo pipefail
GF_EXTRA_PACKAGES="clang libclang-rt-14-dev"
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/setup.sh"
cd "$GF_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"

echo "== the whole suite under AddressSanitizer and UBSan =="
GF_BUILD=$GF_ROOT/build-asan GF_CMAKE_ARGS="-DGF_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo" gf_build
cd "$GF_ROOT/build-asan"
ctest --output-on-failure -j "$(nproc)" "$@"

if [ "${GF_FUZZ_SECONDS:-20}" -gt 0 ]; then
    echo "== fuzzing: ${GF_FUZZ_SECONDS:-20} s a target =="
    bash "$GF_ROOT/tests/fuzz/run.sh" "${GF_FUZZ_SECONDS:-20}"
fi
