"""Reliability of long runs (README, section Reliability).

  - a simulation stopped by a signal or --max-walltime exits 75 with OUTPUT.ckpt
    and OUTPUT.partial, and --resume finishes it: every dataset is identical to an
    uninterrupted run on the same grid (bytes, and h5diff), within 1e-12 on another;
  - a rank killed with SIGKILL: the launcher ends promptly, an earlier complete output
    and the last checkpoint are untouched, nothing claims complete = 1, --resume finishes;
  - a checkpoint for other options is refused, naming the difference; a fresh run does
    not overwrite a checkpoint;
  - an I/O error while writing (a file-size limit, as a full disk): status 74, one
    message, the .partial left and never renamed;
  - overflowing activations or error signals stop the run at their step, naming it,
    unless --allow-nonfinite; the log-space flow norms stay finite.

Faults are injected with GRADFLOW_FAULT=RANK:STEP[:KILL|TERM|USR1] (a rank signals
itself at a flow write round; src/run.c), or by the real signal through mpiexec.
"""
import os
import pathlib
import shlex
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from gfrun import child_env, gradflow_bin, mpiexec_words, run_mpi

STOPPED, EUSAGE, EDATA, EIO = 75, 64, 65, 74

# 11 targets, each with lags 0..7: they finish one after another, so a stop
# finds some finished and some in flight; a checkpoint every 2 finished targets
SIM = ["--units", 24, "--outputs", 3, "--steps", 40, "--target-times", "10:T:3",
       "--flow-targets", "targets", "--flow-units-k", "outputs", "--max-lag", 7,
       "--checkpoint-every", 2, "--quiet", "-o", "out.h5"]
PINNED = {"SOURCE_DATE_EPOCH": "1700000000"}


def run(args, d, np_, env=None):
    return run_mpi(args, np=np_, cwd=d, env={**PINNED, **(env or {})})


def datasets(path):
    """{name: (dtype, shape, raw bytes)} of every dataset in the file."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.dtype.str, obj.shape, obj[()].tobytes() if obj.shape != (0,) else b"")
        f.visititems(visit)
    return out


def complete(path):
    with h5py.File(path, "r") as f:
        return int(f.attrs["complete"])


def grid_args(np_, grid):
    return ["--grid", grid] if grid else []


def act_when(cmd, cwd, env, ready, act):
    """Starts cmd, waits (at most 60 s) until ready() or its end, calls act(p) if it still
    runs, and returns (returncode, stdout, stderr); the process group is killed on any way out."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if p.poll() is None:
            act(p)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, out, err


