"""Policies by name: `zero`, `random`, `pi05`, `oracle`, or a `ws://` / `wss://` address of a policy server.

Builders are imported lazily so that a weightless run never imports torch or a server client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from evalkit.errors import EvalkitError
from evalkit.policies.base import Policy

# name -> "module:function"; each function has the signature (PolicyOptions) -> Policy.
BUILDERS: dict[str, str] = {
    "zero": "evalkit.policies.simple:make_zero_policy",
    "random": "evalkit.policies.simple:make_random_policy",
    "pi05": "evalkit.policies.pi05:make_pi05_policy",
    "oracle": "evalkit.suites.droid.oracle:make_oracle_policy",
}
REMOTE_BUILDER = "evalkit.policies.remote:make_remote_policy"


@dataclass(frozen=True)
class PolicyOptions:
    name: str
    embodiment: str  # observation/action convention of the suite: "libero" | "droid"
    action_dim: int  # action dims the suite executes
    checkpoint: str | None = None  # local dir or hub id (pi05)
    config: str | None = (
        None  # pi05 training config (pi05_libero, ...); required unless the checkpoint records it
    )
    norm_stats: str | None = None  # pi05: openpi norm_stats.json replacing the checkpoint's stats
    tokenizer: str | None = (
        None  # PaliGemma SentencePiece model (pi05); default: from the checkpoint or openpi's cache
    )
    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False
    api_key: str | None = None  # remote policies
    timeout_s: float = 60.0  # remote policies: per request


def policy_names() -> list[str]:
    return sorted(BUILDERS)


def make_policy(options: PolicyOptions) -> Policy:
    if options.name.startswith(("ws://", "wss://")):
        target = REMOTE_BUILDER
    elif options.name in BUILDERS:
        target = BUILDERS[options.name]
    else:
        raise EvalkitError(
            f"unknown policy {options.name!r}; choose one of {', '.join(policy_names())} or a ws:// address"
        )
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)(options)
