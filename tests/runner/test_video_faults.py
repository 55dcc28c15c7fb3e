"""`evalkit eval --video all` on real LIBERO scenes when videos cannot be written as asked: the episode and its
outcome are kept, the video is dropped or given a bounded name, and nothing is written outside the run directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_rows
from tests.test_video import files_under, small_disk

# slow: evalkit eval in subprocesses
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run_eval(out: Path, suite: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [
        *("eval", "--suite", suite, "--policy", "zero", "--out", str(out), "--tasks", "0"),
        *("--episodes-per-task", "1", "--max-steps", "3", "--workers", "1", "--video", "all", "--quiet"),
    ]
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=600,
    )


def test_full_disk_under_videos_keeps_the_episode_and_drops_the_video(tmp_path):
    run = tmp_path / "run"
    with small_disk(run / "videos", free_bytes=4096):
        proc = run_eval(run, "libero_spatial")
        assert proc.returncode == 0, proc.stderr[-3000:]
        (row,) = read_rows(run)
        assert row["termination"] == "max_steps" and row["steps"] == 3  # the outcome stands
        assert row["video"] is None
        assert row["error"].startswith("video not saved: ")
        assert [p.name for p in files_under(run / "videos")] == [".filler"]


def test_300_character_suite_name_gets_a_video_with_a_bounded_name(tmp_path):
    """Issue 10: the name was too long for the file system and the episode was recorded as a simulator error."""
    name = "s" * 300
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "long.yaml").write_text(json.dumps({"name": name, "extends": "libero_spatial"}))
    run = tmp_path / "run"
    proc = run_eval(run, name, env={"EVALKIT_TASKS": str(tasks)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = read_rows(run)
    assert row["suite"] == name and row["termination"] == "max_steps" and row["error"] is None
    video = run / row["video"]
    assert video.is_file() and video.resolve().is_relative_to(run.resolve() / "videos")
    assert all(len(part) <= 255 for part in row["video"].split("/"))


def test_suite_named_like_a_path_is_refused_before_anything_is_written(tmp_path):
    tasks = tmp_path / "deep" / "er" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "evil.yaml").write_text(json.dumps({"name": "../../../x", "extends": "libero_spatial"}))
    run = tmp_path / "deep" / "er" / "run"
    proc = run_eval(run, "../../../x", env={"EVALKIT_TASKS": str(tasks)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "invalid suite name" in proc.stderr
    assert not run.exists() and not list(tmp_path.rglob("*.mp4"))
