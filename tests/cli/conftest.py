"""Fixtures of the command-line tests: the MPI runner and the `gradflow` fixture are
tests/pylib/gfrun.py, shared by both pytest suites."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "pylib"))
from gfrun import REPO, TIMEOUT, Gradflow, gradflow, gradflow_bin, run_mpi  # noqa: E402,F401
