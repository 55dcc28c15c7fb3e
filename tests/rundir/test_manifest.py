import json

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta
from evalkit.rundir.manifest import (
    MANIFEST_NAME,
    open_manifest,
    read_manifest,
    redact_command,
    write_manifest,
)
from evalkit.suites import registry


def test_secrets_are_redacted_from_the_command():
    command = ["evalkit", "eval", "--api-key", "s3cret", "--policy", "ws://h:1", "--api-key=other"]
    assert redact_command(command) == [
        "evalkit",
        "eval",
        "--api-key",
        "***",
        "--policy",
        "ws://h:1",
        "--api-key=***",
    ]


def test_round_trip_and_resume_checks(tmp_path):
    (suite,) = registry.resolve("libero_spatial", tasks=[0])
    meta = PolicyMeta("pi05", "abc", provenance={"weights": "w1", "tokenizer": "t1", "norm_stats": "n1"})
    manifest = open_manifest(
        tmp_path, {"suite": "libero_spatial"}, [suite], meta, ["evalkit", "--api-key", "k"]
    )
    write_manifest(tmp_path, manifest)
    text = (tmp_path / MANIFEST_NAME).read_text()
    assert '"k"' not in text
    again = read_manifest(tmp_path)
    assert again == manifest
    assert again.policy.provenance["tokenizer"] == "t1"
    resumed = open_manifest(tmp_path, {}, [suite], meta, ["evalkit"])
    assert resumed.run_id == manifest.run_id and len(resumed.sessions) == 2
    with pytest.raises(EvalkitError, match="holds a run of policy pi05@abc; this is pi05@other"):
        open_manifest(tmp_path, {}, [suite], PolicyMeta("pi05", "other"), ["evalkit"])
    (changed,) = registry.resolve("libero_spatial", tasks=[0], max_steps=100)
    with pytest.raises(EvalkitError, match="holds libero_spatial under protocol"):
        open_manifest(tmp_path, {}, [changed], meta, ["evalkit"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "not a manifest"),
        ("{}", "manifest lacks run_id"),
        ('{"run_id": 1}', "manifest lacks created_at"),
        ("{not json", "unreadable manifest"),
    ],
)
def test_malformed_manifests_are_one_line_errors(tmp_path, content, message):
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(EvalkitError, match=message):
        read_manifest(tmp_path)


def test_a_manifest_with_a_malformed_policy_is_refused(tmp_path):
    (suite,) = registry.resolve("libero_spatial", tasks=[0])
    manifest = open_manifest(tmp_path, {}, [suite], PolicyMeta("zero", "none"), ["evalkit"])
    data = manifest.to_json()
    data["policy"] = {"name": "zero"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(EvalkitError, match="policy: manifest lacks fingerprint"):
        read_manifest(tmp_path)


def test_a_stop_by_decision_is_a_typed_record_that_survives_reading_and_resume(tmp_path):
    """Issue 18 (recorded by `eval --stop-when-decided`, read by `regress`)."""
    from evalkit.rundir.manifest import StopRecord

    (suite,) = registry.resolve("libero_spatial", tasks=[0])
    meta = PolicyMeta("zero", "none")
    manifest = open_manifest(tmp_path, {}, [suite], meta, ["evalkit"])
    assert manifest.stop is None
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path).stop is None
    manifest.stop = StopRecord("betting-cs", 0.05, 5.0, 84, "fail", "base123", "2026-11-24T00:00:00+00:00")
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path)
    assert again.stop == manifest.stop and isinstance(again.stop, StopRecord)
    assert open_manifest(tmp_path, {}, [suite], meta, ["evalkit"]).stop == manifest.stop  # kept on resume
    data = again.to_json()
    bad_values = (
        {"verdict": "maybe"},
        {"verdict": None},
        {"alpha": "0.05"},
        {"episodes": -1},
        {"test": ""},
        {"pairs": 85},
        {"outcome": "reward"},
    )
    for bad in bad_values:
        (tmp_path / MANIFEST_NAME).write_text(json.dumps({**data, "stop": {**data["stop"], **bad}}))
        with pytest.raises(EvalkitError, match="malformed manifest"):
            read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({**data, "stop": {"test": "x"}}))
    with pytest.raises(EvalkitError, match="stop: manifest lacks alpha"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("suite", "overrides"),
    [
        ("libero_spatial", {"tasks": [2, 5], "episodes_per_task": 4}),
        ("libero_object", {"protocol": "lerobot", "tasks": [0, 1]}),  # seed + k per episode
        ("droid_demo", {}),
    ],
)
def test_the_planned_order_is_rebuilt_from_the_manifest_as_the_runner_makes_it(tmp_path, suite, overrides):
    """`evalkit regress` rebuilds a stopped run's planned order from its manifest (issue 18)."""
    from evalkit.core.protocol import balanced_order, episodes_for

    suites = registry.resolve(suite, **overrides)
    manifest = open_manifest(tmp_path, {}, suites, PolicyMeta("zero", "none"), ["evalkit"])
    write_manifest(tmp_path, manifest)
    runner_plan = balanced_order(episodes_for(suites), manifest.suite_fingerprints())
    assert read_manifest(tmp_path).planned_episodes() == runner_plan
    if overrides.get("protocol") == "lerobot":
        assert {e.seed - e.init_state for e in runner_plan} == {suites[0].protocol.seed}


def test_a_malformed_suite_record_is_one_error_when_the_plan_is_rebuilt(tmp_path):
    (suite,) = registry.resolve("libero_spatial", tasks=[0])
    manifest = open_manifest(tmp_path, {}, [suite], PolicyMeta("zero", "none"), ["evalkit"])
    manifest.suites[suite.name].protocol.pop("seed")
    with pytest.raises(EvalkitError, match="malformed suite record"):
        manifest.planned_episodes()
