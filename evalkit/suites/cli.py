"""`evalkit suites`: one line per suite, or one suite in full, with its tasks, filterable by their tags.

    evalkit suites                                        # what can run here (--all: also what cannot, and why)
    evalkit suites liberoplus_spatial                     # protocol, availability by reason, every task
    evalkit suites liberoplus_spatial --dimension camera --unavailable
    evalkit eval --suite liberoplus_spatial --tasks $(evalkit suites liberoplus_spatial --dimension noise --level 3 --ids)

The tag flags (`--dimension`, `--level`, ...) come from the tags the registered suite kinds declare. On a terminal
(or with COLUMNS set) every line is cut to its width; piped output is whole.
"""

from __future__ import annotations

import argparse
import re
import shutil
import textwrap
from dataclasses import dataclass, field

from evalkit.core.errors import EvalkitError
from evalkit.core.flags import flag
from evalkit.core.protocol import EvalProtocol, SuiteSpec, Tags
from evalkit.suites import registry
from evalkit.suites.kinds import suite_kind, task_tags

# a tag whose values are this few gets a runnable/total breakdown in `evalkit suites NAME`
MAX_BREAKDOWN_VALUES = 8
# a tag column with values wider than this is left out of the tasks' table on a terminal (piped output has it)
MAX_TAG_WIDTH = 24


@dataclass(frozen=True)
class SuitesQuery:
    """What `evalkit suites` shows. Flags for task tags are added from the suite kinds (`kinds.task_tags`)."""

    name: str | None = None
    all: bool = field(
        default=False,
        metadata=flag("--all", "list suites that cannot run here too, with the reason", action="store_true"),
    )
    protocol: str | None = field(
        default=None,
        metadata=flag("--protocol", "show NAME under this protocol preset (default: the suite's)"),
    )
    unavailable: bool = field(
        default=False,
        metadata=flag(
            "--unavailable", "list only NAME's tasks that cannot run here, with why", action="store_true"
        ),
    )
    ids: bool = field(
        default=False,
        metadata=flag(
            "--ids",
            "print only the ids of the selected runnable tasks, on one line (for `evalkit eval --tasks`)",
            action="store_true",
        ),
    )
    # tag -> accepted values (any of them)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRow:
    """One task of `evalkit suites NAME`'s table."""

    task_id: int
    tags: Tags
    # "yes", or "no [n]": reason n of the availability lines
    runs: str
    instruction: str


def suites_arguments(parser: argparse.ArgumentParser) -> None:
    from evalkit.cli_args import add_dataclass_arguments

    parser.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="a suite or group to show in full (default: none: list every suite)",
    )
    add_dataclass_arguments(parser, SuitesQuery)
    group = parser.add_argument_group(
        "filters of NAME's tasks by tag (repeat a flag to accept several values)"
    )
    for tag, meaning in task_tags().items():
        try:
            group.add_argument(
                f"--{tag.replace('_', '-')}",
                dest=f"tag:{tag}",
                action="append",
                metavar="VALUE",
                help=f"{meaning} (default: any)",
            )
        except argparse.ArgumentError:
            continue  # a tag named like one of the command's own flags: filterable through the others only


def suites_main(args: argparse.Namespace) -> int:
    from evalkit.cli_args import dataclass_from_arguments

    tags = {
        key.removeprefix("tag:"): tuple(v) for key, v in vars(args).items() if key.startswith("tag:") and v
    }
    query = dataclass_from_arguments(SuitesQuery, args, tags=tags)
    width = terminal_width()
    lines = _listing(query.all, width) if query.name is None else _one(query, width)
    print("\n".join(lines))
    return 0


def terminal_width() -> int:
    """Columns of the terminal (COLUMNS first); 0 when stdout is not a terminal: piped lines are not cut."""
    return shutil.get_terminal_size((0, 0)).columns


