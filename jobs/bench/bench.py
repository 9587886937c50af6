#!/usr/bin/python3
"""bench.py — runs gradflow's performance cases and prints one markdown table.

Called by jobs/bench.sh (which builds the Release copy and the helpers first);
see the header of jobs/bench.sh for the cases, the options and the environment.
Every figure is set beside a limit or a peer measured in the same loop
iteration (this machine is noisy), each iteration runs every case once, and
the table gives medians with min-max over the R iterations; the ratio column
is the median of the per-iteration ratios (paired, so that a slow spell that
hits both sides of one iteration cancels).

Standard library only; /usr/bin/python3.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- sizes ----

def sizes(quick):
    if quick:
        return dict(c1_n=[256, 512], c1_lags=64, c6_n=512,
                    c2_n=1024, c2_k=8, c2_lags=63, c2_targets=2,
                    c3_n=1024, c3_T=128, triad_mib=256, dgemm_calls=5)
    c1_n = [int(x) for x in os.environ.get("GF_BENCH_C1_N", "1024,2048").split(",") if x.strip()]
    return dict(c1_n=c1_n, c1_lags=64, c6_n=2048,
                c2_n=4096, c2_k=8, c2_lags=255,
                c2_targets=int(os.environ.get("GF_BENCH_C2_TARGETS", "24")),
                # as many dgemm calls as the flow makes products: on a noisy host the
                # reference then averages over as long a stretch as the figure it is set beside
                c3_n=4096, c3_T=512, triad_mib=512, dgemm_calls=64)


# --------------------------------------------------------------- running ----

class Bench:
    def __init__(self, args):
        self.args = args
        self.gradflow = os.path.join(args.build, "gradflow")
        self.helpers = args.helpers
        self.tmp = os.path.join(args.out, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_rmaps_base_oversubscribe="1", OPENBLAS_NUM_THREADS="1",
                        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        # mpirun binds rank 0 of a 1- or 2-rank job to core 0 (Open MPI's default,
        # --report-bindings); the single-threaded references run on core 0 too
        self.pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        self.log = open(os.path.join(args.out, "log.txt"), "w")

    @staticmethod
    def busy_s():
        """CPU seconds all cores have been busy (steal included) since boot."""
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def sh(self, cmd, check=True):
        self.log.write("$ " + " ".join(cmd) + "\n")
        self.log.flush()
        # every timed command starts with no dirty pages of an earlier one still in
        # flight: whoever writes next would otherwise pay for the last one's flush
        os.sync()
        b0, c0 = self.busy_s(), os.times()
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        wall = time.perf_counter() - t0
        b1, c1 = self.busy_s(), os.times()
        ours = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        # cores kept busy by other processes (and the hypervisor's steal) meanwhile
        self.others = max(0.0, (b1 - b0) - ours) / wall if wall > 0 else 0.0
        self.log.write(p.stdout + f"# rc={p.returncode} wall={wall:.3f}s others={self.others:.2f} cores\n")
        self.log.flush()
        if check and p.returncode:
            sys.stderr.write(p.stdout[-4000:])
            raise SystemExit(f"bench: command failed (rc {p.returncode}): {' '.join(cmd)}")
        return p.stdout, wall

    # gradflow ---------------------------------------------------------
    def gradflow_run(self, opts, np_=1, out=None, extra_mpi=()):
        out = out or os.path.join(self.tmp, "gf.h5")
        cmd = ["mpirun", "-np", str(np_), *extra_mpi, self.gradflow, *opts, "--quiet", "--force",
               "-o", out]
        text, wall = self.sh(cmd)
        r = {"wall_s": wall, "file": out, "file_bytes": os.path.getsize(out), "others_cores": self.others}
        for name in ("forward", "backward", "flow", "write"):
            m = re.search(rf"^\s*{name}\s+([\d.]+) s min\s+([\d.]+) s avg\s+([\d.]+) s max", text, re.M)
            if not m:
                raise SystemExit(f"bench: no '{name}' timer in gradflow's summary:\n{text}")
            r[name + "_s"] = float(m.group(3))  # max over ranks: the phase's wall time
        m = re.search(r"peak RSS\s+([\d.]+) MiB min\s+([\d.]+) MiB avg\s+([\d.]+) MiB max", text)
        if not m:
            raise SystemExit(f"bench: no peak RSS in gradflow's summary:\n{text}")
        r["rss_max_mib"] = float(m.group(3))
        r["total_s"] = r["forward_s"] + r["backward_s"] + r["flow_s"] + r["write_s"]
        return r

    def dry_run(self, opts, np_=1):
        text, _ = self.sh(["mpirun", "-np", str(np_), self.gradflow, *opts, "--force", "--dry-run",
                           "-o", os.path.join(self.tmp, "dry.h5")])
        m = re.search(r"memory per rank: ([\d.]+) (B|KiB|MiB|GiB|TiB)", text)
        if not m:
            raise SystemExit(f"bench: no 'memory per rank' in the dry run:\n{text}")
        scale = {"B": 1 / 1048576, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "TiB": 1048576}
        # what the figure counts, in the dry run's own words
        said = re.search(r"\(smallest block[^)]*\)(?:[:;,]\s*)?([^\n]*)", text)
        self.dry_said = said.group(1).strip() if said else ""
        return float(m.group(1)) * scale[m.group(2)]

    def monitored_bytes(self, opts, np_, tag):
        """Bytes each rank sent (point-to-point, collectives' internal messages
        included), from Open MPI's pml monitoring component."""
        prefix = os.path.join(self.tmp, "prof-" + tag)
        for f in os.listdir(self.tmp):
            if f.startswith("prof-" + tag):
                os.remove(os.path.join(self.tmp, f))
        self.gradflow_run(opts, np_, extra_mpi=["--mca", "pml_monitoring_enable", "2",
                                                "--mca", "pml_monitoring_enable_output", "3",
                                                "--mca", "pml_monitoring_filename", prefix])
        sent = []
        for r in range(np_):
            path = f"{prefix}.{r}.prof"
            if not os.path.exists(path):
                return None
            total = 0
            for line in open(path):
                m = re.match(r"^[EI]\s+\d+\s+\d+\s+(\d+) bytes", line)
                if m:
                    total += int(m.group(1))
            sent.append(total)
        return sent

    # references -------------------------------------------------------
    def dgemm(self, n, k1, calls):
        text, _ = self.sh([*self.pin, os.path.join(self.helpers, "dgemm_rate"), str(n), str(k1), str(calls)])
        kv = dict(x.split("=", 1) for x in text.split())
        return {"seconds_per_call": float(kv["seconds_per_call"]), "gflops": float(kv["gflops"]),
                "others_cores": self.others}

    def stream(self, n, triad_mib):
        text, _ = self.sh([*self.pin, os.path.join(self.helpers, "stream"), str(n), str(triad_mib), "10"])
        kv = dict(x.split("=", 1) for x in text.split())
        r = {k: float(kv[k]) for k in ("read_s", "read_bw", "triad_bw", "triad_w_bw")}
        r["others_cores"] = self.others
        return r

    def dd(self, mib):
        path = os.path.join(self.tmp, "dd.bin")
        text, wall = self.sh(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}",
                              "conv=fdatasync"])
        m = re.search(r"copied, ([\d.]+) s", text)
        os.remove(path)
        secs = float(m.group(1)) if m else wall
        return {"bytes": mib * 1048576, "s": secs, "bw": mib * 1048576 / secs, "others_cores": self.others}

    def peer(self, impl, infile, check=None):
        cmd = [*self.pin, "/usr/bin/python3", os.path.join(ROOT, "jobs", "bench", "peer.py"), "--impl", impl,
               "--in", infile]
        if impl != "jacobian":
            cmd += ["--out", os.path.join(self.tmp, "peer.h5")]
        if check:
            cmd += ["--check", check]
        text, _ = self.sh(cmd)
        res = json.loads(text.strip().splitlines()[-1])
        res["others_cores"] = self.others
        if os.path.exists(os.path.join(self.tmp, "peer.h5")):
            os.remove(os.path.join(self.tmp, "peer.h5"))
        return res


