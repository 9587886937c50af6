"""gradflow's handling of bad input, at 3 MPI ranks.

Each bad run must (src/error.h, gradflow --help):
  - exit with the documented status: 64 bad option, 65 bad input data,
    74 I/O error, 78 bad config file;
  - print exactly one line starting with "gradflow: error:" on stderr, naming
    the offending option (or key, or variable);
  - end cleanly: no MPI_Abort, and no hang (each run is killed after 60 s,
    which fails the test);
  - leave nothing behind: no output file, no .partial file, an existing
    output untouched.

Binary and launcher: GRADFLOW_BIN (default <repo>/build/gradflow) and
GRADFLOW_MPIEXEC (default mpiexec); --oversubscribe is always passed.
"""
import concurrent.futures
import pathlib
import re

import h5py
import numpy as np
import pytest
from gfrun import run_mpi

RANKS = 3
EUSAGE, EDATA, EIO, ECONFIG = 64, 65, 74, 78


def run(args, cwd, np=RANKS, env=None):
    return run_mpi(args, np=np, cwd=cwd, env=env)


def snapshot(d):
    """{relative path: bytes (files) or None (directories)} of everything under d."""
    snap = {}
    for p in sorted(pathlib.Path(d).rglob("*")):
        snap[str(p.relative_to(d))] = None if p.is_dir() else p.read_bytes()
    return snap


def h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[name] = data


def square(n=4, seed=1):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, n))


# --------------------------------------------------------------------------
# the cases: (id, setup(dir) -> args (and optionally env), status, words the message must name)

def weights_nan(d):
    W = square()
    W[2, 1] = np.nan
    h5(d / "w.h5", W=W)
    return ["--weights", "w.h5:/W"]


def weights_inf(d):
    W = square()
    W[3, 3] = -np.inf
    h5(d / "w.h5", W=W)
    return ["--weights", "w.h5:/W"]


def targets_partial_nan(d):
    tg = np.random.default_rng(2).uniform(0, 1, (5, 2))
    tg[1, 0] = np.nan
    h5(d / "t.h5", d=tg)
    return ["--units", "4", "--targets-file", "t.h5:/d"]


def targets_all_nan(d):
    h5(d / "t.h5", d=np.full((5, 1), np.nan))
    return ["--units", "4", "--targets-file", "t.h5:/d"]


def ini(text):
    def setup(d):
        (d / "bad.ini").write_text(text)
        return ["--config", "bad.ini"]
    return setup


def args(*a):
    return lambda d: list(a)


