#!/usr/bin/env bash
# jobs/setup.sh — installs the Debian 12 packages gradflow needs (only those
# missing) and builds gradflow with CMake into build/.  Sourced by
# jobs/run-local.sh and tests/run.sh; safe to run again (idempotent).
set -euo pipefail

GF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GF_BUILD=${GF_BUILD:-$GF_ROOT/build}
GF_PACKAGES=(openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools check libopenblas-dev
             pkg-config cmake build-essential libinih-dev
             python3-h5py python3-numpy python3-matplotlib python3-pytest)
# tests/run.sh adds the fuzzing toolchain (clang with libFuzzer)
read -r -a GF_EXTRA <<<"${GF_EXTRA_PACKAGES:-}"
GF_PACKAGES+=("${GF_EXTRA[@]}")

gf_install_packages() {
    if ! command -v dpkg-query >/dev/null; then
        echo "gradflow: not a Debian system; install the equivalents of: ${GF_PACKAGES[*]}" >&2
        return 0
    fi
    local missing=() p
    for p in "${GF_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local cmd=(apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}")
    if [ "$(id -u)" -ne 0 ]; then
        echo "gradflow: missing Debian packages; as root run:" >&2
        echo "  apt-get update && ${cmd[*]}" >&2
        exit 1
    fi
    echo "gradflow: installing ${missing[*]}" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive "${cmd[@]}" >/dev/null
}

# Extra CMake options come from GF_CMAKE_ARGS (a later -DCMAKE_BUILD_TYPE
# there wins over the default), never from the caller's arguments: this file
# is sourced, and those belong to gradflow or ctest.
gf_build() {
    # shellcheck disable=SC2086
    cmake -S "$GF_ROOT" -B "$GF_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${GF_CMAKE_ARGS:-} >/dev/null
    cmake --build "$GF_BUILD" -j "$(nproc)" >/dev/null
}

# Open MPI refuses root and more ranks than cores unless told; BLAS threads
# would fight the ranks for the cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

gf_install_packages
gf_build
