#!/usr/bin/python3
"""report.py — figures and key numbers for one gradflow output file.

Usage::

    /usr/bin/python3 analysis/report.py FILE.h5 -o DIR [--allow-incomplete] [--max-memory-mb N]

Writes into DIR (created if needed):

* ``flow_decay.png``     error-flow decay: log10 ||G(t-L,t)[V,K]|| (Frobenius and max entry)
                          against the lag L for each target time (or an evenly spread subset),
                          with the bounds n (f'max ||W||_A)^L of SPEC §4 (theoretical and
                          measured f'max) and the fitted decay rate of each target;
* ``flow_heatmaps.png``  |G(t-L,t)[V,K]| at a few lags of one target (log colour scale);
                          skipped with a note when the file has no /flow/G (--no-flow-tensor);
* ``lag_share.png``      the per-lag share of the gradient, /lag/log10_contribution, and its
                          cumulative fraction;
* ``activations.png``    the raster of a_i(tau) (/forward/a);
* ``fprime.png``         the distribution of f'(net_i(tau)) against f'max;
* ``path_factors.png``   the distribution of the paper's path factors |f'_i(net_i(tau)) w_ij|
                          against 1, with the fraction above 1;
* ``summary.json``       the key numbers (sizes, loss, norms, lambda, per-target decay rates,
                          bound rates, first lag below 1e-16, path-factor fractions, ...), and
                          what one bounded pass over /flow/G found (slab count and size, NaN,
                          zero and overflowed entries, agreement with /flow/log10_norm_max);
* ``index.html``         the figures with captions, the numbers, notes and the file layout.

For a training file (``gradflow train``; it has no /forward, /flow or /lag, and those
figures are skipped with a note) it writes instead:

* ``train_curves.png``    one run: loss, gradient norm and test error (with the success
                          threshold) against the epoch, log y;
* ``train_lag_share.png`` one run: the per-lag share of dE/dW over training
                          (/train/log10_lag_share as a fraction of each epoch's total): heat map
                          epoch x lag, profiles at the first/middle/final epoch (and the solving
                          one), and the share from the lags L >= lag - 1 per epoch;
* ``train_flow.png``      one run: log10 ||G(T-L, T)[:, out]|| over training likewise, with the
                          flow at L = lag (the information step) per epoch;
* ``sweep_success.png``   a sweep: success rate against the lag (95% Wilson intervals) and the
                          epochs or guesses of the solved trials;

and summary.json's ``train`` holds the numbers (final loss, success, long-lag share, flow at
the task's lag, initial and final weight norms; or the per-lag success table of a sweep).

Memory: every array whose size grows with the run (/flow/G, the [T][n] datasets of
/forward, /model/W, the [N_t][L+1] norms, the per-epoch /train datasets) is read in
blocks of at most --max-memory-mb (default 256 MiB), so a file of any size can be
reported; the path factors
(T n^2 of them) are counted exactly without ever forming them, from the sorted rows of
|W| (see path_factor_stats).

Exit status: 0 on success, 65 when the file is not a complete gradflow/1 file
(see --allow-incomplete), 66 when it cannot be read, 73 when DIR cannot be written.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gradflow_io as gio  # noqa: E402

DEFAULT_MAX_MEMORY_MB = 256
MAX_TARGETS_SHOWN = 6          # targets drawn in the per-target figures
N_HEATMAP_LAGS = 4             # lags shown as heat maps
RASTER_PIXELS = (1200, 600)    # at most this many (time, unit) cells in the raster
HIST_STEP = 0.01               # log10 bin width of the path-factor histogram as counted
SHOWN_STEP = 0.05              # ... and as drawn (an edge at factor 1)
HIST_DECADES = 12              # decades below the largest factor that the histogram resolves
SHOWN_DECADES = 8              # decades shown in the path-factor figure
UNDERFLOW_LOG10 = -300         # stored G entries below 1e-300 are subnormal or zero
HEATMAP_LOG10_RANGE = (-280, 280)  # lags whose largest |G| is outside are not drawn
FIGURE_ORDER = ["flow_decay.png", "flow_heatmaps.png", "lag_share.png", "activations.png",
                "fprime.png", "path_factors.png", "train_curves.png", "train_lag_share.png",
                "train_flow.png", "sweep_success.png"]

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 110, "font.size": 10.5, "axes.titlesize": 11.5,
    "axes.labelsize": 10.5, "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3,
}


# ---------------------------------------------------------------- small helpers


def finite_or_none(x):
    """A float for JSON: None for NaN or +-inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def clean_json(obj):
    """Recursively turns numpy scalars into Python ones and non-finite floats into None."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite_or_none(obj)
    return obj


def subset(count: int, most: int = MAX_TARGETS_SHOWN) -> list:
    """Up to `most` indices spread evenly over range(count), first and last included."""
    if count <= most:
        return list(range(count))
    return sorted(set(int(round(x)) for x in np.linspace(0, count - 1, most)))


def fmt(x, digits=4):
    """A number for captions and tables."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


@dataclass
class Figure:
    """One written figure: file name, title and caption for index.html."""
    file: str
    title: str
    caption: str


@dataclass
class Report:
    """What the sections produce: the summary dict, the figures and the notes."""
    summary: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------- streamed statistics


def weight_stats(W, budget: int) -> dict:
    """||W||_A (max absolute row sum), the max absolute column sum, max |w_ij| and
    ||W||_F from /model/W read in row blocks."""
    n = W.shape[1]
    colsum = np.zeros(n)
    rowmax = wmax = fro2 = 0.0
    for _, blk in gio.iter_rows(W, budget):
        a = np.abs(blk)
        if a.size:
            rowmax = max(rowmax, float(a.sum(axis=1).max()))
            wmax = max(wmax, float(a.max()))
        colsum += a.sum(axis=0)
        fro2 += float((blk * blk).sum())
    return {"norm_A": rowmax, "norm_A_columns": float(colsum.max()) if n else 0.0,
            "w_max": wmax, "norm_fro": math.sqrt(fro2)}


def frobenius(dset, budget: int) -> float:
    """||X||_F of a 2-D dataset, read in row blocks."""
    s = 0.0
    for _, blk in gio.iter_rows(dset, budget):
        s += float((blk * blk).sum())
    return math.sqrt(s)


@dataclass
class ForwardStats:
    """From one pass over /forward/a and /forward/fprime: the downsampled raster of
    a (block means), the histogram of f' and its extremes."""
    raster: np.ndarray
    t_bin: int
    u_bin: int
    a_min: float
    a_max: float
    fp_edges: np.ndarray
    fp_counts: np.ndarray
    fp_max: float
    fp_min: float
    fp_mean: float


