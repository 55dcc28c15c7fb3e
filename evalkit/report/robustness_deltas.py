"""Paired robustness deltas: perturbed episodes against a matched control arm, per perturbation dimension.

A LIBERO-plus or LIBERO-PRO run next to a plain LIBERO run of the same checkpoint: each perturbed episode is paired
with the base task's episode of the same init state and seed, so the drop a dimension causes is measured on the same
starting states instead of as two unrelated rates.

How episodes pair:
- the base task of a perturbed task: LIBERO-plus's `base_task` tag (a LIBERO task name); for LIBERO-PRO the task's
  own name (LIBERO-PRO keeps a task's name and changes its instruction, objects, positions or goal). It is looked up
  by name among the base run's unperturbed LIBERO tasks (task names are unique across LIBERO's suites);
- the episode: the same init state index and the same seed;
- unpaired, and counted by reason: a perturbed episode whose base task the base run did not evaluate, whose base
  episode (init state, seed) it did not run or ended in an error, and perturbed error episodes.

The statistic: the episodes that share one base episode form a block (LIBERO-plus runs each variant once from init
state 0, so one base episode controls every variant of its task; a LIBERO-PRO episode has its own). A block's
difference is the success rate of its perturbed episodes minus its base episode's success; a dimension's drop is the
mean over its blocks, and the base and perturbed rates shown are block means too. The 95% interval: Newcombe's
paired interval (as `evalkit regress` uses) when every block holds one perturbed episode; otherwise the
betting interval for the mean of the bounded block differences (Waudby-Smith & Ramdas 2023,
`evalkit.report.sequential`), which needs no normal approximation and stays honest with few blocks (wide). Blocks
are independent episodes; perturbed episodes within a block are not, which is why the block is the unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.stats import PairedCounts, compare_paired
from evalkit.rundir.run import Run

CONFIDENCE = 0.95
# tag -> family: the tag that names a task's perturbation dimension
FAMILIES = {"dimension": "LIBERO-plus", "perturbation": "LIBERO-PRO"}
COLUMNS = [
    "family",
    "dimension",
    "perturbed episodes",
    "base episodes",
    "base %",
    "perturbed %",
    "drop pp",
    "95% interval",
    "interval",
]


@dataclass
class DeltaSection:
    # one row per family and dimension, then each family's "all" row (COLUMNS)
    table: pd.DataFrame
    # why perturbed episodes have no partner: reason -> count
    unpaired: dict[str, int] = field(default_factory=dict)
    # how the base run was chosen, protocol differences
    notes: list[str] = field(default_factory=list)


def _task_tags(run: Run) -> dict[tuple[str, int], tuple[str, dict]]:
    return {
        (suite, int(task["task_id"])): (str(task.get("name", "")), dict(task.get("tags") or {}))
        for suite, record in run.manifest.suites.items()
        for task in record.tasks
    }


def perturbed_tasks(run: Run) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(suite, task_id) -> (family, dimension, base task name) of the run's perturbed tasks."""
    out = {}
    for key, (name, tags) in _task_tags(run).items():
        if tags.get("dimension"):
            out[key] = ("LIBERO-plus", str(tags["dimension"]), str(tags.get("base_task") or ""))
        elif tags.get("perturbation"):
            out[key] = ("LIBERO-PRO", str(tags["perturbation"]), name)
    return out


def base_tasks(run: Run) -> dict[str, tuple[str, int]]:
    """Task name -> (suite, task_id) of the run's unperturbed LIBERO tasks (a name found twice is left out)."""
    found: dict[str, list[tuple[str, int]]] = {}
    kinds = {suite: record.kind for suite, record in run.manifest.suites.items()}
    for key, (name, tags) in _task_tags(run).items():
        if kinds.get(key[0]) == "libero" and not any(tag in tags for tag in FAMILIES) and name:
            found.setdefault(name, []).append(key)
    return {name: keys[0] for name, keys in found.items() if len(keys) == 1}


def has_perturbed(run: Run) -> bool:
    return bool(perturbed_tasks(run))


def has_base(run: Run) -> bool:
    return bool(base_tasks(run))


