"""bench/device_check.py runs where only torch, numpy, safetensors and sentencepiece are installed: at tiny size on
the CPU, in a subprocess without site-packages (`python -S`) whose path holds the standard library, the repository
(`PYTHONPATH=.`, from its root, as the README says) and links to those four distributions and what they require;
MuJoCo, Ray, robosuite, LIBERO, PyYAML, tqdm and the rest of the venv are not importable there."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# slow: runs bench/device_check.py in a bare subprocess
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"torch", "numpy", "safetensors", "sentencepiece"}


def dependencies(name: str, seen: set[str]) -> set[str]:
    """`name` and the distributions it requires, transitively (extras aside), as normalized names."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return seen
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return seen
    seen.add(key)
    for requirement in requires:
        if "extra ==" not in requirement:
            dependencies(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0], seen)
    return seen


def bare_site(root: Path) -> Path:
    """A directory of links to the top-level files of the allowed distributions and their requirements."""
    allowed: set[str] = set()
    for name in ALLOWED:
        dependencies(name, allowed)
    root.mkdir()
    for name in allowed:
        dist = importlib.metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or () if f.parts[0] != ".."}:
            if not (root / top).exists():
                (root / top).symlink_to(Path(dist.locate_file(top)).resolve())
    return root


def bare_python(site: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=f".{os.pathsep}{site}", **kw.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw
    )


def test_device_check_runs_on_a_bare_machine_at_tiny_size(tmp_path):
    site = bare_site(tmp_path / "site")
    done = bare_python(site, "bench/device_check.py", "--tiny", env={"OUT": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert sum(line.startswith("parity cpu ") and line.endswith(" OK") for line in lines) == 4
    assert re.fullmatch(
        r"device=cpu b1_ms=[\d.]+ b64_obs_per_s=[\d.]+ mfu_b64=[\d.]+ trim_speedup_b64=[\d.]+", lines[-1]
    ), lines[-1]
    report = json.loads((tmp_path / "device_check.json").read_text())
    measured = {(r["mode"], r["trim"], r["batch"]) for r in report["latency"] if "ms" in r}
    assert measured == {("eager", trim, b) for trim in (True, False) for b in (1, 4, 16, 64)}
    assert report["determinism"] == {"repeatable": True, "batch_invariant": True}
    assert all(r["ok"] for r in report["parity"].values())


def test_the_bare_environment_lacks_the_venvs_other_packages(tmp_path):
    site = bare_site(tmp_path / "site")
    probe = "import importlib.util as u; print([m for m in {m!r} if u.find_spec(m)])"
    wanted = ["torch", "numpy", "safetensors", "sentencepiece", "evalkit"]
    absent = ["mujoco", "ray", "robosuite", "libero", "yaml", "tqdm", "scipy", "PIL", "gymnasium"]
    done = bare_python(site, "-c", probe.format(m=wanted + absent), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(wanted)
