"""LiberoPlusEnv on real LIBERO-plus scenes, against upstream's OffScreenRenderEnv (what its evaluation runs).

Runs in a fresh subprocess: importing LIBERO-plus patches robosuite and registers the robot names LIBERO also
registers, so it must never share a process with the LIBERO tests (as it never shares an evalkit worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evalkit.suites.liberoplus.assets import ASSETS_ENV
from evalkit.suites.liberoplus.catalog import suite_variants

# slow: LIBERO-plus scenes
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SUITE = "libero_spatial"

_SCRIPT = """
import importlib.abc, json, sys

class NoImageMagick(importlib.abc.MetaPathFinder):  # as on a machine without libMagickWand: Wand cannot load
    def find_spec(self, name, path=None, target=None):
        if name == "wand" or name.startswith("wand."):
            raise ImportError("MagickWand shared library not found (blocked by the test)")

sys.meta_path.insert(0, NoImageMagick())
import numpy as np
from evalkit.core.episode import EpisodeSpec
from evalkit.images import apply_image_transforms
from evalkit.suites import registry
from evalkit.suites.libero.env import LiberoEnv
from evalkit.suites.kinds import make_env
from evalkit.suites.liberoplus.noise import apply_noise

IDS = json.loads(sys.argv[1])
STEPS = 3
out = {}
suite = registry.resolve("liberoplus_spatial", tasks=list(IDS.values()))[0]
p = suite.protocol
dummy = np.asarray(p.dummy_action, dtype=np.float64)

def run(task_id, steps=STEPS):
    env = make_env(suite, task_id)
    env.reset(EpisodeSpec(suite.name, task_id, 0, p.seed))
    for _ in range(steps):
        env.step(dummy)
    return env

# camera variant: evalkit's on-demand render equals upstream's OffScreenRenderEnv observation
camera = run(IDS["camera"])
ours = camera.raw_image("agentview").copy()
from liberoplus.liberoplus.envs.env_wrapper import OffScreenRenderEnv
from evalkit.suites.liberoplus.init_files import load_init_states
files = suite.options["variants"][IDS["camera"]]
ref = OffScreenRenderEnv(bddl_file_name=files["env_bddl"], camera_heights=256, camera_widths=256)
ref.seed(p.seed)
ref.reset()
ref.set_init_state(load_init_states(files["init_file"])[0])
for _ in range(STEPS):
    obs, *_ = ref.step(dummy)
out["camera_equals_upstream"] = bool(np.array_equal(obs["agentview_image"], ours))
out["camera_state_equals_upstream"] = bool(np.allclose(obs["robot0_eef_pos"], camera._obs["robot0_eef_pos"]))
ref.close()

# noise variant: the policy's agentview image is upstream's corruption of the raw render, then flip + resize;
# the wrist image is untouched
noisy = run(IDS["noise"])
raw = LiberoEnv.raw_image(noisy, "agentview")
rng = np.random.RandomState([p.seed, noisy._sample_index])
expected = apply_image_transforms(apply_noise(raw, noisy.noise_code, rng), p.image_transforms, p.image_size)
clean = apply_image_transforms(raw, p.image_transforms, p.image_size)
obs = noisy.observe(cameras=True)
out["noise_image_equals_expected"] = bool(np.array_equal(obs["observation/image"], expected))
out["noise_changed_image"] = bool(not np.array_equal(obs["observation/image"], clean))
wrist = apply_image_transforms(LiberoEnv.raw_image(noisy, "robot0_eye_in_hand"), p.image_transforms, p.image_size)
out["wrist_untouched"] = bool(np.array_equal(obs["observation/wrist_image"], wrist))
out["camera_view_differs_from_base"] = bool(not np.array_equal(raw, ours))
out["prompt"] = obs["prompt"]

# robot initial state variant: upstream's Panda<N> robot (set_init_state then overwrites its joints)
robot = run(IDS["robot"], steps=0)
out["robot_model"] = type(robot._env.env.robots[0].robot_model).__name__

out["wand_loaded"] = sorted(m for m in sys.modules if m == "wand" or m.startswith("wand."))
out["libero_imported"] = any(m == "libero" or m.startswith("libero.") for m in sys.modules)
print("RESULT " + json.dumps(out))
"""


def _first(dimension: str, noise_type: str | None = None) -> int:
    for v in suite_variants(SUITE):
        wanted_noise = noise_type is None or v.info.param.get("noise_type") == noise_type
        if v.runnable and v.info.dimension == dimension and wanted_noise:
            return v.task_id
    raise AssertionError(f"no runnable {dimension} variant")


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    ids = {"camera": _first("camera"), "noise": _first("noise", "fog"), "robot": _first("robot")}
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVALKIT_CACHE": str(tmp_path_factory.mktemp("home"))}
    env.pop(ASSETS_ENV, None)
    env.setdefault("MUJOCO_GL", "egl")
    env["PYOPENGL_PLATFORM"] = env["MUJOCO_GL"]
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), json.dumps(ids)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_camera_variant_renders_like_upstream(result: dict) -> None:
    assert result["camera_state_equals_upstream"]
    assert result["camera_equals_upstream"]
    assert result["camera_view_differs_from_base"]


def test_noise_applied_to_agentview_before_flip_and_resize(result: dict) -> None:
    assert result["noise_image_equals_expected"]
    assert result["noise_changed_image"]
    assert result["wrist_untouched"]
    assert result["prompt"].endswith("initstate 0 noise " + result["prompt"].rsplit(" ", 1)[-1])


def test_robot_variant_uses_upstreams_perturbed_robot(result: dict) -> None:
    variant = next(v for v in suite_variants(SUITE) if v.task_id == _first("robot"))
    assert (
        result["robot_model"] == f"MountedPanda{variant.info.index}"
    )  # upstream's robot `Panda<N>` on its mount


def test_worker_never_imports_libero(result: dict) -> None:
    assert result["libero_imported"] is False


def test_variants_run_without_imagemagick(result: dict) -> None:
    """Upstream's env_wrapper.py imports Wand at module level; evalkit keeps it from loading (only motion blur,
    which evalkit applies itself, needs it), so every other variant runs where libMagickWand is missing."""
    assert result["wand_loaded"] == []