def usr1(p):
    p.send_signal(signal.SIGUSR1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, one per (ranks, grid), made on first use."""
    made = {}

    def get(np_, grid=None):
        key = (np_, grid)
        if key not in made:
            d = tmp_path_factory.mktemp(f"ref{np_}{grid or ''}")
            r = run(SIM + grid_args(np_, grid), d, np_)
            assert r.returncode == 0, r.stderr
            made[key] = d / "out.h5"
        return made[key]
    return get


@pytest.mark.parametrize("np_,grid,fault", [(1, None, "0:3:TERM"), (2, None, "1:5:USR1"),
                                            (3, None, "2:4:TERM"), (4, "2x2", "3:6:USR1")])
def test_stop_and_resume_is_identical(reference, tmp_path, np_, grid, fault):
    args = SIM + grid_args(np_, grid)
    r = run(args, tmp_path, np_, env={"GRADFLOW_FAULT": fault})
    assert r.returncode == STOPPED, r.stderr
    assert "a stop signal" in r.stderr and "--resume" in r.stderr and "out.h5.ckpt" in r.stderr
    assert "MPI_ABORT" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5.ckpt", "out.h5.partial"]
    assert complete(tmp_path / "out.h5.ckpt") == 1 and complete(tmp_path / "out.h5.partial") == 0

    r = run(args + ["--resume"], tmp_path, np_)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    ref, got = datasets(reference(np_, grid)), datasets(tmp_path / "out.h5")
    assert sorted(ref) == sorted(got)
    assert [k for k in ref if ref[k] != got[k]] == [], "datasets differ from the uninterrupted run"
    h5diff = subprocess.run(["h5diff", str(reference(np_, grid)), str(tmp_path / "out.h5"),
                             "/flow/G", "/flow/G"], capture_output=True, text=True)
    assert h5diff.returncode == 0, h5diff.stdout + h5diff.stderr


def test_resume_on_another_grid(reference, tmp_path):
    """Stopped on 4 ranks (2 x 2), resumed on 3 (1 x 3): within 1e-12 of the uninterrupted run."""
    r = run(SIM + ["--grid", "2x2"], tmp_path, 4, env={"GRADFLOW_FAULT": "0:5:TERM"})
    assert r.returncode == STOPPED, r.stderr
    r = run(SIM + ["--resume"], tmp_path, 3)
    assert r.returncode == 0, r.stderr
    with h5py.File(reference(3), "r") as a, h5py.File(tmp_path / "out.h5", "r") as b:
        for name in ("flow/G", "flow/log10_norm_fro", "flow/log10_norm_max", "lag/contribution"):
            x, y = a[name][()], b[name][()]
            assert np.array_equal(np.isnan(x), np.isnan(y)), name
            ok = ~np.isnan(x)
            scale = np.abs(x[ok]).max()
            assert np.abs(x[ok] - y[ok]).max() <= 1e-12 * scale, name
        assert np.array_equal(a["forward/a"][()], b["forward/a"][()])


def test_killed_rank_loses_nothing(reference, tmp_path):
    """SIGKILL on rank 1 at the 6th write round, after a checkpoint, with an earlier
    complete output in place (--force)."""
    old = tmp_path / "out.h5"
    r = run(SIM + ["--seed", 9], tmp_path, 3)
    assert r.returncode == 0, r.stderr
    old_bytes = old.read_bytes()

    t0 = time.monotonic()
    r = run(SIM + ["--force"], tmp_path, 3, env={"GRADFLOW_FAULT": "1:6"})
    assert r.returncode != 0
    assert time.monotonic() - t0 < 30, "the launcher did not end promptly"
    assert old.read_bytes() == old_bytes, "the earlier complete output changed"
    ckpt = tmp_path / "out.h5.ckpt"
    assert complete(ckpt) == 1
    with h5py.File(ckpt, "r") as f:
        done = f["checkpoint/done"][()]
        assert 2 <= done.sum() < len(done)
    ckpt_bytes = ckpt.read_bytes()
    assert complete(tmp_path / "out.h5.partial") == 0
    assert not list(tmp_path.glob("*.ckpt.partial"))

    assert ckpt.read_bytes() == ckpt_bytes
    r = run(SIM + ["--force", "--resume"], tmp_path, 3)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    ref, got = datasets(reference(3)), datasets(old)
    # /config/ini records --force, which the reference run did not use
    assert [k for k in ref if ref[k] != got[k]] == ["config/ini"]


def test_resume_refuses_other_options(tmp_path):
    r = run(SIM, tmp_path, 2, env={"GRADFLOW_FAULT": "0:4:TERM"})
    assert r.returncode == STOPPED, r.stderr
    before = (tmp_path / "out.h5.ckpt").read_bytes()
    r = run([*SIM, "--w-max", 0.5, "--resume"], tmp_path, 2)
    assert r.returncode == EUSAGE
    assert "other options" in r.stderr and "w-max = 0.5" in r.stderr
    assert (tmp_path / "out.h5.ckpt").read_bytes() == before
    assert not (tmp_path / "out.h5").exists()
    # a fresh run would replace the checkpoint: refused without --force
    r = run(SIM, tmp_path, 2)
    assert r.returncode == EUSAGE and "out.h5.ckpt" in r.stderr and "--resume" in r.stderr
    assert (tmp_path / "out.h5.ckpt").read_bytes() == before


def test_resume_without_a_checkpoint(tmp_path):
    r = run(SIM + ["--resume"], tmp_path, 2)
    assert r.returncode == EIO and "out.h5.ckpt" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_max_walltime_stops_at_the_first_round(tmp_path):
    r = run(SIM + ["--max-walltime", "1e-9"], tmp_path, 2)
    assert r.returncode == STOPPED and "--max-walltime" in r.stderr, r.stderr
    r = run(SIM + ["--resume"], tmp_path, 2)
    assert r.returncode == 0, r.stderr
    assert complete(tmp_path / "out.h5") == 1


def test_signal_through_the_launcher(tmp_path):
    """SIGUSR1 to mpiexec (as Slurm's --signal reaches a job step) once the first
    checkpoint is written: exit 75, then --resume completes."""
    args = ["--units", 256, "--steps", 1200, "--target-times", "20:T:4", "--flow-targets", "targets",
            "--max-lag", 100, "--flow-units-k", "outputs", "--outputs", 4, "--no-flow-tensor",
            "--checkpoint-every", 20, "--quiet", "-o", "out.h5"]
    cmd = [*mpiexec_words(), "--oversubscribe", "-np", "2", gradflow_bin(), *map(str, args)]
    rc, _, err = act_when(cmd, tmp_path, child_env(), (tmp_path / "out.h5.ckpt").exists, usr1)
    if rc == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast for this size)")
    assert rc == STOPPED, err
    assert "a stop signal" in err
    r = run_mpi(args + ["--resume"], np=2, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert complete(tmp_path / "out.h5") == 1


@pytest.mark.parametrize("tensor_io", ["posix", "mpiio"])
def test_io_error_leaves_the_partial(tmp_path, tensor_io):
    """Writes beyond a file-size limit fail (EFBIG) as on a full disk: status 74, the
    error named once on rank 0, the .partial kept and never renamed; whether the
    tensor goes out with pwrite from the writer thread or through MPI-IO."""
    limit_kib = 4096
    inner = ["sh", "-c", f"trap '' XFSZ; ulimit -f {limit_kib * 2}; exec \"$0\" \"$@\"", gradflow_bin(),
             "--units", "256", "--steps", "100", "--flow-units-k", "all", "--quiet", "-o", "out.h5"]
    cmd = [*mpiexec_words(), "--oversubscribe", "-np", "3", *inner]
    r = subprocess.run(cmd, cwd=tmp_path, env=child_env({"GRADFLOW_TENSOR_IO": tensor_io}),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == EIO, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("gradflow: error:")]
    assert len(lines) == 1 and "writing" in lines[0] and "out.h5.partial" in lines[0], r.stderr
    assert not (tmp_path / "out.h5").exists()
    assert (tmp_path / "out.h5.partial").exists()
    with pytest.raises(Exception):  # truncated: HDF5 cannot even open it, or complete = 0
        assert complete(tmp_path / "out.h5.partial") == 1


NONFINITE = ["--units", 16, "--steps", 200, "--activation", "linear", "--w-max", 20, "--quiet",
             "--target-times", "T", "--flow-targets", "targets", "-o", "out.h5"]


def test_overflow_in_the_forward_pass_stops(tmp_path):
    r = run(NONFINITE + ["--a0-scale", 1], tmp_path, 2)
    assert r.returncode == EDATA, r.stderr
    assert "forward pass overflowed" in r.stderr and "step t = " in r.stderr and "units 0..15" in r.stderr
    assert "--allow-nonfinite" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_overflow_in_bptt_stops(tmp_path):
    """a(0) = 0 and no bias: a(t) = 0 stays finite, delta(t) grows backward until it overflows."""
    r = run(NONFINITE, tmp_path, 3)
    assert r.returncode == EDATA, r.stderr
    assert "BPTT overflowed" in r.stderr and "step t = " in r.stderr and "units 0..15" in r.stderr


def test_allow_nonfinite_carries_on_with_finite_log_norms(tmp_path):
    r = run(NONFINITE + ["--a0-scale", 1, "--allow-nonfinite"], tmp_path, 2)
    assert r.returncode == 0, r.stderr
    assert "warning: not finite" in r.stdout
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert not np.isfinite(f["forward/a"][()]).all()
        fro = f["flow/log10_norm_fro"][()]
        assert np.isfinite(fro).all() and fro.max() > 308  # beyond double's range, exact in log space


def test_sbatch_script_requeues_and_resumes(tmp_path):
    """jobs/gradflow.sbatch under stand-ins for srun (mpiexec, 2 ranks) and scontrol:
    the batch shell's SIGUSR1 reaches the ranks, exit 75 requeues, and the requeued
    job resumes from the checkpoint to a complete file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexec " + " ".join(map(shlex.quote, mpiexec_words()))
                                  + " --oversubscribe -np 2 \"$@\"\n")
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {shlex.quote(str(tmp_path / 'requeued'))}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    ini = tmp_path / "run.ini"
    ini.write_text("units = 256\nsteps = 1200\ntarget-times = 20:T:4\nflow-targets = targets\n"
                   "max-lag = 100\nflow-units-k = outputs\noutputs = 4\nno-flow-tensor = 1\n"
                   "checkpoint-every = 20\nquiet = 1\n")
    out = tmp_path / "out.h5"
    env = child_env({"PATH": f"{bin_dir}:{os.environ['PATH']}", "GRADFLOW": gradflow_bin(),
                     "CONFIG": str(ini), "OUT": str(out), "SLURM_JOB_ID": "4242"})
    env.pop("SLURM_NTASKS", None)
    script = str(pathlib.Path(__file__).resolve().parents[2] / "jobs" / "gradflow.sbatch")
    rc, log, _ = act_when(["bash", script], tmp_path, env, pathlib.Path(str(out) + ".ckpt").exists, usr1)
    if out.exists():
        pytest.skip("the run finished before the signal arrived (machine too fast for this size)")
    assert rc == 0, log
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"], log
    r = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming from" in r.stdout
    assert complete(out) == 1 and not pathlib.Path(str(out) + ".ckpt").exists()


def test_corrupt_weights_files_get_one_clear_error(tmp_path):
    """A valid --weights file cut short, or with bytes flipped all over its metadata
    (libhdf5 itself crashes on some such files; gradflow reads them in a child process
    first): each run ends with status 65 or 74 and one message, never a crash or hang."""
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f["W"] = np.random.default_rng(3).uniform(-0.5, 0.5, (6, 6))
    data = good.read_bytes()
    variants = {"cut-in-half": data[: len(data) // 2], "header-only": data[:96]}
    rng = np.random.default_rng(11)
    for k in range(8):  # flips in the superblock, the root group, the dataset header
        b = bytearray(data)
        lo = [0, 96, 200, 400, 600, 800][k % 6]
        for pos in rng.integers(lo, min(lo + 200, len(data)), 8):
            b[pos] ^= int(rng.integers(1, 256))
        variants[f"flipped-{k}"] = bytes(b)
    statuses = {}
    for name, blob in variants.items():
        path = tmp_path / f"{name}.h5"
        path.write_bytes(blob)
        r = run(["--weights", f"{path}:/W", "--steps", 3, "--flow-targets", "none", "--quiet",
                 "-o", tmp_path / f"out-{name}.h5"], tmp_path, 2)
        statuses[name] = r.returncode
        assert r.returncode in (0, EDATA, EIO), (name, r.returncode, r.stderr)
        if r.returncode:
            errors = [line for line in r.stderr.splitlines() if line.startswith("gradflow: error:")]
            assert len(errors) == 1 and "--weights" in errors[0], (name, r.stderr)
            assert not (tmp_path / f"out-{name}.h5").exists()
    assert sum(s != 0 for s in statuses.values()) >= len(variants) // 2, statuses


def test_output_directory_removed_mid_run(tmp_path):
    """The output directory vanishes while the flow runs: the final rename fails, status 74
    with one message naming the file, no hang."""
    d = tmp_path / "gone"
    d.mkdir()
    args = ["--units", 256, "--steps", 1200, "--target-times", "20:T:4", "--flow-targets", "targets",
            "--max-lag", 100, "--flow-units-k", "outputs", "--outputs", 4, "--no-flow-tensor",
            "--quiet", "-o", d / "out.h5"]
    cmd = [*mpiexec_words(), "--oversubscribe", "-np", "2", gradflow_bin(), *map(str, args)]
    def remove_dir(_):
        for f in d.iterdir():
            f.unlink()
        d.rmdir()

    rc, _, err = act_when(cmd, tmp_path, child_env(), (d / "out.h5.partial").exists, remove_dir)
    if d.exists():
        pytest.skip("the run finished before the directory could be removed")
    assert rc == EIO, err
    errors = [line for line in err.splitlines() if line.startswith("gradflow: error:")]
    assert len(errors) == 1 and "out.h5" in errors[0], err
