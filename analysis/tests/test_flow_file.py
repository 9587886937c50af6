"""The /flow and /lag groups of gradflow/1 files (SPEC §3, §4, §6).

Every file is produced here by running gradflow; the reference is an
independent numpy computation from the file's own /model and /forward
datasets: the backward recursion G_L = F'(t-L) W^T G_{L-1} in plain float64,
which is exact enough at the short lags used (no under/overflow).

Accuracy norm: rel(X, R) = max |X - R| / max |R| over finite entries, with
non-finite entries (NaN where t_i - L < 1, -inf for log10 0) required at the
same places.  Tolerance 1e-12 (SPEC §5) unless stated.
"""
import re

import h5py
import numpy as np
import pytest

RTOL = 1e-12

# n = 11 does not split evenly over 2, 3 or 4 ranks; V a strided subset; K mixed.
BASE = ["--units", "11", "--inputs", "2", "--outputs", "3", "--steps", "16",
        "--activation", "tanh", "--w-max", "0.6", "--bias-scale", "0.3", "--a0-scale", "0.5",
        "--target-times", "4,9:T:3", "--flow-units-k", "0,8:10", "--flow-units-v", "1:10:2",
        "--max-lag", "12", "--state-jacobian", "--seed", "11", "--quiet"]
GRIDS = [("1x1", 1), ("1x2", 2), ("2x1", 2), ("2x2", 4), ("1x3", 3), ("3x1", 3)]


@pytest.fixture(scope="module")
def files(gradflow, tmp_path_factory):
    base = tmp_path_factory.mktemp("flow")
    out = {}
    for grid, np_ in GRIDS:
        path = base / f"grid{grid}.h5"
        gradflow.ok(BASE + ["--grid", grid, "-o", str(path)], np=np_)
        out[grid] = path
    return out


def rel(actual, expected):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), "NaN pattern differs"
    inf_a, inf_e = np.isinf(actual), np.isinf(expected)
    assert np.array_equal(inf_a, inf_e) and np.array_equal(actual[inf_a], expected[inf_e])
    fin = np.isfinite(expected)
    if not fin.any():
        return 0.0
    den = np.abs(expected[fin]).max()
    return np.abs(actual[fin] - expected[fin]).max() / (den if den > 0 else 1.0)


def reference(f):
    """G, J, contributions recomputed from /model and /forward."""
    W = f["model/W"][()]
    n = W.shape[0]
    fp = f["forward/fprime"][()]
    a = np.vstack([f["model/a0"][()], f["forward/a"][()]])  # row tau = a(tau)
    d, mask = f["input/d"][()], f["input/target_mask"][()]
    n_out = d.shape[1]
    tg, K, V = f["flow/targets"][()], f["flow/units_k"][()], f["flow/units_v"][()]
    L = len(f["flow/lags"]) - 1
    G = np.full((len(tg), L + 1, len(V), len(K)), np.nan)
    J = np.full_like(G, np.nan)
    contrib = np.full((len(tg), L + 1), np.nan)
    for i, t in enumerate(tg):
        g = np.eye(n)[:, K]
        h = np.eye(n)[:, K]
        e = np.zeros(n)
        if mask[t - 1]:
            e[n - n_out:] = a[t, n - n_out:] - d[t - 1]
        u = fp[t - 1] * e
        for lag in range(0, min(L, t - 1) + 1):
            if lag:
                g = fp[t - lag - 1][:, None] * (W.T @ g)
                h = W.T @ (fp[t - lag][:, None] * h)
                u = fp[t - lag - 1] * (W.T @ u)
            G[i, lag], J[i, lag] = g[V], h[V]
            contrib[i, lag] = np.linalg.norm(u) * np.linalg.norm(a[t - lag - 1])
    return G, J, contrib


