"""`LiberoPlusEnv`: one LIBERO-plus variant in a worker process.

It is `LiberoEnv` (openpi's LIBERO client protocol, cameras rendered on demand from a snapshot of `MjData`) built
on LIBERO-plus's `ControlEnv` (`liberoplus/envs/env_wrapper.py`), given the same BDDL path upstream's evaluation
gives it (`bddl_files/<suite>/<variant>.bddl`; its name carries the camera, robot and noise codes), with:
- its own `LIBERO_CONFIG_PATH` and asset root (`evalkit.suites.liberoplus.config_file` / `assets`);
- the variant's init file read without pickle execution (`init_files.py`);
- sensor noise applied by evalkit to the `agentview` frames it renders (upstream's `ControlEnv.step` corrupts
  `agentview_image` only, raw render, before the client's flip and resize; `noise.py`). Upstream draws from the
  global `np.random` once per control step; evalkit draws from a generator seeded by (episode seed, observable
  sample index), so a frame's noise does not depend on which other frames were rendered (videos, skipped steps).

As upstream, a robot-initial-state variant builds robot `Panda<N>` (its perturbed rest pose), and
`set_init_state` then writes the base task's joint positions: the perturbation survives as the controller's
nullspace rest target, not as the starting pose. evalkit keeps that behaviour (it is what the published numbers
measured).

A worker that imports LIBERO-plus must never import LIBERO (both register the same robot names with robosuite,
and LIBERO-plus patches robosuite); `_build` refuses if LIBERO is already loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import types

import numpy as np

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec
from evalkit.suites.libero.env import LiberoEnv
from evalkit.suites.robosuite_logs import quiet_robosuite_import

NOISY_CAMERA = "agentview"  # env_wrapper.py: obs["agentview_image"] only


class _WandPlaceholder:
    """Stands in for Wand's `library` and `Image` while upstream's env_wrapper.py is imported: the module binds them
    at import time (`from wand.api import library`, `class MotionImage(WandImage)`) but only its motion-blur noise
    calls them, and evalkit applies that noise itself (`noise.py`, which imports the real Wand when a motion-blur
    variant runs). Any use of the placeholder raises, so nothing can silently skip the blur."""

    def __init__(self, *args, **kwargs):
        if args or kwargs:  # `WandImage(...)`: upstream's own motion blur, which evalkit never calls
            raise RuntimeError(
                "upstream's motion blur is not used by evalkit (see evalkit.suites.liberoplus.noise)"
            )

    def __getattr__(self, name: str) -> _WandPlaceholder:
        return _WandPlaceholder()

    def __setattr__(self, name: str, value) -> None:  # `library.MagickMotionBlurImage.argtypes = (...)`
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            "upstream's motion blur is not used by evalkit (see evalkit.suites.liberoplus.noise)"
        )


@contextlib.contextmanager
def wand_not_loaded():
    """Import upstream's env_wrapper.py without loading ImageMagick: `wand`, `wand.api` and `wand.image` are
    placeholders for the duration of the import, then removed again (a real `import wand` later gets the real one).
    Without this, every LIBERO-plus variant fails on a machine without libMagickWand, though only motion blur
    (noise codes 1-10) needs it."""
    names = ("wand", "wand.api", "wand.image")
    saved = {name: sys.modules.get(name) for name in names}
    if all(saved.values()):  # the real Wand is loaded already: nothing to keep from loading
        yield
        return
    package = types.ModuleType("wand")
    package.__path__ = []  # a package, so `wand.api` resolves to the placeholder below
    api, image = types.ModuleType("wand.api"), types.ModuleType("wand.image")
    api.library = _WandPlaceholder()
    image.Image = _WandPlaceholder
    package.api, package.image = api, image
    sys.modules.update({"wand": package, "wand.api": api, "wand.image": image})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_liberoplus_control_env(assets):
    """LIBERO-plus's ControlEnv with evalkit's config and asset paths (in a worker process only)."""
    if "libero.libero" in sys.modules:
        raise EvalkitError(
            "this process already imported LIBERO; LIBERO-plus must run in a worker of its own "
            "(run LIBERO and LIBERO-plus suites in separate evalkit runs)"
        )
    import io

    from evalkit.suites.liberoplus.assets import point_env_at_assets
    from evalkit.suites.liberoplus.config_file import ensure_liberoplus_config

    ensure_liberoplus_config(assets)
    # stdout: the config notice; stderr: gym's "unmaintained" notice (gym is imported by envs/venv.py)
    with (
        quiet_robosuite_import(),
        wand_not_loaded(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        from liberoplus.liberoplus.envs.env_wrapper import ControlEnv
    point_env_at_assets(assets)
    return ControlEnv


class LiberoPlusEnv(LiberoEnv):
    """A `SimEnv` for one LIBERO-plus variant."""

    def __init__(self, suite: SuiteSpec, task_id: int):
        variant = suite.options["variants"].get(task_id)
        if variant is None:
            raise EvalkitError(f"suite {suite.name!r} has no runnable variant {task_id}")
        files = {"bddl": variant["env_bddl"], "init_states": variant["init_file"]}
        # what LiberoEnv reads
        super().__init__(dataclasses.replace(suite, options={"task_files": {task_id: files}}), task_id)
        self.flat_init = bool(variant["flat_init"])
        self.noise_code = int(variant.get("noise") or 0)
        self._noise_seed = 0
        self._sample_index = 0

    def _control_env_class(self) -> type:
        from evalkit.suites.liberoplus.assets import asset_root

        assets, _ = asset_root()
        return import_liberoplus_control_env(assets)

    def _build(self) -> None:
        super()._build()
        self._env.noise = 0  # evalkit applies the variant's noise to its own frames (raw_image)

    def _take_snapshot(self) -> None:
        super()._take_snapshot()
        self._sample_index += 1

    def _init_state(self, index: int) -> np.ndarray:
        if self._init_states is None:
            from evalkit.suites.liberoplus.init_files import load_init_states

            self._init_states = load_init_states(self.init_states_file, flat=self.flat_init)
        return super()._init_state(index)

    def reset(self, episode: EpisodeSpec) -> None:
        self._noise_seed = episode.seed
        self._sample_index = 0
        super().reset(episode)

    def raw_image(self, camera: str) -> np.ndarray:
        image = super().raw_image(camera)
        if not self.noise_code or camera != NOISY_CAMERA:
            return image
        key = f"{camera}#noise"
        cached = self._render_cache.get(key)
        if cached is None:
            from evalkit.suites.liberoplus.noise import apply_noise

            rng = np.random.RandomState([self._noise_seed, self._sample_index])
            cached = apply_noise(image, self.noise_code, rng)
            self._render_cache[key] = cached
        return cached
