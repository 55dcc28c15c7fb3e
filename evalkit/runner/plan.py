"""What an `evalkit eval` is about to do, said before it starts, and how long the rest will take, said once the
first episodes have ended: a bare `make eval` runs the full protocol (2,000 LIBERO episodes), so it says so."""

from __future__ import annotations

import sys
from collections import Counter

from evalkit.core.episode import EpisodeSpec
from evalkit.core.protocol import SuiteSpec


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def describe_plan(
    suites: list[SuiteSpec],
    all_episodes: list[EpisodeSpec],
    todo: list[EpisodeSpec],
    workers: int,
    policy: str,
    run_dir: str,
) -> str:
    """A few lines: suites, tasks, episodes (done and to run), workers and where results go."""
    per_suite = Counter(spec.suite for spec in todo)
    n_tasks = sum(len(s.tasks) for s in suites)
    head = (
        f"evalkit: {policy} on {plural(len(suites), 'suite')}, {plural(n_tasks, 'task')}: "
        f"{plural(len(todo), 'episode')} to run"
    )
    if len(todo) != len(all_episodes):
        head += f" ({len(all_episodes) - len(todo):,} of {len(all_episodes):,} already done)"
    head += f", {plural(min(workers, max(1, len(todo))), 'worker')} -> {run_dir}"
    lines = [head]
    for suite in suites:
        p = suite.protocol
        lines.append(
            f"  {suite.name}: {plural(len(suite.tasks), 'task')} x {p.episodes_per_task} episodes, "
            f"up to {p.max_steps} steps at {p.control_hz:g} Hz ({per_suite.get(suite.name, 0):,} to run)"
        )
    if todo:
        lines.append(
            "  a time estimate follows when the first episodes end; Ctrl-C stops, the same command resumes"
        )
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def estimate_line(done: int, total: int, elapsed_s: float) -> str:
    """The remaining time at the rate of the episodes so far (they ran in parallel across workers)."""
    remaining = (total - done) * elapsed_s / max(done, 1)
    return (
        f"evalkit: first {plural(done, 'episode')} took {format_duration(elapsed_s)}; "
        f"about {format_duration(remaining)} left for the other {total - done:,}"
    )


def progress_bar(total: int, workers: int):
    """A tqdm bar that shows the remaining time and, once the first round of episodes (one per worker) has
    ended, prints the estimate as a line of its own."""
    from tqdm import tqdm

    class EstimatingBar(tqdm):
        announce_at = max(1, min(workers, total))
        announced = False

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if not self.announced and self.n >= self.announce_at and self.n < self.total:
                self.announced = True
                self.write(estimate_line(int(self.n), int(self.total), self.format_dict["elapsed"]))
            return shown

    return EstimatingBar(
        total=total,
        unit="ep",
        dynamic_ncols=True,
        desc="evaluating",
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} ep "
        "[{elapsed} elapsed, {remaining} left]{postfix}",
    )
