"""Bad input to `evalkit watch` is one line and exit 2 before anything runs: no env worker, no watch directory."""

from __future__ import annotations

import sys

import pytest

from evalkit.cli import main
from evalkit.watch.config import WatchConfig
from tests.report.runs import grid, write_run


def watch(tmp_path, capsys, *args: str, root=None) -> tuple[int, str]:
    root = root if root is not None else tmp_path / "train"
    # --once: a refusal that does not come ends the test instead of watching forever
    code = main(
        ["watch", str(root), "--suite", "droid_demo", "--out", str(tmp_path / "watch"), "--once", *args]
    )
    return code, capsys.readouterr().err


def assert_refused(tmp_path, code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("evalkit: error:"), err
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "watch").exists()


@pytest.fixture
def root(tmp_path):
    (tmp_path / "train").mkdir()
    return tmp_path / "train"


def test_unknown_root(tmp_path, capsys):
    code, err = watch(tmp_path, capsys, root=tmp_path / "no_such_run")
    assert_refused(tmp_path, code, err, "checkpoint root", "no_such_run", "is not a directory")


def test_unknown_tracker(tmp_path, capsys, root):
    code, err = watch(tmp_path, capsys, "--log", "neptune")
    assert_refused(tmp_path, code, err, "unknown tracker 'neptune'", "tensorboard, wandb, mlflow")


@pytest.mark.parametrize(
    "tracker,module", [("tensorboard", "tensorboardX"), ("wandb", "wandb"), ("mlflow", "mlflow")]
)
def test_tracker_extra_missing(tmp_path, capsys, root, monkeypatch, tracker, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as without the extra
    code, err = watch(tmp_path, capsys, "--log", tracker)
    assert_refused(tmp_path, code, err, f"--log {tracker}", f"pip install -e '.[{tracker}]'")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--every", "0"], "--every must be at least 1"),
        (["--poll", "0"], "--poll must be a positive number"),
        (["--settle", "-1"], "--settle must be"),
        (["--heldout-episodes-per-task", "-1"], "must not be negative"),
        (["--tasks", "99"], "99"),
    ],
)
def test_bad_settings(tmp_path, capsys, root, args, needle):
    code, err = watch(tmp_path, capsys, *args)
    assert_refused(tmp_path, code, err, needle)


def test_baseline_that_is_not_a_run_or_of_another_protocol(tmp_path, capsys, root):
    code, err = watch(tmp_path, capsys, "--against", str(tmp_path / "nothing"))
    assert_refused(tmp_path, code, err, "nothing")
    baseline = write_run(tmp_path / "baseline", {k: True for k in grid("droid_demo", 1, 2)})
    code, err = watch(tmp_path, capsys, "--against", str(baseline), "--max-steps", "5")
    assert_refused(
        tmp_path, code, err, "ran droid_demo under another protocol", "max_steps: 400 vs 5", "--max-steps"
    )


def test_stop_when_decided_needs_a_baseline(tmp_path, capsys, root):
    code, err = watch(tmp_path, capsys, "--stop-when-decided")
    assert_refused(tmp_path, code, err, "--stop-when-decided needs --against")


def test_every_takes_multiples_of_n():
    config = WatchConfig("root", "droid_demo", every=2000)
    assert [s for s in (1000, 2000, 3000, 4000, 5000, 6000) if config.wants(s)] == [2000, 4000, 6000]
    assert all(WatchConfig("root", "droid_demo").wants(s) for s in (1, 7, 1000))


def test_default_watch_directory_names_root_and_suite(tmp_path):
    (tmp_path / "my run").mkdir()
    assert WatchConfig(tmp_path / "my run", "droid_demo").watch_dir().as_posix() == (
        "results/watch/my_run__droid_demo"
    )


def test_a_stop_while_the_report_is_written_exits_143_in_one_line(tmp_path, capsys, root, monkeypatch):
    """SIGTERM landing inside the report's writing (seen under load): the report on the way out fails too; the watch
    still says so in one line and exits 143, no traceback."""
    from evalkit.runner.runner import Terminated
    from evalkit.watch.watcher import Watcher

    def stopped(self) -> None:
        raise Terminated

    def unwritable(self, force: bool = False) -> str:
        raise AttributeError("module 'matplotlib' has no attribute 'get_data_path'")

    monkeypatch.setattr(Watcher, "run", stopped)
    monkeypatch.setattr(Watcher, "write_report", unwritable)
    code = main(["watch", str(root), "--suite", "droid_demo", "--out", str(tmp_path / "watch"), "--once"])
    out, err = capsys.readouterr()
    assert code == 143, err
    assert "Traceback" not in err and "the same command resumes" in err
    assert "report not written (AttributeError: module 'matplotlib'" in out
