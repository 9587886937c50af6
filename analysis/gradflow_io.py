"""Reading gradflow output files (format "gradflow/1", SPEC §6) with bounded memory.

This module is the one loader behind ``analysis/report.py`` and
``analysis/compare.py``; it is also meant to be imported by users::

    import sys; sys.path.insert(0, "analysis")
    import gradflow_io as gio

    with gio.open_file("out/demo.h5") as f:          # checks format and completeness
        print(gio.axis_names(f["flow/G"]))           # ['target', 'lag', 'unit_v', 'unit_k']
        cfg = gio.read_config(f)                     # cfg.options["w-max"], cfg.ini
        for slab in gio.iter_flow_slabs(f, max_bytes=64 << 20):
            ...                                      # slab.data: one bounded block of /flow/G

Everything here is a plain function or a small immutable class; nothing keeps
state between calls.  Every reader that touches an array whose size grows
with the run (``/flow/G``, the [T][n] time-major datasets, ``/model/W``) takes
a byte budget and never holds a block larger than it.  The small per-(target,
lag) arrays (``/flow/log10_norm_*``, ``/lag/*``) are read whole.

Training files (``gradflow train``) are read with ``train_kind``, ``train_attrs``,
``read_curve`` (a per-epoch curve, bounded), ``read_sweep`` and ``sweep_table``; the
[E][T] per-epoch maps are read in row blocks with ``iter_rows``.

Only h5py and numpy are needed.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterator, Optional

import h5py
import numpy as np

FORMAT = "gradflow/1"
"""The value of the root attribute ``format`` this module reads."""

ONE_MIB = 1 << 20

FPRIME_MAX_THEORY = {"logistic": 0.25, "tanh": 1.0, "linear": 1.0, "relu": 1.0}
"""The theoretical maximum of f' of each activation (SPEC §1)."""


class GradflowFileError(Exception):
    """The file cannot be read as a gradflow/1 file (missing, not HDF5, or another format)."""


class IncompleteFileError(GradflowFileError):
    """The file is a gradflow file whose root attribute ``complete`` is not 1."""


# ---------------------------------------------------------------- opening


def _text(value) -> str:
    """An HDF5 string attribute or dataset value as str (h5py returns bytes for fixed-length)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).rstrip(b"\0").decode("utf-8", errors="replace")
    return str(value)


def _plain(value):
    """An attribute value as a plain Python scalar (str, int or float) where possible."""
    if isinstance(value, (bytes, np.bytes_, str)):
        return _text(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_file(path, allow_incomplete: bool = False) -> h5py.File:
    """Opens a gradflow output file read-only and checks that it is one.

    Raises GradflowFileError, with a message naming the file, when the file is
    missing, is not HDF5, has no root attribute ``format`` or a format other
    than "gradflow/1"; raises IncompleteFileError when its root attribute
    ``complete`` is not 1 (a run that stopped early, or a ``.partial`` file),
    unless ``allow_incomplete`` is true.  The caller closes the returned file
    (it is a context manager).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise GradflowFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise GradflowFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        if "format" not in f.attrs:
            raise GradflowFileError(
                f"{path}: not a gradflow file: the root attribute 'format' is missing "
                f"(expected '{FORMAT}')")
        found = _text(f.attrs["format"])
        if found != FORMAT:
            raise GradflowFileError(
                f"{path}: format '{found}' is not supported: this tool reads '{FORMAT}'")
        complete = f.attrs.get("complete", None)
        if not allow_incomplete and (complete is None or int(np.asarray(complete)) != 1):
            shown = "missing" if complete is None else f"= {int(np.asarray(complete))}"
            raise IncompleteFileError(
                f"{path}: the file is incomplete (root attribute 'complete' {shown}; the run "
                f"that wrote it did not finish). Pass --allow-incomplete (allow_incomplete=True) "
                f"to read what is there")
    except BaseException:
        f.close()
        raise
    return f


def is_complete(f: h5py.File) -> bool:
    """True when the root attribute ``complete`` is 1."""
    c = f.attrs.get("complete", None)
    return c is not None and int(np.asarray(c)) == 1


def root_attrs(f: h5py.File) -> dict:
    """The root attributes (format, program_version, command_line, ...) as plain values."""
    return {k: _plain(v) for k, v in f.attrs.items()}


# ---------------------------------------------------------------- axes and config


