"""Policies by name: `zero`, `random`, `pi05`, `oracle`, or a `ws://` / `wss://` address of a policy server.

Builders are imported lazily so that a weightless run never imports torch or a server client.
"""

from __future__ import annotations

import importlib

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyOptions

# name -> "module:function"; each function has the signature (PolicyOptions) -> Policy.
BUILDERS: dict[str, str] = {
    "zero": "evalkit.policies.simple:make_zero_policy",
    "random": "evalkit.policies.simple:make_random_policy",
    "pi05": "evalkit.policies.pi05:make_pi05_policy",
    "oracle": "evalkit.policies.oracle:make_oracle_policy",
}
REMOTE_BUILDER = "evalkit.policies.remote:make_remote_policy"


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
