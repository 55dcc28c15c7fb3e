"""One writer per run directory: an exclusive OS file lock that dies with the process that holds it.

The lock file is removed on release (while still locked). A process that opened it just before and then gets the
lock finds the file gone (or replaced) and locks the current one instead, so two writers never both hold a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from evalkit.core.errors import EvalkitError

LOCK_NAME = ".evalkit.lock"


class RunLock:
    """`with RunLock(run_dir):` holds `run_dir/.evalkit.lock` exclusively; a second writer gets one line."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise EvalkitError(f"cannot lock {self.path.parent}: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise EvalkitError(
                    f"{self.path.parent} is being written by another evalkit process (pid {holder}); "
                    "wait for it to finish or choose another --out"
                ) from None
            if self._still_linked(fd):
                break
            os.close(fd)  # locked a file its holder removed on release: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file, then unlock: a finished run leaves no lock file naming a dead process."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
