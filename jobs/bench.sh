#!/usr/bin/env bash
# jobs/bench.sh — gradflow's performance benchmark (not part of the test suite).
#
#   bash jobs/bench.sh [--quick] [--cases 1,2,...] [--repeat R]
#
# Builds a Release copy of gradflow in build-bench/ (git-ignored, like every
# build-*/), compiles the helpers in jobs/bench/ (dgemm_rate.c: cblas_dgemm at
# the flow's exact GEMM shape; stream.c: a STREAM triad and a read-only pass
# over an n x n matrix), installs python3-torch with apt-get when it is missing
# and this runs as root (otherwise case 5 is skipped, with a note in the
# table), then runs every case R times and prints one markdown table; the same
# table and every raw number go to out/bench/results.md and out/bench/raw.json
# (commands and their output to out/bench/log.txt; temporary files in
# out/bench/tmp/, removed at the end); a --quick run writes to out/bench/quick/
# instead, so that a smoke run leaves the last full run's figures alone.
#
# Cases (full sizes; --quick shrinks them to a smoke run of about 2 minutes):
#   1 flow, compute-bound: |K| = n = 1024 and 2048, 64 lags, 1 rank x 1 BLAS
#     thread; the G recurrence's flop rate / cblas_dgemm's rate at that shape
#     (64 calls, as many as the flow's products, timed just before)
#   2 flow, memory-bound: n = 4096, |K| = 8 (outputs), 256 lags, 4 targets
#     (GF_BENCH_C2_TARGETS); time per lag / time to stream W once (triad)
#   3 forward + BPTT: n = 4096, T = 512; per step / two passes over W
#   4 I/O: /flow/G write rate / dd conv=fdatasync in the same directory
#   5 peer: case 1 and case 2 by numpy and PyTorch explicit loops and by
#     torch.autograd.functional.jacobian (estimated from a subset), end to end
#   6 scaling: case 1 at n = 2048 on 2 ranks vs 1; bytes sent per lag per
#     rank (Open MPI pml monitoring) vs the reduce-scatter model
#   7 memory: peak RSS / the --dry-run estimate
#
# Environment: GF_BENCH_REPEAT (R, default 3), GF_BENCH_CASES (default all),
# GF_BENCH_C2_TARGETS (default 24: "many targets", which share each pass over W),
# GF_BENCH_C1_N (case 1's sizes, default 1024,2048), GF_BENCH_C5_CASE2=0 (case 5
# without its case-2 comparison: a focused, shorter rerun of case 1's peers).  The full run takes 11-15 minutes on 2
# quiet cores (its header line gives the time).  Other processes on the
# machine spoil the figures, the 2-rank ones most: the notes under the table
# say how many cores others kept busy during the measurements.
#   /usr/bin/python3 jobs/bench/bench.py --report out/bench/raw.json --out out/bench
# rebuilds the table from the raw numbers of an earlier run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build-bench
HELPERS=$BUILD/bench-helpers
OUT=$ROOT/out/bench
QUICK=()
CASES=${GF_BENCH_CASES:-1,2,3,4,5,6,7}
REPEAT=${GF_BENCH_REPEAT:-3}
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=(--quick); OUT=$ROOT/out/bench/quick ;;
        --cases) CASES=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
    esac
    shift
done

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

echo "== building a Release copy in build-bench/" >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target gradflow_exe >/dev/null

# Debian 12's OpenBLAS falls back to its SSE3 kernels on some virtual CPUs it
# does not recognise; gradflow then warns and names the OPENBLAS_CORETYPE that
# fits the CPU.  Every party of the benchmark (gradflow, the dgemm helper,
# numpy and PyTorch) runs with that one setting; the table's header names it.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    mkdir -p "$OUT"
    CORE=$("$BUILD/gradflow" --units 4 --steps 2 --dry-run --quiet -o "$OUT/probe.h5" 2>&1 >/dev/null |
           sed -n 's/.*set OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p')
    if [ -n "$CORE" ]; then
        echo "bench.sh: OpenBLAS chose baseline kernels for this CPU; every party runs with OPENBLAS_CORETYPE=$CORE" >&2
        export OPENBLAS_CORETYPE=$CORE
    fi
fi

echo "== compiling the helpers" >&2
mkdir -p "$HELPERS" "$OUT"
CBLAS_INC=$(dirname "$(find /usr/include -name cblas.h -path '*openblas-pthread*' -print -quit 2>/dev/null || true)")
[ -f "$CBLAS_INC/cblas.h" ] || CBLAS_INC=/usr/include/x86_64-linux-gnu
cc -O3 -march=native -Wall -o "$HELPERS/dgemm_rate" "$ROOT/jobs/bench/dgemm_rate.c" -I"$CBLAS_INC" -lopenblas
cc -O3 -march=native -Wall -o "$HELPERS/stream" "$ROOT/jobs/bench/stream.c"

PEER=yes
PEER_NOTE=
if [[ ,$CASES, == *,5,* ]]; then
    if ! /usr/bin/python3 -c 'import torch, numpy, h5py' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            echo "== installing python3-torch (apt-get)" >&2
            apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
                --no-install-recommends python3-torch python3-numpy python3-h5py >/dev/null
        fi
        if ! /usr/bin/python3 -c 'import torch, numpy, h5py' 2>/dev/null; then
            PEER=no
            PEER_NOTE="case 5 skipped: python3-torch is not installed (run as root, or apt-get install python3-torch)"
            echo "bench.sh: $PEER_NOTE" >&2
        fi
    fi
fi

echo "== running cases $CASES, R = $REPEAT ${QUICK[*]}" >&2
/usr/bin/python3 "$ROOT/jobs/bench/bench.py" "${QUICK[@]}" --repeat "$REPEAT" --cases "$CASES" \
    --build "$BUILD" --helpers "$HELPERS" --out "$OUT" --peer "$PEER" --peer-note "$PEER_NOTE"
rm -rf "$OUT/tmp"
