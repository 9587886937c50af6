#!/usr/bin/env bash
# jobs/run-local.sh — one command from a fresh clone: installs what is missing,
# builds, runs the built-in demo (jobs/demo.ini) on 2 ranks into out/demo.h5,
# and writes its report (out/demo-report/index.html).
# Extra arguments go to gradflow, e.g. jobs/run-local.sh --units 512.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mkdir -p "$GF_ROOT/out"
cd "$GF_ROOT"
mpiexec -np "${GF_NP:-2}" "$GF_BUILD/gradflow" --config jobs/demo.ini --force -o out/demo.h5 "$@"

# The offline report of the demo file (Debian's python3 has h5py and matplotlib).
/usr/bin/python3 analysis/report.py out/demo.h5 -o out/demo-report
echo "gradflow: report: $GF_ROOT/out/demo-report/index.html"
