"""The offline analysis tools: analysis/gradflow_io.py, report.py and compare.py.

Every input file is produced here by running gradflow on a small net (n = 24,
T = 40; a few seconds in all).  The tools run as users run them, as
subprocesses of /usr/bin/python3, and their summary.json is checked against
an independent numpy computation from the file's own datasets:

* decay rates: np.polyfit of /flow/log10_norm_fro against the lag, per target;
* ||W||_A, the column-sum norm, w_max, lambda from /model/W;
* the fraction of path factors |f'_i(net_i(tau)) w_ij| above 1 from the full
  T x n x n array (affordable at this size; the tool never forms it);
* the flow tensor read through a memory cap smaller than /flow/G: no block
  larger than the cap, and all blocks together equal a direct read.

Training files (`gradflow train`: one BPTT run, a BPTT sweep and a guessing sweep of
the latch task, n <= 10, a few epochs, 3 lags x 2 trials; well under a second each)
are reported too: the training figures are written and not blank, and summary.json's
training numbers (final loss, success, the long-lag share, the flow at the task's
lag, the success rate per lag) agree with an independent read of the file.
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

ANALYSIS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ANALYSIS))
import gradflow_io as gio  # noqa: E402

PYTHON = "/usr/bin/python3"
TIMEOUT = 180

# tanh with w_max 1.5: some path factors exceed 1, the flow neither vanishes nor
# explodes at once; K = all makes /flow/G 4 x 40 x 24 x 24 doubles (737 KiB)
BASE = ["--units", "24", "--inputs", "2", "--outputs", "2", "--steps", "40",
        "--activation", "tanh", "--w-max", "1.5", "--bias-scale", "0.3", "--a0-scale", "0.5",
        "--target-times", "10:T:10", "--flow-units-k", "all", "--seed", "7", "--quiet"]
CAP_MB = 0.05            # the report's memory cap in the main run: 51 KiB < /flow/G
FIGURES = {"flow_decay.png", "flow_heatmaps.png", "lag_share.png", "activations.png",
           "fprime.png", "path_factors.png"}


def run_tool(tool, *args):
    """Runs analysis/TOOL.py with Debian's interpreter; returns the CompletedProcess."""
    return subprocess.run([PYTHON, str(ANALYSIS / tool), *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT)


def ok_tool(tool, *args):
    r = run_tool(tool, *args)
    assert r.returncode == 0, f"{tool} {args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def main_file(gradflow, work):
    path = work / "main.h5"
    gradflow.ok(BASE + ["-o", path], np=2)
    return path


@pytest.fixture(scope="module")
def main_report(main_file, work):
    out = work / "main_report"
    ok_tool("report.py", main_file, "-o", out, "--max-memory-mb", CAP_MB)
    return out, json.loads((out / "summary.json").read_text())


# ---------------------------------------------------------------- report.py


def test_every_figure_is_written_and_not_blank(main_report):
    out, summary = main_report
    assert set(summary["figures"]) == FIGURES
    for name in FIGURES:
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        assert float(img[..., :3].var()) > 0, f"{name} is blank"


def test_index_html_references_every_png(main_report):
    out, _ = main_report
    page = (out / "index.html").read_text()
    referenced = set(re.findall(r"src='([^']+\.png)'", page))
    assert referenced == {p.name for p in out.glob("*.png")} == FIGURES
    assert "summary.json" in page
    assert "<figcaption>" in page


def test_summary_agrees_with_numpy(main_report, main_file):
    _, s = main_report
    with h5py.File(main_file, "r") as f:
        W = f["model/W"][()]
        fp = f["forward/fprime"][()]
        fro = f["flow/log10_norm_fro"][()]
        targets = f["flow/targets"][()]
        E = f["backward/E"][()]
        dW = f["gradient/dE_dW"][()]
    n, T = W.shape[0], fp.shape[0]
    assert (s["n"], s["T"], s["activation"]) == (24, 40, "tanh")
    assert rel(s["loss"], E.sum()) < 1e-12
    assert rel(s["norm_dE_dW"], np.linalg.norm(dW)) < 1e-12
    absW = np.abs(W)
    assert rel(s["norm_A"], absW.sum(axis=1).max()) < 1e-12
    assert rel(s["norm_A_columns"], absW.sum(axis=0).max()) < 1e-12
    assert rel(s["w_max"], absW.max()) < 1e-15
    assert rel(s["lambda"], n * absW.max() * 1.0) < 1e-12
    assert s["fprime_max_theory"] == 1.0
    assert s["fprime_max_measured"] == fp.max()

    bound = np.log10(1.0 * absW.sum(axis=1).max())
    rates = []
    assert [p["t"] for p in s["targets"]] == targets.tolist()
    for p, y in zip(s["targets"], fro):
        lags = np.arange(len(y))
        fin = np.isfinite(y)
        rate = np.polyfit(lags[fin], y[fin], 1)[0]
        rates.append(rate)
        assert abs(p["decay_rate"] - rate) < 1e-9, p
        assert abs(p["bound_rate_theory"] - bound) < 1e-12
        assert abs(p["bound_rate_measured"] - np.log10(fp.max() * absW.sum(axis=1).max())) < 1e-12
        below = np.nonzero(y[1:] - y[0] < -16)[0]
        assert p["first_lag_below_1e-16"] == (int(below[0]) + 1 if below.size else None)
    assert abs(s["decay_rate_mean"] - np.mean(rates)) < 1e-9

    # the path factors, all T n^2 of them at once (the tool streams them)
    P = fp[:, :, None] * absW[None, :, :]          # P[tau-1, i, j] = f'_i(net_i(tau)) |w_ij|
    above = (P > 1).sum(axis=(1, 2))
    assert above.sum() > 0, "the test net should have path factors above 1"
    assert s["path_factors"]["count"] == T * n * n
    assert s["path_factors"]["above_1"] == int(above.sum())
    assert s["path_factors"]["fraction_above_1"] == pytest.approx((P > 1).mean(), rel=1e-12)
    PG = fp[:, None, :] * absW[None, :, :]         # SPEC §3's ordering f'_j |w_ij|
    assert s["path_factors"]["fraction_above_1_spec3_ordering"] == pytest.approx((PG > 1).mean(),
                                                                               rel=1e-12)
    for p in s["targets"]:
        t, last = p["t"], p["valid_lags"][1]
        window = above[t - last:t]                  # tau = t - last + 1 .. t
        assert p["fraction_path_factors_above_1"] == pytest.approx(window.sum() / (last * n * n),
                                                                  rel=1e-12)


def test_report_reads_flow_tensor_in_slabs_under_the_cap(main_report, main_file):
    _, s = main_report
    with h5py.File(main_file, "r") as f:
        G = f["flow/G"][()]
    cap = int(CAP_MB * (1 << 20))
    ft = s["flow_tensor"]
    assert ft["bytes"] == G.nbytes > cap
    assert ft["read_budget_bytes"] == cap
    assert ft["slabs"] > 1
    assert 0 < ft["largest_slab_bytes"] <= cap
    assert ft["elements_read"] == G.size
    assert ft["nan_entries"] == int(np.isnan(G).sum())
    assert ft["sum_of_finite_entries"] == pytest.approx(G[np.isfinite(G)].sum(), rel=1e-12)
    assert ft["axes"] == ["target", "lag", "unit_v", "unit_k"]


@pytest.mark.parametrize("budget", [50_000, 1_000, 100])
def test_slab_generator_is_bounded_and_complete(main_file, budget):
    """50 kB: blocks of whole lags; 1 kB: one lag's V rows split; 100 B: a row's K split."""
    with gio.open_file(main_file) as f:
        G = f["flow/G"][()]
        assert budget < G.nbytes
        seen = np.zeros(G.shape, dtype=np.int64)
        copy = np.full(G.shape, -7.0)
        total, nblocks = 0.0, 0
        for slab in gio.iter_flow_slabs(f, budget):
            assert slab.data.nbytes <= budget
            assert slab.data.ndim == 3
            idx = (slab.target, slab.lags, slab.rows, slab.cols)
            seen[idx] += 1
            copy[idx] = slab.data
            total += np.nansum(slab.data)
            nblocks += 1
    assert nblocks >= G.nbytes / budget
    assert (seen == 1).all(), "every element exactly once"
    assert np.array_equal(copy, G, equal_nan=True)
    assert total == pytest.approx(np.nansum(G), rel=1e-12)


def test_loader_names_axes_and_reads_config(main_file):
    with gio.open_file(main_file) as f:
        assert gio.axis_names(f["flow/G"]) == ["target", "lag", "unit_v", "unit_k"]
        assert gio.axis_names(f["forward/a"]) == ["time", "unit"]
        assert gio.axis_names(f["lag/log10_contribution"]) == ["target", "lag"]
        assert gio.axis_values(f["flow/G"], 0).tolist() == [10, 20, 30, 40]
        cfg = gio.read_config(f)
        assert cfg.options["units"] == 24 and cfg.options["activation"] == "tanh"
        assert isinstance(cfg.ini, str) and "units = 24" in cfg.ini
        fa = gio.flow_attrs(f)
        assert set(fa) >= {"norm_A", "norm_A_columns", "w_max", "lambda", "fprime_max_theory",
                           "fprime_max_measured"}


def test_incomplete_file_is_refused_unless_allowed(main_file, work):
    path = work / "incomplete.h5"
    shutil.copy(main_file, path)
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = np.int64(0)
    r = run_tool("report.py", path, "-o", work / "inc_refused")
    assert r.returncode != 0
    assert str(path) in r.stderr and "incomplete" in r.stderr and "--allow-incomplete" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(gio.IncompleteFileError):
        gio.open_file(path)
    out = work / "inc_allowed"
    ok_tool("report.py", path, "-o", out, "--allow-incomplete")
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is False
    assert any("INCOMPLETE" in n for n in s["notes"])
    assert set(s["figures"]) == FIGURES


@pytest.mark.parametrize("kind", ["no_format", "other_format", "not_hdf5"])
def test_foreign_file_is_refused(work, kind):
    path = work / f"foreign_{kind}.h5"
    if kind == "not_hdf5":
        path.write_text("units = 4\n")
    else:
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3.0)
            if kind == "other_format":
                f.attrs["format"] = "other/1"
    r = run_tool("report.py", path, "-o", work / f"out_{kind}")
    assert r.returncode != 0
    assert str(path) in r.stderr and "Traceback" not in r.stderr
    if kind == "no_format":
        assert "'format' is missing" in r.stderr and "gradflow/1" in r.stderr
    elif kind == "other_format":
        assert "other/1" in r.stderr and "gradflow/1" in r.stderr
    else:
        assert "not a readable HDF5 file" in r.stderr
    with pytest.raises(gio.GradflowFileError):
        gio.open_file(path)


