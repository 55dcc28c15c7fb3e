"""The CPU cores this process may run on: its affinity set where the OS has one (Linux), else all of them. The same
figure sizes the local runner's default worker count, a local Ray instance and the pi05 sampler's CPU threads."""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