def test_flow_matches_independent_recursion(files):
    with h5py.File(files["1x1"]) as f:
        G, J, contrib = reference(f)
        assert rel(f["flow/G"][()], G) <= RTOL
        assert rel(f["flow/J"][()], J) <= RTOL
        assert rel(f["lag/contribution"][()], contrib) <= RTOL
        with np.errstate(divide="ignore"):
            fro = np.log10(np.sqrt(np.nansum(G ** 2, axis=(2, 3))))
            mx = np.log10(np.nanmax(np.abs(G), axis=(2, 3), initial=0))
            jfro = np.log10(np.sqrt(np.nansum(J ** 2, axis=(2, 3))))
            lc = np.log10(contrib)
        invalid = np.isnan(G).all(axis=(2, 3))
        fro[invalid] = mx[invalid] = jfro[invalid] = np.nan
        # log10 values: compare absolutely, 1e-12 of a decade
        for name, want in [("flow/log10_norm_fro", fro), ("flow/log10_norm_max", mx),
                           ("flow/J_log10_norm_fro", jfro), ("lag/log10_contribution", lc)]:
            got = f[name][()]
            assert np.array_equal(np.isnan(got), np.isnan(want)), name
            ok = np.isfinite(want)
            assert np.abs(got[ok] - want[ok]).max() <= 1e-12, name


def test_flow_layout_scales_and_nan_pattern(files):
    with h5py.File(files["1x1"]) as f:
        g = f["flow"]
        tg = g["targets"][()]
        assert tg.tolist() == [4, 9, 12, 15] and g["targets"].dtype == np.dtype("<i8")
        assert g["lags"][()].tolist() == list(range(13))
        assert g["units_k"][()].tolist() == [0, 8, 9, 10]
        assert g["units_v"][()].tolist() == [1, 3, 5, 7, 9]
        shape4 = (4, 13, 5, 4)
        names = {"target": "targets", "lag": "lags", "unit_v": "units_v", "unit_k": "units_k"}
        for ds, shape, axes in [("G", shape4, ["target", "lag", "unit_v", "unit_k"]),
                                ("J", shape4, ["target", "lag", "unit_v", "unit_k"]),
                                ("log10_norm_fro", (4, 13), ["target", "lag"]),
                                ("log10_norm_max", (4, 13), ["target", "lag"]),
                                ("log10_bound", (4, 13), ["target", "lag"]),
                                ("log10_bound_measured", (4, 13), ["target", "lag"]),
                                ("J_log10_norm_fro", (4, 13), ["target", "lag"]),
                                ("J_log10_norm_max", (4, 13), ["target", "lag"])]:
            d = g[ds]
            assert d.shape == shape and d.dtype == np.dtype("<f8"), ds
            assert d.attrs["description"], ds
            for k, axis in enumerate(axes):
                (scale,) = d.dims[k].values()
                assert scale.name == f"/flow/{names[axis]}", (ds, k, scale.name)
                assert scale.attrs["NAME"].decode() == axis
            # NaN exactly where t_i - L < 1
            x = d[()]
            invalid = tg[:, None] - np.arange(13)[None, :] < 1
            isnan = np.isnan(x) if x.ndim == 2 else np.isnan(x).all(axis=(2, 3))
            assert np.array_equal(isnan, invalid), ds
            if x.ndim == 4:
                assert not np.isnan(x[~invalid]).any(), ds
        for ds in ["contribution", "log10_contribution"]:
            d = f["lag"][ds]
            assert d.shape == (4, 13) and d.attrs["description"]
            assert [s.name for k in range(2) for s in d.dims[k].values()] == ["/lag/targets", "/lag/lags"]
            assert np.array_equal(np.isnan(d[()]), tg[:, None] - np.arange(13)[None, :] < 1)
        # contiguous, unfiltered: entry [i][L][a][b] at a fixed offset, which each rank
        # writes with pwrite (README, "Layout of /flow/G")
        assert g["G"].chunks is None and g["G"].compression is None
        assert g["G"].id.get_offset() is not None


def test_flow_attributes_and_bounds(files):
    with h5py.File(files["1x1"]) as f:
        W, fp, n = f["model/W"][()], f["forward/fprime"][()], f["model/W"].shape[0]
        at = f["flow"].attrs
        assert at["norm_A"] == pytest.approx(np.abs(W).sum(axis=1).max(), rel=1e-14)
        assert at["norm_A_columns"] == pytest.approx(np.abs(W).sum(axis=0).max(), rel=1e-14)
        assert at["w_max"] == np.abs(W).max()
        assert at["fprime_max_theory"] == 1.0 and at["fprime_max_measured"] == fp.max()
        assert at["lambda"] == pytest.approx(n * np.abs(W).max() * 1.0, rel=1e-15)
        tg, lags = f["flow/targets"][()], f["flow/lags"][()]
        for name, fpm in [("log10_bound", 1.0), ("log10_bound_measured", fp.max())]:
            want = np.log10(n) + lags[None, :] * np.log10(fpm * at["norm_A"]) + 0 * tg[:, None]
            want[tg[:, None] - lags[None, :] < 1] = np.nan
            assert rel(f["flow"][name][()], want) <= 1e-13, name
        ok = ~np.isnan(f["flow/log10_bound"][()])
        assert (f["flow/log10_norm_max"][()][ok] <= f["flow/log10_bound"][()][ok] + 1e-12).all()
        assert (f["flow/log10_norm_fro"][()][ok] <= f["flow/log10_bound"][()][ok] + 1e-12).all()


