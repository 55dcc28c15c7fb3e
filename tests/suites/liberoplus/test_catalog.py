"""What the installed wheel offers on this machine, why the rest is unavailable, and agreement with upstream's own
benchmark module (run in a subprocess: importing LIBERO-plus patches robosuite)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.suites import registry
from evalkit.suites.liberoplus.assets import ASSETS_ENV, base_assets
from evalkit.suites.liberoplus.catalog import BENCHMARK_SUITES, suite_variants

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def base_assets_only(monkeypatch):
    monkeypatch.delenv(ASSETS_ENV, raising=False)
    suite_variants.cache_clear()
    yield
    suite_variants.cache_clear()


def test_offline_availability_by_dimension() -> None:
    runnable, total = {}, {}
    for suite in BENCHMARK_SUITES:
        for v in suite_variants(suite):
            d = v.info.dimension
            total[d] = total.get(d, 0) + 1
            runnable[d] = runnable.get(d, 0) + v.runnable
    # base LIBERO assets: every camera / robot / language / noise variant and the displaced-target layouts run;
    # no light variant (scenes/lights/ is in the asset pack only); 62 background variants use base textures
    for d in ("camera", "robot", "language", "noise"):
        assert runnable[d] == total[d]
    assert runnable["light"] == 0
    assert runnable["layout"] == 696
    assert runnable["background"] == 62
    assert sum(runnable.values()) == 7045


def test_missing_assets_give_one_line_reason() -> None:
    spec = registry.resolve("liberoplus_spatial")[0]
    light = next(v for v in suite_variants("libero_spatial") if v.info.dimension == "light")
    assert light.task_id not in {t.task_id for t in spec.tasks}
    with pytest.raises(EvalkitError) as err:
        registry.resolve("liberoplus_spatial", tasks=[light.task_id])
    message = str(err.value)
    assert "\n" not in message
    assert f"task {light.task_id} ({light.name}) is unavailable here" in message
    assert "scenes/lights/" in message
    # the suite's availability says which variants cannot run, why, and where the rest comes from
    lights = [t for t in spec.availability.unavailable if t.tags["dimension"] == "light"]
    assert len(lights) == 292 and {t.reason for t in lights} == {"needs asset pack: scenes/lights/"}
    assert len(spec.tasks) + len(spec.availability.unavailable) == 2402
    assert ASSETS_ENV in spec.availability.hint
    # and `evalkit eval` of the whole suite prints what it leaves out
    note = spec.unavailable_note()
    assert re.match(rf"^{2402 - len(spec.tasks)} tasks cannot run here and are not evaluated \(", note)
    assert "292 needs asset pack: scenes/lights/" in note and ASSETS_ENV in note


def test_asset_pack_enables_a_dimension(tmp_path, monkeypatch) -> None:
    """A pack folder with the scene a light variant needs makes that variant runnable."""
    light = next(v for v in suite_variants("libero_spatial") if v.info.dimension == "light")
    missing = light.missing[0].split(": ", 1)[1].split(" and ")[0]  # scenes/lights/<file>.xml
    pack = tmp_path / "assets"
    pack.mkdir()
    for entry in base_assets().iterdir():
        if entry.name != "scenes":
            (pack / entry.name).symlink_to(entry)
    (pack / "scenes").mkdir()
    for entry in (base_assets() / "scenes").iterdir():
        (pack / "scenes" / entry.name).symlink_to(entry)
    (pack / missing).parent.mkdir(parents=True, exist_ok=True)
    base_scene = (base_assets() / "scenes" / "libero_tabletop_base_style.xml").read_text()
    (pack / missing).write_text(base_scene.replace('"../textures/', '"../../textures/'))  # one folder deeper
    monkeypatch.setenv(ASSETS_ENV, str(pack))
    suite_variants.cache_clear()
    again = next(v for v in suite_variants("libero_spatial") if v.task_id == light.task_id)
    assert again.runnable, again.missing


def test_bad_asset_pack_is_one_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path / "nowhere"))
    suite_variants.cache_clear()
    with pytest.raises(EvalkitError, match="not a LIBERO-plus asset folder"):
        registry.resolve("liberoplus_spatial")


def test_kinds_that_run_alone_are_not_mixed(tmp_path, monkeypatch) -> None:
    (tmp_path / "mixed.yaml").write_text("name: mixed\ngroup: [libero_spatial, liberoplus_spatial]\n")
    monkeypatch.setenv("EVALKIT_TASKS", str(tmp_path))
    with pytest.raises(EvalkitError, match="mixes liberoplus suites with other kinds"):
        registry.resolve("mixed")


def test_protocols_differ_in_prompt_and_fingerprint() -> None:
    from evalkit.core.protocol import fingerprint

    upstream = registry.resolve("liberoplus_object", protocol="liberoplus")[0]
    clean = registry.resolve("liberoplus_object", protocol="liberoplus_clean")[0]
    assert dict(upstream.protocol.extra)["prompt"] == "upstream"
    assert dict(clean.protocol.extra)["prompt"] == "clean"
    assert upstream.protocol.episodes_per_task == 1 and upstream.protocol.max_steps == 280
    assert fingerprint(upstream.protocol.fingerprint_payload()) != fingerprint(
        clean.protocol.fingerprint_payload()
    )
    camera = next(t for t in upstream.tasks if t.tags["dimension"] == "camera")
    assert " view " in camera.language and " view " not in clean.task(camera.task_id).language


_UPSTREAM_BENCHMARK = """
import contextlib, io, sys
from evalkit.suites.liberoplus.assets import asset_root
from evalkit.suites.liberoplus.catalog import BENCHMARK_SUITES, suite_variants
from evalkit.suites.liberoplus.config_file import ensure_liberoplus_config
from evalkit.suites.liberoplus.env import wand_not_loaded
ensure_liberoplus_config(asset_root()[0])
# upstream's envs import Wand at module level; as in evalkit's workers, it is kept from loading (no ImageMagick here)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), wand_not_loaded():
    from liberoplus.liberoplus import benchmark
