"""Bad input gets one clear line on stderr and a non-zero exit, and writes nothing."""

import pytest

from tests.helpers import assert_one_line_error, evalkit

# slow: the evalkit command in subprocesses
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--suite", "libero_nonsense", "--policy", "zero"], ["libero_nonsense"]),
        (["--suite", "libero_spatial", "--policy", "gpt5"], ["unknown policy", "gpt5"]),
        (["--suite", "libero_spatial", "--policy", "zero", "--tasks", "99"], ["99"]),
        (["--suite", "libero_spatial", "--policy", "oracle"], ["oracle"]),
        (["--suite", "libero_spatial", "--policy", "zero", "--episodes-per-task", "51"], ["51"]),
    ],
)
def test_bad_eval_input(tmp_path, args, needles):
    proc = evalkit("eval", *args, "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "run" / "episodes.sqlite").exists()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = evalkit(
        "eval", "--suite", "libero_spatial", "--policy", "zero", "--out", str(blocker / "run"), "--quiet"
    )
    assert_one_line_error(proc, "not writable")


def test_missing_rendering_backend(tmp_path):
    proc = evalkit(
        "eval",
        "--suite",
        "libero_spatial",
        "--policy",
        "zero",
        "--video",
        "all",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        env={"MUJOCO_GL": "nonexistent-backend"},
    )
    assert_one_line_error(proc)
