#!/usr/bin/python3
"""compare.py — the error-flow decay across a sweep of gradflow runs.

Usage::

    /usr/bin/python3 analysis/compare.py FILES... -o DIR [--allow-incomplete] [--max-memory-mb N]

For each file (format gradflow/1) it fits the decay rate of every flow target, the
least-squares slope of /flow/log10_norm_fro against the lag over the finite entries
(the fit gradflow prints), and averages it over the targets.  It writes into DIR:

* ``decay_vs_theory.png`` the mean measured decay rate (log10 per step; bars: the range
  over targets) against lambda = n w_max f'max (left) and against log10(f'max ||W||_A)
  (right), with the theory: rate <= log10(f'max ||W||_A) (SPEC §4), the line y = x on
  the right, and log10(lambda) >= log10(f'max ||W||_A) on the left;
* ``summary.json`` per file: n, T, activation, w-max, lambda, the norms, the bound rates,
  the per-target and mean rates, whether the bound holds; and a least-squares line of the
  mean rate against the bound rate across the sweep;
* ``index.html`` the figure with its caption, a table of the files, and notes.

* ``success_vs_lag.png`` when files are sweeps of ``gradflow train --sweep-lag`` (with
  /train/sweep), e.g. a BPTT sweep and a weight-guessing sweep of the same task: the success
  rate against the lag for each file side by side (95% Wilson intervals), and the epochs or
  guesses the solved trials needed; summary.json's ``train`` holds each sweep's numbers.
  Single training runs are listed, not drawn; files without /train are noted.

Training files have no /flow; they are left out of the decay comparison with a note.

Files are read with gradflow_io: the format and completeness are checked (exit 65 with
a message naming the file otherwise), and the [N_t][L+1] norms are read in blocks of at
most --max-memory-mb.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import sys

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gradflow_io as gio  # noqa: E402
from report import STYLE, clean_json, draw_sweeps, fmt  # noqa: E402

DEFAULT_MAX_MEMORY_MB = 256


def file_rates(path, allow_incomplete: bool, budget: int) -> dict:
    """The numbers of one run: sizes, norms, lambda, bound rates and fitted decay rates.
    Returns a dict with 'rates' None when the file has no /flow."""
    with gio.open_file(path, allow_incomplete=allow_incomplete) as f:
        cfg = gio.read_config(f).options
        fa = gio.flow_attrs(f)
        rec = {"file": os.path.abspath(path), "label": os.path.splitext(os.path.basename(path))[0],
               "complete": gio.is_complete(f),
               "n": int(f["model/W"].shape[0]) if "model/W" in f else cfg.get("units"),
               "T": int(f["forward/a"].shape[0]) if "forward/a" in f else cfg.get("steps"),
               "activation": cfg.get("activation"), "init": cfg.get("init"),
               "config_w_max": cfg.get("w-max"), "config_gain": cfg.get("gain"),
               "seed": cfg.get("seed"), "train": gio.has_train(f)}
        for key in ("lambda", "norm_A", "norm_A_columns", "w_max", "fprime_max_theory",
                    "fprime_max_measured"):
            rec[key] = fa.get(key)
        if "flow/log10_norm_fro" not in f or not fa:
            rec.update(targets=None, rates=None, decay_rate_mean=None)
            return rec
        targets = np.asarray(f["flow/targets"][()], dtype=np.int64)
        ds = f["flow/log10_norm_fro"]
        nl = ds.shape[1]
        rates = []
        for r0, blk in gio.iter_rows(ds, budget):
            for k, y in enumerate(blk):
                rates.append(gio.fit_decay_rate(y[:gio.valid_lags(int(targets[r0 + k]), nl)]))
    r = np.array(rates, dtype=float)
    fin = r[np.isfinite(r)]
    rec["targets"] = targets.tolist()
    rec["rates"] = rates
    rec["decay_rate_mean"] = float(fin.mean()) if fin.size else None
    rec["decay_rate_min"] = float(fin.min()) if fin.size else None
    rec["decay_rate_max"] = float(fin.max()) if fin.size else None
    rec["bound_rate_theory"] = gio.log10_safe(rec["fprime_max_theory"] * rec["norm_A"])
    rec["bound_rate_measured"] = gio.log10_safe(rec["fprime_max_measured"] * rec["norm_A"])
    rec["bound_rate_columns"] = gio.log10_safe(rec["fprime_max_theory"] * rec["norm_A_columns"])
    rec["log10_lambda"] = gio.log10_safe(rec["lambda"])
    rec["bound_holds"] = (bool(fin.max() <= rec["bound_rate_theory"] + 1e-9) if fin.size else None)
    return rec


def file_train(path, allow_incomplete: bool):
    """The training content of one file: None without /train; else a dict with kind
    ('run', 'sweep' or 'unknown'), the /train attributes, and for a sweep its Sweep."""
    with gio.open_file(path, allow_incomplete=allow_incomplete) as f:
        kind = gio.train_kind(f)
        if kind is None:
            return None
        rec = {"file": os.path.abspath(path),
               "label": os.path.splitext(os.path.basename(path))[0], "kind": kind,
               "attrs": gio.train_attrs(f)}
        if kind == "sweep":
            try:
                rec["sweep"] = gio.read_sweep(f)
            except KeyError as exc:
                if gio.is_complete(f):
                    raise
                rec.update(kind="incomplete", error=str(exc))
        return rec


def sweep_record(tr) -> dict:
    """summary.json's entry of one sweep."""
    sw = tr["sweep"]
    tab = gio.sweep_table(sw)
    return {"file": tr["file"], "label": tr["label"], "task": sw.task, "method": sw.method,
            "threshold": sw.threshold, "success_at_unit": sw.unit,
            "trials": int(sw.success.shape[1]), "lags": sw.lags.tolist(),
            "success_rate": sw.success_rate.tolist(),
            "mean_success_at": [r["mean_success_at"] for r in tab], "per_lag": tab}


