import subprocess
import sys

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.rundir.lock import RunLock

HOLD = """
import sys, time
from evalkit.rundir.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EvalkitError, match=rf"another evalkit process \(pid {holder.pid}\)"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # the lock died with its process
        pass


def test_the_lock_is_released_on_exit(tmp_path):
    with RunLock(tmp_path), pytest.raises(EvalkitError):
        RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()
