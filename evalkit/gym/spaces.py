"""gymnasium spaces that describe a suite's wire format: what its protocol sends a policy and what it executes.

Observations are the keys openpi's clients send (`observation/...` images and state, `prompt`); actions are the
embodiment's vectors with the bounds the simulator applies to them.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory

from evalkit.core.embodiment import PROMPT_KEY, embodiment
from evalkit.core.protocol import SuiteSpec

PROMPT_MAX_LENGTH = 512
# State entries with a known range (openpi examples/droid/main.py: the gripper position is 0 open .. 1 closed);
# positions and angles have no honest finite bound.
_BOUNDED_STATE: dict[str, tuple[float, float]] = {"observation/gripper_position": (0.0, 1.0)}


class PromptSpace(spaces.Text):
    """The prompt: a `Text` space whose batch in an `AsyncVectorEnv`'s shared memory is decoded when read.

    gymnasium 1.4's AsyncVectorEnv reads its shared-memory observation buffer once, when it is built, and relies
    on numpy views to see later writes; its `Text` reader decodes the strings right away, so every batch would
    carry the empty prompts of that first read (Gymnasium issue #1164 describes the same read-once design).
    """


class SharedPrompts(Sequence):
    """The prompts of a vector env's sub-envs, decoded from shared memory on each access (a tuple on deepcopy,
    which is what AsyncVectorEnv hands out by default)."""

    def __init__(self, space: PromptSpace, codes: np.ndarray):
        self.space = space
        self.codes = codes  # (n, max_length) int32 view of the shared buffer

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return tuple(self)[index]
        return spaces.utils.unflatten(self.space, self.codes[index])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)


@read_from_shared_memory.register(PromptSpace)
def _read_prompts_from_shared_memory(space: PromptSpace, shared_memory, n: int = 1) -> SharedPrompts:
    codes = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape((n, space.max_length))
    return SharedPrompts(space, codes)


def prompt_space(suite: SuiteSpec) -> PromptSpace:
    """Any printable ASCII prompt, plus every character the suite's own instructions use.

    The charset is a sorted string, not a set: vector envs encode prompts in shared memory by character index,
    and a set's order differs between processes (string hash randomization).
    """
    charset = set(string.printable) | {c for task in suite.tasks for c in task.language}
    longest = max((len(task.language) for task in suite.tasks), default=0)
    return PromptSpace(max_length=max(PROMPT_MAX_LENGTH, longest), charset="".join(sorted(charset)))


def observation_space(suite: SuiteSpec) -> spaces.Dict:
    """Images uint8 at the protocol's image size (in wire order), state float32 per embodiment, prompt as Text."""
    proto = suite.protocol
    height, width = proto.image_size
    entries: dict[str, spaces.Space] = {
        wire: spaces.Box(0, 255, (height, width, 3), np.uint8) for wire in proto.wire_cameras
    }
    for key, dim in embodiment(suite.embodiment).state:
        low, high = _BOUNDED_STATE.get(key, (-np.inf, np.inf))
        entries[key] = spaces.Box(low, high, (dim,), np.float32)
    entries[PROMPT_KEY] = prompt_space(suite)
    return spaces.Dict(entries)


def action_space(suite: SuiteSpec, bounds: tuple[np.ndarray, np.ndarray]) -> spaces.Box:
    """The embodiment's action vector with the bounds its simulator clips actions to (`SimEnv.action_bounds`)."""
    low, high = (np.asarray(b, np.float32).reshape(-1) for b in bounds)
    if low.shape != (suite.protocol.action_dim,) or high.shape != low.shape:
        raise ValueError(
            f"suite {suite.name}: action bounds of shape {low.shape}, not ({suite.protocol.action_dim},)"
        )
    return spaces.Box(low, high, dtype=np.float32)
