"""MLflow (the `mlflow` extra, mlflow-skinny): one MLflow run per evalkit run in experiment `--log-project`, the
config as params, metrics at the step, episode videos as artifacts under `videos/`. The tracking store is MLflow's
own setting (MLFLOW_TRACKING_URI); it is opened before the evaluation starts, so an unusable store is an error
then, not after hours of simulation."""

from __future__ import annotations

import time
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.trackers.base import require
from evalkit.trackers.config import TrackerOptions
from evalkit.trackers.record import RunRecord, Scalar

PARAM_MAX_CHARS = 6000  # MLflow's limit on a param value
BATCH_METRICS, BATCH_PARAMS = 1000, 100  # MLflow's limits per log_batch call


def client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def existing_run(mlflow_client, run_id: str) -> str | None:
    """`run_id` if that run is in the store and not deleted (a restarted watch continues it)."""
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


class MlflowSession:
    def __init__(self, mlflow_client, run_id: str, tracking_uri: str):
        self.client = mlflow_client
        self.run_id = run_id
        self.ident: str | None = run_id
        self.tracking_uri = tracking_uri

    def log(self, record: RunRecord, step: int) -> None:
        from mlflow.entities import Metric

        now = time.time_ns() // 1_000_000
        metrics = [Metric(key, value, now, step) for key, value in record.metrics.items()]
        for start in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + BATCH_METRICS])
        for video in record.videos:
            self.client.log_artifact(self.run_id, str(video.path), artifact_path=video.tag.rsplit("/", 1)[0])

    def describe(self, step: int, fields: dict[str, Scalar]) -> None:
        """As tags (params cannot change within a run): `step_<step>/<field>`."""
        for key, value in fields.items():
            self.client.set_tag(self.run_id, f"step_{step:09d}/{key}", str(value)[:PARAM_MAX_CHARS])

    def close(self) -> str:
        self.client.set_terminated(self.run_id)
        return f"mlflow: run {self.run_id} in {self.tracking_uri}"


class MlflowTracker:
    name = "mlflow"

    def check(self, options: TrackerOptions) -> None:
        require("mlflow", self.name)
        try:
            client().search_experiments(max_results=1)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EvalkitError(
                f"--log mlflow: the MLflow tracking store cannot be used (set MLFLOW_TRACKING_URI, e.g. to your "
                f"server's http:// address): {first}"
            ) from None

    def open(
        self,
        run_name: str,
        config: dict[str, Scalar],
        options: TrackerOptions,
        run_dir: Path,
        resume: str | None = None,
    ) -> MlflowSession:
        import mlflow
        from mlflow.entities import Param

        mlflow_client = client()
        if resume is not None and (previous := existing_run(mlflow_client, resume)) is not None:
            mlflow_client.update_run(previous, status="RUNNING")
            return MlflowSession(mlflow_client, previous, mlflow.get_tracking_uri())
        experiment = mlflow_client.get_experiment_by_name(options.log_project)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else mlflow_client.create_experiment(options.log_project)
        )
        run = mlflow_client.create_run(
            experiment_id, run_name=run_name, tags={"evalkit.run_dir": str(run_dir)}
        )
        params = [Param(key, str(value)[:PARAM_MAX_CHARS]) for key, value in config.items()]
        for start in range(0, len(params), BATCH_PARAMS):
            mlflow_client.log_batch(run.info.run_id, params=params[start : start + BATCH_PARAMS])
        return MlflowSession(mlflow_client, run.info.run_id, mlflow.get_tracking_uri())
