#!/usr/bin/env bash
# tests/run.sh — one command from a fresh clone: installs what is missing,
# builds, and runs the whole test suite with CTest: every test on the normal
# build, then every test again on an AddressSanitizer + UBSan build
# (build-asan/, the pytest suites running its gradflow; Open MPI's own leaks
# are suppressed by tests/lsan.supp, ours are not), then a short libFuzzer run of the option/INI prolog and the
# --weights loader (tests/fuzz/run.sh; GF_FUZZ_SECONDS a target, default 20,
# 0 to skip).  Between them, the C tests once more on a build with MPICH
# (build-mpich/).  Arguments go to the first two ctest runs (e.g. -R core).
set -euo pipefail
GF_EXTRA_PACKAGES="clang libclang-rt-14-dev mpich libhdf5-mpich-dev"
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/setup.sh"
cd "$GF_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"

echo "== the whole suite under AddressSanitizer and UBSan =="
GF_BUILD=$GF_ROOT/build-asan GF_CMAKE_ARGS="-DGF_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo" gf_build
cd "$GF_ROOT/build-asan"
ctest --output-on-failure -j "$(nproc)" "$@"

# a second MPI: the C tests (every MPI code path of the Check suites) built
# with Debian's MPICH and its parallel HDF5 (build-mpich/), at 1 and 2 ranks:
# MPICH's ranks poll while they wait, so more ranks than cores take minutes
# where Open MPI (above, 1-4 ranks) takes seconds
echo "== the C tests under MPICH =="
GF_BUILD=$GF_ROOT/build-mpich GF_CMAKE_ARGS="-DMPI_C_COMPILER=/usr/bin/mpicc.mpich \
    -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich -DHDF5_C_COMPILER_EXECUTABLE=/usr/bin/h5pcc.mpich \
    -DGF_MPIEXEC_PREFLAGS=" gf_build
cd "$GF_ROOT/build-mpich"
ctest --output-on-failure -j "$(nproc)" -R '^(unit|core_np[12]|flow_np[12]|train_np[12])$'

if [ "${GF_FUZZ_SECONDS:-20}" -gt 0 ]; then
    echo "== fuzzing: ${GF_FUZZ_SECONDS:-20} s a target =="
    GF_FUZZ_SEED=${GF_FUZZ_SEED:-1} bash "$GF_ROOT/tests/fuzz/run.sh" "${GF_FUZZ_SECONDS:-20}"
fi
