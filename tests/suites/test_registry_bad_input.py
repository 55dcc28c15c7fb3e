"""Suite files are data from users: each bad one is a one-line error (exit 2 through the CLI), never a traceback,
a hang or a write outside the run directory."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.suites import registry
from evalkit.suites.yamlfile import load_yaml

# slow: the evalkit command in subprocesses
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

# 9 levels of 9 aliases each: 9**9 (387 million) leaves from ~530 bytes (issue 10: `evalkit suites` hung at 2.4 GB).
ALIAS_BOMB = "name: bomb\nkind: droid\n" + "\n".join(
    [
        "a: &a [x, x, x, x, x, x, x, x, x]",
        *[f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)],
        "description: *i",  # `evalkit suites` prints the description: str() walks all 9**9 leaves
    ]
)


def evalkit(*argv: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    def limit_memory() -> None:  # a regression must fail the test, not take the shared machine down
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=timeout,
        preexec_fn=limit_memory,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: "), proc.stderr[-2000:]
    return lines[0]


def test_alias_bomb_is_refused_in_a_second(tmp_path):
    assert len(ALIAS_BOMB) < 600
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    proc = evalkit("suites", env={"EVALKIT_TASKS": str(tmp_path)}, timeout=60)
    line = one_line_error(proc)
    assert "bomb.yaml" in line and "YAML aliases (*a) are not allowed" in line


def test_aliases_are_refused_but_plain_files_and_anchors_load(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: &anchor 1\nb: *anchor\n")
    with pytest.raises(EvalkitError, match=r"x.yaml.*aliases \(\*anchor\)"):
        load_yaml(path)
    path.write_text("a: &anchor 1\nb: 2\n")
    assert load_yaml(path) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 50000 + "]" * 50000, "nested too deeply"),
        ("name: x\nkind: droid\n\tbad: [", "cannot read suite file"),
        (b"\xff\xfe\x00\x00", "cannot read suite file"),
        ("x" * (4 * 2**20 + 10), "larger than 4 MB"),
        ("!!python/object/apply:os.system ['touch /tmp/evalkit-pwned']", "could not determine a constructor"),
    ],
    ids=["deep-nesting", "syntax", "binary", "too-large", "python-tag"],
)
def test_malformed_yaml_is_one_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(EvalkitError, match=message) as info:
        load_yaml(path)
    assert "\n" not in str(info.value)
    assert not Path("/tmp/evalkit-pwned").exists()


@pytest.mark.parametrize("kind", ["base", "registry", "yamlfile", "os", "../x"])
def test_a_module_that_is_not_a_suite_kind_is_refused(tmp_path, monkeypatch, kind):
    """Issue 10: `kind: base` imported evalkit.suites.base as a suite kind and gave an AttributeError traceback."""
    (tmp_path / "weird.yaml").write_text(f"name: weird\nkind: '{kind}'\n")
    monkeypatch.setenv("EVALKIT_TASKS", str(tmp_path))
    with pytest.raises(EvalkitError, match=r"suite kind"):
        registry.resolve("weird")
    info = {i.name: i for i in registry.list_suites()}["weird"]  # the listing survives, and says why
    assert info.n_tasks == 0 and "suite kind" in info.description


def test_kind_base_through_the_cli(tmp_path):
    (tmp_path / "weird.yaml").write_text("name: weird\nkind: base\n")
    proc = evalkit("eval", "--suite", "weird", "--policy", "zero", env={"EVALKIT_TASKS": str(tmp_path)})
    assert "is not a suite kind" in one_line_error(proc)
    listing = evalkit("suites", env={"EVALKIT_TASKS": str(tmp_path)})  # hidden: it cannot run
    assert listing.returncode == 0 and "cannot run here and are hidden" in listing.stdout
    listing = evalkit("suites", "--all", env={"EVALKIT_TASKS": str(tmp_path)})
    assert listing.returncode == 0 and "Traceback" not in listing.stderr
    assert any(
        line.startswith("weird") and "not a suite kind" in line for line in listing.stdout.splitlines()
    )


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "tab\there", "back\\slash"])
def test_suite_names_with_path_syntax_are_refused(tmp_path, monkeypatch, name):
    (tmp_path / "evil.yaml").write_text(f"name: {json.dumps(name)}\nextends: libero_spatial\n")
    monkeypatch.setenv("EVALKIT_TASKS", str(tmp_path))
    with pytest.raises(EvalkitError, match="invalid suite name"):
        registry.resolve(name)


def test_group_with_path_syntax_is_refused(tmp_path, monkeypatch):
    (tmp_path / "g.yaml").write_text('name: "../g"\ngroup: [libero_spatial]\n')
    monkeypatch.setenv("EVALKIT_TASKS", str(tmp_path))
    with pytest.raises(EvalkitError, match="invalid suite name"):
        registry.resolve("../g")


@pytest.mark.parametrize(
    "asset", ["libero:../../../../etc/x", "libero:/etc/x", "libero:", "libero:a/../../b", "libero:a\\..\\b"]
)
def test_droid_asset_paths_stay_under_libero_assets(tmp_path, monkeypatch, asset):
    """Found while testing issue 10: `asset: libero:../../x` made the DROID scene read any XML file on the disk."""
    scene = {"objects": [{"name": "thing", "asset": asset}]}
    suite = {"name": "evil_droid", "extends": "droid", "scenes": {"blocks": scene}}
    (tmp_path / "evil.yaml").write_text(json.dumps(suite))
    monkeypatch.setenv("EVALKIT_TASKS", str(tmp_path))
    with pytest.raises(EvalkitError, match="must be a relative path under LIBERO's assets"):
        registry.resolve("evil_droid")