# -- every suite, one line each ----------------------------------------------------------------------------------
def _listing(show_all: bool, width: int) -> list[str]:
    infos = registry.list_suites(include_unavailable=True)
    shown = [i for i in infos if i.available or show_all]
    hidden = [i for i in infos if not i.available]
    lines = _suite_lines(shown, width)
    notes = []
    if hidden and not show_all:  # name the most common reason, by one example of it
        pattern = [re.sub(r"'[^']*'|\d+", "", info.description) for info in hidden]
        example = hidden[pattern.index(max(pattern, key=pattern.count))]
        notes.append(
            f"{len(hidden)} more suites cannot run here and are hidden (e.g. {example.description}); "
            "`evalkit suites --all` lists them with the reason."
        )
    notes.append(
        "`evalkit suites NAME` shows a suite's protocol, what cannot run here and why, and its tasks (filter them "
        "by tag, e.g. --dimension camera; --ids feeds `evalkit eval --tasks`)."
    )
    for note in notes:
        lines += ["", *_wrap(note, width, hang=0)]
    return lines


def _suite_lines(infos: list[registry.SuiteInfo], width: int) -> list[str]:
    """A table: name, kind, runnable tasks, unavailable tasks, description (or why it cannot run)."""
    rows = [("NAME", "KIND", "TASKS", "UNAVAILABLE", "DESCRIPTION")]
    for info in infos:
        if info.available:
            rows.append(
                (info.name, info.kind, str(info.n_tasks), str(info.n_unavailable or ""), info.description)
            )
        else:
            rows.append((info.name, info.kind, "-", "-", f"cannot run here: {info.description}"))
    return [_fit(line, width) for line in _table(rows, right=(2, 3))]


# -- one suite in full -------------------------------------------------------------------------------------------
def _one(query: SuitesQuery, width: int) -> list[str]:
    if registry.is_group(query.name):
        if query.tags or query.unavailable or query.ids or query.protocol:
            raise EvalkitError(
                f"{query.name!r} is a group; task filters, --ids and --protocol apply to one of its suites"
            )
        header = f"{query.name}: a group of suites (`evalkit suites SUITE` shows one of them in full)"
        return [_fit(header, width), *_suite_lines(registry.list_suites(group=query.name), width)]
    (spec,) = registry.resolve(query.name, protocol=query.protocol)
    reasons = list(spec.availability.by_reason())
    rows = _task_rows(spec, query, reasons)
    if query.ids:
        ids = [str(row.task_id) for row in rows if row.runs == "yes"]
        if not ids:
            raise EvalkitError(f"no task of {spec.name!r} that can run here matches the filters")
        return [" ".join(ids)]
    text = [*_header(spec), *_protocol_lines(spec.protocol), *_availability_lines(spec, reasons)]
    return [wrapped for line in text for wrapped in _wrap(line, width)] + _tasks_table(spec, rows, width)


def _header(spec: SuiteSpec) -> list[str]:
    return [f"{spec.name}: a {spec.kind} suite for the {spec.embodiment} embodiment", f"  {spec.description}"]


def _protocol_lines(p: EvalProtocol) -> list[str]:
    seeds = (
        f"seed {p.seed} for every episode" if p.episode_seeds == "same" else f"seed {p.seed} + episode index"
    )
    lines = [
        f"protocol {p.name}: {p.control_hz:g} Hz, {p.action_mode} actions ({p.action_dim} dims), state {p.state_dim}",
        f"  cameras: {', '.join(f'{wire} <- {camera}' for wire, camera in p.cameras)}",
        f"  images: rendered {p.render_size[0]}x{p.render_size[1]}, sent {p.image_size[0]}x{p.image_size[1]}"
        + (f" after {', '.join(p.image_transforms)}" if p.image_transforms else ""),
        f"  episodes: {p.episodes_per_task} per task, {seeds}; {p.wait_steps} settle steps, at most {p.max_steps} "
        f"steps, a new chunk every {p.replan_steps}",
    ]
    if p.extra:
        lines.append(f"  extra: {', '.join(f'{k}={v}' for k, v in p.extra)}")
    return lines


