#!/usr/bin/env bash
# tests/run.sh — one command from a fresh clone: installs what is missing,
# builds, and runs the whole test suite with CTest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/setup.sh"
cd "$GF_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"
