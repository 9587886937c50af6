"""Which BLAS kernels a run uses, and the warning when they are behind the CPU.

Debian 12's OpenBLAS (0.3.21) does not recognise some recent processors under
virtualisation and falls back to its SSE3 kernels ("Prescott"), several times
slower (README, Performance).  gradflow names the kernels in --version, in the
run's header and in the root attribute `blas`, and rank 0 warns once when an
AVX2/FMA CPU runs kernels without those instructions.  OPENBLAS_CORETYPE forces
a kernel family, so both sides are tested on any x86-64 CPU with AVX2 and FMA.
"""
import platform

import h5py
import pytest

RUN = ["--units", 12, "--steps", 6, "--flow-targets", "none"]
WARNING = "gradflow: warning: OpenBLAS runs its"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


FLAGS = cpu_flags()
AVX2 = platform.machine() == "x86_64" and {"avx2", "fma"} <= FLAGS
AVX512 = {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= FLAGS
needs_avx2 = pytest.mark.skipif(not AVX2, reason="needs an x86-64 CPU with AVX2 and FMA")


def test_version_names_the_blas(gradflow):
    r = gradflow.ok(["--version"])
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gradflow ") and lines[1].startswith("BLAS: OpenBLAS "), r.stdout


@needs_avx2
@pytest.mark.parametrize("np_", [1, 3])
def test_baseline_kernels_on_an_avx2_cpu_warn_once(gradflow, tmp_path, np_):
    r = gradflow.ok([*RUN, "-o", tmp_path / "out.h5"], np=np_, env={"OPENBLAS_CORETYPE": "Prescott"})
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith(WARNING)]
    assert len(warnings) == 1, r.stderr  # rank 0 alone
    assert "'Prescott'" in warnings[0], warnings[0]
    assert f"OPENBLAS_CORETYPE={'SkylakeX' if AVX512 else 'Haswell'}" in warnings[0], warnings[0]
    assert "# BLAS: OpenBLAS" in r.stdout and "Prescott" in r.stdout, r.stdout
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert "Prescott" in f.attrs["blas"], f.attrs["blas"]
        assert f.attrs["complete"] == 1


@needs_avx2
def test_avx2_kernels_do_not_warn(gradflow, tmp_path):
    r = gradflow.ok([*RUN, "-o", tmp_path / "out.h5"], np=2, env={"OPENBLAS_CORETYPE": "Haswell"})
    assert WARNING not in r.stderr, r.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert "Haswell" in f.attrs["blas"], f.attrs["blas"]


def test_quiet_still_warns_but_prints_no_header(gradflow, tmp_path):
    """--quiet drops the header; the warning is about the run's speed, so it stays."""
    env = {"OPENBLAS_CORETYPE": "Prescott"} if AVX2 else None
    r = gradflow.ok([*RUN, "--quiet", "-o", tmp_path / "out.h5"], env=env)
    assert "# BLAS" not in r.stdout, r.stdout
    assert (WARNING in r.stderr) == AVX2, r.stderr
