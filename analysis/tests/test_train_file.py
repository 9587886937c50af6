"""`gradflow train`: the /train group, grid invariance of training, and the
measured behaviour on the latch task (bounds set from measurements, with
margin: at lag 5, BPTT solved 6/6 seeds in 2.7 epochs on average and weight
guessing needed 135 guesses on average, n = 16)."""
import h5py
import numpy as np
import pytest

BASE = ["train", "--task", "latch", "--lag", "6", "--units", "9", "--epochs", "4",
        "--train-size", "24", "--batch", "8", "--test-size", "20", "--seed", "3", "--quiet"]
GRIDS = [("1x1", 1), ("2x1", 2), ("1x2", 2), ("2x2", 4)]


@pytest.fixture(scope="module")
def runs(gradflow, tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    out = {}
    for grid, np_ in GRIDS:
        path = base / f"train{grid}.h5"
        gradflow.ok(BASE + ["--grid", grid, "-o", str(path)], np=np_)
        out[grid] = path
    return out


def test_train_group_layout(runs):
    with h5py.File(runs["1x1"]) as f:
        t = f["train"]
        assert t.attrs["task"] == "latch" and t.attrs["method"] == "bptt"
        assert t.attrs["lag"] == 6 and t.attrs["T"] == 7 and t.attrs["epochs"] == 4
        assert t["loss"].shape == (4,) and t["log10_lag_share"].shape == (4, 7)
        assert t["log10_flow"].shape == (4, 7) and t["W"].shape == (9, 9)
        assert t["epoch"][()].tolist() == [1, 2, 3, 4] and t["lag"][()].tolist() == list(range(7))
        for name in ["loss", "grad_norm", "test_error", "log10_lag_share", "log10_flow", "W", "U", "b"]:
            assert t[name].attrs["description"]
        # the flow from the output unit starts at ||e_out|| = 1
        assert np.all(t["log10_flow"][:, 0] == 0.0)
        # the initial weights stay in /model; training moved them
        assert not np.array_equal(f["model/W"][()], t["W"][()])
        assert f["config"].attrs["task"] == "latch" and f["config"].attrs["steps"] == 7
        # the loss decreases over these epochs on this easy lag
        loss = t["loss"][()]
        assert loss[-1] < loss[0]


@pytest.mark.parametrize("grid", ["2x1", "1x2", "2x2"])
def test_training_curve_is_grid_invariant(runs, grid):
    """SPEC §5 for training: the same curve within 1e-10 relative on any grid."""
    with h5py.File(runs["1x1"]) as a, h5py.File(runs[grid]) as b:
        for name in ["loss", "grad_norm", "test_error", "W", "U", "b", "log10_flow"]:
            x, y = a["train"][name][()], b["train"][name][()]
            assert np.abs(x - y).max() <= 1e-10 * np.abs(x).max(), name
        x, y = a["train/log10_lag_share"][()], b["train/log10_lag_share"][()]
        ok = np.isfinite(x)
        assert np.array_equal(ok, np.isfinite(y))
        assert np.abs(x[ok] - y[ok]).max() <= 1e-10 * np.abs(x[ok]).max()


def test_bptt_solves_latch_at_lag_5(gradflow, tmp_path):
    out = tmp_path / "sweep.h5"
    gradflow.ok(["train", "--task", "latch", "--sweep-lag", "5", "--trials", "8", "--max-epochs", "60",
                 "--grid", "2x1", "--quiet", "-o", str(out)], np=2)
    with h5py.File(out) as f:
        s = f["train/sweep"]
        assert s["success"].shape == (1, 8) and s["lags"][()].tolist() == [5]
        succ, at = s["success"][0], s["success_at"][0]
        assert succ.mean() >= 0.75, succ
        assert at[succ == 1].mean() <= 20, at
        assert s["success_rate"][0] == succ.mean()


def test_guessing_solves_latch_at_lag_5(gradflow, tmp_path):
    out = tmp_path / "guess.h5"
    gradflow.ok(["train", "--task", "latch", "--method", "guess", "--sweep-lag", "5", "--trials", "4",
                 "--max-guesses", "3000", "--test-size", "50", "--quiet", "-o", str(out)], np=2)
    with h5py.File(out) as f:
        s = f["train/sweep"]
        assert s["success"][0].tolist() == [1, 1, 1, 1]
        assert (s["success_at"][0] >= 1).all() and (s["success_at"][0] <= 3000).all()


def test_training_options_need_the_subcommand(gradflow, tmp_path):
    r = gradflow.run(["--task", "latch", "-o", str(tmp_path / "x.h5")], np=1)
    assert r.returncode == 64 and "belongs to `gradflow train`" in r.stderr
    r = gradflow.run(["train", "--task", "latch", "--steps", "99", "-o", str(tmp_path / "y.h5")], np=1)
    assert r.returncode == 64 and "--steps" in r.stderr


RESUME = ["train", "--task", "latch", "--lag", "12", "--epochs", "6", "--units", "10", "--quiet"]


def test_stopped_run_resumes_to_the_same_file(gradflow, tmp_path):
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    ckpt = tmp_path / "part.h5.ckpt"
    gradflow.ok(RESUME + ["-o", str(full)], np=2)
    # a wall-time limit that has passed after the first epoch: clean stop, status 75
    r = gradflow.run(RESUME + ["--max-walltime", "1e-9", "-o", str(part)], np=2)
    assert r.returncode == 75, r.stderr
    assert "--resume" in r.stderr and ckpt.exists() and not part.exists()
    assert not (tmp_path / "part.h5.partial").exists()
    with h5py.File(ckpt) as c:
        assert c.attrs["complete"] == 1 and c["checkpoint"].attrs["epochs"] == 1
    # resume in steps of at least one epoch (each stops again), then to the end
    for _ in range(10):
        r = gradflow.run(RESUME + ["--max-walltime", "1e-9", "--resume", "-o", str(part)], np=2)
        assert r.returncode in (0, 75), r.stderr
        if r.returncode == 0:
            break
    assert r.returncode == 0 and part.exists() and not ckpt.exists()
    with h5py.File(full) as a, h5py.File(part) as b:
        for name in ["model/W", "model/U", "model/b", "train/loss", "train/grad_norm", "train/test_error",
                     "train/log10_lag_share", "train/log10_flow", "train/W", "train/U", "train/b"]:
            assert np.array_equal(a[name][()], b[name][()]), name
        for k in ["success", "success_at", "epochs", "final_test_error"]:
            assert a["train"].attrs[k] == b["train"].attrs[k], k


def test_resume_refuses_other_options(gradflow, tmp_path):
    out = tmp_path / "x.h5"
    r = gradflow.run(RESUME + ["--max-walltime", "1e-9", "-o", str(out)], np=2)
    assert r.returncode == 75
    r = gradflow.run(RESUME + ["--lr", "0.5", "--resume", "-o", str(out)], np=2)
    assert r.returncode == 64 and "lr = 0.5" in r.stderr, r.stderr
    r = gradflow.run(RESUME + ["--resume", "-o", str(tmp_path / "none.h5")], np=2)
    assert r.returncode == 74 and "checkpoint" in r.stderr


def test_signal_stops_training_with_a_checkpoint(gradflow, tmp_path):
    import os, signal, subprocess, time
    from gfrun import child_env, gradflow_bin, mpiexec_words
    out = tmp_path / "sig.h5"
    cmd = [*mpiexec_words(), "--oversubscribe", "-np", "2", gradflow_bin(), "train", "--task", "latch",
           "--lag", "40", "--epochs", "100000", "--units", "16", "--quiet", "-o", str(out)]
    p = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    time.sleep(2.0)
    p.send_signal(signal.SIGUSR1)  # mpirun forwards SIGUSR1 to the ranks (Slurm's --signal)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("training did not stop within 60 s of SIGUSR1")
    assert p.returncode == 75, err
    assert "(a stop signal)" in err and (tmp_path / "sig.h5.ckpt").exists() and not out.exists()


def test_stopped_sweep_resumes_on_another_grid(gradflow, tmp_path):
    """A sweep stopped after each round resumes, even on another grid, to the same table
    (outcomes exact; errors within 1e-12 relative, as the unit split changes sums)."""
    args = ["train", "--task", "latch", "--sweep-lag", "3,6", "--trials", "3", "--max-epochs", "20",
            "--units", "8", "--quiet"]
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    gradflow.ok(args + ["--grid", "2x1", "-o", str(full)], np=2)
    r = gradflow.run(args + ["--grid", "2x1", "--max-walltime", "1e-9", "-o", str(part)], np=2)
    assert r.returncode == 75 and "rounds of the sweep" in r.stderr, r.stderr
    for _ in range(8):
        r = gradflow.run(args + ["--grid", "1x2", "--max-walltime", "1e-9", "--resume", "-o", str(part)],
                         np=2)
        assert r.returncode in (0, 75), r.stderr
        if r.returncode == 0:
            break
    assert r.returncode == 0 and part.exists() and not (tmp_path / "part.h5.ckpt").exists()
    with h5py.File(full) as a, h5py.File(part) as b:
        for k in ["success", "success_at", "success_rate"]:
            assert np.array_equal(a["train/sweep"][k][()], b["train/sweep"][k][()]), k
        x, y = a["train/sweep/final_test_error"][()], b["train/sweep/final_test_error"][()]
        assert np.abs(x - y).max() <= 1e-12 * np.abs(x).max()
