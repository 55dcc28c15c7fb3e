"""One writer per run directory: an exclusive OS file lock that dies with the process that holds it."""

from __future__ import annotations

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
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock; the file stays (harmless)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
