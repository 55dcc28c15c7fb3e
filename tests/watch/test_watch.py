"""`evalkit watch` on a training run as it is written (issue 19's "done when"), in the openpi PyTorch and lerobot
layouts: three tiny pi0.5 checkpoints written one after another, the second caught half-written; each complete one
evaluated exactly once, the partial one never loaded; the watch killed (SIGKILL) in the middle of the third and
restarted with --once: the finished ones skipped, the third resumed; the report shows the curve and the held-out
re-evaluation. Every wait is on observable state (watch.json, the episode store), never on a sleep's length."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.models.pi05.checkpoint import fingerprint_files
from tests.helpers import read_manifest, read_rows
from tests.report.runs import grid, write_run
from tests.watch.training import LoadableTraining, tiny_checkpoint

pytestmark = pytest.mark.slow

CEILING_S = 300.0
EPISODES = 3


def watch_command(root: Path, watch_dir: Path, tokenizer: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "evalkit.cli", "watch", str(root), "--suite", "droid_demo", "--out", str(watch_dir),
        "--config", "pi05_droid", "--tokenizer", str(tokenizer), "--tasks", "0",
        "--episodes-per-task", str(EPISODES), "--max-steps", "10", "--workers", "1", "--settle", "0",
        "--poll", "0.2", "--heldout-episodes-per-task", "2", "--quiet", *extra,
    ]  # fmt: skip


def state(watch_dir: Path) -> dict:
    try:
        return json.loads((watch_dir / "watch.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"checkpoints": {}, "waiting": {}}


def status(watch_dir: Path, checkpoint: Path) -> str | None:
    record = state(watch_dir)["checkpoints"].get(str(checkpoint))
    return record["status"] if record else None


def rows(run_dir: Path) -> list[dict]:
    return read_rows(run_dir) if (run_dir / "episodes.sqlite").exists() else []


def wait_for(condition, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + CEILING_S
    while time.monotonic() < deadline:
        if condition():
            return
        assert proc.poll() is None, (
            f"watch exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {CEILING_S:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("layout", ["openpi", "lerobot"])
def test_watch_a_training_run_with_a_partial_checkpoint_a_kill_and_a_resume(tmp_path, tiny, layout):
    run = LoadableTraining(tmp_path / "train", tiny)
    write = run.openpi_pytorch if layout == "openpi" else run.lerobot
    watch_dir, log = tmp_path / "watch", tmp_path / "watch.log"
    command = watch_command(run.root, watch_dir, run.tokenizer)

    first = write(1000)
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: status(watch_dir, first) == "done", proc, log, "step 1000 evaluated")

        partial = write(2000, part="first")
        wait_for(
            lambda: str(partial) in state(watch_dir)["waiting"], proc, log, "the partial checkpoint seen"
        )
        assert status(watch_dir, partial) is None
        second = write(2000, part="rest")
        wait_for(lambda: status(watch_dir, second) == "done", proc, log, "step 2000 evaluated")

        third = write(3000)
        third_run = watch_dir / "step_000003000"
        wait_for(lambda: len(rows(third_run)) >= 1, proc, log, "step 3000 under way")
        os.killpg(proc.pid, signal.SIGSTOP)  # frozen, so what it left is what we read
        before = {r["init_state"]: r["finished_at"] for r in rows(third_run)}
        assert status(watch_dir, third) == "running" and 1 <= len(before) < EPISODES
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)

    resumed = subprocess.run([*command, "--once"], capture_output=True, text=True, timeout=600)
    output = log.read_text() + resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]

    records = state(watch_dir)["checkpoints"]
    assert {r["step"]: r["status"] for r in records.values()} == {1000: "done", 2000: "done", 3000: "done"}
    assert set(records) == {str(first), str(second), str(third)}  # the partial one only under its final path
    for checkpoint, step, sessions in ((first, 1000, 1), (second, 2000, 1), (third, 3000, 2)):
        run_dir = watch_dir / f"step_{step:09d}"
        manifest = read_manifest(run_dir)
        assert manifest["config"]["training_step"] == step
        assert manifest["config"]["checkpoint"] == str(checkpoint)
        assert len(manifest["sessions"]) == sessions  # evaluated once; the third resumed once
        assert sorted(r["init_state"] for r in rows(run_dir)) == list(range(EPISODES))
        # the weights evaluated are the whole file as finally written
        weights = fingerprint_files([checkpoint / "model.safetensors"])
        assert manifest["policy"]["provenance"]["weights"] == weights
    assert all(
        before[r["init_state"]] == r["finished_at"] for r in rows(third_run) if r["init_state"] in before
    )
    assert output.count("step 2,000: evaluating") == 1 and "failed" not in output

    # every checkpoint at 0%: the tie goes to the later step, re-evaluated on init states 3 and 4 (the watch also
    # re-evaluated the checkpoints selected before, while it waited for the next one)
    heldout = state(watch_dir)["heldout"]["3000"]
    assert heldout["status"] == "done"
    assert sorted(r["init_state"] for r in rows(Path(heldout["run_dir"]))) == [EPISODES, EPISODES + 1]
    report = (watch_dir / "report" / "report.md").read_text()
    for step in ("1000", "2000", "3000"):
        assert f"|   {step} |" in report
    assert "Selected: step 3,000" in report and "On held-out episodes: 0.0%" in report
    html = (watch_dir / "report" / "report.html").read_text()
    assert 'id="plot-curve"><svg' in html and "held-out re-evaluation" in html


def test_ctrl_c_and_sigterm_stop_cleanly_and_resume(tmp_path, tiny):
    """Ctrl-C in the middle of a checkpoint: exit 130, the checkpoint stays `running` and the next watch resumes it;
    SIGTERM while the watch waits for the next checkpoint: exit 143. Both print the report's link."""
    run = LoadableTraining(tmp_path / "train", tiny)
    checkpoint = run.lerobot(1000)
    watch_dir, log = tmp_path / "watch", tmp_path / "watch.log"
    command = watch_command(run.root, watch_dir, run.tokenizer, "--heldout-episodes-per-task", "0")
    run_dir = watch_dir / "step_000001000"
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with log.open("w") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if signum == signal.SIGINT:
                wait_for(lambda: len(rows(run_dir)) >= 1, proc, log, "the checkpoint under way")
            else:
                # the watch report's link is said once the checkpoint is done and reported: the watch then polls
                wait_for(
                    lambda: "evalkit watch: report: file://" in log.read_text(), proc, log, "the watch idle"
                )
                assert status(watch_dir, checkpoint) == "done"
            os.killpg(proc.pid, signum)
            assert proc.wait(timeout=120) == code, log.read_text()[-8000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
        output = log.read_text()
        assert "Traceback" not in output and "the same command resumes" in output, output
        assert "report: file://" in output
        if signum == signal.SIGINT:
            assert status(watch_dir, checkpoint) == "running"
            assert read_manifest(run_dir)["sessions"][-1]["status"] == "interrupted"
    assert status(watch_dir, checkpoint) == "done"
    assert [s["status"] for s in read_manifest(run_dir)["sessions"]] == ["interrupted", "completed"]


def test_sequential_gate_stops_each_checkpoint_once_decided(tmp_path, tiny):
    """--against with --stop-when-decided: a checkpoint that fails every episode of a baseline that succeeded on
    all of them is stopped as soon as the anytime-valid test decides, long before its 40 planned episodes; the run
    records the stop and the watch's verdict is FAIL, the same one `evalkit regress` gives the two runs."""
    planned = 40
    baseline = write_run(
        tmp_path / "baseline",
        {key: True for key in grid("droid_demo", 4, planned)},  # a finished run of the whole suite
        protocol_changes={"droid_demo": {"max_steps": 10, "episodes_per_task": planned}},
    )
    run = LoadableTraining(tmp_path / "train", tiny)
    run.lerobot(1000)
    watch_dir = tmp_path / "watch"
    command = watch_command(run.root, watch_dir, run.tokenizer, "--episodes-per-task", str(planned))
    extra = ["--heldout-episodes-per-task", "0", "--against", str(baseline), "--stop-when-decided", "--once"]
    done = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    run_dir = watch_dir / "step_000001000"
    stop = read_manifest(run_dir)["stop"]
    assert stop["verdict"] == "fail" and stop["baseline_run_id"], output[-3000:]
    assert 1 <= stop["pairs"] <= len(rows(run_dir)) < planned
    assert not any(r["success"] for r in rows(run_dir))
    assert "gate: FAIL" in output
    regress = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit.cli",
            "regress",
            "--baseline",
            str(baseline),
            "--candidate",
            str(run_dir),
        ],
        capture_output=True,
    )
    assert regress.returncode == 1, regress.stdout.decode()[-2000:]