CASES = [
    # sizes
    ("units-zero", args("--units", "0"), EUSAGE, ["--units"]),
    ("units-negative", args("--units", "-4"), EUSAGE, ["--units"]),
    ("steps-zero", args("--steps", "0"), EUSAGE, ["--steps"]),
    ("steps-negative", args("--steps", "-2"), EUSAGE, ["--steps"]),
    ("inputs-negative", args("--inputs", "-1"), EUSAGE, ["--inputs"]),
    ("outputs-above-n", args("--units", "4", "--outputs", "5"), EUSAGE, ["--outputs"]),
    ("outputs-zero", args("--outputs", "0"), EUSAGE, ["--outputs"]),
    ("outputs-above-n-from-weights",
     lambda d: (h5(d / "w.h5", W=square(3)), ["--weights", "w.h5:/W", "--outputs", "4"])[1],
     EUSAGE, ["--outputs"]),
    ("negative-scale", args("--w-max", "-1"), EUSAGE, ["--w-max"]),
    ("target-times-outside", args("--steps", "5", "--target-times", "0,3"), EUSAGE,
     ["--target-times"]),
    ("target-times-malformed", args("--target-times", "1:2:3:4"), EUSAGE, ["--target-times"]),
    # names and numbers on the command line
    ("unknown-activation", args("--activation", "softmax"), EUSAGE, ["--activation", "softmax"]),
    ("unknown-init", args("--init", "xavier"), EUSAGE, ["--init"]),
    ("unknown-option", args("--unitz", "5"), EUSAGE, ["--unitz"]),
    ("missing-value", args("--units"), EUSAGE, ["--units"]),
    ("malformed-integer", args("--units", "12x"), EUSAGE, ["--units", "12x"]),
    ("malformed-real", args("--w-max", "0.5.1"), EUSAGE, ["--w-max"]),
    ("real-not-finite", args("--bias-scale", "nan"), EUSAGE, ["--bias-scale"]),
    ("negative-seed", args("--seed", "-1"), EUSAGE, ["--seed"]),
    ("no-output", lambda d: ["--units", "4"], EUSAGE, ["-o"]),
    # memory: refused before anything is allocated
    ("max-memory-exceeded", args("--units", "300", "--max-memory", "1M"), EUSAGE,
     ["--max-memory", "GiB per rank"]),
    ("max-memory-malformed", args("--max-memory", "4X"), EUSAGE, ["--max-memory", "4X"]),
    # found by fuzzing: n near 2^31 overflowed the estimate, and the flow's unit lists
    # (O(n) each) were built before the memory check
    ("units-near-2^31", args("--units", "2147483647", "--steps", "3", "--flow-units-v", "all"), EUSAGE,
     ["--max-memory", "GiB per rank"]),
    # found by fuzzing: the file-size estimate was computed from sizes that had failed
    # validation (a negative n_out), an undefined conversion
    ("sizes-invalid-together", args("--units", "13", "--steps", "2254775807", "--outputs", "-1254775807"),
     EUSAGE, ["--steps"]),
    ("steps-near-2^31", args("--units", "2", "--steps", "2147483647", "--target-times", "1:T:1"), EUSAGE,
     ["--max-memory", "GiB per rank"]),
    # config file
    ("config-missing", args("--config", "nowhere.ini"), ECONFIG, ["--config", "nowhere.ini"]),
    ("config-unknown-key", ini("units = 4\nunitz = 5\n"), ECONFIG, ["unitz"]),
    ("config-unknown-activation", ini("activation = softmax\n"), ECONFIG, ["activation", "softmax"]),
    ("config-malformed-integer", ini("steps = 12x\n"), ECONFIG, ["steps", "12x"]),
    ("config-malformed-real", ini("[gradflow]\nw-max = abc\n"), ECONFIG, ["w-max", "abc"]),
    ("config-unknown-section", ini("[other]\nunits = 4\n"), ECONFIG, ["other"]),
    ("config-nested", ini("config = other.ini\n"), ECONFIG, ["config"]),
    ("config-not-ini", ini("this line is not an option\n"), ECONFIG, ["bad.ini"]),
    # input files
    ("weights-missing-file", args("--weights", "missing.h5:/W"), EIO, ["--weights", "missing.h5"]),
    ("weights-missing-dataset", lambda d: (h5(d / "w.h5", V=square()), ["--weights", "w.h5:/W"])[1],
     EDATA, ["--weights"]),
    ("weights-not-square",
     lambda d: (h5(d / "w.h5", W=np.ones((3, 4))), ["--weights", "w.h5:/W"])[1], EDATA, ["--weights"]),
    ("weights-one-dimensional",
     lambda d: (h5(d / "w.h5", W=np.ones(4)), ["--weights", "w.h5:/W"])[1], EDATA, ["--weights"]),
    ("weights-nan", weights_nan, EDATA, ["--weights"]),
    ("weights-inf", weights_inf, EDATA, ["--weights"]),
    ("weights-integer",
     lambda d: (h5(d / "w.h5", W=np.ones((4, 4), dtype=np.int32)), ["--weights", "w.h5:/W"])[1],
     EDATA, ["--weights"]),
    ("weights-not-hdf5",
     lambda d: ((d / "w.h5").write_text("plain text\n"), ["--weights", "w.h5:/W"])[1],
     EIO, ["--weights"]),
    ("weights-spec-without-dataset", args("--weights", "w.h5"), EUSAGE, ["--weights"]),
    ("weights-contradict-units",
     lambda d: (h5(d / "w.h5", W=square(4)), ["--weights", "w.h5:/W", "--units", "5"])[1],
     EUSAGE, ["--units", "--weights"]),
    ("inputs-file-contradicts-steps",
     lambda d: (h5(d / "x.h5", x=np.zeros((6, 2))), ["--inputs-file", "x.h5:/x", "--steps", "5"])[1],
     EUSAGE, ["--steps", "--inputs-file"]),
    ("targets-row-partly-nan", targets_partial_nan, EDATA, ["--targets-file"]),
    ("targets-all-nan", targets_all_nan, EDATA, ["--targets-file"]),
    # the file's target times are 1..5; a --target-times that disagrees with them is an error
    ("targets-file-and-target-times",
     lambda d: (h5(d / "t.h5", d=np.ones((5, 1))),
                ["--targets-file", "t.h5:/d", "--target-times", "T"])[1],
     EUSAGE, ["--targets-file", "--target-times"]),
    # output
    ("output-parent-missing", args("-o", "no/such/dir/out.h5"), EIO, ["-o"]),
    ("output-under-proc", args("-o", "/proc/gradflow-test-out.h5"), EIO, ["-o"]),
    ("output-is-directory", lambda d: ((d / "sub").mkdir(), ["-o", "sub"])[1], EIO, ["-o"]),
    ("output-partial-is-directory", lambda d: ((d / "out.h5.partial").mkdir(), [])[1], EIO, ["-o"]),
    # grid and environment
    ("grid-wrong-rank-count", args("--grid", "1x2"), EUSAGE, ["--grid"]),
    ("grid-malformed", args("--grid", "3by1"), EUSAGE, ["--grid"]),
    ("grid-zero", args("--grid", "0x3"), EUSAGE, ["--grid"]),
    ("grid-time-groups-wrong-count", args("--grid", "2x2"), EUSAGE, ["--grid"]),
    # flow options
    ("max-lag-too-large", args("--steps", "5", "--max-lag", "5"), EUSAGE, ["--max-lag"]),
    ("flow-units-k-outside", args("--units", "4", "--flow-units-k", "7"), EUSAGE, ["--flow-units-k"]),
    ("flow-targets-outside", args("--steps", "5", "--flow-targets", "9"), EUSAGE, ["--flow-targets"]),
    ("slurm-ntasks-wrong", lambda d: (["--units", "4"], {"SLURM_NTASKS": "5"}), EUSAGE,
     ["SLURM_NTASKS"]),
]


