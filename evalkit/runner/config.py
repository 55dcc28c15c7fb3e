"""The configuration of one evaluation run, as given on the command line."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalkit.core.cores import usable_cores
from evalkit.core.flags import flag
from evalkit.core.policy import PolicyOptions

VideoMode = Literal["none", "failures", "all", "first-per-task"]
VIDEO_MODES: tuple[str, ...] = ("none", "failures", "all", "first-per-task")


def default_workers() -> int:
    """One env worker per core this process may use."""
    return usable_cores()


# a batch that starts on an idle policy waits this long for more observations (as `evalkit serve` does by default),
# unless no env worker can still send one
BATCH_WAIT_MS = 5.0

RUN, RAY = "run", "Ray (optional extra: pip install -e '.[ray]')"


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation. `evalkit eval` generates its run and Ray flags from the fields that carry one."""

    suite: str
    policy: PolicyOptions  # a bare name is accepted and means PolicyOptions(name=...)
    # a string on the command line, so that `--out ''` is refused rather than taken as the current directory
    out: Path | None = field(
        default=None,
        metadata=flag("--out", "run directory (default: results/<suite>__<policy>)", RUN, metavar="DIR"),
    )
    episodes_per_task: int | None = field(
        default=None,
        metadata=flag("--episodes-per-task", "default: the protocol's (50 for openpi LIBERO)", RUN, type=int),
    )
    tasks: tuple[int, ...] | None = field(
        default=None, metadata=flag("--tasks", "task ids (default: all)", RUN, type=int, nargs="+")
    )
    workers: int | None = field(
        default=None,
        metadata=flag("--workers", "env worker processes (default: available cores)", RUN, type=int),
    )
    batch_size: int = field(
        default=16, metadata=flag("--batch-size", "max observations per policy call", RUN, type=int)
    )
    video: VideoMode = field(
        default="none", metadata=flag("--video", "which episodes to film", RUN, choices=VIDEO_MODES)
    )
    seed: int | None = field(
        default=None, metadata=flag("--seed", "default: the protocol's (7 for openpi LIBERO)", RUN, type=int)
    )
    max_steps: int | None = field(
        default=None,
        metadata=flag("--max-steps", "per-episode step budget (default: the suite's)", RUN, type=int),
    )
    protocol: str | None = field(
        default=None,
        # its help lists the presets found under tasks/*/protocols/ (evalkit.cli)
        metadata=flag("--protocol", "protocol preset (default: the suite's own)", RUN),
    )
    # tries per episode when its simulator raises, its env worker dies or hangs, or its policy call raises
    max_attempts: int = 3
    save_actions: bool = field(
        default=False,
        metadata=flag(
            "--save-actions", "also store executed actions (actions/*.npz)", RUN, action="store_true"
        ),
    )
    episode_timeout_s: float = field(
        default=600.0,
        metadata=flag(
            "--episode-timeout",
            "kill an env worker that makes no progress this long and retry its episode",
            RUN,
            type=float,
            metavar="SECONDS",
        ),
    )
    ray: str | None = field(
        default=None,
        metadata=flag(
            "--ray",
            "run env workers and policy replicas as Ray actors: `local` (when given without a value) starts a "
            "private Ray instance in this process; `auto` joins this machine's cluster (`ray start` or "
            "$RAY_ADDRESS); HOST:PORT joins the cluster whose head is there (default: off, local processes)",
            RAY,
            nargs="?",
            const="local",
            metavar="ADDRESS",
        ),
    )
    policy_replicas: int = field(
        default=1,
        metadata=flag("--policy-replicas", "policy replicas, each batching dynamically", RAY, type=int),
    )
    gpus_per_replica: float = field(
        default=0.0,
        metadata=flag(
            "--gpus-per-replica",
            "GPUs per policy replica; a fraction shares a GPU, e.g. 0.5",
            RAY,
            type=float,
        ),
    )

    # the training step of the checkpoint evaluated (set by `evalkit watch`); recorded in the manifest's config, so a
    # run says which point of a training curve it is
    training_step: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.policy, str):
            object.__setattr__(self, "policy", PolicyOptions(name=self.policy))
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(self.tasks))
        if isinstance(self.out, str) and self.out.strip():  # an empty one stays, for check_config to refuse
            object.__setattr__(self, "out", Path(self.out))

    def run_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        name, checkpoint = self.policy.name, self.policy.checkpoint
        slug = name if checkpoint is None else f"{name}-{Path(checkpoint).name}"
        return Path("results") / f"{self.suite}__{re.sub(r'[^A-Za-z0-9._-]+', '_', slug)}"

    def replace(self, **changes: Any) -> EvalConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """As recorded in the manifest: flat, JSON-able, and without secrets."""
        data = asdict(self)
        policy = data.pop("policy")
        for key in ("api_key", "embodiment", "action_dim"):  # a secret; the suite's facts
            policy.pop(key)
        data["policy"] = policy.pop("name")
        data.update(policy)
        data["out"] = str(self.run_dir())
        data["tasks"] = list(self.tasks) if self.tasks is not None else None
        return data
