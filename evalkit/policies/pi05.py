"""The in-process π₀.₅ policy: openpi wire observations → `Pi05Model.sample_actions` → action chunks.

Per-embodiment transforms as openpi's `src/openpi/policies/libero_policy.py` / `droid_policy.py`:
- LIBERO: `observation/image` → base_0_rgb, `observation/wrist_image` → left_wrist_0_rgb, right wrist zeros with
  mask False; state `observation/state` (8); output `actions[..., :7]`.
- DROID: `observation/exterior_image_1_left` → base_0_rgb, `observation/wrist_image_left` → left_wrist_0_rgb;
  state = joint_position (7) + gripper_position (1); output `actions[..., :8]` (`*_jointpos`: + state on 7 joints).
Then: resize_with_pad to 224 if needed, state normalized with the checkpoint's stats (and, for discrete-state
checkpoints, written into the prompt), one batched `sample_actions` call, actions unnormalized.

The policy declares what its actions mean (`action_mode`: eef_delta, joint_velocity or joint_position) so that a
protocol can refuse a mismatched config before the first episode (`PolicyMeta.action_mode`), and the fingerprints of its
weights, norm stats and tokenizer (`provenance`).

Noise is drawn per request from `torch.Generator().manual_seed(request.seed)` on the CPU as (H, action_dim) float32,
so a request's actions never depend on which other requests share its batch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Observation, PolicyMeta, PolicyOptions, PolicyRequest
from evalkit.core.protocol import fingerprint
from evalkit.images import resize_with_pad

if TYPE_CHECKING:
    import torch

    from evalkit.models.pi05.checkpoint import Pi05Checkpoint
    from evalkit.models.pi05.sampler import SamplerOptions

log = logging.getLogger(__name__)

IMAGE_SIZE = (224, 224)
BASE, LEFT_WRIST, RIGHT_WRIST = "base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"


def parse_image(value: Any, key: str, episode_id: str) -> np.ndarray:
    """HWC uint8 at 224x224: float images are scaled by 255 (openpi), CHW is transposed, other sizes padded."""
    image = np.asarray(value)
    if image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]):
        raise EvalkitError(f"{episode_id}: image {key!r} has shape {image.shape}, expected (H, W, 3)")
    if image.shape[-1] != 3:
        image = np.transpose(image, (1, 2, 0))
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise EvalkitError(f"{episode_id}: image {key!r} has non-finite values")
        image = (255 * image).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise EvalkitError(f"{episode_id}: image {key!r} has dtype {image.dtype}, expected uint8")
    return resize_with_pad(np.ascontiguousarray(image), *IMAGE_SIZE)


def parse_prompt(obs: Observation, episode_id: str) -> str:
    prompt = obs.get("prompt")
    if isinstance(prompt, bytes):
        prompt = prompt.decode("utf-8")
    if not isinstance(prompt, str):
        raise EvalkitError(f"{episode_id}: observation has no 'prompt' string")
    return prompt


@dataclass(frozen=True)
class ModelInputs:
    """One request after the embodiment transforms: what goes into the batch."""

    base: np.ndarray  # (224, 224, 3) uint8
    wrist: np.ndarray  # (224, 224, 3) uint8
    state: np.ndarray  # raw robot state (for AbsoluteActions)
    tokens: np.ndarray  # (max_token_len,) int64
    token_mask: np.ndarray  # (max_token_len,) bool


class Pi05Policy:
    def __init__(
        self,
        checkpoint: Pi05Checkpoint,
        embodiment: str,
        device: str = "cpu",
        dtype: str = "float32",
        tokenizer: str | None = None,
        sampling: SamplerOptions | None = None,
    ):
        import torch

        from evalkit.models.pi05.checkpoint import fingerprint_files
        from evalkit.models.pi05.sampler import Pi05Sampler, SamplerOptions
        from evalkit.models.pi05.tokenizer import PaligemmaTokenizer, find_tokenizer

        if embodiment not in EMBODIMENTS:
            raise EvalkitError(
                f"pi05 has no transforms for embodiment {embodiment!r} (have {', '.join(EMBODIMENTS)})"
            )
        trained_on = checkpoint.training_config.embodiment
        if trained_on is not None and trained_on != embodiment:
            raise EvalkitError(
                f"checkpoint {checkpoint.path} ({checkpoint.training_config.name}) is a {trained_on} policy; "
                f"it cannot drive a {embodiment} suite"
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EvalkitError(f"device {device!r} requested but CUDA is not available")
        self.io = EMBODIMENTS[embodiment]
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.device = torch.device(device)
        self.action_mode: str | None = checkpoint.training_config.action_mode
        self.tokenizer = PaligemmaTokenizer(
            find_tokenizer(checkpoint.path, tokenizer),
            self.config.max_token_len,
            self.config.discrete_state_input,
        )
        self.tokenizer.check_matches(self.config.paligemma.vocab_size)
        _phase(f"pi05: fingerprinting {checkpoint.path}")
        self.provenance: dict[str, str] = {
            "weights": fingerprint_files(checkpoint.weights),
            "norm_stats": fingerprint_files(checkpoint.norm_files),
            "tokenizer": fingerprint_files([self.tokenizer.model_path]),
        }
        _phase(f"pi05: reading weights ({dtype}, {device})")
        self.model = checkpoint.build_model(device, dtype)
        log.info(
            "pi05 %s (%s layout, config %s): horizon %d, %s, norm %s/%s, %s on %s",
            checkpoint.path,
            checkpoint.layout,
            checkpoint.training_config.name,
            self.config.action_horizon,
            "state in prompt" if self.config.discrete_state_input else "no state in prompt",
            checkpoint.norm.state.mode,
            checkpoint.norm.actions.mode,
            dtype,
            device,
        )
        self.sampler = Pi05Sampler(self.model, sampling or SamplerOptions())
        self.meta = PolicyMeta(
            name="pi05",
            fingerprint=fingerprint(self.provenance),  # weights, norm stats and tokenizer together
            cameras=self.io.policy_cameras,
            image_size=IMAGE_SIZE,
            action_dim=self.io.action_dim,
            embodiment=self.io.name,
            action_mode=self.action_mode,
            provenance=self.provenance,
        )

    def _prepare(self, request: PolicyRequest) -> ModelInputs:
        obs, eid = request.obs, request.episode_id
        if request.action_dim != self.io.action_dim:
            raise EvalkitError(
                f"{eid}: the suite executes {request.action_dim}-dim actions but pi05 on {self.io.name} "
                f"returns {self.io.action_dim}"
            )
        for key in self.io.policy_cameras:
            if key not in obs:
                raise EvalkitError(f"{eid}: observation has no {key!r} (pi05 {self.io.name} needs it)")
        base = parse_image(obs[self.io.base_camera], self.io.base_camera, eid)
        wrist = parse_image(obs[self.io.wrist_camera], self.io.wrist_camera, eid)
        state = self.io.state_vector(obs, eid)
        normalized = self.checkpoint.norm.state.normalize(state)
        prompt = self.tokenizer.tokenize(parse_prompt(obs, eid), normalized)
        return ModelInputs(base, wrist, state, prompt.tokens, prompt.mask)

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        import torch

        if not batch:
            return []
        prepared = [self._prepare(request) for request in batch]
        n = len(batch)

        def stack(field: str) -> torch.Tensor:
            return torch.from_numpy(np.stack([getattr(p, field) for p in prepared]))

        right = torch.zeros(n, *IMAGE_SIZE, 3, dtype=torch.uint8)
        images = {BASE: stack("base"), LEFT_WRIST: stack("wrist"), RIGHT_WRIST: right}
        masks = {
            BASE: torch.ones(n, dtype=torch.bool),
            LEFT_WRIST: torch.ones(n, dtype=torch.bool),
            RIGHT_WRIST: torch.zeros(n, dtype=torch.bool),  # openpi LiberoInputs / DroidInputs: zeros, masked
        }
        noise = torch.stack([self._noise(request.seed) for request in batch])
        actions = self.sampler(images, masks, stack("tokens"), stack("token_mask"), noise).numpy()
        out = []
        for request, inputs, chunk in zip(batch, prepared, actions, strict=True):
            if not np.all(np.isfinite(chunk)):
                raise EvalkitError(f"{request.episode_id}: pi05 produced non-finite actions")
            chunk = self.checkpoint.norm.actions.unnormalize(chunk)
            if self.checkpoint.training_config.absolute_joint_actions:
                chunk[..., :7] += inputs.state[:7]  # openpi AbsoluteActions(make_bool_mask(7, -1))
            out.append(np.ascontiguousarray(chunk[..., : self.io.action_dim], dtype=np.float32))
        return out

    def _noise(self, seed: int) -> torch.Tensor:
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        shape = (self.config.action_horizon, self.config.action_dim)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _phase(message: str) -> None:
    """One line per load phase on stderr (the full-size model takes tens of seconds to load)."""
    print(message, file=sys.stderr, flush=True)


def make_pi05_policy(options: PolicyOptions) -> Pi05Policy:
    from evalkit.models.pi05.checkpoint import load_checkpoint
    from evalkit.models.pi05.hub import resolve_checkpoint
    from evalkit.models.pi05.sampler import SamplerOptions

    if not options.checkpoint:
        raise EvalkitError(
            "--policy pi05 needs --checkpoint (a local dir or hub id); "
            "`evalkit make-tiny-checkpoint DIR` writes a tiny random one for smoke tests"
        )
    io = EMBODIMENTS.get(options.embodiment)
    if io is not None and options.action_dim != io.action_dim:
        raise EvalkitError(
            f"the suite executes {options.action_dim}-dim actions but pi05 on {io.name} returns {io.action_dim}"
        )
    path = resolve_checkpoint(options.checkpoint)
    _phase(f"pi05: checking {path}")
    checkpoint = load_checkpoint(path, options.config, options.norm_stats)
    return Pi05Policy(
        checkpoint,
        options.embodiment,
        device=options.device,
        dtype=options.dtype,
        tokenizer=options.tokenizer or os.environ.get("EVALKIT_TOKENIZER") or None,
        sampling=SamplerOptions(
            trim=options.trim,
            compile=options.compile,
            deterministic=options.deterministic,
            max_batch=options.max_batch,
        ),
    )