def axis_names(dset: h5py.Dataset) -> list:
    """The name of each axis of ``dset``, from its attached dimension scales.

    Returns one entry per dimension: the NAME attribute of the first scale
    attached to that dimension (e.g. ['target', 'lag', 'unit_v', 'unit_k'] for
    /flow/G), or None where no scale is attached.
    """
    names = []
    for dim in dset.dims:
        name = None
        for scale in dim.values():
            if "NAME" in scale.attrs:
                name = _text(scale.attrs["NAME"])
                break
        names.append(name or (dim.label or None))
    return names


def axis_values(dset: h5py.Dataset, axis: int) -> Optional[np.ndarray]:
    """The values of the dimension scale attached to ``axis`` of ``dset`` (e.g. the target
    times of /flow/G's axis 0), or None when no scale is attached."""
    for scale in dset.dims[axis].values():
        return scale[()]
    return None


@dataclass(frozen=True)
class Config:
    """The resolved configuration of a run: ``options`` maps every long option name
    (``units``, ``w-max``, ``activation``, ...) to its value, ``ini`` is the resolved
    INI text that ``gradflow --config`` accepts to repeat the run."""
    options: dict = field(default_factory=dict)
    ini: str = ""


def read_config(f: h5py.File) -> Config:
    """The attributes of /config (without ``description``) and the text of /config/ini."""
    if "config" not in f:
        return Config()
    g = f["config"]
    opts = {k: _plain(v) for k, v in g.attrs.items() if k != "description"}
    ini = _text(g["ini"][()]) if "ini" in g else ""
    return Config(opts, ini)


def flow_attrs(f: h5py.File) -> dict:
    """The attributes of /flow (norm_A, norm_A_columns, w_max, lambda, fprime_max_theory,
    fprime_max_measured, ...) as plain values; empty when the file has no /flow."""
    if "flow" not in f:
        return {}
    return {k: _plain(v) for k, v in f["flow"].attrs.items() if k != "description"}


def describe(f: h5py.File) -> list:
    """One entry per dataset of the file: dict(path, shape, dtype, axes, description)."""
    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out.append({"path": "/" + name, "shape": list(obj.shape), "dtype": str(obj.dtype),
                        "axes": axis_names(obj) if obj.ndim else [],
                        "description": _text(obj.attrs.get("description", ""))})

    f.visititems(visit)
    return out


# ---------------------------------------------------------------- bounded reading


def budget_bytes(max_memory_mb: float) -> int:
    """A byte budget from a size in MiB (at least one float64)."""
    return max(8, int(max_memory_mb * ONE_MIB))


@dataclass(frozen=True)
class Slab:
    """One block of /flow/G: ``data`` = G[target, lags, rows, cols] (a 3-D array of
    shape (len(lags), len(rows), len(cols)) for the one target index ``target``).
    ``rows`` and ``cols`` index /flow/units_v and /flow/units_k; they cover all of
    them unless a single lag of one target does not fit the budget."""
    target: int
    lags: slice
    rows: slice
    cols: slice
    data: np.ndarray