def forward_stats(a_ds, fp_ds, budget: int, fp_top: float) -> ForwardStats:
    """Streams /forward/a and /forward/fprime ([T][n]) over blocks of time steps."""
    T, n = a_ds.shape
    tb = max(1, math.ceil(T / RASTER_PIXELS[0]))
    ub = max(1, math.ceil(n / RASTER_PIXELS[1]))
    step = gio.rows_per_block(n * 8 * 3, budget)            # block, |block|, temporaries
    step = max(tb, step - step % tb)
    ucuts = np.arange(0, n, ub)
    ucount = np.diff(np.append(ucuts, n))
    raster = np.zeros((math.ceil(T / tb), len(ucuts)))
    edges = np.linspace(0.0, fp_top, 101)
    counts = np.zeros(100, dtype=np.int64)
    a_min, a_max, fp_max, fp_min, fp_sum = math.inf, -math.inf, 0.0, math.inf, 0.0
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        a = np.asarray(a_ds[t0:t1], dtype=np.float64)
        if a.size:
            a_min, a_max = min(a_min, float(np.nanmin(a))), max(a_max, float(np.nanmax(a)))
            tcuts = np.arange(0, t1 - t0, tb)
            tcount = np.diff(np.append(tcuts, t1 - t0))
            s = np.add.reduceat(np.add.reduceat(a, tcuts, axis=0), ucuts, axis=1)
            raster[t0 // tb:t0 // tb + len(tcuts)] = s / np.outer(tcount, ucount)
        del a
        fp = np.asarray(fp_ds[t0:t1], dtype=np.float64)
        if fp.size:
            fp_max, fp_min = max(fp_max, float(fp.max())), min(fp_min, float(fp.min()))
            fp_sum += float(fp.sum())
            counts += np.histogram(np.clip(fp, 0.0, fp_top), bins=edges)[0]
    return ForwardStats(raster, tb, ub, a_min, a_max, edges, counts, fp_max, fp_min,
                        fp_sum / max(1, T * n))


@dataclass
class PathFactorStats:
    """Counts of the path factors p(tau, i, j) (T n^2 of them, tau = 1..T).

    above[tau-1] is how many of the n^2 factors of time tau exceed 1; hist_counts over
    log10 p (bin k centred on hist_centres[k], width HIST_STEP, each count accurate to one bin)
    when asked for; below counts the factors under the histogram's range (zeros
    included)."""
    total: int
    above: np.ndarray
    hist_centres: np.ndarray = None
    hist_counts: np.ndarray = None
    below: int = 0


def path_factor_stats(W, fp_ds, budget: int, receiver: bool = True, hist: bool = False,
                      w_max: float = 0.0, fp_max: float = 0.0) -> PathFactorStats:
    """Counts the path factors above 1 per time step, streaming, exactly.

    receiver=True: p(tau, i, j) = |f'_i(net_i(tau)) w_ij| (SPEC §4: the factor of the
    step from unit j at tau-1 to unit i at tau).  receiver=False: p = |f'_j(net_j(tau))
    w_ij| (the factor f'_{l_tau} w_{l_{tau+1} l_tau} of SPEC §3's path sum of G).

    The T n^2 factors are never formed.  For a block of units u (rows of W, or columns
    when receiver=False) the weights |w_u.| are sorted once; at each tau the count of
    factors above 1 is n - searchsorted(sorted |w_u.|, 1/f'_u(tau)).  The histogram of
    log10 p is the sum over units u of the convolution of the histograms of log10 |w_u.|
    and of log10 f'_u(tau) over tau (done with one FFT per block).  Each block read or
    held is bounded by `budget` bytes."""
    T, n = fp_ds.shape
    above = np.zeros(T, dtype=np.int64)
    hist_on = hist and w_max > 0 and fp_max > 0
    # bin origins on the grid of HIST_STEP, y0 shifted by half a bin so that the sum's bin
    # centres x0 + y0 + (k+1) h fall between multiples of h (never on a drawn edge)
    h = HIST_STEP
    x0 = h * math.floor((math.log10(w_max) - HIST_DECADES) / h) if hist_on else 0.0
    y0 = h * math.floor((math.log10(fp_max) - HIST_DECADES) / h) - h / 2 if hist_on else 0.0
    nb = int(math.ceil(HIST_DECADES / h)) + 3
    nfft = 1 << int(math.ceil(math.log2(2 * nb)))
    acc = np.zeros(nfft // 2 + 1, dtype=np.complex128)
    below = 0
    per_unit = 8 * (3 * n + (4 * nfft if hist_on else 0)) + 8
    ublk = max(1, min(n, budget // (2 * per_unit)))
    for u0 in range(0, n, ublk):
        u1 = min(n, u0 + ublk)
        blk = np.asarray(W[u0:u1, :] if receiver else W[:, u0:u1].T, dtype=np.float64)
        srt = np.sort(np.abs(blk), axis=1)
        del blk
        m = u1 - u0
        if hist_on:
            with np.errstate(divide="ignore"):
                lx = np.log10(srt)
            ix = np.floor((lx - x0) / HIST_STEP)
            ok = ix >= 0                                   # ix < nb as |w| <= w_max
            rows = np.broadcast_to(np.arange(m)[:, None], ix.shape)
            hw = np.bincount(rows[ok] * nb + np.minimum(ix[ok], nb - 1).astype(np.int64),
                             minlength=m * nb).reshape(m, nb).astype(np.float64)
            hf = np.zeros((m, nb))
            del lx, ix, ok, rows
        tstep = max(1, budget // (2 * 8 * 4 * m))
        for t0 in range(0, T, tstep):
            t1 = min(T, t0 + tstep)
            fp = np.abs(np.asarray(fp_ds[t0:t1, u0:u1], dtype=np.float64))
            with np.errstate(divide="ignore"):
                thr = 1.0 / fp                             # p > 1  <=>  |w| > 1/f'
            for r in range(m):
                above[t0:t1] += n - np.searchsorted(srt[r], thr[:, r], side="right")
            if hist_on:
                with np.errstate(divide="ignore"):
                    iy = np.floor((np.log10(fp) - y0) / HIST_STEP)
                ok = iy >= 0
                cols = np.broadcast_to(np.arange(m)[None, :], iy.shape)
                hf += np.bincount(cols[ok] * nb + np.minimum(iy[ok], nb - 1).astype(np.int64),
                                  minlength=m * nb).reshape(m, nb)
        if hist_on:
            below += int(round(m * n * T - float((hw.sum(1) * hf.sum(1)).sum())))
            acc += (np.fft.rfft(hw, nfft, axis=1) * np.fft.rfft(hf, nfft, axis=1)).sum(axis=0)
    stats = PathFactorStats(total=T * n * n, above=above)
    if hist_on:
        conv = np.fft.irfft(acc, nfft)[:2 * nb - 1]
        stats.hist_counts = np.maximum(np.rint(conv), 0.0)
        # x in [x0 + a h, +h), y in [y0 + b h, +h): x + y in [x0 + y0 + (a+b) h, +2h)
        stats.hist_centres = x0 + y0 + (np.arange(2 * nb - 1) + 1.0) * HIST_STEP
        stats.below = below
    return stats


@dataclass
class TensorCheck:
    """From one pass over /flow/G: what the stored entries say next to the exact norms."""
    nbytes: int = 0
    budget: int = 0
    slabs: int = 0
    largest_slab: int = 0
    elements: int = 0
    nan: int = 0
    zero: int = 0
    zero_after_lag0: int = 0
    overflow: int = 0
    sum_finite: float = 0.0
    first_zero_lag: list = field(default_factory=list)
    max_log10_mismatch: float = 0.0


def tensor_check(f, budget: int) -> TensorCheck:
    """Reads /flow/G slab by slab and compares log10 max |G| of the stored entries with
    /flow/log10_norm_max wherever the stored maximum is a normal double."""
    G = f["flow/G"]
    norm_max = f["flow/log10_norm_max"] if "flow/log10_norm_max" in f else None
    chk = TensorCheck(nbytes=G.size * 8, budget=budget)
    chk.first_zero_lag = [None] * G.shape[0]
    cur, run_max, zeros = -1, None, None

    def close_target():
        if cur < 0:
            return
        ref = (np.asarray(norm_max[cur], dtype=np.float64) if norm_max is not None
               else np.full(G.shape[1], np.nan))
        with np.errstate(divide="ignore"):
            got = np.log10(run_max)
        ok = np.isfinite(ref) & np.isfinite(got) & (got > UNDERFLOW_LOG10)
        if ok.any():
            chk.max_log10_mismatch = max(chk.max_log10_mismatch, float(np.abs(got[ok] - ref[ok]).max()))
        hit = np.nonzero(zeros[1:] > 0)[0]            # lag 0 is I[V,K]: zeros off k = v
        chk.first_zero_lag[cur] = int(hit[0]) + 1 if len(hit) else None

    for slab in gio.iter_flow_slabs(f, budget):
        if slab.target != cur:
            close_target()
            cur = slab.target
            run_max = np.zeros(G.shape[1])
            zeros = np.zeros(G.shape[1], dtype=np.int64)
        d = slab.data
        chk.slabs += 1
        chk.largest_slab = max(chk.largest_slab, d.nbytes)
        chk.elements += d.size
        nan = np.isnan(d)
        fin = np.isfinite(d)
        chk.nan += int(nan.sum())
        chk.overflow += int((~nan & ~fin).sum())
        chk.sum_finite += float(d[fin].sum())
        absd = np.where(fin, np.abs(d), 0.0).reshape(d.shape[0], -1)
        lags = np.arange(slab.lags.start, slab.lags.stop)
        run_max[lags] = np.maximum(run_max[lags], absd.max(axis=1))
        z = ((d == 0) & fin).reshape(d.shape[0], -1).sum(axis=1)
        zeros[lags] += z
        chk.zero += int(z.sum())
        chk.zero_after_lag0 += int(z[lags > 0].sum())
    close_target()
    return chk


# ---------------------------------------------------------------- figures


def unit_ticks(axis, units, most: int):
    """Ticks of an image axis whose positions 0, 1, ... stand for the unit ids `units`."""
    if len(units) <= most:
        axis.set_major_locator(FixedLocator(np.arange(len(units))))
    else:
        axis.set_major_locator(MaxNLocator(integer=True, nbins=most))
    axis.set_major_formatter(FuncFormatter(
        lambda x, _: str(units[int(round(x))])
        if abs(x - round(x)) < 1e-6 and 0 <= round(x) < len(units) else ""))


def save(fig, outdir, name) -> str:
    fig.savefig(os.path.join(outdir, name), bbox_inches="tight")
    plt.close(fig)
    return name


def ylo_yhi(y, lo, hi):
    """(lo, hi) widened to the finite values of y."""
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    return (min(lo, float(y.min())), max(hi, float(y.max()))) if y.size else (lo, hi)


def fig_flow_decay(f, outdir, rep: Report, budget: int):
    """Figure 1: log10 ||G|| against the lag, bounds, fitted rates; fills rep.summary."""
    s = rep.summary
    fro = f["flow/log10_norm_fro"]
    mx = f["flow/log10_norm_max"] if "flow/log10_norm_max" in f else None
    targets = np.asarray(f["flow/targets"][()], dtype=np.int64)
    nt, nl = fro.shape
    n = s["n"]
    fpt, fpm, normA = s["fprime_max_theory"], s["fprime_max_measured"], s["norm_A"]
    rate_th, rate_me = s["bound_rate_theory"], s["bound_rate_measured"]
    per = []
    for r0, blk in gio.iter_rows(fro, budget):
        for k, y in enumerate(blk):
            i = r0 + k
            nv = gio.valid_lags(int(targets[i]), nl)
            per.append({"t": int(targets[i]), "valid_lags": [0, nv - 1],
                        "decay_rate": gio.fit_decay_rate(y[:nv]),
                        "bound_rate_theory": rate_th, "bound_rate_measured": rate_me,
                        "first_lag_below_1e-16": gio.first_lag_below(y[:nv], 16.0),
                        "log10_norm_fro_lag0": y[0], "log10_norm_fro_last": y[nv - 1]})
    s["targets"] = per
    rates = np.array([p["decay_rate"] for p in per], dtype=float)
    s["decay_rate_mean"] = float(np.nanmean(rates)) if np.isfinite(rates).any() else None

    # an even spread over the targets with at least two lags (a fit needs two)
    fitted = [i for i in range(nt) if per[i]["valid_lags"][1] >= 1] or list(range(nt))
    shown = [fitted[k] for k in subset(len(fitted))]
    longest = int(np.argmax([p["valid_lags"][1] for p in per]))
    lags = np.arange(nl)

    def bound(name, rate):      # the file's row, or log10 n + L rate where it lacks one
        if name in f:
            return np.asarray(f[name][longest], dtype=float)
        b = math.log10(n) + lags * rate
        b[0] = math.log10(n)
        return np.where(lags < per[longest]["valid_lags"][1] + 1, b, np.nan)
    bth = bound("flow/log10_bound", rate_th)
    bme = bound("flow/log10_bound_measured", rate_me)
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, max(1, len(shown))))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.4), sharey=True)
        handles, marker_handle = [], None
        ylo, yhi = math.inf, -math.inf
        for ax, ds, what in ((axes[0], fro, "Frobenius norm  $\\Vert G(t-L,t)[V,K]\\Vert_F$"),
                             (axes[1], mx, "largest entry  $\\max_{v,k}\\,|G(t-L,t)_{vk}|$")):
            first = ax is axes[0]
            if ds is None:
                ax.text(0.5, 0.5, "/flow/log10_norm_max missing", transform=ax.transAxes,
                        ha="center")
            for c, i in (zip(colours, shown) if ds is not None else ()):
                y = np.asarray(ds[i], dtype=float)
                p = per[i]
                rate = p["decay_rate"]
                h, = ax.plot(lags, y, color=c, lw=1.6, label=f"t = {p['t']}: fitted "
                             + (f"{rate:+.3f} /step" if math.isfinite(rate) else "n/a (one lag)"))
                ylo, yhi = ylo_yhi(y, ylo, yhi)
                if first:
                    handles.append(h)
                L16 = p["first_lag_below_1e-16"]
                if first and L16 is not None:
                    ax.plot([L16], [y[L16]], marker="v", ms=7, color=c, ls="none")
                    marker_handle = marker_handle or Line2D(
                        [], [], marker="v", ms=7, color="dimgrey", ls="none",
                        label="first lag below $10^{-16}\\times$ its lag-0 value")
            hb, = ax.plot(lags, bth, color="black", ls="--", lw=1.4,
                          label=f"bound $n\\,(f^{{\\prime}}_{{\\max}}\\Vert W\\Vert_A)^L$ with f'max theory "
                                f"({fmt(fpt)}): {rate_th:+.3f} /step")
            hm, = ax.plot(lags, bme, color="tab:red", ls=":", lw=2.0,
                          label=f"same with measured f'max ({fmt(fpm)}): {rate_me:+.3f} /step")
            ax.axhline(0.0, color="grey", lw=0.8, alpha=0.6)
            ax.set_xlabel("lag L = t − s  (time steps)")
            ax.set_title(what)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles += [hb, hm]
        # the flows fill at least ~40% of the height; bound lines may leave at the top
        if math.isfinite(ylo):
            span = max(yhi - ylo, 1.0)
            blo, bhi = ylo_yhi(bth, *ylo_yhi(bme, math.inf, -math.inf))
            top = min(max(yhi, bhi), yhi + 1.5 * span) + 0.05 * span
            clipped = bhi > top
            axes[0].set_ylim(min(ylo, blo) - 0.05 * span, top)
        else:
            clipped = False
        if marker_handle is not None:
            handles.append(marker_handle)
        axes[0].set_ylabel("log$_{10}$ of the error flow  (dimensionless)")
        more = f" ({len(shown)} of {nt} targets shown)" if len(shown) < nt else ""
        fig.suptitle(f"Error-flow decay: n = {n}, {rep.summary.get('activation', '')}, "
                     f"λ = {fmt(s['lambda'])}, ‖W‖$_A$ = {fmt(normA)}{more}")
        fig.tight_layout(rect=(0, 0.16 + 0.03 * max(0, (len(handles) - 6) // 2), 1, 1))
        fig.legend(handles=handles, loc="lower center", ncol=2, framealpha=0.95,
                   bbox_to_anchor=(0.5, 0.0))
        name = save(fig, outdir, "flow_decay.png")
    rep.figures.append(Figure(
        name, "Error-flow decay against the lag",
        "log10 of ‖G(t−L,t)[V,K]‖_F (left) and of its largest entry (right), G = ∂δ(s)/∂δ(t), "
        "against the lag L for each target time t (solid). The legend gives each target's decay "
        "rate: the least-squares slope of log10‖G‖_F over its finite lags, the fit gradflow "
        "prints. Dashed black: the bound log10 n(f'max‖W‖_A)^L with the activation's theoretical "
        f"f'max; dotted red: with the f'max measured in the run (SPEC §4). Triangles: the first "
        f"lag where the flow fell below 1e−16 of its lag-0 value.{more}"
        + (" The bound lines leave the panel at the top (y range fitted to the flows)."
           if clipped else "")))


def fig_heatmaps(f, outdir, rep: Report, budget: int):
    """Figure 2: |G(t-L,t)[V,K]| at a few lags of the target with most lags."""
    if "flow/G" not in f:
        rep.notes.append("Heat maps of G skipped: the file has no /flow/G (run with "
                         "--no-flow-tensor); the norms in /flow are still shown.")
        return
    G = f["flow/G"]
    nt, nl, nv, nk = G.shape
    targets = np.asarray(f["flow/targets"][()])
    uv, uk = np.asarray(f["flow/units_v"][()]), np.asarray(f["flow/units_k"][()])
    valid = [gio.valid_lags(int(t), nl) for t in targets]
    i = int(len(valid) - 1 - np.argmax(valid[::-1]))           # most lags, latest on ties
    t = int(targets[i])
    lmax = (np.asarray(f["flow/log10_norm_max"][i], dtype=float) if "flow/log10_norm_max" in f
            else np.zeros(nl))
    cand = [L for L in range(1, valid[i]) if np.isfinite(lmax[L]) and HEATMAP_LOG10_RANGE[0] < lmax[L] < HEATMAP_LOG10_RANGE[1]]
    if not cand:
        cand = [0]
    lags = [cand[int(round(x))] for x in np.linspace(0, len(cand) - 1, min(N_HEATMAP_LAGS, len(cand)))]
    lags = sorted(set(lags))
    sv = max(1, math.ceil(nv / 1024))
    sk = max(1, math.ceil(nk / 1024))
    while math.ceil(nv / sv) * math.ceil(nk / sk) * 8 > budget:
        sv, sk = (sv * 2, sk) if math.ceil(nv / sv) >= math.ceil(nk / sk) else (sv, sk * 2)
    vs, ks = uv[::sv], uk[::sk]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(lags), figsize=(3.6 * len(lags) + 1.0, 5.0), squeeze=False)
        for ax, L in zip(axes[0], lags):
            g = np.abs(np.asarray(G[i, L, ::sv, ::sk], dtype=float))
            pos = g[np.isfinite(g) & (g > 0)]
            zeros = int((g == 0).sum())
            if pos.size:
                vmax = float(pos.max())
                vmin = max(float(pos.min()), vmax * 1e-12, 1e-300)
                if not vmin < vmax:                     # one value (e.g. lag 0): one decade
                    vmin = vmax / 10.0
                norm = LogNorm(vmin=vmin, vmax=vmax)
            else:
                norm = None
            cmap = plt.get_cmap("magma").copy()
            cmap.set_bad("lightgrey")
            img = np.ma.masked_where(~(np.isfinite(g) & (g > 0)), g)
            im = ax.imshow(img, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                           origin="upper")
            cb = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
            cb.set_label("|G(t−L, t)$_{vk}$|")
            ax.set_title(f"L = {L}  (s = {t - L})" + (f"\n{zeros} entries = 0 (grey)" if zeros else ""))
            ax.set_xlabel("target unit k")
            unit_ticks(ax.xaxis, ks, 6)
            unit_ticks(ax.yaxis, vs, 10)
            ax.grid(False)
        axes[0][0].set_ylabel("source unit v")
        stride = f"; every {sv}th source and {sk}th target unit" if sv > 1 or sk > 1 else ""
        fig.suptitle(f"|G(t−L, t)[V,K]| = |∂δ_v(t−L)/∂δ_k(t)| for target time t = {t}{stride}")
        fig.tight_layout()
        name = save(fig, outdir, "flow_heatmaps.png")
    rep.figures.append(Figure(
        name, "The flow tensor at a few lags",
        f"|G(t−L,t)[v,k]| = |∂δ_v(t−L)/∂δ_k(t)| for target time t = {t} at lags {lags}, "
        "on a logarithmic colour scale (each panel its own, clipped to 12 decades below its "
        "largest entry). Rows: source units v (/flow/units_v), columns: target units k "
        "(/flow/units_k). Grey: entries that are exactly 0 (underflow) or not finite. Lags whose "
        "stored entries under- or overflow double are not shown; /flow/log10_norm_* keep those "
        "exactly." + (f" Every {sv}th row and {sk}th column shown." if stride else "")))
    rep.summary["heatmaps"] = {"t": t, "lags": lags, "row_stride": sv, "column_stride": sk}


def fig_lag_share(f, outdir, rep: Report, budget: int):
    """Figure 3: /lag/log10_contribution against the lag and its cumulative share."""
    lc = f["lag/log10_contribution"]
    targets = np.asarray(f["lag/targets"][()] if "lag/targets" in f else f["flow/targets"][()])
    nt, nl = lc.shape
    lag99, silent = [], []
    for r0, blk in gio.iter_rows(lc, budget):
        for k, y in enumerate(blk):
            nv = gio.valid_lags(int(targets[r0 + k]), nl)
            y = y[:nv]
            ok = np.isfinite(y)
            if not ok.any():
                lag99.append(None)
                silent.append(int(targets[r0 + k]))
                continue
            c = np.where(ok, 10.0 ** (y - y[ok].max()), 0.0)
            cum = np.cumsum(c) / c.sum()
            lag99.append(int(np.argmax(cum >= 0.99 - 1e-12)))
    for p, L in zip(rep.summary.get("targets", []), lag99):
        p["lag_99pct_of_contribution"] = L
    shown = [i for i in subset(nt) if lag99[i] is not None]
    if silent:
        rep.notes.append(f"Target times {silent[:10]}{' ...' if len(silent) > 10 else ''} have "
                         "e(t) = 0 (no error at t), so their gradient share is 0 at every lag.")
    if not shown:
        rep.notes.append("Per-lag share figure skipped: no target has a non-zero error.")
        return
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(shown)))
    with plt.rc_context(STYLE):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(12.5, 4.8))
        for c, i in zip(colours, shown):
            y = np.asarray(lc[i], dtype=float)
            nv = gio.valid_lags(int(targets[i]), nl)
            a0.plot(np.arange(nl), y, color=c, lw=1.6, label=f"t = {int(targets[i])}")
            ok = np.isfinite(y[:nv])
            cc = np.where(ok, 10.0 ** (y[:nv] - y[:nv][ok].max()), 0.0)
            a1.plot(np.arange(nv), np.cumsum(cc) / cc.sum(), color=c, lw=1.6,
                    label=f"t = {int(targets[i])}: 99% by L = {lag99[i]}")
        a0.set_xlabel("lag L  (time steps)")
        a0.set_ylabel("log$_{10}$ ‖lag-L term of ∂E(t)/∂W‖$_F$")
        a0.set_title("Per-lag contribution ‖δ$^{(t)}$(t−L)‖$_2$ ‖a(t−L−1)‖$_2$")
        a0.legend(loc="best")
        a1.axhline(0.99, color="black", ls="--", lw=1.0, label="99%")
        a1.set_xscale("symlog", linthresh=1.0)
        a1.set_xlim(0, max(1, nl - 1))
        a1.set_ylim(0, 1.02)
        a1.set_xlabel("lag L  (time steps, symmetric log scale)")
        a1.set_ylabel("cumulative share of Σ$_L$ contribution")
        a1.set_title("Share of the gradient from lags ≤ L")
        a1.legend(loc="best")
        fig.tight_layout()
        name = save(fig, outdir, "lag_share.png")
    rep.figures.append(Figure(
        name, "Per-lag share of the gradient",
        "Left: log10 of the Frobenius norm of the lag-L term δ^(t)(t−L) a(t−L−1)ᵀ of ∂E(t)/∂W "
        "(/lag/log10_contribution; SPEC §4), i.e. how much the error at t still teaches the "
        "weights about inputs L steps back. Right: the running sum of these norms over lags ≤ L "
        "divided by their total; the legend gives the lag by which 99% is reached."))


