"""MLflow with a local file store: the run a real evaluation logged, read back through MLflow's own client."""

from __future__ import annotations

import pytest

from tests.helpers import read_manifest
from tests.system import import_or_skip

# slow: evalkit eval in a subprocess (the logged run)
pytestmark = pytest.mark.slow

import_or_skip("mlflow", "pip install -e '.[mlflow]'")


@pytest.fixture(scope="module")
def mlflow_run(logged_run, monkeypatch_module):
    from mlflow.tracking import MlflowClient

    monkeypatch_module.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(logged_run.mlflow_uri)
    experiment = client.get_experiment_by_name("evalkit")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_logged_success_equals_the_store(logged_run, mlflow_run):
    _, run = mlflow_run
    metrics = run.data.metrics
    assert metrics["success_pct/overall"] == pytest.approx(logged_run.store_success_pct())
    assert metrics["task_success_pct/droid_demo/task00"] == pytest.approx(logged_run.store_success_pct(0))
    assert metrics["success_pct/droid_demo_ci95_low"] < 50.0 < metrics["success_pct/droid_demo_ci95_high"]
    assert run.info.run_name == logged_run.run_dir.name and run.info.status == "FINISHED"


def test_params_carry_fingerprint_and_provenance(logged_run, mlflow_run):
    _, run = mlflow_run
    manifest = read_manifest(logged_run.run_dir)
    assert run.data.params["protocol_fingerprint"] == manifest["protocol_fingerprint"]
    assert run.data.params["policy_fingerprint"] == manifest["policy"]["fingerprint"]
    assert run.data.params["option/max_steps"] == "100"


def test_videos_are_artifacts(mlflow_run):
    client, run = mlflow_run
    (artifact,) = client.list_artifacts(run.info.run_id, "videos/droid_demo/task03")
    assert artifact.path.endswith(".mp4") and artifact.file_size > 1000
