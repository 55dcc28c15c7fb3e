"""W&B in offline mode: the run file W&B wrote for a real run, read back record by record (W&B's protobuf schema)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import read_manifest
from tests.system import import_or_skip
from tests.trackers.wandb_records import records

# slow: evalkit eval in a subprocess (the logged run)
pytestmark = pytest.mark.slow

import_or_skip("wandb", "pip install -e '.[wandb]'")


@pytest.fixture(scope="module")
def wandb_run(logged_run):
    (run_file,) = (logged_run.log_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history, config = {}, {}
    for record in records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            # a media value arrives as nested keys: [tag, field]
            for item in record.history.item:
                *parents, key = list(item.nested_key) or [item.key]
                target = history
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[key] = json.loads(item.value_json)
        elif kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "run":
            config |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
    # older W&B wrapped each config value as {"value": ...}
    config = {k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v for k, v in config.items()}
    return run_file.parent, history, config


def test_logged_success_equals_the_store(logged_run, wandb_run):
    _, history, _ = wandb_run
    assert history["success_pct/overall"] == pytest.approx(logged_run.store_success_pct())
    assert history["task_success_pct/droid_demo/task00"] == pytest.approx(logged_run.store_success_pct(0))
    assert history["task_success_pct/droid_demo/task03"] == pytest.approx(logged_run.store_success_pct(3))
    assert history["success_pct/droid_demo_ci95_low"] < 50.0 < history["success_pct/droid_demo_ci95_high"]
    assert history["_step"] == 0


def test_config_carries_fingerprint_and_provenance(logged_run, wandb_run):
    _, _, config = wandb_run
    manifest = read_manifest(logged_run.run_dir)
    assert config["protocol_fingerprint"] == manifest["protocol_fingerprint"]
    assert config["policy"] == "oracle"
    assert config["run_id"] == manifest["run_id"]


def test_videos_are_logged_as_mp4(wandb_run):
    directory, history, _ = wandb_run
    video = history["videos/droid_demo/task03/init000"]
    assert video["_type"] == "video-file" and video["path"].endswith(".mp4")
    assert (directory / "files" / video["path"]).stat().st_size > 1000
