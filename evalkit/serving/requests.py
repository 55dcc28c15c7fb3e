"""Client messages to `PolicyRequest`s: everything a request must carry is checked before it joins a batch, so a
bad message is answered on its own connection and never reaches the policy."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyRequest
from evalkit.wire import EPISODE_ID_FIELD, MAX_REQUEST_SEED, SEED_FIELD, msgpack_numpy

# (episode id, seed) of a request our client sent: a retry carries the same key and the very same bytes.
RetryKey = tuple[str, int]


class BadRequest(ValueError):
    """A client message the server cannot turn into a PolicyRequest."""


class RequestParser:
    """Decodes and checks messages for one embodiment and the cameras the served policy reads.

    A message without a seed (openpi's clients send none) gets the next of 0, 1, 2, ...
    """

    def __init__(self, embodiment: str, cameras: tuple[str, ...], action_dim: int, max_size: int):
        self.embodiment = EMBODIMENTS[embodiment]
        self.cameras = cameras
        self.action_dim = action_dim
        self.max_size = max_size
        self.required_keys = (*self.embodiment.state_keys, *cameras)
        self._next_seed = 0

    def parse(self, message: bytes | str) -> tuple[PolicyRequest, RetryKey | None]:
        obs = self._decode(message)
        self._check_keys(obs)
        self._check_state(obs)
        self._check_images(obs)
        obs["prompt"] = _prompt(obs)
        seed, episode = obs.pop(SEED_FIELD, None), obs.pop(EPISODE_ID_FIELD, None)
        key = None
        if seed is None:
            seed, self._next_seed = self._next_seed, self._next_seed + 1
        elif (
            isinstance(seed, bool)
            or not isinstance(seed, int | np.integer)
            or not 0 <= int(seed) <= MAX_REQUEST_SEED
        ):
            raise BadRequest(f"{SEED_FIELD} must be an integer in [0, 2**64)")
        elif episode is not None:
            key = (str(episode), int(seed))
        episode_id = "" if episode is None else str(episode)
        return PolicyRequest(obs=obs, episode_id=episode_id, seed=int(seed), action_dim=self.action_dim), key

    def _decode(self, message: bytes | str) -> dict[str, Any]:
        if isinstance(message, str):
            raise BadRequest("expected a binary msgpack frame, got a text frame")
        if len(message) > self.max_size:
            raise BadRequest(
                f"message of {len(message)} bytes exceeds the server's limit of {self.max_size} bytes"
            )
        try:
            obs = msgpack_numpy.unpackb(message)
        except msgpack_numpy.WireFormatError as exc:
            raise BadRequest(str(exc)) from None
        if not isinstance(obs, dict):
            raise BadRequest(f"expected a map of observations, got {type(obs).__name__}")
        if not all(isinstance(k, str) for k in obs):
            raise BadRequest("observation keys must be strings")
        return obs

    def _check_keys(self, obs: dict[str, Any]) -> None:
        missing = [k for k in self.required_keys if k not in obs]
        if missing:
            raise BadRequest(
                f"missing key(s) {', '.join(missing)}; {self.embodiment.name} requests carry "
                f"{', '.join(self.required_keys)} and prompt"
            )

    def _check_state(self, obs: dict[str, Any]) -> None:
        for key in self.embodiment.state_keys:
            state = obs[key]
            if not isinstance(state, np.ndarray | np.generic | int | float | list) or (
                np.asarray(state).dtype.kind not in "biuf"
            ):
                raise BadRequest(f"{key} must be a numeric array")
        try:
            self.embodiment.state_vector(obs, "observation")
        except (EvalkitError, ValueError) as exc:
            raise BadRequest(str(exc)) from None

    def _check_images(self, obs: dict[str, Any]) -> None:
        for key in self.cameras:
            image = obs[key]
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
                raise BadRequest(f"{key} must be an (H, W, 3) image array")
            if image.dtype.kind not in "uf" or min(image.shape[:2]) < 1:
                raise BadRequest(
                    f"{key} must be a non-empty uint8 or float image, got {image.dtype} {image.shape}"
                )


def _prompt(obs: dict[str, Any]) -> str:
    if "prompt" not in obs:
        raise BadRequest("missing key prompt (the task instruction)")
    prompt = obs["prompt"]
    if isinstance(prompt, bytes):
        try:
            return prompt.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("prompt is not valid utf-8") from None
    if not isinstance(prompt, str):
        raise BadRequest(f"prompt must be a string, got {type(prompt).__name__}")
    return prompt