def test_no_flow_tensor_skips_heat_maps_with_a_note(gradflow, work):
    path = work / "notensor.h5"
    gradflow.ok(BASE + ["--no-flow-tensor", "-o", path], np=2)
    out = work / "notensor_report"
    ok_tool("report.py", path, "-o", out)
    s = json.loads((out / "summary.json").read_text())
    assert set(s["figures"]) == FIGURES - {"flow_heatmaps.png"}
    assert not (out / "flow_heatmaps.png").exists()
    assert s["flow_tensor"] is None
    assert any("--no-flow-tensor" in n for n in s["notes"])
    assert "--no-flow-tensor" in (out / "index.html").read_text()


def test_train_group_is_detected(main_file, work):
    path = work / "with_train.h5"
    shutil.copy(main_file, path)
    with h5py.File(path, "r+") as f:
        f.create_group("train")
    out = work / "train_report"
    ok_tool("report.py", path, "-o", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["train"] is not None
    assert any("/train" in n for n in s["notes"])


# ---------------------------------------------------------------- compare.py


def test_compare_sweep_matches_independent_fit(gradflow, work):
    paths = []
    for w in ("0.2", "0.5", "1.0"):
        path = work / f"sweep_w{w}.h5"
        gradflow.ok(["--units", "16", "--inputs", "2", "--steps", "30", "--w-max", w,
                     "--bias-scale", "0.3", "--target-times", "10:T:10", "--no-flow-tensor",
                     "--seed", "3", "--quiet", "-o", path], np=2)
        paths.append(path)
    out = work / "compare"
    ok_tool("compare.py", *paths, "-o", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["figures"] == ["decay_vs_theory.png"]
    img = mpimg.imread(out / "decay_vs_theory.png")
    assert float(img[..., :3].var()) > 0
    assert "src='decay_vs_theory.png'" in (out / "index.html").read_text()
    assert s["train"] is None and any("/train" in n for n in s["notes"])
    assert [r["config_w_max"] for r in s["files"]] == [0.2, 0.5, 1.0]
    for rec, path in zip(s["files"], paths):
        with h5py.File(path, "r") as f:
            fro = f["flow/log10_norm_fro"][()]
            W = f["model/W"][()]
        rates = []
        for y in fro:
            fin = np.isfinite(y)
            rates.append(np.polyfit(np.arange(len(y))[fin], y[fin], 1)[0])
        assert rec["rates"] == pytest.approx(rates, abs=1e-9)
        assert rec["decay_rate_mean"] == pytest.approx(np.mean(rates), abs=1e-9)
        normA = np.abs(W).sum(axis=1).max()
        assert rec["lambda"] == pytest.approx(16 * np.abs(W).max() * 0.25, rel=1e-12)
        assert rec["bound_rate_theory"] == pytest.approx(np.log10(0.25 * normA), abs=1e-12)
        assert rec["bound_holds"] is True
        assert max(rates) <= rec["bound_rate_theory"]
    # larger weights, slower decay
    means = [r["decay_rate_mean"] for r in s["files"]]
    assert means == sorted(means)


def test_compare_refuses_a_foreign_file(main_file, work):
    path = work / "foreign_cmp.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "other/1"
    r = run_tool("compare.py", main_file, path, "-o", work / "cmp_bad")
    assert r.returncode != 0 and "other/1" in r.stderr and str(path) in r.stderr


# ---------------------------------------------------------------- training files

TRAIN = ["train", "--task", "latch", "--units", "9", "--train-size", "40", "--batch", "10",
         "--test-size", "20", "--seed", "3", "--quiet"]
# the sweeps: some trials fail (too few epochs or guesses for the longer lags)
SWEEP = ["train", "--task", "latch", "--sweep-lag", "2,6,20", "--trials", "2", "--units", "8",
         "--train-size", "40", "--batch", "10", "--test-size", "20", "--grid", "2x1", "--quiet"]
TRAIN_FIGURES = {"train_curves.png", "train_lag_share.png", "train_flow.png"}


def assert_not_blank(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600, path.name
    rgb = img[..., :3]
    assert float(rgb.var()) > 0, f"{path.name} is blank"
    # more than a frame and a title: a good part of the pixels is not white
    assert float((rgb.min(axis=2) < 0.9).mean()) > 0.03, f"{path.name} is nearly empty"


@pytest.fixture(scope="module")
def train_run(gradflow, work):
    path = work / "train_run.h5"
    gradflow.ok(TRAIN + ["--lag", "6", "--epochs", "12", "-o", path], np=2)
    out = work / "train_run_report"
    ok_tool("report.py", path, "-o", out)
    return path, out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def sweeps(gradflow, work):
    bptt, guess = work / "sweep_bptt.h5", work / "sweep_guess.h5"
    gradflow.ok(SWEEP + ["--max-epochs", "10", "-o", bptt], np=2)
    gradflow.ok(SWEEP + ["--method", "guess", "--max-guesses", "40", "-o", guess], np=2)
    return bptt, guess


def test_training_run_figures_are_written_and_not_blank(train_run):
    path, out, s = train_run
    assert set(s["figures"]) == TRAIN_FIGURES
    for name in TRAIN_FIGURES:
        assert_not_blank(out / name)
    page = (out / "index.html").read_text()
    assert set(re.findall(r"src='([^']+\.png)'", page)) == TRAIN_FIGURES
    assert page.count("<figcaption>") == 3 and "Training run" in page
    # the figures of a gradflow run are skipped with a note, not an error
    with h5py.File(path, "r") as f:
        assert not {"forward", "flow", "lag"} & set(f)
    assert any("training file" in n and "/forward" in n for n in s["notes"])
    assert s["flow_tensor"] is None and "targets" not in s


def test_training_run_summary_agrees_with_the_file(train_run):
    path, _, s = train_run
    t = s["train"]
    with h5py.File(path, "r") as f:
        g = f["train"]
        attrs = {k: g.attrs[k] for k in g.attrs if k != "description"}
        loss, gn, te = g["loss"][()], g["grad_norm"][()], g["test_error"][()]
        share, flow = g["log10_lag_share"][()], g["log10_flow"][()]
        W0, W1 = f["model/W"][()], g["W"][()]
    assert t["kind"] == "run" and t["method"] == "bptt" and t["task"] == "latch"
    assert (t["lag"], t["T"], t["epochs"]) == (6, 7, 12) == (attrs["lag"], attrs["T"], len(loss))
    assert t["final_loss"] == loss[-1] and t["initial_loss"] == loss[0]
    assert t["loss"]["min"] == loss.min() and t["loss"]["min_epoch"] == int(np.argmin(loss)) + 1
    assert t["grad_norm"]["final"] == gn[-1]
    assert t["test_error"]["final"] == te[-1] == attrs["final_test_error"]
    assert t["success"] == attrs["success"] and t["success_at"] == attrs["success_at"]
    below = np.nonzero(te < attrs["threshold"])[0]
    assert t["test_error"]["first_epoch_below_threshold"] == (int(below[0]) + 1 if below.size
                                                              else None)
    assert t["success_at"] == (int(below[0]) + 1 if below.size else -1)
    # the share of dE/dW from the lags L >= lag - 1 (the terms that reach back to the
    # information step), per epoch, from 10^log10_lag_share
    sh = np.where(np.isfinite(share), 10.0 ** share, 0.0)
    frac = sh[:, 5:].sum(axis=1) / sh.sum(axis=1)
    ls = t["lag_share"]
    assert ls["long_lags_from"] == 5
    assert ls["log10_share_long_lags"]["final"] == pytest.approx(np.log10(frac[-1]), abs=1e-12)
    assert ls["log10_share_long_lags"]["min"] == pytest.approx(np.log10(frac.min()), abs=1e-12)
    epochs = [p["epoch"] for p in ls["profiles"]]
    assert epochs[0] == 1 and epochs[-1] == 12 and 6 in epochs
    for p in ls["profiles"]:
        e = p["epoch"] - 1
        assert p["share_long_lags"] == pytest.approx(frac[e], rel=1e-10)
        cum = np.cumsum(sh[e]) / sh[e].sum()
        assert p["lag_99pct"] == int(np.argmax(cum >= 0.99 - 1e-12))
    fl = t["flow"]
    assert fl["information_lag"] == 6
    assert fl["log10_flow_at_information_lag"]["final"] == flow[-1, 6]
    assert fl["log10_flow_at_information_lag"]["max"] == flow[:, 6].max()
    for p in fl["profiles"]:
        y = flow[p["epoch"] - 1]
        assert p["decay_rate"] == pytest.approx(np.polyfit(np.arange(7), y, 1)[0], abs=1e-9)
    assert t["weights"]["initial"]["norm_A"] == pytest.approx(np.abs(W0).sum(axis=1).max(),
                                                              rel=1e-12)
    assert t["weights"]["final"]["norm_A"] == pytest.approx(np.abs(W1).sum(axis=1).max(),
                                                            rel=1e-12)
    assert t["weights"]["final"]["lambda"] == pytest.approx(9 * np.abs(W1).max(), rel=1e-12)


def test_training_maps_are_read_in_bounded_blocks(train_run):
    """The same heat map, profiles and per-epoch numbers through a one-row budget."""
    import report
    path, _, _ = train_run
    with gio.open_file(path) as f:
        ds = f["train/log10_lag_share"]
        full = ds[()]
        maps = [report.epoch_lag_map(ds, b, gio.log10_fractions, lambda y: float(y[0]), {0, 11})
                for b in (1, 1 << 20)]
        curve = gio.read_curve(f["train/loss"], 8, max_points=5)
        loss = f["train/loss"][()]
    for mp in maps:
        assert np.array_equal(mp.image, np.array([gio.log10_fractions(r) for r in full]))
        assert mp.stat_index.tolist() == list(range(12))
        assert mp.stat_last == gio.log10_fractions(full[-1])[0]
    assert curve.n == 12 and curve.stride == 3 and curve.index.tolist() == [0, 3, 6, 9, 11]
    assert curve.values.tolist() == loss[[0, 3, 6, 9, 11]].tolist()
    assert (curve.last, curve.min, curve.max) == (loss[-1], loss.min(), loss.max())


def test_sweep_report_shows_success_rate_per_lag(sweeps, work):
    path = sweeps[0]
    out = work / "sweep_report"
    ok_tool("report.py", path, "-o", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["figures"] == ["sweep_success.png"]
    assert_not_blank(out / "sweep_success.png")
    assert "src='sweep_success.png'" in (out / "index.html").read_text()
    with h5py.File(path, "r") as f:
        g = f["train/sweep"]
        succ, at, rate, lags = g["success"][()], g["success_at"][()], g["success_rate"][()], \
            g["lags"][()]
    t = s["train"]
    assert t["kind"] == "sweep" and t["method"] == "bptt" and t["success_at_unit"] == "epochs"
    assert t["lags"] == lags.tolist() == [2, 6, 20] and t["trials"] == 2
    assert t["success_rate"] == rate.tolist() == succ.mean(axis=1).tolist()
    assert 0 < succ.mean() < 1, "the test sweep should have solved and failed trials"
    for r, L, row, row_at in zip(t["per_lag"], lags, succ, at):
        assert r["lag"] == L and r["solved"] == int(row.sum())
        assert r["success_rate_recomputed"] == row.mean()
        ok = row == 1
        assert r["mean_success_at"] == (pytest.approx(row_at[ok].mean()) if ok.any() else None)
        lo, hi = r["success_rate_95ci"]
        assert lo <= row.mean() <= hi
    assert t["overall_success_rate"] == pytest.approx(succ.mean())
    assert not any("success_rate at lag" in n for n in s["notes"])


def test_guess_run_without_epochs_is_reported_with_a_note(gradflow, work):
    path = work / "guess_run.h5"
    gradflow.ok(["train", "--task", "latch", "--method", "guess", "--lag", "3", "--units", "8",
                 "--max-guesses", "50", "--test-size", "20", "--quiet", "-o", path], np=2)
    out = work / "guess_run_report"
    ok_tool("report.py", path, "-o", out)
    s = json.loads((out / "summary.json").read_text())
    with h5py.File(path, "r") as f:
        attrs = dict(f["train"].attrs)
    assert s["figures"] == []
    assert s["train"]["kind"] == "run" and s["train"]["method"] == "guess"
    assert s["train"]["guesses"] == attrs["guesses"] and s["train"]["success"] == attrs["success"]
    assert any("no per-epoch data" in n for n in s["notes"])


def test_compare_success_rates_side_by_side(sweeps, train_run, work):
    bptt, guess = sweeps
    out = work / "compare_train"
    ok_tool("compare.py", bptt, guess, train_run[0], "-o", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["figures"] == ["success_vs_lag.png"]
    assert_not_blank(out / "success_vs_lag.png")
    page = (out / "index.html").read_text()
    assert "src='success_vs_lag.png'" in page and "<figcaption>" in page
    t = s["train"]
    assert t["compared"] is True and t["figure"] == "success_vs_lag.png"
    assert [r["method"] for r in t["sweeps"]] == ["bptt", "guess"]
    assert [r["success_at_unit"] for r in t["sweeps"]] == ["epochs", "guesses"]
    for r, path in zip(t["sweeps"], sweeps):
        with h5py.File(path, "r") as f:
            succ = f["train/sweep/success"][()]
            assert r["lags"] == f["train/sweep/lags"][()].tolist()
        assert r["success_rate"] == succ.mean(axis=1).tolist()
    assert [r["file"] for r in t["runs"]] == [str(train_run[0])]
    assert any("training file" in n for n in s["notes"])
