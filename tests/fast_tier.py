"""The fast tier's guard (see tests/conftest.py): under `pytest -m "not slow"` a test that starts a process, imports
a simulator or Ray, or launches Chromium fails with one line saying to mark it slow.

Imports are refused by a meta-path finder placed before Python's own; `importlib.util.find_spec` still answers
truthfully (the spec is real, only its loader refuses), so "is Ray installed?" checks work in fast tests. Process
creation is refused where every path to a child process goes through: `subprocess.Popen._execute_child`,
`multiprocessing`'s `BaseProcess.start`, and `os.fork` / `os.posix_spawn` / `os.system` (the only commands let through
are the instant ones evalkit and the standard library run to describe the machine: `git rev-parse`, `uname`,
`ldconfig`). The
refusal raises `pytest.fail`'s exception (not an `Exception`, so code under test cannot swallow it) and is also
recorded, so a refusal in another thread still fails the test that caused it.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import multiprocessing.process
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# what only slow tests may import: the simulators and Ray (LIBERO's and LIBERO-plus's task catalogs are data and
# stay allowed; their envs are the simulator)
SLOW_IMPORTS = ("mujoco", "robosuite", "ray", "libero.libero.envs", "liberoplus.liberoplus.envs")
# the standard library's own probes of the machine run commands (`platform.processor()` runs uname,
# `ctypes.util.find_library` runs ldconfig or the compiler); so does the manifest's `git rev-parse HEAD`
ALLOWED_CALLERS = (("ctypes", "util.py"), ("", "platform.py"))
ALLOWED_COMMANDS = (("git", "rev-parse"),)
MARK_IT = (
    "mark it slow (@pytest.mark.slow, or pytestmark = pytest.mark.slow for the module; see tests/conftest.py)"
)


def is_fast_tier(markexpr: str) -> bool:
    """Whether `-m markexpr` deselects every slow test: `not slow`, alone or joined to other terms by `and`."""
    terms = re.split(r"\band\b", markexpr)
    return " or " not in f" {markexpr} " and any(
        re.fullmatch(r"\s*\(?\s*not\s+slow\s*\)?\s*", t) for t in terms
    )


def module_is_slow(path: Path) -> bool:
    """Whether a test module marks all of itself slow (`pytestmark = pytest.mark.slow`, alone or in a list): the fast
    tier then never imports it, so it may import simulators at its top level."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError):
        return False
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            marks = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            if any(ast.unparse(mark).endswith("mark.slow") for mark in marks):
                return True
    return False


class Guard(importlib.abc.MetaPathFinder):
    """Refuses slow operations while installed; `where` names the test (or module being collected) to blame."""

    def __init__(self) -> None:
        self.where = "collection"
        self.refused: dict[str, str] = {}
        self._saved: list[tuple[object, str, object]] = []

    def refuse(self, what: str) -> None:
        message = f"{self.where} {what} in the fast tier: {MARK_IT}"
        self.refused.setdefault(self.where, message)
        pytest.fail(message, pytrace=False)

    # ------------------------------------------------------------------ imports

    def find_spec(self, name, path=None, target=None):
        if not any(name == slow or name.startswith(f"{slow}.") for slow in SLOW_IMPORTS):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _RefusingLoader(self, name)
        return spec

    # ------------------------------------------------------------------ processes

    def install(self) -> None:
        sys.meta_path.insert(0, self)
        guard = self

        def execute_child(popen, args, *rest, **kwargs):
            words = [
                os.fsdecode(a) for a in ([args] if isinstance(args, str | bytes | os.PathLike) else args)
            ]
            if _allowed(words):
                return original(popen, args, *rest, **kwargs)
            browser = any("chrom" in Path(w).name for w in words[:1])
            guard.refuse("launches Chromium" if browser else f"starts a subprocess ({' '.join(words)[:80]})")

        def start_process(process):
            guard.refuse(f"starts a process (multiprocessing: {process.name})")

        original = subprocess.Popen._execute_child
        self._patch(subprocess.Popen, "_execute_child", execute_child)
        self._patch(multiprocessing.process.BaseProcess, "start", start_process)
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                self._patch(os, name, _refusing_os_function(guard, name))

    def _patch(self, owner: object, name: str, replacement: object) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


def _allowed(words: list[str]) -> bool:
    if any(tuple(words[: len(allowed)]) == allowed for allowed in ALLOWED_COMMANDS):
        return True
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if any(
            path.name == name and (not package or path.parent.name == package)
            for package, name in ALLOWED_CALLERS
        ):
            return True
        frame = frame.f_back
    return False


def _refusing_os_function(guard: Guard, name: str):
    """A stand-in for `os.NAME` that refuses when called; it pickles as `os.NAME`, like the original (a test may
    pickle `os.system` without calling it, e.g. to build a malicious pickle that the code under test must refuse)."""

    def refuse(*args, **kwargs):
        guard.refuse(f"calls os.{name}")

    refuse.__module__, refuse.__name__, refuse.__qualname__ = "os", name, name
    return refuse


class _RefusingLoader(importlib.abc.Loader):
    def __init__(self, guard: Guard, name: str):
        self.guard, self.name = guard, name

    def create_module(self, spec):
        self.guard.refuse(f"imports {self.name!r}")

    def exec_module(self, module):
        self.guard.refuse(f"imports {self.name!r}")
