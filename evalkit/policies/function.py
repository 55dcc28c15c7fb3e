"""A plain function or torch module as an evalkit policy, for the Python API (`evalkit.evaluate`): a training loop
evaluates its live model without writing a checkpoint.

The function is called once per batch of observations, in openpi's wire format, stacked along a first batch axis:

    fn(batch: dict[str, np.ndarray | list[str]]) -> array of shape (B, horizon, action_dim)

- images (`observation/image`, `observation/wrist_image` for LIBERO; DROID's three cameras): uint8 (B, H, W, 3);
- state (`observation/state` for LIBERO; `observation/joint_position`, `observation/gripper_position` for DROID):
  float (B, dims);
- `prompt`: a list of B task instructions.

A list of B arrays of shape (horizon, action_dim) is accepted too. A `torch.nn.Module` is called the same way, with
the arrays as torch tensors on the module's device and under `torch.inference_mode()`; its output may be a tensor.
Actions are executed as they are returned: normalisation and the action space are the model's business.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evalkit.core.embodiment import PROMPT_KEY
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta, PolicyRequest

BatchFunction = Callable[[dict[str, Any]], Any]


def stack_batch(batch: Sequence[PolicyRequest]) -> dict[str, Any]:
    """The requests' observations as one dict: arrays stacked on a new first axis, prompts as a list."""
    keys = batch[0].obs.keys()
    out: dict[str, Any] = {}
    for key in keys:
        values = [request.obs[key] for request in batch]
        out[key] = list(values) if key == PROMPT_KEY else np.stack([np.asarray(v) for v in values])
    return out


def is_torch_module(obj: object) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


class FunctionPolicy:
    """Calls `fn` on each batch. Its identity is `name` plus `fingerprint`; without a fingerprint a fresh one is
    drawn, so a run directory never mixes episodes of two versions of a changing model (pass a fingerprint, e.g. the
    training step, to resume into the same directory)."""

    def __init__(
        self,
        fn: BatchFunction,
        cameras: Sequence[str],
        name: str = "function",
        fingerprint: str | None = None,
    ):
        if not callable(fn):
            raise EvalkitError(f"a policy function must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.torch = is_torch_module(fn)
        self.meta = PolicyMeta(
            name=name, fingerprint=fingerprint or f"live-{uuid.uuid4().hex[:12]}", cameras=tuple(cameras)
        )

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        inputs = stack_batch(batch)
        output = self._call_torch(inputs) if self.torch else self.fn(inputs)
        # the runner checks each chunk's shape (horizon, action_dim): wider openpi-style padded actions are refused
        return [np.asarray(chunk) for chunk in output]

    def _call_torch(self, inputs: dict[str, Any]) -> list[np.ndarray]:
        import torch

        device = next(self.fn.parameters(), torch.empty(0)).device
        tensors = {k: v if k == PROMPT_KEY else torch.from_numpy(v).to(device) for k, v in inputs.items()}
        with torch.inference_mode():
            output = self.fn(tensors)
        if isinstance(output, torch.Tensor):
            return list(output.detach().float().cpu().numpy())
        return [
            o.detach().float().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in output
        ]

    def close(self) -> None:
        pass
