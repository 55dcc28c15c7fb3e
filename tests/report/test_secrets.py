"""A remote policy's API key never reaches the run directory: a real `evalkit serve --api-key` on loopback, a real
`evalkit eval --api-key` against it, `evalkit report` in every format, then every byte under the run directory."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_manifest, read_rows
from tests.serving.wire_helpers import ServerProcess

# slow: evalkit serve and eval in subprocesses
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SECRET = "canary-Zq81-evalkit-secret-7f3e"


def evalkit(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )


def assert_no_secret_under(root: Path) -> int:
    forms = [SECRET.encode(), base64.b64encode(SECRET.encode()), SECRET.encode("utf-16-le")]
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for form in forms:
            assert form not in data, f"the API key leaked into {path}"
    return len(files)


@pytest.mark.parametrize("flag_style", ["separate", "equals"])
def test_api_key_never_reaches_the_run_directory_or_its_report(tmp_path, flag_style):
    run = tmp_path / "run"
    key_args = ["--api-key", SECRET] if flag_style == "separate" else [f"--api-key={SECRET}"]
    with ServerProcess("--policy", "zero", "--embodiment", "libero", "--api-key", SECRET) as server:
        proc = evalkit(
            *("eval", "--suite", "libero_spatial", "--policy", server.url, *key_args, "--out", str(run)),
            *("--tasks", "0", "--episodes-per-task", "1", "--max-steps", "3", "--workers", "1", "--quiet"),
            "--save-actions",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    (row,) = read_rows(run)
    assert row["termination"] == "max_steps" and row["policy_calls"] == 1  # the server really answered
    command = read_manifest(run)["command"]
    assert "***" in " ".join(command) and any(a.startswith("--api-key") for a in command)
    report = evalkit("report", str(run), "--formats", "md,csv,parquet,html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert SECRET not in report.stdout + report.stderr
    names = {p.name for p in (run / "report").iterdir()}
    assert {"report.md", "report.html", "episodes.csv", "episodes.parquet"} <= names
    assert assert_no_secret_under(run) >= 8


def test_wrong_api_key_is_one_line_and_not_echoed(tmp_path):
    run = tmp_path / "run"
    with ServerProcess("--policy", "zero", "--embodiment", "libero", "--api-key", "the-right-one") as server:
        proc = evalkit(
            *("eval", "--suite", "libero_spatial", "--policy", server.url, "--api-key", SECRET),
            *("--out", str(run), "--tasks", "0", "--episodes-per-task", "1", "--max-steps", "3", "--quiet"),
        )
    # One line of error, besides the one-line note that a key given as a flag shows in ps
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("evalkit eval: note:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert SECRET not in proc.stderr + proc.stdout
    if run.exists():
        assert_no_secret_under(run)


@pytest.mark.parametrize(
    "address",
    [f"ws://user:{SECRET}@127.0.0.1:9", f"ws://{SECRET}@127.0.0.1:9", f"ws://127.0.0.1:9/?token={SECRET}"],
    ids=["userinfo", "user-only", "query"],
)
def test_credentials_in_the_policy_address_are_refused_before_anything_is_written(tmp_path, address):
    """Found while testing issue 10: `ws://user:KEY@host` was stored verbatim in manifest.json (command, config,
    policy name), in every episode row's policy identity, and in the default run directory's name."""
    run = tmp_path / "run"
    proc = evalkit("eval", "--suite", "libero_spatial", "--policy", address, "--out", str(run), "--quiet")
    # One line of error, besides the one-line note that a key given as a flag shows in ps
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("evalkit eval: note:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "must not carry credentials" in proc.stderr and SECRET not in proc.stderr + proc.stdout
    assert not run.exists()


def test_abbreviated_key_flag_is_not_accepted(tmp_path):
    """Found while testing issue 10: argparse took `--api KEY` as --api-key, but the manifest only redacts the
    full flag, so the key was stored verbatim in manifest.json's command."""
    run = tmp_path / "run"
    for flag in (["--api", SECRET], [f"--api-k={SECRET}"]):
        proc = evalkit("eval", "--suite", "libero_spatial", "--policy", "zero", *flag, "--out", str(run))
        assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr
        assert not run.exists()