def pair_episodes(perturbed: Run, base: Run) -> tuple[pd.DataFrame, dict[str, int]]:
    """Paired rows (family, dimension, block = the base identity, base and perturbed success) and the unpaired
    counts by reason."""
    tasks, names = perturbed_tasks(perturbed), base_tasks(base)
    base_rows = {(r.suite, r.task_id, r.init_state, r.seed): r for r in base.episodes.itertuples(index=False)}
    rows, unpaired = [], {}

    def skip(reason: str) -> None:
        unpaired[reason] = unpaired.get(reason, 0) + 1

    for episode in perturbed.episodes.itertuples(index=False):
        info = tasks.get((episode.suite, int(episode.task_id)))
        if info is None:
            continue
        family, dimension, base_name = info
        if episode.termination == "error":
            skip("the perturbed episode is an error")
            continue
        if base_name not in names:
            skip("its base task is not in the base run")
            continue
        block = (*names[base_name], int(episode.init_state), int(episode.seed))
        partner = base_rows.get(block)
        if partner is None:
            skip("the base run has no episode of its base task at its init state and seed")
        elif partner.termination == "error":
            skip("its base episode is an error")
        else:
            rows.append(
                {
                    "family": family,
                    "dimension": dimension,
                    "block": block,
                    "base": float(partner.success),
                    "perturbed": float(episode.success),
                }
            )
    return pd.DataFrame(rows, columns=["family", "dimension", "block", "base", "perturbed"]), unpaired


def delta_row(family: str, dimension: str, pairs: pd.DataFrame) -> dict:
    blocks = pairs.groupby("block", sort=True).agg(base=("base", "first"), perturbed=("perturbed", "mean"))
    one_each = len(blocks) == len(pairs)
    if one_each:
        b, p = pairs["base"].astype(bool), pairs["perturbed"].astype(bool)
        counts = PairedCounts(
            int((b & p).sum()), int((b & ~p).sum()), int((~b & p).sum()), int((~b & ~p).sum())
        )
        c = compare_paired(counts, CONFIDENCE)
        low, high, method = c.diff_low, c.diff_high, "Newcombe paired"
    else:
        from evalkit.report.sequential import evaluate_sequence

        state = evaluate_sequence(blocks["base"], blocks["perturbed"], (1 - CONFIDENCE) / 2, 0.0, "progress")
        low, high, method = state.low, state.high, "betting, per base episode"
    diff = float((blocks["perturbed"] - blocks["base"]).mean())
    return {
        "family": family,
        "dimension": dimension,
        "perturbed episodes": len(pairs),
        "base episodes": len(blocks),
        "base %": round(100 * blocks["base"].mean(), 1),
        "perturbed %": round(100 * blocks["perturbed"].mean(), 1),
        "drop pp": round(100 * diff, 1),
        "95% interval": f"[{100 * low:+.1f}, {100 * high:+.1f}]",
        "interval": method,
    }


def robustness_deltas(perturbed: Run, base: Run, notes: list[str] | None = None) -> DeltaSection | None:
    """The deltas of `perturbed`'s LIBERO-plus / LIBERO-PRO episodes against `base` (may be the same run); None
    when `perturbed` has no perturbed task. Refuses runs of different checkpoints."""
    if not has_perturbed(perturbed):
        return None
    if perturbed.manifest.policy.identity != base.manifest.policy.identity:
        raise EvalkitError(
            f"the base run {base.path} is of {base.manifest.policy.identity}, {perturbed.path} of "
            f"{perturbed.manifest.policy.identity}: paired robustness deltas need the same checkpoint"
        )
    pairs, unpaired = pair_episodes(perturbed, base)
    notes = [*(notes or []), *protocol_notes(perturbed, base, pairs)]
    rows = []
    for family in FAMILIES.values():
        mine = pairs[pairs["family"] == family]
        for dimension, group in mine.groupby("dimension", sort=True):
            rows.append(delta_row(family, str(dimension), group))
        if mine["dimension"].nunique() > 1:
            rows.append(delta_row(family, "all", mine))
    return DeltaSection(pd.DataFrame(rows, columns=COLUMNS), unpaired, notes)


