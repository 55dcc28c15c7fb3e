"""`evalkit export`: the per-episode Parquet vector and the eval-results summary carry the run's provenance, and a
result is marked reportable only when the protocol ran in full with no error episode."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from evalkit.report.export import export_run
from tests.helpers import evalkit, read_manifest, read_rows
from tests.report.runs import grid, write_run


# `evalkit eval` in a subprocess: the tests using it are marked slow
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The whole droid_demo protocol (4 tasks x 2 episodes) run by the scripted oracle, then exported."""
    run = tmp_path_factory.mktemp("export") / "droid_demo__oracle"
    proc = evalkit(
        "eval", "--suite", "droid_demo", "--policy", "oracle", "--workers", "2", "--quiet", "--out", str(run)
    )
    assert proc.returncode == 0, proc.stderr
    proc = evalkit("export", str(run), "--hub-dataset", "someone/droid-sim-benchmark")
    assert proc.returncode == 0, proc.stderr
    assert "droid_demo: reportable" in proc.stdout
    return run


@pytest.mark.slow
def test_parquet_is_the_store_with_provenance(full_run):
    table = pq.read_table(full_run / "export" / "episodes.parquet")
    rows = read_rows(full_run)
    assert table.num_rows == len(rows) == 8
    assert table.column("success").to_pylist() == [bool(r["success"]) for r in rows]
    assert table.column("init_state").to_pylist() == [r["init_state"] for r in rows]
    metadata = {
        k.decode(): json.loads(v) for k, v in table.schema.metadata.items() if k.startswith(b"evalkit.")
    }
    manifest = read_manifest(full_run)
    assert metadata["evalkit.protocol_fingerprint"] == manifest["protocol_fingerprint"]
    assert metadata["evalkit.run_id"] == manifest["run_id"]
    assert metadata["evalkit.reportable"] == {"droid_demo": True}


@pytest.mark.slow
def test_hub_eval_results_of_a_full_run(full_run):
    rows = read_rows(full_run)
    rate = round(100.0 * sum(r["success"] for r in rows) / len(rows), 2)
    (entry,) = yaml.safe_load((full_run / "export" / ".eval_results" / "droid_demo.yaml").read_text())
    assert entry["dataset"] == {"id": "someone/droid-sim-benchmark", "task_id": "droid_demo"}
    assert entry["value"] == rate
    fingerprint = read_manifest(full_run)["suites"]["droid_demo"]["protocol_fingerprint"]
    assert fingerprint in entry["notes"] and "full protocol, no error episodes" in entry["notes"]
    summary = json.loads((full_run / "export" / "eval_results.json").read_text())
    assert summary["reportable"] is True
    (suite,) = summary["suites"]
    assert suite["value"] == rate and suite["protocol_fingerprint"] == fingerprint
    assert suite["ci95_wilson_pct"][0] <= rate <= suite["ci95_wilson_pct"][1]


def test_error_or_missing_episodes_are_not_reportable(tmp_path):
    outcomes = dict.fromkeys(grid("droid_demo", 4, 2), True)
    outcomes[("droid_demo", 2, 1, 7)] = "error"
    result = export_run(write_run(tmp_path / "errored", outcomes), hub_dataset="someone/bench")
    (validity,) = result.validity
    assert not validity.reportable and validity.reasons == [
        "1 error episode(s)",
        "1 of 8 episodes have no outcome (re-run to finish)",
    ]
    assert not (result.out_dir / ".eval_results").exists()
    assert "not written" in result.note

    del outcomes[("droid_demo", 2, 1, 7)]
    (validity,) = export_run(write_run(tmp_path / "short", outcomes)).validity
    assert validity.reasons == ["1 of 8 episodes have no outcome (re-run to finish)"]

    outcomes[("droid_demo", 2, 1, 7)] = False
    result = export_run(write_run(tmp_path / "whole", outcomes), hub_dataset="someone/bench")
    assert result.validity[0].reportable and (result.out_dir / ".eval_results" / "droid_demo.yaml").is_file()


@pytest.mark.slow
def test_a_subset_run_is_not_reportable(tmp_path):
    run = tmp_path / "subset"
    proc = evalkit("eval", "--suite", "droid_demo", "--policy", "zero", "--tasks", "0", "1", "--episodes-per-task", "2",
                   "--max-steps", "10", "--quiet", "--out", str(run))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (validity,) = export_run(run).validity
    assert validity.reasons == [
        "ran a subset of tasks (--tasks)",
        "changed the episodes per task (--episodes-per-task)",
        "changed the step budget (--max-steps)",
    ]
