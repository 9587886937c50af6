#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] — fuzzes the option/INI prolog and the --weights
# loader with libFuzzer: builds build-fuzz/ with clang (ASan + UBSan + coverage),
# makes the seed corpora (seeds.py), and runs each target for SECONDS (default
# 60; tests/run.sh uses 20, a long campaign e.g. 3600).  The corpus grows in
# out/fuzz/TARGET/corpus across runs; a finding (crash, sanitizer report,
# leak, timeout or giant allocation) is saved in out/fuzz/TARGET/ and fails
# the script.  Reproduce one with: build-fuzz/tests/fuzz/TARGET FILE
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=${1:-60}
BUILD=$ROOT/build-fuzz
OUT=$ROOT/out/fuzz

CC=clang cmake -S "$ROOT" -B "$BUILD" -DGF_FUZZ=ON -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target fuzz_options fuzz_weights >/dev/null
/usr/bin/python3 "$ROOT/tests/fuzz/seeds.py" "$OUT/seeds"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# allocator_may_return_null: a huge malloc fails as it does without ASan (libhdf5
# asks for what a corrupt file claims, and copes with NULL)
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$ROOT/tests/fuzz/lsan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
cd "$OUT" # sanitizer notes of the pre-reading child processes (.PID files) land here
for target in fuzz_options fuzz_weights; do
    mkdir -p "$OUT/$target/corpus"
    echo "== $target, ${SECONDS_EACH} s"
    # -close_fd_mask=3: gradflow's own messages stay out of the log (libFuzzer
    # keeps its reports); -rss_limit_mb: memory the checks should have
    # refused is a finding.  No per-malloc limit: libhdf5, in the child that
    # pre-reads an input (src/h5io.c), may ask for what a corrupt file claims.
    # fuzz_weights runs gf_main with MPI-IO file opens thousands of times in one
    # process; its RSS grows outside the malloc heap (2.4 GB after 13 576 runs
    # with 30 MB live), so it gets more room than one run needs
    rss=2048
    [ "$target" = fuzz_weights ] && rss=4096
    # GF_FUZZ_SEED (tests/run.sh: 1) makes the run repeatable from the seeds, so
    # that CI does not turn red on a new finding by chance; campaigns leave it unset
    seed=()
    [ -n "${GF_FUZZ_SEED:-}" ] && seed=(-seed="$GF_FUZZ_SEED")
    if ! "$BUILD/tests/fuzz/$target" "${seed[@]}" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=$rss \
            -malloc_limit_mb=1000000 -close_fd_mask=3 -print_final_stats=1 \
            -artifact_prefix="$OUT/$target/" "$OUT/$target/corpus" "$OUT/seeds/$target" \
            >"$OUT/$target.log" 2>&1; then
        status=1
        echo "fuzz: $target found something; see $OUT/$target.log and $OUT/$target/" >&2
        grep -E "ERROR|SUMMARY|Test unit written" "$OUT/$target.log" | head -20 >&2 || true
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ *DONE" "$OUT/$target.log" || true
done
exit $status