@pytest.mark.parametrize("grid", [g for g, _ in GRIDS if g != "1x1"])
def test_grids_give_the_same_file(files, grid):
    def walk(group, out, prefix=""):
        for k, v in group.items():
            if isinstance(v, h5py.Group):
                walk(v, out, f"{prefix}/{k}")
            else:
                out[f"{prefix}/{k}"] = v[()]
    ref, got = {}, {}
    with h5py.File(files["1x1"]) as a, h5py.File(files[grid]) as b:
        walk(a, ref)
        walk(b, got)
        assert b.attrs["grid"] == grid
    assert set(ref) == set(got)
    for k in ref:
        if k == "/config/ini":
            continue
        if k.split("/")[1] in ("model", "input") or ref[k].dtype.kind != "f":
            assert np.array_equal(ref[k], got[k]), k  # bitwise, as generated
        elif k.endswith(("log10_norm_fro", "log10_norm_max", "log10_contribution")):
            ok = np.isfinite(ref[k])
            assert np.array_equal(np.isnan(ref[k]), np.isnan(got[k])), k
            assert np.abs(ref[k][ok] - got[k][ok]).max() <= 1e-12, k
        else:
            assert rel(got[k], ref[k]) <= RTOL, k


def test_no_flow_tensor_keeps_the_norms(gradflow, files, tmp_path):
    out = tmp_path / "nt.h5"
    gradflow.ok(BASE + ["--no-flow-tensor", "-o", str(out)], np=2)
    with h5py.File(out) as f, h5py.File(files["1x1"]) as ref:
        assert "G" not in f["flow"] and "J" not in f["flow"]
        assert f["flow"].attrs["tensor_written"] == 0
        for name in ["flow/log10_norm_fro", "flow/J_log10_norm_max", "lag/contribution"]:
            assert rel(f[name][()], ref[name][()]) <= RTOL


def test_flow_targets_none_writes_no_flow(gradflow, tmp_path):
    out = tmp_path / "none.h5"
    gradflow.ok(BASE + ["--flow-targets", "none", "-o", str(out)], np=2)
    with h5py.File(out) as f:
        assert "flow" not in f and "lag" not in f and f.attrs["complete"] == 1


def test_report_line_gives_the_fitted_decay(gradflow, tmp_path):
    out = tmp_path / "rep.h5"
    args = [a for a in BASE if a != "--quiet"]
    r = gradflow.ok(args + ["-o", str(out)], np=3)
    rates = {int(t): float(s) for t, s in
             re.findall(r"flow t = (\d+): log10\|\|G\|\|_F slope (-?[\d.]+) per step", r.stdout)}
    with h5py.File(out) as f:
        tg, y = f["flow/targets"][()], f["flow/log10_norm_fro"][()]
        assert sorted(rates) == tg.tolist()
        for i, t in enumerate(tg):
            ok = np.isfinite(y[i])
            slope = np.polyfit(np.arange(len(y[i]))[ok], y[i][ok], 1)[0]
            assert rates[t] == pytest.approx(slope, abs=1e-4)  # printed with 4 decimals


def test_single_rank_flow_in_column_panels(gradflow, tmp_path):
    """n = 2048 with |K| = n and two targets needs more than one 64 MiB column panel: the
    single-rank panel path (W^T from W itself) must agree with two ranks (W split by columns)."""
    args = ["--units", "2048", "--inputs", "2", "--outputs", "2", "--steps", "6",
            "--target-times", "3,6", "--flow-units-k", "all", "--flow-units-v", "0:2047:512",
            "--quiet"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    gradflow.ok(args + ["-o", str(one)], np=1)
    gradflow.ok(args + ["-o", str(two)], np=2)
    with h5py.File(one) as a, h5py.File(two) as b:
        assert rel(a["flow/G"][()], b["flow/G"][()]) <= RTOL
        assert rel(a["lag/contribution"][()], b["lag/contribution"][()]) <= RTOL