def success_figure(trains, outdir) -> str:
    """success_vs_lag.png: every sweep's success rate (and cost) against the lag."""
    tasks = sorted(set(t["sweep"].task for t in trains))
    entries = [(f"{t['label']} ({t['sweep'].method}, {t['sweep'].success.shape[1]} trials)",
                t["sweep"]) for t in trains]
    with plt.rc_context(STYLE):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(13, 5.0))
        draw_sweeps(a0, a1, entries)
        fig.suptitle(f"Success against the lag, {len(trains)} sweeps side by side: task "
                     f"{', '.join(tasks)}")
        fig.tight_layout()
        name = "success_vs_lag.png"
        fig.savefig(os.path.join(outdir, name), bbox_inches="tight")
        plt.close(fig)
    return name


def figure(recs, outdir) -> str:
    """decay_vs_theory.png: measured mean rate against lambda and against the bound rate."""
    ok = sorted((r for r in recs if r["decay_rate_mean"] is not None), key=lambda r: r["lambda"])
    lam = np.array([r["lambda"] for r in ok])
    mean = np.array([r["decay_rate_mean"] for r in ok])
    err = np.array([[m - r["decay_rate_min"] for m, r in zip(mean, ok)],
                    [r["decay_rate_max"] - m for m, r in zip(mean, ok)]])
    bth = np.array([r["bound_rate_theory"] for r in ok])
    bme = np.array([r["bound_rate_measured"] for r in ok])
    acts = sorted(set(str(r["activation"]) for r in ok))
    markers = dict(zip(acts, "osD^vP*X"))
    label_points = len(ok) <= 8
    with plt.rc_context(STYLE):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(13, 5.4), gridspec_kw={"width_ratios": [1.25, 1]})
        # left: against lambda; the bound rates of each activation joined in lambda order
        for k, act in enumerate(acts):
            sel = np.array([str(r["activation"]) == act for r in ok])
            first = k == 0
            a0.plot(lam[sel], bth[sel], color="black", ls="--", lw=1.3, marker=markers[act],
                    mfc="white", ms=6, label="bound log$_{10}$(f'max‖W‖$_A$), theory f'max"
                    if first else None)
            if np.any(np.abs(bme[sel] - bth[sel]) > 1e-3):
                a0.plot(lam[sel], bme[sel], color="tab:red", ls=":", lw=2.0,
                        label="bound with measured f'max" if first else None)
            a0.errorbar(lam[sel], mean[sel], yerr=err[:, sel], fmt=markers[act], color="tab:blue",
                        ms=7, capsize=3, label=f"measured, mean over targets ({act})")
        if np.all(lam > 0):
            xs = np.array([lam.min(), lam.max()])
            a0.plot(xs, np.log10(xs), color="grey", ls="-.", lw=1.2,
                    label="log$_{10}$ λ  (≥ the bound: ‖W‖$_A$ ≤ n w$_{max}$)")
        a0.axvline(1.0, color="tab:green", ls=":", lw=1.4, label="λ = 1")
        a0.axhline(0.0, color="grey", lw=0.8, alpha=0.6)
        if np.all(lam > 0):
            a0.set_xscale("log")
            if np.log10(lam.max() / lam.min()) < 2.5:   # few decades: label 2x and 5x too
                a0.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
                a0.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                a0.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a0.set_xlabel("λ = n w$_{max}$ f'max  (dimensionless)")
        a0.set_ylabel("decay rate of log$_{10}$‖G(t−L,t)‖$_F$  (per time step)")
        a0.set_title("Decay rate against λ")
        a0.legend(loc="upper left", fontsize=8.5)
        # right: against the bound rate
        lo = float(min(bth.min(), mean.min())) - 0.2
        hi = float(max(bth.max(), mean.max())) + 0.35
        xs = np.array([lo, hi])
        a1.fill_between(xs, xs, hi, color="tab:red", alpha=0.08, label="excluded by the bound")
        a1.plot(xs, xs, color="black", ls="--", lw=1.4, label="rate = log$_{10}$(f'max‖W‖$_A$)")
        for act in acts:
            sel = np.array([str(r["activation"]) == act for r in ok])
            a1.errorbar(bth[sel], mean[sel], yerr=err[:, sel], fmt=markers[act], color="tab:blue",
                        ms=7, capsize=3, label=f"measured ({act})")
        if label_points:
            for x, y, r in zip(bth, mean, ok):
                a1.annotate(r["label"], (x, y), textcoords="offset points", xytext=(7, -4),
                            fontsize=8)
        a1.axhline(0.0, color="grey", lw=0.8, alpha=0.6)
        a1.axvline(0.0, color="grey", lw=0.8, alpha=0.6)
        a1.set_xlim(lo, hi)
        a1.set_ylim(lo, hi)
        a1.set_aspect("equal", adjustable="box")
        a1.set_xlabel("log$_{10}$(f'max ‖W‖$_A$)  (per time step, theory f'max)")
        a1.set_ylabel("measured decay rate  (per time step)")
        a1.set_title("Measured rate against the bound (SPEC §4)")
        a1.legend(loc="upper left", fontsize=8.5)
        fig.suptitle(f"Error-flow decay across {len(ok)} runs (bars: range over flow targets)")
        fig.tight_layout()
        name = "decay_vs_theory.png"
        fig.savefig(os.path.join(outdir, name), bbox_inches="tight")
        plt.close(fig)
    return name


