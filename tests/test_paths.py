"""File names built from data stay one bounded component inside their root."""

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.paths import MAX_COMPONENT, inside, safe_component


def test_plain_names_are_kept():
    assert safe_component("libero_spatial") == "libero_spatial"
    assert safe_component("libero_spatial_0_0_7") == "libero_spatial_0_0_7"


@pytest.mark.parametrize(
    "name", ["../../../x", "..", ".", "/etc/passwd", "a/b", "x\x00y", "é" * 10, "", "s" * 300, "..hidden"]
)
def test_hostile_names_become_one_bounded_component(name):
    out = safe_component(name)
    assert out and "/" not in out and "\x00" not in out and not out.startswith(".")
    assert len(out) <= MAX_COMPONENT and out.isascii()


def test_shortened_names_stay_distinct():
    a, b = "s" * 300 + "a", "s" * 300 + "b"
    assert safe_component(a) != safe_component(b)
    assert safe_component("a/b") != safe_component("a_b")


def test_inside_refuses_escapes_and_symlinks_out(tmp_path):
    root = tmp_path / "run" / "videos"
    root.mkdir(parents=True)
    assert inside(root, "s/x.mp4") == (root / "s" / "x.mp4").resolve()
    for bad in ("../x.mp4", "../../../x.mp4", "/tmp/x.mp4", "s/../../x.mp4", "."):
        with pytest.raises(EvalkitError, match="outside"):
            inside(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(EvalkitError, match="outside"):
        inside(root, "link/x.mp4")
