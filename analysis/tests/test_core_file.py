"""The core gradflow/1 output file (SPEC §1, §2, §5, §6), checked with h5py and numpy.

Every file read here is produced by the test itself (run under MPI via the
`gradflow` fixture of conftest.py), one unique output name per run.

Accuracy norm used throughout: for a dataset X against its reference R,

    rel(X, R) = max |X - R| / max |R|        (max over all entries)

and the requirement is rel <= 1e-12 (SPEC §5: any grid gives the same file
contents within a relative 1e-12).  Arrays that SPEC §5 says are generated
bitwise identically for any P (W, U, b, a0, x, d, mask) are compared byte for
byte.
"""
import datetime
import re
import shlex

import h5py
import numpy as np
import pytest

RTOL = 1e-12
F8 = np.dtype("<f8")
U1 = np.dtype("u1")

# --------------------------------------------------------------------------
# cases

# A general net: m > 0, bias and a0 nonzero, several target times, n_out > 1.
GENERAL = dict(n=7, m=3, n_out=3, T=9, w_max=0.8, bias=0.5, a0=0.8, seed=7,
               times="3,5:T:2", expect_times=[3, 5, 7, 9])
# The paper's net: m = 0, b = 0, a0 = 0; n = 3 so that 4 ranks leave one rank without units.
PAPER = dict(n=3, m=0, n_out=1, T=6, w_max=1.0, bias=0.0, a0=0.0, seed=3,
             times="T", expect_times=[6], act="logistic")
ACTIVATIONS = ["logistic", "tanh", "linear", "relu"]


def case_args(c, act):
    return ["--units", c["n"], "--inputs", c["m"], "--outputs", c["n_out"], "--steps", c["T"],
            "--activation", act, "--w-max", c["w_max"], "--bias-scale", c["bias"],
            "--a0-scale", c["a0"], "--seed", c["seed"], "--target-times", c["times"]]


def case_of(name):
    """(params, activation) of a named case: 'general-<act>' or 'paper'."""
    if name == "paper":
        return PAPER, PAPER["act"]
    return GENERAL, name.split("-", 1)[1]


@pytest.fixture(scope="module")
def runs(gradflow, tmp_path_factory):
    """get(name, np[, grid]) -> (path, args, CompletedProcess); each (case, np, grid) runs once."""
    cache = {}
    base = tmp_path_factory.mktemp("runs")

    def get(name, np, grid=None):
        if (name, np, grid) not in cache:
            c, act = case_of(name)
            out = base / f"{name}-np{np}{'-' + grid if grid else ''}.h5"
            args = [str(a) for a in case_args(c, act)] + ["--quiet", "-o", str(out)]
            if grid:
                args = ["--grid", grid] + args
            r = gradflow.ok(args, np=np)
            cache[(name, np, grid)] = (out, args, r)
        return cache[(name, np, grid)]

    return get


# --------------------------------------------------------------------------
# helpers