def plan_slabs(shape, itemsize: int, max_bytes: int, lag_align: int = 1):
    """The blocks iter_slabs reads for a 4-D dataset of ``shape`` (targets, lags, V, K):
    yields (target, lags, rows, cols) slices, each block at most ``max_bytes``.

    Whole lags of one target are grouped (rounded down to a multiple of
    ``lag_align``, e.g. the chunk height, when that still leaves a block); when
    one lag is larger than the budget, its V rows are split, and when one row
    is, its K columns too."""
    nt, nl, nv, nk = (int(s) for s in shape)
    if max_bytes < itemsize:
        raise ValueError(f"byte budget {max_bytes} is smaller than one element ({itemsize} bytes)")
    per_lag = nv * nk * itemsize
    if nt == 0 or nl == 0 or nv == 0 or nk == 0:
        return
    if per_lag <= max_bytes:
        step = min(nl, max_bytes // per_lag)
        if lag_align > 1 and step >= lag_align:
            step -= step % lag_align
        for i in range(nt):
            for l0 in range(0, nl, step):
                yield i, slice(l0, min(nl, l0 + step)), slice(0, nv), slice(0, nk)
        return
    per_row = nk * itemsize
    if per_row <= max_bytes:
        rstep = max_bytes // per_row
        for i in range(nt):
            for l in range(nl):
                for r0 in range(0, nv, rstep):
                    yield i, slice(l, l + 1), slice(r0, min(nv, r0 + rstep)), slice(0, nk)
        return
    cstep = max_bytes // itemsize
    for i in range(nt):
        for l in range(nl):
            for r in range(nv):
                for c0 in range(0, nk, cstep):
                    yield i, slice(l, l + 1), slice(r, r + 1), slice(c0, min(nk, c0 + cstep))


def iter_slabs(dset: h5py.Dataset, max_bytes: int) -> Iterator[Slab]:
    """Reads a 4-D (target, lag, V, K) dataset such as /flow/G block by block; each
    yielded Slab holds at most ``max_bytes`` of data, and together they cover the
    dataset exactly once (NaN entries, where t_i - L < 1, included)."""
    if dset.ndim != 4:
        raise ValueError(f"{dset.name}: expected 4 dimensions (target, lag, V, K), got {dset.ndim}")
    itemsize = np.dtype(np.float64).itemsize
    align = dset.chunks[1] if dset.chunks else 1
    for i, lags, rows, cols in plan_slabs(dset.shape, itemsize, max_bytes, align):
        data = np.empty((lags.stop - lags.start, rows.stop - rows.start, cols.stop - cols.start))
        dset.read_direct(data, np.s_[i, lags, rows, cols])
        yield Slab(i, lags, rows, cols, data)


def iter_flow_slabs(f: h5py.File, max_bytes: int, name: str = "flow/G") -> Iterator[Slab]:
    """iter_slabs over /flow/G (or /flow/J with name="flow/J").  Raises KeyError with a
    clear message when the file has no such dataset (run with --no-flow-tensor)."""
    if name not in f:
        raise KeyError(f"{f.filename}: no /{name} (written with --no-flow-tensor, or no flow targets)")
    return iter_slabs(f[name], max_bytes)


def rows_per_block(row_bytes: int, max_bytes: int) -> int:
    """How many rows of ``row_bytes`` fit the budget (at least 1)."""
    return max(1, max_bytes // max(1, row_bytes))


def iter_rows(dset: h5py.Dataset, max_bytes: int, cols: slice = slice(None)):
    """Reads a 2-D dataset (e.g. /forward/a, [T][n]) in blocks of whole rows: yields
    (row0, block) with block = dset[row0:row0+len(block), cols] as float64 of at most
    ``max_bytes`` (at least one row)."""
    nrows, ncols = dset.shape
    width = len(range(*cols.indices(ncols)))
    step = rows_per_block(width * 8, max_bytes)
    for r0 in range(0, nrows, step):
        yield r0, np.asarray(dset[r0:min(nrows, r0 + step), cols], dtype=np.float64)


def iter_columns(dset: h5py.Dataset, max_bytes: int):
    """Reads a 2-D dataset in blocks of whole columns: yields (col0, block) with
    block = dset[:, col0:col0+block.shape[1]] of at most ``max_bytes`` (at least one column)."""
    nrows, ncols = dset.shape
    step = rows_per_block(nrows * 8, max_bytes)
    for c0 in range(0, ncols, step):
        yield c0, np.asarray(dset[:, c0:min(ncols, c0 + step)], dtype=np.float64)


# ---------------------------------------------------------------- derived numbers


def fit_decay_rate(y) -> float:
    """Least-squares slope of y[L] against the lag L = 0, 1, ... over the finite entries:
    the decay rate of log10 ||G|| per step, exactly as gradflow prints it
    (gf_flow_fit_slope); NaN with fewer than two finite entries."""
    y = np.asarray(y, dtype=np.float64)
    x = np.arange(len(y), dtype=np.float64)
    ok = np.isfinite(y)
    n = ok.sum()
    if n < 2:
        return math.nan
    x, y = x[ok], y[ok]
    den = n * (x * x).sum() - x.sum() ** 2
    return float((n * (x * y).sum() - x.sum() * y.sum()) / den) if den > 0 else math.nan


def first_lag_below(y, decades: float = 16.0) -> Optional[int]:
    """The first lag L >= 1 where y[L] - y[0] < -decades (the flow fell below
    10^-decades of its lag-0 value), as gradflow prints it; None if never."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or not np.isfinite(y[0]):
        return None
    with np.errstate(invalid="ignore"):
        hit = np.nonzero(y[1:] - y[0] < -decades)[0]
    return int(hit[0]) + 1 if len(hit) else None


def valid_lags(target_time: int, n_lags: int) -> int:
    """How many lags 0, 1, ... of target time t are recorded (t - L >= 1)."""
    return int(min(n_lags, target_time))


def log10_safe(x: float) -> float:
    """log10 of a non-negative number, -inf for 0, NaN for NaN."""
    return math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def has_train(f: h5py.File) -> bool:
    """True when the file has a /train group (written by `gradflow train`; see train_kind)."""
    return "train" in f


# ---------------------------------------------------------------- training (/train)
#
# `gradflow train` writes one of two layouts (README, section Training):
#   a run    /train attrs task, method, lag, T, threshold, success, success_at, epochs,
#            guesses, final_test_error; per-epoch loss[E], grad_norm[E], test_error[E],
#            log10_lag_share[E][T], log10_flow[E][T] (scales /train/epoch, /train/lag;
#            absent for --method guess, which has no epochs); final W, U, b.  The
#            initial weights are /model.
#   a sweep  /train attrs task, method, threshold; /train/sweep with success[NL][K],
#            success_at[NL][K], final_test_error[NL][K], success_rate[NL] (scales
#            /train/sweep/lags and /train/sweep/trial).
# Neither has /forward, /backward, /flow or /lag.

TRAIN_CURVES = ("loss", "grad_norm", "test_error")
"""The per-epoch 1-D datasets of a training run."""

TRAIN_MAPS = ("log10_lag_share", "log10_flow")
"""The per-epoch [E][T] datasets of a training run (row: epoch, column: lag L = 0..T-1)."""


def train_kind(f: h5py.File) -> Optional[str]:
    """'sweep' when the file has /train/sweep, 'run' when /train holds one training run
    (its attribute ``method``), 'unknown' for a /train group of neither kind, None
    without /train."""
    if "train" not in f:
        return None
    g = f["train"]
    if "sweep" in g:
        return "sweep"
    if "method" in g.attrs and ("W" in g or "epochs" in g.attrs):
        return "run"
    return "unknown"


def train_attrs(f: h5py.File) -> dict:
    """The attributes of /train (task, method, lag, T, threshold, success, ...) as plain
    values, without ``description``; empty without /train."""
    if "train" not in f:
        return {}
    return {k: _plain(v) for k, v in f["train"].attrs.items() if k != "description"}


def train_epochs(f: h5py.File) -> Optional[np.ndarray]:
    """The epoch numbers (1-based) of a run's per-epoch datasets: the scale /train/epoch,
    or 1..E from /train/loss; None when the run has no per-epoch data (--method guess)."""
    if "train/loss" not in f:
        return None
    ep = axis_values(f["train/loss"], 0)
    if ep is None:
        ep = np.arange(1, f["train/loss"].shape[0] + 1)
    return np.asarray(ep, dtype=np.int64)


@dataclass(frozen=True)
class Curve:
    """A 1-D per-epoch dataset read in bounded blocks: exact statistics over all entries,
    and at most ``max_points`` of them (every ``stride``-th index and the last) to draw.

    ``index`` holds 0-based positions; ``first``/``last`` are the values at 0 and n-1;
    ``min``/``max`` and their positions are over the finite entries (NaN when none);
    ``first_below`` is the first position whose value is below ``threshold`` (None when
    none, or when no threshold was given)."""
    n: int
    stride: int
    index: np.ndarray
    values: np.ndarray
    first: float
    last: float
    min: float
    argmin: int
    max: float
    argmax: int
    first_below: Optional[int] = None


def read_curve(dset: h5py.Dataset, max_bytes: int, max_points: int = 20000,
               threshold: Optional[float] = None) -> Curve:
    """Reads a 1-D dataset (e.g. /train/loss) in blocks of at most ``max_bytes``."""
    n = int(dset.shape[0])
    stride = max(1, math.ceil(n / max(1, max_points)))
    step = rows_per_block(8, max_bytes)
    idx, vals = [], []
    lo, hi, alo, ahi, below = math.inf, -math.inf, -1, -1, None
    first = last = math.nan
    for i0 in range(0, n, step):
        blk = np.asarray(dset[i0:min(n, i0 + step)], dtype=np.float64)
        if i0 == 0 and blk.size:
            first = float(blk[0])
        if blk.size:
            last = float(blk[-1])
        pos = np.arange(i0, i0 + blk.size)
        keep = (pos % stride == 0) | (pos == n - 1)
        idx.append(pos[keep])
        vals.append(blk[keep])
        fin = np.isfinite(blk)
        if fin.any():
            b = np.where(fin, blk, np.inf)
            k = int(np.argmin(b))
            if b[k] < lo:
                lo, alo = float(b[k]), i0 + k
            b = np.where(fin, blk, -np.inf)
            k = int(np.argmax(b))
            if b[k] > hi:
                hi, ahi = float(b[k]), i0 + k
        if threshold is not None and below is None:
            with np.errstate(invalid="ignore"):
                hit = np.nonzero(blk < threshold)[0]
            if hit.size:
                below = i0 + int(hit[0])
    return Curve(n, stride,
                 np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64),
                 np.concatenate(vals) if vals else np.zeros(0),
                 first, last, lo if alo >= 0 else math.nan, alo,
                 hi if ahi >= 0 else math.nan, ahi, below)


def log10_fractions(y) -> np.ndarray:
    """log10 of each entry's share of the row total, for a row of log10 values (e.g. one
    epoch of /train/log10_lag_share): y - log10 sum 10^y, computed without overflow;
    -inf where y is -inf or NaN (a zero share); all -inf when the total is 0."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    out = np.full(y.shape, -math.inf)
    if not ok.any():
        return out
    top = float(y[ok].max())
    total = float(np.sum(10.0 ** (y[ok] - top)))
    out[ok] = y[ok] - top - math.log10(total)
    return out


def lag_reaching(frac_log10, q: float = 0.99) -> Optional[int]:
    """The smallest lag L by which the shares 10^frac_log10[0..L] (summing to 1) reach
    ``q``; None when the row has no share."""
    c = np.where(np.isfinite(frac_log10), 10.0 ** np.asarray(frac_log10, dtype=np.float64), 0.0)
    if not c.sum() > 0:
        return None
    cum = np.cumsum(c) / c.sum()
    return int(np.argmax(cum >= q - 1e-12))


@dataclass(frozen=True)
class Sweep:
    """/train/sweep: ``success``, ``success_at`` and ``final_test_error`` are [NL][K]
    (lag, trial); ``success_rate`` [NL] as the program wrote it; ``unit`` is what
    success_at counts: 'epochs' (bptt) or 'guesses' (guess)."""
    task: str
    method: str
    threshold: float
    lags: np.ndarray
    trials: np.ndarray
    success: np.ndarray
    success_at: np.ndarray
    final_test_error: np.ndarray
    success_rate: np.ndarray

    @property
    def unit(self) -> str:
        return "guesses" if self.method == "guess" else "epochs"


def read_sweep(f: h5py.File) -> Sweep:
    """Reads /train/sweep whole (NL x K numbers, one per training run).  Raises KeyError
    with a message naming the file when it has none."""
    if "train/sweep" not in f:
        raise KeyError(f"{f.filename}: no /train/sweep (not a `gradflow train --sweep-lag` file)")
    g = f["train/sweep"]
    a = train_attrs(f)
    succ = np.asarray(g["success"][()], dtype=np.float64)
    nl, k = succ.shape
    lags = (np.asarray(g["lags"][()]) if "lags" in g else axis_values(g["success"], 0))
    trials = (np.asarray(g["trial"][()]) if "trial" in g else np.arange(k))
    rate = (np.asarray(g["success_rate"][()], dtype=np.float64) if "success_rate" in g
            else succ.mean(axis=1))
    return Sweep(str(a.get("task", "")), str(a.get("method", "")),
                 float(a.get("threshold", math.nan)),
                 np.asarray(lags if lags is not None else np.arange(nl), dtype=np.int64),
                 np.asarray(trials, dtype=np.int64), succ,
                 np.asarray(g["success_at"][()], dtype=np.float64),
                 np.asarray(g["final_test_error"][()], dtype=np.float64)
                 if "final_test_error" in g else np.full(succ.shape, math.nan), rate)


def wilson_interval(k: float, n: int, z: float = 1.96):
    """The Wilson score interval (default 95%) of a success rate k/n; (NaN, NaN) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def sweep_table(sw: Sweep) -> list:
    """One dict per lag of a sweep: lag, trials, solved, success_rate (the file's),
    success_rate_recomputed (mean of success), its 95% Wilson interval, and over the
    solved trials the mean, median, min and max of success_at; mean final test error."""
    out = []
    k = sw.success.shape[1]
    for i, L in enumerate(sw.lags):
        ok = sw.success[i] > 0.5
        at = sw.success_at[i][ok]
        solved = int(ok.sum())
        lo, hi = wilson_interval(solved, k)
        out.append({
            "lag": int(L), "trials": int(k), "solved": solved,
            "success_rate": float(sw.success_rate[i]),
            "success_rate_recomputed": solved / k if k else math.nan,
            "success_rate_95ci": [lo, hi],
            "mean_success_at": float(at.mean()) if at.size else None,
            "median_success_at": float(np.median(at)) if at.size else None,
            "min_success_at": float(at.min()) if at.size else None,
            "max_success_at": float(at.max()) if at.size else None,
            "mean_final_test_error": float(np.nanmean(sw.final_test_error[i]))
            if np.isfinite(sw.final_test_error[i]).any() else None})
    return out
