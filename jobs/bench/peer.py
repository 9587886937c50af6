#!/usr/bin/python3
"""peer.py — the gradient-flow tensor G computed by numpy or PyTorch (benchmark case 5).

Reads W, F' and the flow options (targets, lags, K, V) from a gradflow file
made with the same options, so that the work is the same as gradflow's, and
computes for every target t and lag L = 0..L_max (SPEC §3)

    G_0 = I[:, K],   G_L = F'(t-L) W^T G_{L-1}       (n x |K|, rows V kept)

then writes /flow/G [N_t][L+1][N_v][N_k] (NaN where t - L < 1) with h5py,
one lag slice at a time as it is computed, and closes the file.

Implementations (--impl):
  numpy     explicit loop, G = W.T @ G (OpenBLAS dgemm), row scaling in place,
            or its transpose H = H @ W with H = G^T (the row-vector form),
            when a 3-call trial finds it 10% faster (the trial is not timed)
  torch     the same loop with torch.matmul on CPU tensors (float64)
  jacobian  torch.autograd.functional.jacobian (defaults: reverse mode,
            vectorize=False) of the unrolled map x = delta_K(t) -> delta_V'(t-L),
            one Jacobian per lag.  That costs one vector-Jacobian product per
            output row, each through L steps, so the full tensor is out of reach
            on a laptop-class machine; it is timed for --jac-rows rows V' and
            the two lag counts of --jac-lags (rows doubled until one Jacobian
            takes 0.3 s), and the full-tensor time is
            estimated as   N_t * (N_v / rows) * sum_{L=1..L_max} (alpha + beta L)
            with alpha, beta fitted to the two timings (the time of one
            Jacobian is linear in rows, and in L for the reverse sweeps).
            The write of the tensor is not added (it is negligible beside it).

Threads: run with OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
set in the environment *before* Python starts (OpenBLAS reads it when the
library loads); torch.set_num_threads(1) and torch.set_num_interop_threads(1)
are called here, so neither torch's OpenMP pool nor OpenBLAS's pthread pool
has more than one thread, like gradflow's 1 rank x 1 BLAS thread.

Output: one JSON line on stdout with the times in seconds:
  load_s (read W and F'), compute_s (the recurrence alone, without the
  writes), write_s (h5py slice writes + close), total_s (load + loop +
  write, wall clock, the layout trial left out), sync_s (fsync of the
  closed file: its pages still in the page cache go to disk, as gradflow's
  do before it exits), total_synced_s (total_s + sync_s); for jacobian the fitted
  estimate (total_s = load_s + estimate_s).
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np


def load(path):
    with h5py.File(path, "r") as f:
        W = np.ascontiguousarray(f["/model/W"][...])
        fp = np.ascontiguousarray(f["/forward/fprime"][...])  # (T, n), row tau-1 = time tau
        targets = f["/flow/targets"][...].astype(np.int64)
        max_lag = int(f["/flow/lags"].shape[0]) - 1
        K = f["/flow/units_k"][...].astype(np.int64)
        V = f["/flow/units_v"][...].astype(np.int64)
    return W, fp, targets, max_lag, K, V


def make_out(path, n_t, max_lag, n_v, n_k):
    if os.path.exists(path):
        os.remove(path)
    f = h5py.File(path, "w")
    d = f.create_dataset("/flow/G", shape=(n_t, max_lag + 1, n_v, n_k), dtype="<f8")
    return f, d


def choose_layout(mm, WT, W, n, k, make):
    """'col' keeps G (n x |K|) and multiplies W^T G; 'row' keeps H = G^T
    (|K| x n) and multiplies H W, the row-vector form delta^T W of the paper.
    The BLAS is much faster for one or the other when |K| is small, so the
    faster of the two is taken, as a careful user would; this trial is not
    timed."""
    G, H = make((n, k)), make((k, n))
    best = {}
    for name, f in (("col", lambda: mm(WT, G)), ("row", lambda: mm(H, W))):
        f()
        t0 = time.perf_counter()
        for _ in range(3):
            f()
        best[name] = time.perf_counter() - t0
    return ("row" if best["row"] < 0.9 * best["col"] else "col"), best


def run_loop(lib, W, fp, targets, max_lag, K, V, out):
    n, nk = W.shape[0], len(K)
    all_v = len(V) == n
    if lib == "torch":
        import torch

        Wx = torch.from_numpy(W)
        WT = Wx.t()  # a view: the transpose flag goes to dgemm
        FP = torch.from_numpy(fp)
        mm = torch.matmul
        make = lambda shape: torch.rand(shape, dtype=torch.float64)
        zeros = lambda shape: torch.zeros(shape, dtype=torch.float64)
        to_np = lambda x: x.numpy()
    else:
        Wx = W
        WT = W.T  # a view, as above
        FP = fp
        mm = np.matmul
        make = lambda shape: np.random.rand(*shape)
        zeros = np.zeros
        to_np = lambda x: x
    layout, trial = choose_layout(mm, WT, Wx, n, nk, make)
    f, d = make_out(out, len(targets), max_lag, len(V), nk)
    comp = wr = 0.0
    nan = np.full((len(V), nk), np.nan)
    for i, t in enumerate(targets):
        t0 = time.perf_counter()
        if layout == "col":
            G = zeros((n, nk))
            G[K, np.arange(nk)] = 1.0
        else:
            G = zeros((nk, n))
            G[np.arange(nk), K] = 1.0
        comp += time.perf_counter() - t0
        for L in range(max_lag + 1):
            t0 = time.perf_counter()
            if t - L < 1:
                slab = nan
            else:
                if L > 0:
                    if layout == "col":
                        G = mm(WT, G)
                        G *= FP[t - L - 1][:, None]
                    else:
                        G = mm(G, Wx)
                        G *= FP[t - L - 1][None, :]
                slab = to_np(G) if layout == "col" else np.ascontiguousarray(to_np(G).T)
                if not all_v:
                    slab = slab[V]
            t1 = time.perf_counter()
            d[i, L] = slab
            t2 = time.perf_counter()
            comp += t1 - t0
            wr += t2 - t1
    t0 = time.perf_counter()
    f.close()
    wr += time.perf_counter() - t0
    return comp, wr, layout, trial


def run_jacobian(W, fp, targets, max_lag, K, V, rows, lags):
    import torch
    from torch.autograd.functional import jacobian

    n = W.shape[0]
    WT = torch.from_numpy(W).t()
    FP = torch.from_numpy(fp)
    Kt = torch.from_numpy(K)
    t = int(targets[-1])
    for L in lags:
        if L > max_lag or t - L < 1:
            raise SystemExit(f"peer.py: --jac-lags {L} is not a valid lag here")

    def timed(L, rows):
        Vr = torch.from_numpy(V[:rows])

        def unrolled(x):
            d = torch.zeros(n, dtype=torch.float64).index_add(0, Kt, x)
            for ell in range(1, L + 1):
                d = FP[t - ell - 1] * torch.mv(WT, d)
            return d[Vr]

        x0 = torch.zeros(len(K), dtype=torch.float64)
        t0 = time.perf_counter()
        J = jacobian(unrolled, x0)  # (rows, |K|): rows V' of G(t-L, t)[:, K]
        return time.perf_counter() - t0, J.detach().numpy()

    # rows: doubled from --jac-rows until the longer Jacobian takes >= 0.3 s
    # (so that timer noise and the fixed costs do not dominate the fit)
    while rows < len(V) and timed(max(lags), rows)[0] < 0.3:
        rows = min(2 * rows, len(V))
    times = {}
    check = None
    for L in lags:
        times[L], J = timed(L, rows)
        check = (L, J)
    (l1, s1), (l2, s2) = sorted(times.items())
    beta = (s2 - s1) / (l2 - l1)
    alpha = s1 - beta * l1
    per_target = sum(alpha + beta * L for L in range(1, max_lag + 1)) * (len(V) / rows)
    # lags that do not exist for early targets (t - L < 1) are not charged
    est = 0.0
    for tt in targets:
        top = min(max_lag, int(tt) - 1)
        est += sum(alpha + beta * L for L in range(1, top + 1)) * (len(V) / rows)
    return times, alpha, beta, est, per_target, check, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in", dest="inp", required=True, help="gradflow file with W, F' and /flow")
    ap.add_argument("--out", help="HDF5 file to write /flow/G to (numpy, torch)")
    ap.add_argument("--impl", choices=["numpy", "torch", "jacobian"], required=True)
    ap.add_argument("--jac-rows", type=int, default=8, help="first number of rows V' (doubled, see above)")
    ap.add_argument("--jac-lags", default="2,4")
    ap.add_argument("--check", help="gradflow file with /flow/G: compare the last lag of the first "
                                    "target (max relative difference)")
    a = ap.parse_args()

    if a.impl != "numpy":
        import torch

        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    threads = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                              "MKL_NUM_THREADS")}
    if a.impl != "numpy":
        threads["torch_intra_op"] = torch.get_num_threads()
        threads["torch_interop"] = torch.get_num_interop_threads()

    t_start = time.perf_counter()
    W, fp, targets, max_lag, K, V = load(a.inp)
    load_s = time.perf_counter() - t_start
    res = {"impl": a.impl, "n": int(W.shape[0]), "n_t": int(len(targets)), "max_lag": max_lag,
           "n_k": int(len(K)), "n_v": int(len(V)), "load_s": load_s, "threads": threads}
    if a.impl in ("numpy", "torch"):
        if not a.out:
            ap.error("--out is needed for numpy and torch")
        t_loop = time.perf_counter()
        comp, wr, layout, trial = run_loop(a.impl, W, fp, targets, max_lag, K, V, a.out)
        total = load_s + time.perf_counter() - t_loop - sum(trial.values())
        # gradflow's file is on stable storage when it exits (it syncs before
        # writing `complete`); this file is still in the page cache.  fsync
        # puts it on disk too: the same work, timed separately.
        t0 = time.perf_counter()
        fd = os.open(a.out, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        sync = time.perf_counter() - t0
        res.update(compute_s=comp, write_s=wr, total_s=total, sync_s=sync, total_synced_s=total + sync,
                   layout=layout, layout_trial_s=trial,
                   useful_gflop=2.0 * W.shape[0] ** 2 * len(K) * sum(
                       min(max_lag, int(t) - 1) for t in targets) * 1e-9)
        if a.check:
            with h5py.File(a.check, "r") as g, h5py.File(a.out, "r") as p:
                L = min(max_lag, int(targets[0]) - 1)
                x, y = g["/flow/G"][0, L], p["/flow/G"][0, L]
                scale = np.max(np.abs(x))
                res["check_lag"] = L
                res["check_max_rel_diff"] = float(np.max(np.abs(x - y)) / scale) if scale > 0 else 0.0
    else:
        lags = [int(s) for s in a.jac_lags.split(",")]
        rows = min(a.jac_rows, len(V))
        times, alpha, beta, est, per_target, check, rows = run_jacobian(W, fp, targets, max_lag, K, V,
                                                                  rows, lags)
        res.update(jac_rows=rows, jac_times={str(k): v for k, v in times.items()}, alpha_s=alpha,
                   beta_s=beta, estimate_s=est, estimate_per_target_s=per_target,
                   total_s=load_s + est)
        if a.check:
            L, J = check
            with h5py.File(a.check, "r") as g:
                x = g["/flow/G"][len(targets) - 1, L][:rows]
                scale = np.max(np.abs(x))
                res["check_lag"] = L
                res["check_max_rel_diff"] = float(np.max(np.abs(x - J)) / scale) if scale > 0 else 0.0
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
