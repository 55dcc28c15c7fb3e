"""LIBERO partial progress: which of the BDDL goal's predicates hold, at the episode's best moment so far.

LIBERO's success check (`_check_success` of each problem class in `libero/libero/envs/problems/`, the same in
LIBERO-plus) is the conjunction of `parsed_problem["goal_state"]`, each conjunct evaluated by the problem's
`_eval_predicate` with LIBERO's predicate functions (`libero/libero/envs/predicates/`). `GoalProgress` evaluates the
same conjuncts with the same method after every control step and keeps the flags of the first step at which the most
of them held: their mean is the best fraction of the goal reached over the episode, and all are set exactly when
LIBERO's success holds. A LIBERO-10 two-step task ("put both the alphabet soup and the tomato sauce in the basket")
scores 1/2 for one of its two steps.

It reads the goal state only as LIBERO's own check does: right after each step, on the state LIBERO has just checked
(a `TurnOn` predicate records a burner's visibility from the knob's position, as LIBERO's check just did), so it
changes nothing. It is not evaluated at reset. A predicate that already holds in the initial state counts too:
LIBERO-10 task 8's stove starts on, so doing nothing there scores 1/3; progress measures the goal state reached, not
the work done (in a paired comparison both runs get the same credit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.core.errors import EvalkitError


def predicate_label(state: Sequence[str]) -> str:
    """A goal conjunct as BDDL writes it (LIBERO lower-cases the predicate): `(in alphabet_soup_1 basket_1_...)`."""
    return "(" + " ".join(state) + ")"


class GoalProgress:
    """The goal conjuncts of one LIBERO problem environment, and the best flags reached this episode."""

    def __init__(self, problem: Any):
        goal = getattr(problem, "parsed_problem", {}).get("goal_state")
        if not goal or not hasattr(problem, "_eval_predicate"):
            raise EvalkitError(
                f"{type(problem).__name__} has no BDDL goal state to measure progress on "
                "(not a LIBERO problem environment?)"
            )
        self._problem = problem
        self._goal = [tuple(state) for state in goal]
        self.labels = tuple(dict.fromkeys(predicate_label(s) for s in self._goal))
        self._best = dict.fromkeys(self.labels, False)
        self._best_count = 0

    def holds(self) -> dict[str, bool]:
        """Each goal conjunct on the current state."""
        return {predicate_label(s): bool(self._problem._eval_predicate(list(s))) for s in self._goal}

    def update(self) -> None:
        """Call after every control step."""
        now = self.holds()
        count = sum(now.values())
        if count > self._best_count:
            self._best, self._best_count = now, count

    def flags(self) -> dict[str, bool]:
        """The conjuncts that held at the episode's best step so far (all False before any held)."""
        return dict(self._best)

    @property
    def fraction(self) -> float:
        return self._best_count / len(self.labels)
