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