def fig_activations(stats: ForwardStats, activation: str, outdir, rep: Report):
    """Figure 4a: raster of a_i(tau)."""
    img = stats.raster.T
    scale, colour = "", "activation a$_i$(τ)"
    if activation == "logistic":
        cmap, vmin, vmax = "viridis", 0.0, 1.0
    elif activation == "tanh":
        cmap, vmin, vmax = "RdBu_r", -1.0, 1.0
    else:                     # unbounded (relu, linear): log10 |a| when it explodes
        mag = np.abs(img[np.isfinite(img)])
        nz = mag[mag > 0]
        top = float(mag.max()) if mag.size else 1.0
        top = top if top > 0 else 1.0
        cmap = "viridis" if activation == "relu" else "RdBu_r"
        vmin, vmax = (0.0 if activation == "relu" else -top), top
        if nz.size and top / float(np.median(nz)) > 100:
            # (imshow rescales in float64, which loses small values next to huge ones)
            with np.errstate(divide="ignore"):
                img = np.ma.masked_invalid(np.log10(np.abs(img)))
            cmap = plt.get_cmap("viridis").copy()
            cmap.set_bad("lightgrey")
            vmax = math.log10(top)
            vmin = max(float(img.min()), vmax - 40)
            colour = "log$_{10}$ |a$_i$(τ)|"
            scale = " (colour: log10 |a|, grey where a = 0)"
    T = stats.raster.shape[0] * stats.t_bin
    n = stats.raster.shape[1] * stats.u_bin
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 4.8))
        im = ax.imshow(img, aspect="auto", interpolation="nearest", origin="lower", cmap=cmap,
                       vmin=vmin, vmax=vmax, extent=[0.5, T + 0.5, -0.5, n - 0.5])
        cb = fig.colorbar(im, ax=ax, pad=0.01)
        cb.set_label(colour)
        ax.set_xlabel("time step τ")
        ax.set_ylabel("unit i")
        ax.grid(False)
        binned = (f" (block means over {stats.t_bin} steps × {stats.u_bin} units)"
                  if stats.t_bin > 1 or stats.u_bin > 1 else "")
        ax.set_title(f"Activations a(τ) = f(net(τ)), {activation}{binned}")
        fig.tight_layout()
        name = save(fig, outdir, "activations.png")
    rep.figures.append(Figure(
        name, "Activations", f"The raster of a_i(τ) (/forward/a) over time steps τ and units i{binned}{scale}; "
        f"range [{fmt(stats.a_min)}, {fmt(stats.a_max)}]. Saturated units (a near the "
        "activation's limits) have small f' and block the error flow."))


