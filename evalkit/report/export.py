"""`evalkit export RUN`: a run's results for leaderboards and model cards, with their provenance.

- `episodes.parquet`: the per-episode result vector (episode identity, outcome, steps, protocol fingerprint, policy),
  with the run's provenance in the Parquet file's key-value metadata (`evalkit.*` keys).
- `eval_results.json`: per suite the success rate with its Wilson interval, counts, protocol fingerprint and a
  `reportable` flag with the reasons when it is false; the run's provenance.
- `.eval_results/<suite>.yaml`: Hugging Face Hub model-repo evaluation results, in the format of the Hub's
  "Evaluation Results" documentation (huggingface/hub-docs `docs/hub/eval-results.md`, spec `eval_results.yaml`):
  a list with `dataset: {id, task_id}`, `value`, `date`, `evaluation_framework`, `notes`. Written only for a
  reportable suite and only with `--hub-dataset ID` (the Hub benchmark dataset the score belongs to: there is no
  default worth guessing); the protocol fingerprint and validity go in `notes`.

A suite is reportable when the protocol ran in full: no task subset or protocol override on the command line
(`--tasks`, `--episodes-per-task`, `--max-steps`, `--seed`), every episode of the protocol stored, and no error
episode.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.core.errors import EvalkitError
from evalkit.report.summary import RunSummary, summarize
from evalkit.rundir.run import Run, load_run

OUTCOME_COLUMNS = [
    "suite",
    "task_id",
    "task",
    "init_state",
    "seed",
    "success",
    "termination",
    "steps",
    "protocol_fingerprint",
    "policy",
]
# command-line overrides that make a run something less (or other) than the protocol
OVERRIDES = {
    "tasks": "ran a subset of tasks (--tasks)",
    "episodes_per_task": "changed the episodes per task (--episodes-per-task)",
    "max_steps": "changed the step budget (--max-steps)",
    "seed": "changed the seed (--seed)",
}


@dataclass
class SuiteValidity:
    suite: str
    reportable: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class ExportFiles:
    out_dir: Path
    files: list[Path]
    validity: list[SuiteValidity]
    note: str | None = None


def suite_validity(run: Run) -> list[SuiteValidity]:
    """Per suite: did the protocol run in full, with no error episode?"""
    overrides = [reason for key, reason in OVERRIDES.items() if run.manifest.config.get(key) is not None]
    out = []
    for name, record in sorted(run.manifest.suites.items()):
        rows = run.episodes[run.episodes["suite"] == name]
        expected = len(record.tasks) * int(record.protocol["episodes_per_task"])
        usable = int((rows["termination"] != "error").sum())
        errors = len(rows) - usable
        reasons = list(overrides)
        if errors:
            reasons.append(f"{errors} error episode(s)")
        if usable < expected:
            reasons.append(f"{expected - usable} of {expected} episodes have no outcome (re-run to finish)")
        out.append(SuiteValidity(name, not reasons, reasons))
    return out


def provenance_metadata(summary: RunSummary) -> dict[str, Any]:
    p = summary.provenance
    return {
        "run_id": p["run_id"],
        "created_at": p["created_at"],
        "policy": p["policy"],
        "policy_fingerprint": p["policy_fingerprint"],
        "policy_provenance": p["policy_provenance"],
        "checkpoint": p["checkpoint"],
        "protocol_fingerprint": p["protocol_fingerprint"],
        "suite_protocols": p["suite_protocols"],
        "evalkit_version": p["versions"].get("evalkit"),
        "git_commit": p["git_commit"],
    }


def write_parquet(run: Run, provenance: dict[str, Any], validity: list[SuiteValidity], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(run.episodes[OUTCOME_COLUMNS].reset_index(drop=True), preserve_index=False)
    metadata = {f"evalkit.{key}": json.dumps(value) for key, value in provenance.items()}
    metadata["evalkit.reportable"] = json.dumps({v.suite: v.reportable for v in validity})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    pq.write_table(table, path)


def results_json(
    summary: RunSummary, provenance: dict[str, Any], validity: list[SuiteValidity]
) -> dict[str, Any]:
    by_suite = {v.suite: v for v in validity}
    suites = []
    for row in summary.suites.to_dict("records"):
        v = by_suite[row["suite"]]
        suites.append(
            {
                "suite": row["suite"],
                "metric": "success_rate_pct",
                "value": row["success_pct"],
                "ci95_wilson_pct": [row["ci95_low_pct"], row["ci95_high_pct"]],
                "episodes": row["episodes"],
                "successes": row["successes"],
                "error_episodes": row["errors"],
                "protocol_fingerprint": provenance["suite_protocols"].get(row["suite"]),
                "reportable": v.reportable,
                "not_reportable_because": v.reasons,
            }
        )
    return {
        "format": "evalkit.eval_results/1",
        "reportable": all(v.reportable for v in validity),
        "suites": suites,
        "average_of_suites_pct": summary.average_pct,
        "provenance": provenance,
    }


def hub_entry(suite: dict[str, Any], provenance: dict[str, Any], dataset_id: str) -> list[dict[str, Any]]:
    """One `.eval_results/*.yaml` document (the Hub's format: a list of results)."""
    low, high = suite["ci95_wilson_pct"]
    notes = (
        f"evalkit {provenance['evalkit_version']}, protocol fingerprint {suite['protocol_fingerprint']} (full "
        f"protocol, no error episodes); success rate % over {suite['episodes']} episodes, 95% Wilson interval "
        f"[{low}, {high}]; policy fingerprint {provenance['policy_fingerprint']}"
    )
    return [
        {
            "dataset": {"id": dataset_id, "task_id": suite["suite"]},
            "value": suite["value"],
            "date": str(provenance["created_at"]),
            "evaluation_framework": "evalkit",
            "notes": notes,
        }
    ]


def export_run(
    run_dir: str | Path, out_dir: str | Path | None = None, hub_dataset: str | None = None
) -> ExportFiles:
    import yaml

    run = load_run(run_dir)
    if run.episodes.empty:
        raise EvalkitError(f"{run.path} has no finished episodes yet")
    out = Path(out_dir) if out_dir is not None else run.path / "export"
    summary = summarize(run)
    provenance = provenance_metadata(summary)
    validity = suite_validity(run)
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "episodes.parquet", out / "eval_results.json"]
        write_parquet(run, provenance, validity, files[0])
        results = results_json(summary, provenance, validity)
        files[1].write_text(json.dumps(results, indent=2, default=str) + "\n")
        note = None
        reportable = [s for s in results["suites"] if s["reportable"]]
        if hub_dataset is None:
            note = "no --hub-dataset: .eval_results/*.yaml not written (the Hub needs the benchmark dataset's id)"
        elif not reportable:
            note = "no suite is reportable (see eval_results.json): .eval_results/*.yaml not written"
        for suite in reportable if hub_dataset is not None else []:
            files.append(out / ".eval_results" / f"{suite['suite']}.yaml")
            files[-1].parent.mkdir(exist_ok=True)
            files[-1].write_text(yaml.safe_dump(hub_entry(suite, provenance, hub_dataset), sort_keys=False))
    except OSError as exc:
        raise EvalkitError(f"cannot write the export to {out}: {exc.strerror or exc}") from exc
    return ExportFiles(out, files, validity, note)


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run directory")
    parser.add_argument("--out", type=Path, help="output directory (default: RUN/export)")
    parser.add_argument(
        "--hub-dataset",
        metavar="ID",
        help="Hugging Face benchmark dataset id for .eval_results/<suite>.yaml (task_id: the suite name) "
        "(default: none: .eval_results/ is not written)",
    )


def export_main(args: argparse.Namespace) -> int:
    result = export_run(args.run, args.out, args.hub_dataset)
    for v in result.validity:
        print(f"{v.suite}: " + ("reportable" if v.reportable else f"not reportable: {'; '.join(v.reasons)}"))
    if result.note:
        print(f"evalkit: {result.note}")
    print(
        f"export written to {result.out_dir} ({', '.join(str(p.relative_to(result.out_dir)) for p in result.files)})"
    )
    return 0
