import fcntl
import os
import subprocess
import sys

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.rundir.lock import RunLock

# holds the lock until the test closes its stdin (or kills it)
HOLD = """
import sys
from evalkit.rundir.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
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


def test_a_released_lock_leaves_no_file_naming_a_dead_process(tmp_path):
    lock = RunLock(tmp_path).acquire()
    assert (tmp_path / ".evalkit.lock").read_text() == str(os.getpid())
    lock.release()
    assert not (tmp_path / ".evalkit.lock").exists()
    with RunLock(tmp_path):  # and the next writer gets it
        assert (tmp_path / ".evalkit.lock").exists()


def test_a_writer_that_opened_the_file_before_its_removal_locks_the_new_one(tmp_path, monkeypatch):
    """Between opening the lock file and locking it, the holder may release it (removing the file) and a third
    writer may take a new one: locking the removed file would give two writers. The late one must notice."""
    first = RunLock(tmp_path).acquire()
    real_flock = fcntl.flock
    third: list[RunLock] = []
    interleaved = [False]

    def flock_after_a_release(fd, operation):
        if not interleaved[0]:  # the moment between open and flock: the holder leaves, another writer comes
            interleaved[0] = True
            first.release()
            third.append(RunLock(tmp_path).acquire())
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_release)
    with pytest.raises(EvalkitError, match=rf"another evalkit process \(pid {os.getpid()}\)"):
        RunLock(tmp_path).acquire()
    third[0].release()