def check_failure(r, status, words):
    text = r.stdout + r.stderr
    assert "MPI_ABORT" not in text.upper(), text
    assert r.returncode == status, f"exit {r.returncode}, want {status}\n{text}"
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("gradflow: error:")]
    assert len(lines) == 1, f"want exactly one error line on stderr:\n{r.stderr}"
    assert "gradflow: error:" not in r.stdout
    for w in words:
        assert w in lines[0], f"{w!r} not named in: {lines[0]}"
    return lines[0]


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Runs every case of CASES, a few at a time (a failing mpiexec spends a second or two
    taking its job down, mostly waiting), and returns {id: (dir, before, future)}."""
    prepared = {}
    for cid, setup, _, _ in CASES:
        d = tmp_path_factory.mktemp(cid)
        got = setup(d)
        extra_args, env = got if isinstance(got, tuple) else (got, None)
        # a later option overrides an earlier one, so the case's own -o wins
        out = [] if cid == "no-output" else ["-o", "out.h5"]
        prepared[cid] = (d, snapshot(d), [*out, *extra_args], env)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {cid: pool.submit(run, a, d, RANKS, env) for cid, (d, _, a, env) in prepared.items()}
        concurrent.futures.wait(futures.values())
    return {cid: (prepared[cid][0], prepared[cid][1], futures[cid]) for cid in prepared}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(bad_runs, case):
    cid, _, status, words = case
    d, before, future = bad_runs[cid]
    r = future.result()          # re-raises a hang's failure
    check_failure(r, status, words)
    after = snapshot(d)
    assert after == before, f"files changed: {sorted(set(after) ^ set(before))}"
    if cid != "output-partial-is-directory":          # that one was made by the test
        assert not list(d.rglob("*.partial"))


def test_existing_output_without_force_is_untouched(tmp_path):
    out = tmp_path / "out.h5"
    h5(out, keep=np.arange(10.0))
    old = out.read_bytes()
    mtime = out.stat().st_mtime_ns
    r = run(["--units", "4", "--steps", "5", "-o", "out.h5"], cwd=tmp_path)
    check_failure(r, EIO, ["-o", "out.h5", "--force"])
    assert out.read_bytes() == old and out.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_failed_forced_run_keeps_old_output(tmp_path):
    """--force replaces the old file only once the new one is complete."""
    out = tmp_path / "out.h5"
    h5(out, keep=np.arange(10.0))
    old = out.read_bytes()
    weights_nan(tmp_path)
    r = run(["--weights", "w.h5:/W", "--steps", "5", "--force", "-o", "out.h5"], cwd=tmp_path)
    check_failure(r, EDATA, ["--weights"])
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "w.h5"]


def test_slurm_ntasks_matching_is_accepted(tmp_path):
    r = run(["--units", "4", "--steps", "5", "--quiet", "-o", "out.h5"], cwd=tmp_path,
            env={"SLURM_NTASKS": str(RANKS)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.h5").exists()


# --------------------------------------------------------------------------
# --dry-run

def parse_size(text):
    value, unit = text.split()
    return float(value) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB", "PiB"].index(unit)


def test_dry_run_prints_sizes_and_writes_nothing(tmp_path):
    n, T, m = 10, 20, 2
    before = snapshot(tmp_path)
    r = run(["--units", n, "--steps", T, "--inputs", m, "--dry-run", "-o", "out.h5"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "gradflow: error:" not in r.stderr and "MPI_ABORT" not in (r.stdout + r.stderr).upper()
    assert snapshot(tmp_path) == before, "dry run wrote something"
    mem = re.search(r"memory per rank: ([\d.]+ \w+) \(largest block, (\d+) units\), "
                    r"([\d.]+ \w+) \(smallest block, (\d+) units\)", r.stdout)
    assert mem, r.stdout
    big, small = parse_size(mem.group(1)), parse_size(mem.group(3))
    # 10 units over 3 ranks: blocks of 4, 3, 3
    assert (int(mem.group(2)), int(mem.group(4))) == (4, 3)
    # a rank holds at least its rows of W and dE/dW and the replicated a(0..T)
    assert big >= 8 * (2 * 4 * n + (T + 1) * n) and small >= 8 * (2 * 3 * n + (T + 1) * n)
    assert big >= small  # the 30 MiB runtime allowance can hide a few bytes in the rounding
    assert re.search(r"output file: [\d.]+ \w+", r.stdout), r.stdout


def test_dry_run_file_size_estimate_is_close(tmp_path):
    """The size the dry run announces is within 10% of what the real run writes."""
    opts = ["--units", "120", "--steps", "150", "--inputs", "4", "--outputs", "3", "-o", "out.h5"]
    r = run([*opts, "--dry-run"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    est = parse_size(re.search(r"output file: ([\d.]+ \w+)", r.stdout).group(1))
    assert not (tmp_path / "out.h5").exists()
    r = run([*opts, "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    actual = (tmp_path / "out.h5").stat().st_size
    assert abs(est - actual) <= 0.10 * actual, (est, actual)


def test_dry_run_checks_output_directory(tmp_path):
    r = run(["--units", "4", "--steps", "5", "--dry-run", "-o", "missing/out.h5"], cwd=tmp_path)
    check_failure(r, EIO, ["-o"])
    assert list(tmp_path.iterdir()) == []