def deltas_for_report(run: Run, base: Run | None) -> tuple[DeltaSection, str] | None:
    """The section of `evalkit report RUN [--base BASE]` and how its base is named: BASE when given (an error if
    nothing pairs), else the run itself when it holds both perturbed and plain LIBERO suites, else None."""
    if base is not None:
        if not has_perturbed(run):
            raise EvalkitError(
                f"--base: {run.path} has no LIBERO-plus or LIBERO-PRO task to pair with a base run"
            )
        if not has_base(base):
            raise EvalkitError(f"--base {base.path} has no plain LIBERO task to pair perturbed episodes with")
        label = f"the base run {base.path} (run {base.run_id})"
        section = robustness_deltas(run, base, [f"base run: {base.path}, given by --base"])
    elif has_perturbed(run) and has_base(run):
        label = "this run's own LIBERO suites"
        section = robustness_deltas(run, run, ["the base episodes are this run's own plain LIBERO suites"])
    else:
        return None
    assert section is not None
    return section, label


def explanation(base_label: str) -> str:
    return (
        f"Each perturbed episode is paired with the base task's episode of the same init state and seed in {base_label} "
        "(same checkpoint): LIBERO-plus variants through their `base_task` tag, LIBERO-PRO tasks through their own "
        "name (LIBERO-PRO keeps the task and changes its instruction, objects, positions or goal). Episodes sharing a "
        "base episode form a block (LIBERO-plus runs every variant once from init state 0, so one base episode "
        "controls all variants of its task); the drop is the mean over blocks of (perturbed success - base "
        "success), in percentage points, and the rates are block means. Interval: Newcombe's paired 95% interval "
        "when each block holds one perturbed episode, else a 95% betting interval on the block differences (valid "
        "without a normal approximation; wide with few blocks)."
    )


def unpaired_text(section: DeltaSection) -> str:
    if not section.unpaired:
        return "Every perturbed episode has a partner."
    parts = "; ".join(f"{n} because {reason}" for reason, n in section.unpaired.items())
    return f"Unpaired perturbed episodes (left out): {parts}."


TITLE = "Paired robustness deltas"


def markdown(section: DeltaSection, base_label: str, title: str = TITLE) -> str:
    from evalkit.report.formatting import markdown_table, md_text

    body = (
        markdown_table(section.table)
        if len(section.table)
        else "_No perturbed episode pairs with a base episode._"
    )
    lines = [f"## {md_text(title)}", "", md_text(explanation(base_label)), ""]
    lines += [f"> **Note:** {md_text(note)}" for note in section.notes]
    return "\n".join([*lines, "", body, "", md_text(unpaired_text(section)), ""])


def html(section: DeltaSection, base_label: str, title: str = TITLE, index: int = 0) -> str:
    from html import escape

    from evalkit.report.formatting import html_table

    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in section.notes)
    suffix = f"-{index}" if index else ""
    table = html_table(section.table, f"robustness-deltas{suffix}") if len(section.table) else ""
    return (
        f'<section id="deltas{suffix}"><h2>{escape(title)}</h2><p>{escape(explanation(base_label))}</p>{notes}'
        f"{table}<p>{escape(unpaired_text(section))}</p></section>"
    )


def protocol_notes(perturbed: Run, base: Run, pairs: pd.DataFrame) -> list[str]:
    """Where a perturbed suite's protocol differs from its base suite's (beyond the name and the episode count)."""
    from evalkit.report.leaderboard import comparable_protocol, protocol_diff

    tasks, names = perturbed_tasks(perturbed), base_tasks(base)
    used = {(suite, names[info[2]][0]) for (suite, _), info in tasks.items() if info[2] in names}
    notes = []
    for suite, base_suite in sorted(used):
        diff = [
            (k, a, b)
            for k, a, b in protocol_diff(
                comparable_protocol(base, base_suite), comparable_protocol(perturbed, suite)
            )
            if k not in ("name", "kind")
        ]
        if diff:
            what = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in diff)
            notes.append(f"{suite} runs under a protocol that differs from {base_suite}'s: {what}")
    return notes