def compare(paths, outdir, allow_incomplete=False, max_memory_mb=DEFAULT_MAX_MEMORY_MB) -> dict:
    """Reads every file, writes the figure, summary.json and index.html; returns the summary."""
    budget = gio.budget_bytes(max_memory_mb)
    recs = [file_rates(p, allow_incomplete, budget) for p in paths]
    os.makedirs(outdir, exist_ok=True)
    notes, figures = [], []
    trains = [file_train(p, allow_incomplete) for p in paths]
    for r, tr in zip(recs, trains):
        if r["rates"] is None and tr is not None:
            notes.append(f"{r['file']}: a training file (/train, no /flow); left out of the "
                         "decay comparison.")
        elif r["rates"] is None:
            notes.append(f"{r['file']}: no /flow (--flow-targets none or incomplete); left out.")
        elif r["bound_holds"] is False:
            notes.append(f"{r['file']}: a fitted decay rate exceeds the bound rate "
                         f"{r['bound_rate_theory']:.4g}: check the run.")
        if not r["complete"]:
            notes.append(f"{r['file']}: INCOMPLETE file (read with --allow-incomplete).")
    good = [r for r in recs if r["decay_rate_mean"] is not None]
    summary = {"files": recs, "figures": figures, "notes": notes}
    if len(good) >= 2:
        x = np.array([r["bound_rate_theory"] for r in good])
        y = np.array([r["decay_rate_mean"] for r in good])
        if np.ptp(x) > 0:
            slope, icpt = np.polyfit(x, y, 1)
            summary["fit_mean_rate_vs_bound_rate"] = {"slope": float(slope), "intercept": float(icpt)}
    if good:
        figures.append(figure(good, outdir))
    else:
        notes.append("No file has flow norms" + (" (training files have none)" if any(trains)
                                                 else "") + ": no decay figure.")
    with_train = [t for t in trains if t is not None]
    sweeps = [t for t in with_train if t["kind"] == "sweep" and t["sweep"].lags.size]
    if with_train:
        runs = [{"file": t["file"], "label": t["label"],
                 **{k: t["attrs"].get(k) for k in ("task", "method", "lag", "success",
                                                    "success_at", "epochs", "guesses",
                                                    "final_test_error")}}
                for t in with_train if t["kind"] == "run"]
        summary["train"] = {"files_with_train": [t["file"] for t in with_train],
                            "compared": bool(sweeps), "figure": None,
                            "sweeps": [sweep_record(t) for t in sweeps], "runs": runs}
        if sweeps:
            summary["train"]["figure"] = success_figure(sweeps, outdir)
            figures.append(summary["train"]["figure"])
            tasks = set(t["sweep"].task for t in sweeps)
            if len(tasks) > 1:
                notes.append(f"The sweeps are of different tasks ({', '.join(sorted(tasks))}): "
                             "their success rates are not directly comparable.")
            if len(sweeps) == 1:
                notes.append("Only one sweep: nothing to set it beside.")
        else:
            notes.append("No file is a sweep (/train/sweep): success rates are not compared.")
        for t in with_train:
            if t["kind"] == "incomplete":
                notes.append(f"{t['file']}: the sweep is incomplete ({t['error']}); left out.")
        if runs:
            notes.append(f"{len(runs)} single training run(s) are listed in summary.json "
                         "(train.runs), not drawn: success against the lag needs sweeps.")
    else:
        notes.append("No file has a /train group: success rates are not compared.")
        summary["train"] = None
    with open(os.path.join(outdir, "summary.json"), "w") as out:
        json.dump(clean_json(summary), out, indent=2, allow_nan=False)
        out.write("\n")
    write_html(os.path.join(outdir, "index.html"), summary)
    return clean_json(summary)