def rel(actual, expected):
    """max |actual - expected| / max |expected| over the finite entries; the non-finite
    entries (NaN where a lag reaches before t = 1, -inf for log10 0) must sit at the same
    places with the same values."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape
    fin = np.isfinite(expected)
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), "NaN at different places"
    assert np.array_equal(actual[np.isinf(expected)], expected[np.isinf(expected)]), "inf differs"
    assert np.all(np.isfinite(actual[fin])), "non-finite where the reference is finite"
    if not fin.any():
        return 0.0
    scale = np.max(np.abs(expected[fin]))
    diff = np.max(np.abs(actual[fin] - expected[fin]))
    return diff / scale if scale > 0 else diff


def read_all(path):
    """{dataset path: numpy array} for every dataset in the file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__("/" + name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def expected_layout(n, m, n_out, T):
    """SPEC §6: dataset -> (shape, dtype, axis names)."""
    TU = ((T, n), F8, ("time", "unit"))
    return {
        "/model/W": ((n, n), F8, ("unit", "unit")),
        "/model/U": ((n, m), F8, ("unit", "input")),
        "/model/b": ((n,), F8, ("unit",)),
        "/model/a0": ((n,), F8, ("unit",)),
        "/input/x": ((T, m), F8, ("time", "input")),
        "/input/d": ((T, n_out), F8, ("time", "output")),
        "/input/target_mask": ((T,), U1, ("time",)),
        "/forward/net": TU, "/forward/a": TU, "/forward/fprime": TU,
        "/backward/delta": TU,
        "/backward/E": ((T,), F8, ("time",)),
        "/gradient/dE_dW": ((n, n), F8, ("unit", "unit")),
        "/gradient/dE_dU": ((n, m), F8, ("unit", "input")),
        "/gradient/dE_db": ((n,), F8, ("unit",)),
    }


def scale_values(axis, n, m, n_out, T):
    return {"time": np.arange(1, T + 1), "unit": np.arange(n), "input": np.arange(m),
            "output": np.arange(n - n_out, n)}[axis]


def as_str(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


def parse_ini(text):
    kv = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, sep, v = line.partition("=")
        assert sep, f"not an INI line: {line!r}"
        kv[k.strip()] = v.strip()
    return kv


def help_options(gradflow, train_only=False):
    """The long options of --help; with train_only, those marked 'train:'."""
    r = gradflow.ok(["--help"], np=1)
    pattern = r"^\s+(?:-o, )?--([a-z0-9-]+)" + (r"[^\n]*?\btrain:" if train_only else "")
    names = re.findall(pattern, r.stdout, flags=re.M)
    names = [x for x in names if x not in ("help", "version")]
    assert len(names) >= (10 if train_only else 20), r.stdout
    return names


# --------------------------------------------------------------------------
# independent numpy reference of SPEC §1-2

def act_f(act, z):
    return {"logistic": lambda: 1.0 / (1.0 + np.exp(-z)), "tanh": lambda: np.tanh(z),
            "linear": lambda: z.copy(), "relu": lambda: np.where(z > 0, z, 0.0)}[act]()


def act_fprime(act, z):
    # derivative written from net, not from a = f(net), so it is not the program's formula
    return {"logistic": lambda: np.exp(-z) / (1.0 + np.exp(-z)) ** 2,
            "tanh": lambda: 1.0 / np.cosh(z) ** 2,
            "linear": lambda: np.ones_like(z),
            "relu": lambda: (z > 0).astype(float)}[act]()


def forward_ref(W, U, b, a0, x, act):
    T, n = x.shape[0], W.shape[0]
    net, a = np.zeros((T, n)), np.zeros((T + 1, n))
    a[0] = a0
    for t in range(T):
        net[t] = W @ a[t] + U @ x[t] + b
        a[t + 1] = act_f(act, net[t])
    return net, a


def loss_ref(a, d, mask, n_out):
    n = a.shape[1]
    e = np.zeros((a.shape[0] - 1, n))
    for t in np.flatnonzero(mask):
        e[t, n - n_out:] = a[t + 1, n - n_out:] - d[t]
    return e, 0.5 * np.sum(e * e, axis=1)


def reference(W, U, b, a0, x, d, mask, act):
    """forward, delta by BPTT, E(t), dE/dW, dE/dU, dE/db (SPEC §1-2)."""
    n_out = d.shape[1]
    net, a = forward_ref(W, U, b, a0, x, act)
    fp = act_fprime(act, net)
    e, E = loss_ref(a, d, mask, n_out)
    T, n = net.shape
    delta = np.zeros((T, n))
    nxt = np.zeros(n)                      # delta(T+1) = 0
    for t in range(T - 1, -1, -1):
        delta[t] = fp[t] * (e[t] + W.T @ nxt)
        nxt = delta[t]
    return {"/forward/net": net, "/forward/a": a[1:], "/forward/fprime": fp,
            "/backward/delta": delta, "/backward/E": E,
            "/gradient/dE_dW": delta.T @ a[:-1], "/gradient/dE_dU": delta.T @ x,
            "/gradient/dE_db": delta.sum(axis=0)}


def model_of(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("/model/W", "/model/U", "/model/b", "/model/a0",
                                      "/input/x", "/input/d", "/input/target_mask")}


def check_against_reference(path, act):
    mo = model_of(path)
    ref = reference(mo["/model/W"], mo["/model/U"], mo["/model/b"], mo["/model/a0"],
                    mo["/input/x"], mo["/input/d"], mo["/input/target_mask"], act)
    data = read_all(path)
    for name, r in ref.items():
        err = rel(data[name], r)
        assert err <= RTOL, f"{path.name} {name}: rel {err:.3g} > {RTOL}"
    return ref


# --------------------------------------------------------------------------
# layout (SPEC §6)

LAYOUT_CASES = [("general-" + a, 3) for a in ACTIVATIONS] + [("paper", 4), ("paper", 1)]


@pytest.mark.parametrize("name,np_", LAYOUT_CASES)
def test_datasets_shapes_dtypes_descriptions(runs, name, np_):
    path, _, _ = runs(name, np_)
    c, _ = case_of(name)
    layout = expected_layout(c["n"], c["m"], c["n_out"], c["T"])
    with h5py.File(path, "r") as f:
        for group in ("model", "input", "forward", "backward", "gradient", "config"):
            assert isinstance(f.get(group), h5py.Group), group
        for name_, (shape, dtype, _) in layout.items():
            ds = f.get(name_)
            assert isinstance(ds, h5py.Dataset), f"{name_} missing"
            assert ds.shape == shape, name_
            assert ds.dtype == dtype, f"{name_}: {ds.dtype} (want {dtype.str})"
        # every dataset, scales and /config/ini included, carries a description
        missing = []

        def visit(n_, obj):
            if isinstance(obj, h5py.Dataset):
                d = obj.attrs.get("description")
                if d is None or not as_str(d).strip():
                    missing.append(n_)
        f.visititems(visit)
        assert not missing, f"datasets without description: {missing}"


@pytest.mark.parametrize("name,np_", [("general-tanh", 3), ("paper", 4)])
def test_root_attributes(gradflow, runs, name, np_):
    path, args, _ = runs(name, np_)
    v = gradflow.ok(["--version"], np=1).stdout
    m = re.search(r"gradflow (\S+) \(git (\S+)\)", v)
    assert m, v
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert as_str(a["format"]) == "gradflow/1"
        assert as_str(a["program_version"]) == m.group(1)
        assert as_str(a["git_revision"]) == m.group(2)
        assert shlex.split(as_str(a["command_line"])) == [gradflow.bin, *args]
        assert int(a["mpi_ranks"]) == np_
        assert as_str(a["grid"]) == f"1x{np_}"
        created = datetime.datetime.strptime(as_str(a["created_utc"]), "%Y-%m-%dT%H:%M:%SZ")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert abs((now - created).total_seconds()) < 600, (created, now)
        assert int(a["complete"]) == 1


@pytest.mark.parametrize("name,np_", [("general-relu", 3), ("paper", 4)])
def test_config_group(gradflow, runs, name, np_):
    path, _, _ = runs(name, np_)
    c, act = case_of(name)
    options = help_options(gradflow)
    with h5py.File(path, "r") as f:
        cfg = f["config"]
        attrs = {k: cfg.attrs[k] for k in cfg.attrs if k != "description"}
        assert sorted(attrs) == sorted(options), "one /config attribute per option"
        ini_ds = cfg["ini"]
        assert ini_ds.dtype.kind in "SOU"
        ini = as_str(ini_ds[()])
    kv = parse_ini(ini)
    # every option that may appear in an INI file; 'config' itself cannot be nested, and
    # a simulation's INI leaves out the training options (it replays without `train`)
    assert sorted(kv) == sorted(set(options) - {"config"} - set(help_options(gradflow, True)))
    for k, text in kv.items():
        val = attrs[k]
        if isinstance(val, (str, bytes)):
            assert as_str(val) == text, k
        elif np.issubdtype(type(val), np.integer):
            assert int(text) == int(val), k
        else:
            assert float(text) == float(val), k            # %.17g round-trips exactly
    assert int(attrs["units"]) == c["n"] and int(attrs["inputs"]) == c["m"]
    assert int(attrs["outputs"]) == c["n_out"] and int(attrs["steps"]) == c["T"]
    assert as_str(attrs["activation"]) == act
    assert int(attrs["seed"]) == c["seed"]
    assert float(attrs["w-max"]) == c["w_max"] and float(attrs["bias-scale"]) == c["bias"]
    assert float(attrs["a0-scale"]) == c["a0"]
    assert as_str(attrs["target-times"]) == c["times"]
    # the grid option stays as given ("" = the default 1xP), so the stored configuration
    # replays on any rank count; the root attribute /grid records the grid used
    assert as_str(attrs["grid"]) in ("", f"1x{np_}")
    assert as_str(attrs["output"]) == str(path)
    assert int(attrs["quiet"]) == 1 and int(attrs["force"]) == 0 and int(attrs["dry-run"]) == 0


@pytest.mark.parametrize("name,np_", LAYOUT_CASES)
def test_loss_and_norm_attributes(runs, name, np_):
    path, _, _ = runs(name, np_)
    with h5py.File(path, "r") as f:
        E = f["/backward/E"][()]
        loss = float(f["/backward/E"].attrs["loss"])
        dW = f["/gradient/dE_dW"][()]
        norm = float(f["/gradient/dE_dW"].attrs["norm_fro"])
    assert loss > 0
    assert abs(loss - E.sum()) <= RTOL * abs(E.sum())
    fro = np.sqrt(np.sum(dW * dW))
    assert fro > 0
    assert abs(norm - fro) <= RTOL * fro


@pytest.mark.parametrize("name,np_", LAYOUT_CASES)
def test_dimension_scales(runs, name, np_):
    path, _, _ = runs(name, np_)
    c, _ = case_of(name)
    n, m, n_out, T = c["n"], c["m"], c["n_out"], c["T"]
    with h5py.File(path, "r") as f:
        for dname, (shape, _, axes) in expected_layout(n, m, n_out, T).items():
            ds = f[dname]
            group = dname.rsplit("/", 1)[0]
            assert len(ds.dims) == len(axes)
            for k, axis in enumerate(axes):
                assert len(ds.dims[k]) == 1, f"{dname} dim {k}: {len(ds.dims[k])} scales attached"
                sc = ds.dims[k][0]
                assert sc.name == f"{group}/{axis}", f"{dname} dim {k} -> {sc.name}"
                assert h5py.h5ds.is_scale(sc.id)
                assert as_str(sc.attrs["NAME"]) == axis
                assert sc.shape == (shape[k],)
                assert sc.dtype.kind == "i"
                np.testing.assert_array_equal(sc[()], scale_values(axis, n, m, n_out, T))


@pytest.mark.parametrize("name", ["general-" + a for a in ACTIVATIONS] + ["paper"])
def test_generated_values(runs, name):
    """Counter-based initialisation lands in the documented ranges; targets follow the mask."""
    path, _, _ = runs(name, 3)
    c, act = case_of(name)
    mo = model_of(path)
    W, U, b, a0 = mo["/model/W"], mo["/model/U"], mo["/model/b"], mo["/model/a0"]
    x, d, mask = mo["/input/x"], mo["/input/d"], mo["/input/target_mask"]
    assert np.all(np.abs(W) <= c["w_max"]) and np.abs(W).max() > 0.3 * c["w_max"]
    assert np.all(np.abs(U) <= 1.0) and np.all(np.abs(x) <= 1.0)
    assert np.all(np.abs(b) <= c["bias"]) and np.all(np.abs(a0) <= c["a0"])
    if c["bias"]:
        assert np.all(b != 0) and len(set(b.tolist())) == len(b)
    if c["a0"]:
        assert np.all(a0 != 0)
    if c["m"]:
        assert np.all(x != 0) and np.all(U != 0)
    expect = np.zeros(c["T"], dtype=np.uint8)
    expect[np.array(c["expect_times"]) - 1] = 1
    np.testing.assert_array_equal(mask, expect)
    assert np.all(d[mask == 0] == 0)
    on = d[mask == 1]
    lo = 0.0 if act in ("logistic", "relu") else -1.0
    assert np.all(on >= lo) and np.all(on <= 1.0) and np.all(on != 0)


# --------------------------------------------------------------------------
# maths (SPEC §1-2)

@pytest.mark.parametrize("name", ["general-" + a for a in ACTIVATIONS] + ["paper"])
def test_matches_numpy_reference(runs, name):
    path, _, _ = runs(name, 3)
    _, act = case_of(name)
    ref = check_against_reference(path, act)
    # the reference is not trivially zero anywhere that matters
    for k in ("/backward/delta", "/backward/E", "/gradient/dE_dW", "/gradient/dE_db"):
        assert np.abs(ref[k]).max() > 1e-6, k
    if name != "paper":
        assert np.abs(ref["/gradient/dE_dU"]).max() > 1e-6
        # several target times each contribute
        assert np.count_nonzero(ref["/backward/E"]) == len(GENERAL["expect_times"])


@pytest.mark.parametrize("name", ["general-" + a for a in ACTIVATIONS])
def test_gradient_by_finite_differences(runs, name):
    """dE/dW, dE/dU, dE/db of the file against central differences of E (forward only)."""
    path, _, _ = runs(name, 3)
    _, act = case_of(name)
    mo = model_of(path)
    W, U, b, a0 = mo["/model/W"], mo["/model/U"], mo["/model/b"], mo["/model/a0"]
    x, d, mask = mo["/input/x"], mo["/input/d"], mo["/input/target_mask"]
    with h5py.File(path, "r") as f:
        g = {k: f["/gradient/" + k][()] for k in ("dE_dW", "dE_dU", "dE_db")}

    def E(W_, U_, b_):
        _, a = forward_ref(W_, U_, b_, a0, x, act)
        return loss_ref(a, d, mask, d.shape[1])[1].sum()

    rng = np.random.default_rng(11)
    h = 1e-6
    for key, base in (("dE_dW", W), ("dE_dU", U), ("dE_db", b)):
        V = rng.standard_normal(base.shape)
        args_p = [W, U, b]
        args_m = [W, U, b]
        idx = {"dE_dW": 0, "dE_dU": 1, "dE_db": 2}[key]
        args_p[idx] = base + h * V
        args_m[idx] = base - h * V
        fd = (E(*args_p) - E(*args_m)) / (2 * h)
        an = np.sum(g[key] * V)
        assert abs(fd - an) <= 1e-6 * max(abs(an), np.abs(g[key]).sum() * 1e-3), (key, fd, an)


# --------------------------------------------------------------------------
# distribution (SPEC §5)

BITWISE = ("/model/W", "/model/U", "/model/b", "/model/a0", "/input/x", "/input/d",
           "/input/target_mask")


# (ranks, grid): 1xP by default; Pt > 1 splits the flow's target times over time groups
GRIDS = [(2, None), (3, None), (4, None), (3, "3x1"), (4, "2x2")]


@pytest.mark.parametrize("name", ["general-tanh", "paper"])
def test_rank_invariance(runs, name):
    """Every dataset of the file (/flow and /lag included) at 2, 3, 4 ranks and on grids
    with Pt > 1 against the 1-rank file."""
    c, _ = case_of(name)
    ref_path, _, _ = runs(name, 1)
    ref = read_all(ref_path)
    with h5py.File(ref_path, "r") as f:
        ref_loss = float(f["/backward/E"].attrs["loss"])
        ref_norm = float(f["/gradient/dE_dW"].attrs["norm_fro"])
    if name == "paper":
        assert ref["/model/U"].shape == (c["n"], 0) and ref["/input/x"].shape == (c["T"], 0)
        assert ref["/gradient/dE_dU"].shape == (c["n"], 0)
    for np_, grid in GRIDS:
        path, _, _ = runs(name, np_, grid)
        data = read_all(path)
        where = f"np={np_} grid={grid or '1x%d' % np_}"
        assert sorted(data) == sorted(ref), f"{where}: different datasets"
        for k, r in ref.items():
            if k == "/config/ini":
                continue
            a = data[k]
            assert a.dtype == r.dtype and a.shape == r.shape, (where, k)
            if k in BITWISE or a.dtype.kind != "f":
                assert a.tobytes() == r.tobytes(), f"{where}: {k} not bit-identical"
            else:
                err = rel(a, r)
                assert err <= RTOL, f"{where}: {k} rel {err:.3g}"
        with h5py.File(path, "r") as f:
            assert int(f.attrs["mpi_ranks"]) == np_
            assert as_str(f.attrs["grid"]) == (grid or f"1x{np_}")
            assert abs(float(f["/backward/E"].attrs["loss"]) - ref_loss) <= RTOL * ref_loss
            assert abs(float(f["/gradient/dE_dW"].attrs["norm_fro"]) - ref_norm) <= RTOL * ref_norm
        # and each is right by itself
        check_against_reference(path, case_of(name)[1])


@pytest.mark.parametrize("np_,grid,repeats", [(3, None, 5), (4, "2x2", 3)])
def test_same_grid_same_bytes(gradflow, tmp_path, np_, grid, repeats):
    """SPEC §5: the same grid and binary give identical bytes (the creation time pinned by
    SOURCE_DATE_EPOCH, the same command line run in separate directories).  Several
    repeats, since bytes that are not set deterministically differ only now and then."""
    args = [str(a) for a in case_args(GENERAL, "logistic")] + ["--quiet", "-o", "out.h5"]
    if grid:
        args += ["--grid", grid]
    files = []
    for k in range(repeats):
        d = tmp_path / f"run{k}"
        d.mkdir()
        gradflow.ok(args, np=np_, cwd=d, env={"SOURCE_DATE_EPOCH": "1700000000"})
        files.append((d / "out.h5").read_bytes())
    for k, other in enumerate(files[1:], 1):
        if other != files[0]:
            diff = [i for i in range(min(len(other), len(files[0]))) if other[i] != files[0][i]]
            pytest.fail(f"run {k} differs from run 0 in {len(diff)} bytes, first at offset "
                        f"{diff[0] if diff else len(files[0])} (sizes {len(files[0])}, {len(other)})")
    with h5py.File(tmp_path / "run0" / "out.h5", "r") as f:
        assert as_str(f.attrs["created_utc"]) == "2023-11-14T22:13:20Z"


# --------------------------------------------------------------------------
# input files

def write_inputs(d):
    rng = np.random.default_rng(5)
    n, T, m, n_out = 6, 8, 2, 2
    W = 0.6 * rng.standard_normal((n, n))
    x = rng.uniform(-1, 1, (T, m)).astype(np.float32)
    tg = rng.uniform(-0.9, 0.9, (T, n_out))
    tg[[0, 1, 3]] = np.nan                  # times 1, 2, 4 are not target times
    with h5py.File(d / "w.h5", "w") as f:
        f.create_dataset("params/W", data=W)
    with h5py.File(d / "xd.h5", "w") as f:
        f["x"] = x
        f["inputs/targets"] = tg
    return W, x, tg


def test_input_files(gradflow, tmp_path):
    W, x, tg = write_inputs(tmp_path)
    out = tmp_path / "from-files.h5"
    gradflow.ok(["--weights", f"{tmp_path}/w.h5:/params/W", "--inputs-file", f"{tmp_path}/xd.h5:/x",
                 "--targets-file", f"{tmp_path}/xd.h5:/inputs/targets", "--activation", "tanh",
                 "--bias-scale", "0.3", "--a0-scale", "0.2", "--quiet", "-o", out], np=3)
    n, T, m, n_out = W.shape[0], x.shape[0], x.shape[1], tg.shape[1]
    with h5py.File(out, "r") as f:
        assert int(f["config"].attrs["units"]) == n
        assert int(f["config"].attrs["steps"]) == T
        assert int(f["config"].attrs["inputs"]) == m
        assert int(f["config"].attrs["outputs"]) == n_out
        for k, (shape, dtype, _) in expected_layout(n, m, n_out, T).items():
            assert f[k].shape == shape and f[k].dtype == dtype, k
        assert f["/model/W"][()].tobytes() == W.astype("<f8").tobytes()
        assert f["/input/x"][()].tobytes() == x.astype("<f8").tobytes()
        mask = f["/input/target_mask"][()]
        d = f["/input/d"][()]
    keep = ~np.isnan(tg).any(axis=1)
    np.testing.assert_array_equal(mask, keep.astype(np.uint8))
    assert np.array_equal(d[keep], tg[keep])
    assert np.all(d[~keep] == 0)
    check_against_reference(out, "tanh")


def test_targets_file_with_many_irregular_target_times(gradflow, tmp_path):
    """Any mask over tau is a valid set of target times (SPEC §1): a long run whose targets
    file has ~20000 irregularly placed target rows must run and record them."""
    rng = np.random.default_rng(4)
    T = 40000
    tg = rng.uniform(0, 1, (T, 1))
    tg[rng.random(T) < 0.5] = np.nan
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["d"] = tg
    out = tmp_path / "long.h5"
    gradflow.ok(["--units", "2", "--targets-file", f"{tmp_path}/t.h5:/d", "--flow-targets", "none",
                 "--quiet", "-o", out], np=3)
    with h5py.File(out, "r") as f:
        keep = ~np.isnan(tg[:, 0])
        np.testing.assert_array_equal(f["/input/target_mask"][()], keep.astype(np.uint8))
        assert np.array_equal(f["/input/d"][()][keep], tg[keep])


def test_weights_file_sets_units(gradflow, tmp_path):
    """Only W from a file (big-endian float64): n from its shape, everything else generated."""
    W = np.random.default_rng(9).uniform(-0.5, 0.5, (5, 5))
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("W", data=W.astype(">f8"))
    out = tmp_path / "w-only.h5"
    gradflow.ok(["--weights", f"{tmp_path}/w.h5:/W", "--inputs", "2", "--steps", "4",
                 "--outputs", "2", "--quiet", "-o", out], np=2)
    with h5py.File(out, "r") as f:
        assert f["/model/W"][()].tobytes() == W.tobytes()
        assert f["/model/U"].shape == (5, 2) and f["/forward/a"].shape == (4, 5)
        assert int(f["config"].attrs["units"]) == 5
    check_against_reference(out, "logistic")


def same_datasets(p, q):
    a, b = read_all(p), read_all(q)
    a.pop("/config/ini"), b.pop("/config/ini")
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs between {p.name} and {q.name}"


def ini_of(path):
    with h5py.File(path, "r") as f:
        return as_str(f["/config/ini"][()])


def test_config_ini_of_input_file_run_repeats_it(gradflow, tmp_path):
    """/config/ini says 'gradflow --config accepts it to repeat the run' - also for a run
    that read W, x and d from files."""
    write_inputs(tmp_path)
    first = tmp_path / "first.h5"
    gradflow.ok(["--weights", f"{tmp_path}/w.h5:/params/W", "--inputs-file", f"{tmp_path}/xd.h5:/x",
                 "--targets-file", f"{tmp_path}/xd.h5:/inputs/targets", "--quiet", "-o", first], np=2)
    (tmp_path / "again.ini").write_text(ini_of(first))
    again = tmp_path / "again.h5"
    gradflow.ok(["--config", tmp_path / "again.ini", "-o", again], np=2)
    same_datasets(first, again)


# --------------------------------------------------------------------------
# --config

CONFIG_INI = """\
# a comment
; another comment
[gradflow]
units = 5
steps = 7
inputs = 2
outputs = 2
activation = tanh
seed = 42
bias-scale = 0.25
a0-scale = 0.5
target-times = 2:T
quiet = true
"""


def test_config_file(gradflow, tmp_path):
    ini = tmp_path / "run.ini"
    ini.write_text(CONFIG_INI)
    a = tmp_path / "a.h5"
    gradflow.ok(["--config", ini, "--units", "6", "-o", a], np=2)      # the command line wins
    with h5py.File(a, "r") as f:
        at = f["config"].attrs
        assert int(at["units"]) == 6
        assert int(at["steps"]) == 7 and int(at["inputs"]) == 2 and int(at["outputs"]) == 2
        assert as_str(at["activation"]) == "tanh" and int(at["seed"]) == 42
        assert float(at["bias-scale"]) == 0.25 and float(at["a0-scale"]) == 0.5
        assert as_str(at["target-times"]) == "2:T"
        assert as_str(at["config"]) == str(ini)
        assert f["/model/W"].shape == (6, 6) and f["/input/x"].shape == (7, 2)
        np.testing.assert_array_equal(f["/input/target_mask"][()], [0, 1, 1, 1, 1, 1, 1])
    check_against_reference(a, "tanh")

    # the same options on the command line alone give the same datasets
    b = tmp_path / "b.h5"
    gradflow.ok(["--units", "6", "--steps", "7", "--inputs", "2", "--outputs", "2",
                 "--activation", "tanh", "--seed", "42", "--bias-scale", "0.25", "--a0-scale", "0.5",
                 "--target-times", "2:T", "--quiet", "-o", b], np=2)
    same_datasets(a, b)

    # /config/ini fed back as --config repeats the run (its 'output' key loses to -o)
    again_ini = tmp_path / "again.ini"
    again_ini.write_text(ini_of(a))
    c = tmp_path / "c.h5"
    gradflow.ok(["--config", again_ini, "-o", c], np=2)
    same_datasets(a, c)
    ka, kc = parse_ini(ini_of(a)), parse_ini(ini_of(c))
    assert kc.pop("output") == str(c) and ka.pop("output") == str(a)
    assert ka == kc


# --------------------------------------------------------------------------
# the output file's life cycle

ARGS_SMALL = ["--units", "4", "--steps", "5", "--quiet"]


def test_no_partial_after_success(gradflow, tmp_path):
    gradflow.ok([*ARGS_SMALL, "-o", "out.h5"], np=3, cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert int(f.attrs["complete"]) == 1


def test_command_line_attribute_quotes_arguments(gradflow, tmp_path):
    """/command_line splits back (POSIX shell rules) into the exact argv."""
    args = [*ARGS_SMALL, "--target-times", "2,4", "-o", "it's a run.h5"]
    gradflow.ok(args, np=2, cwd=tmp_path)
    with h5py.File(tmp_path / "it's a run.h5", "r") as f:
        assert shlex.split(as_str(f.attrs["command_line"])) == [gradflow.bin, *args]
        np.testing.assert_array_equal(f["/input/target_mask"][()], [0, 1, 0, 1, 0])


def test_force_replaces_existing_output(gradflow, tmp_path):
    old = tmp_path / "out.h5"
    old.write_bytes(b"not an HDF5 file, must be replaced\n")
    gradflow.ok([*ARGS_SMALL, "--force", "-o", "out.h5"], np=2, cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    with h5py.File(old, "r") as f:
        assert int(f.attrs["complete"]) == 1 and f["/model/W"].shape == (4, 4)


def test_stale_partial_is_replaced(gradflow, tmp_path):
    (tmp_path / "out.h5.partial").write_bytes(b"left over from a crashed run\n")
    gradflow.ok([*ARGS_SMALL, "-o", "out.h5"], np=2, cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert int(f.attrs["complete"]) == 1
