"""Fixtures of the command-line tests; the MPI runner is tests/pylib/gfrun.py."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "pylib"))
from gfrun import REPO, TIMEOUT, Gradflow, gradflow_bin, run_mpi  # noqa: E402,F401


@pytest.fixture(scope="session")
def gradflow():
    if not os.access(gradflow_bin(), os.X_OK):
        pytest.fail(f"gradflow binary not found or not executable: {gradflow_bin()} "
                    "(build it, or set GRADFLOW_BIN)")
    return Gradflow()
