#!/usr/bin/env bash
# jobs/run-local.sh — one command from a fresh clone: installs what is missing,
# builds, and runs the built-in demo (jobs/demo.ini) on 2 ranks into out/demo.h5.
# Extra arguments go to gradflow, e.g. jobs/run-local.sh --units 512.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mkdir -p "$GF_ROOT/out"
cd "$GF_ROOT"
mpiexec -np "${GF_NP:-2}" "$GF_BUILD/gradflow" --config jobs/demo.ini --force -o out/demo.h5 "$@"
