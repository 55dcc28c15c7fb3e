"""What an `evalkit eval` is about to do, said before it starts, and how it goes while it runs: how long the rest
will take, said once the first episodes have ended (a bare `make eval` runs the full protocol, 2,000 LIBERO
episodes, so it says so), then a progress bar on a terminal, or a one-line status every `STATUS_EVERY_S` seconds
when stderr is a file or a pipe (a bar there would be carriage-return soup)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

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
            f"  {suite.name}: {plural(len(suite.tasks), 'task')} x {plural(p.episodes_per_task, 'episode')}, "
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


STATUS_EVERY_S = 30.0  # without a terminal: one status line at most this often (at an episode's end)


class Progress:
    """Progress of a run on stderr: silent (this base class), a bar on a terminal, or periodic status lines."""

    @staticmethod
    def start(total: int, workers: int, enabled: bool, stream: TextIO | None = None) -> Progress:
        stream = stream or sys.stderr
        if not enabled or total == 0:
            return Progress()
        if stream.isatty():
            return BarProgress(total, workers, stream)
        return StatusProgress(total, workers, stream)

    def update(self, done: int, successes: int, errors: int, note: str = "") -> None:
        """After each stored episode; `note` follows the tally (e.g. the sequential gate's verdict)."""

    def write(self, line: str) -> None:
        """A line of its own (a retry, an estimate), kept clear of the bar."""
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def tally_text(done: int, successes: int, errors: int, note: str = "") -> str:
    valid = done - errors
    rate = f"{100 * successes / valid:.1f}%" if valid else "-"
    return f"success {successes}/{valid} ({rate}), {plural(errors, 'error')}" + (f", {note}" if note else "")


class StatusProgress(Progress):
    def __init__(self, total: int, workers: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.announce_at = max(1, min(workers, total))
        self.started = self.last = time.monotonic()
        self.line: str | None = None  # the latest status, printed or not

    def update(self, done: int, successes: int, errors: int, note: str = "") -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if done == self.announce_at and done < self.total:
            self.write(estimate_line(done, self.total, elapsed))
        left = (self.total - done) * elapsed / max(done, 1)
        self.line = (
            f"evalkit: {done:,}/{plural(self.total, 'episode')}, {tally_text(done, successes, errors, note)}, "
            f"{format_duration(elapsed)} elapsed, about {format_duration(left)} left"
        )
        if now - self.last >= STATUS_EVERY_S:
            self.last = now
            self.write(self.line)
            self.line = None

    def write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.line is not None:  # the last status, unless it was just printed
            self.write(self.line)


class BarProgress(Progress):
    def __init__(self, total: int, workers: int, stream: TextIO):
        self.bar = progress_bar(total, workers, stream)

    def update(self, done: int, successes: int, errors: int, note: str = "") -> None:
        self.bar.set_postfix_str(tally_text(done, successes, errors, note))
        self.bar.update(done - self.bar.n)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, workers: int, stream: TextIO | None = None):
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
        file=stream or sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} ep "
        "[{elapsed} elapsed, {remaining} left]{postfix}",
    )
