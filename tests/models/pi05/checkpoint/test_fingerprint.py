"""Fingerprints of weights and norm stats, and the digest cache under $EVALKIT_CACHE."""

import os

from evalkit.models.pi05.checkpoint import (
    load_checkpoint,
)
from tests.models.pi05.checkpoint.helpers import FIXTURE_CONFIG, LIBERO, openpi_dir


def test_fingerprint_covers_weights_and_stats(tmp_path):
    a = load_checkpoint(openpi_dir(tmp_path / "a"), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    b = load_checkpoint(openpi_dir(tmp_path / "b"), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint().startswith("sha256:")
    stats_file = tmp_path / "b" / "ckpt" / "assets" / LIBERO / "norm_stats.json"
    stats_file.write_text(stats_file.read_text().replace("0.5", "0.25"))
    assert (
        load_checkpoint(
            tmp_path / "b" / "ckpt", "pi05_libero", model_config_file=FIXTURE_CONFIG
        ).fingerprint()
        != a.fingerprint()
    )


def test_large_file_digests_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    from evalkit.models.pi05.checkpoint import fingerprint as checkpoint

    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint, "FINGERPRINT_CACHE_MIN_BYTES", 0)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    first = checkpoint.fingerprint_files([weights])
    assert (tmp_path / "cache" / "fingerprints.json").is_file()
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size; restore the mtime: the cache answers
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert checkpoint.fingerprint_files([weights]) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert checkpoint.fingerprint_files([weights]) != first