def fig_fprime(stats: ForwardStats, fpt: float, outdir, rep: Report):
    """Figure 4b: distribution of f'(net)."""
    total = max(1, int(stats.fp_counts.sum()))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.6))
        ax.stairs(stats.fp_counts / total, stats.fp_edges, fill=True, color="tab:blue", alpha=0.6,
                  label=f"f'(net$_i$(τ)), all τ and i (mean {fmt(stats.fp_mean, 3)})")
        ax.axvline(fpt, color="black", ls="--", lw=1.5, label=f"f'max theory = {fmt(fpt)}")
        ax.axvline(stats.fp_max, color="tab:red", ls=":", lw=2.0,
                   label=f"f'max measured = {fmt(stats.fp_max, 6)}")
        ax.set_yscale("log")
        frac = stats.fp_counts[stats.fp_counts > 0] / total
        ax.set_ylim(min(float(frac.min()) * 0.3, 1e-2), 1.5)
        ax.set_xlabel("f'(net)  (dimensionless)")
        ax.set_ylabel("fraction of (τ, i) per bin")
        ax.set_title("Distribution of the activation derivative")
        ax.legend(loc="upper center")
        fig.tight_layout()
        name = save(fig, outdir, "fprime.png")
    rep.figures.append(Figure(
        name, "Distribution of f'(net)",
        "Histogram of f'_i(net_i(τ)) (/forward/fprime) over all time steps and units, as a "
        "fraction per bin on a log scale, against the activation's theoretical maximum (dashed) "
        "and the largest value met in the run (dotted); f'max enters the bound of SPEC §4."))


