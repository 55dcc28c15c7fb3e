"""An env worker's signals, in a subprocess set up as `worker_main` sets itself up: SIGTERM exits with 143 and no
traceback, even when it lands inside a finalizer (where Python swallows the exit and prints "Exception ignored")."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SIGTERM_IN_A_FINALIZER = """
import os, signal, time
from evalkit.runner.worker import exit_on_signals

exit_on_signals()

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the Python-level handler runs here, inside the finalizer
            pass

Finalized()
while True:  # without the exit, the worker would go on
    time.sleep(0.01)
"""


def test_sigterm_inside_a_finalizer_still_exits_quietly():
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_IN_A_FINALIZER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
