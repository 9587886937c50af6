#!/usr/bin/env bash
# tests/run.sh — one command from a fresh clone: installs what is missing,
# builds, and runs the whole test suite with CTest: every test on the normal
# build, then the C tests again on an AddressSanitizer + UBSan build
# (build-asan/; Open MPI's own leaks are suppressed by tests/lsan.supp, ours
# are not).  Arguments go to both ctest runs (e.g. -R core).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/setup.sh"
cd "$GF_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"

echo "== the C tests under AddressSanitizer and UBSan =="
GF_BUILD=$GF_ROOT/build-asan GF_CMAKE_ARGS="-DGF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug" gf_build
cd "$GF_ROOT/build-asan"
ctest --output-on-failure -j "$(nproc)" -R '^(unit|core_np[0-9]|flow_np[0-9]|train_np[0-9])$' "$@"