def write_html(path, summary):
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>gradflow sweep</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "img{max-width:100%}.note{color:#8a4b00}</style></head><body>",
             f"<h1>gradflow sweep: {len(summary['files'])} runs</h1>",
             "<p>Numbers as in <a href='summary.json'>summary.json</a>.</p>"]
    for name in [n for n in summary["figures"] if n == "decay_vs_theory.png"]:
        parts.append(
            f"<figure><img src='{e(name)}' alt='decay rate against theory'><figcaption>"
            "Each point is one run: the least-squares slope of log10‖G(t−L,t)[V,K]‖_F against the "
            "lag (the fit gradflow prints), averaged over the run's flow targets; bars give the "
            "range over targets. Left: against λ = n·w_max·f'max (log scale), with the bound rate "
            "log10(f'max‖W‖_A) of each run (dashed) and log10 λ, which is never below it "
            "(dash-dot); λ < 1 guarantees decay. Right: against the bound rate itself; the bound "
            "n(f'max‖W‖_A)^L of SPEC §4 allows no point above the diagonal.</figcaption></figure>")
    tr = summary.get("train") or {}
    if tr.get("figure"):
        parts.append(
            f"<figure><img src='{e(tr['figure'])}' alt='success rate against lag'><figcaption>"
            "Success rates side by side: for each sweep file (gradflow train --sweep-lag), the "
            "fraction of its trials (independent seeds) that solved the task at each lag, with "
            "95% Wilson intervals (left), and the epochs (BPTT) or guesses (weight guessing) "
            "the solved trials needed: single trials as faint points, their mean as a line, on "
            "a log scale (right). Lags are in time steps between the information and the "
            "target.</figcaption></figure>")
        parts.append("<table><tr><th>file</th><th>task</th><th>method</th><th>trials</th>"
                     "<th>lag: success rate (mean cost of the solved)</th></tr>")
        for r in tr["sweeps"]:
            cells = ", ".join(f"{p['lag']}: {100 * p['success_rate']:.3g}% "
                              f"({fmt(p['mean_success_at'])} {r['success_at_unit']})"
                              for p in r["per_lag"])
            parts.append(f"<tr><td>{e(r['label'])}</td><td>{e(r['task'])}</td>"
                         f"<td>{e(r['method'])}</td><td>{r['trials']}</td><td>{e(cells)}</td></tr>")
        parts.append("</table>")
    fit = summary.get("fit_mean_rate_vs_bound_rate")
    if fit:
        parts.append(f"<p>Across the sweep: mean rate ≈ {fit['slope']:.4g} × bound rate "
                     f"{fit['intercept']:+.4g}.</p>")
    parts.append("<table><tr><th>file</th><th>n</th><th>T</th><th>activation</th><th>w-max</th>"
                 "<th>λ</th><th>‖W‖_A</th><th>bound rate</th><th>mean rate</th>"
                 "<th>rate range</th><th>bound holds</th></tr>")
    for r in summary["files"]:
        parts.append(
            f"<tr><td>{e(r['label'])}</td><td>{r['n']}</td><td>{r['T']}</td>"
            f"<td>{e(str(r['activation']))}</td><td>{fmt(r['config_w_max'])}</td>"
            f"<td>{fmt(r['lambda'])}</td><td>{fmt(r['norm_A'])}</td>"
            f"<td>{fmt(r.get('bound_rate_theory'))}</td><td>{fmt(r['decay_rate_mean'])}</td>"
            f"<td>{fmt(r.get('decay_rate_min'))} .. {fmt(r.get('decay_rate_max'))}</td>"
            f"<td>{r.get('bound_holds')}</td></tr>")
    parts.append("</table>")
    if summary["notes"]:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li class='note'>{e(n)}</li>" for n in summary["notes"]]
        parts.append("</ul>")
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(parts) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="compare.py", description="Decay rate of the error flow "
                                 "against the theory across gradflow runs.")
    ap.add_argument("files", nargs="+", help="gradflow output files")
    ap.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    ap.add_argument("--allow-incomplete", action="store_true",
                    help="read files whose root attribute 'complete' is not 1")
    ap.add_argument("--max-memory-mb", type=float, default=DEFAULT_MAX_MEMORY_MB, metavar="N",
                    help=f"largest block read at once, in MiB (default {DEFAULT_MAX_MEMORY_MB})")
    args = ap.parse_args(argv)
    if not args.max_memory_mb > 0:
        ap.error("--max-memory-mb must be > 0")
    try:
        summary = compare(args.files, args.output, args.allow_incomplete, args.max_memory_mb)
    except gio.GradflowFileError as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 66 if "no such file" in str(exc) or "not a readable" in str(exc) else 65
    except OSError as exc:
        print(f"compare.py: error: {args.output}: {exc}", file=sys.stderr)
        return 73
    print(f"compare.py: compared {len(summary['files'])} files; wrote "
          f"{', '.join(summary['figures'] + ['summary.json', 'index.html'])} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
