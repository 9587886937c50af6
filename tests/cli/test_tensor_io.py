"""How /flow/G and /flow/J reach the file (README, "Layout of /flow/G").

By default each rank writes its rows of every round with pwrite at the
datasets' fixed offsets, from a thread of its own while the flow computes;
GRADFLOW_TENSOR_IO=mpiio sends them through HDF5's MPI-IO driver instead.  The
two must give the same file contents on every grid, including uneven row
blocks (40 units over 3 ranks), where each lag of a rank's rows is a separate
piece of the file; the write-back thread's error path is tested in
test_reliability.py (test_io_error_leaves_the_partial, both ways).
"""
import h5py
import numpy as np
import pytest

RUN = ["--units", 40, "--outputs", 3, "--steps", 30, "--target-times", "8:T:3",
       "--flow-targets", "targets", "--max-lag", 11, "--state-jacobian", "--quiet"]
PINNED = {"SOURCE_DATE_EPOCH": "1700000000"}


def tensors(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] == 1
        assert f["flow/G"].chunks is None and f["flow/J"].chunks is None
        return f["flow/G"][()], f["flow/J"][()]


@pytest.mark.parametrize("np_,grid", [(1, None), (2, None), (3, None), (4, "2x2")])
def test_posix_and_mpiio_write_the_same_tensor(gradflow, tmp_path, np_, grid):
    extra = ["--grid", grid] if grid else []
    out = {}
    for io in ("posix", "mpiio"):
        gradflow.ok([*RUN, *extra, "-o", tmp_path / f"{io}.h5"], np=np_,
                    env={**PINNED, "GRADFLOW_TENSOR_IO": io})
        out[io] = tensors(tmp_path / f"{io}.h5")
    targets = np.arange(8, 31, 3)
    invalid = targets[:, None] - np.arange(12)[None, :] < 1  # lags before time 1 (t = 8)
    assert invalid.any()
    for a, b in zip(out["posix"], out["mpiio"]):
        assert a.shape == (8, 12, 40, 3)
        assert np.array_equal(a, b, equal_nan=True)
        # every entry written: NaN exactly where t_i - L < 1, finite elsewhere
        assert np.isnan(a[invalid]).all() and np.isfinite(a[~invalid]).all()


def test_unknown_tensor_io_is_refused(gradflow, tmp_path):
    r = gradflow.run([*RUN, "-o", tmp_path / "out.h5"], np=2, env={"GRADFLOW_TENSOR_IO": "fast"})
    assert r.returncode == 64, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gradflow: error:")]
    assert len(errors) == 1 and "GRADFLOW_TENSOR_IO='fast'" in errors[0] and "mpiio" in errors[0], r.stderr
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.partial").exists()