def _availability_lines(spec: SuiteSpec, reasons: list[str]) -> list[str]:
    availability = spec.availability
    n_all = len(spec.tasks) + len(availability.unavailable)
    lines = [
        f"availability: {len(spec.tasks)} of {n_all} tasks can run here"
        + (", the rest cannot:" if reasons else "")
    ]
    counts = availability.by_reason()
    digits = len(str(max(counts.values(), default=0)))
    lines += [f"  [{i}] {counts[reason]:>{digits}}  {reason}" for i, reason in enumerate(reasons, 1)]
    if availability.hint:
        lines.append(f"  to run more: {availability.hint}")
    every = [t.tags for t in sorted((*spec.tasks, *availability.unavailable), key=lambda t: t.task_id)]
    runnable = [t.tags for t in spec.tasks]
    for tag in _tag_keys(spec):
        values = list(dict.fromkeys(str(tags[tag]) for tags in every if tag in tags))
        if 1 < len(values) <= MAX_BREAKDOWN_VALUES:
            counts = [f"{v} {_count(runnable, tag, v)}/{_count(every, tag, v)}" for v in values]
            lines.append(f"  by {tag}: {', '.join(counts)}")
    return lines


def _count(group: list[Tags], tag: str, value: str) -> int:
    return sum(str(tags.get(tag)) == value for tags in group)


# -- the tasks ---------------------------------------------------------------------------------------------------
def _tag_keys(spec: SuiteSpec) -> list[str]:
    """The tags the suite's tasks carry: in the order its kind declares them, then any others."""
    present = dict.fromkeys(k for t in (*spec.tasks, *spec.availability.unavailable) for k in t.tags)
    declared = [k for k in suite_kind(spec.kind).task_tags if k in present]
    return declared + [k for k in present if k not in declared]


def _task_rows(spec: SuiteSpec, query: SuitesQuery, reasons: list[str]) -> list[TaskRow]:
    """The tasks (runnable and not, by id) that pass the filters; a row that cannot run numbers its reason."""
    rows = [TaskRow(t.task_id, t.tags, "yes", t.language) for t in spec.tasks if not query.unavailable]
    rows += [
        TaskRow(t.task_id, t.tags, f"no [{reasons.index(t.reason) + 1}]", t.language)
        for t in spec.availability.unavailable
    ]
    keys = _tag_keys(spec)
    for tag, wanted in query.tags.items():
        if tag not in keys:
            raise EvalkitError(
                f"{spec.name}'s tasks have no {tag} tag (their tags: {', '.join(keys) or 'none'})"
            )
        known = {str(row.tags[tag]) for row in rows if tag in row.tags}
        unknown = [v for v in wanted if v not in known]
        if unknown:
            raise EvalkitError(
                f"no task of {spec.name} has {tag} {', '.join(unknown)} (its values: {', '.join(sorted(known))})"
            )
        rows = [row for row in rows if str(row.tags.get(tag)) in wanted]
    return sorted(rows, key=lambda row: row.task_id)


def _tasks_table(spec: SuiteSpec, rows: list[TaskRow], width: int) -> list[str]:
    """The tasks' table. On a terminal, a tag column whose values would not fit MAX_TAG_WIDTH is left out."""
    keys = _tag_keys(spec)
    columns = [
        k for k in keys if not width or all(len(str(row.tags.get(k, ""))) <= MAX_TAG_WIDTH for row in rows)
    ]
    table = [("ID", *(k.upper() for k in columns), "RUNS", "INSTRUCTION")]
    for row in rows:
        table.append(
            (str(row.task_id), *(str(row.tags.get(k, "")) for k in columns), row.runs, row.instruction)
        )
    filters = " ".join(f"--{k.replace('_', '-')} VALUE" for k in keys)
    title = (
        f"tasks: {len(rows)} shown (RUNS: yes, or the number of the reason above); filter them with "
        f"{filters + ' ' if keys else ''}--unavailable; --ids prints their ids for `evalkit eval --tasks`"
    )
    return ["", *_wrap(title, width), *(_fit(line, width) for line in _table(table, right=(0,)))]


# -- text --------------------------------------------------------------------------------------------------------
def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    """Columns padded to their widest cell (those in `right` aligned right); the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        cells[-1] = row[-1]
        lines.append("  ".join(cells).rstrip())
    return lines


def _fit(line: str, width: int) -> str:
    """`line` cut to `width` characters (0: no limit), ending in an ellipsis when cut."""
    return line if not width or len(line) <= width else line[: width - 1] + "…"


def _wrap(text: str, width: int, hang: int = 2) -> list[str]:
    """`text` wrapped to `width` (0: one line); continuation lines are indented `hang` more than the first."""
    indent = " " * (len(text) - len(text.lstrip()) + hang)
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) if width else [text]