# ------------------------------------------------------------------ table ----

def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else float("nan")


def fmt(x, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    a = abs(x)
    s = (f"{x:.0f}" if a >= 1000 else f"{x:.1f}" if a >= 100 else f"{x:.2f}" if a >= 10
         else f"{x:.3f}" if a >= 0.1 else f"{x:.3g}")
    return s + (" " + unit if unit else "")


def spread(xs, unit):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    if len(xs) == 1 or min(xs) == max(xs):
        return f"{fmt(med(xs), unit)}"
    return f"{fmt(med(xs), unit)} ({fmt(min(xs))}–{fmt(max(xs))})"


class Table:
    def __init__(self):
        self.rows = []

    def add(self, case, what, fig, fig_unit, ref, ref_unit, ref_what, ratios, target=None,
            sense=">=", note=""):
        r = med(ratios)
        if target is None:
            met = "—"
        elif math.isnan(r):
            met = "n/a"
        else:
            met = "yes" if (r >= target if sense == ">=" else r <= target) else "**no**"
        tgt = "—" if target is None else f"{sense.replace('>=', '≥').replace('<=', '≤')} {target:g}"
        self.rows.append({
            "case": case, "figure": f"{what}: {spread(fig, fig_unit)}",
            "compared": f"{ref_what}: {spread(ref, ref_unit)}",
            "ratio": fmt(r), "target": tgt, "met": met, "note": note,
            "raw": {"figure": fig, "compared": ref, "ratios": ratios}})

    def markdown(self):
        out = ["| case | figure (median, min–max) | compared with (median, min–max) | ratio (median) "
               "| target | met? |", "|---|---|---|---|---|---|"]
        def cell(x):
            return str(x).replace("|", "\\|")

        for r in self.rows:
            out.append("| " + " | ".join(cell(r[k]) for k in ("case", "figure", "compared", "ratio",
                                                             "target", "met")) + " |")
        return "\n".join(out)


# ------------------------------------------------------------------ cases ----

def c1_opts(n, lags, tensor, steps=None):
    T = steps or lags + 1
    o = ["--units", str(n), "--steps", str(T), "--flow-targets", str(T), "--max-lag", str(lags),
         "--flow-units-k", "all", "--flow-units-v", "all"]
    return o + ([] if tensor else ["--no-flow-tensor"])


def c2_opts(n, k, lags, targets, tensor):
    first = lags + 2  # every target has all lags 0..L
    T = first + 8 * (targets - 1)
    o = ["--units", str(n), "--outputs", str(k), "--steps", str(T), "--target-times", f"{first}:T:8",
         "--flow-targets", "targets", "--max-lag", str(lags), "--flow-units-k", "outputs",
         "--flow-units-v", "all"]
    return o + ([] if tensor else ["--no-flow-tensor"])


def c3_opts(n, T):
    return ["--units", str(n), "--steps", str(T), "--flow-targets", "none"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", default="1,2,3,4,5,6,7")
    ap.add_argument("--build")
    ap.add_argument("--helpers")
    ap.add_argument("--out", required=True)
    ap.add_argument("--peer", choices=["yes", "no"], default="yes")
    ap.add_argument("--peer-note", default="")
    ap.add_argument("--report", metavar="RAW_JSON",
                    help="only rebuild the table from a raw.json of an earlier run")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            raw = json.load(f)
        os.makedirs(args.out, exist_ok=True)
        return finish(raw, args)
    cases = {int(c) for c in args.cases.split(",") if c.strip()}
    S = sizes(args.quick)
    B = Bench(args)
    R = args.repeat
    peer_on = 5 in cases and args.peer == "yes"
    t_begin = time.time()
    raw = {"started_utc": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
           "quick": args.quick, "repeat": R, "cases": sorted(cases), "sizes": S,
           "loadavg_start": os.getloadavg(), "iterations": []}
    try:
        # "gradflow V (git R)" and "BLAS: ..." (the kernels every party runs)
        raw["gradflow_version"] = "; ".join(B.sh([B.gradflow, "--version"])[0].split("\n")).strip("; ")
    except SystemExit:
        pass
    # the sources this build came from (others may be editing them): a digest of
    # src/ and include/, so that two raw.json files can be told apart
    h = hashlib.sha256()
    for d in ("src", "include"):
        for dirpath, _, files in sorted(os.walk(os.path.join(ROOT, d))):
            for name in sorted(files):
                with open(os.path.join(dirpath, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
    raw["source_sha256"] = h.hexdigest()[:16]
    raw["cpu"] = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                       if l.startswith("model name")), "?")
    raw["nproc"] = os.cpu_count()
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            raw["l3"] = f.read().strip()
    except OSError:
        raw["l3"] = "?"

    n_c1 = S["c1_n"] if (cases & {1, 4, 5, 7}) else []
    if (6 in cases) and S["c6_n"] not in n_c1:
        n_c1 = n_c1 + [S["c6_n"]]
    # case 5 compares case 2 too, unless GF_BENCH_C5_CASE2=0 (a focused rerun of case 1's peers)
    c5_c2 = os.environ.get("GF_BENCH_C5_CASE2", "1") != "0"
    do_c2 = bool(cases & {2, 7}) or (5 in cases and c5_c2)
    do_c3 = bool(cases & {3, 7})
    n_io = max(S["c1_n"])  # case 4 uses the largest case-1 size

    # deterministic figures, once: dry-run estimates, communicated bytes
    est = {}
    if 7 in cases:
        for n in S["c1_n"]:
            est[f"c1_n{n}_tensor"] = B.dry_run(c1_opts(n, S["c1_lags"], True))
        if 6 in cases:
            est[f"c6_n{S['c6_n']}_np2"] = B.dry_run(c1_opts(S["c6_n"], S["c1_lags"], False), 2)
        est["c2_tensor"] = B.dry_run(c2_opts(S["c2_n"], S["c2_k"], S["c2_lags"], S["c2_targets"], True))
        est["c3"] = B.dry_run(c3_opts(S["c3_n"], S["c3_T"]))
    raw["dry_run_mib"] = est
    raw["dry_run_says"] = getattr(B, "dry_said", "")
    comm = None
    if 6 in cases:
        n = S["c6_n"]
        l1, l2 = 8, 16
        T = S["c1_lags"] + 1
        b1 = B.monitored_bytes(c1_opts(n, l1, False, T), 2, "a")
        b2 = B.monitored_bytes(c1_opts(n, l2, False, T), 2, "b")
        if b1 and b2:
            per = [(y - x) / (l2 - l1) for x, y in zip(b1, b2)]
            comm = {"lags": [l1, l2], "bytes_sent": [b1, b2], "bytes_per_lag_per_rank": per,
                    "model_bytes": n * n * (2 - 1) / 2 * 8}
        raw["comm"] = comm

    for it in range(R):
        I = {"loadavg": os.getloadavg()}
        sys.stderr.write(f"bench: iteration {it + 1}/{R} ({time.time() - t_begin:.0f} s so far)\n")
        # ---- case 1 (and 4, 5, 6, 7 on its sizes) ----
        for n in n_c1:
            c = {}
            lags = S["c1_lags"]
            c["dgemm"] = B.dgemm(n, n + 1, S["dgemm_calls"])
            nt = os.path.join(B.tmp, f"c1-{n}-nt.h5")
            c["ours_nt"] = B.gradflow_run(c1_opts(n, lags, False), out=nt)
            if 6 in cases and n == S["c6_n"]:  # right after the 1-rank run: the host's load drifts
                c["ours_np2"] = B.gradflow_run(c1_opts(n, lags, False), 2)
            if n in S["c1_n"] and cases & {1, 4, 5, 7}:
                wt = os.path.join(B.tmp, f"c1-{n}-t.h5")
                c["ours_t"] = B.gradflow_run(c1_opts(n, lags, True), out=wt)
                if 4 in cases and n == n_io:
                    c["dd"] = B.dd(-(-(lags + 1) * n * n * 8 // 1048576))  # G's size in MiB
                if peer_on:
                    c["numpy"] = B.peer("numpy", nt, check=wt if it == 0 else None)
                    c["torch"] = B.peer("torch", nt, check=wt if it == 0 else None)
                    c["jacobian"] = B.peer("jacobian", nt, check=wt if it == 0 else None)
                os.remove(wt)
            os.remove(nt)
            I[f"c1_n{n}"] = c
        # ---- case 2 ----
        if do_c2:
            c = {}
            n, k, lags, nt_ = S["c2_n"], S["c2_k"], S["c2_lags"], S["c2_targets"]
            c["stream"] = B.stream(n, S["triad_mib"])
            nt = os.path.join(B.tmp, "c2-nt.h5")
            c["ours_nt"] = B.gradflow_run(c2_opts(n, k, lags, nt_, False), out=nt)
            if cases & {5, 7}:
                wt = os.path.join(B.tmp, "c2-t.h5")
                c["ours_t"] = B.gradflow_run(c2_opts(n, k, lags, nt_, True), out=wt)
                if peer_on:
                    c["numpy"] = B.peer("numpy", nt, check=wt if it == 0 else None)
                    c["torch"] = B.peer("torch", nt, check=wt if it == 0 else None)
                    c["jacobian"] = B.peer("jacobian", nt, check=wt if it == 0 else None)
                os.remove(wt)
            os.remove(nt)
            I["c2"] = c
        # ---- case 3 ----
        if do_c3:
            c = {"stream": B.stream(S["c3_n"], S["triad_mib"])}
            c["ours"] = B.gradflow_run(c3_opts(S["c3_n"], S["c3_T"]))
            I["c3"] = c
        raw["iterations"].append(I)
        with open(os.path.join(args.out, "raw.json"), "w") as f:
            json.dump(raw, f, indent=1)

    raw["elapsed_s"] = time.time() - t_begin
    raw["loadavg_end"] = os.getloadavg()
    return finish(raw, args)


def finish(raw, args):
    tab, notes = build_table(raw, args.peer_note)
    raw["table"] = tab.rows
    raw["notes"] = notes
    md = [f"gradflow benchmark ({'quick' if raw['quick'] else 'full'}, R = {raw['repeat']}, "
          f"{raw['started_utc']}, {raw.get('gradflow_version', '?')}, sources {raw.get('source_sha256', '?')}, "
          f"{raw['cpu']}, {raw['nproc']} cores, "
          f"load {raw['loadavg_start'][0]:.1f} → {raw['loadavg_end'][0]:.1f}, {raw['elapsed_s']:.0f} s)", "",
          tab.markdown(), ""]
    md += [f"- {x}" for x in notes]
    text = "\n".join(md) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "raw.json"), "w") as f:
        json.dump(raw, f, indent=1)
    print(text)
    return 0


def build_table(raw, peer_note=""):
    """The markdown table and its notes, from raw.json's contents alone."""
    S = raw["sizes"]
    cases = set(raw["cases"])
    est = raw.get("dry_run_mib", {})
    comm = raw.get("comm")
    n_io = max(S["c1_n"])
    peer_on = any("numpy" in c for I in raw["iterations"] for c in I.values() if isinstance(c, dict))
    its = raw["iterations"]
    tab = Table()
    notes = []

    def col(path):
        out = []
        for I in its:
            x = I
            for p in path:
                x = x.get(p) if isinstance(x, dict) else None
                if x is None:
                    break
            out.append(x)
        return out

    lags = S["c1_lags"]
    if 1 in cases:
        for n in S["c1_n"]:
            useful = 2.0 * n * n * n * lags * 1e-9
            ours = [useful / x["flow_s"] for x in col([f"c1_n{n}", "ours_nt"])]
            ourt = [useful / x["flow_s"] for x in col([f"c1_n{n}", "ours_t"])]
            ref = [x["gflops"] for x in col([f"c1_n{n}", "dgemm"])]
            tab.add("1 flow, compute-bound", f"n={n}, |K|=n, {lags} lags, 1×1, no tensor: G recurrence",
                    ours, "GFLOP/s", ref, "GFLOP/s", f"cblas_dgemm, C({n}×{n + 1}) = Wᵀ·M",
                    [a / b for a, b in zip(ours, ref)], 0.90)
            tab.add("1 flow, compute-bound", f"n={n}, same with /flow/G written",
                    ourt, "GFLOP/s", ref, "GFLOP/s", "cblas_dgemm, same shape",
                    [a / b for a, b in zip(ourt, ref)])
        notes.append(f"Case 1: useful work 2·n²·|K| flops per lag, {lags} lags; rate = that ÷ gradflow's "
                     "`flow` timer (max over ranks), which also counts creating the /flow datasets, "
                     "‖W‖ norms and bounds, renormalising and taking the norms of G every lag, and "
                     "writing the norm datasets (and /flow/G in the second row). gradflow's product "
                     "has |K|+1 columns (the extra one carries δ⁽ᵗ⁾ for /lag); the dgemm reference is "
                     "timed at that exact shape with its own flop count 2·n²·(|K|+1).")
    if 2 in cases:
        n, k, L, nt_ = S["c2_n"], S["c2_k"], S["c2_lags"], S["c2_targets"]
        per_lag = [x["flow_s"] / (nt_ * L) * 1e3 for x in col(["c2", "ours_nt"])]
        st = col(["c2", "stream"])
        ref = [n * n * 8 / s["triad_bw"] * 1e3 for s in st]
        tab.add("2 flow, memory-bound", f"n={n}, |K|={k}, {L + 1} lags, {nt_} targets, no tensor: time per lag",
                per_lag, "ms", ref, "ms", f"stream W ({n * n * 8 / 2**20:.0f} MiB) once at the triad rate",
                [b / a for a, b in zip(per_lag, ref)], 0.80)
        tri = [s["triad_bw"] / 1e9 for s in st]
        rd = [s["read_s"] * 1e3 for s in st]
        notes.append(f"Case 2: time per lag = `flow` ÷ ({nt_} targets × {L} products; lag 0 needs none); "
                     f"ratio = streaming time ÷ time per lag (fraction of the limit). Triad bandwidth "
                     f"{spread(tri, 'GB/s')} (3 arrays of {S['triad_mib']} MiB, 1 thread); a read-only "
                     f"pass over an n×n matrix measured directly took {spread(rd, 'ms')}.")
    if 3 in cases:
        n, T = S["c3_n"], S["c3_T"]
        ours = [(x["forward_s"] + x["backward_s"]) / T * 1e3 for x in col(["c3", "ours"])]
        ref = [2 * n * n * 8 / s["triad_bw"] * 1e3 for s in col(["c3", "stream"])]
        tab.add("3 forward + BPTT", f"n={n}, T={T}: (forward + backward) per step", ours, "ms",
                ref, "ms", "two passes over W at the triad rate",
                [b / a for a, b in zip(ours, ref)], 0.70)
        notes.append("Case 3: the `backward` timer also holds ∂E/∂W = Δᵀ·A (a dgemm of 2·n²·T flops) "
                     "and ‖∂E/∂W‖, which the two-pass model leaves out. Cases 2 and 3: the triad runs "
                     f"far outside the caches; W ({S['c3_n'] ** 2 * 8 / 2**20:.0f} MiB) may be served "
                     f"partly from a large last-level cache (here {raw.get('l3', '?')}, shared with "
                     "other tenants), so a ratio above 1 is possible and means just that.")
    if 4 in cases:
        n = n_io
        G = (lags + 1) * n * n * 8
        def extra(x):  # what the tensor adds to the run: flow + final write and sync
            t, nt_ = x["ours_t"], x["ours_nt"]
            return (t["flow_s"] + t["write_s"]) - (nt_["flow_s"] + nt_["write_s"])
        ours = [G / extra(x) / 1e9 if extra(x) > 0 else None for x in col([f"c1_n{n}"])]
        ref = [x["bw"] / 1e9 for x in col([f"c1_n{n}", "dd"])]
        tab.add("4 I/O", f"/flow/G, {G / 2**30:.2f} GiB (case 1, n={n}): bytes ÷ the time the tensor adds "
                "to the run (flow + write, synced, with − without tensor)",
                ours, "GB/s", ref, "GB/s", "dd bs=1M conv=fdatasync, same directory",
                [a / b if a else None for a, b in zip(ours, ref)], 0.70)
        notes.append("Case 4: both sides end with the data on disk (gradflow syncs its file before "
                     "`complete` = 1; dd runs with conv=fdatasync). gradflow's writes run on a thread "
                     "of their own while the flow computes, so the time the tensor adds to the run can "
                     "be shorter than the disk needs for it, and the ratio can exceed 1; it also holds "
                     "filling the write buffers (G scaled back by its exponents) and the staging copy.")
    if 5 in cases:
        if not peer_on:
            tab.rows.append({"case": "5 peer", "figure": "skipped", "compared": peer_note or "no PyTorch",
                             "ratio": "n/a", "target": "—", "met": "n/a", "note": ""})
        else:
            configs = [(f"c1_n{n}", f"case 1 n={n}", 1.0) for n in S["c1_n"]]
            if "c2" in raw["iterations"][0]:
                configs.append(("c2", "case 2", 1 / 1.5))
            for key, label, tgt in configs:
                ours = [x["flow_s"] + x["write_s"] for x in col([key, "ours_t"])]
                # the peers' times with their file synced to disk, as ours is when
                # gradflow exits (raw.json files from before sync_s: unsynced)
                npy = [x.get("total_synced_s", x["total_s"]) for x in col([key, "numpy"])]
                trc = [x.get("total_synced_s", x["total_s"]) for x in col([key, "torch"])]
                best = [min(a, b) for a, b in zip(npy, trc)]
                best_cached = [min(a["total_s"], b["total_s"])
                               for a, b in zip(col([key, "numpy"]), col([key, "torch"]))]
                jac = [x["total_s"] for x in col([key, "jacobian"])]
                tab.add("5 peer", f"{label}, ours (flow + write)", ours, "s", npy, "s", "numpy loop, file synced",
                        [a / b for a, b in zip(ours, npy)])
                tab.add("5 peer", f"{label}, ours (flow + write)", ours, "s", trc, "s", "torch loop, file synced",
                        [a / b for a, b in zip(ours, trc)])
                tab.add("5 peer", f"{label}, ours (flow + write)", ours, "s", best, "s", "best loop, file synced",
                        [a / b for a, b in zip(ours, best)], round(tgt, 3), "<=")
                tab.add("5 peer", f"{label}, ours (flow + write)", ours, "s", best_cached, "s",
                        "best loop, file left in the page cache", [a / b for a, b in zip(ours, best_cached)])
                tab.add("5 peer", f"{label}, ours (flow + write)", ours, "s", jac, "s",
                        "torch jacobian (estimate)", [a / b for a, b in zip(ours, jac)], 0.02, "<=")
            th = next((x for I in its for v in I.values() if isinstance(v, dict)
                       for x in [v.get("torch")] if x), {}).get("threads")
            chk = [(f"{k} {p}", v[p]["check_max_rel_diff"]) for I in its[:1] for k, v in I.items()
                   if isinstance(v, dict) for p in ("numpy", "torch", "jacobian")
                   if p in v and "check_max_rel_diff" in v[p]]
            notes.append("Case 5: ratio = our time ÷ theirs (≤ 1 is faster). Ours: the `flow` + `write` "
                         "timers of the run with /flow/G, i.e. G, its norms and /flow/G streamed to the file "
                         "plus the rest of the file; not the forward pass and BPTT, since the peers are "
                         "handed W and F′ (raw.json has all four timers). Theirs: read W and "
                         "F′ from our file, the recurrence, /flow/G written with h5py one lag slice at a "
                         "time, file closed (Python start and imports not counted), then fsync'ed: gradflow's file is on disk "
                         "when it exits (it syncs before writing `complete`, and starts the write-back of "
                         "/flow/G while it computes), theirs would still be in the page cache; the row "
                         "'left in the page cache' leaves their fsync out; the loop takes the faster of G ← WᵀG and "
                         "Gᵀ ← GᵀW (a 3-call trial, not timed). Threads: "
                         f"OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 before Python starts, "
                         f"torch.set_num_threads(1), set_num_interop_threads(1) (torch reports intra-op "
                         f"{(th or {}).get('torch_intra_op')}, inter-op {(th or {}).get('torch_interop')}); all "
                         "pinned to core 0 like our rank 0. The Jacobian is torch.autograd.functional."
                         "jacobian (reverse mode, vectorize=False) of x=δ_K(t) ↦ δ_V′(t−L), one per lag, "
                         "timed for a subset V′ of rows at 2 lag counts and scaled to the full tensor "
                         "(rows × lags; see jobs/bench/peer.py). Largest difference from our /flow/G "
                         f"(relative to its max, first iteration): {', '.join(f'{k} {v:.1e}' for k, v in chk) or 'not checked'}.")
    if 6 in cases:
        n = S["c6_n"]
        t1 = [x["flow_s"] for x in col([f"c1_n{n}", "ours_nt"])]
        t2 = [x["flow_s"] for x in col([f"c1_n{n}", "ours_np2"])]
        tab.add("6 scaling", f"n={n}, {lags} lags, no tensor: flow on 2 ranks × 1 thread", t2, "s",
                t1, "s", "1 rank × 1 thread", [a / (2 * b) for a, b in zip(t1, t2)], 0.85)
        if comm:
            per = comm["bytes_per_lag_per_rank"]
            tab.add("6 scaling", f"n={n}, |K|=n, 2 ranks: bytes sent per lag per rank (measured)",
                    [max(per)], "B", [comm["model_bytes"]], "B",
                    "model n·|K|·(P−1)/P words", [max(per) / comm["model_bytes"]])
            notes.append("Case 6: efficiency = T₁ ÷ (2·T₂) of the `flow` timer. Bytes: Open MPI's pml "
                         "monitoring component (`--mca pml_monitoring_enable 2`) counts every byte each "
                         "rank sends, collectives' internal messages included; two runs with "
                         f"--max-lag {comm['lags'][0]} and {comm['lags'][1]} are differenced, so only the "
                         "per-lag traffic remains (the reduce-scatter of |K|+1 columns and the small "
                         "allreduces of the renormalisation and norms). Ranks: "
                         + ", ".join(f"{p:.0f} B" for p in per) + ".")
        else:
            notes.append("Case 6: communicated bytes could not be measured (no pml monitoring output); "
                         "model only: " f"{n * n * 4:.0f} B per lag per rank.")
    if 7 in cases:
        rows = []
        for n in S["c1_n"]:
            rows.append((f"c1_n{n}_tensor", [x["rss_max_mib"] for x in col([f"c1_n{n}", "ours_t"])],
                         f"case 1 n={n}, with tensor, 1 rank"))
        if 6 in cases:
            rows.append((f"c6_n{S['c6_n']}_np2",
                         [x["rss_max_mib"] for x in col([f"c1_n{S['c6_n']}", "ours_np2"])],
                         f"case 6 n={S['c6_n']}, 2 ranks (max over ranks)"))
        rows.append(("c2_tensor", [x["rss_max_mib"] for x in col(["c2", "ours_t"])], "case 2, with tensor"))
        rows.append(("c3", [x["rss_max_mib"] for x in col(["c3", "ours"])], "case 3"))
        plus30 = []
        for key, rss, label in rows:
            e = est[key]
            tab.add("7 memory", f"{label}: peak RSS", rss, "MiB", [e], "MiB",
                    "--dry-run estimate (largest block)", [r / e for r in rss], 1.25, "<=")
            plus30.append(f"{label} {med(rss) / (e + 30):.2f}")
        said = raw.get("dry_run_says", "")
        note = ("Case 7: peak RSS (getrusage ru_maxrss, max over ranks) ÷ the dry run's 'memory per rank' "
                "of the largest block, run with the same options and ranks. The dry run says its figure "
                f"is: \"{said or '?'}\".")
        if "add about 30 MiB" in said:  # older gradflow: the runtime's memory left out of the figure
            note += " Against estimate + 30 MiB: " + ", ".join(plus30) + "."
        notes.append(note)

    load = {}
    for I in its:
        for key, c in I.items():
            if isinstance(c, dict):
                for name, m in c.items():
                    # commands that write little: kernel writeback (counted as 'others')
                    # would blur the figure for dd and the runs that write /flow/G
                    if name in ("dd", "ours_t", "numpy", "torch"):
                        continue
                    if isinstance(m, dict) and "others_cores" in m:
                        load.setdefault(key, []).append(m["others_cores"])
    if load:
        worst = max(max(v) for v in load.values())
        notes.append("Noise: cores kept busy by other processes (and hypervisor steal) while each command "
                     "ran (those that write little), from /proc/stat less our own CPU time, median / max: "
                     + ", ".join(f"{k} {med(v):.2f} / {max(v):.2f}" for k, v in load.items())
                     + (". Above ~0.2 the 1-rank figures are suspect and the 2-rank ones (both cores) "
                        "certainly are; see out/bench/log.txt." if worst > 0.2 else "."))
    raw["others_cores"] = load
    return tab, notes


if __name__ == "__main__":
    sys.exit(main())
