"""The two statistics an episode gives, as evalkit's comparisons read them.

- **success**: 1 when the task's success check held, else 0. Every rate in evalkit is a success rate, and the
  regression gate's verdict rests on it unless `--outcome progress` says otherwise.
- **progress**: the mean of the episode's partial-progress flags, in [0, 1]: for LIBERO the fraction of the BDDL
  goal's predicates that held at the episode's best step (`evalkit.suites.libero.progress`), for DROID the share of
  its rubric's stages reached (success included). Partial credit tells a near miss from doing nothing, so a paired
  test on it can decide in fewer episodes; it is a different question from success (a candidate that reaches more
  sub-goals but finishes fewer tasks gains progress and loses success). An episode without flags has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from evalkit.core.errors import EvalkitError

if TYPE_CHECKING:  # pandas is imported by what uses the frames: `evalkit --help` stays light
    import pandas as pd

Outcome = Literal["success", "progress"]
OUTCOMES: tuple[str, ...] = ("success", "progress")
# the column a frame of episodes gets for each episode's progress score (nan: no flags)
PROGRESS_SCORE = "progress_score"


def progress_score(flags: Mapping[str, Any]) -> float | None:
    """The mean of an episode's progress flags; None when it records none."""
    if not flags:
        return None
    return sum(bool(v) for v in flags.values()) / len(flags)


def with_progress_scores(episodes: pd.DataFrame) -> pd.DataFrame:
    """`episodes` (a run's, `progress` parsed into dicts) with a `progress_score` column."""
    scores = [progress_score(p) for p in episodes["progress"]]
    return episodes.assign(**{PROGRESS_SCORE: [math.nan if s is None else s for s in scores]})


def check_outcome(outcome: str) -> Outcome:
    if outcome not in OUTCOMES:
        raise EvalkitError(f"unknown outcome {outcome!r}: choose {' or '.join(OUTCOMES)}")
    return outcome  # type: ignore[return-value]


def outcome_label(outcome: str) -> str:
    """How a table names the statistic."""
    return "success" if outcome == "success" else "progress (mean of the episode's progress flags)"