assert "libero" not in sys.modules, "LIBERO-plus imported LIBERO"
mismatches = 0
for suite in BENCHMARK_SUITES:
    with contextlib.redirect_stdout(io.StringIO()):
        bench = benchmark.get_benchmark_dict()[suite](task_order_index=0)
    for v in suite_variants(suite):
        task = bench.get_task(v.task_id)
        mismatches += (task.name, task.language) != (v.name, v.upstream_prompt)
print("mismatches", mismatches)
"""


@pytest.mark.slow
def test_names_order_and_upstream_prompts_equal_upstreams_benchmark(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVALKIT_CACHE": str(tmp_path)}
    env.pop(ASSETS_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_UPSTREAM_BENCHMARK)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("mismatches 0")
    # LIBERO-plus got its own config folder, not LIBERO's
    assert (tmp_path / "liberoplus" / "config" / "config.yaml").is_file()
    assert not (tmp_path / "libero").exists()


def test_without_imagemagick_motion_blur_is_unavailable(monkeypatch) -> None:
    from evalkit.suites.liberoplus import noise

    reason = "motion blur needs ImageMagick's libMagickWand and the Wand package (test)"
    monkeypatch.setattr(noise, "motion_blur_unavailable", lambda: reason)
    spec = registry.resolve("liberoplus_goal")[0]
    variants = spec.options["variants"]
    assert not any(0 < v["noise"] <= 10 for v in variants.values())
    assert any(v["noise"] > 10 for v in variants.values())
    blurred = [t for t in spec.availability.unavailable if t.reason == reason]
    assert blurred and all(t.tags["dimension"] == "noise" and t.tags["level"] <= 10 for t in blurred)
    assert reason in spec.unavailable_note()


def test_fog_needs_upstreams_render_size() -> None:
    from evalkit.suites.kinds import suite_kind

    data = registry._resolve_protocol(
        "liberoplus_goal", registry.yaml_entries()["liberoplus_goal"].data, None
    )
    data["protocol"] = {**data["protocol"], "render_size": [224, 224]}
    spec = suite_kind("liberoplus").load_suite("liberoplus_goal", data)
    fog = [r for r in spec.availability.by_reason() if "fog needs a 256x256 render" in r]
    assert fog and spec.availability.by_reason()[fog[0]] == sum(
        1 for v in suite_variants("libero_goal") if v.info.dimension == "noise" and 31 <= v.info.index <= 40
    )
