"""Running gradflow under MPI from the pytest suites (analysis/tests, tests/cli).

The binary and the launcher come from the environment so that CTest can point
the tests at its build:

    GRADFLOW_BIN      the gradflow executable (default <repo>/build/gradflow)
    GRADFLOW_MPIEXEC  the MPI launcher, may carry extra words (default mpiexec)

Every launch passes --oversubscribe, sets the Open MPI variables for running
as root with more ranks than cores, and is killed after TIMEOUT seconds (a
hang fails the test instead of blocking the suite).
"""
import os
import pathlib
import shlex
import signal
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# a run slower than this is a hang; sanitizer builds run slower (tests/CMakeLists.txt)
TIMEOUT = int(os.environ.get("GRADFLOW_TEST_TIMEOUT", "60"))

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def gradflow_bin():
    return os.environ.get("GRADFLOW_BIN") or str(REPO / "build" / "gradflow")


def mpiexec_words():
    return shlex.split(os.environ.get("GRADFLOW_MPIEXEC") or "mpiexec")


def child_env(extra=None):
    env = dict(os.environ)
    # gradflow checks SLURM_NTASKS against the rank count; a test run inside a
    # Slurm allocation must not trip over it.
    env.pop("SLURM_NTASKS", None)
    # pins /created_utc when set; tests that want it pass it explicitly
    env.pop("SOURCE_DATE_EPOCH", None)
    env.update(MPI_ENV)
    if extra:
        env.update(extra)
    return env


def run_mpi(args, np=1, cwd=None, env=None, timeout=TIMEOUT):
    """Runs `mpiexec --oversubscribe -np NP gradflow ARGS`; returns CompletedProcess.

    A run that does not finish within `timeout` seconds is killed (SIGTERM to
    the launcher, which takes its ranks down, then SIGKILL to its process
    group) and fails the calling test."""
    cmd = [*mpiexec_words(), "--oversubscribe", "-np", str(np), gradflow_bin(), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"gradflow did not finish within {timeout} s (hang?): {shlex.join(cmd)}\n"
                    f"--- stdout\n{out}\n--- stderr\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class Gradflow:
    """The program under test, as a fixture."""

    bin = property(lambda self: gradflow_bin())

    def run(self, args, np=1, cwd=None, env=None, timeout=TIMEOUT):
        return run_mpi(args, np=np, cwd=cwd, env=env, timeout=timeout)

    def ok(self, args, np=1, cwd=None, env=None):
        """Runs and asserts success; returns the CompletedProcess."""
        r = self.run(args, np=np, cwd=cwd, env=env)
        assert r.returncode == 0, (f"{shlex.join(r.args)} exited {r.returncode}\n"
                                   f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
        return r


@pytest.fixture(scope="session")
def gradflow():
    """The program under test (a pytest fixture; each suite's conftest imports it)."""
    if not os.access(gradflow_bin(), os.X_OK):
        pytest.fail(f"gradflow binary not found or not executable: {gradflow_bin()} "
                    "(build it, or set GRADFLOW_BIN)")
    return Gradflow()
