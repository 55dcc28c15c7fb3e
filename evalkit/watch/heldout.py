"""Held-out episodes for the selected checkpoint: episode identities no checkpoint was selected on.

Picking the best of many checkpoints by their own evaluation reports the winner's luck along with its skill
(3D-Diffusion-Policy #154: a top-5 average of 80% against 69.7% for the best checkpoint on 1,000 fresh episodes).
Re-evaluating the selected checkpoint on other episodes gives a number the selection did not choose.

Every checkpoint is evaluated on episode k = 0..n-1 of each task (init state k, the protocol's seed for k). The
held-out episodes of a suite are, exactly:
- **new init states** when every task has enough of them: init states n..n+m-1, seeds as the protocol gives them
  (`EvalProtocol.episode_seed(k)`). Nothing of the selection's episodes is reused: other start layouts, other
  simulator and policy noise. (DROID-style suites have 1,000 layouts; LIBERO tasks have 50 init states.)
- otherwise **the same init states 0..m-1 under a new seed**: the protocol's seed + n (plus k where the protocol
  reseeds every episode, so the seeds are disjoint from the selection's too). New simulator and policy sampling
  noise, the same start states: the part of the selection bias that comes from lucky start states stays. This is
  what LIBERO's full protocol (50 episodes per task, 50 init states) gets.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import MAX_PROTOCOL_SEED, SuiteSpec


def span(first: int, last: int) -> str:
    return f"init state {first}" if first == last else f"init states {first}..{last}"


def suite_heldout(suite: SuiteSpec, per_task: int | None) -> tuple[list[EpisodeSpec], str]:
    """The held-out episodes of one suite (`per_task` of each task; None: as many as the selection's) and what they
    are, in words."""
    proto = suite.protocol
    n = proto.episodes_per_task
    m = n if per_task is None else per_task
    if all(task.num_init_states >= n + m for task in suite.tasks):
        episodes = [
            EpisodeSpec(suite.name, task.task_id, k, proto.episode_seed(k))
            for task in suite.tasks
            for k in range(n, n + m)
        ]
        return episodes, (
            f"{suite.name}: {span(n, n + m - 1)} of each task (the selection used {span(0, n - 1)}), "
            f"seeds as the protocol gives them"
        )
    if any(task.num_init_states < m for task in suite.tasks):
        raise EvalkitError(
            f"{suite.name} has tasks with fewer than {m} init states: lower --heldout-episodes-per-task"
        )
    seed = proto.seed + n
    plus_index = proto.episode_seeds == "plus_index"
    if seed + (m if plus_index else 0) > MAX_PROTOCOL_SEED:
        raise EvalkitError(f"{suite.name}: no held-out seed above the protocol's {proto.seed}")
    episodes = [
        EpisodeSpec(suite.name, task.task_id, k, seed + (k if plus_index else 0))
        for task in suite.tasks
        for k in range(m)
    ]
    seeds = f"seeds {seed}+k" if plus_index else f"seed {seed}"
    selected = f"{proto.seed}+k" if plus_index else str(proto.seed)
    return episodes, (
        f"{suite.name}: {span(0, m - 1)} of each task under {seeds} (the selection used seed {selected}; "
        f"only {min(t.num_init_states for t in suite.tasks)} init states per task, so the start states are the "
        "selection's and only simulator and policy noise are new)"
    )


def heldout_episodes(suites: Sequence[SuiteSpec], per_task: int | None) -> tuple[list[EpisodeSpec], str]:
    """The held-out episodes of every suite, and one line per suite saying which they are."""
    if per_task is not None and per_task < 1:
        raise EvalkitError("held-out episodes per task must be at least 1")
    episodes: list[EpisodeSpec] = []
    lines = []
    for suite in suites:
        part, line = suite_heldout(suite, per_task)
        episodes += part
        lines.append(line)
    return episodes, "; ".join(lines)