def fig_path_factors(pf: PathFactorStats, frac: float, frac_g: float, wmax: float, fpt: float,
                     outdir, rep: Report):
    """Figure 4c: distribution of log10 |f'_i(net_i(tau)) w_ij|."""
    if pf.hist_counts is None or pf.hist_counts.sum() == 0:
        rep.notes.append("Path-factor histogram skipped: every path factor is 0 (W = 0 or f' = 0).")
        return
    top = pf.hist_centres[np.nonzero(pf.hist_counts)[0][-1]] + HIST_STEP
    # show the top SHOWN_DECADES at most, and no empty decades below the 0.1% quantile
    cdf = np.cumsum(pf.hist_counts) / pf.hist_counts.sum()
    q = pf.hist_centres[min(len(cdf) - 1, int(np.searchsorted(cdf, 1e-3)))]
    lo = max(top - SHOWN_DECADES, math.floor((q - 0.25) * 2) / 2)
    edges = SHOWN_STEP * np.arange(math.floor(lo / SHOWN_STEP), math.ceil(top / SHOWN_STEP) + 2)
    counts = np.histogram(pf.hist_centres, edges, weights=pf.hist_counts)[0]
    # the counted histogram is accurate to a bin; make the mass above factor 1 exact
    # (pf.above), moving the difference to or from the bin just below 1
    up = edges[:-1] >= 0
    k = int(np.nonzero(~up)[0][-1]) if (~up).any() else None
    exact, got = float(pf.above.sum()), float(counts[up].sum())
    if k is not None and got != exact:
        if got > 0:
            counts[up] *= exact / got
        counts[k] = max(0.0, counts[k] + got - exact)
    shown_below = pf.total - int(round(counts.sum()))
    dens = counts / pf.total / SHOWN_STEP
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8.5, 4.6))
        ax.stairs(dens, edges, fill=True, color="tab:green", alpha=0.55,
                  label="|f'$_i$(net$_i$(τ)) w$_{ij}$|, all τ, i, j")
        ax.axvline(0.0, color="black", ls="--", lw=1.6, label=f"factor = 1: {100 * frac:.3g}% above")
        lam_n = wmax * fpt
        if lam_n > 0:
            ax.axvline(math.log10(lam_n), color="tab:red", ls=":", lw=2.0,
                       label=f"w$_{{max}}$ f'max = λ/n = {fmt(lam_n)}")
        ax.set_xlim(lo, max(top, 0.0) + 0.3)
        ax.set_xlabel("log$_{10}$ path factor  (dimensionless)")
        ax.set_ylabel("density per decade")
        ax.set_title("Path factors of the error flow (SPEC §4)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        name = save(fig, outdir, "path_factors.png")
    rep.figures.append(Figure(
        name, "Path factors",
        f"Distribution of log10 |f'_i(net_i(τ)) w_ij| over all T·n² = {pf.total} (τ, i, j): the "
        "factor by which one step j → i scales an error path (SPEC §4); a path whose factors all "
        f"exceed 1 explodes, all below 1 vanishes. {100 * frac:.4g}% of them exceed 1 (dashed "
        f"line); with SPEC §3's ordering |f'_j(net_j(τ)) w_ij| it is {100 * frac_g:.4g}%. Dotted: "
        f"the largest possible factor w_max·f'max. Bins of {SHOWN_STEP} decades; "
        f"{shown_below} factors ({100 * shown_below / pf.total:.3g}%) lie below the range "
        "shown (zeros included)."))


# ---------------------------------------------------------------- training (/train)


TRAIN_HEAT_PIXELS = (400, 600)  # at most this many (epoch, lag) cells in a training heat map
PROFILE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def profile_epochs(E: int, success_at) -> list:
    """0-based rows drawn as profiles: the first, middle and final epoch, and the epoch that
    first solved the task when it is another one."""
    rows = {0, (E - 1) // 2, E - 1}
    if success_at is not None and 1 <= int(success_at) <= E:
        rows.add(int(success_at) - 1)
    return sorted(rows)


@dataclass
class EpochLagMap:
    """From one pass over an [E][T] per-epoch dataset: the heat map (block means of the
    transformed rows, geometric means of the underlying quantity; -inf where a whole block
    is -inf), the full transformed rows at `rows`, and one number per epoch (`stat`)
    kept at every `stride`-th epoch and the last, with exact extremes."""
    image: np.ndarray
    e_bin: int
    l_bin: int
    rows: dict
    stat_index: np.ndarray
    stat: np.ndarray
    stat_min: float
    stat_max: float
    stat_first: float
    stat_last: float


def epoch_lag_map(dset, budget: int, transform, row_stat, rows, max_stats: int = 20000):
    """Streams `dset` ([E][T]) in blocks of whole epochs (each within `budget`)."""
    E, T = (int(x) for x in dset.shape)
    eb = max(1, math.ceil(E / TRAIN_HEAT_PIXELS[0]))
    lb = max(1, math.ceil(T / TRAIN_HEAT_PIXELS[1]))
    step = gio.rows_per_block(T * 8 * 4, budget)             # block, transform, temporaries
    step = max(eb, step - step % eb)
    lcuts = np.arange(0, T, lb)
    image = np.full((math.ceil(E / eb), len(lcuts)), np.nan)
    stride = max(1, math.ceil(E / max_stats))
    kept, idx, vals = {}, [], []
    lo, hi, first, last = math.inf, -math.inf, math.nan, math.nan
    for e0 in range(0, E, step):
        e1 = min(E, e0 + step)
        blk = np.asarray(dset[e0:e1], dtype=np.float64)
        X = np.empty_like(blk)
        for k in range(e1 - e0):
            X[k] = transform(blk[k])
            v = row_stat(X[k])
            e = e0 + k
            if e == 0:
                first = v
            last = v
            if math.isfinite(v):
                lo, hi = min(lo, v), max(hi, v)
            if e % stride == 0 or e == E - 1:
                idx.append(e)
                vals.append(v)
            if e in rows:
                kept[e] = X[k].copy()
        del blk
        fin = np.isfinite(X)
        ecuts = np.arange(0, e1 - e0, eb)

        def cells(a):
            return np.add.reduceat(np.add.reduceat(a, ecuts, axis=0), lcuts, axis=1)
        total, count = cells(np.where(fin, X, 0.0)), cells(fin.astype(np.float64))
        neginf = cells((X == -np.inf).astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            m = total / count
        m = np.where(count > 0, m, np.where(neginf > 0, -np.inf, np.nan))
        image[e0 // eb:e0 // eb + len(ecuts)] = m
    return EpochLagMap(image, eb, lb, kept, np.asarray(idx, dtype=np.int64),
                       np.asarray(vals, dtype=np.float64),
                       lo if math.isfinite(lo) else math.nan,
                       hi if math.isfinite(hi) else math.nan, first, last)


def draw_epoch_lag(fig, ax, mp: EpochLagMap, E: int, T: int, cmap, norm, label: str):
    """The heat map of an EpochLagMap: lag L across, epoch up; grey where -inf or missing."""
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad("lightgrey")
    ny, nx = mp.image.shape
    im = ax.imshow(np.ma.masked_invalid(mp.image), aspect="auto", interpolation="nearest",
                   origin="lower", cmap=cm, norm=norm,
                   extent=[-0.5, nx * mp.l_bin - 0.5, 0.5, ny * mp.e_bin + 0.5])
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(0.5, E + 0.5)
    cb = fig.colorbar(im, ax=ax, pad=0.02)
    cb.set_label(label)
    ax.set_xlabel("lag L  (time steps before the target at T)")
    ax.set_ylabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(False)


def finite_range(a, floor_span: float = 1e-3):
    """(lo, hi) of the finite entries of a (a non-empty span), or None."""
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return None
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < floor_span:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def plain_log_labels(ax, values):
    """On a log y axis spanning under two decades, label the minor ticks too, as plain
    numbers (0.2, 0.5) instead of 2×10⁻¹."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if not (v.size and v.max() / v.min() < 100):
        return
    digits = {2, 5} if v.max() / v.min() >= 10 else {2, 3, 5}

    def label(x, _):
        lead = int(round(x / 10.0 ** math.floor(math.log10(x) + 1e-9))) if x > 0 else 0
        return f"{x:.3g}" if lead == 1 or lead in digits else ""
    ax.yaxis.set_major_formatter(FuncFormatter(label))
    ax.yaxis.set_minor_formatter(FuncFormatter(label))


def mark_success(ax, success_at, label=True):
    if success_at is not None:
        ax.axvline(success_at, color="tab:green", ls=":", lw=1.6,
                   label=f"solved at epoch {success_at}" if label else None)


def fig_train_curves(curves: dict, epochs, attrs: dict, outdir, rep: Report):
    """Figure T1: loss, gradient norm and test error against the epoch (log y)."""
    thr = attrs.get("threshold")
    sat = attrs.get("success_at") if attrs.get("success") else None
    panels = [("loss", "loss: mean ½(a(T) − d(T))² per sequence", "Training loss", "tab:blue"),
              ("grad_norm", "mean over batches of ‖∂E/∂W‖$_F$", "Gradient norm", "tab:purple"),
              ("test_error", "max over test sequences of |a(T) − d(T)|", "Test error",
               "tab:red")]
    panels = [p for p in panels if p[0] in curves]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.6), squeeze=False)
        for ax, (name, ylabel, title, colour) in zip(axes[0], panels):
            c = curves[name]
            x = epochs[c.index]
            ax.plot(x, c.values, color=colour, lw=1.7, marker="o" if len(x) <= 60 else None,
                    ms=3.5, label=name.replace("_", " "))
            if name == "test_error" and thr is not None:
                ax.axhline(thr, color="black", ls="--", lw=1.3,
                           label=f"success threshold {fmt(thr)}")
            mark_success(ax, sat)
            if np.any(np.asarray(c.values) > 0):
                ax.set_yscale("log")
                plain_log_labels(ax, c.values)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(loc="best")
        thin = " (every %dth epoch drawn)" % curves["loss"].stride \
            if "loss" in curves and curves["loss"].stride > 1 else ""
        outcome = (f"first solved at epoch {sat} of {attrs.get('epochs')}" if sat is not None
                   else f"not solved in {attrs.get('epochs')} epochs")
        fig.suptitle(f"Training {attrs.get('task')} with {str(attrs.get('method')).upper()}, "
                     f"lag {attrs.get('lag')} (T = {attrs.get('T')}), n = "
                     f"{rep.summary.get('n')}: {outcome}{thin}")
        fig.tight_layout()
        name = save(fig, outdir, "train_curves.png")
    rep.figures.append(Figure(
        name, "Training curves",
        "Left: the training loss, the mean over the epoch of E = ½(a(T) − d(T))² per training "
        "sequence (/train/loss). Middle: the mean over the epoch's batches of the Frobenius norm "
        "of the batch-mean gradient ∂E/∂W (/train/grad_norm). Right: the largest |a(T) − d(T)| "
        "over the test set after the epoch (/train/test_error) against the success threshold "
        "(dashed): the task counts as solved once every test sequence is within it. All on log "
        "scales; the dotted green line marks the epoch that first solved the task." + thin))


def fig_train_lag_share(mp: EpochLagMap, epochs, attrs: dict, long_from: int, outdir,
                        rep: Report):
    """Figure T2: the per-lag share of dE/dW over training."""
    E, T = len(epochs), int(attrs["T"])
    lag = int(attrs["lag"])
    rng = finite_range(mp.image)
    with plt.rc_context(STYLE):
        fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(17, 5.0),
                                         gridspec_kw={"width_ratios": [1.2, 1, 1]})
        vmax = 0.0
        vmin = max(rng[0], -12.0) if rng else -12.0
        draw_epoch_lag(fig, a0, mp, E, T, "viridis", plt.Normalize(vmin, vmax),
                       "log$_{10}$ share of Σ$_L$  (fraction of the epoch's total)")
        a0.axvline(long_from - 0.5, color="white", ls="--", lw=1.3)
        a0.set_title("Share of each lag in ∂E/∂W, per epoch")
        lags = np.arange(T)
        for c, e in zip(PROFILE_COLOURS * 2, sorted(mp.rows)):
            y = mp.rows[e]
            L99 = gio.lag_reaching(y, 0.99)
            a1.plot(lags, y, color=c, lw=1.7, marker="o" if T <= 60 else None, ms=3,
                    label=f"epoch {int(epochs[e])}: 99% by L = {fmt(L99)}")
        a1.axvspan(long_from - 0.5, T - 0.5, color="tab:red", alpha=0.08,
                   label=f"L ≥ {long_from}: a(T−L−1) at or before the\ninformation step T−lag "
                         f"= {T - lag}")
        a1.set_xlim(-0.5, T - 0.5)
        prng = finite_range(np.concatenate([mp.rows[e] for e in mp.rows]))
        if prng:
            a1.set_ylim(prng[0] - 0.05 * (0.0 - prng[0]) - 0.05, 0.15)
        a1.set_xlabel("lag L  (time steps before the target at T)")
        a1.set_ylabel("log$_{10}$ share of Σ$_L$ ‖δ(T−L)‖‖a(T−L−1)‖")
        a1.set_title("Profiles at a few epochs")
        a1.xaxis.set_major_locator(MaxNLocator(integer=True))
        a1.legend(loc="best", fontsize=8.5)
        x = epochs[mp.stat_index]
        a2.plot(x, mp.stat, color="tab:red", lw=1.7, marker="o" if len(x) <= 60 else None, ms=3,
                label=f"lags L ≥ {long_from}")
        mark_success(a2, attrs.get("success_at") if attrs.get("success") else None)
        a2.set_xlabel("epoch")
        a2.set_ylabel(f"log$_{{10}}$ share of ∂E/∂W from lags L ≥ {long_from}")
        a2.set_title("The long-lag share over training")
        a2.xaxis.set_major_locator(MaxNLocator(integer=True))
        a2.legend(loc="best")
        fig.suptitle(f"Per-lag share of the gradient: {attrs.get('task')}, lag {lag} "
                     f"(T = {T}), {attrs.get('method')}")
        fig.tight_layout()
        name = save(fig, outdir, "train_lag_share.png")
    binned = (f" Heat map: block means of the log10 share over {mp.e_bin} epochs × {mp.l_bin} "
              "lags." if mp.e_bin > 1 or mp.l_bin > 1 else "")
    rep.figures.append(Figure(
        name, "Per-lag share of the gradient over training",
        "s_L = the mean over the epoch's training sequences of ‖δ(T−L)‖₂‖a(T−L−1)‖₂, the norm "
        "of the lag-L term δ(T−L)a(T−L−1)ᵀ of ∂E/∂W (/train/log10_lag_share, SPEC §4), shown "
        "as log10 of its fraction of Σ_L s_L in each epoch. Left: every epoch (colour clipped "
        "at 12 decades; grey: a zero share, e.g. L = T−1 when a(0) = 0). Middle: the profile "
        "at the first, middle and final epoch (and the one that solved the task), with the lag "
        "by which 99% of the total is reached; shaded: the lags whose a(T−L−1) is at or before "
        f"the information step T−lag = {T - lag}, the only terms that can tie the target to "
        "the information. Right: their combined share per epoch, i.e. how little of the weight "
        "update comes from the long lags the task needs (gaps: a share that underflowed to 0)."
        + binned))


def fig_train_flow(mp: EpochLagMap, epochs, attrs: dict, outdir, rep: Report):
    """Figure T3: log10 ||G(T-L, T)[:, out]|| over training."""
    E, T = len(epochs), int(attrs["T"])
    lag = int(attrs["lag"])
    rng = finite_range(mp.image)
    with plt.rc_context(STYLE):
        fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(17, 5.0),
                                         gridspec_kw={"width_ratios": [1.2, 1, 1]})
        span = rng[1] - rng[0] if rng else 0.0
        if rng and rng[0] < -0.1 * span and rng[1] > 0.1 * span:   # growth and decay
            norm, cmap = TwoSlopeNorm(0.0, rng[0], rng[1]), "RdBu_r"
        else:
            norm, cmap = (plt.Normalize(*rng) if rng else None), "viridis"
        draw_epoch_lag(fig, a0, mp, E, T, cmap, norm,
                       "log$_{10}$ ‖G(T−L, T)[:, out]‖$_2$")
        if lag < T:
            a0.axvline(lag, color="black", ls="--", lw=1.2)
        a0.set_title("Error flow from the output unit, per epoch")
        lags = np.arange(T)
        for c, e in zip(PROFILE_COLOURS * 2, sorted(mp.rows)):
            y = mp.rows[e]
            rate = gio.fit_decay_rate(y)
            a1.plot(lags, y, color=c, lw=1.7, marker="o" if T <= 60 else None, ms=3,
                    label=f"epoch {int(epochs[e])}: fitted {rate:+.3f} /step")
        if lag < T:
            a1.axvline(lag, color="black", ls="--", lw=1.2,
                       label=f"L = lag = {lag}: the information step")
        a1.axhline(0.0, color="grey", lw=0.8)
        a1.set_xlim(-0.5, T - 0.5)
        a1.set_xlabel("lag L  (time steps before the target at T)")
        a1.set_ylabel("log$_{10}$ ‖∂δ(T−L)/∂δ$_{out}$(T)‖$_2$")
        a1.set_title("Profiles at a few epochs")
        a1.xaxis.set_major_locator(MaxNLocator(integer=True))
        a1.legend(loc="best", fontsize=8.5)
        x = epochs[mp.stat_index]
        a2.plot(x, mp.stat, color="black", lw=1.7, marker="o" if len(x) <= 60 else None, ms=3,
                label=f"L = {lag}")
        a2.axhline(0.0, color="grey", lw=0.8)
        mark_success(a2, attrs.get("success_at") if attrs.get("success") else None)
        a2.set_xlabel("epoch")
        a2.set_ylabel(f"log$_{{10}}$ ‖G(T−{lag}, T)[:, out]‖$_2$")
        a2.set_title("Flow reaching the information step")
        a2.xaxis.set_major_locator(MaxNLocator(integer=True))
        a2.legend(loc="best")
        fig.suptitle(f"Error flow during training: {attrs.get('task')}, lag {lag} (T = {T}), "
                     f"{attrs.get('method')}; test sequence 0 after each epoch")
        fig.tight_layout()
        name = save(fig, outdir, "train_flow.png")
    binned = (f" Heat map: block means over {mp.e_bin} epochs × {mp.l_bin} lags."
              if mp.e_bin > 1 or mp.l_bin > 1 else "")
    rep.figures.append(Figure(
        name, "Error flow from the output unit over training",
        "log10 ‖G(T−L, T)[:, out]‖₂ = log10 ‖∂δ(T−L)/∂δ_out(T)‖₂, the exact norm of the column "
        "of SPEC §3's flow tensor that carries the output error back L steps, on test sequence "
        "0 after each epoch (/train/log10_flow; 0 at L = 0). Left: every epoch (where the flow "
        "both grows and vanishes noticeably, red: growing, blue: vanishing). Middle: profiles "
        "at the first, middle and final epoch (and the one "
        "that solved the task), with the fitted decay rate (least-squares slope per step). "
        f"Right: the flow at L = lag = {lag}, where the information entered the net." + binned))


def fig_sweep(sw, outdir, rep: Report):
    """Figure S1: success rate and cost against the lag of a sweep."""
    with plt.rc_context(STYLE):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(12.5, 4.8))
        draw_sweeps(a0, a1, [(f"{sw.method} ({sw.success.shape[1]} trials a lag)", sw)])
        fig.suptitle(f"Success against the lag: task {sw.task}, method {sw.method}, "
                     f"threshold {fmt(sw.threshold)}")
        fig.tight_layout()
        name = save(fig, outdir, "sweep_success.png")
    rep.figures.append(Figure(
        name, "Success rate against the lag",
        "Left: the fraction of trials (independent seeds) that solved the task at each lag "
        "(/train/sweep/success_rate), with 95% Wilson intervals for the number of trials. "
        f"Right: the {sw.unit} each solved trial needed (/train/sweep/success_at; small points) "
        "and their mean over the solved trials (line), on a log scale. Lags with no solved "
        "trial have no mean."))


def lag_axis(ax, lags):
    """A log lag axis labelled with the lags themselves when they span a factor >= 4."""
    lags = np.asarray(sorted(set(int(x) for x in lags)))
    if lags.size and lags.min() > 0 and lags.max() >= 4 * lags.min():
        ax.set_xscale("log")
        if lags.size <= 12:
            ax.xaxis.set_major_locator(FixedLocator(lags))
            ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("lag  (time steps between the information and the target; log scale)")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("lag  (time steps between the information and the target)")


def draw_sweeps(a_rate, a_cost, entries):
    """Success rate (with 95% Wilson intervals) and the cost of the solved trials against the
    lag, one colour per (label, Sweep) entry; shared by report.py and compare.py."""
    colours = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown",
               "tab:pink", "tab:olive", "tab:cyan", "tab:grey")
    markers = "osD^vP*X<>"
    units = set()
    all_lags = []
    nent = len(entries)
    for k, (label, sw) in enumerate(entries):
        c, mk = colours[k % len(colours)], markers[k % len(markers)]
        tab = gio.sweep_table(sw)
        lags = np.array([r["lag"] for r in tab], dtype=float)
        all_lags += lags.tolist()
        # small horizontal offsets keep several files' bars apart
        shift = (1.0 + 0.025 * (k - (nent - 1) / 2)) if nent > 1 else 1.0
        rate = np.array([r["success_rate"] for r in tab])
        ci = np.array([r["success_rate_95ci"] for r in tab]).reshape(-1, 2)
        a_rate.errorbar(lags * shift, rate, yerr=[rate - ci[:, 0], ci[:, 1] - rate], color=c,
                        marker=mk, ms=7, lw=1.8, capsize=3, label=label)
        units.add(sw.unit)
        solved = sw.success > 0.5
        for i, L in enumerate(lags):
            at = sw.success_at[i][solved[i]]
            if at.size:
                a_cost.plot(np.full(at.size, L * shift), at, ls="none", marker=mk, ms=4,
                            color=c, alpha=0.35)
        mean = np.array([r["mean_success_at"] if r["mean_success_at"] is not None else np.nan
                         for r in tab], dtype=float)
        a_cost.plot(lags * shift, mean, color=c, marker=mk, ms=7, lw=1.8,
                    label=f"{label}: mean {sw.unit} of the solved trials")
    for ax in (a_rate, a_cost):
        lag_axis(ax, all_lags)
    a_rate.set_ylim(-0.04, 1.06)
    a_rate.set_ylabel("success rate  (fraction of trials solved)")
    a_rate.set_title("Success rate (bars: 95% Wilson interval)")
    a_rate.legend(loc="best")
    what = " / ".join(sorted(units))
    a_cost.set_yscale("log")
    a_cost.set_ylabel(f"{what} until solved  (log scale)")
    a_cost.set_title("Cost of the solved trials (points: single trials)")
    if a_cost.lines:
        a_cost.legend(loc="best", fontsize=8.5)


def train_run_numbers(f, attrs: dict, budget: int, rep: Report) -> dict:
    """The summary of a single training run (attributes, curve statistics, weights)."""
    t = {"kind": "run", **{k: attrs.get(k) for k in (
        "task", "method", "lag", "T", "threshold", "success", "success_at", "epochs",
        "guesses", "final_test_error")}}
    if attrs.get("T") is not None and attrs.get("lag") is not None:
        t["information_step"] = int(attrs["T"]) - int(attrs["lag"])
    fpt = gio.FPRIME_MAX_THEORY.get(str(rep.summary.get("activation")))
    weights = {}
    for key, path in (("initial", "model/W"), ("final", "train/W")):
        if path in f:
            ws = weight_stats(f[path], budget)
            n = f[path].shape[0]
            ws["lambda"] = n * ws["w_max"] * fpt if fpt is not None else None
            ws["bound_rate"] = (gio.log10_safe(fpt * ws["norm_A"]) if fpt is not None else None)
            weights[key] = ws
    t["weights"] = weights
    return t


def train_run_section(f, attrs: dict, budget: int, outdir, rep: Report):
    s = rep.summary
    t = train_run_numbers(f, attrs, budget, rep)
    s["train"] = t
    epochs = gio.train_epochs(f)
    if epochs is None or len(epochs) == 0:
        t["final_loss"] = None
        rep.notes.append(f"The training run ({attrs.get('method')}) has no per-epoch data "
                         "(weight guessing has no epochs): no training figures; "
                         f"{'solved' if attrs.get('success') else 'not solved'} after "
                         f"{attrs.get('guesses')} guesses.")
        return
    thr = attrs.get("threshold")
    curves = {}
    for name in gio.TRAIN_CURVES:
        if f"train/{name}" in f:
            c = gio.read_curve(f[f"train/{name}"], budget,
                               threshold=thr if name == "test_error" else None)
            curves[name] = c
            t[name] = {"initial": c.first, "final": c.last, "min": c.min,
                       "min_epoch": int(epochs[c.argmin]) if c.argmin >= 0 else None,
                       "max": c.max}
            if name == "test_error":
                t[name]["first_epoch_below_threshold"] = (
                    int(epochs[c.first_below]) if c.first_below is not None else None)
    t["final_loss"] = t["loss"]["final"] if "loss" in t else None
    t["initial_loss"] = t["loss"]["initial"] if "loss" in t else None
    if "test_error" in t:
        te = t["test_error"]
        if attrs.get("final_test_error") is not None and te["final"] != attrs["final_test_error"]:
            rep.notes.append(f"/train/test_error ends at {te['final']!r}, but the attribute "
                             f"final_test_error is {attrs['final_test_error']!r}.")
        want = attrs.get("success_at") if attrs.get("success") else None
        if te["first_epoch_below_threshold"] != want:
            rep.notes.append(f"The test error first falls below the threshold at epoch "
                             f"{te['first_epoch_below_threshold']}, but /train says success_at "
                             f"= {attrs.get('success_at')} (success {attrs.get('success')}).")
    fig_train_curves(curves, epochs, attrs, outdir, rep)
    E = len(epochs)
    rows = profile_epochs(E, attrs.get("success_at") if attrs.get("success") else None)
    T, lag = int(attrs["T"]), int(attrs["lag"])
    if "train/log10_lag_share" in f:
        long_from = max(0, lag - 1)

        def long_share(y):
            tail = y[long_from:]
            ok = np.isfinite(tail)
            if not ok.any():
                return -math.inf
            top = float(tail[ok].max())
            return top + math.log10(float(np.sum(10.0 ** (tail[ok] - top))))
        mp = epoch_lag_map(f["train/log10_lag_share"], budget, gio.log10_fractions, long_share,
                           set(rows))
        t["lag_share"] = {
            "definition": "s_L = mean over the epoch's sequences of ||delta(T-L)||_2 "
                          "||a(T-L-1)||_2 (the lag-L term of dE/dW); shares are s_L / sum_L s_L",
            "long_lags_from": long_from,
            "long_lags_definition": "L >= lag - 1: a(T-L-1) at or before the information step T - lag",
            "log10_share_long_lags": {"initial": mp.stat_first, "final": mp.stat_last,
                                      "min": mp.stat_min, "max": mp.stat_max},
            "profiles": [{"epoch": int(epochs[e]),
                          "lag_99pct": gio.lag_reaching(mp.rows[e], 0.99),
                          "log10_share_long_lags": long_share(mp.rows[e]),
                          "share_long_lags": 10.0 ** long_share(mp.rows[e]),
                          "log10_share_lag0": float(mp.rows[e][0]),
                          "log10_share_at_lag_minus_1": float(mp.rows[e][long_from])}
                         for e in rows]}
        fig_train_lag_share(mp, epochs, attrs, long_from, outdir, rep)
    else:
        rep.notes.append("Training lag-share figure skipped: /train/log10_lag_share missing.")
    if "train/log10_flow" in f:
        at = min(lag, T - 1)
        mp = epoch_lag_map(f["train/log10_flow"], budget, lambda y: y, lambda y: float(y[at]),
                           set(rows))
        t["flow"] = {
            "definition": "log10 ||G(T-L, T)[:, out]||_2 on test sequence 0 after the epoch",
            "information_lag": at,
            "log10_flow_at_information_lag": {"initial": mp.stat_first, "final": mp.stat_last,
                                              "min": mp.stat_min, "max": mp.stat_max},
            "profiles": [{"epoch": int(epochs[e]), "decay_rate": gio.fit_decay_rate(mp.rows[e]),
                          "log10_flow_at_information_lag": float(mp.rows[e][at]),
                          "log10_flow_last_lag": float(mp.rows[e][-1])} for e in rows]}
        fig_train_flow(mp, epochs, attrs, outdir, rep)
    else:
        rep.notes.append("Training flow figure skipped: /train/log10_flow missing.")


def train_sweep_section(f, attrs: dict, outdir, rep: Report):
    sw = gio.read_sweep(f)
    tab = gio.sweep_table(sw)
    solved_all = [r["lag"] for r in tab if r["solved"] == r["trials"]]
    solved_any = [r["lag"] for r in tab if r["solved"] > 0]
    rep.summary["train"] = {
        "kind": "sweep", "task": sw.task, "method": sw.method, "threshold": sw.threshold,
        "success_at_unit": sw.unit, "lags": sw.lags.tolist(), "trials": int(sw.success.shape[1]),
        "success_rate": sw.success_rate.tolist(),
        "overall_success_rate": float(sw.success.mean()) if sw.success.size else None,
        "largest_lag_all_solved": max(solved_all) if solved_all else None,
        "largest_lag_any_solved": max(solved_any) if solved_any else None,
        "per_lag": tab}
    for r in tab:
        if abs(r["success_rate"] - r["success_rate_recomputed"]) > 1e-12:
            rep.notes.append(f"/train/sweep/success_rate at lag {r['lag']} is "
                             f"{r['success_rate']!r}, but the trials give "
                             f"{r['success_rate_recomputed']!r}.")
    if sw.lags.size:
        fig_sweep(sw, outdir, rep)
    else:
        rep.notes.append("The sweep has no lags: no sweep figure.")


def train_section(f, budget: int, outdir, rep: Report):
    """The training figures and numbers (report item 5)."""
    try:
        train_kinds(f, budget, outdir, rep)
    except KeyError as exc:
        if gio.is_complete(f):
            raise
        rep.summary.setdefault("train", {"kind": gio.train_kind(f), "error": str(exc)})
        rep.notes.append(f"Training figures incomplete: {exc} (the file is incomplete).")


def train_kinds(f, budget: int, outdir, rep: Report):
    kind = gio.train_kind(f)
    attrs = gio.train_attrs(f)
    if kind is None:
        rep.summary["train"] = None
        rep.notes.append("No /train group: no training figures (written by `gradflow train`).")
    elif kind == "sweep":
        train_sweep_section(f, attrs, outdir, rep)
    elif kind == "run":
        train_run_section(f, attrs, budget, outdir, rep)
    else:
        rep.summary["train"] = {"kind": "unknown", "attrs": attrs}
        rep.notes.append("The file has a /train group with neither a training run (attribute "
                         "'method', /train/W) nor /train/sweep: no training figures.")


# ---------------------------------------------------------------- the report


def basic_numbers(f, cfg, fa: dict, budget: int, rep: Report) -> dict:
    """Sizes, loss, gradient norm and W's norms into rep.summary; returns W's streamed
    statistics.  The /flow attributes are the program's numbers; they are checked against
    /model/W, and stand in when the file has no /flow (--flow-targets none)."""
    s = rep.summary
    opts = cfg.options
    s["n"] = int(f["model/W"].shape[0]) if "model/W" in f else opts.get("units")
    s["m"] = opts.get("inputs")
    s["n_out"] = opts.get("outputs")
    s["T"] = int(f["forward/a"].shape[0]) if "forward/a" in f else opts.get("steps")
    s["activation"] = opts.get("activation")
    s["seed"] = opts.get("seed")
    s["config_w_max"] = opts.get("w-max")
    E = f["backward/E"] if "backward/E" in f else None
    s["loss"] = float(E.attrs["loss"]) if E is not None and "loss" in E.attrs else None
    if "gradient/dE_dW" in f:
        dW = f["gradient/dE_dW"]
        s["norm_dE_dW"] = (float(dW.attrs["norm_fro"]) if "norm_fro" in dW.attrs
                           else frobenius(dW, budget))
    else:
        s["norm_dE_dW"] = None
    ws = weight_stats(f["model/W"], budget) if "model/W" in f else {}
    for key in ("norm_A", "norm_A_columns", "w_max"):
        s[key] = fa.get(key, ws.get(key))
    s["fprime_max_theory"] = fa.get("fprime_max_theory",
                                    gio.FPRIME_MAX_THEORY.get(str(s["activation"])))
    fpt = s["fprime_max_theory"]
    s["lambda"] = fa.get("lambda", s["n"] * s["w_max"] * fpt
                         if None not in (s["n"], s["w_max"], fpt) else None)
    check = {}
    for key in ("norm_A", "norm_A_columns", "w_max"):
        if key in fa and key in ws:
            check[key] = abs(fa[key] - ws[key]) / max(abs(ws[key]), 1e-300)
            if check[key] > 1e-12:
                rep.notes.append(f"/flow attribute {key} = {fa[key]!r} differs from /model/W "
                                 f"({ws[key]!r}) by {check[key]:.3g} (relative).")
    s["checks"] = {"relative_difference_flow_attrs_vs_W": check}
    return ws


def bound_rates(s: dict):
    """log10(f'max ||W||_A) with the theoretical and the measured f'max (SPEC §4)."""
    def rate(fp, norm):
        return gio.log10_safe(fp * norm) if fp is not None and norm is not None else math.nan
    return (rate(s.get("fprime_max_theory"), s.get("norm_A")),
            rate(s.get("fprime_max_measured"), s.get("norm_A")))


def forward_section(f, fa: dict, ws: dict, budget: int, outdir, rep: Report,
                    training: bool = False):
    """Figures 4a-c and the path-factor numbers; returns the PathFactorStats or None.
    `training`: the file is a training file (its missing groups get one note elsewhere)."""
    s = rep.summary
    if "forward/a" not in f or "forward/fprime" not in f:
        s["fprime_max_measured"] = fa.get("fprime_max_measured")
        if not training:
            rep.notes.append("Activation figures skipped: /forward/a or /forward/fprime missing.")
        return None
    fpt = s["fprime_max_theory"] or 1.0
    fst = forward_stats(f["forward/a"], f["forward/fprime"], budget, fpt * 1.04)
    s["fprime_max_measured"] = fa.get("fprime_max_measured", fst.fp_max)
    s["fprime_mean"] = fst.fp_mean
    if "fprime_max_measured" in fa:
        s["checks"]["abs_difference_fprime_max_measured"] = abs(fa["fprime_max_measured"] - fst.fp_max)
    fig_activations(fst, s["activation"] or "", outdir, rep)
    fig_fprime(fst, fpt, outdir, rep)
    if "model/W" not in f:
        rep.notes.append("Path factors skipped: /model/W missing.")
        return None
    W, fp = f["model/W"], f["forward/fprime"]
    pf = path_factor_stats(W, fp, budget, receiver=True, hist=True, w_max=ws["w_max"],
                           fp_max=fst.fp_max)
    pfg = path_factor_stats(W, fp, budget, receiver=False)
    frac = float(pf.above.sum()) / pf.total if pf.total else math.nan
    frac_g = float(pfg.above.sum()) / pfg.total if pfg.total else math.nan
    s["path_factors"] = {
        "definition": "|f'_i(net_i(tau)) w_ij| over tau = 1..T, all i, j (SPEC §4)",
        "count": pf.total, "above_1": int(pf.above.sum()), "fraction_above_1": frac,
        "fraction_above_1_spec3_ordering": frac_g,
        "spec3_definition": "|f'_j(net_j(tau)) w_ij| (SPEC §3's path sum of G)"}
    fig_path_factors(pf, frac, frac_g, ws["w_max"], fpt, outdir, rep)
    return pf


def flow_section(f, pf, budget: int, outdir, rep: Report, training: bool = False):
    """Figures 1-3 and the per-target numbers."""
    s = rep.summary
    if "flow/log10_norm_fro" not in f or "flow/targets" not in f:
        if not training:
            rep.notes.append("Flow figures skipped: the file has no /flow (run with "
                             "--flow-targets none, or incomplete).")
        return
    fig_flow_decay(f, outdir, rep, budget)
    if pf is not None:
        n = s["n"]
        for p in s["targets"]:
            t, last = p["t"], p["valid_lags"][1]
            # the factors of a path from s = t - last to t: tau = s+1 .. t (rows tau-1)
            p["path_factor_window"] = [t - last + 1, t] if last > 0 else None
            p["fraction_path_factors_above_1"] = (
                float(pf.above[t - last:t].sum()) / (last * n * n) if last > 0 else None)
    fig_heatmaps(f, outdir, rep, budget)
    if "lag/log10_contribution" in f:
        fig_lag_share(f, outdir, rep, budget)
    else:
        rep.notes.append("Per-lag share skipped: /lag/log10_contribution missing.")


def tensor_section(f, budget: int, rep: Report):
    """One bounded pass over /flow/G (see tensor_check) into rep.summary['flow_tensor']."""
    if "flow/G" not in f:
        rep.summary["flow_tensor"] = None
        return
    chk = tensor_check(f, budget)
    rep.summary["flow_tensor"] = {
        "shape": list(f["flow/G"].shape), "axes": gio.axis_names(f["flow/G"]),
        "bytes": chk.nbytes, "read_budget_bytes": chk.budget, "slabs": chk.slabs,
        "largest_slab_bytes": chk.largest_slab, "elements_read": chk.elements,
        "nan_entries": chk.nan, "zero_entries": chk.zero,
        "zero_entries_at_lags_ge_1": chk.zero_after_lag0, "overflowed_entries": chk.overflow,
        "sum_of_finite_entries": chk.sum_finite,
        "first_lag_with_zero_entry": chk.first_zero_lag,
        "max_abs_log10_difference_vs_log10_norm_max": chk.max_log10_mismatch}
    if chk.zero_after_lag0 or chk.overflow:
        rep.notes.append(f"/flow/G: {chk.zero_after_lag0} stored entries at lags >= 1 are "
                         f"exactly 0 (underflow, or no path) and {chk.overflow} overflowed; "
                         "the log10 norms in /flow are exact.")


def build_report(path, outdir, allow_incomplete: bool = False,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB) -> dict:
    """Writes the figures, summary.json and index.html of `path` into `outdir` and
    returns the summary.  Raises gio.GradflowFileError for a file that is not a
    (complete, unless allowed) gradflow/1 file."""
    budget = gio.budget_bytes(max_memory_mb)
    rep = Report()
    s = rep.summary
    with gio.open_file(path, allow_incomplete=allow_incomplete) as f:
        os.makedirs(outdir, exist_ok=True)
        root = gio.root_attrs(f)
        cfg = gio.read_config(f)
        fa = gio.flow_attrs(f)
        s["file"] = os.path.abspath(path)
        s.update({k: root.get(k) for k in ("format", "program_version", "git_revision",
                                            "command_line", "mpi_ranks", "grid", "created_utc")})
        s["complete"] = gio.is_complete(f)
        if not s["complete"]:
            rep.notes.append("The file is INCOMPLETE (complete != 1): the run did not finish; "
                             "missing parts are skipped.")
        ws = basic_numbers(f, cfg, fa, budget, rep)
        kind = gio.train_kind(f)
        training = kind in ("run", "sweep")
        missing = [g for g in ("forward", "flow", "lag") if g not in f]
        if training and missing:
            rep.notes.append(
                f"A training file (`gradflow train`, {'a sweep' if kind == 'sweep' else 'one run'})"
                f": it has no {', '.join('/' + g for g in missing)}, so the "
                + ("activation, f' and path-factor, " if "forward" in missing else "")
                + ("flow-decay, heat-map and per-lag-share " if "flow" in missing else "")
                + "figures of a gradflow run are skipped; the training figures are drawn from "
                "/train.")
        if kind == "run" and "model/W" in f:
            rep.notes.append("In a training file /model holds the initial weights: ‖W‖_A, λ and "
                             "the bound rates in the table are the initial net's; the final "
                             "weights' are in summary.json under train.weights.final.")
        pf = forward_section(f, fa, ws, budget, outdir, rep, training)      # (4)
        s["bound_rate_theory"], s["bound_rate_measured"] = bound_rates(s)
        s["bound_rate_columns"] = (gio.log10_safe(s["fprime_max_theory"] * s["norm_A_columns"])
                                   if None not in (s["fprime_max_theory"], s["norm_A_columns"])
                                   else None)
        flow_section(f, pf, budget, outdir, rep, training)        # (1)-(3)
        tensor_section(f, budget, rep)
        train_section(f, budget, outdir, rep)                     # (5)
        layout = gio.describe(f)
    rep.figures.sort(key=lambda fig: FIGURE_ORDER.index(fig.file)
                     if fig.file in FIGURE_ORDER else len(FIGURE_ORDER))
    s["reading"] = {"budget_bytes": budget}
    s["figures"] = [fig.file for fig in rep.figures]
    s["notes"] = rep.notes
    with open(os.path.join(outdir, "summary.json"), "w") as out:
        json.dump(clean_json(s), out, indent=2, allow_nan=False)
        out.write("\n")
    write_html(os.path.join(outdir, "index.html"), rep, cfg, layout)
    return clean_json(s)


def write_html(path, rep: Report, cfg, layout):
    """index.html: key numbers, the figures with captions, notes, configuration, layout."""
    s = rep.summary
    e = html.escape
    rows = [("file", s.get("file")), ("program", f"gradflow {s.get('program_version')} "
                                                 f"(git {s.get('git_revision')})"),
            ("command line", s.get("command_line")), ("ranks / grid", f"{s.get('mpi_ranks')} / {s.get('grid')}"),
            ("n, m, n_out, T", f"{s.get('n')}, {s.get('m')}, {s.get('n_out')}, {s.get('T')}"),
            ("activation", s.get("activation")), ("loss E", fmt(s.get("loss"), 8)),
            ("‖∂E/∂W‖_F", fmt(s.get("norm_dE_dW"), 6)),
            ("‖W‖_A (rows) / columns", f"{fmt(s.get('norm_A'), 6)} / {fmt(s.get('norm_A_columns'), 6)}"),
            ("w_max, λ = n w_max f'max", f"{fmt(s.get('w_max'), 6)}, {fmt(s.get('lambda'), 6)}"),
            ("f'max theory / measured", f"{fmt(s.get('fprime_max_theory'), 6)} / "
                                        f"{fmt(s.get('fprime_max_measured'), 6)}"),
            ("mean decay rate (log10 per step)", fmt(s.get("decay_rate_mean"))),
            ("bound rate log10(f'max‖W‖_A) theory / measured",
             f"{fmt(s.get('bound_rate_theory'))} / {fmt(s.get('bound_rate_measured'))}")]
    if s.get("path_factors"):
        rows.append(("path factors > 1", f"{100 * s['path_factors']['fraction_above_1']:.4g}%"))
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>gradflow report: {e(os.path.basename(str(s.get('file'))))}</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left;vertical-align:top}figure{margin:2em 0}img{max-width:100%}"
             "figcaption{max-width:1000px}.note{color:#8a4b00}</style></head><body>",
             f"<h1>gradflow report: {e(os.path.basename(str(s.get('file'))))}</h1>",
             "<p>Numbers as in <a href='summary.json'>summary.json</a>.</p><table>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if s.get("targets"):
        parts.append("<h2>Per target</h2><table><tr><th>t</th><th>fitted decay rate</th>"
                     "<th>bound rate theory / measured</th><th>first lag below 1e-16</th>"
                     "<th>99% of gradient by lag</th><th>path factors &gt; 1 in window</th></tr>")
        for p in s["targets"]:
            fr = p.get("fraction_path_factors_above_1")
            parts.append(f"<tr><td>{p['t']}</td><td>{fmt(p['decay_rate'])}</td>"
                         f"<td>{fmt(p['bound_rate_theory'])} / {fmt(p['bound_rate_measured'])}</td>"
                         f"<td>{fmt(p['first_lag_below_1e-16'])}</td>"
                         f"<td>{fmt(p.get('lag_99pct_of_contribution'))}</td>"
                         f"<td>{'n/a' if fr is None else f'{100 * fr:.4g}%'}</td></tr>")
        parts.append("</table>")
    parts += train_html(s.get("train"))
    if rep.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li class='note'>{e(n)}</li>" for n in rep.notes]
        parts.append("</ul>")
    parts.append("<h2>Figures</h2>")
    for k, fig in enumerate(rep.figures, 1):
        parts.append(f"<figure><h3>{k}. {e(fig.title)}</h3><img src='{e(fig.file)}' "
                     f"alt='{e(fig.title)}'><figcaption>{e(fig.caption)}</figcaption></figure>")
    parts.append("<h2>Configuration (/config/ini)</h2><pre>" + e(cfg.ini) + "</pre>")
    parts.append("<h2>File layout</h2><table><tr><th>dataset</th><th>shape</th><th>axes "
                 "(dimension scales)</th><th>description</th></tr>")
    for d in layout:
        axes = ", ".join(str(a) for a in d["axes"])
        parts.append(f"<tr><td>{e(d['path'])}</td><td>{e(str(tuple(d['shape'])))}</td>"
                     f"<td>{e(axes)}</td><td>{e(d['description'])}</td></tr>")
    parts.append("</table></body></html>")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(parts) + "\n")


def pct(x):
    return "n/a" if x is None else f"{100 * x:.3g}%"


def train_html(t) -> list:
    """The training tables of index.html (a run or a sweep); [] without /train."""
    if not isinstance(t, dict) or t.get("kind") not in ("run", "sweep"):
        return []
    e = html.escape
    if t["kind"] == "sweep":
        parts = [f"<h2>Training sweep: {e(str(t['task']))}, {e(str(t['method']))}, "
                 f"{t['trials']} trials a lag, threshold {fmt(t['threshold'])}</h2>",
                 f"<table><tr><th>lag</th><th>solved</th><th>success rate</th>"
                 f"<th>95% interval</th><th>mean {e(t['success_at_unit'])} (solved)</th>"
                 f"<th>median</th><th>range</th><th>mean final test error</th></tr>"]
        for r in t["per_lag"]:
            lo, hi = r["success_rate_95ci"]
            parts.append(f"<tr><td>{r['lag']}</td><td>{r['solved']} / {r['trials']}</td>"
                         f"<td>{pct(r['success_rate'])}</td><td>{pct(lo)} .. {pct(hi)}</td>"
                         f"<td>{fmt(r['mean_success_at'])}</td><td>{fmt(r['median_success_at'])}</td>"
                         f"<td>{fmt(r['min_success_at'])} .. {fmt(r['max_success_at'])}</td>"
                         f"<td>{fmt(r['mean_final_test_error'])}</td></tr>")
        parts.append("</table>")
        parts.append(f"<p>Largest lag solved by every trial: {fmt(t['largest_lag_all_solved'])}; "
                     f"by at least one: {fmt(t['largest_lag_any_solved'])}.</p>")
        return parts
    w = t.get("weights", {})
    wi, wf = w.get("initial", {}), w.get("final", {})
    rows = [("task, lag, T", f"{t.get('task')}, {t.get('lag')}, {t.get('T')} (information at "
                             f"step {t.get('information_step')})"),
            ("method", t.get("method")),
            ("outcome", (f"solved at {'guess' if t.get('method') == 'guess' else 'epoch'} "
                         f"{t.get('success_at')}" if t.get("success") else "not solved")
             + f"; {t.get('epochs')} epochs, {t.get('guesses')} guesses"),
            ("test error final (threshold)", f"{fmt(t.get('final_test_error'))} "
                                             f"({fmt(t.get('threshold'))})")]
    if "loss" in t:
        rows.append(("loss first → final epoch", f"{fmt(t['loss']['initial'])} → "
                                                 f"{fmt(t['loss']['final'])}"))
    if "grad_norm" in t:
        rows.append(("‖∂E/∂W‖_F first → final epoch", f"{fmt(t['grad_norm']['initial'])} → "
                                                      f"{fmt(t['grad_norm']['final'])}"))
    if wi and wf:
        rows.append(("‖W‖_A initial → final", f"{fmt(wi['norm_A'])} → {fmt(wf['norm_A'])}"))
        rows.append(("λ = n w_max f'max initial → final",
                     f"{fmt(wi.get('lambda'))} → {fmt(wf.get('lambda'))}"))
    ls = t.get("lag_share")
    if ls:
        a = ls["log10_share_long_lags"]
        rows.append((f"share of ∂E/∂W from lags ≥ {ls['long_lags_from']} first → final epoch "
                     "(smallest)",
                     f"{pct(10 ** a['initial'] if a['initial'] is not None else None)} → "
                     f"{pct(10 ** a['final'] if a['final'] is not None else None)} "
                     f"({pct(10 ** a['min'] if a['min'] is not None else None)})"))
    fl = t.get("flow")
    if fl:
        a = fl["log10_flow_at_information_lag"]
        rows.append((f"log10 ‖G(T−{fl['information_lag']}, T)[:, out]‖ first → final epoch",
                     f"{fmt(a['initial'])} → {fmt(a['final'])}"))
    parts = ["<h2>Training run</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    return parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="report.py", description="Figures, summary.json and index.html for one gradflow "
        "output file (format gradflow/1).")
    ap.add_argument("file", help="gradflow output file (FILE.h5)")
    ap.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    ap.add_argument("--allow-incomplete", action="store_true",
                    help="report a file whose root attribute 'complete' is not 1")
    ap.add_argument("--max-memory-mb", type=float, default=DEFAULT_MAX_MEMORY_MB, metavar="N",
                    help="largest block read from the file at once, in MiB "
                         f"(default {DEFAULT_MAX_MEMORY_MB})")
    args = ap.parse_args(argv)
    if not args.max_memory_mb > 0:
        ap.error("--max-memory-mb must be > 0")
    try:
        summary = build_report(args.file, args.output, args.allow_incomplete, args.max_memory_mb)
    except gio.GradflowFileError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return 66 if "no such file" in str(exc) or "not a readable" in str(exc) else 65
    except OSError as exc:
        print(f"report.py: error: {args.output}: {exc}", file=sys.stderr)
        return 73
    print(f"report.py: wrote {len(summary.get('figures', []))} figures, summary.json and "
          f"index.html to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
